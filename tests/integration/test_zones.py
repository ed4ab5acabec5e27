"""``--window-zone callee``: each call's window judged in its callee's own zone, on a fake
clock, with numbers of India (+91), the UAE (+971), the US (+1, New York) and the UK (+44,
which maps to several zones: judged in the campaign's zone, Asia/Kolkata)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from callq.campaign import zones
from callq.campaign.controls import CampaignOptions
from callq.dialing.dialer import Step
from callq.dialing.limiter import Slot
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.demand import read_demand
from callq.store.ledger import Ledger
from callq.sweeping import feed
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app
from callq.transport.queues import CALLS_QUEUE, PRIORITY_QUEUE
from tests.campaigns import AGENT, as_stream
from tests.conftest import make_dialer
from tests.integration.test_feed import queued

INDIA = ["+919700000001", "+919700000002"]
UAE = ["+971501234567", "+971501234568"]
US = ["+12025550123", "+12025550124"]  # America/New_York: UTC-5 in November
UK = ["+447911123456", "+447911123457"]  # several zones: the campaign's (Asia/Kolkata)


def utc(hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, 23, hour, minute, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def csv(numbers: list[str]) -> bytes:
    rows = ["From,To,CustomField", *(f"{AGENT},{n},{n}" for n in numbers)]
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def feeder(settings: Settings, ledger: Ledger) -> tuple[Feeder, Clock, Settings]:
    # A long sweep interval: the judge's next look is then set by the next zone opening, not
    # by its periodic recheck (10 intervals), which is what this test is about.
    s = settings.model_copy(update={"sweep_interval_seconds": 600.0})
    clock = Clock(utc(3))
    return Feeder(ledger, s, make_dialer(s, ledger, clock=clock), make_app(s)), clock, s


def wake_in(ledger: Ledger, campaign: str) -> float:
    """Seconds (Redis clock) until the campaign is judged again."""
    sec, usec = ledger.redis.time()
    score = ledger.redis.zscore(ledger.keys.wake(), campaign)
    assert score is not None
    return score / 1000 - (sec + usec / 1e6)


def place(feeder: Feeder, rid: str, kw: dict[str, Any]) -> Step:
    """Dial a fed message as a worker does: a call late for its permit's slot (a slow test
    process on a loaded machine) is held back unsent and retried, with a permit of its own."""
    step = feeder.dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
    while step.kind == "late":
        step = feeder.dialer.place(rid)
    return step


def fed_numbers(ledger: Ledger, settings: Settings, feeder: Feeder) -> list[str]:
    """The callees of the messages fed so far, dialled now on the feeder's clock; the queue
    is emptied. Each message's step must be an originated call."""
    out = []
    for rid, kw in queued(ledger, settings):
        ledger.redis.rpop(f"{settings.broker_key_prefix}calls")
        step = place(feeder, rid, kw)
        assert step.kind == "originated", (rid, step)
        out.append(ledger.get(rid)["to"])
    return sorted(out)


