"""Campaign controls with real worker processes, the simulator's ground truth, and (for
redials) the real callback receiver: priority, pause/resume/cancel, redial, two accounts."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.intake.report import attempt_rows
from callq.settings import Settings
from callq.store.ledger import Ledger
from devstack.embedded import free_port
from devstack.workers import Receiver
from producer import cancel_campaign, pause_campaign, resume_campaign
from simulator import Account, SimConfig, Simulator
from tests.campaigns import as_stream, campaign_csv, verdict
from tests.conftest import SIM_KEY, SIM_SID, SIM_TOKEN, Workers, make_settings, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (100, 5.0)  # time-scaled: 100 per 5 s (20/s)


def waiting(ledger: Ledger, campaign: str) -> int:
    s = ledger.status(campaign).states
    return s["queued"] + s["dialing"] + s["retrying"]


def test_given_a_saturating_campaign_when_a_priority_call_comes_then_it_goes_out_within_2_s(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(campaign_csv(400)), "bulk")
    workers.start(2, concurrency=8)
    wait_for(lambda: ledger.status("bulk").states["originated"] >= 60, timeout=60)
    # The campaign saturates the limit; one priority call and one ordinary call come now.
    enq.enqueue_file(
        as_stream(campaign_csv(1, start=900)), "now", options=CampaignOptions(priority=True)
    )
    enq.enqueue_file(as_stream(campaign_csv(1, start=901)), "normal")
    (prio,) = ledger.iter_request_ids("now")
    (normal,) = ledger.iter_request_ids("normal")
    wait_for(lambda: ledger.get(prio).get("state") == "originated", timeout=30)
    rec = ledger.get(prio)
    latency = (int(rec["sent_at"]) - int(rec["created_at"])) / 1000
    assert latency <= 2.0, f"priority call waited {latency:.2f} s"
    assert waiting(ledger, "bulk") > 50  # the campaign was still saturating the limit
    # An ordinary one-call campaign is not stuck behind the bulk one either: each campaign's
    # parked calls are fed to the queue on their own (its latency is a sweep or two).
    wait_for(lambda: ledger.get(normal).get("state") == "originated", timeout=30)
    wait_for(lambda: waiting(ledger, "bulk") == 0, timeout=90)
    truth = sim.truth()
    assert truth["rate_limited"] == 0
    assert truth["max_in_window"][SIM_SID] <= 100
    assert max(truth["by_custom_field"].values()) == 1


def test_given_a_running_campaign_when_paused_resumed_and_cancelled_then_none_is_lost_or_doubled(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(300)), "prc")
    workers.start(2, concurrency=8)
    wait_for(lambda: ledger.status("prc").states["originated"] >= 40, timeout=60)
    pause_campaign("prc", settings=settings)
    at_pause = sim.truth()["requests"]
    time.sleep(1.5)  # one reservation (max_ahead 1 s) plus the requests in flight
    settled_count = sim.truth()["requests"]
    assert settled_count - at_pause <= 25, "dialling did not stop within one reservation"
    time.sleep(2.0)
    assert sim.truth()["requests"] == settled_count  # nothing while paused
    assert ledger.status("prc").parked > 0
    resume_campaign("prc", settings=settings)
    wait_for(lambda: sim.truth()["requests"] >= settled_count + 40, timeout=30)
    cancelled = cancel_campaign("prc", settings=settings)
    assert cancelled > 0
    wait_for(lambda: waiting(ledger, "prc") == 0 and ledger.status("prc").parked == 0, timeout=30)
    time.sleep(1.0)
    truth = sim.truth()
    v = verdict(ledger, "prc", truth)
    assert v["duplicates"] == [] and v["wrong_sid"] == []
    states = v["states"]
    assert set(states) <= {"originated", "cancelled"}, states
    assert states["originated"] + states["cancelled"] == 300
    assert states["originated"] == truth["originated"]  # every placed call recorded
    assert truth["rate_limited"] == 0


def test_given_busy_answers_when_redials_are_set_then_each_call_is_redialled_at_most_n_times(
    settings: Settings, sim: Any, ledger: Ledger, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings.model_copy(
        update={
            "callback_url": f"http://127.0.0.1:{port}/exotel/status-callback",
            "callback_token": SecretStr("cb-token"),
        }
    )
    sim.configure(
        callbacks=True,
        status_mix={"busy": 1.0},
        p_duplicate_callback=1.0,  # every callback twice: a repeat must not redial again
        time_scale=0.01,
    )
    receiver = Receiver(settings, tmp_path, port).start()
    workers = Workers(settings, tmp_path)
    try:
        Enqueuer(settings).enqueue_file(
            as_stream(campaign_csv(4)),
            "redial",
            options=CampaignOptions(redial_on=("busy",), redials=2, redial_interval=1.0),
        )
        workers.start(1, concurrency=4)

        def done() -> bool:
            recs = list(ledger.iter_records("redial"))
            return all(
                r.get("redials_done") == "2"
                and r["state"] == "originated"
                and r.get("call_status") == "busy"
                and len(r.get("prev_sids", "").split()) == 2
                for r in recs
            )

        wait_for(done, timeout=60, message="two redials each")
        time.sleep(2.0)  # a third redial, if any, would be due by now
        truth = sim.truth()
        assert sorted(truth["by_custom_field"].values()) == [3, 3, 3, 3]
        assert truth["callbacks"]["duplicates"] >= 8
        rows = list(attempt_rows(ledger, "redial"))
        assert len(rows) == 12
        for rid in ledger.iter_request_ids("redial"):
            mine = [r for r in rows if r["request_id"] == rid]
            assert [r["redial"] for r in mine] == ["0", "1", "2"]
            assert len({r["sid"] for r in mine}) == 3 and all(r["sid"] for r in mine)
            assert {r["call_status"] for r in mine} == {"busy"}
            sent = [e["at"] for e in ledger.attempts_log(rid) if "outcome" in e]
            assert all(b - a >= 1.0 for a, b in itertools.pairwise(sent))
        assert ledger.status("redial").redials == 8
    finally:
        workers.stop()
        receiver.stop()


def test_given_two_accounts_at_different_limits_when_both_run_then_each_holds_its_own(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    # Account "slow" at 10 per 5 s, the default one at 100 per 5 s, on one simulator.
    config = SimConfig(
        accounts=[
            Account(SIM_SID, SIM_KEY, SIM_TOKEN, rate_limit=100, period=5.0),
            Account("slow-sid", "slow-key", "slow-token", rate_limit=10, period=5.0),
        ],
        latency=False,
        callbacks=False,
        seed=3,
    )
    sim = Simulator(config).start()
    settings = make_settings(
        **{
            **settings.model_dump(),
            "exotel_base_url": sim.url,
            "exotel_accounts": {
                "slow": {
                    "account_sid": "slow-sid",
                    "api_key": "slow-key",
                    "api_token": "slow-token",
                    "rate_limit_calls": 10,
                    "rate_limit_period_seconds": 5.0,
                }
            },
        }
    )
    workers = Workers(settings, tmp_path)
    enq = Enqueuer(settings)
    try:
        enq.enqueue_file(
            as_stream(campaign_csv(60, start=500)),
            "slowacct",
            options=CampaignOptions(account="slow"),
        )
        enq.enqueue_file(as_stream(campaign_csv(200)), "fastacct")
        began = time.monotonic()
        workers.start(2, concurrency=8)
        wait_for(lambda: waiting(ledger, "fastacct") == 0, timeout=60)
        fast_s = time.monotonic() - began
        slow_done = ledger.status("slowacct").states["originated"]
        truth = sim.truth()
        assert truth["rate_limited"] == 0
        assert truth["max_in_window"][SIM_SID] <= 100
        assert truth["max_in_window"]["slow-sid"] <= 10
        # 200 calls at 20/s is 10 s of permits; the slow account must not hold it back.
        assert fast_s < 25, f"the fast account took {fast_s:.1f} s"
        assert slow_done < 60  # the slow one is still going, at its own pace
        # ... and the fast one did not hold it back: at least half its 2/s in that time.
        assert slow_done >= fast_s, f"{slow_done} slow-account calls in {fast_s:.1f} s"
        print(f"fast account: 200 calls in {fast_s:.1f} s; slow account: {slow_done} calls")
        # Compare with the simulator once nothing is in flight (a slow-account request can
        # reach it between the two reads above): a warm stop lets sent requests finish.
        workers.stop()
        slow_recorded = ledger.status("slowacct").states["originated"]
        by_account: dict[str, int] = {}
        for call in sim.truth()["calls"]:
            by_account[call["account_sid"]] = by_account.get(call["account_sid"], 0) + 1
        assert by_account[SIM_SID] == 200 and by_account["slow-sid"] == slow_recorded
    finally:
        workers.stop()
        sim.stop()
