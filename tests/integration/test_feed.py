"""The feed: parked calls handed to the queue with their permits, in fair shares.

In-process feeders on a real Redis (their passes, their turns, the messages they push) and
the races found in review. Whole campaigns through real Celery workers at the shipped
defaults are in tests/system/test_feed_campaigns.py.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from callq.campaign.controls import CampaignOptions
from callq.dialing.dialer import Account
from callq.dialing.limiter import Limiter, Slot
from callq.exotel.client import ExotelClient, make_session
from callq.intake.enqueue import Enqueuer
from callq.settings import ExotelAccount, Settings
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app
from callq.transport.messages import oldest_message, slot_of
from producer import pause_campaign, resume_campaign
from tests.campaigns import agent_csv, as_stream
from tests.conftest import make_dialer


def queued(ledger: Ledger, settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The `calls` queue's messages, oldest first: (request id, kwargs); on the broker's own
    client when the ledger is apart from it."""
    broker = ledger.broker if ledger.broker is not None else ledger.redis
    raw = broker.lrange(f"{settings.broker_key_prefix}calls", 0, -1)
    out = []
    for item in reversed(raw):  # LPUSHed: the oldest is last
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(item)["body"]))
        out.append((args[0], kwargs))
    return out


def feeder_for(settings: Settings, ledger: Ledger) -> Feeder:
    return Feeder(ledger, settings, make_dialer(settings, ledger), make_app(settings))


# --- one feeder, one pass ---------------------------------------------------------------------


def test_given_a_parked_campaign_when_fed_then_each_call_gets_one_permit_within_the_lead(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "feed")
    feeder = feeder_for(settings, ledger)
    assert feeder.drain_once() == {"open": 1, "fed": 20}  # 0.5 s of permits at 40/s
    msgs = queued(ledger, settings)
    assert len({rid for rid, _ in msgs}) == 20
    slots = [kw["slot"] for _, kw in msgs]
    assert {kw["account"] for _, kw in msgs} == {"default"}
    interval_us = (5.0 + settings.rate_limit_margin_seconds) * 1e6 / 200
    gaps = {round(b - a) for a, b in itertools.pairwise(slots)}
    assert gaps == {round(interval_us)}  # one permit apart, in queue order
    sec, usec = ledger.redis.time()
    now_us = sec * 1_000_000 + usec
    assert slots[-1] - now_us <= settings.feed_lead_seconds * 1e6  # all within the lead
    assert ledger.status("feed").parked == 80
    # The next pass is due when the next permit can be handed out, not a tick later.
    due = ledger.redis.zscore(ledger.keys.feeds(), "default")
    assert due is not None and due / 1000 - now_us / 1e6 <= 0.1


def test_given_two_feeders_at_once_when_an_account_is_due_then_one_takes_the_turn(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "turns")
    a, b = feeder_for(settings, ledger), feeder_for(settings, ledger)
    assert a.judge("turns") == "open"
    assert ledger.take_feed_turn("default", 2.0)  # a holds the turn ...
    assert b.feed("default") == 0  # ... so b feeds nothing
    assert queued(ledger, settings) == []


