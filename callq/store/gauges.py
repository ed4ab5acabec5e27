"""Scrape-time gauges read from Redis, so every replica reports the same true value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callq.store.keys import Keys


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
