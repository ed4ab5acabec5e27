"""Scrape-time gauges read from Redis, so every replica reports the same true value."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callq.settings import Settings
from callq.store.demand import read_demand
from callq.store.keys import Keys
from callq.store.slots import LiveSlots

log = logging.getLogger("callq.metrics")
#: A scrape that cannot read Redis is logged at most once in this many seconds.
LOG_EVERY_SECONDS = 300.0


class LedgerCollector(Collector):
    """Scrape-time gauges read from Redis: in-doubt and parked calls per campaign, open
    breakers, and live-call slots in use against each account's cap (``caps``: account name
    -> EXOTEL_MAX_LIVE_CALLS, for the accounts that have one)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, caps: Mapping[str, int] | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.caps = dict(caps or {})

    def collect(self) -> Iterator[Any]:
        in_doubt = GaugeMetricFamily(
            "callq_in_doubt_calls", "Calls in doubt, per campaign", labels=["campaign"]
        )
        parked = GaugeMetricFamily(
            "callq_parked_calls",
            "Waiting calls held in a campaign's parked set (paused, outside the window, "
            "no permit within the horizon, breaker open)",
            labels=["campaign"],
        )
        breaker = GaugeMetricFamily(
            "callq_breaker_open", "1 while an account's breaker is open", labels=["account"]
        )
        live = GaugeMetricFamily(
            "callq_live_call_slots",
            "Live-call slots in use per account (2 per connect-two-numbers call, 1 per flow "
            "call), of accounts with EXOTEL_MAX_LIVE_CALLS",
            labels=["account"],
        )
        cap = GaugeMetricFamily(
            "callq_live_call_slots_cap", "EXOTEL_MAX_LIVE_CALLS per account", labels=["account"]
        )
        try:
            campaigns = sorted(str(c) for c in self.client.smembers(self.keys.campaigns()))
            pipe = self.client.pipeline(transaction=False)
            for c in campaigns:
                pipe.hget(self.keys.campaign_counts(c), "in_doubt")
                pipe.zcard(self.keys.campaign_parked(c))
            values = pipe.execute()
            for i, c in enumerate(campaigns):
                in_doubt.add_metric([c], float(values[2 * i] or 0))
                parked.add_metric([c], float(values[2 * i + 1] or 0))
            for key in self.client.scan_iter(match=self.keys.breaker("*"), count=100):
                account = str(key).rsplit(":", 1)[-1]
                breaker.add_metric([account], 1.0)
            slots = LiveSlots(self.client, self.keys)
            for name, most in sorted(self.caps.items()):
                live.add_metric([name], float(slots.used(name)))
                cap.add_metric([name], float(most))
        except redis.RedisError:
            return
        yield in_doubt
        yield parked
        yield breaker
        if self.caps:
            yield live
            yield cap


class DemandCollector(Collector):
    """Scrape-time gauges of the real demand for worker threads (callq.store.demand), for
    an autoscaler: KEDA's ``prometheus`` trigger, or the HPA's external metrics through an
    adapter. Every replica reports the same value: scale on ``max()`` of it. A scrape that
    cannot read Redis yields nothing (the series go stale, the scaler's fallback applies)
    and is logged at most once every LOG_EVERY_SECONDS."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        queues: Sequence[str],
        *,
        clock: Any = time.monotonic,
        broker: redis.Redis | None = None,
    ) -> None:
        self.client = client
        self.broker = broker
        self.settings = settings
        self.queues = tuple(queues)
        self._clock = clock
        self._logged_at: float | None = None

    def collect(self) -> Iterator[Any]:
        try:
            d = read_demand(self.client, self.settings, self.queues, broker_client=self.broker)
        except redis.RedisError as exc:
            now = self._clock()
            if self._logged_at is None or now - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = now
                log.warning("demand gauges: Redis did not answer (%s)", exc.__class__.__name__)
            return
        ready = GaugeMetricFamily(
            "callq_ready_calls",
            "Parked calls that can be dialled now (campaign open, breaker closed), per account",
            labels=["account"],
        )
        needed = GaugeMetricFamily(
            "callq_account_threads_needed",
            "Worker threads an account's ready calls can use: min(ready, rate x hold)",
            labels=["account"],
        )
        for a in d.accounts:
            ready.add_metric([a.account], float(a.ready))
            needed.add_metric([a.account], round(a.threads, 3))
        yield ready
        yield needed
        yield GaugeMetricFamily(
            "callq_held_calls",
            "Parked calls that cannot be dialled now (paused, calling window, send_at, "
            "breaker open, unknown account)",
            value=float(d.held),
        )
        yield GaugeMetricFamily(
            "callq_busy_messages",
            "place_call and reconcile messages queued in the broker or held by a worker",
            value=float(d.queued + d.reserved),
        )
        yield GaugeMetricFamily(
            "callq_worker_threads_needed",
            "Worker threads the demand needs now, all accounts: the autoscaling signal",
            value=round(d.threads, 3),
        )
        yield GaugeMetricFamily(
            "callq_workers_needed",
            "Worker pods the demand needs now: ceil(threads needed / WORKER_CONCURRENCY)",
            value=float(d.workers),
        )