def test_given_many_accounts_due_when_feeders_poll_at_once_then_each_gets_its_own_turns(
    ledger: Ledger,
) -> None:
    # The poll takes the turns of the accounts it returns (due.lua): feeders of several
    # workers share the due accounts, none tries one another holds (the herd of issue 15).
    accounts = [f"acct{i:02d}" for i in range(12)]
    for a in accounts:
        ledger.join_feed(a, f"camp-{a}")
    listed = ledger.due_work(50)  # without a lease: only listed, the turns are free
    assert sorted(listed.accounts) == accounts
    first = ledger.due_work(50, accounts=8, lease=5.0)
    second = ledger.due_work(50, accounts=8, lease=5.0)
    third = ledger.due_work(50, accounts=8, lease=5.0)
    assert len(first.accounts) == 8 and len(second.accounts) == 4 and third.accounts == []
    assert sorted(first.accounts + second.accounts) == accounts  # disjoint, every one
    for a in accounts:
        assert not ledger.take_feed_turn(a, 5.0)  # held by the feeder that polled it
    # The next thing due is the first lease's end, about 5 s ahead.
    assert third.next_in is not None and 4.0 < third.next_in <= 5.0
    # A holder that ends its pass sets the real next due time; the account is due again then.
    sec, usec = ledger.redis.time()
    ledger.feed_done(first.accounts[0], sec * 1000 + usec // 1000 - 1)
    assert ledger.due_work(50, accounts=8, lease=5.0).accounts == [first.accounts[0]]


def test_given_two_campaigns_on_one_account_when_fed_then_they_take_turns_by_weight(
    settings: Settings, ledger: Ledger
) -> None:
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(agent_csv(300)), "heavy", options=CampaignOptions(weight=2.0))
    enq.enqueue_file(as_stream(agent_csv(300, start=1000)), "light")
    feeder = feeder_for(settings, ledger)
    feeder.drain_once()
    for _ in range(6):  # passes as the lead moves on
        time.sleep(0.12)
        ledger.redis.zadd(ledger.keys.feeds(), {"default": 0})
        feeder.feed("default")
    got: dict[str, int] = {}
    for rid, _ in queued(ledger, settings):
        got[rid.split(":")[0]] = got.get(rid.split(":")[0], 0) + 1
    assert got["heavy"] + got["light"] >= 40
    assert abs(got["heavy"] - 2 * got["light"]) <= 3


def test_given_a_campaign_paused_in_the_feed_when_fed_then_it_is_skipped_and_fed_after_resume(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(5)), "pz")
    feeder = feeder_for(settings, ledger)
    assert feeder.judge("pz") == "open"
    ledger.redis.hset(ledger.keys.campaign_meta("pz"), "paused", "1")  # as if set just now
    feeder.dialer.controls_of("pz", fresh=True)
    assert feeder.feed("default") == 0
    assert ledger.redis.zscore(ledger.keys.feed("default"), "pz") is None  # left the feed
    assert queued(ledger, settings) == [] and ledger.status("pz").parked == 5
    pause_campaign("pz", settings=settings)
    assert feeder.drain_once() == {"paused": 1}
    resume_campaign("pz", settings=settings)
    feeder.dialer.controls_of("pz", fresh=True)
    assert feeder.drain_once() == {"open": 1, "fed": 5}


def test_given_a_fed_call_that_missed_its_slot_when_dialled_then_it_reserves_another(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(1)), "miss")
    (rid,) = ledger.iter_request_ids("miss")
    sec, usec = ledger.redis.time()
    stale = Slot(sec * 1_000_000 + usec - 5_000_000, "default")  # 5 s ago: it sat in a queue
    step = make_dialer(settings, ledger).place(rid, slot=stale)
    assert step.result == "originated"
    assert sim.truth()["by_custom_field"] == {rid: 1}


# --- races found in review -----------------------------------------------------------------


