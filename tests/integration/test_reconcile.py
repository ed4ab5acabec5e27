"""Reconcile, as a plain function: real Redis, the simulator over real HTTP, no Celery."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

import callq.dialing.reconcile as reconcile_module
from callq.dialing.limiter import Limiter
from callq.dialing.reconcile import Reconciler, exotel_instants, proof_seconds
from callq.dialing.retry import RetryPolicy
from callq.exotel.client import ExotelClient, make_session
from callq.exotel.outcome import Unknown
from callq.exotel.params import build_connect_params
from callq.exotel.parties import record_parties, request_parties
from callq.ids import campaign_of
from callq.settings import ConfigError, ExotelAccount, Settings, caller_ids, load_settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from tests.campaigns import mobile
from tests.conftest import SIM_SID, callback_receiver, make_dialer, placed, wait_for

CAMPAIGN = "rc"


def make_reconciler(settings: Settings, ledger: Ledger) -> tuple[Reconciler, ExotelClient]:
    client = ExotelClient(settings, make_session())
    limiter = Limiter.for_settings(ledger.redis, ledger.keys, settings)
    policy = RetryPolicy.for_settings(settings)
    return Reconciler(settings, ledger, limiter, client, policy), client


FLOW_URL = "http://my.exotel.com/acct/exoml/start_voice/1"
EXOPHONE = "+918030752400"


def in_doubt_call(
    ledger: Ledger,
    client: ExotelClient,
    settings: Settings,
    n: int,
    fault: str | None,
    sim: Any,
    *,
    flow: bool = False,
    campaign: str = CAMPAIGN,
    numbers: tuple[str, str] | None = None,
    time_out: int = 1,
    url_rid: bool = True,
) -> str:
    """A call whose request went out (through the simulator) and whose reply was lost.
    ``flow``: connected to a call flow (Url) instead of a second number. ``numbers``: (From,
    To) instead of ones made from ``n``. ``url_rid=False``: its StatusCallback URL does not
    name the request (a call sent by a release before it did)."""
    rid = f"{campaign}:{n:020x}"
    frm, to = numbers or (mobile("98", n), mobile("97", n))
    record = {
        "from": frm,
        "caller_id": EXOPHONE,
        "time_limit": "2",
        "time_out": str(time_out),
    }
    record.update({"url": FLOW_URL} if flow else {"to": to})
    assert ledger.enqueue_many(campaign, [(rid, record)]) == [1]
    c = ledger.claim(rid, lease_seconds=30, early_tolerance=0, worker="t")
    # As the dialer does: the request's parties go into the unresolved index.
    parties = request_parties(build_connect_params(c.record.request(), rid, settings))
    assert ledger.mark_sent(rid, c.claim, lease_seconds=30, parties=parties)
    if fault:
        sim.script(rid, [fault])
        params = build_connect_params(c.record.request(), rid, settings, attempt=c.attempts)
        if not url_rid:
            target = settings.callback_target()
            params = [(k, target if k == "StatusCallback" and target else v) for k, v in params]
        outcome, _ = client.connect(params)
        assert isinstance(outcome, Unknown)
    assert ledger.finish(rid, c.claim, "in_doubt", error="in doubt", look_again_in=60).ok
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
    record = ledger.record(rid)
    assert record is not None
    assert proof_seconds(record, rsettings) == 4.0  # window 1 + TimeOut 1 + TimeLimit 2
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


def test_given_attempt_1_proven_placed_by_a_kept_callback_when_attempt_2_is_proven_unplaced_then_not_redialled(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Review of cbrid: attempt 1 in doubt, wrongly judged unplaced, redialled; attempt 2 went
    # in doubt too, and attempt 1's callback came meanwhile (kept apart: attempt 2 was live).
    # Attempt 2 never reached Exotel: "proven unplaced" must not dial the person a third
    # time: the kept callback proves the call was placed (attempt 1's Sid).
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 4, None, sim)
    claim1 = ledger.get(rid)["claim"]
    assert ledger.finish(rid, claim1, "retrying", error="unplaced", next_in=0, look_again_in=60).ok
    c2 = ledger.claim(rid, lease_seconds=30, early_tolerance=0, worker="t")
    parties = request_parties(build_connect_params(c2.record.request(), rid, rsettings))
    assert c2.attempts == 2 and ledger.mark_sent(rid, c2.claim, lease_seconds=30, parties=parties)
    assert ledger.finish(rid, c2.claim, "in_doubt", error="in doubt", look_again_in=60).ok
    store = CallbackStore(ledger.redis, ledger.keys)
    late = CallbackEvent(sid="sid-attempt-1", status="completed", rid=rid, attempt=1)
    assert store.apply_event(late).stale_attempt
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("found:earlier attempt's callback", False)
    record = ledger.get(rid)
    assert (record["state"], record["sid"]) == ("originated", "sid-attempt-1")
    assert not ledger.claim(rid, lease_seconds=5, early_tolerance=0, worker="t").claimed


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


def test_given_an_in_doubt_flow_call_whose_callback_came_first_when_found_then_it_is_applied(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    # R3: a flow call's callback has no CustomField; sent to a URL that does not name its
    # request (a call placed by a release before the URL did), the receiver keeps it as
    # pending (answered 200) until the Sid is known. Call Details then finds the Sid: the
    # pending callback must be applied (call_status, counters, the redial on busy), as the
    # dialer does.
    sim.configure(callbacks=True, slow_seconds=1.5, time_scale=0.01, status_mix={"busy": 1.0})
    ledger.set_controls(CAMPAIGN, {"redial_on": "busy", "redials": "1", "redial_interval": "600"})
    with callback_receiver(rsettings) as cb:
        rec, client = make_reconciler(cb, ledger)
        rid = in_doubt_call(ledger, client, cb, 11, "slow_placed", sim, flow=True, url_rid=False)
        wait_for(lambda: sim.truth()["callbacks"]["sent"] == 1, timeout=10, message="callback sent")
    (call,) = sim.truth()["calls"]
    assert ledger.redis.exists(keys.pending_callback(call["sid"]))
    assert ledger.get(rid)["state"] == "in_doubt"
    assert rec.reconcile(rid).result == "found"
    record = ledger.get(rid)
    assert record["sid"] == call["sid"] and record["call_status"] == "busy"
    assert record["state"] == "retrying" and record["redials_done"] == "1"
    assert ledger.status(CAMPAIGN).call_status == {"busy": 1}
    assert not ledger.redis.exists(keys.pending_callback(call["sid"]))


def test_given_an_in_doubt_flow_call_when_its_callback_names_it_in_the_url_then_reconcile_finds_it_settled(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    # The same call, placed with the request id in its StatusCallback URL: the callback (the
    # four basic fields only, no CustomField) names its request, so it settles the call in
    # one step, with the Sid the worker never learned; reconcile has nothing left to do.
    # The callback comes late (1.5 s), after the reply timed out (0.5 s): the call in doubt.
    sim.configure(
        callbacks=True,
        slow_seconds=1.5,
        time_scale=0.01,
        status_mix={"busy": 1.0},
        p_late_callback=1.0,
        late_callback_seconds=150,
    )
    ledger.set_controls(CAMPAIGN, {"redial_on": "busy", "redials": "1", "redial_interval": "600"})
    with callback_receiver(rsettings) as cb:
        rec, client = make_reconciler(cb, ledger)
        rid = in_doubt_call(ledger, client, cb, 12, "slow_placed", sim, flow=True)
        assert ledger.get(rid)["state"] == "in_doubt"
        wait_for(lambda: sim.truth()["callbacks"]["sent"] == 1, timeout=10, message="callback sent")
    (call,) = sim.truth()["calls"]
    (delivery,) = sim.truth()["callbacks"]["deliveries"]
    assert delivery["payload_custom_field"] is None  # a flow's: the URL is all that names it
    assert not ledger.redis.exists(keys.pending_callback(call["sid"]))
    record = ledger.get(rid)
    assert record["sid"] == call["sid"] and record["call_status"] == "busy"
    assert record["state"] == "retrying" and record["redials_done"] == "1"
    assert ledger.request_for_sid(call["sid"]) == rid
    assert rec.reconcile(rid).kind == "skip"
    assert ledger.status(CAMPAIGN).call_status == {"busy": 1}
    assert sim.truth()["details_requests"] == 0  # no Call Details search was needed


def test_given_two_in_doubt_flow_calls_with_the_same_numbers_when_both_callbacks_come_then_each_is_settled(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Finding 9's pair: both placed, both replies lost, both callbacks without CustomField;
    # Call Details cannot tell whose is whose (reconcile leaves them `ambiguous`). The URL
    # names each callback's request: each is settled with its own Sid, none left for a person.
    sim.configure(
        callbacks=True,
        slow_seconds=1.5,
        time_scale=0.01,
        p_late_callback=1.0,
        late_callback_seconds=150,
    )
    numbers = (mobile("98", 63), mobile("97", 63))
    with callback_receiver(rsettings) as cb:
        rec, client = make_reconciler(cb, ledger)
        a = in_doubt_call(ledger, client, cb, 63, "slow_placed", sim, flow=True, numbers=numbers)
        b = in_doubt_call(
            ledger, client, cb, 63, "slow_placed", sim, flow=True, numbers=numbers, campaign="rc2"
        )
        assert ledger.get(a)["state"] == ledger.get(b)["state"] == "in_doubt"
        wait_for(lambda: sim.truth()["callbacks"]["sent"] == 2, timeout=10, message="callbacks")
    owner = {c["custom_field"]: c["sid"] for c in sim.truth()["calls"]}
    assert set(owner) == {a, b}
    for rid in (a, b):
        record = ledger.get(rid)
        assert (record["state"], record["sid"]) == ("originated", owner[rid]), rid
        assert "ambiguous" not in record.get("last_error", "")
        assert rec.reconcile(rid).kind == "skip"
    assert sim.truth()["by_custom_field"] == {a: 1, b: 1}  # each dialled once


def redial_in_doubt(
    settings: Settings, ledger: Ledger, sim: Any, n: int, fault: str
) -> tuple[str, str]:
    """Attempt 1 placed (S1) and its callback says busy, so the campaign redials; the redial
    goes out with ``fault`` and its callback never comes. Returns (request id, S1)."""
    rid = f"{CAMPAIGN}:{n:020x}"
    record = {"from": mobile("98", n), "to": mobile("97", n), "time_limit": "2", "time_out": "1"}
    assert ledger.enqueue_many(CAMPAIGN, [(rid, record)]) == [1]
    ledger.set_controls(CAMPAIGN, {"redial_on": "busy", "redials": "1", "redial_interval": "0.05"})
    sim.configure(callbacks=True, time_scale=0.01, slow_seconds=1.5, status_mix={"busy": 1.0})
    with callback_receiver(settings) as cb:
        dialer = make_dialer(cb, ledger)
        assert placed(dialer, rid).result == "originated"
        s1 = ledger.get(rid)["sid"]
        wait_for(lambda: ledger.get(rid)["state"] == "retrying", timeout=10, message="redial")
        sim.configure(callbacks=False)  # the redial's callback is lost
        sim.script(rid, [fault])
        # Placed again once the redial is due (before that the claim says "early").
        wait_for(lambda: dialer.place(rid).result == "unknown", timeout=5, message="redial")
    assert ledger.get(rid)["state"] == "in_doubt"
    assert ledger.get(rid)["prev_sids"] == s1
    return rid, s1


def test_given_a_redial_reset_before_origination_when_reconciled_then_it_is_not_its_first_call(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R2: the first attempt's Sid is known (for this very request) and in prev_sids; it must
    # not be "found" as the redial's call, or the redial is recorded originated and lost.
    rid, s1 = redial_in_doubt(rsettings, ledger, sim, 21, "reset_before")
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10, message="ended")
    backdate(ledger, rid, 10)
    rec, _ = make_reconciler(rsettings, ledger)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("unplaced", True)
    assert ledger.get(rid)["state"] == "retrying"
    assert [c["sid"] for c in sim.truth()["calls"]] == [s1]


def test_given_a_redial_placed_whose_reply_and_callback_were_lost_then_its_own_sid_is_found(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R2: the candidates are {S1, S2}; S1 is the first attempt's, so S2 is the redial's call
    # (not "ambiguous" for good).
    rid, s1 = redial_in_doubt(rsettings, ledger, sim, 22, "slow_placed")
    wait_for(lambda: len(sim.truth()["calls"]) == 2, timeout=10, message="redial placed")
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10, message="ended")
    s2 = sim.truth()["calls"][1]["sid"]
    rec, _ = make_reconciler(rsettings, ledger)
    assert rec.reconcile(rid).result == "found"
    record = ledger.get(rid)
    assert (record["state"], record["sid"], record["prev_sids"]) == ("originated", s2, s1)


def test_given_an_in_doubt_redial_proven_unplaced_when_attempts_before_it_filled_the_budget_then_retried(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R6: a redial counts MAX_ATTEMPTS afresh (the dialer subtracts redial_base); reconcile
    # failed it "after N attempts" where a 500 at the same point would have been retried.
    rid, _ = redial_in_doubt(rsettings, ledger, sim, 23, "reset_before")
    assert ledger.get(rid)["attempts"] == "2" and ledger.get(rid)["redial_base"] == "1"
    backdate(ledger, rid, 10)
    rec, _ = make_reconciler(rsettings.model_copy(update={"max_attempts": 2}), ledger)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("unplaced", True)
    assert ledger.get(rid)["state"] == "retrying"


class _AheadClock:
    """The ``time`` module as a worker whose clock runs ``ahead`` seconds before Redis'."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def ringing_in_doubt(rsettings: Settings, ledger: Ledger, sim: Any, n: int) -> str:
    """A call placed, its reply lost, and still ringing (so not in Call Details yet)."""
    sim.configure(time_scale=1.0, slow_seconds=1.5, ring_seconds=[3.0, 3.0])
    sim.configure(status_mix={"no-answer": 1.0})
    _, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, n, "slow_placed", sim)
    assert not sim.truth()["calls"][0]["ended"]
    return rid