def test_given_callees_in_three_countries_when_judged_then_each_is_dialled_in_its_own_window(
    feeder: tuple[Feeder, Clock, Settings], ledger: Ledger, sim: Any
) -> None:
    f, clock, s = feeder
    Enqueuer(s).enqueue_file(
        as_stream(csv(INDIA + UAE + US + UK)),
        "cz",
        options=CampaignOptions(window="09:00-21:00", window_zone="callee"),
    )
    recorded = {ledger.get(rid)["to"]: ledger.get(rid)["zone"] for rid in ledger.parked("cz", 99)}
    assert recorded == {
        **dict.fromkeys(INDIA, "Asia/Calcutta"),
        **dict.fromkeys(UAE, "Asia/Dubai"),
        **dict.fromkeys(US, "America/New_York"),
        **dict.fromkeys(UK, ""),
    }

    # 03:00 UTC: 08:30 in India, 07:00 in Dubai, 22:00 in New York: nobody's window is open.
    assert f.drain_once() == {"waiting_zones": 1}
    assert queued(ledger, s) == []
    assert ledger.status("cz").parked == 8
    assert ledger.parked_counts(["cz"], ready=True) == [0]  # all in their zones' bands
    assert 1790 < wake_in(ledger, "cz") < 1800.01  # India's (and the campaign's) 09:00

    # 03:45 UTC: India (and the UK's numbers, in the campaign's zone) open; the rest wait.
    clock.now = utc(3, 45)
    ledger.rewake("cz", 0.0)
    assert f.drain_once() == {"open": 1, "fed": 4}
    assert fed_numbers(ledger, s, f) == sorted(INDIA + UK)
    assert 4490 < wake_in(ledger, "cz") < 4500.01  # Dubai's 09:00, 05:00 UTC

    # A stray message for a US call (a republish, say) dials nothing: the call goes back to
    # its zone's band, its campaign's wake no later than New York's 09:00.
    us_rid = next(r for r in ledger.parked("cz", 99) if ledger.get(r)["to"] == US[0])
    assert f.dialer.place(us_rid).kind == "parked"
    score = ledger.redis.zscore(ledger.keys.campaign_parked("cz"), us_rid)
    assert score is not None and score >= zones.held_offset("America/New_York")

    # 05:30 UTC: Dubai opens (09:30); New York (00:30) still waits.
    clock.now = utc(5, 30)
    ledger.rewake("cz", 0.0)
    assert f.drain_once() == {"open": 1, "fed": 2}
    assert fed_numbers(ledger, s, f) == sorted(UAE)
    assert 5990 < wake_in(ledger, "cz") < 6000.01  # the recheck: New York opens later (8.5 h)

    # 14:30 UTC: New York opens (09:30).
    clock.now = utc(14, 30)
    ledger.rewake("cz", 0.0)
    assert f.drain_once() == {"open": 1, "fed": 2}
    assert fed_numbers(ledger, s, f) == sorted(US)
    assert ledger.status("cz").parked == 0
    truth = sim.truth()
    assert sorted(c["to"] for c in truth["calls"]) == sorted(INDIA + UAE + US + UK)
    assert max(truth["by_custom_field"].values()) == 1


def test_given_a_callee_campaign_set_back_to_its_own_zone_then_held_calls_are_ready_again(
    feeder: tuple[Feeder, Clock, Settings], ledger: Ledger
) -> None:
    f, _, s = feeder
    enq = Enqueuer(s)
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee", timezone="Asia/Dubai")
    enq.enqueue_file(as_stream(csv(INDIA + US)), "cb", options=opts)
    assert f.drain_once() == {"waiting_zones": 1}  # 03:00 UTC: all closed
    enq.set_options("cb", CampaignOptions(window_zone="campaign", window="always"))
    assert f.drain_once() == {"open": 1, "fed": 4}


def test_given_a_call_taken_since_the_judge_read_it_when_moved_then_it_is_left_as_it_is(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(csv(UAE + US)), "mv")
    key = ledger.keys.campaign_parked("mv")
    (a, sa), (b, sb), (c, sc), (d, _) = ledger.redis.zrange(key, 0, -1, withscores=True)
    ledger.redis.zrem(key, a)  # fed (or settled) since it was read
    ledger.redis.zadd(key, {b: sb + zones.held_offset("Asia/Dubai")})  # moved by another judge
    band = zones.held_offset("America/New_York")
    moves = [(a, sa, int(sa) + band), (b, sb, int(sb) + band), (c, sc, int(sc) + band)]
    assert ledger.move_parked("mv", moves) == 1
    assert ledger.redis.zscore(key, a) is None  # not brought back
    assert ledger.redis.zscore(key, b) == sb + zones.held_offset("Asia/Dubai")
    assert ledger.redis.zscore(key, c) == sc + band
    assert ledger.parked("mv", 9, ready=True) == [d]


