"""Settings: time scaling for the demo, the bench and the tests (callq.settings.time_scaled)."""

from __future__ import annotations

import pytest

from callq.settings import Settings, time_scaled


def test_given_a_speed_when_settings_are_scaled_then_the_limit_keeps_its_calls_and_shrinks_its_period() -> (
    None
):
    base = Settings(_env_file=None)
    scaled = Settings(_env_file=None, **time_scaled(base, 10.0))
    assert scaled.rate_limit_calls == base.rate_limit_calls
    assert scaled.rate_limit_period_seconds == pytest.approx(base.rate_limit_period_seconds / 10)
    assert scaled.rate_limit_margin_seconds == pytest.approx(base.rate_limit_margin_seconds / 10)
    assert time_scaled(base, 1.0) == {}  # real time: the shipped settings, untouched
    fast = Settings(_env_file=None, **time_scaled(base, 1000.0))
    assert 0 < fast.rate_limit_margin_seconds < fast.rate_limit_period_seconds
    assert scaled.exotel_origination_window_seconds == pytest.approx(
        base.exotel_origination_window_seconds / 10
    )
    assert scaled.exotel_read_timeout >= 2.0
