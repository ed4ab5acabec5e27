"""Every Prometheus metric of the project, in one place.

The worker serves them on ``METRICS_PORT`` (threads pool: one process, all threads share the
registry); the callback receiver on its own ``/metrics``. Gauges that describe the whole
deployment (calls in doubt, open breakers) are read from Redis at scrape time, so every
replica reports the same true value; alert on ``max()`` of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callq.keys import Keys

CALLS = Counter("callq_calls", "Calls/connect attempts by outcome", ["outcome"])
EXOTEL_LATENCY = Histogram(
    "callq_exotel_latency_seconds",
    "Time Exotel took to answer Calls/connect",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
LIMITER_WAIT = Histogram(
    "callq_limiter_wait_seconds",
    "Time a call waited for a permit from the global limiter",
    buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
RATE_LIMITED = Counter("callq_rate_limited", "HTTP 429 answers from Exotel")
FED = Counter("callq_fed_calls", "Parked calls the feed handed to the queue with a permit")
FED_LATE = Counter(
    "callq_fed_late",
    "Fed calls that reached a worker after their permit's slot (the permit went unused; the "
    "call reserved another): a sign of too few free worker threads",
)
CALLBACKS = Counter(
    "callq_callbacks",
    "StatusCallbacks received, by call status and match result",
    ["status", "match"],
)
RECONCILED = Counter("callq_reconciled", "Reconcile verdicts", ["verdict"])
STATUS_BACKFILL = Counter(
    "callq_status_backfill",
    "call_status backfill: look-ups made and what came of each call looked up",
    ["result"],
)


class LedgerCollector(Collector):
    """Scrape-time gauges read from Redis: in-doubt and parked calls per campaign, open
    breakers."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

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
        except redis.RedisError:
            return
        yield in_doubt
        yield parked
        yield breaker