def test_given_calls_the_judge_did_not_sort_when_fed_then_none_is_dialled_outside_its_window(
    feeder: tuple[Feeder, Clock, Settings],
    ledger: Ledger,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The judge sorts only the head of the ready band (here one call): the feed may then hand
    # out calls of a closed zone, which the dialer parks in their zone's band, undialled.
    monkeypatch.setattr(feed, "ZONES_BATCH", 1)
    f, clock, s = feeder
    clock.now = utc(3, 45)  # India open, New York closed
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee")
    Enqueuer(s).enqueue_file(as_stream(csv(INDIA + US)), "ns", options=opts)
    result = f.drain_once()
    assert result == {"open": 1, "fed": len(INDIA + US)}  # the first call is Indian
    steps: dict[str, list[str]] = {}
    for rid, kw in queued(ledger, s):
        ledger.redis.rpop(f"{s.broker_key_prefix}calls")
        step = place(f, rid, kw)
        steps.setdefault(step.kind, []).append(ledger.get(rid)["to"])
    assert sorted(steps.pop("originated")) == sorted(INDIA)
    assert sorted(steps.pop("parked")) == sorted(US) and steps == {}  # fed, not dialled
    assert ledger.status("ns").parked == len(US)
    assert ledger.parked_counts(["ns"], ready=True) == [0]  # all in New York's band now
    assert sorted(c["to"] for c in sim.truth()["calls"]) == sorted(INDIA)


def test_given_calls_held_in_their_zones_bands_then_the_demand_counts_them_held_not_ready(
    feeder: tuple[Feeder, Clock, Settings], ledger: Ledger
) -> None:
    # The autoscaling signal (callq.store.demand) must not scale workers for calls that wait
    # for their own zone's window: those in a zone band are held, only the ready band counts.
    f, clock, s = feeder
    clock.now = utc(3, 45)  # India open, New York closed
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee")
    Enqueuer(s).enqueue_file(as_stream(csv(INDIA + US)), "dz", options=opts)
    f._sort_zones("dz", f.dialer.controls_of("dz", fresh=True))  # the judge's sort alone
    assert ledger.parked_counts(["dz"], ready=True) == [len(INDIA)]
    d = read_demand(ledger.redis, s, (CALLS_QUEUE, PRIORITY_QUEUE), now=clock.now)
    assert d.by_campaign == {"dz": len(INDIA)}
    assert (d.ready, d.held) == (len(INDIA), len(US))


def test_given_a_band_shared_with_a_closed_zone_full_of_older_calls_then_the_open_zone_is_reached(
    feeder: tuple[Feeder, Clock, Settings], ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windhoek and Tokyo share a band (a hash of the zone name). With more calls of the closed
    # zone at the head of the band than one judge's rounds read (ZONES_ROUNDS x ZONES_BATCH,
    # 5,000 by default; 5 here), each judge must go on where the last one stopped, or the
    # open zone's calls behind them are never reached (fed only when Windhoek opens).
    assert zones.band("Africa/Windhoek") == zones.band("Asia/Tokyo")
    monkeypatch.setattr(feed, "ZONES_BATCH", 1)
    f, clock, s = feeder
    clock.now = utc(20)  # 22:00 in Windhoek, 05:00 in Tokyo: both closed
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee")
    namibia = [f"+2648112345{n:02d}" for n in range(12)]
    enq = Enqueuer(s)
    enq.enqueue_file(as_stream(csv(namibia)), "sh", options=opts)
    tokyo = "+819012345678"
    time.sleep(0.002)  # a later created_at (ms) than every Namibian call's
    enq.enqueue_file(as_stream(csv([tokyo])), "sh", options=opts)
    key = ledger.keys.campaign_parked("sh")
    got = ledger.redis.zrange(key, 0, -1, withscores=True)
    scores = {ledger.get(rid)["to"]: score for rid, score in got}
    assert scores[tokyo] > max(scores[n] for n in namibia)
    for _ in range(4):  # ZONES_ROUNDS calls sorted per judge
        ledger.rewake("sh", 0.0)
        f.drain_once()
        for rid, kw in queued(ledger, s):  # fed before the judge sorted them: parked again
            ledger.redis.rpop(f"{s.broker_key_prefix}calls")
            assert f.dialer.place(rid, slot=Slot(kw["slot"], kw["account"])).kind == "parked"
    assert ledger.status("sh").parked == len(namibia) + 1
    assert ledger.parked_counts(["sh"], ready=True) == [0]  # all in their zone's band

    clock.now = utc(1)  # 03:00 in Windhoek, 10:00 in Tokyo
    fed: list[str] = []
    for _ in range(4):  # 13 calls in the band: three judges' rounds reach the last
        ledger.rewake("sh", 0.0)
        f.drain_once()
        for rid, _kw in queued(ledger, s):
            ledger.redis.rpop(f"{s.broker_key_prefix}calls")
            fed.append(ledger.get(rid)["to"])
    assert fed == [tokyo]


@pytest.mark.parametrize("ending", ["end_at", "cancel"])
def test_given_calls_held_in_zone_bands_when_end_at_passes_or_cancelled_then_every_band_ends(
    feeder: tuple[Feeder, Clock, Settings], ledger: Ledger, ending: str
) -> None:
    # An end_at that falls, or a cancel, while calls wait in several zones' bands: each call
    # ends (expired, cancelled), whatever its band; none is left parked.
    f, clock, s = feeder
    enq = Enqueuer(s)
    end = datetime.fromtimestamp(utc(4), UTC)  # 03:00 UTC now: every zone closed
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee", end_at=end)
    enq.enqueue_file(as_stream(csv(INDIA + UAE + US + UK)), "ze", options=opts)
    assert f.drain_once() == {"waiting_zones": 1}
    assert ledger.parked_counts(["ze"], ready=True) == [0]
    assert wake_in(ledger, "ze") < 1800.01  # India's 09:00 comes before end_at (04:00)
    if ending == "end_at":
        clock.now = utc(4)
        ledger.rewake("ze", 0.0)
        assert f.drain_once() == {"expired": 1}
    else:
        assert ledger.cancel("ze") == 8
        f.drain_once()
    state = "expired" if ending == "end_at" else "cancelled"
    assert ledger.status("ze").parked == 0
    assert {k: n for k, n in ledger.status("ze").states.items() if n} == {state: 8}


def test_given_a_zone_that_closes_while_a_call_waits_for_its_permit_then_it_is_held_in_its_band(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # The worker judges the callee's zone again after its permit: a call claimed in its
    # window that got its permit after New York's 21:00 sends nothing and waits in New
    # York's band (not the ready band, where the feed would hand it a permit again).
    times = iter([utc(1, 59), utc(2, 1)])  # 20:59 and 21:01 in New York
    last = [utc(2, 1)]

    def clock() -> float:
        last[0] = next(times, last[0])
        return last[0]

    opts = CampaignOptions(window="09:00-21:00", window_zone="callee")
    Enqueuer(settings).enqueue_file(as_stream(csv(US[:1])), "pz", options=opts)
    (rid,) = ledger.parked("pz", 9)
    ledger.redis.zrem(ledger.keys.campaign_parked("pz"), rid)  # as the feed takes it
    step = make_dialer(settings, ledger, clock=clock).place(rid)
    assert step.kind == "park"
    score = ledger.redis.zscore(ledger.keys.campaign_parked("pz"), rid)
    assert score is not None and score >= zones.held_offset("America/New_York")
    assert ledger.get(rid)["state"] == "queued" and ledger.get(rid)["attempts"] == "0"
    assert sim.truth()["calls"] == []


def test_given_a_number_cap_when_fed_calls_of_a_closed_zone_are_parked_then_in_their_band_without_a_count(
    feeder: tuple[Feeder, Clock, Settings],
    ledger: Ledger,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As above, under a per-number cap: the feed took each fed call's count, and the claim
    # that parks a closed zone's call gets both the cap (ARGV[9..13]) and the zone's band
    # (ARGV[14]). It parks it in its band, and gives its count back (nothing was placed).
    monkeypatch.setattr(feed, "ZONES_BATCH", 1)
    f, clock, s = feeder
    capped = s.model_copy(update={"number_daily_cap": 1})
    f = Feeder(ledger, capped, make_dialer(capped, ledger, clock=clock), make_app(capped))
    clock.now = utc(3, 45)  # India open, New York closed
    opts = CampaignOptions(window="09:00-21:00", window_zone="callee")
    Enqueuer(capped).enqueue_file(as_stream(csv(INDIA + US)), "nc", options=opts)
    assert f.drain_once() == {"open": 1, "fed": len(INDIA + US)}
    steps: dict[str, list[str]] = {}
    for rid, kw in queued(ledger, capped):
        ledger.redis.rpop(f"{capped.broker_key_prefix}calls")
        step = place(f, rid, kw)
        steps.setdefault(step.kind, []).append(ledger.get(rid)["to"])
    assert sorted(steps.pop("originated")) == sorted(INDIA)
    assert sorted(steps.pop("parked")) == sorted(US) and steps == {}
    assert ledger.parked_counts(["nc"], ready=True) == [0]  # in New York's band
    for rid in ledger.parked("nc", 9):
        score = ledger.redis.zscore(ledger.keys.campaign_parked("nc"), rid)
        assert score is not None and score >= zones.held_offset("America/New_York")
    counts = {n: ledger.redis.zcard(ledger.keys.number_calls(n)) for n in INDIA + US}
    assert counts == {**dict.fromkeys(INDIA, 1), **dict.fromkeys(US, 0)}
