"""Callee zones: the zone recorded for a number, the score bands, and a call's gate."""

from __future__ import annotations

from datetime import UTC, datetime

import phonenumbers
import phonenumbers.timezone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callq.campaign import zones
from callq.campaign.controls import CampaignOptions, Controls
from callq.campaign.window import Window
from callq.intake.phone import callee_zone, normalise_number


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        ("+919052161119", "Asia/Calcutta"),
        ("+918030752400", "Asia/Calcutta"),  # a Bengaluru landline
        ("+971501234567", "Asia/Dubai"),
        ("+12025550123", "America/New_York"),
        ("+14155550123", "America/Los_Angeles"),
        ("+447911123456", ""),  # the UK maps to London, Jersey, Guernsey, Isle of Man
        ("+80012345678", ""),  # international freephone: no zone
    ],
)
def test_given_a_number_then_its_callee_zone_is_its_one_zone_or_none(
    number: str, zone: str
) -> None:
    assert callee_zone(number) == zone


@given(st.integers(min_value=6_000_000_000, max_value=9_999_999_999))
def test_given_any_indian_number_then_the_shortcut_agrees_with_phonenumbers(n: int) -> None:
    number = f"+91{n}"
    zones_of = phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(number))
    assert (callee_zone(number),) == zones_of


@pytest.mark.parametrize("number", ["+971501234567", "+447911123456", "+12025550123"])
def test_given_an_international_number_then_intake_accepts_it_as_e164(number: str) -> None:
    assert normalise_number(number, field="To") == number
    assert normalise_number("00" + number[1:], field="To") == number  # the 00 exit code


def test_given_the_bands_then_they_are_apart_and_exact_as_doubles() -> None:
    created = int(datetime(2286, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert created < zones.SPAN
    top = zones.band_base(zones.CAMPAIGN_BAND + 1)
    assert top < 2**53
    for zone in ("", "Asia/Dubai", "America/New_York"):
        score = zones.held_offset(zone) + 1_795_000_000_123
        assert float(score) == score and zones.created_of(float(score)) == 1_795_000_000_123
        assert zones.SPAN <= score < top
    assert zones.band("") == zones.CAMPAIGN_BAND != zones.band("Asia/Dubai")


def controls(**kw: str) -> Controls:
    meta = CampaignOptions(window="09:00-21:00", **kw).to_meta()  # type: ignore[arg-type]
    return Controls.from_meta("c", meta)


def test_given_window_zone_callee_then_each_call_is_judged_in_its_own_zone() -> None:
    ctl = controls(window_zone="callee")
    assert ctl.by_callee and ctl.window == Window.parse("09:00-21:00")
    now = datetime(2026, 11, 23, 3, 45, tzinfo=UTC).timestamp()  # 09:15 IST, 07:45 Dubai
    assert ctl.gate(now, "Asia/Calcutta").kind == "go"
    dubai = ctl.gate(now, "Asia/Dubai")
    assert dubai.kind == "wait" and dubai.window and dubai.wait == 75 * 60
    assert ctl.gate(now, "").kind == "go"  # no zone of its own: the campaign's, Asia/Kolkata
    assert ctl.gate(now, "Mars/Olympus").kind == "go"  # a zone this machine lacks: the same
    assert ctl.gate(now).kind == "go"  # the campaign as a whole: the window is per call
    assert controls().gate(now, "Asia/Dubai").kind == "go"  # window_zone campaign: Kolkata


def test_given_a_bad_window_zone_then_the_error_names_it() -> None:
    with pytest.raises(ValueError, match="window_zone"):
        CampaignOptions(window_zone="callee-ish").to_meta()
