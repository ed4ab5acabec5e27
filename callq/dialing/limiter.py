"""The global limiter, held in Redis and timed by the Redis server's clock.

GCRA-style reservations with no burst: permits are spaced ``(period + margin) / calls`` apart,
so no window of ``period`` seconds (any start, as the server sees arrivals) holds more than
``calls`` requests, even when each request's arrival jitters by up to ``margin`` seconds.

A caller reserves its slot in one round trip and sleeps until it; nobody polls. A slot may be
reserved at most ``max_ahead`` seconds ahead (the horizon), which keeps reservations short;
past that, the caller is told how long until one could be free. The feed (worker.feed)
reserves many permits in one round trip and hands each to a parked call with its slot.

Two rules keep the spacing true at Exotel, not only in Redis:

* A slot is reckoned on the caller's monotonic clock from both ends of the round trip that
  granted it (:class:`Permit`): the holder sleeps until the later reckoning, so it never
  sends early, and judges its lateness from the earlier one, so a stall between the grant and
  the reply (a slow fsync under ``appendfsync always``, a network hiccup) counts against it.
* A request more than ``margin / 2`` late for its slot does not go out on it
  (:meth:`Limiter.on_time`): two requests ``calls`` permits apart are then more than a period
  apart at Exotel, with the other half of the margin for the network.

With a cap on live calls (``EXOTEL_MAX_LIVE_CALLS``, :mod:`callq.store.slots`), each permit
goes to a call only with its slots, in the same round trip; a permit the cap refuses is not
spent (:attr:`Grant.slots_full`).

When Redis cannot be reached the limiter fails closed: :class:`LimiterUnavailable`, and no
request goes out.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from callq.errors import LimiterUnavailable, Stopping
from callq.settings import Settings
from callq.store.epoch import MasterWatch
from callq.store.keys import Keys
from callq.store.scripts import Scripts
from callq.store.slots import LiveSlots, SlotClaim

MAX_LATE_IN_A_ROW = 3


@dataclass(frozen=True)
class Permit:
    """One permit's slot on this process's monotonic clock: somewhere in [earliest, latest]
    (the two ends of the round trip that granted it). ``waited``: seconds the caller spent
    from asking to holding it."""

    earliest: float
    latest: float
    waited: float = 0.0

    @classmethod
    def of_slot(cls, slot_us: int, server_now_us: int, sent: float, received: float) -> Permit:
        """The permit for a slot on the Redis clock, given the server's time in a reply that
        left at ``sent`` and arrived at ``received`` (monotonic)."""
        ahead = (slot_us - server_now_us) / 1e6
        return cls(earliest=sent + ahead, latest=received + ahead)

    def lateness(self) -> float:
        """Seconds past the slot now, at most: a request should leave at its slot, not later."""
        return time.monotonic() - self.earliest

    def sleep(self, stop: threading.Event | None, sleep: Callable[[float], None]) -> None:
        """Sleep until the slot (never before it). Raises :class:`Stopping` if ``stop`` is set."""
        _wait(self.latest - time.monotonic(), stop, sleep)


@dataclass(frozen=True)
class Grant:
    """What one reservation round trip got: ``count`` permits, the first ``wait`` seconds
    after the server's ``now_us``, then one every ``interval``; or, with ``count`` 0, none
    within the horizon and ``wait`` seconds until one could be."""

    count: int
    wait: float
    now_us: int
    interval_us: int
    sent: float
    received: float
    #: With a cap on live calls: seconds until the earliest held slot lapses when the cap
    #: stopped the grant short (``count`` may then be 0 with a permit free), else None.
    slots_full: float | None = None

    @property
    def granted(self) -> bool:
        return self.count > 0

    def slot_us(self, i: int = 0) -> int:
        """The i-th permit's slot on the Redis clock (microseconds)."""
        return self.now_us + round(self.wait * 1e6) + i * self.interval_us

    def permit(self, i: int = 0) -> Permit:
        return Permit.of_slot(self.slot_us(i), self.now_us, self.sent, self.received)


@dataclass(frozen=True)
class NoSlot:
    """No free live-call slot: the account is at its cap (EXOTEL_MAX_LIVE_CALLS). ``wait``:
    seconds until the earliest held slot's lease lapses (a callback may free one sooner)."""

    wait: float


@dataclass(frozen=True)
class Slot:
    """A permit the feed reserved for one call, as its task message carries it: the slot on
    the Redis clock (microseconds) and the account whose limiter granted it."""

    at_us: int
    account: str