def test_given_a_worker_clock_ahead_of_redis_when_a_placed_call_still_rings_then_not_proven(
    rsettings: Settings, ledger: Ledger, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # R4: sent_at is on the Redis clock; a worker clock 60 s ahead made a ringing call look
    # past its proof, and it was dialled twice.
    rid = ringing_in_doubt(rsettings, ledger, sim, 31)
    monkeypatch.setattr(reconcile_module, "time", _AheadClock(60.0))
    rec, _ = make_reconciler(rsettings, ledger)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("not_yet", False)
    assert ledger.get(rid)["state"] == "in_doubt"


def test_given_a_search_over_pages_when_the_last_comes_after_the_proof_time_then_not_proven(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    # R4: each page is what had ended when its request arrived, and each waits for its own
    # permit. "Now" taken after the last page is past the proof time, although page 1 was
    # taken while the call still rang (and it sorts before page 2's cursor).
    fast = rsettings.model_copy(update={"lease_grace_seconds": 0.5, "exotel_connect_timeout": 0.5})
    sim.configure(time_scale=1.0, slow_seconds=1.5, status_mix={"no-answer": 1.0})
    _, client = make_reconciler(fast, ledger)
    # A flow call: its search is by From alone (its To is the ExoPhone), so the customer's
    # other calls are listed too, and fill pages of their own.
    rid = in_doubt_call(ledger, client, fast, 33, "slow_placed", sim, time_out=3, flow=True)
    record = ledger.record(rid)
    assert (
        record is not None and proof_seconds(record, fast) == 6.0
    )  # window 1 + TimeOut 3 + TimeLimit 2
    # Two short calls from the same number, made after it and ended before it.
    sim.configure(status_mix={"failed": 1.0}, ring_seconds=[0.01, 0.01], max_page_size=1)
    for to in (mobile("96", 1), mobile("96", 2)):
        params = [("From", record.from_), ("To", to), ("CallerId", EXOPHONE)]
        assert client.connect(params)[0].kind == "originated"
    wait_for(lambda: sum(c["ended"] for c in sim.truth()["calls"]) == 2, timeout=5)
    # One permit per 8 s: page 2 goes out past sent + 1.5 (send window) + 6 (proof).
    slow = fast.model_copy(update={"rate_limit_calls": 1, "rate_limit_period_seconds": 8.0})
    rec, _ = make_reconciler(slow, ledger)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("not_yet", False)
    assert ledger.get(rid)["state"] == "in_doubt"
    assert sim.truth()["details_requests"] == 2
    ledger.redis.delete(keys.limiter(SIM_SID))
    sim.configure(max_page_size=100)
    rec, _ = make_reconciler(fast, ledger)
    assert rec.reconcile(rid).result == "found"  # it had ended by then


def test_given_an_unplaced_flow_call_when_the_customer_calls_the_exophone_then_not_taken(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R7: an inbound call (customer -> ExoPhone) has the very From and To a flow call shows.
    # Taken as ours, the unplaced call would be recorded originated: a lost call.
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 41, "reset_before", sim, flow=True)
    inbound = sim.add_call(from_=mobile("98", 41), to="08030752400", direction="inbound")
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("unplaced", True)
    assert ledger.request_for_sid(inbound) is None


def test_given_an_unplaced_flow_call_when_another_system_called_the_customer_then_not_taken(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R7: another system's outbound call from the same customer number, to another ExoPhone
    # or number: for a flow call, To must be our ExoPhone (CallerId).
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 42, "reset_before", sim, flow=True)
    sim.add_call(from_=mobile("98", 42), to="08049999999", direction="outbound-api")
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("unplaced", True)


def test_given_a_placed_flow_call_and_an_inbound_call_when_reconciled_then_ours_is_found(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 43, "slow_placed", sim, flow=True)
    sim.add_call(from_=mobile("98", 43), to="08030752400", direction="inbound")
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10)
    (ours,) = sim.truth()["calls"]
    assert rec.reconcile(rid).result == "found"
    assert ledger.get(rid)["sid"] == ours["sid"]


def test_given_a_dst_zone_when_our_call_was_made_in_the_repeated_hour_then_it_is_found(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R7b: Exotel shows "2025-10-26 01:30:00" for a call made at 01:30 GMT, the second 01:30
    # of the night London falls back. Read with fold=0 it is 00:30 UTC, an hour out of the
    # window: the placed call was "not found" and dialled again.
    london = rsettings.model_copy(update={"exotel_timezone": "Europe/London"})
    sim.configure(timezone="Europe/London")
    rec, client = make_reconciler(london, ledger)
    rid = in_doubt_call(ledger, client, london, 51, None, sim)
    sent_at = datetime(2025, 10, 26, 1, 30, tzinfo=UTC).timestamp()
    ledger.redis.hset(ledger.keys.call(rid), "sent_at", int(sent_at * 1000))
    record = ledger.get(rid)
    ours = sim.add_call(
        from_=record["from"], to=record["to"], direction="outbound-api", created=sent_at + 1
    )
    assert rec.reconcile(rid).result == "found"
    assert ledger.get(rid)["sid"] == ours


def test_given_an_account_in_another_zone_when_its_call_is_reconciled_then_its_hours_are_searched(
    rsettings: Settings, ledger: Ledger
) -> None:
    # R7b: each account has its own time zone (EXOTEL_ACCOUNTS[...].timezone); the search
    # window of an account in London is in London's hours, not the default account's (IST).
    from simulator import Account, SimConfig, Simulator

    eu_sim = SimConfig(
        accounts=[Account("eu-account", "eu-key", "eu-token")],
        latency=False,
        callbacks=False,
        timezone="Europe/London",
        time_scale=0.01,
        slow_seconds=1.5,
    )
    with Simulator(eu_sim) as eu:
        settings = rsettings.model_copy(
            update={
                "exotel_accounts": {
                    "eu": ExotelAccount(
                        account_sid="eu-account",
                        api_key=SecretStr("eu-key"),
                        api_token=SecretStr("eu-token"),
                        base_url=eu.url,
                        timezone="Europe/London",
                    )
                }
            }
        )
        eu_settings = settings.for_account("eu")
        assert eu_settings.exotel_timezone == "Europe/London"
        rec, client = make_reconciler(eu_settings, ledger)
        rid = in_doubt_call(ledger, client, eu_settings, 52, "slow_placed", eu)
        wait_for(lambda: all(c["ended"] for c in eu.truth()["calls"]), timeout=10)
        (ours,) = eu.truth()["calls"]
        assert rec.reconcile(rid).result == "found"
        assert ledger.get(rid)["sid"] == ours["sid"]


def test_given_an_unknown_zone_for_an_account_when_loading_then_the_field_is_named() -> None:
    entry = {"account_sid": "eu", "api_key": "k-1", "api_token": "t-secret-9", "timezone": "Mars/X"}
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None, exotel_accounts={"eu": entry})
    message = str(info.value)
    assert "EXOTEL_ACCOUNTS[eu].[timezone]" in message and "Mars/X" in message
    assert "t-secret-9" not in message


def test_exotel_instants_reads_both_folds_of_a_repeated_hour_only() -> None:
    assert exotel_instants("2025-10-26 01:30:00", "Europe/London") == (
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC).timestamp(),
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC).timestamp(),
    )
    assert exotel_instants("2025-10-26 03:30:00", "Europe/London") == (
        datetime(2025, 10, 26, 3, 30, tzinfo=UTC).timestamp(),
    )
    assert exotel_instants("2025-10-26 01:30:00", "Asia/Kolkata") == (
        datetime(2025, 10, 25, 20, 0, tzinfo=UTC).timestamp(),
    )
    assert exotel_instants("26/10/2025 01:30", "Europe/London") == ()
    assert exotel_instants(None, "Europe/London") == ()


