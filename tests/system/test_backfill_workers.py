"""The call_status backfill run by real workers' sweepers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import (
    SIM_SID,
    Workers,
    wait_for,
)
from tests.integration.test_backfill import dead_callback_url, quick_backfill


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (100, 5.0)  # time-scaled for the worker test


@pytest.mark.slow
def test_given_workers_and_a_receiver_that_never_answers_when_a_campaign_runs_then_every_call_has_its_status(
    settings: Settings, ledger: Ledger, sim: Any, tmp_path: Path
) -> None:
    # End to end: the workers' sweepers run the backfill; no callback ever reaches us.
    sim.configure(callbacks=True, time_scale=0.01)
    settings = quick_backfill(settings).model_copy(
        update={
            "callback_url": dead_callback_url(),
            "call_status_backfill_margin_seconds": 1.0,
            "call_status_backfill_interval_seconds": 0.5,
        }
    )
    workers = Workers(settings, tmp_path)
    try:
        csv = campaign_csv(30, time_limit=1, time_out=1)
        assert Enqueuer(settings).enqueue_file(as_stream(csv), "bfe").accepted == 30
        workers.start(1, concurrency=4)
        wait_for(
            lambda: sum(ledger.status("bfe").call_status.values()) == 30,
            timeout=90,
            message=lambda: f"{ledger.status('bfe')} {workers.output()[-2000:]}",
        )
    finally:
        workers.stop()
    truth = sim.truth()
    assert truth["callbacks"]["sent"] == 0  # every status came from the backfill
    final = {c["custom_field"]: c["final_status"] for c in truth["calls"]}
    for rec in ledger.iter_records("bfe"):
        assert rec["call_status"] == final[rec["request_id"]]
    assert truth["details_requests"] <= 30 and truth["rate_limited"] == 0
    assert SIM_SID in truth["max_in_window"]