def _wait(seconds: float, stop: threading.Event | None, sleep: Callable[[float], None]) -> None:
    if stop is None:
        if seconds > 0:
            sleep(seconds)
    elif stop.is_set() or (seconds > 0 and stop.wait(seconds)):
        raise Stopping("worker shutting down")


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
        max_wait: float | None = None,
        scripts: Scripts | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_live: int | None = None,
        name: str = "default",
        hold: MasterWatch | None = None,
    ) -> None:
        if calls <= 0 or period <= 0:
            raise ValueError("calls and period must be positive")
        self.key = keys.limiter(account)
        # Live-call slots are kept under the account's name ('default' or its EXOTEL_ACCOUNTS
        # key), which the call record keeps: whoever frees them knows it.
        self.name = name
        self._keys = keys
        self.slots_key = keys.live_slots(name)
        self.max_live = max_live
        self.calls = calls
        self.period = period
        self.margin = margin
        # Rounded up: rounded to nearest, 3 per 1 s gave 333,333 us and 4 permits inside
        # 999,999 us (found by the property test).
        self.interval_us = math.ceil((period + margin) * 1e6 / calls)
        self.max_ahead = max(max_ahead, 0.0)
        self.max_ahead_us = round(self.max_ahead * 1e6)
        self.max_wait = self.max_ahead if max_wait is None else max(max_wait, self.max_ahead)
        self._client = client
        self._scripts = scripts or Scripts(client)
        self._sleep = sleep
        # After a Redis failover the new master may lack the schedule's last moves: no permit
        # until the hold ends (callq.store.epoch).
        self.hold = hold

    @classmethod
    def for_settings(
        cls,
        client: redis.Redis,
        keys: Keys,
        settings: Settings,
        scripts: Scripts | None = None,
        name: str = "default",
        hold: MasterWatch | None = None,
    ) -> Limiter:
        """The limiter of the account ``settings`` describe (see ``Settings.for_account``);
        ``name``: the account's name, under which its live-call slots are kept."""
        return cls(
            client,
            keys,
            settings.exotel_account_sid,
            calls=settings.rate_limit_calls,
            period=settings.rate_limit_period_seconds,
            margin=settings.rate_limit_margin_seconds,
            max_ahead=settings.rate_limit_max_ahead_seconds,
            max_wait=settings.rate_limit_max_wait_seconds,
            scripts=scripts,
            max_live=settings.exotel_max_live_calls,
            name=name,
            hold=hold,
        )

    @property
    def interval(self) -> float:
        """Seconds between two permits."""
        return self.interval_us / 1e6

    @property
    def tolerance(self) -> float:
        """How late a request may leave for its slot: half the margin."""
        return self.margin / 2

    def on_time(self, permit: Permit) -> bool:
        """True while a request may still go out on ``permit`` (at most half the margin late)."""
        return permit.lateness() <= self.tolerance

    def reserve(
        self,
        now_us: int | None = None,
        *,
        ahead: float | None = None,
        count: int = 1,
        claims: Sequence[SlotClaim] = (),
    ) -> Grant:
        """Up to ``count`` permits within ``ahead`` seconds (default: the horizon), in one round
        trip. ``now_us`` replaces the server clock (tests only).

        With a cap on live calls (``max_live``), ``claims`` names the call of each permit in
        slot order: a permit is granted only with its call's slots, so at most
        ``len(claims)`` come back. Without claims (a Call Details look-up) no slot is
        taken."""
        ahead_us = self.max_ahead_us if ahead is None else max(round(ahead * 1e6), 0)
        keys = [self.key]
        args: list[str | int] = [
            self.interval_us,
            ahead_us,
            "" if now_us is None else now_us,
            max(count, 1),
            self.max_ahead_us + self.interval_us,  # the clock-step bound
        ]
        if self.max_live is not None and claims:
            keys.append(self.slots_key)
            args.append(self.max_live)
            for c in claims[: max(count, 1)]:
                args.extend(c.args())
        sent = time.monotonic()
        held = self.held_for()
        if held > 0:
            return Grant(0, held, 0, self.interval_us, sent, sent)
        try:
            reply = self._scripts.limiter_acquire(keys=keys, args=args)
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
        got, wait_us, server_now = reply[:3]
        full = int(reply[3]) if len(reply) > 3 else -1
        held = self.held_for()
        if held > 0:
            # This round trip opened the first connection to a new master, and its watch set
            # the hold before the script ran: the permits it got are not used, and the slots
            # the script took with them are given back (no call of theirs goes out).
            if self.max_live is not None and claims and int(got) > 0:
                LiveSlots(self._client, self._keys, self._scripts).free_many(
                    (c.request_id for c in claims[: int(got)]), self.name
                )
            return Grant(0, held, 0, self.interval_us, sent, time.monotonic())
        return Grant(
            count=int(got),
            wait=int(wait_us) / 1e6,
            now_us=int(server_now),
            interval_us=self.interval_us,
            sent=sent,
            received=time.monotonic(),
            slots_full=full / 1000 if full >= 0 else None,
        )

    def acquire(self, timeout: float | None = None, stop: threading.Event | None = None) -> Permit:
        """Block until this caller holds a permit it can still send on; return it.

        A permit found late on waking (a stall) is dropped and another is reserved: that costs
        throughput, never the limit. Raises :class:`LimiterUnavailable` if Redis is
        unreachable, ``TimeoutError`` if no permit could be had within ``timeout`` seconds
        (nothing is then reserved), or :class:`Stopping` as soon as ``stop`` is set (a reserved
        permit is then left unused).
        """
        started = time.monotonic()
        late = 0
        while True:
            r = self.reserve()
            if r.granted:
                permit = r.permit()
                permit.sleep(stop, self._sleep)
                if self.on_time(permit):
                    return Permit(permit.earliest, permit.latest, time.monotonic() - started)
                late += 1
                if late >= MAX_LATE_IN_A_ROW:
                    # Every permit arrives late: the round trips are slower than the margin
                    # allows. Say so rather than spend the account's permits on nothing.
                    raise LimiterUnavailable(
                        f"{late} permits in a row were late by more than half the margin "
                        f"({self.tolerance:.3f} s): Redis answers too slowly"
                    )
                continue
            if timeout is not None and time.monotonic() - started + r.wait > timeout:
                raise TimeoutError("no permit within the timeout")
            _wait(r.wait, stop, self._sleep)

    def try_acquire(
        self,
        stop: threading.Event | None = None,
        *,
        priority: bool = False,
        claim: SlotClaim | None = None,
    ) -> Permit | float | NoSlot:
        """One reservation, without queueing behind others: a :class:`Permit` (after sleeping
        until its slot, at most the horizon), or the seconds until a slot could be had, for a
        caller that would rather put its call aside than hold a thread.

        ``priority``: reserve the next free slot if it lies within ``max_wait``. Ordinary
        callers and the feed never reserve past the horizon, so the next free slot is at most
        the horizon plus one interval away: a priority call waits no longer than that, however
        many ordinary calls are waiting.

        ``claim``: the call's live slots, taken with the permit under a cap; at the cap the
        answer is :class:`NoSlot` and no permit is spent.
        """
        started = time.monotonic()
        r = self.reserve(
            ahead=self.max_wait if priority else None, claims=() if claim is None else [claim]
        )
        if not r.granted:
            if r.slots_full is not None:
                return NoSlot(r.slots_full)
            return r.wait
        permit = r.permit()
        permit.sleep(stop, self._sleep)
        return Permit(permit.earliest, permit.latest, time.monotonic() - started)

    def next_free(self) -> tuple[int, int]:
        """(the next free slot, the server's now), microseconds on the Redis clock; one round
        trip, reserves nothing."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(self.key)
            pipe.time()
            raw, (sec, usec) = pipe.execute()
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
        now = int(sec) * 1_000_000 + int(usec)
        return max(int(float(str(raw).split()[0])) if raw else now, now), now

    def held_for(self) -> float:
        """Seconds this limiter stays shut after a Redis failover (0: not held)."""
        return 0.0 if self.hold is None else self.hold.held_for()

    def free_slots(self, within: float) -> int:
        """How many permits could still be reserved from now to ``within`` seconds ahead (one
        round trip, reserves nothing)."""
        if self.held_for() > 0:
            return 0
        tat, now = self.next_free()
        return max(0, (now + round(within * 1e6) - tat) // self.interval_us)

    def push_back(self, seconds: float, now_us: int | None = None) -> None:
        """After a 429: no permit for anyone before now + ``seconds``."""
        try:
            self._scripts.limiter_push_back(
                keys=[self.key],
                args=[round(seconds * 1e6), "" if now_us is None else now_us],
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"limiter unreachable: {exc.__class__.__name__}") from exc