def shared_numbers_pair(
    rsettings: Settings, ledger: Ledger, sim: Any, n: int
) -> tuple[str, str, str]:
    """Two requests with the same From and To in two campaigns: A reset before origination
    (not placed), B placed but its reply timed out and its callback was lost. Both in doubt,
    both past their proof. Returns (A, B, B's Sid)."""
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    _, client = make_reconciler(rsettings, ledger)
    numbers = (mobile("98", n), mobile("97", n))
    a = in_doubt_call(ledger, client, rsettings, n, "reset_before", sim, numbers=numbers)
    b = in_doubt_call(
        ledger, client, rsettings, n, "slow_placed", sim, numbers=numbers, campaign="rc2"
    )
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10)
    (placed,) = sim.truth()["calls"]
    assert placed["custom_field"] == b
    backdate(ledger, a, 10)
    backdate(ledger, b, 10)
    return a, b, placed["sid"]


def test_given_two_in_doubt_calls_with_the_same_numbers_when_one_was_placed_then_neither_guesses(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R1: "exactly one candidate" gave B's call to A when A was reconciled first; B then
    # skipped it as another request's, was proven unplaced and dialled a second time (and A
    # stayed originated with no call). Neither may be settled from a call both could own, nor
    # proven unplaced while the other is unresolved: left for a person, in doubt.
    a, b, s_b = shared_numbers_pair(rsettings, ledger, sim, 61)
    rec, _ = make_reconciler(rsettings, ledger)
    for rid in (a, b):
        verdict = rec.reconcile(rid)
        assert (verdict.result, verdict.redial) == ("ambiguous", False), rid
        record = ledger.get(rid)
        assert record["state"] == "in_doubt" and "sid" not in record
        assert record["last_error"].startswith("in doubt: ambiguous")
        assert s_b in record["last_error"]
    assert ledger.request_for_sid(s_b) is None


def test_given_two_in_doubt_calls_with_the_same_numbers_when_one_is_settled_then_the_other_is_proven(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    a, b, s_b = shared_numbers_pair(rsettings, ledger, sim, 62)
    rec, _ = make_reconciler(rsettings, ledger)
    assert rec.reconcile(a).result == "ambiguous"
    # B's callback comes after all (late): B is settled with its Sid ...
    CallbackStore(ledger.redis, keys).apply(CallbackEvent(s_b, "completed", b))
    assert (ledger.get(b)["state"], ledger.get(b)["sid"]) == ("originated", s_b)
    # ... so nothing in A's window can be A's any more: proven unplaced, dialled once.
    verdict = rec.reconcile(a)
    assert (verdict.result, verdict.redial) == ("unplaced", True)
    assert sim.truth()["by_custom_field"] == {b: 1}


def test_given_a_same_numbers_request_still_dialling_past_its_mark_when_reconciling_then_not_taken(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # R1: B's request is out (past its sent mark, no reply yet) and its call already shows in
    # Call Details. A, in doubt and past its proof, must neither take B's call nor be proven
    # unplaced while B is unresolved.
    sim.configure(time_scale=0.01)
    rec, client = make_reconciler(rsettings, ledger)
    numbers = (mobile("98", 63), mobile("97", 63))
    a = in_doubt_call(ledger, client, rsettings, 63, "reset_before", sim, numbers=numbers)
    backdate(ledger, a, 10)
    b = f"rc2:{63:020x}"
    record = {"from": numbers[0], "to": numbers[1], "caller_id": EXOPHONE}
    assert ledger.enqueue_many("rc2", [(b, {**record, "time_limit": "2", "time_out": "1"})])
    c = ledger.claim(b, lease_seconds=30, early_tolerance=0, worker="t")
    assert ledger.mark_sent(b, c.claim, lease_seconds=30, parties=record_parties(record))
    outcome, _ = client.connect(build_connect_params(c.record.request(), b, rsettings))
    assert outcome.kind == "originated"  # the reply is on its way to B's worker
    wait_for(lambda: all(x["ended"] for x in sim.truth()["calls"]), timeout=10)
    verdict = rec.reconcile(a)
    assert (verdict.result, verdict.redial) == ("shared", False)
    assert ledger.get(a)["state"] == "in_doubt" and "sid" not in ledger.get(a)
    # B's reply is recorded: A's window holds nothing that could be A's.
    assert ledger.finish(b, c.claim, "originated", sid=outcome.sid).ok  # type: ignore[attr-defined]
    assert rec.reconcile(a).result == "unplaced"


def test_given_an_agent_campaign_when_a_call_is_in_doubt_then_one_look_up_finds_it(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Click-to-call: the agent's number is From on every row. A search by From alone lists
    # every call the agent made in the window (hundreds at 200 a minute), a page of 100 per
    # permit; with To too it lists this call.
    agent = "+918030752499"
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    rec, client = make_reconciler(rsettings, ledger)
    for i in range(150):  # the agent's other calls, placed just before
        params = [("From", agent), ("To", mobile("96", i)), ("CallerId", EXOPHONE)]
        assert client.connect(params)[0].kind == "originated"
    rid = in_doubt_call(
        ledger, client, rsettings, 61, "slow_placed", sim, numbers=(agent, mobile("97", 61))
    )
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=15)
    before = sim.truth()["details_requests"]
    assert rec.reconcile(rid).result == "found"
    assert sim.truth()["details_requests"] - before == 1
    sim_sid = {c["custom_field"]: c["sid"] for c in sim.truth()["calls"]}[rid]
    assert ledger.get(rid)["sid"] == sim_sid


def test_given_a_rival_settled_while_a_search_is_judged_when_it_lands_then_its_call_is_not_taken(
    rsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    # Found in review: the Sid index was read before the rivals. B, settled in between (its
    # callback writes sids[S_B] = B and drops B from the unresolved index in one step), was
    # in neither view: S_B looked like nobody's, and A, never placed, took it. The hook
    # widens a real window of one round trip (B's callback comes as its call ends, when Call
    # Details starts listing it).
    a, b, s_b = shared_numbers_pair(rsettings, ledger, sim, 71)  # A unplaced, B placed (S_B)
    rec, _ = make_reconciler(rsettings, ledger)
    real_known = rec._known_sids

    def known_then_b_callback(sids: list[str]) -> dict[str, str | None]:
        out = real_known(sids)
        CallbackStore(ledger.redis, keys).apply(CallbackEvent(s_b, "completed", b))
        return out

    rec._known_sids = known_then_b_callback  # type: ignore[method-assign]
    rec.reconcile(a)
    record = ledger.get(a)
    assert sim.truth()["by_custom_field"].get(a, 0) == 0  # A was never placed
    assert not (record["state"] == "originated" and record.get("sid") == s_b)
    assert ledger.request_for_sid(s_b) == b


def test_given_an_in_doubt_call_sent_before_the_index_when_workers_start_then_it_is_a_rival(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Found in review: a call sent by a release without the unresolved index (R0) was
    # nobody's rival. R1, with the same numbers and never placed, took R0's call as its own;
    # R0 then skipped that Sid as known and was proven unplaced: dialled twice.
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    _, client = make_reconciler(rsettings, ledger)
    numbers = (mobile("98", 81), mobile("97", 81))
    r0 = f"old:{81:020x}"
    record = {"from": numbers[0], "to": numbers[1], "caller_id": EXOPHONE}
    record |= {"time_limit": "2", "time_out": "1"}
    assert ledger.enqueue_many("old", [(r0, record)]) == [1]
    c = ledger.claim(r0, lease_seconds=30, early_tolerance=0, worker="old-release")
    assert ledger.mark_sent(r0, c.claim, lease_seconds=30, parties="")  # as before the index
    sim.script(r0, ["slow_placed"])
    outcome, _ = client.connect(build_connect_params(c.record.request(), r0, rsettings))
    assert isinstance(outcome, Unknown)
    assert ledger.finish(r0, c.claim, "in_doubt", error="in doubt", look_again_in=60).ok
    assert ledger.index_unresolved(caller_ids(rsettings)) == 1  # the worker's start
    assert ledger.index_unresolved(caller_ids(rsettings)) == 0  # once
    r1 = in_doubt_call(
        ledger, client, rsettings, 81, "reset_before", sim, numbers=numbers, campaign="new"
    )
    wait_for(lambda: all(x["ended"] for x in sim.truth()["calls"]), timeout=10)
    backdate(ledger, r0, 10)
    backdate(ledger, r1, 10)
    rec, _ = make_reconciler(rsettings, ledger)
    v1, v0 = rec.reconcile(r1), rec.reconcile(r0)
    assert sim.truth()["by_custom_field"] == {r0: 1}
    assert not v0.redial and not v1.redial  # neither is dialled on the other's call
    assert ledger.get(r1)["state"] == "in_doubt"


def old_in_doubt(
    ledger: Ledger,
    client: ExotelClient,
    settings: Settings,
    rid: str,
    record: dict[str, str],
    fault: str,
    sim: Any,
    account: str = "default",
) -> None:
    """A call sent by a release before the unresolved index (no parties), now in doubt."""
    assert ledger.enqueue_many(campaign_of(rid), [(rid, record)]) == [1]
    c = ledger.claim(rid, lease_seconds=30, early_tolerance=0, worker="old-release")
    assert ledger.mark_sent(rid, c.claim, lease_seconds=30, account=account, parties="")
    sim.script(rid, [fault])
    outcome, _ = client.connect(build_connect_params(c.record.request(), rid, settings))
    assert isinstance(outcome, Unknown)
    assert ledger.finish(rid, c.claim, "in_doubt", error="in doubt", look_again_in=60).ok


def test_given_an_old_flow_call_on_another_account_when_indexed_then_it_is_found_not_redialled(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Found in the second review: the start-up index gave every old call the default
    # account's ExoPhone; a flow call of account b (its own caller id) then no longer matched
    # its own call in Call Details, and was proven unplaced: dialled twice.
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    b_account = ExotelAccount(
        account_sid=SIM_SID,
        api_key=SecretStr("sim-key-3f9a1c"),
        api_token=SecretStr("sim-token-7b2e4d"),
        base_url=sim.url,
        caller_id="08030759999",
    )
    settings = rsettings.model_copy(update={"exotel_accounts": {"b": b_account}})
    b = settings.for_account("b")
    rec_b, client_b = make_reconciler(b, ledger)
    rid = f"old:{91:020x}"
    record = {"from": mobile("98", 91), "url": FLOW_URL, "time_limit": "2", "time_out": "1"}
    old_in_doubt(ledger, client_b, b, rid, record, "slow_placed", sim, account="b")
    assert ledger.index_unresolved(caller_ids(settings)) == 1  # a new worker starts
    wait_for(lambda: all(x["ended"] for x in sim.truth()["calls"]), timeout=10)
    backdate(ledger, rid, 10)
    verdict = rec_b.reconcile(rid)
    assert sim.truth()["by_custom_field"] == {rid: 1}
    assert (verdict.result, verdict.redial) == ("found", False)


def test_given_two_old_calls_when_one_is_reconciled_before_the_start_index_then_neither_is_misread(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Found in the second review: a new worker's pool takes queued reconcile tasks as soon as
    # it starts, while its sweeper indexes the old calls. R1 (never placed) reconciled before
    # R0 (placed) was indexed took R0's call; R0 was then proven unplaced: dialled twice.
    sim.configure(slow_seconds=1.5, time_scale=0.01)
    _, client = make_reconciler(rsettings, ledger)
    numbers = {"from": mobile("98", 93), "to": mobile("97", 93), "caller_id": EXOPHONE}
    record = numbers | {"time_limit": "2", "time_out": "1"}
    r0, r1 = f"old:{93:020x}", f"old2:{93:020x}"
    old_in_doubt(ledger, client, rsettings, r0, record, "slow_placed", sim)
    old_in_doubt(ledger, client, rsettings, r1, record, "reset_before", sim)
    wait_for(lambda: all(x["ended"] for x in sim.truth()["calls"]), timeout=10)
    backdate(ledger, r0, 10)
    backdate(ledger, r1, 10)
    assert not ledger.unresolved_complete()  # no worker has indexed yet
    rec, _ = make_reconciler(rsettings, ledger)
    v1, v0 = rec.reconcile(r1), rec.reconcile(r0)
    assert ledger.unresolved_complete()
    assert sim.truth()["by_custom_field"] == {r0: 1}
    assert not v0.redial and not v1.redial
    assert ledger.get(r1).get("sid") is None


def test_given_a_worker_lost_between_a_refused_retry_and_apply_kept_then_the_sweeper_and_reconcile_settle_the_call(
    rsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Review of adcfab1: attempt 2's 504 came back, finish.lua refused its retry (attempt 1's
    # kept callback proves the call placed), and the worker died before apply_kept. Nothing
    # was written: the call is still dialling attempt 2 under its lease, not claimable; the
    # lease runs out, the sweeper puts it in doubt, and reconcile's "proven unplaced" is
    # refused again and applies the kept callback: settled once, never dialled again.
    rec, client = make_reconciler(rsettings, ledger)
    rid = in_doubt_call(ledger, client, rsettings, 5, None, sim)
    claim1 = ledger.get(rid)["claim"]
    assert ledger.finish(rid, claim1, "retrying", error="unplaced", next_in=0, look_again_in=60).ok
    c2 = ledger.claim(rid, lease_seconds=0.2, early_tolerance=0, worker="t")
    parties = request_parties(build_connect_params(c2.record.request(), rid, rsettings))
    assert c2.attempts == 2 and ledger.mark_sent(rid, c2.claim, lease_seconds=0.2, parties=parties)
    store = CallbackStore(ledger.redis, ledger.keys)
    late = CallbackEvent(sid="sid-attempt-1", status="completed", rid=rid, attempt=1)
    assert store.apply_event(late).stale_attempt
    fin = ledger.finish(rid, c2.claim, "retrying", error="504", next_in=0, look_again_in=60)
    assert not fin.ok and fin.placed_earlier  # ... and the worker is gone
    assert not ledger.claim(rid, lease_seconds=5, early_tolerance=60, worker="u").claimed
    time.sleep(0.3)
    assert ledger.sweep(rid, reconcile_in=60, overdue_in=60) == "in_doubt"
    backdate(ledger, rid, 10)
    verdict = rec.reconcile(rid)
    assert (verdict.result, verdict.redial) == ("found:earlier attempt's callback", False)
    record = ledger.get(rid)
    assert (record["state"], record["sid"], record["call_status"]) == (
        "originated",
        "sid-attempt-1",
        "completed",
    )
    # The dialer's late apply_kept (or a second reconcile) finds nothing left to do.
    assert store.apply_kept(rid) is None
    assert rec.reconcile(rid).result == "skip:originated"
    assert ledger.status(CAMPAIGN).call_status == {"completed": 1}
    assert not ledger.claim(rid, lease_seconds=5, early_tolerance=60, worker="u").claimed
    assert sim.truth()["requests"] == 0