def test_given_a_pause_racing_a_feed_pass_when_end_at_passes_then_the_paused_calls_expire(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Found in review: a feed pass whose controls predate a pause found the campaign paused
    # in unpark.lua and dropped the wake the judge had just set to end_at: its calls never
    # expired while it stayed paused.
    end_at = datetime.now(UTC) + timedelta(seconds=3)
    Enqueuer(settings).enqueue_file(
        as_stream(agent_csv(50)), "pe", options=CampaignOptions(end_at=end_at)
    )
    a = feeder_for(settings, ledger)
    b = feeder_for(settings, Ledger(ledger.redis, ledger.keys))  # another worker's feeder
    assert a.judge("pe") == "open"
    real_parked_many = b.ledger.parked_many

    def parked_many_then_pause(campaigns: list[str], count: int) -> dict[str, list[str]]:
        out = real_parked_many(campaigns, count)  # B has read the feed, not paused ...
        pause_campaign("pe", settings=settings)  # ... the operator pauses ...
        assert a.judge("pe") == "paused"  # ... and A's judge sets the wake at end_at
        return out

    b.ledger.parked_many = parked_many_then_pause  # type: ignore[method-assign]
    ledger.redis.zadd(ledger.keys.feeds(), {"default": 0})  # B's feed pass is due
    b.feed("default")
    assert ledger.redis.zscore(ledger.keys.wake(), "pe") is not None
    time.sleep(max(0.0, end_at.timestamp() - time.time()) + 0.5)
    for _ in range(3):
        a.run_once()
    assert ledger.status("pe").states["expired"] == 50


def test_given_a_fed_slot_far_ahead_when_dialled_then_the_thread_does_not_sleep_on_it(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Found in review: after a backward step of the Redis clock, fed messages already queued
    # carry slots the whole step ahead; a thread slept on each, with no bound.
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(1)), "far")
    (rid,) = ledger.iter_request_ids("far")
    sec, usec = ledger.redis.time()
    ahead = Slot(sec * 1_000_000 + usec + 30_000_000, "default")  # 30 s ahead
    began = time.monotonic()
    assert make_dialer(settings, ledger).place(rid, slot=ahead).result == "originated"
    assert time.monotonic() - began < 5.0  # a permit of its own, not a 30 s sleep
    assert sim.truth()["by_custom_field"] == {rid: 1}


def test_given_a_judge_with_old_controls_when_it_reschedules_then_a_newer_set_still_wins(
    settings: Settings, ledger: Ledger
) -> None:
    # Found in review: a judge that read the controls just before an operator's `set` put
    # the campaign's next look off to its old window's opening (hours), over the set's
    # "look now".
    night = datetime(2026, 11, 23, 23, 0, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(agent_csv(2)), "ov", options=CampaignOptions(window="09:00-21:00"))
    feeder = Feeder(
        ledger, settings, make_dialer(settings, ledger, clock=lambda: night), make_app(settings)
    )
    stale = feeder.dialer.controls_of("ov", fresh=True)  # the judge reads the controls ...
    enq.set_options("ov", CampaignOptions(window="always"))  # ... the operator opens it ...
    feeder.dialer.controls_of = lambda campaign, fresh=False: stale  # type: ignore[method-assign]
    assert feeder.judge("ov") == "waiting"  # ... and the judge, on what it read, says wait
    wake = ledger.redis.zscore(ledger.keys.wake(), "ov")
    assert wake == 0  # the set's look-now stands


class TestALowRateAccount:
    """20 calls per 30 s: one permit every 1.55 s, longer than the horizon plus the lead."""

    @pytest.fixture
    def sim_limit(self) -> tuple[int, float]:
        return (20, 30.0)

    def test_given_an_idle_gap_when_the_next_campaign_comes_then_it_is_fed(
        self, settings: Settings, ledger: Ledger, sim: Any
    ) -> None:
        # Found in review: after one idle gap such an account was never fed again.
        s = settings.model_copy(update={"rate_limit_margin_seconds": 1.0})
        enq = Enqueuer(s)
        feeder = feeder_for(s, ledger)

        def run_feed(campaign: str, seconds: float) -> int:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                feeder.run_once()
                for rid, kw in queued(ledger, s):
                    ledger.redis.rpop(f"{s.broker_key_prefix}calls")
                    feeder.dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
                if ledger.status(campaign).states["originated"]:
                    break
                time.sleep(0.05)
            return ledger.status(campaign).states["originated"]

        enq.enqueue_file(as_stream(agent_csv(1)), "first")
        assert run_feed("first", 5.0) == 1
        time.sleep(2.0)  # idle: more than one interval passes
        enq.enqueue_file(as_stream(agent_csv(1, start=50)), "second")
        assert run_feed("second", 5.0) == 1


