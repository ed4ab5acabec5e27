"""The per-number cap (NUMBER_DAILY_CAP, ``--number-cap``) on a real Redis: checked and taken
in the claim's own step, over every campaign and account, so racing workers cannot both
pass it; a call over it is held (no attempt, no permit) or, past end_at, ends skipped."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from callq.campaign.controls import CampaignOptions, NumberCap
from callq.dialing.limiter import Slot
from callq.intake.enqueue import Enqueuer
from callq.intake.report import report_rows
from callq.settings import Settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.ledger import Claim, Ledger, NumberCheck
from callq.store.records import ClaimCode, State
from callq.store.slots import LiveSlots
from tests.campaigns import agent_csv, as_stream, mobile
from tests.conftest import make_dialer
from tests.integration.test_feed import feeder_for, queued

SHARED = mobile("97", 4242)


def enqueue(
    ledger: Ledger, campaign: str, n: int, to: str = SHARED, account: str = ""
) -> list[str]:
    """``n`` calls of ``campaign`` to ``to``, each from its own number."""
    rids = [f"{campaign}:{i:020x}" for i in range(n)]
    ledger.enqueue_many(
        campaign,
        [
            (rid, {"from": mobile("98", i), "to": to, "caller_id": "+918030752400"})
            for i, rid in enumerate(rids)
        ],
    )
    if account:
        ledger.redis.hset(ledger.keys.campaign_meta(campaign), "account", account)
    return rids


def claim(ledger: Ledger, rid: str, cap: NumberCap, end_at: float | None = None) -> Claim:
    return ledger.claim(
        rid,
        lease_seconds=30,
        early_tolerance=1.0,
        worker="t",
        number=NumberCheck(SHARED, cap, end_at),
    )


def test_given_threads_racing_on_one_number_across_campaigns_and_accounts_then_the_cap_holds(
    ledger: Ledger, keys: Keys
) -> None:
    # Four campaigns on two accounts, five calls each, all to one number; cap 3 a day.
    rids = [
        rid
        for c, acct in (("ca", "a"), ("cb", "a"), ("cc", "b"), ("cd", "b"))
        for rid in enqueue(ledger, c, 5, account=acct)
    ]
    cap = NumberCap(3, 86400)
    results: dict[str, Claim] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(mine: list[str]) -> None:
        start.wait()
        for rid in mine:
            got = claim(ledger, rid, cap)
            with lock:
                results[rid] = got

    threads = [threading.Thread(target=work, args=(rids[t::8],)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    codes = [r.code for r in results.values()]
    assert codes.count(ClaimCode.CLAIMED) == 3
    assert codes.count(ClaimCode.HELD) == 17
    assert ledger.redis.zcard(keys.number_calls(SHARED)) == 3
    # Each held call waits, attempt uncounted, until the earliest count lapses: its deadline.
    first = min(
        float(s) for _, s in ledger.redis.zrange(keys.number_calls(SHARED), 0, -1, withscores=True)
    )
    for rid, got in results.items():
        if got.code is ClaimCode.HELD:
            rec = ledger.get(rid)
            assert (rec["state"], rec["attempts"]) == ("queued", "0")
            assert got.held_until_ms == int(first) + 86400 * 1000
            assert ledger.redis.zscore(keys.deadlines(), rid) == got.held_until_ms
            assert ledger.redis.zscore(keys.campaign_parked(rid.split(":")[0]), rid) is None
            assert "number cap 3/1d" in rec["last_error"]


def test_given_a_number_at_its_cap_when_another_number_is_called_then_it_is_not_held(
    ledger: Ledger,
) -> None:
    (a,) = enqueue(ledger, "x", 1)
    (b,) = enqueue(ledger, "y", 1)
    (other,) = enqueue(ledger, "z", 1, to=mobile("97", 777))
    cap = NumberCap(1, 86400)
    assert claim(ledger, a, cap).code is ClaimCode.CLAIMED
    assert claim(ledger, b, cap).code is ClaimCode.HELD
    got = ledger.claim(
        other,
        lease_seconds=30,
        early_tolerance=1.0,
        worker="t",
        number=NumberCheck(mobile("97", 777), cap),
    )
    assert got.code is ClaimCode.CLAIMED


def test_given_a_claim_given_back_unsent_then_its_count_goes_and_a_second_claim_takes_it_again(
    ledger: Ledger, keys: Keys
) -> None:
    a, b = enqueue(ledger, "r", 2)
    cap = NumberCap(1, 3600)
    got = claim(ledger, a, cap)
    assert got.claimed
    # Nothing sent (no permit within the horizon): released to park, its count goes back.
    assert ledger.release(a, got.claim, republish_after=60, action="park", number=SHARED)
    assert ledger.redis.zcard(keys.number_calls(SHARED)) == 0
    assert claim(ledger, b, cap).claimed
    # The same call's own retries share its dial's one count: a call cannot hold itself.
    (c,) = enqueue(ledger, "s", 1, to=mobile("97", 31))
    check = NumberCheck(mobile("97", 31), cap)
    first = ledger.claim(c, lease_seconds=30, early_tolerance=1.0, worker="t", number=check)
    ledger.finish(c, first.claim, State.RETRYING, error="HTTP 500", next_in=0.0, look_again_in=5)
    again = ledger.claim(c, lease_seconds=30, early_tolerance=1.0, worker="t", number=check)
    assert again.claimed and again.attempts == 2


def test_given_a_cap_that_lapses_after_end_at_then_the_call_ends_skipped_with_the_reason(
    ledger: Ledger, keys: Keys
) -> None:
    a, b = enqueue(ledger, "e", 2)
    cap = NumberCap(1, 86400)
    assert claim(ledger, a, cap).claimed
    got = claim(ledger, b, cap, end_at=time.time() + 3600)  # the count lapses in 24 h
    assert got.code is ClaimCode.SKIPPED and got.state == "skipped"
    rec = ledger.get(b)
    assert rec["state"] == "skipped"
    assert ledger.status("e").states["skipped"] == 1
    assert ledger.redis.zscore(keys.deadlines(), b) is None
    row = next(r for r in report_rows(ledger, "e") if r["request_id"] == b)
    assert row["state"] == "skipped"
    assert "number cap 1/1d" in row["last_error"] and "end_at" in row["last_error"]


def test_given_a_cap_over_a_short_period_when_it_lapses_then_the_held_call_may_be_claimed(
    ledger: Ledger,
) -> None:
    a, b = enqueue(ledger, "p", 2)
    cap = NumberCap(1, 1)  # one call per second
    assert claim(ledger, a, cap).claimed
    held = claim(ledger, b, cap)
    assert held.code is ClaimCode.HELD
    sec, usec = ledger.redis.time()
    time.sleep(max(held.held_until_ms - (int(sec) * 1000 + int(usec) // 1000), 0) / 1000 + 0.01)
    assert claim(ledger, b, cap).claimed


@pytest.mark.parametrize("how", ["setting", "campaign"])
def test_given_a_cap_when_the_dialer_places_calls_of_two_campaigns_then_exotel_sees_one(
    settings: Settings, ledger: Ledger, sim: Any, how: str
) -> None:
    if how == "setting":
        settings = settings.model_copy(update={"number_daily_cap": 1})
    (a,) = enqueue(ledger, "da", 1)
    (b,) = enqueue(ledger, "db", 1)
    if how == "campaign":
        for c in ("da", "db"):
            meta = CampaignOptions(number_cap="1/1d").to_meta()
            ledger.redis.hset(ledger.keys.campaign_meta(c), mapping=meta)
    dialer = make_dialer(settings, ledger)
    held_before = REGISTRY.get_sample_value("callq_number_capped_total", {"verdict": "held"}) or 0
    assert dialer.place(a).result == "originated"
    assert dialer.place(b).result == "held:queued"
    held = REGISTRY.get_sample_value("callq_number_capped_total", {"verdict": "held"})
    assert held == held_before + 1
    assert sim.truth()["by_custom_field"] == {a: 1}
    assert sim.truth()["requests"] == 1  # no request, so no permit, for the held call


def test_given_bad_number_caps_then_the_error_names_the_field() -> None:
    for bad in ("2", "0/1d", "2/0h", "2/8d", "x/1d", "2/1w"):
        with pytest.raises(ValueError, match=r"^number_cap: "):
            CampaignOptions(number_cap=bad).to_meta()
    assert CampaignOptions(number_cap="1/6h").to_meta() == {"number_cap": "1/6h"}
    assert CampaignOptions(number_cap="3/90m").to_meta() == {"number_cap": "3/90m"}
    assert CampaignOptions(number_cap="none").to_meta() == {"number_cap": ""}


def test_given_events_on_when_a_call_ends_skipped_then_its_final_event_says_skipped_and_why(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    evledger = Ledger(rclient, keys, EventFlags(on=True))
    a, b = enqueue(evledger, "ev", 2)
    cap = NumberCap(1, 86400)
    assert claim(evledger, a, cap).claimed
    assert claim(evledger, b, cap, end_at=time.time() + 60).code is ClaimCode.SKIPPED
    finals = [
        json.loads(f["data"]) for _, f in rclient.xrange(keys.events()) if f["type"] == "call.final"
    ]
    assert [(e["request_id"], e["state"]) for e in finals] == [(b, "skipped")]
    assert "number cap 1/1d" in finals[0]["last_error"]


def test_given_a_claimed_call_when_marked_sent_then_its_count_runs_from_the_sent_time(
    ledger: Ledger, keys: Keys
) -> None:
    (a,) = enqueue(ledger, "m", 1)
    got = claim(ledger, a, NumberCap(1, 86400))
    claimed_at = ledger.redis.zscore(keys.number_calls(SHARED), f"{a}#0")
    time.sleep(0.02)  # the sent mark comes after the claim, as after a permit's wait
    assert ledger.mark_sent(a, got.claim, lease_seconds=30, number=SHARED)
    ((member, score),) = ledger.redis.zrange(keys.number_calls(SHARED), 0, -1, withscores=True)
    assert member == f"{a}#0"
    assert int(score) == int(ledger.get(a)["sent_at"]) > int(claimed_at or 0)


def test_given_parked_calls_to_numbers_at_the_cap_when_fed_then_they_are_held_and_spend_no_permit(
    settings: Settings, ledger: Ledger, keys: Keys
) -> None:
    capped = settings.model_copy(update={"number_daily_cap": 1})
    # Other campaigns took numbers 0-4.
    for i in range(5):
        (rid,) = enqueue(ledger, f"o{i}", 1, to=mobile("97", i))
        got = ledger.claim(
            rid,
            lease_seconds=30,
            early_tolerance=1.0,
            worker="t",
            number=NumberCheck(mobile("97", i), NumberCap(1, 86400)),
        )
        assert got.claimed
    # This campaign calls numbers 0-9: the feed takes their counts before their permits.
    lines = ["From,To,CallerId"] + [
        f"{mobile('98', i)},{mobile('97', i)},08030752400" for i in range(10)
    ]
    Enqueuer(capped).enqueue_file(as_stream(("\n".join(lines) + "\n").encode()), "fed")
    feeder = feeder_for(capped, ledger)
    assert feeder.drain_once()["fed"] == 5
    msgs = queued(ledger, capped)
    fed = {ledger.get(rid)["to"] for rid, _ in msgs}
    assert fed == {mobile("97", i) for i in range(5, 10)}
    # Five permits, back to back: none was reserved for a held call.
    interval = feeder.dialer.limiter.interval_us
    slots = sorted(kw["slot"] for _, kw in msgs)
    assert [b - a for a, b in itertools.pairwise(slots)] == [interval] * 4
    held = [r for r in ledger.iter_records("fed") if r.get("held_until")]
    assert sorted(r["to"] for r in held) == [mobile("97", i) for i in range(5)]
    assert all(r["attempts"] == "0" and "number cap 1/1d" in r["last_error"] for r in held)
    assert ledger.status("fed").parked == 0  # held on their deadlines, not parked
    # The fed calls' claims keep the counts the feed took: they are dialled.
    for rid, _ in msgs:
        check = NumberCheck(ledger.get(rid)["to"], NumberCap(1, 86400))
        got = ledger.claim(rid, lease_seconds=30, early_tolerance=1.0, worker="t", number=check)
        assert got.claimed
        assert ledger.redis.zcard(keys.number_calls(check.number)) == 1


def test_given_a_feed_take_when_a_stray_copy_claims_and_sends_the_call_then_the_give_back_keeps_its_count(
    ledger: Ledger, keys: Keys
) -> None:
    # a is parked; the feed takes its count, then its permit falls short of a (or the pass is
    # stopped) and it gives the count back. Meanwhile a stray copy of a's message (redelivered
    # after a worker died before its ack) claims a, keeping that count, and sends it.
    (a,) = enqueue(ledger, "p", 1)
    (b,) = enqueue(ledger, "q", 1)
    cap = NumberCap(1, 86400)
    parked = ledger.claim(a, lease_seconds=30, early_tolerance=1.0, worker="t", gate=5.0)
    assert parked.code is ClaimCode.PARKED
    (took,) = ledger.number_take_many([(a, NumberCheck(SHARED, cap))])
    assert took.taken
    got = claim(ledger, a, cap)
    assert got.claimed
    assert ledger.mark_sent(a, got.claim, lease_seconds=30, number=SHARED)
    ledger.number_give_back([took])
    # a was sent: its count stays, and the number is at its cap for b.
    assert ledger.redis.zscore(keys.number_calls(SHARED), f"{a}#0") is not None
    assert claim(ledger, b, cap).code is ClaimCode.HELD


def test_given_a_feed_take_when_the_call_is_still_parked_then_the_give_back_frees_its_count(
    ledger: Ledger, keys: Keys
) -> None:
    (a,) = enqueue(ledger, "p", 1)
    (b,) = enqueue(ledger, "q", 1)
    cap = NumberCap(1, 86400)
    assert ledger.claim(a, lease_seconds=30, early_tolerance=1.0, worker="t", gate=5.0).code is (
        ClaimCode.PARKED
    )
    (took,) = ledger.number_take_many([(a, NumberCheck(SHARED, cap))])
    assert took.taken
    ledger.number_give_back([took])
    assert ledger.redis.zcard(keys.number_calls(SHARED)) == 0
    assert claim(ledger, b, cap).claimed


def test_given_fed_calls_holding_slots_when_held_at_the_number_cap_at_their_claim_then_the_slots_go_back(
    settings: Settings, ledger: Ledger, keys: Keys
) -> None:
    # The feed took each call's live slots with its permit, with no cap on the campaign then.
    # A cap set since (set ID --number-cap), its numbers called meanwhile by another campaign:
    # the claim holds the calls, unsent; their slots must go back now, not after their lease.
    live = settings.model_copy(update={"exotel_max_live_calls": 4})
    Enqueuer(live).enqueue_file(as_stream(agent_csv(5)), "feed")
    feeder = feeder_for(live, ledger)
    assert feeder.drain_once() == {"open": 1, "fed": 2}
    slots = LiveSlots(ledger.redis, keys)
    assert slots.used("default") == 4
    msgs = queued(ledger, live)
    ledger.redis.hset(keys.campaign_meta("feed"), "number_cap", "1/1d")
    for i, (rid, _) in enumerate(msgs):
        to = ledger.get(rid)["to"]
        (other,) = enqueue(ledger, f"o{i}", 1, to=to)
        check = NumberCheck(to, NumberCap(1, 86400))
        assert ledger.claim(other, lease_seconds=30, early_tolerance=1.0, worker="t", number=check)
    dialer = make_dialer(live, ledger)
    for rid, kw in msgs:
        step = dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
        assert step.result == "held:queued"
    assert slots.used("default") == 0


@pytest.mark.parametrize("stop", ["paused", "cancelled", "expired"])
def test_given_a_fed_call_when_stopped_unsent_at_its_claim_then_its_count_goes_and_the_number_is_not_held(
    settings: Settings, ledger: Ledger, keys: Keys, stop: str
) -> None:
    # The feed took the call's per-number count with its permit. A pause, a cancel or an
    # end_at that passed stops the call at its claim, unsent (the claim parks it, or ends it
    # cancelled or expired): the count must go back, as release.lua gives back a count of a
    # call parked or ended unsent, or the number stays "called" for the period (held, or
    # skipped past end_at) though nothing was ever placed to it.
    capped = settings.model_copy(update={"number_daily_cap": 1})
    Enqueuer(capped).enqueue_file(as_stream(agent_csv(1)), "fed")
    feeder = feeder_for(capped, ledger)
    assert feeder.drain_once() == {"open": 1, "fed": 1}
    ((rid, kw),) = queued(ledger, capped)
    number = ledger.get(rid)["to"]
    assert ledger.redis.zcard(keys.number_calls(number)) == 1  # the feed's take
    if stop == "paused":
        ledger.pause("fed")
    elif stop == "cancelled":
        ledger.cancel("fed")
    else:
        ledger.set_controls("fed", {"end_at": str(int((time.time() - 1) * 1000))})
    dialer = make_dialer(capped, ledger)
    step = dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
    assert step.kind in ("parked", "skip", "expired"), step.result
    assert ledger.get(rid)["attempts"] == "0"
    if stop == "paused":
        ledger.cancel("fed")  # and it never comes back
    assert ledger.redis.zcard(keys.number_calls(number)) == 0
    (other,) = enqueue(ledger, "other", 1, to=number)
    assert dialer.place(other).result == "originated"


def test_given_a_feed_pass_whose_reservation_fails_then_the_counts_it_took_go_back(
    settings: Settings, ledger: Ledger, keys: Keys
) -> None:
    # The feed takes the chosen calls' per-number counts before it reserves their permits. A
    # reservation that fails (the limiter unreachable: LimiterUnavailable, which the feed logs
    # and leaves to the turn's lease) hands out nothing: the counts must go back with it, or
    # the numbers stay "called" by parked calls that may never be dialled (cancelled or
    # expired while parked: nothing else gives a parked call's count back).
    capped = settings.model_copy(update={"number_daily_cap": 1})
    Enqueuer(capped).enqueue_file(as_stream(agent_csv(3)), "fed")
    feeder = feeder_for(capped, ledger)
    limiter_key = feeder.dialer.limiter.key
    ledger.redis.hset(limiter_key, "not", "a string")  # the reservation fails (WRONGTYPE)
    assert feeder.drain_once() == {"open": 1}  # judged, nothing fed
    assert queued(ledger, capped) == []
    numbers = [r["to"] for r in ledger.iter_records("fed")]
    assert [ledger.redis.zcard(keys.number_calls(n)) for n in numbers] == [0, 0, 0]
    ledger.redis.delete(limiter_key)
    ledger.cancel("fed")
    (other,) = enqueue(ledger, "other", 1, to=numbers[0])
    check = NumberCheck(numbers[0], NumberCap(1, 86400))
    assert ledger.claim(
        other, lease_seconds=30, early_tolerance=1.0, worker="t", number=check
    ).claimed


@pytest.mark.parametrize("to", ["cancelled", "expired"])
def test_given_a_feed_take_when_the_call_is_ended_before_its_move_then_the_give_back_frees_its_count(
    ledger: Ledger, keys: Keys, to: str
) -> None:
    # The feed took a parked call's count; a cancel (cancel.lua) or a judge past end_at
    # (settle_parked.lua) ends the call before the feed's move, which then moves nothing and
    # gives the count back. The call is final, never placed: its count must go, as its live
    # slots do (LiveSlots.free_unless_moved), though it is no longer a parked waiting call.
    (a,) = enqueue(ledger, "p", 1)
    (b,) = enqueue(ledger, "q", 1)
    cap = NumberCap(1, 86400)
    (took,) = ledger.number_take_many([(a, NumberCheck(SHARED, cap))])
    assert took.taken
    if to == "cancelled":
        ledger.cancel("p")
    else:
        assert ledger.settle_parked("p", "expired", 10) == 1
    assert ledger.get(a)["state"] == to
    ledger.number_give_back([took])
    assert ledger.redis.zcard(keys.number_calls(SHARED)) == 0
    assert claim(ledger, b, cap).claimed


@pytest.mark.parametrize("then", ["parked", "cancelled"])
def test_given_a_feed_take_when_the_call_is_placed_and_redialled_before_the_give_back_then_the_placed_dials_count_stays(
    ledger: Ledger, keys: Keys, then: str
) -> None:
    # The feed took a's count (member a#0: its dial before any redial). Before it gives the
    # count back (a stalled pass, or a reservation that timed out), a stray copy of a's
    # message claims a and places it; its callback (busy) redials it: a new dial, a#1. The
    # redial is parked again (its gate) or cancelled. The give-back must not remove a#0: that
    # is the count of a call that was placed, and the number would be free for another call
    # within the period. (On main number_give.lua removed it: the cap broken, b placed.)
    (a,) = enqueue(ledger, "p", 1)
    (b,) = enqueue(ledger, "q", 1)
    cap = NumberCap(1, 86400)
    ledger.set_controls("p", {"redial_on": "busy", "redials": "1", "redial_interval": "60"})
    assert ledger.claim(a, lease_seconds=30, early_tolerance=1.0, worker="t", gate=5.0).code is (
        ClaimCode.PARKED
    )
    (took,) = ledger.number_take_many([(a, NumberCheck(SHARED, cap))])
    assert took.taken and took.member == f"{a}#0"
    got = claim(ledger, a, cap)  # the stray copy
    assert got.claimed
    assert ledger.mark_sent(a, got.claim, lease_seconds=30, number=SHARED)
    assert ledger.finish(a, got.claim, State.ORIGINATED, sid="s-a").ok
    store = CallbackStore(ledger.redis, keys)
    assert store.apply_event(CallbackEvent("s-a", "busy", a, {})).redialled
    assert ledger.get(a)["state"] == "retrying" and ledger.get(a)["redial_base"] == "1"
    if then == "parked":
        again = ledger.claim(a, lease_seconds=30, early_tolerance=1.0, worker="t", gate=5.0)
        assert again.code is ClaimCode.PARKED
    else:
        ledger.cancel("p")
        assert ledger.get(a)["state"] == "cancelled"
    ledger.number_give_back([took])
    assert ledger.redis.zscore(keys.number_calls(SHARED), f"{a}#0") is not None
    assert claim(ledger, b, cap).code is ClaimCode.HELD


def test_given_a_feed_pass_whose_move_fails_then_the_counts_and_slots_it_took_go_back(
    settings: Settings, ledger: Ledger, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The feed took the chosen calls' per-number counts, then their permits with their live
    # slots; the move onto the queue (unpark_many) fails (a Redis error: a failover, a
    # connection reset). Nothing was handed out: the counts and the slots must go back with
    # it, as for a reservation that fails, or they stay on parked calls that may never be
    # fed (cancelled or expired while parked): each number 'called' for the cap's period,
    # and the slots held until their lease (hours for a row without TimeLimit). On main both
    # stayed (counts [1, 1, 1], 6 slots).
    capped = settings.model_copy(update={"number_daily_cap": 1, "exotel_max_live_calls": 10})
    Enqueuer(capped).enqueue_file(as_stream(agent_csv(3)), "fed")
    feeder = feeder_for(capped, ledger)

    def fails(*_: Any, **__: Any) -> Any:
        raise redis.ConnectionError("reset by peer")

    monkeypatch.setattr(feeder.ledger, "unpark_many", fails)
    with pytest.raises(redis.ConnectionError):
        feeder.drain_once()
    assert queued(ledger, capped) == []
    numbers = [r["to"] for r in ledger.iter_records("fed")]
    assert [ledger.redis.zcard(keys.number_calls(n)) for n in numbers] == [0, 0, 0]
    assert LiveSlots(ledger.redis, keys).used("default") == 0
    monkeypatch.undo()
    ledger.cancel("fed")
    (other,) = enqueue(ledger, "other", 1, to=numbers[0])
    check = NumberCheck(numbers[0], NumberCap(1, 86400))
    assert ledger.claim(
        other, lease_seconds=30, early_tolerance=1.0, worker="t", number=check
    ).claimed


def test_given_a_feed_reservation_whose_reply_is_lost_then_the_slots_it_took_go_back(
    settings: Settings, ledger: Ledger, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reservation ran (permits and live slots taken) but its reply was lost (a timeout):
    # the feed sees LimiterUnavailable and hands nothing out. The slots its script took for
    # the calls, still parked, go back with the counts (on main the counts did, 6 slots
    # stayed until their lease).
    capped = settings.model_copy(update={"number_daily_cap": 1, "exotel_max_live_calls": 10})
    Enqueuer(capped).enqueue_file(as_stream(agent_csv(3)), "fed")
    feeder = feeder_for(capped, ledger)
    scripts = feeder.dialer.limiter._scripts
    real = scripts.limiter_acquire

    def lost(*args: Any, **kw: Any) -> Any:
        real(*args, **kw)
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(scripts, "limiter_acquire", lost)
    assert feeder.drain_once() == {"open": 1}  # judged, nothing fed
    assert queued(ledger, capped) == []
    numbers = [r["to"] for r in ledger.iter_records("fed")]
    assert [ledger.redis.zcard(keys.number_calls(n)) for n in numbers] == [0, 0, 0]
    assert LiveSlots(ledger.redis, keys).used("default") == 0
