"""Campaign controls without worker processes: windows on a fake clock, parking, judging and
feeding, pause/cancel fences, dedupe, options. Real Redis and the simulator over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callq.campaign.controls import CampaignOptions, Controls
from callq.campaign.window import Window
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app
from producer import campaign_status, pause_campaign, resume_campaign
from tests.campaigns import as_stream, campaign_csv, mobile
from tests.conftest import make_dialer, placed

IST = ZoneInfo("Asia/Kolkata")


def at_ist(*args: int) -> float:
    return datetime(*args, tzinfo=IST).timestamp()  # type: ignore[misc]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def first_ids(ledger: Ledger, campaign: str) -> list[str]:
    return list(ledger.iter_request_ids(campaign))


# --- the window and the gate, as pure functions ---------------------------------------------


def test_given_no_window_set_when_judged_at_any_hour_then_calls_may_go() -> None:
    ctl = Controls.from_meta("c", {})
    assert ctl.window.always and ctl.timezone == "Asia/Kolkata"
    for hour in range(24):
        assert ctl.gate(at_ist(2026, 11, 23, hour, 30)).kind == "go"
    assert ctl.held(at_ist(2026, 11, 23, 23, 0), 300) is None


def test_given_the_trai_window_when_judged_at_each_hour_then_it_opens_09_to_21_ist() -> None:
    assert Window.parse("09:00-21:00") == Window(540, 1260, always=False)
    ctl = Controls.from_meta("c", {"window": "09:00-21:00"})
    assert ctl.gate(at_ist(2026, 11, 23, 9, 0)).kind == "go"
    assert ctl.gate(at_ist(2026, 11, 23, 20, 59)).kind == "go"
    late = ctl.gate(at_ist(2026, 11, 23, 21, 0))
    assert late.kind == "wait" and late.wait == pytest.approx(12 * 3600)
    early = ctl.gate(at_ist(2026, 11, 23, 8, 30))
    assert early.kind == "wait" and early.wait == pytest.approx(1800)
    held = ctl.held(at_ist(2026, 11, 23, 22, 55), 300)
    assert held is not None and held.until == at_ist(2026, 11, 24, 9, 0)
    assert held.message(at_ist(2026, 11, 23, 22, 55)) == (
        "300 calls wait for the calling window 09:00-21:00 Asia/Kolkata: it opens at "
        "2026-11-24 09:00 IST (in 10 h 05 min)"
    )
    assert held.as_dict() == {
        "reason": "window",
        "until": "2026-11-24T09:00:00+05:30",
        "count": 300,
        "detail": "09:00-21:00 Asia/Kolkata",
        "expires": False,
    }


def test_given_a_window_over_midnight_and_an_end_at_when_judged_then_waits_stop_at_end_at() -> None:
    ctl = Controls.from_meta(
        "c", {"window": "20:00-08:00", "end_at": str(int(at_ist(2026, 11, 24, 10, 0) * 1000))}
    )
    assert ctl.gate(at_ist(2026, 11, 23, 23, 0)).kind == "go"
    assert ctl.gate(at_ist(2026, 11, 24, 7, 59)).kind == "go"
    wait = ctl.gate(at_ist(2026, 11, 24, 9, 0))
    assert wait.kind == "wait" and wait.wait == pytest.approx(3600)  # wakes at end_at
    assert ctl.gate(at_ist(2026, 11, 24, 10, 0)).kind == "expire"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("window", "9-21", "window start"),
        ("window", "09:00-09:00", "empty"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("redial_on", ("busy", "answered"), "redial_on: answered"),
        ("redials", 11, "redials"),
        ("redial_interval", 0.0, "redial_interval"),
        ("account", "a b", "account"),
    ],
)
def test_given_a_bad_option_when_validated_then_the_error_names_it(
    option: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CampaignOptions(**{option: value}).to_meta()


# --- windows on a fake clock, through the dialer and the drain ------------------------------


def test_given_a_fake_night_clock_when_dialled_then_calls_wait_for_09_00_and_expire_at_end_at(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    clock = FakeClock(at_ist(2026, 11, 23, 22, 30))
    end_at = datetime(2026, 11, 24, 9, 30, tzinfo=IST)
    enq = Enqueuer(settings)
    enq.enqueue_file(
        as_stream(campaign_csv(3)),
        "night",
        options=CampaignOptions(window="09:00-21:00", end_at=end_at),
    )
    dialer = make_dialer(settings, ledger, clock=clock)
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    a, b, c = first_ids(ledger, "night")

    assert dialer.place(a).result == "parked:queued"
    assert dialer.place(b).result == "parked:queued"
    assert sim.truth()["requests"] == 0
    assert ledger.get(a)["state"] == "queued" and ledger.get(a)["parked"] == "waiting"
    assert feeder.drain_once() == {"waiting": 1}  # setting end_at asked for a look now
    wake = ledger.redis.zscore(ledger.keys.wake(), "night")
    sec, _ = ledger.redis.time()
    assert wake is not None and wake / 1000 - sec == pytest.approx(10.5 * 3600, abs=5)
    assert ledger.status("night").states["queued"] == 3
    held = campaign_status("night", settings=settings, now=clock.now).held
    assert held is not None and (held.reason, held.count) == ("window", 3)

    clock.now = at_ist(2026, 11, 24, 8, 0)  # still closed: the judge only moves the wake
    assert feeder.judge("night") == "waiting"
    clock.now = at_ist(2026, 11, 24, 9, 0)  # open: the campaign joins its account's feed
    assert feeder.judge("night") == "open"
    assert feeder.feed("default") == 3  # every parked call, each with its permit
    assert ledger.redis.llen(f"{settings.broker_key_prefix}calls") >= 3
    assert dialer.place(a).result == "originated"
    clock.now = at_ist(2026, 11, 24, 9, 30)  # end_at: what has not been dialled expires
    assert dialer.place(b).result == "expired:expired"
    assert dialer.place(c).result == "expired:expired"
    status = ledger.status("night")
    assert (status.states["originated"], status.states["expired"]) == (1, 2)
    assert sim.truth()["by_custom_field"] == {a: 1}


def test_given_the_shipped_defaults_at_23_00_ist_when_a_campaign_is_enqueued_then_it_is_dialled(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # No setting but Redis, the simulator and the time scale: no window holds it back.
    clock = FakeClock(at_ist(2026, 11, 23, 23, 0))
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(3)), "late")
    assert campaign_status("late", settings=settings, now=clock.now).held is None
    dialer = make_dialer(settings, ledger, clock=clock)
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    assert feeder.drain_once() == {"open": 1, "fed": 3}
    for rid in first_ids(ledger, "late"):
        assert placed(dialer, rid).result == "originated"
    assert sorted(sim.truth()["by_custom_field"].values()) == [1, 1, 1]


def test_given_parked_calls_when_end_at_passes_then_the_drain_expires_them(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    clock = FakeClock(at_ist(2026, 11, 23, 10, 0))
    send_at = datetime(2026, 11, 23, 11, 0, tzinfo=IST)
    end_at = datetime(2026, 11, 23, 12, 0, tzinfo=IST)
    Enqueuer(settings).enqueue_file(
        as_stream(campaign_csv(4)), "later", options=CampaignOptions(send_at=send_at, end_at=end_at)
    )
    dialer = make_dialer(settings, ledger, clock=clock)
    for rid in first_ids(ledger, "later"):
        assert dialer.place(rid).result == "parked:queued"  # before send_at
    held = campaign_status("later", settings=settings, now=clock.now).held
    assert held is not None and (held.reason, held.until) == ("send_at", send_at.timestamp())
    assert "wait for the campaign's send_at: 11:00 IST (in 1 h 00 min)" in held.message(clock.now)
    clock.now = at_ist(2026, 11, 23, 12, 0, 1)
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    assert feeder.judge("later") == "expired"
    status = ledger.status("later")
    assert status.states["expired"] == 4 and status.parked == 0 and status.settled
    assert ledger.redis.zscore(ledger.keys.wake(), "later") is None
    assert sim.truth()["requests"] == 0


# --- pause, resume and cancel fences --------------------------------------------------------


def test_given_a_paused_campaign_when_its_calls_come_then_they_park_and_resume_drains_them(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(3)), "p")
    pause_campaign("p", settings=settings)
    dialer = make_dialer(settings, ledger)
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    ids = first_ids(ledger, "p")
    for rid in ids:
        assert dialer.place(rid).result == "parked:queued"
    assert ledger.get(ids[0])["parked"] == "paused"
    assert feeder.drain_once() == {"paused": 1}  # nothing moves while paused
    assert ledger.redis.zscore(ledger.keys.wake(), "p") is None  # no end_at: no wake
    status = campaign_status("p", settings=settings).as_dict(details=True)
    assert status["parked"] == 3
    assert status["held"] == {
        "reason": "paused",
        "until": None,
        "count": 3,
        "detail": "",
        "expires": False,
    }
    queue = f"{settings.broker_key_prefix}calls"
    before = ledger.redis.llen(queue)
    assert resume_campaign("p", settings=settings) == 3
    assert feeder.drain_once() == {"open": 1, "fed": 3}
    assert ledger.redis.llen(queue) == before + 3
    assert feeder.drain_once() == {}  # each parked call is pushed once
    for rid in ids:
        assert placed(dialer, rid).result == "originated"
    assert sorted(sim.truth()["by_custom_field"].values()) == [1, 1, 1]


def test_given_a_claimed_call_when_the_campaign_pauses_or_cancels_before_its_mark_then_nothing_is_sent(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(2)), "f")
    a, b = first_ids(ledger, "f")
    ca = ledger.claim(a, lease_seconds=30, early_tolerance=1, worker="t")
    cb = ledger.claim(b, lease_seconds=30, early_tolerance=1, worker="t")
    ledger.pause("f")
    assert ledger.mark_sent(a, ca.claim, lease_seconds=30) == "paused"
    ledger.cancel("f")
    assert ledger.mark_sent(b, cb.claim, lease_seconds=30) == "cancelled"
    assert ledger.release(b, cb.claim, republish_after=5, action="cancelled")
    # Released to be parked after the cancel: it is cancelled instead (never stranded).
    assert ledger.release(a, ca.claim, republish_after=5, action="park")
    dialer = make_dialer(settings, ledger)
    assert Feeder(ledger, settings, dialer, make_app(settings)).judge("f") == "cancelled_none"
    status = ledger.status("f")
    assert status.states["cancelled"] == 2 and status.parked == 0
    assert sim.truth()["requests"] == 0
    # A cancelled campaign refuses new calls, and says so.
    res = Enqueuer(settings).enqueue_file(as_stream(campaign_csv(2, start=10)), "f")
    assert (res.accepted, res.refused) == (0, 2)
    assert any("cancelled" in str(i) for i in res.issues)


# --- dedupe ---------------------------------------------------------------------------------


def _dup_csv() -> bytes:
    agent = mobile("98", 1)  # "connect two numbers": the agent is called first, on every row
    flow = "http://my.exotel.com/acct/exoml/start_voice/42"
    rows = [
        "From,To,CallerId,Url,CustomField",
        f"{agent},{mobile('97', 1)},08030752400,,first",  # line 2
        f"{agent},{mobile('97', 2)},08030752400,,other",  # line 3: same agent, another customer
        f"{agent},{mobile('97', 1)},08030752400,,second",  # line 4: same pair as line 2
        f"{agent},{mobile('97', 1)},08030752400,,first",  # line 5: the same row as line 2
        f"{mobile('96', 7)},,08030752400,{flow},flow-a",  # line 6: a flow: From is the customer
        f"{mobile('96', 7)},,08030752400,{flow},flow-b",  # line 7: the same customer again
    ]
    return ("\n".join(rows) + "\n").encode()


@pytest.mark.parametrize(
    ("dedupe", "kept", "reported"),
    [
        ("first", {"first", "other", "flow-a"}, {4: "From,To", 5: "row", 7: "From"}),
        # line 5 (a copy of 2) is kept as the last of the pair; 2 and 4 are reported
        ("last", {"first", "other", "flow-b"}, {2: "From,To", 4: "From,To", 6: "From"}),
        ("all", {"first", "other", "second", "flow-a", "flow-b"}, {5: "row"}),
    ],
)
def test_given_the_same_parties_twice_in_a_file_when_enqueued_then_the_dedupe_rule_keeps_one(
    settings: Settings, ledger: Ledger, dedupe: Any, kept: set[str], reported: dict[int, str]
) -> None:
    res = Enqueuer(settings).enqueue_file(as_stream(_dup_csv()), f"dd-{dedupe}", dedupe=dedupe)
    assert res.accepted == len(kept)
    assert {d.line: d.field for d in res.duplicates} == reported
    assert all("kept line" in str(d) for d in res.duplicates)
    got = {r["custom_field"] for r in ledger.iter_records(f"dd-{dedupe}")}
    assert got == kept


def test_given_a_duplicate_pair_when_reported_then_both_lines_and_the_numbers_are_named(
    settings: Settings,
) -> None:
    res = Enqueuer(settings).enqueue_file(as_stream(_dup_csv()), "dd-msg")
    by_line = {d.line: str(d) for d in res.duplicates}
    assert by_line[4] == (
        f"line 4: From,To: {mobile('98', 1)} -> {mobile('97', 1)} again, as on line 2; kept line 2"
    )
    assert by_line[7] == (
        f"line 7: From: {mobile('96', 7)} (a call flow) again, as on line 6; kept line 6"
    )


def test_given_one_agent_number_on_every_row_when_enqueued_then_no_row_is_a_duplicate(
    settings: Settings, ledger: Ledger
) -> None:
    agent = "+918030752499"
    lines = ["From,To,CallerId"] + [f"{agent},{mobile('97', i)},08030752400" for i in range(300)]
    res = Enqueuer(settings).enqueue_file(as_stream(("\n".join(lines) + "\n").encode()), "agent")
    assert (res.accepted, res.duplicates, res.rejected) == (300, [], [])
    assert ledger.status("agent").total == 300


# --- the command line -----------------------------------------------------------------------


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=False,
    )


def test_given_the_cli_when_a_campaign_is_enqueued_paused_resumed_and_set_then_status_shows_it(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(campaign_csv(3))
    bad = run(settings, "enqueue", str(path), "--campaign", "cli", "--window", "25:00-26:00")
    assert bad.returncode == 2 and "--window" not in bad.stdout
    assert "window start" in bad.stderr
    bad = run(settings, "enqueue", str(path), "--campaign", "cli", "--account", "nowhere")
    assert bad.returncode == 2 and "nowhere" in bad.stderr
    ok = run(
        settings,
        *("enqueue", str(path), "--campaign", "cli", "--window", "10:00-18:00"),
        *("--redial-on", "busy,no-answer", "--redials", "2", "--redial-interval", "300"),
    )
    assert ok.returncode == 0, ok.stderr
    assert run(settings, "pause", "cli").returncode == 0
    text = run(settings, "status", "cli").stdout
    assert "PAUSED" in text and "window 10:00-18:00 Asia/Kolkata" in text
    assert "redial on busy,no-answer: up to 2" in text
    details = json.loads(run(settings, "status", "cli", "--json", "--details").stdout)
    assert details["controls"]["paused"] is True
    assert details["controls"]["redial"]["redials"] == 2
    status = json.loads(run(settings, "status", "cli", "--json").stdout)
    assert {"campaign", "total", "states", "call_status"} <= set(status)  # the contract's keys
    assert status["held"]["reason"] == "paused" and status["held"]["count"] == 3
    assert "HELD: 3 calls wait: the campaign is paused" in text
    assert "resumed" in run(settings, "resume", "cli").stdout
    out = run(settings, "set", "cli", "--end-at", "2026-11-30T18:00:00+05:30")
    assert out.returncode == 0 and "2026-11-30T18:00:00+05:30" in out.stdout
    bad = run(settings, "set", "cli", "--end-at", "tomorrow")
    assert bad.returncode == 2 and "--end-at" in bad.stderr
    assert run(settings, "pause", "nosuch").returncode == 1


# --- races and edges found in review ---------------------------------------------------------


def _claim(ledger: Ledger, rid: str) -> Any:
    c = ledger.claim(rid, lease_seconds=30, early_tolerance=1, worker="t")
    assert c.claimed
    return c


def test_given_a_cancel_while_a_call_is_claimed_when_the_worker_parks_it_then_it_is_cancelled(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(1)), "cx")
    (x,) = first_ids(ledger, "cx")
    c = _claim(ledger, x)
    assert ledger.cancel("cx") == 0  # x is dialing: skipped by the cancel itself
    assert ledger.release(x, c.claim, republish_after=5, action="park", wake_in=0.1)
    status = ledger.status("cx")
    assert status.states["cancelled"] == 1 and status.parked == 0 and status.settled


def test_given_a_redialled_call_when_its_new_callback_beats_the_worker_then_it_is_matched(
    settings: Settings, ledger: Ledger
) -> None:
    from callq.store.callbacks import CallbackEvent, CallbackStore

    Enqueuer(settings).enqueue_file(
        as_stream(campaign_csv(1)),
        "rd",
        options=CampaignOptions(redial_on=("busy",), redials=2),  # interval: the default
    )
    (x,) = first_ids(ledger, "rd")
    store = CallbackStore(ledger.redis, ledger.keys)
    c = _claim(ledger, x)
    assert ledger.mark_sent(x, c.claim, lease_seconds=30)
    assert ledger.finish(x, c.claim, "originated", sid="S1").ok
    applied = store.apply_event(CallbackEvent("S1", "busy", x))
    assert applied.redialled
    rec = ledger.get(x)
    sec, _ = ledger.redis.time()
    assert int(rec["next_at"]) / 1000 - sec == pytest.approx(600, abs=5)  # default interval
    ledger.redis.hset(ledger.keys.call(x), "next_at", 0)  # due now
    c2 = _claim(ledger, x)
    assert ledger.mark_sent(x, c2.claim, lease_seconds=30)
    # The new attempt's callback comes before the worker records its reply.
    applied = store.apply_event(CallbackEvent("S2", "busy", x))
    assert applied.result == "matched" and not applied.sid_mismatch and applied.redialled
    rec = ledger.get(x)
    assert rec["prev_sids"] == "S1 S2" and rec["redials_done"] == "2"
    assert not ledger.finish(x, c2.claim, "originated", sid="S2").ok  # settled already
    assert store.apply_event(CallbackEvent("S2", "busy", x)).result == "duplicate"
    assert ledger.status("rd").redials == 2


def test_given_a_dst_change_when_waiting_for_the_window_then_the_wait_is_real_time() -> None:
    ny = ZoneInfo("America/New_York")
    ctl = Controls.from_meta("c", {"window": "09:00-21:00", "timezone": "America/New_York"})
    # 2026-03-08: clocks jump from 02:00 to 03:00. From 22:00 EST to 09:00 EDT is 10 h.
    gate = ctl.gate(datetime(2026, 3, 7, 22, 0, tzinfo=ny).timestamp())
    assert gate.kind == "wait" and gate.wait == pytest.approx(10 * 3600)
    # 2026-11-01: clocks fall back from 02:00 to 01:00. From 22:00 EDT to 09:00 EST is 12 h.
    gate = ctl.gate(datetime(2026, 10, 31, 22, 0, tzinfo=ny).timestamp())
    assert gate.kind == "wait" and gate.wait == pytest.approx(12 * 3600)


def test_given_a_paused_campaign_with_an_end_at_when_it_passes_then_parked_calls_expire(
    settings: Settings, ledger: Ledger
) -> None:
    end_at = datetime.now(IST).replace(microsecond=0) + timedelta(seconds=2)
    Enqueuer(settings).enqueue_file(
        as_stream(campaign_csv(2)), "pe", options=CampaignOptions(end_at=end_at)
    )
    pause_campaign("pe", settings=settings)
    dialer = make_dialer(settings, ledger)
    for rid in first_ids(ledger, "pe"):
        assert dialer.place(rid).result == "parked:queued"
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    assert feeder.drain_once() == {"paused": 1}  # the pause's own judge: wake at end_at
    wake = ledger.redis.zscore(ledger.keys.wake(), "pe")
    assert wake == pytest.approx(end_at.timestamp() * 1000)
    time.sleep(max(0.0, end_at.timestamp() - time.time()) + 0.1)
    assert feeder.drain_once() == {"expired": 1}
    assert ledger.status("pe").states["expired"] == 2


def test_given_new_controls_when_set_then_parked_calls_are_judged_again_at_once(
    settings: Settings, ledger: Ledger
) -> None:
    clock = FakeClock(at_ist(2026, 11, 23, 8, 0))
    enq = Enqueuer(settings)
    enq.enqueue_file(
        as_stream(campaign_csv(1)), "sw", options=CampaignOptions(window="09:00-21:00")
    )
    dialer = make_dialer(settings, ledger, clock=clock)
    (x,) = first_ids(ledger, "sw")
    assert dialer.place(x).result == "parked:queued"  # wake in an hour
    enq.set_options("sw", CampaignOptions(window="always"))
    assert ledger.due_work().campaigns == ["sw"]
    feeder = Feeder(ledger, settings, dialer, make_app(settings))
    assert feeder.drain_once() == {"open": 1, "fed": 1}


def test_given_a_parked_call_when_its_callback_settles_it_then_it_leaves_the_parked_set(
    settings: Settings, ledger: Ledger
) -> None:
    from callq.store.callbacks import CallbackEvent, CallbackStore

    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(1)), "pc")
    (x,) = first_ids(ledger, "pc")
    pause_campaign("pc", settings=settings)
    assert make_dialer(settings, ledger).place(x).result == "parked:queued"
    store = CallbackStore(ledger.redis, ledger.keys)
    assert store.apply_event(CallbackEvent("S9", "completed", x)).result == "matched"
    assert ledger.status("pc").parked == 0