def judge_with(feeder: Feeder, campaign: str, stale: Any) -> str:
    """The judge's verdict on controls it read before an operator's change (``stale``)."""
    real = feeder.dialer.controls_of
    feeder.dialer.controls_of = lambda c, fresh=False: stale  # type: ignore[method-assign]
    try:
        return feeder.judge(campaign)
    finally:
        feeder.dialer.controls_of = real  # type: ignore[method-assign]


@pytest.mark.parametrize("before", [None, 3600.0])
def test_given_a_paused_campaign_when_a_set_gives_an_end_at_under_a_stale_judge_then_it_expires(
    settings: Settings, ledger: Ledger, before: float | None
) -> None:
    # Found in the second review: the judge's paused branch set (or dropped) the wake on the
    # end_at it had read, over a `set` that gave the campaign a new end_at.
    enq = Enqueuer(settings)
    old = None if before is None else datetime.now(UTC) + timedelta(seconds=before)
    enq.enqueue_file(as_stream(agent_csv(5)), "pz", options=CampaignOptions(end_at=old))
    pause_campaign("pz", settings=settings)
    feeder = feeder_for(settings, ledger)
    assert feeder.judge("pz") == "paused"
    stale = feeder.dialer.controls_of("pz", fresh=True)
    end_at = datetime.now(UTC) + timedelta(seconds=2)
    enq.set_options("pz", CampaignOptions(end_at=end_at))
    assert judge_with(feeder, "pz", stale) == "paused"
    time.sleep(max(0.0, end_at.timestamp() - time.time()) + 0.5)
    for _ in range(3):
        feeder.run_once()
    assert ledger.status("pz").states["expired"] == 5


def test_given_an_open_judge_with_old_controls_when_a_set_closes_the_window_then_it_waits(
    settings: Settings, ledger: Ledger
) -> None:
    # Found in the second review: the open branch put the set's look-now off by a recheck and
    # kept the campaign in its account's feed, whose calls then parked at their claims.
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(agent_csv(5)), "ow")
    feeder = feeder_for(settings, ledger)
    stale = feeder.dialer.controls_of("ow", fresh=True)
    closed = "00:00-00:01" if datetime.now(UTC).minute != 0 else "12:00-12:01"
    enq.set_options("ow", CampaignOptions(window=closed, timezone="UTC"))
    judge_with(feeder, "ow", stale)
    assert ledger.redis.zscore(ledger.keys.wake(), "ow") == 0  # the set's look-now stands
    feeder.dialer.controls_of("ow", fresh=True)
    assert feeder.run_once().judged == {"waiting": 1}
    assert ledger.redis.zscore(ledger.keys.feed("default"), "ow") is None


def test_given_a_slow_feeder_whose_polled_turn_lapsed_when_another_holds_it_then_it_feeds_none(
    settings: Settings, ledger: Ledger
) -> None:
    # A poll takes up to 8 turns at once (due.lua), each leased from the poll: a feeder slow
    # over the first accounts finds a later one's lease run out, and another feeder holding
    # it. It must not feed that account as if the turn were still its own.
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "lapsed")
    a, b = feeder_for(settings, ledger), feeder_for(settings, ledger)
    assert a.judge("lapsed") == "open"
    polled = time.monotonic()
    assert ledger.due_work(50, accounts=8, lease=a.turn_lease).accounts == ["default"]
    time.sleep(a.turn_lease + 0.2)  # a is slow: its lease on the turn runs out
    assert ledger.take_feed_turn("default", 2.0)  # b takes the turn, as b's poll would
    assert a.feed("default", held_since=polled) == 0  # a's turn is gone
    assert queued(ledger, settings) == []
    assert b.feed("default", held_since=time.monotonic()) == 20  # the holder feeds it


