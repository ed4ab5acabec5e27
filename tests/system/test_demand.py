"""The autoscaling signal through a whole campaign on real workers and the simulator, at the
shipped defaults (test speed): it goes up at enqueue, follows the backlog that can be dialled
now (a campaign held by its calling window never counts), and falls to zero at the end, in
the worker's own /metrics as in Redis."""

from __future__ import annotations

import math
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.demand import Demand, account_rate, hold_seconds, read_demand
from callq.store.ledger import Ledger
from callq.transport.queues import CALLS_QUEUE, PRIORITY_QUEUE
from tests.campaigns import agent_csv, as_stream, verdict
from tests.conftest import Workers, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The worker's unlabelled callq_ gauges."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("callq_") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.slow
def test_given_a_campaign_through_real_workers_then_the_demand_rises_follows_and_falls_to_zero(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    def demand() -> Demand:
        return read_demand(ledger.redis, settings, (CALLS_QUEUE, PRIORITY_QUEUE))

    enq = Enqueuer(settings)
    start = datetime.now(UTC) + timedelta(hours=2)
    enq.enqueue_file(
        as_stream(agent_csv(5, start=9000)),
        "windowed",
        options=CampaignOptions(window=f"{start:%H}:00-{start:%H}:01", timezone="UTC"),
    )
    d = demand()
    assert (d.ready, d.held, d.threads, d.workers) == (0, 5, 0.0, 0)  # held: never counted

    enq.enqueue_file(as_stream(agent_csv(300)), "run")
    d = demand()
    cap = account_rate(settings) * hold_seconds(settings)
    assert (d.ready, d.held) == (300, 5)
    # Up at enqueue, before any worker runs: the rate's worth of threads, in pods.
    assert d.threads == pytest.approx(cap)
    assert d.workers == math.ceil(cap / settings.worker_concurrency) > 0

    port = free_port()
    workers.start(1, METRICS_PORT=str(port))
    workers.start(1)
    samples: list[tuple[int, int]] = []  # (ready, parked per status) while it runs

    def done() -> bool:
        d = demand()
        samples.append((d.ready, ledger.status("run").parked))
        assert d.held == 5
        return ledger.status("run").states["originated"] == 300

    wait_for(done, timeout=90, interval=0.1, message=lambda: workers.output()[-2000:])
    # It followed the backlog: every sample's ready count is the campaign's parked count
    # (read a moment apart, so within what the feed hands out in that moment), and it fell.
    assert any(0 < r < 300 for r, _ in samples), samples
    assert all(abs(r - p) <= 40 for r, p in samples), samples
    # At the end: nothing ready, nothing busy once the last tasks are acked.
    wait_for(lambda: demand().threads == 0.0, timeout=30, message=lambda: str(demand()))
    d = demand()
    assert (d.ready, d.queued, d.reserved, d.workers, d.held) == (0, 0, 0, 0, 5)
    wait_for(lambda: scrape(port).get("callq_worker_threads_needed") == 0.0, timeout=15)
    gauges = scrape(port)
    assert gauges["callq_workers_needed"] == 0.0 and gauges["callq_held_calls"] == 5.0

    v = verdict(ledger, "run", sim.truth())
    assert v["duplicates"] == [] and v["wrong_sid"] == []
