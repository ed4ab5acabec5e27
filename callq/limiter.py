"""The global rate limiter, held in Redis and timed by the Redis server's clock.

GCRA-style reservations with no burst: permits are spaced ``(period + margin) / calls`` apart,
so no window of ``period`` seconds (any start, as the server sees arrivals) holds more than
``calls`` requests, even when each request's arrival jitters by up to ``margin`` seconds.

A caller reserves its slot in one round trip and sleeps until it; nobody polls. A slot may be
reserved at most ``max_ahead`` seconds ahead, which keeps reservations short (a priority call
never waits behind a long queue of reservations); past that, the caller sleeps until one
could be free and asks again. Waiting never uses up a retry. When Redis cannot be reached the
limiter fails closed: :class:`LimiterUnavailable`, and no request goes out.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from callq.errors import LimiterUnavailable, Stopping
from callq.keys import Keys
from callq.scripts import Scripts
from config import Settings


@dataclass(frozen=True)
class Permit:
    """A granted permit: how long the caller waited, and the slot (``time.monotonic()``)."""

    waited: float
    slot: float

    def lateness(self) -> float:
        """Seconds past the slot now; a request should leave at its slot, not later."""
        return time.monotonic() - self.slot


@dataclass(frozen=True)
class Reservation:
    granted: bool
    wait: float  # seconds: until the permit (granted) or until one could be (not granted)


class Limiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        account: str,
        *,
        calls: int,
        period: float,
        margin: float = 0.0,
        max_ahead: float = 5.0,
        scripts: Scripts | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls <= 0 or period <= 0:
            raise ValueError("calls and period must be positive")
        self.key = keys.limiter(account)
        self.calls = calls
        self.period = period
        # Rounded up: rounded to nearest, 3 per 1 s gave 333,333 us and 4 permits inside
        # 999,999 us (found by the property test).
        self.interval_us = math.ceil((period + margin) * 1e6 / calls)
        self.max_ahead_us = max(round(max_ahead * 1e6), 0)
        self._client = client
        self._scripts = scripts or Scripts(client)
        self._sleep = sleep

    @classmethod
    def for_settings(
        cls, client: redis.Redis, keys: Keys, settings: Settings, scripts: Scripts | None = None
    ) -> Limiter:
        """The limiter of the account ``settings`` describe (see ``Settings.for_account``)."""
        return cls(
            client,
            keys,
            settings.exotel_account_sid,
            calls=settings.rate_limit_calls,
            period=settings.rate_limit_period_seconds,
            margin=settings.rate_limit_margin_seconds,
            max_ahead=settings.rate_limit_max_ahead_seconds,
            scripts=scripts,
        )

    def reserve(self, now_us: int | None = None, *, ahead: float | None = None) -> Reservation:
        """One round trip. ``now_us`` replaces the server clock (tests only). ``ahead``
        replaces the reservation horizon (a priority caller may reserve further ahead)."""
        ahead_us = self.max_ahead_us if ahead is None else max(round(ahead * 1e6), 0)
        try:
            granted, wait_us = self._scripts.limiter_acquire(
                keys=[self.key],
                args=[self.interval_us, ahead_us, "" if now_us is None else now_us],
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
        return Reservation(granted=bool(int(granted)), wait=int(wait_us) / 1e6)

    def acquire(self, timeout: float | None = None, stop: threading.Event | None = None) -> float:
        """Block until this caller holds a permit; return the seconds waited.

        Raises :class:`LimiterUnavailable` if Redis is unreachable, ``TimeoutError`` if no
        permit could be had within ``timeout`` seconds (nothing is then reserved), or
        :class:`Stopping` as soon as ``stop`` is set (a reserved permit is then left unused:
        that costs throughput, never the limit).
        """
        return self.acquire_permit(timeout, stop).waited

    def acquire_permit(
        self, timeout: float | None = None, stop: threading.Event | None = None
    ) -> Permit:
        """As :meth:`acquire`, returning the :class:`Permit` with its slot time."""
        started = time.monotonic()
        while True:
            r = self.reserve()
            if r.granted:
                slot = time.monotonic() + r.wait
                self._wait(r.wait, stop)
                return Permit(waited=time.monotonic() - started, slot=slot)
            if timeout is not None and time.monotonic() - started + r.wait > timeout:
                raise TimeoutError("no permit within the timeout")
            self._wait(r.wait, stop)

    def free_slots(self, within: float) -> int:
        """How many permits could still be reserved from now to ``within`` seconds ahead (one
        round trip, reserves nothing). The parked-call drain pushes about this many."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(self.key)
            pipe.time()
            tat_raw, (sec, usec) = pipe.execute()
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
        now = int(sec) * 1_000_000 + int(usec)
        tat = max(int(float(tat_raw)) if tat_raw else now, now)
        return max(0, (now + round(within * 1e6) - tat) // self.interval_us)

    def permit_or_wait(
        self, stop: threading.Event | None = None, *, priority_within: float | None = None
    ) -> Permit | float:
        """One reservation, without queueing behind others: a :class:`Permit` (after sleeping
        until its slot, at most the horizon), or the seconds until a slot could be had, for a
        caller that would rather put its call aside than hold a thread.

        ``priority_within``: a priority caller reserves the next free slot if it lies within
        that many seconds. Ordinary callers never reserve past the horizon, so the next free
        slot is at most ``max_ahead`` plus one interval away: a priority call waits no longer
        than that, however many ordinary callers are waiting.
        """
        started = time.monotonic()
        r = self.reserve(ahead=priority_within)
        if not r.granted:
            return r.wait
        slot = time.monotonic() + r.wait
        self._wait(r.wait, stop)
        return Permit(waited=time.monotonic() - started, slot=slot)

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        if stop is None:
            if seconds > 0:
                self._sleep(seconds)
        elif stop.is_set() or stop.wait(seconds):
            raise Stopping("worker shutting down")

    def push_back(self, seconds: float, now_us: int | None = None) -> None:
        """After a 429: no permit for anyone before now + ``seconds``."""
        try:
            self._scripts.limiter_push_back(
                keys=[self.key],
                args=[round(seconds * 1e6), "" if now_us is None else now_us],
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
