"""The live-call cap (EXOTEL_MAX_LIVE_CALLS) in the limiter's script, on a real Redis: slots
taken with the permit in one step, freed once, lapsed by their lease."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from callq.campaign.controls import CampaignOptions
from callq.dialing.dialer import Account
from callq.dialing.limiter import Limiter, Slot
from callq.exotel.client import ExotelClient, make_session
from callq.intake import campaign_status
from callq.intake.enqueue import Enqueuer
from callq.receiver.app import _Runtime
from callq.settings import ExotelAccount, Settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.gauges import LedgerCollector
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.store.slots import LiveSlots, SlotClaim, live_caps
from producer import cancel_campaign, pause_campaign
from tests.campaigns import agent_csv, as_stream
from tests.conftest import SIM_KEY, SIM_SID, SIM_TOKEN, make_dialer, placed
from tests.integration.test_dialer import enqueue_one
from tests.integration.test_feed import feeder_for, queued


def capped(rclient: redis.Redis, keys: Keys, cap: int, account: str = "acct") -> Limiter:  # type: ignore[type-arg]
    # A fast rate (1000 per s) so the cap, not the rate, is what a test meets.
    return Limiter(
        rclient, keys, account, calls=1000, period=1.0, max_ahead=1.0, max_live=cap, name=account
    )


def test_given_a_cap_when_calls_take_slots_then_none_is_granted_past_it_and_no_permit_is_spent(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=5)
    got = [lim.reserve(claims=[SlotClaim(f"r{i}", 2, 60)]) for i in range(4)]
    assert [g.count for g in got] == [1, 1, 0, 0]  # 2 + 2 slots; a third connect call is 6 > 5
    assert got[2].slots_full is not None and 59 < got[2].slots_full <= 60
    flow = lim.reserve(claims=[SlotClaim("f1", 1, 60)])
    assert flow.count == 1  # 5 of 5: a flow call's one slot still fits
    assert LiveSlots(rclient, keys).used("acct") == 5
    # The refused reservations spent no permit: the next free slot is right after the three
    # granted (each 1 ms apart at 1000 per s).
    tat, now = lim.next_free()
    assert tat - now <= 3 * lim.interval_us


def test_given_several_permits_when_the_cap_binds_midway_then_only_the_calls_with_slots_get_one(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=4)
    claims = [SlotClaim(f"r{i}", 2, 60) for i in range(5)]
    g = lim.reserve(count=5, claims=claims)
    assert g.count == 2 and g.slots_full is not None
    held = rclient.zrange(keys.live_slots("acct"), 0, -1)
    assert sorted(held) == ["2:r0", "2:r1"]


def test_given_a_call_that_holds_its_slots_when_it_reserves_again_then_it_takes_no_more(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=2)
    assert lim.reserve(claims=[SlotClaim("r1", 2, 60)]).count == 1
    # A fed call that missed its slot (or a redial of the same request) reserves again.
    assert lim.reserve(claims=[SlotClaim("r1", 2, 60)]).count == 1
    assert LiveSlots(rclient, keys).used("acct") == 2
    assert lim.reserve(claims=[SlotClaim("r2", 2, 60)]).count == 0


def test_given_held_slots_when_freed_twice_then_they_are_freed_once_and_the_feed_is_woken(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=4)
    lim.reserve(claims=[SlotClaim("r1", 2, 60)])
    lim.reserve(claims=[SlotClaim("r2", 2, 60)])
    rclient.zadd(keys.feeds(), {"acct": 10**13})  # the feed waits for a slot, far ahead
    slots = LiveSlots(rclient, keys)
    assert slots.free("r1", "acct") == 2
    assert slots.free("r1", "acct") == 0  # a repeat (a duplicate callback) frees nothing
    assert slots.used("acct") == 2
    sec, _ = rclient.time()
    assert float(rclient.zscore(keys.feeds(), "acct") or 0) <= (int(sec) + 1) * 1000
    assert rclient.lrange(keys.nudge(), 0, -1) == ["acct"]
    assert lim.reserve(claims=[SlotClaim("r3", 2, 60)]).count == 1


def test_given_a_slot_whose_lease_lapsed_when_another_call_asks_then_it_gets_it(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=2)
    assert lim.reserve(claims=[SlotClaim("lost", 2, 0.2)]).count == 1  # its callback is lost
    assert lim.reserve(claims=[SlotClaim("next", 2, 60)]).count == 0
    threading.Event().wait(0.3)
    assert lim.reserve(claims=[SlotClaim("next", 2, 60)]).count == 1
    assert rclient.zrange(keys.live_slots("acct"), 0, -1) == ["2:next"]
    # A callback after the lease lapsed frees nothing, and takes nothing from the new call.
    assert LiveSlots(rclient, keys).free("lost", "acct") == 0
    assert LiveSlots(rclient, keys).used("acct") == 2


def test_given_a_cap_when_a_call_details_look_up_reserves_then_it_takes_no_slot(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=2)
    assert lim.reserve(claims=[SlotClaim("r1", 2, 60)]).count == 1
    assert lim.reserve().count == 1  # at the cap, a look-up still gets its permit
    assert LiveSlots(rclient, keys).used("acct") == 2


def test_given_many_threads_racing_for_slots_then_the_cap_holds(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=20)
    granted: list[str] = []
    lock = threading.Lock()

    def take(t: int) -> None:
        for i in range(20):
            rid = f"t{t}-{i}"
            if lim.reserve(claims=[SlotClaim(rid, 2 if i % 3 else 1, 60)]).count:
                with lock:
                    granted.append(rid)

    threads = [threading.Thread(target=take, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    used = LiveSlots(rclient, keys).used("acct")
    assert used <= 20 and used >= 19  # full, to within one flow call's slot
    assert len(rclient.zrange(keys.live_slots("acct"), 0, -1)) == len(granted)


def test_given_an_account_at_its_cap_when_a_call_is_dialled_then_it_parks_unsent_and_uncounted(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 2})
    dialer = make_dialer(capped_settings, ledger)
    first, second = enqueue_one(ledger, 1), enqueue_one(ledger, 2)
    assert dialer.place(first).result == "originated"  # holds both slots until it ends
    step = dialer.place(second)
    assert step.result == "parked:live_calls"
    rec = ledger.get(second)
    assert (rec["state"], rec["attempts"], rec["sent"]) == ("queued", "0", "0")
    assert sim.truth()["by_custom_field"] == {first: 1}  # nothing else reached Exotel
    assert ledger.status("d").parked == 1
    # status --json and the metrics show the slots in use against the cap.
    shown = campaign_status("d", settings=capped_settings, ledger=ledger).as_dict()
    assert shown["live_calls"] == {"account": "default", "used": 2, "cap": 2}
    gauges = {
        (m.name, s.labels["account"]): s.value
        for m in LedgerCollector(ledger.redis, ledger.keys, live_caps(capped_settings)).collect()
        if m.name.startswith("callq_live_call_slots")
        for s in m.samples
    }
    assert gauges == {
        ("callq_live_call_slots", "default"): 2.0,
        ("callq_live_call_slots_cap", "default"): 2.0,
    }
    assert "live_calls" not in campaign_status("d", settings=settings, ledger=ledger).as_dict()
    # The first call's terminal callback frees its slots: the account's feed is due at once.
    ledger.redis.zadd(ledger.keys.feeds(), {"default": 10**13})
    applied = CallbackStore(ledger.redis, ledger.keys).apply_event(
        CallbackEvent(ledger.get(first)["sid"], "completed", first, {})
    )
    assert applied.result == "matched"
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0
    sec, _ = ledger.redis.time()
    assert float(ledger.redis.zscore(ledger.keys.feeds(), "default") or 0) <= (int(sec) + 1) * 1000


def test_given_a_refusal_at_exotels_cap_when_dialling_then_not_placed_and_its_slots_are_freed(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    sim.configure(max_live_slots=1)  # Exotel's cap is below ours: a two-leg call is refused
    dialer = make_dialer(settings.model_copy(update={"exotel_max_live_calls": 4}), ledger)
    rid = enqueue_one(ledger, 3)
    step = dialer.place(rid)
    assert step.kind == "not_placed" and step.retry_in is not None
    rec = ledger.get(rid)
    assert rec["state"] == "retrying" and "concurren" in rec["last_error"]
    assert sim.truth()["live_refused"] == 1 and sim.truth()["rate_limited"] == 0
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


def test_given_an_unknown_outcome_when_the_call_goes_in_doubt_then_it_keeps_its_slots(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    dialer = make_dialer(settings.model_copy(update={"exotel_max_live_calls": 4}), ledger)
    rid = enqueue_one(ledger, 4)
    sim.script(rid, ["reset_after"])  # placed, then the connection broken: no answer
    assert dialer.place(rid).kind == "unknown"
    assert ledger.get(rid)["state"] == "in_doubt"
    # An unknown outcome may be a live call: its 2 slots stay held until it is settled.
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 2
    applied = CallbackStore(ledger.redis, ledger.keys).apply_event(
        CallbackEvent(sim.truth()["calls"][0]["sid"], "completed", rid, {})
    )
    assert applied.result == "matched" and ledger.get(rid)["state"] == "originated"
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


def test_given_a_cap_when_the_feed_passes_then_it_feeds_only_calls_with_slots_and_waits_for_one(
    settings: Settings, ledger: Ledger
) -> None:
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 7})
    Enqueuer(capped_settings).enqueue_file(as_stream(agent_csv(20)), "feed")
    feeder = feeder_for(capped_settings, ledger)
    # 20 permits are free within the lead, but 7 slots hold 3 two-leg calls.
    assert feeder.drain_once() == {"open": 1, "fed": 3}
    fed = [rid for rid, _ in queued(ledger, capped_settings)]
    slots = LiveSlots(ledger.redis, ledger.keys)
    assert slots.used("default") == 6
    assert sorted(ledger.redis.zrange(ledger.keys.live_slots("default"), 0, -1)) == sorted(
        f"2:{rid}" for rid in fed
    )
    assert ledger.status("feed").parked == 17
    # At the cap the next pass waits (for a freed slot, or the earliest lease), not a tick.
    sec, _ = ledger.redis.time()
    due = float(ledger.redis.zscore(ledger.keys.feeds(), "default") or 0)
    assert due / 1000 - int(sec) > capped_settings.sweep_interval_seconds
    assert feeder.drain_once() == {}
    slots.free(fed[0], "default")  # its callback: the feed is due at once
    assert feeder.drain_once() == {"fed": 1}
    assert slots.used("default") == 6


def test_given_slots_taken_by_the_feed_when_the_campaign_pauses_before_the_move_then_they_go_back(
    settings: Settings, ledger: Ledger
) -> None:
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 4})
    Enqueuer(capped_settings).enqueue_file(as_stream(agent_csv(5)), "feed")
    feeder = feeder_for(capped_settings, ledger)
    feeder.judge("feed")
    pause_after_reserve = feeder.ledger.unpark_many

    def paused_then_unpark(*args: Any, **kw: Any) -> Any:
        pause_campaign("feed", settings=capped_settings)  # between the grant and the move
        return pause_after_reserve(*args, **kw)

    feeder.ledger.unpark_many = paused_then_unpark  # type: ignore[method-assign]
    assert feeder.feed("default") == 0
    assert ledger.status("feed").parked == 5
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


def test_given_a_429_naming_concurrency_when_dialling_then_the_limiter_is_still_pushed_back(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # A 429 is the rate limit's status: one whose message names concurrency may still be the
    # rate's (callq cannot tell), so it must push every worker back like any other 429.
    sim.configure(max_live_slots=1)  # refused with the simulator's default: 429, "concurrent"
    pushback = 60.0  # far longer than the test takes: the push-back is seen, not timed
    s = settings.model_copy(
        update={"exotel_max_live_calls": 4, "rate_limited_pushback_seconds": pushback}
    )
    dialer = make_dialer(s, ledger)
    rid = enqueue_one(ledger, 5)
    assert dialer.place(rid).kind == "not_placed"
    assert "concurren" in ledger.get(rid)["last_error"]
    tat, now = dialer.limiter.next_free()
    assert tat - now > pushback / 2 * 1e6
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


@pytest.mark.parametrize("stop", ["pause", "cancel"])
def test_given_fed_calls_holding_slots_when_a_stop_comes_before_their_claim_then_the_slots_go_back(
    settings: Settings, ledger: Ledger, stop: str
) -> None:
    # The feed took each call's slots with its permit; a pause or cancel before a worker
    # claims the message parks or cancels the call at the claim, unsent: its slots must go
    # back then, not after the lease (the origination window plus TimeOut plus TimeLimit).
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 4})
    Enqueuer(capped_settings).enqueue_file(as_stream(agent_csv(5)), "feed")
    feeder = feeder_for(capped_settings, ledger)
    assert feeder.drain_once() == {"open": 1, "fed": 2}
    slots = LiveSlots(ledger.redis, ledger.keys)
    assert slots.used("default") == 4
    if stop == "pause":
        pause_campaign("feed", settings=capped_settings)
    else:
        cancel_campaign("feed", settings=capped_settings)
    dialer = make_dialer(capped_settings, ledger)
    for rid, kw in queued(ledger, capped_settings):
        step = dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
        assert step.result == ("parked:queued" if stop == "pause" else "skip:cancelled")
    assert slots.used("default") == 0


def test_given_slots_taken_by_the_feed_when_the_campaign_is_cancelled_before_the_move_then_they_go_back(
    settings: Settings, ledger: Ledger
) -> None:
    # A cancel takes the calls out of the parked set: they are not parked any more, but not
    # moved either, and nobody will ever claim them to give their slots back.
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 4})
    Enqueuer(capped_settings).enqueue_file(as_stream(agent_csv(5)), "feed")
    feeder = feeder_for(capped_settings, ledger)
    feeder.judge("feed")
    unpark = feeder.ledger.unpark_many

    def cancelled_then_unpark(*args: Any, **kw: Any) -> Any:
        cancel_campaign("feed", settings=capped_settings)  # between the grant and the move
        return unpark(*args, **kw)

    feeder.ledger.unpark_many = cancelled_then_unpark  # type: ignore[method-assign]
    assert feeder.feed("default") == 0
    assert ledger.status("feed").states.get("cancelled") == 5
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


def test_given_a_permit_reserved_ahead_when_it_takes_slots_then_their_lease_runs_from_its_slot(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    # A priority call may reserve up to RATE_LIMIT_MAX_WAIT_SECONDS ahead and is sent at its
    # permit's slot; the call may live its lease from then on. A lease counted from the
    # reservation lapses that much early, and the next taker frees a live call's slots.
    lim = Limiter(rclient, keys, "acct", calls=10, period=1.0, max_ahead=0.1, max_live=4)
    now = 5_000_000_000_000
    for _ in range(30):  # 3 s of permits ahead, none of them a call's
        assert lim.reserve(now_us=now, ahead=5.0).granted
    g = lim.reserve(now_us=now, ahead=5.0, claims=[SlotClaim("late", 2, 60)])
    assert g.count == 1 and g.wait >= 2.9
    lapse = rclient.zscore(keys.live_slots("default"), "2:late")
    assert lapse is not None and lapse >= (g.slot_us(0) // 1000) + 60_000


def test_given_a_terminal_callback_when_it_frees_slots_then_it_adds_one_round_trip_only(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # The receiver answers Exotel within its 15 s; freeing a call's slots costs it the
    # slot_free script alone: the account comes back with the callback's own script.
    dialer = make_dialer(settings.model_copy(update={"exotel_max_live_calls": 4}), ledger)
    rid = enqueue_one(ledger, 6)
    assert placed(dialer, rid).result == "originated"
    store = CallbackStore(ledger.redis, ledger.keys)
    ev = CallbackEvent(ledger.get(rid)["sid"], "completed", rid, {})
    sent: list[str] = []
    real = ledger.redis.execute_command

    def counted(*args: Any, **kw: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kw)

    ledger.redis.execute_command = counted  # type: ignore[method-assign]
    try:
        applied = store.apply_event(ev)
    finally:
        ledger.redis.execute_command = real  # type: ignore[method-assign]
    assert applied.result == "matched"
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0
    assert [c.upper() for c in sent] == ["EVALSHA", "EVALSHA"]  # callback.lua, slot_free.lua


def test_given_no_cap_on_its_account_when_a_terminal_callback_comes_then_it_costs_one_round_trip(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # The receiver knows the capped accounts (live_caps): without a cap nothing is freed, so
    # the shipped defaults pay callback.lua alone per terminal callback.
    rid = enqueue_one(ledger, 8)
    assert placed(make_dialer(settings, ledger), rid).result == "originated"
    store = CallbackStore(ledger.redis, ledger.keys, capped=live_caps(settings))
    assert store.capped == frozenset()
    ev = CallbackEvent(ledger.get(rid)["sid"], "completed", rid, {})
    sent: list[str] = []
    real = ledger.redis.execute_command

    def counted(*args: Any, **kw: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kw)

    ledger.redis.execute_command = counted  # type: ignore[method-assign]
    try:
        assert store.apply_event(ev).result == "matched"
    finally:
        ledger.redis.execute_command = real  # type: ignore[method-assign]
    assert [c.upper() for c in sent] == ["EVALSHA"]  # callback.lua only


def test_given_a_worker_killed_after_taking_slots_when_its_call_is_cancelled_then_they_go_back(
    settings: Settings, ledger: Ledger
) -> None:
    # A worker took the call's slots with its permit, then died before its sent mark: the
    # sweeper requeues the call (a message without a fed permit). Cancelled before that
    # message is claimed, the call is never dialled again: nothing but the claim frees them.
    s = settings.model_copy(update={"exotel_max_live_calls": 4})
    dialer = make_dialer(s, ledger)
    rid = enqueue_one(ledger, 7)
    record = ledger.get(rid)
    claim = SlotClaim(rid, 2 if not record.get("url") else 1, 60)
    assert dialer.limiter.reserve(claims=[claim]).count == 1  # the dead worker's
    cancel_campaign("d", settings=s)
    assert dialer.place(rid).result == "skip:cancelled"
    assert LiveSlots(ledger.redis, ledger.keys).used("default") == 0


def test_given_a_slot_freed_during_a_feed_pass_at_the_cap_when_the_pass_ends_then_it_is_not_missed(
    settings: Settings, ledger: Ledger
) -> None:
    # A callback frees a slot after the pass's reservation was refused at the cap, before the
    # pass sets the account's next pass: slot_free made it due now, and the pass's own end
    # must not push that back to the earliest lease (or ten sweep ticks).
    capped_settings = settings.model_copy(update={"exotel_max_live_calls": 4})
    Enqueuer(capped_settings).enqueue_file(as_stream(agent_csv(5)), "feed")
    feeder = feeder_for(capped_settings, ledger)
    assert feeder.drain_once() == {"open": 1, "fed": 2}
    fed = [rid for rid, _ in queued(ledger, capped_settings)]
    slots = LiveSlots(ledger.redis, ledger.keys)
    done = feeder.ledger.feed_done

    def freed_then_done(*args: Any, **kw: Any) -> Any:
        slots.free(fed[0], "default")  # the first call's callback, mid-pass
        feeder.ledger.feed_done = done  # type: ignore[method-assign]
        return done(*args, **kw)

    feeder.ledger.feed_done = freed_then_done  # type: ignore[method-assign]
    ledger.redis.zadd(ledger.keys.feeds(), {"default": 0})  # due now: the pass runs
    assert feeder.drain_once() == {}  # at the cap: nothing fed, the slot frees after
    assert feeder.drain_once() == {"fed": 1}  # the freed slot is used at once


class _HoldSetByTheRoundTrip:
    """A master watch whose hold starts while the limiter's script runs: the round trip
    opened the first connection to a new master (callq.store.epoch)."""

    def __init__(self) -> None:
        self.calls = 0

    def held_for(self) -> float:
        self.calls += 1
        return 0.0 if self.calls == 1 else 30.0


def test_given_a_hold_set_by_the_round_trip_when_permits_are_dropped_then_their_slots_are_freed(
    rclient: redis.Redis,  # type: ignore[type-arg]
    keys: Keys,
) -> None:
    lim = capped(rclient, keys, cap=4)
    lim.hold = _HoldSetByTheRoundTrip()  # type: ignore[assignment]
    got = lim.reserve(count=2, claims=[SlotClaim("r1", 2, 60), SlotClaim("r2", 2, 60)])
    assert got.count == 0 and got.wait == 30.0
    # No call of these goes out, so none may keep a slot until its lease lapses.
    assert LiveSlots(rclient, keys).used("acct") == 0


def test_given_a_receiver_without_exotel_accounts_when_a_named_accounts_call_ends_then_its_slots_are_freed(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # EXOTEL_ACCOUNTS carries every account's API token: the callback receiver (the one
    # internet-facing part) has no need of it, and the k8s manifests give it none of the
    # Secret's keys but CALLBACK_TOKEN. A named account's cap (max_live_calls) is then unknown
    # to it: it must still free that account's slots on a terminal callback (the backfill
    # skips a call whose callback came), or they are held until their lease, each call's
    # slots long after it ended, and the account stalls at its cap.
    north = ExotelAccount(
        account_sid=SIM_SID,
        api_key=SecretStr(SIM_KEY),
        api_token=SecretStr(SIM_TOKEN),
        max_live_calls=4,
    )
    workers = settings.model_copy(update={"exotel_accounts": {"north": north}})
    Enqueuer(workers).enqueue_file(
        as_stream(agent_csv(1)), "n", options=CampaignOptions(account="north")
    )
    dialer = make_dialer(workers, ledger)
    s = workers.for_account("north")
    limiter = Limiter.for_settings(ledger.redis, ledger.keys, s, name="north")
    dialer.accounts["north"] = Account("north", s, ExotelClient(s, make_session()), limiter)
    (rid,) = ledger.iter_request_ids("n")
    assert placed(dialer, rid).result == "originated"
    slots = LiveSlots(ledger.redis, ledger.keys)
    assert slots.used("north") == 2
    # The receiver's settings: no EXOTEL_ACCOUNTS (as the receiver is built: live_caps).
    receiver = _Runtime.build(settings.model_copy(update={"callback_token": SecretStr("t")}))
    try:
        ev = CallbackEvent(ledger.get(rid)["sid"], "completed", rid, {})
        assert receiver.store.apply_event(ev).result == "matched"
    finally:
        receiver.client.close()
    assert slots.used("north") == 0