def test_given_a_pass_that_fails_on_one_account_then_the_turns_it_did_not_reach_are_due_again(
    settings: Settings, ledger: Ledger
) -> None:
    # The poll takes up to 8 turns at once: a Redis error feeding the first account must not
    # leave the others held, unfed, until their leases run out (another feeder feeds them).
    north = ExotelAccount(account_sid="north-sid", api_key=SecretStr("k"), api_token=SecretStr("t"))
    two = settings.model_copy(update={"exotel_accounts": {"north": north}})
    enq = Enqueuer(two)
    enq.enqueue_file(as_stream(agent_csv(40)), "south")
    enq.enqueue_file(
        as_stream(agent_csv(40, start=1000)), "north", options=CampaignOptions(account="north")
    )
    a, b = feeder_for(two, ledger), feeder_for(two, ledger)
    for f in (a, b):  # as the worker builds its accounts (callq.worker.runtime)
        s = two.for_account("north")
        limiter = Limiter.for_settings(ledger.redis, ledger.keys, s, name="north")
        f.dialer.accounts["north"] = Account("north", s, ExotelClient(s, make_session()), limiter)
    assert a.judge("south") == "open" and a.judge("north") == "open"
    k = ledger.keys
    ledger.redis.zadd(k.feeds(), {"north": 1, "default": 2})  # north first in the poll
    ledger.redis.delete(k.feed("north"))
    ledger.redis.set(k.feed("north"), "not a zset")  # feeding north fails (WRONGTYPE)
    with pytest.raises(redis.ResponseError):
        a.run_once()
    assert queued(ledger, two) == []
    assert b.run_once().fed == 20  # the default account's turn came back: b feeds it


# --- back-pressure: no permits while the workers are behind ----------------------------------


def redis_now_us(ledger: Ledger) -> int:
    sec, usec = ledger.redis.time()
    return int(sec) * 1_000_000 + int(usec)


def held_passes() -> float:
    return REGISTRY.get_sample_value("callq_feed_held_passes_total") or 0.0


def test_given_a_late_fed_message_oldest_in_the_queue_when_fed_then_the_pass_is_held_until_taken(
    settings: Settings, ledger: Ledger
) -> None:
    # The workers are behind: the oldest message in `calls` is a fed call already 1 s late for
    # its slot (the dialer's tolerance is half the margin). The feed hands out no permit
    # (the limiter untouched) until a worker takes that message, then feeds again.
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "bp")
    feeder = feeder_for(settings, ledger)
    assert feeder.judge("bp") == "open"
    lim = feeder.dialer.default_account.limiter
    queue = feeder.normal.queue_key
    late = feeder.normal.encode("bp:late", Slot(redis_now_us(ledger) - 1_000_000, "default"))
    ledger.redis.rpush(queue, late)  # the oldest end: kombu LPUSHes, workers BRPOP
    state = ledger.redis.get(lim.key)
    before = held_passes()
    r = feeder.run_once()
    assert r.fed == 0 and r.held is not None and 0.9 < r.held < 1.5
    assert ledger.redis.get(lim.key) == state  # no permit reserved
    assert ledger.redis.lrange(queue, 0, -1) == [late]
    assert ledger.status("bp").parked == 100
    assert held_passes() == before + 1
    assert r.next_in is not None and r.next_in <= 0.1  # it looks again after a short tick
    due = ledger.redis.zscore(ledger.keys.feeds(), "default")
    assert due is not None and due / 1000 - redis_now_us(ledger) / 1e6 <= 0.1
    # A campaign judged in a held pass does not feed its account either.
    assert feeder.judge("bp") == "open"
    time.sleep(0.11)
    assert feeder.run_once().fed == 0
    assert ledger.redis.get(lim.key) == state
    # A worker takes it: the next pass feeds.
    assert ledger.redis.rpop(queue) == late
    time.sleep(0.11)
    r = feeder.run_once()
    assert r.held is None and r.fed == 20
    assert ledger.redis.get(lim.key) != state


