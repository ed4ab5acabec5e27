"""A campaign against a simulator that enforces a live-call cap of 20 slots, through real
workers, with two-leg calls of realistic (time-scaled) length: the cap is never passed, slots
are freed by callbacks, and by their lease when the callbacks are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from callq.store.slots import LiveSlots
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import SIM_SID, Workers, callback_receiver, wait_for

CAP = 20  # slots: 10 two-leg calls at once
CALLS = 60
SCALE = 0.05  # simulated seconds -> real: calls of 30-45 s last 1.5-2.25 s
RING, TALK = (5.0, 10.0), (25.0, 35.0)  # every call completed: 30-45 s of simulated life


def utilisation(truth: dict[str, Any]) -> float:
    """The throughput as a share of what the cap allows (live slots / mean call length):
    the slot-seconds the calls held between the first placement and the last, over the
    cap times that span."""
    calls = truth["calls"]
    t0 = min(c["placed_at"] for c in calls)
    t1 = max(c["placed_at"] for c in calls)
    held = sum(c["slots"] * max(0.0, min(c["ends_at"], t1) - c["placed_at"]) for c in calls)
    return held / (CAP * (t1 - t0))


def run(settings: Settings, sim: Any, ledger: Ledger, tmp_path: Path, campaign: str) -> None:
    result = Enqueuer(settings).enqueue_file(as_stream(campaign_csv(CALLS)), campaign)
    assert result.accepted == CALLS
    workers = Workers(settings, tmp_path)
    try:
        workers.start(1, concurrency=8)
        wait_for(
            lambda: ledger.status(campaign).states.get("originated", 0) == CALLS,
            timeout=60,
            message=lambda: f"{ledger.status(campaign)}\n{workers.output()[-3000:]}",
        )
    finally:
        workers.stop()


@pytest.mark.slow
def test_given_a_live_call_cap_when_a_campaign_runs_then_the_cap_holds_and_callbacks_free_slots(
    settings: Settings, sim: Any, ledger: Ledger, tmp_path: Path
) -> None:
    sim.configure(
        max_live_slots=CAP,
        callbacks=True,
        time_scale=SCALE,
        ring_seconds=list(RING),
        talk_seconds=list(TALK),
        status_mix={"completed": 1.0},
    )
    with callback_receiver(settings.model_copy(update={"exotel_max_live_calls": CAP})) as cb:
        run(cb, sim, ledger, tmp_path, "live")
        slots = LiveSlots(ledger.redis, ledger.keys)
        wait_for(lambda: ledger.status("live").call_status.get("completed", 0) == CALLS, 30)
        wait_for(lambda: slots.used("default") == 0, 10, message="every slot freed")
    truth = sim.truth()
    assert truth["live_refused"] == 0  # never refused at the cap
    assert truth["rate_limited"] == 0
    assert truth["max_live_slots"][SIM_SID] == CAP  # the cap bound, and was never passed
    assert truth["originated"] == CALLS
    # Freed by the callbacks: no lease lapsed (each is 630 s and more), yet 60 calls went
    # through 10 at a time. The precise throughput is in docs/benchmarks.md (live_calls).
    assert utilisation(truth) > 0.75, utilisation(truth)


@pytest.mark.slow
def test_given_dropped_callbacks_when_a_capped_campaign_runs_then_leases_free_the_slots(
    settings: Settings, sim: Any, ledger: Ledger, tmp_path: Path
) -> None:
    sim.configure(
        max_live_slots=CAP,
        callbacks=False,  # every StatusCallback lost
        time_scale=SCALE,
        ring_seconds=list(RING),
        talk_seconds=list(TALK),
        status_mix={"completed": 1.0},
    )
    # The lease: longer than any call lives (2.25 s), as origination + TimeOut + TimeLimit is.
    capped = settings.model_copy(
        update={"exotel_max_live_calls": CAP, "exotel_live_call_lease_seconds": 2.6}
    )
    run(capped, sim, ledger, tmp_path, "lease")
    # 60 two-leg calls need 120 slots of a cap of 20 and no callback ever came: every slot
    # beyond the first 20 was one a lease gave back.
    truth = sim.truth()
    assert truth["live_refused"] == 0
    assert truth["max_live_slots"][SIM_SID] <= CAP
    assert truth["originated"] == CALLS and truth["callbacks"]["sent"] == 0
    status = ledger.status("lease")
    assert status.call_status == {} or sum(status.call_status.values()) == 0
