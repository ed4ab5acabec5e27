"""Operating a real worker: metrics, heartbeat, graceful shutdown."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from devstack.embedded import free_port
from tests.campaigns import as_stream, campaign_csv, verdict
from tests.conftest import Workers, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (20, 2.0)  # 10 calls/s: slow enough to catch calls waiting for a permit


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_given_metrics_and_heartbeat_settings_when_a_campaign_runs_then_both_are_served(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger, request: Any
) -> None:
    port = free_port()
    beat = tmp_path / "hb" / "heartbeat"
    settings = settings.model_copy(
        update={"metrics_port": port, "worker_heartbeat_file": str(beat)}
    )
    workers = Workers(settings, tmp_path)
    request.addfinalizer(workers.stop)
    sim.script("+919700000003", ["500"])
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(6)), "metrics")
    workers.start(1, concurrency=4)
    wait_for(
        lambda: ledger.status("metrics").states["originated"] == 6,
        timeout=60,
        message=lambda: str(ledger.status("metrics").states),
    )
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert metric(text, 'callq_calls_total{outcome="originated"}') == 6
    assert metric(text, 'callq_calls_total{outcome="not_placed"}') == 1
    assert metric(text, "callq_exotel_latency_seconds_count") == 7
    assert metric(text, 'callq_in_doubt_calls{campaign="metrics"}') == 0
    assert beat.exists() and time.time() - beat.stat().st_mtime < 10


def test_given_sigterm_mid_campaign_when_the_worker_stops_then_nothing_is_left_dialing_or_dialled_twice(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger, request: Any
) -> None:
    # A read timeout above the simulator's latency tail (5.5 s): no call goes in doubt here.
    settings = settings.model_copy(update={"exotel_read_timeout": 8.0})
    workers = Workers(settings, tmp_path)
    request.addfinalizer(workers.stop)
    sim.configure(latency=True, time_scale=1.0)
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(60)), "term")
    (first,) = workers.start(1, concurrency=12)
    wait_for(lambda: sim.truth()["requests"] >= 10, timeout=60, message="calls in flight")
    assert ledger.status("term").states["dialing"] > 0
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=60)
    # In-flight requests finished and were recorded; calls waiting for a permit were given
    # back. No lease had to run out.
    after = ledger.status("term").states
    assert after["dialing"] == 0, after
    assert after["in_doubt"] == 0, after
    assert "released" in workers.output()
    workers.start(1, concurrency=12)
    wait_for(
        lambda: ledger.status("term").states["originated"] == 60,
        timeout=90,
        message=lambda: str(ledger.status("term").states),
    )
    v = verdict(ledger, "term", sim.truth())
    assert v["duplicates"] == [] and v["wrong_sid"] == []
    assert sorted(sim.truth()["by_custom_field"].values()) == [1] * 60
