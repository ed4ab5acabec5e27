"""``--window-zone callee`` through real workers on the real clock: a window open now in
India and closed in New York (it spans 4 hours around India's time of day, and New York is
9.5 or 10.5 hours behind), so at any hour the Indian callees are dialled and the American
ones wait in their zone's band of the parked set, dialled never."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import AGENT, as_stream, mobile
from tests.conftest import Workers, wait_for

INDIA = [mobile("97", i) for i in range(4)]
US = ["+12025550123", "+12125550187", "+16175550142"]  # New York, New York, Boston


def window_open_in_india_only() -> str:
    local = datetime.now(ZoneInfo("Asia/Kolkata"))
    start = (local.hour * 60 + local.minute - 60) % 1440
    end = (start + 240) % 1440
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def test_given_callees_in_two_zones_when_workers_run_then_only_those_in_their_window_are_dialled(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    rows = ["From,To", *(f"{AGENT},{n}" for n in INDIA + US)]
    opts = CampaignOptions(window=window_open_in_india_only(), window_zone="callee")
    res = Enqueuer(settings).enqueue_file(
        as_stream(("\n".join(rows) + "\n").encode()), "zones", options=opts
    )
    assert res.accepted == len(INDIA) + len(US)
    workers.start(1, concurrency=4)
    wait_for(
        lambda: ledger.status("zones").states["originated"] == len(INDIA),
        timeout=30,
        message=lambda: f"{ledger.status('zones').states} {workers.output()[-2000:]}",
    )
    time.sleep(3 * settings.sweep_interval_seconds)  # more judges and feed passes go by
    status = ledger.status("zones")
    assert status.states["originated"] == len(INDIA)
    assert status.states["queued"] == len(US) and status.parked == len(US)
    assert ledger.parked_counts(["zones"], ready=True) == [0]  # in New York's band
    truth = sim.truth()
    assert sorted(c["to"] for c in truth["calls"]) == sorted(INDIA)
