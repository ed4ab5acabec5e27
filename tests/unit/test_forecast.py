"""The campaign forecast (callq.campaign.forecast), as pure functions: rate, share, live-call
cap, window, send_at, end_at, redials from a mix, and the advice on what would save expiries."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callq.campaign.forecast import Other, Plan, forecast, observed_mix, parse_mix
from callq.campaign.window import Window

IST = ZoneInfo("Asia/Kolkata")
#: 10:00 IST on a Monday: inside 09:00-21:00.
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST).timestamp()
RATE = 200 / 60.0  # the shipped limit, 200 per minute


def test_given_a_campaign_alone_when_forecast_then_it_finishes_at_calls_over_rate() -> None:
    f = forecast(Plan(calls=12_000, now=T0, rate=RATE))
    assert f.finish is not None
    assert f.finish - f.start == pytest.approx(12_000 / RATE, rel=0.01)
    assert (f.bound, f.share, f.expire, f.advice) == ("rate", 1.0, 0, ())


def test_given_send_at_later_when_forecast_then_it_starts_there() -> None:
    f = forecast(Plan(calls=600, now=T0, rate=RATE, send_at=T0 + 3600))
    assert f.start == T0 + 3600
    assert f.finish == pytest.approx(T0 + 3600 + 600 / RATE, rel=0.001)


def test_given_another_campaign_of_equal_weight_when_forecast_then_it_shares_until_that_ends() -> (
    None
):
    # 1000 calls against another 1000: half the rate for 2000/RATE s, and both end together.
    f = forecast(Plan(calls=1000, now=T0, rate=RATE, others=(Other("b", 1.0, 1000),)))
    assert f.share == 0.5
    assert f.finish is not None
    assert f.finish - f.start == pytest.approx(2000 / RATE, rel=0.01)
    # Against a smaller one: half the rate while it lasts (2 x 200 calls), then all of it.
    f = forecast(Plan(calls=1000, now=T0, rate=RATE, others=(Other("b", 1.0, 200),)))
    assert f.finish is not None
    assert f.finish - f.start == pytest.approx(1200 / RATE, rel=0.01)


def test_given_a_weight_when_forecast_then_the_share_follows_it() -> None:
    f = forecast(Plan(calls=300, now=T0, rate=RATE, weight=3.0, others=(Other("b", 1.0, 10**6),)))
    assert f.share == 0.75
    assert f.finish is not None
    assert f.finish - f.start == pytest.approx(300 / (0.75 * RATE), rel=0.01)


def test_given_a_live_call_cap_when_it_binds_then_throughput_is_slots_over_legs_over_length() -> (
    None
):
    # 100 slots, connect-two-numbers (2 each), 60 s calls: 100 / 2 / 60 = 0.83 calls/s < 3.33.
    f = forecast(Plan(calls=500, now=T0, rate=RATE, live_cap=100, call_seconds=60.0))
    assert f.bound == "live_cap"
    assert f.throughput == pytest.approx(100 / 2 / 60)
    # Flow calls hold one slot each: 1.67 calls/s, still under the cap.
    flow = forecast(Plan(calls=500, now=T0, rate=RATE, live_cap=100, slots_per_call=1.0))
    assert flow.throughput == pytest.approx(100 / 60)
    # A cap the rate never reaches changes nothing.
    loose = forecast(Plan(calls=500, now=T0, rate=RATE, live_cap=10_000))
    assert (loose.bound, loose.throughput) == ("rate", pytest.approx(RATE))


def test_given_a_window_when_the_work_outlasts_it_then_the_rest_goes_the_next_morning() -> None:
    # 20:00 IST, window 09:00-21:00: one hour of 3.33/s today (12 000 calls), the rest at 09:00.
    at = datetime(2026, 11, 23, 20, 0, tzinfo=IST).timestamp()
    f = forecast(Plan(calls=13_000, now=at, rate=RATE, window=Window.parse("09:00-21:00")))
    next_morning = datetime(2026, 11, 24, 9, 0, tzinfo=IST).timestamp()
    assert f.finish == pytest.approx(next_morning + 1000 / RATE, abs=5)


def test_given_a_closed_window_when_forecast_then_it_starts_when_the_window_opens() -> None:
    at = datetime(2026, 11, 23, 22, 0, tzinfo=IST).timestamp()
    f = forecast(Plan(calls=100, now=at, rate=RATE, window=Window.parse("09:00-21:00")))
    opens = datetime(2026, 11, 24, 9, 0, tzinfo=IST).timestamp()
    assert f.finish == pytest.approx(opens + 100 / RATE, abs=2)


def test_given_end_at_before_the_work_is_done_when_forecast_then_the_rest_expires_with_advice() -> (
    None
):
    # 30 min of 3.33/s is 6000 calls of 10 000: 4000 expire.
    f = forecast(Plan(calls=10_000, now=T0, rate=RATE, end_at=T0 + 1800))
    assert f.finish is None
    assert f.expire == pytest.approx(4000, abs=5)
    assert any(a.startswith("a later end_at: 2026-11-23T10:50") for a in f.advice), f.advice
    assert not any("weight" in a for a in f.advice)  # alone: a weight cannot help


def test_given_a_rival_campaign_when_calls_would_expire_then_a_higher_weight_is_advised() -> None:
    # Against 10 000 others at equal weight: 1.67/s for 30 min = 3000 of 5000; weight 2 x ...
    plan = Plan(calls=5000, now=T0, rate=RATE, end_at=T0 + 1800, others=(Other("b", 1.0, 10_000),))
    f = forecast(plan)
    assert f.expire == pytest.approx(2000, abs=5)
    (advice,) = [a for a in f.advice if a.startswith("a higher weight")]
    # 5000 in 1800 s needs 2.78/s of 3.33/s: a share of 5/6, weight 5 against 1.
    weight = float(advice.split()[3])
    assert 4.5 <= weight <= 5.5, advice
    assert advice.endswith("leaves 0 to expire")


def test_given_a_window_that_closes_before_the_work_when_end_at_then_a_wider_window_is_advised() -> (
    None
):
    at = datetime(2026, 11, 23, 20, 30, tzinfo=IST).timestamp()
    f = forecast(
        Plan(
            calls=9000,
            now=at,
            rate=RATE,
            window=Window.parse("09:00-21:00"),
            end_at=at + 3 * 3600,
        )
    )
    assert f.expire == pytest.approx(9000 - 1800 * RATE, abs=5)
    assert any(a == "a wider window: 'always' leaves 0 to expire" for a in f.advice), f.advice


def test_given_a_mix_and_redials_when_forecast_then_dials_follow_the_geometric_series() -> None:
    mix = parse_mix("completed=0.5,busy=0.3,no-answer=0.2")
    plan = Plan(
        calls=1000,
        now=T0,
        rate=RATE,
        redial_on=("busy", "no-answer"),
        redials=2,
        redial_interval=600.0,
        mix=mix,
        call_seconds=30.0,
    )
    f = forecast(plan)
    assert f.expected_redials == pytest.approx(1000 * (0.5 + 0.25))
    assert f.dials == pytest.approx(1750, abs=1)
    # The last redials fall due 2 x 600 s + a call's length after the last first dials.
    assert f.finish is not None
    assert f.finish - f.start >= 1000 / RATE + 2 * 600 + 30
    # No redial on a status the mix does not have.
    none = forecast(Plan(calls=1000, now=T0, rate=RATE, redial_on=("failed",), redials=2, mix=mix))
    assert none.expected_redials == 0


def test_given_exponential_backoff_when_forecast_then_the_second_redial_waits_twice() -> None:
    base = Plan(calls=1, now=T0, rate=RATE, redial_on=("busy",), redials=3, mix={"busy": 1.0})
    lin = Plan(**{**base.__dict__, "redial_interval": 100.0, "call_seconds": 0.0})
    exp = Plan(**{**lin.__dict__, "redial_backoff": "exponential"})
    assert lin.redial_delay(3) == 300 and exp.redial_delay(3) == 400
    f_lin, f_exp = forecast(lin), forecast(exp)
    assert f_lin.finish is not None and f_exp.finish is not None
    assert f_exp.finish - f_lin.finish == pytest.approx((100 + 200 + 400) - 300 - 300, abs=1)


def test_given_mix_text_when_parsed_then_fractions_are_normalised_or_the_field_is_named() -> None:
    assert parse_mix("completed=3, busy=1") == {"busy": 0.25, "completed": 0.75}
    for bad in ("answered=1", "busy", "busy=x", "busy=-1", "busy=0"):
        with pytest.raises(ValueError, match=r"^mix"):
            parse_mix(bad)
    assert observed_mix({"completed": 6, "busy": 2, "no-answer": 2}) == {
        "busy": 0.2,
        "completed": 0.6,
        "no-answer": 0.2,
    }
    assert observed_mix({}) == {}


def test_given_the_forecast_when_shown_then_json_and_lines_carry_the_same_figures() -> None:
    f = forecast(Plan(calls=10_000, now=T0, rate=RATE, end_at=T0 + 1800))
    doc = f.as_dict()
    assert doc["finish"] is None and doc["expire"] == f.expire
    assert doc["start"] == "2026-11-23T10:00:00+05:30"
    assert set(doc) >= {"calls", "dials", "redials", "calls_per_second", "bound", "share", "advice"}
    text = "\n".join(f.lines())
    assert f"{f.expire} calls expire at end_at" in text and "later end_at" in text


@settings(max_examples=40, deadline=None)
@given(
    calls=st.integers(min_value=1, max_value=5000),
    weight=st.floats(min_value=0.1, max_value=10.0),
    rival=st.integers(min_value=0, max_value=5000),
    end=st.floats(min_value=60.0, max_value=7200.0),
)
def test_given_any_plan_when_forecast_then_dialled_and_expired_add_up_to_the_calls(
    calls: int, weight: float, rival: int, end: float
) -> None:
    f = forecast(
        Plan(
            calls=calls,
            now=T0,
            rate=RATE,
            weight=weight,
            others=(Other("b", 1.0, rival),),
            end_at=T0 + end,
        ),
        advise=False,
    )
    assert f.dials + f.expire == pytest.approx(calls, abs=1.0)
    # Never faster than the whole account's rate, never slower than its share.
    if f.finish is not None:
        assert (calls - 1) / RATE * 0.99 <= f.finish - f.start <= (calls + rival) / RATE * 1.01 + 1


def test_given_redials_due_after_end_at_when_forecast_then_they_are_cut_not_expired() -> None:
    # 100 calls dialled in 30 s; every one busy; its redial would come 600 s later, after
    # end_at (300 s): the redials are not scheduled, and no call waits to expire.
    plan = Plan(
        calls=100,
        now=T0,
        rate=RATE,
        end_at=T0 + 300,
        redial_on=("busy",),
        redials=1,
        mix={"busy": 1.0},
        redial_interval=600.0,
        call_seconds=10.0,
    )
    f = forecast(plan)
    assert (f.expire, f.redials_cut) == (0, 100)
    assert f.finish == pytest.approx(T0 + 100 / RATE, abs=1)
    assert "100 redials would fall due after end_at" in "\n".join(f.lines())
