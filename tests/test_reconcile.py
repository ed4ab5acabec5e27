"""Reconcile, as a plain function: real Redis, the simulator over real HTTP, no Celery."""

from __future__ import annotations

from typing import Any

import pytest

from callq.exotel import ExotelClient, build_connect_params, make_session
from callq.keys import Keys
from callq.ledger import Ledger
from callq.limiter import Limiter
from callq.outcome import Unknown
from callq.reconcile import Reconciler, proof_seconds
from callq.retry import RetryPolicy
from config import Settings
from tests.campaigns import mobile
from tests.conftest import wait_for

CAMPAIGN = "rc"


def make_reconciler(settings: Settings, ledger: Ledger) -> tuple[Reconciler, ExotelClient]:
    client = ExotelClient(settings, make_session())
    limiter = Limiter.for_settings(ledger.redis, ledger.keys, settings)
    policy = RetryPolicy.for_settings(settings)
    return Reconciler(settings, ledger, limiter, client, policy), client


def in_doubt_call(
    ledger: Ledger, client: ExotelClient, settings: Settings, n: int, fault: str | None, sim: Any
) -> str:
    """A call whose request went out (through the simulator) and whose reply was lost."""
    rid = f"{CAMPAIGN}:{n:020x}"
    record = {
        "from": mobile("98", n),
        "to": mobile("97", n),
        "caller_id": "+918030752400",
        "time_limit": "2",
        "time_out": "1",
    }
    assert ledger.enqueue_many(CAMPAIGN, [(rid, record)]) == [1]
    c = ledger.claim(rid, lease_seconds=30, early_tolerance=0, worker="t")
    assert ledger.mark_sent(rid, c.token, lease_seconds=30)
    if fault:
        sim.script(rid, [fault])
        outcome, _ = client.connect(build_connect_params(c.record, rid, settings))
        assert isinstance(outcome, Unknown)
    assert ledger.finish(rid, c.token, "in_doubt", error="in doubt", look_again_in=60).ok
    return rid


def backdate(ledger: Ledger, rid: str, seconds: float) -> None:
    key = ledger.keys.call(rid)
    sent_at = int(ledger.redis.hget(key, "sent_at"))  # type: ignore[arg-type]
    ledger.redis.hset(key, "sent_at", sent_at - int(seconds * 1000))


@pytest.fixture
def rsettings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"exotel_origination_window_seconds": 1.0, "exotel_read_timeout": 0.5}
    )


def test_given_a_lost_reply_when_the_call_was_placed_then_the_search_finds_its_sid(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 1, "slow_placed", sim)
    wait_for(
        lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10, message="call ended"
    )
    assert rec.reconcile(rid).result == "found"
    sim_sid = {c["custom_field"]: c["sid"] for c in sim.truth()["calls"]}[rid]
    record = ledger.get(rid)
    assert (record["state"], record["sid"]) == ("originated", sim_sid)
    assert ledger.request_for_sid(sim_sid) == rid
    assert sim.truth()["details_requests"] >= 1


def test_given_no_call_found_when_it_could_still_be_ringing_then_it_stays_in_doubt(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 2, None, sim)  # nothing reached Exotel
    assert proof_seconds(ledger.get(rid), rsettings) == 4.0  # window 1 + TimeOut 1 + TimeLimit 2
    assert rec.reconcile(rid).result == "not_yet"
    assert ledger.get(rid)["state"] == "in_doubt"
    assert rid in ledger.redis.zrange(ledger.keys.deadlines(), 0, -1)


def test_given_no_call_found_after_it_could_have_ended_then_it_may_be_redialled(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 3, None, sim)
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("unplaced", True)
    assert ledger.get(rid)["state"] == "retrying"
    assert ledger.claim(rid, lease_seconds=5, early_tolerance=0, worker="t").claimed


def test_given_policy_fail_when_proven_unplaced_then_the_call_fails_and_is_never_redialled(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    rec, client = make_reconciler(rsettings.model_copy(update={"in_doubt_policy": "fail"}), ledger)
    rid = in_doubt_call(ledger, client, rsettings, 4, None, sim)
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("failed", False)
    record = ledger.get(rid)
    assert record["state"] == "failed" and "IN_DOUBT_POLICY=fail" in record["last_error"]


def test_given_another_requests_call_to_the_same_number_when_searching_then_it_is_not_taken(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 5, "slow_placed", sim)
    wait_for(
        lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10, message="call ended"
    )
    (call,) = sim.truth()["calls"]
    ledger.redis.hset(keys.sids(), call["sid"], f"{CAMPAIGN}:other")  # someone else's Sid
    backdate(ledger, rid, 10)
    assert rec.reconcile(rid).result == "unplaced"


def test_given_a_call_that_is_not_in_doubt_when_reconciled_then_nothing_happens(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    rec, _ = make_reconciler(rsettings, ledger)
    rid = f"{CAMPAIGN}:{9:020x}"
    ledger.enqueue_many(CAMPAIGN, [(rid, {"from": mobile("98", 9)})])
    assert rec.reconcile(rid).result == "skip:queued"
    assert sim.truth()["details_requests"] == 0
