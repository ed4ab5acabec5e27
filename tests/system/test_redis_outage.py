"""Redis goes away mid-campaign: the limiter and the claim fail closed, nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.embedded import EmbeddedRedis
from tests.campaigns import as_stream, campaign_csv, verdict
from tests.conftest import Workers, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (20, 2.0)


def test_given_redis_stops_mid_campaign_when_it_returns_then_the_campaign_finishes_once(
    settings: Settings, sim: Any, tmp_path: Path, request: Any
) -> None:
    data = tmp_path / "redis"
    server = EmbeddedRedis(data).start()
    request.addfinalizer(server.stop)
    settings = settings.model_copy(
        update={
            "redis_url": server.url,
            "visibility_timeout_seconds": 60,
            "exotel_read_timeout": 8.0,
        }
    )
    ledger = Ledger(make_redis(server.url), Keys(settings.key_prefix))
    workers = Workers(settings, tmp_path)
    request.addfinalizer(workers.stop)
    sim.configure(latency=True, time_scale=0.5)
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(60)), "outage")
    workers.start(2, concurrency=8)
    wait_for(lambda: sim.truth()["requests"] >= 15, timeout=60, message="calls going out")

    server.stop()  # Redis is gone: AOF kept on disk
    time.sleep(0.5)  # requests already on the wire arrive
    during = sim.truth()["requests"]
    time.sleep(4)
    assert sim.truth()["requests"] == during, "a call went out while Redis was down"

    server = EmbeddedRedis(data, port=server.port).start()
    request.addfinalizer(server.stop)
    wait_for(
        lambda: ledger.status("outage").settled,
        timeout=150,
        message=lambda: f"{ledger.status('outage').states} {workers.output()[-2500:]}",
    )
    truth = sim.truth()
    v = verdict(ledger, "outage", truth)
    assert v["duplicates"] == [] and v["wrong_sid"] == []
    assert v["states"] == {"originated": 60}
    assert sorted(truth["by_custom_field"].values()) == [1] * 60
