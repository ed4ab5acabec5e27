"""`producer forecast FILE.csv` and `status ID --forecast`, as an operator runs them: a real
process, a real Redis (no worker: the campaigns stay parked, so the figures hold still)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.demand import account_rate
from callq.store.ledger import Ledger
from tests.campaigns import as_stream, campaign_csv
from tests.integration.test_producer_cli import run

BAD = "+919800000103,+919700000103,08030752400,,too-long,99999,30"


def test_given_a_file_and_an_end_at_too_soon_when_forecast_then_expiries_and_a_later_end_at(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(400, extra_rows=[BAD]))
    rate = account_rate(settings)
    # From a send_at a minute ahead, half the time the 400 calls need: about 200 expire.
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    end_at = send_at + timedelta(seconds=200 / rate)
    window = ["--send-at", send_at.isoformat(), "--end-at", end_at.isoformat()]
    proc = run(settings, "forecast", str(path), *window, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["calls"] == 400 and doc["rejected"] == 1
    assert doc["finish"] is None
    assert datetime.fromisoformat(doc["start"]) == send_at
    assert abs(doc["expire"] - 200) <= 10, doc
    assert doc["bound"] == "rate" and doc["share"] == 1.0
    assert abs(doc["calls_per_second"] - rate) < 1e-3
    assert any(a.startswith("a later end_at") for a in doc["advice"]), doc
    assert ledger.status("forecast").total == 0  # a forecast enqueues nothing
    # The same without end_at: it finishes in calls / rate.
    doc = json.loads(run(settings, "forecast", str(path), "--json").stdout)
    assert doc["expire"] == 0 and abs(doc["seconds"] - 400 / rate) <= 0.02 * 400 / rate
    text = run(settings, "forecast", str(path)).stdout
    assert "forecast: 400 calls" in text and "1 rows would be rejected" in text


def test_given_another_open_campaign_when_forecast_then_the_share_follows_the_weights(
    settings: Settings, tmp_path: Path
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(1000, start=5000)), "rival")
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(100))
    doc = json.loads(run(settings, "forecast", str(path), "--json").stdout)
    assert doc["share"] == 0.5
    doc = json.loads(run(settings, "forecast", str(path), "--weight", "3", "--json").stdout)
    assert doc["share"] == 0.75


def test_given_a_stated_mix_when_forecast_then_redials_are_expected_and_a_bad_mix_is_named(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(100))
    args = ["forecast", str(path), "--redial-on", "busy", "--redials", "1"]
    doc = json.loads(run(settings, *args, "--mix", "completed=0.8,busy=0.2", "--json").stdout)
    assert doc["redials"] == 20.0 and doc["dials"] == 120.0
    bad = run(settings, *args, "--mix", "answered=1")
    assert bad.returncode == 2 and "--mix" in bad.stderr and "answered=1" in bad.stderr
    unknown = run(settings, "forecast", str(path), "--account", "nope")
    assert unknown.returncode == 2 and "account" in unknown.stderr


def test_given_a_running_campaign_when_status_forecast_then_json_has_the_same_figures(
    settings: Settings, tmp_path: Path
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(300)), "live")
    plain = json.loads(run(settings, "status", "live", "--json").stdout)
    assert "forecast" not in plain  # the contract's status --json is unchanged
    before = time.time()
    doc = json.loads(run(settings, "status", "live", "--json", "--forecast").stdout)
    fc = doc["forecast"]
    assert fc["calls"] == 300 and fc["expire"] == 0
    start = datetime.fromisoformat(fc["start"]).timestamp()
    assert start >= before - 1
    assert abs(fc["seconds"] - 300 / account_rate(settings)) <= 0.02 * 300 / account_rate(settings)
    text = run(settings, "status", "live", "--forecast").stdout
    assert "forecast: 300 calls" in text and "finishes" in text


def test_given_an_enqueued_campaign_when_its_file_is_forecast_then_its_stored_controls_count(
    settings: Settings, tmp_path: Path
) -> None:
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    end_at = send_at + timedelta(seconds=100 / account_rate(settings))
    options = CampaignOptions(send_at=send_at, end_at=end_at)
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(400)), "stored", options=options)
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(400))
    doc = json.loads(run(settings, "forecast", str(path), "--campaign", "stored", "--json").stdout)
    # Its own send_at and end_at (300 of 400 expire), and it is not its own rival.
    assert datetime.fromisoformat(doc["start"]) == send_at
    assert abs(doc["expire"] - 300) <= 10 and doc["share"] == 1.0
    # Without --campaign the file is a new campaign beside "stored": half the permits.
    doc = json.loads(run(settings, "forecast", str(path), "--json").stdout)
    assert doc["share"] == 0.5 and doc["expire"] == 0