@pytest.mark.parametrize(
    "oldest",
    [
        "not json",
        json.dumps({"body": "not base64 json"}),
        json.dumps({"headers": {}}),
        "slotless",  # a retry's or a requeued call's message: no fed slot
        "ahead",  # a fed message whose slot has not come yet
        "stuck",  # late past RETRY_OVERDUE_SECONDS: nobody takes it (its copy is out)
    ],
)
def test_given_an_oldest_message_that_is_not_a_late_fed_one_when_fed_then_the_feed_goes_on(
    settings: Settings, ledger: Ledger, oldest: str
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "bpok")
    feeder = feeder_for(settings, ledger)
    now_us = redis_now_us(ledger)
    raw = {
        "slotless": feeder.normal.encode("bpok:x"),
        "ahead": feeder.normal.encode("bpok:x", Slot(now_us + 400_000, "default")),
        "stuck": feeder.normal.encode(
            "bpok:x", Slot(now_us - int((settings.retry_overdue_seconds + 1) * 1e6), "default")
        ),
    }.get(oldest, oldest)
    ledger.redis.rpush(feeder.normal.queue_key, raw)
    assert feeder.drain_once() == {"open": 1, "fed": 20}
    assert len(queued_after(ledger, feeder.normal.queue_key)) == 21


def queued_after(ledger: Ledger, key: str) -> list[str]:
    return list(ledger.redis.lrange(key, 0, -1))


def test_given_backpressure_off_when_a_late_fed_message_waits_then_the_feed_goes_on(
    settings: Settings, ledger: Ledger
) -> None:
    off = settings.model_copy(update={"feed_backpressure": False})
    Enqueuer(off).enqueue_file(as_stream(agent_csv(100)), "bpoff")
    feeder = feeder_for(off, ledger)
    late = feeder.normal.encode("bpoff:x", Slot(redis_now_us(ledger) - 1_000_000, "default"))
    ledger.redis.rpush(feeder.normal.queue_key, late)
    assert feeder.drain_once() == {"open": 1, "fed": 20}


def test_given_messages_published_through_kombu_then_the_oldest_is_the_one_the_feed_reads(
    settings: Settings, ledger: Ledger
) -> None:
    # The feed's read rests on kombu's Redis transport: LPUSH to publish, BRPOP to consume.
    # Two messages published by Celery itself: oldest_message is the first, and a consumer
    # of kombu takes that one first.
    app = make_app(settings)
    key = f"{settings.broker_key_prefix}calls"
    first = app.send_task("callq.place_call", args=("a",), kwargs={"slot": 1, "account": "x"})
    app.send_task("callq.place_call", args=("b",), queue="calls")
    assert slot_of(oldest_message(ledger.redis, key)) == Slot(1, "x")
    with app.connection_for_read() as conn:
        msg = conn.SimpleQueue("calls", no_ack=True).get(timeout=2)
        assert msg.headers["id"] == first.id
    assert slot_of(oldest_message(ledger.redis, key)) is None  # "b": no slot


def test_given_a_broker_read_that_fails_after_the_poll_then_the_polled_turns_are_due_again(
    settings: Settings, ledger: Ledger
) -> None:
    # Found in the back-pressure review: the queue's oldest message is read after due.lua took
    # the poll's turns, outside the guard that hands them back. A Redis error on that read
    # (the broker's client: here one pointed at a closed port) must not leave the turns held,
    # unfed, until their leases run out: another feeder feeds them at once.
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(100)), "bpfail")
    a, b = feeder_for(settings, ledger), feeder_for(settings, ledger)
    assert a.judge("bpfail") == "open"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens there
    a.broker = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        a.run_once()
    assert queued(ledger, settings) == []
    assert b.run_once().fed == 20  # the turn came back: b feeds it now
