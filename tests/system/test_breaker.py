"""The per-account breaker with real workers: a bad token pauses dialling, it never fails calls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callq.dialing.breaker import Breaker
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import Workers, wait_for


@pytest.mark.slow
def test_given_a_bad_token_when_the_campaign_runs_then_it_pauses_without_failing_calls(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger, request: Any
) -> None:
    settings = settings.model_copy(update={"breaker_cooldown_seconds": 2.0})
    bad = settings.model_copy(
        update={"exotel_api_token": settings.exotel_api_token.__class__("wrong")}
    )
    bad_workers = Workers(bad, tmp_path / "bad")
    (tmp_path / "bad").mkdir()
    request.addfinalizer(bad_workers.stop)
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(10)), "auth")
    bad_workers.start(1, concurrency=4)
    wait_for(
        lambda: Breaker(ledger.redis, ledger.keys, settings.exotel_account_sid).state() != {},
        timeout=30,
        message="breaker open",
    )
    time.sleep(5)  # two cool-downs: probes, each refused
    states = ledger.status("auth").states
    assert states["failed"] == 0 and states["originated"] == 0, states
    assert states["queued"] + states["retrying"] == 10, states
    assert all(r["attempts"] == "0" for r in ledger.iter_records("auth"))
    truth = sim.truth()
    assert truth["originated"] == 0
    assert truth["requests"] == 0  # 401s are refused before they count as connect requests
    env = {**{k: v for k, v in os.environ.items()}, **settings.to_env()}
    out = subprocess.run(
        [sys.executable, "-m", "producer", "status", "auth"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "HELD: 10 calls wait: Exotel refused the account (HTTP 401" in out
    assert "dialling resumes with one probe call at" in out
    bad_workers.stop()

    good = Workers(settings, tmp_path)
    request.addfinalizer(good.stop)
    good.start(1, concurrency=4)
    wait_for(
        lambda: ledger.status("auth").states["originated"] == 10,
        timeout=60,
        message=lambda: str(ledger.status("auth").states),
    )
    assert Breaker(ledger.redis, ledger.keys, settings.exotel_account_sid).state() == {}
    assert sorted(sim.truth()["by_custom_field"].values()) == [1] * 10
