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


def test_given_api_tokens_when_read_then_each_comma_separated_one_counts_and_none_is_echoed() -> (
    None
):
    from callq.settings import ConfigError, load_settings

    s = Settings(_env_file=None, api_token=" tok-aaaaaaaaaaaaaaaa , tok-bbbbbbbbbbbbbbbb,")  # type: ignore[call-arg]
    assert s.api_tokens() == [b"tok-aaaaaaaaaaaaaaaa", b"tok-bbbbbbbbbbbbbbbb"]
    assert "tok-aaaa" not in repr(s) and "tok-aaaa" not in str(s.model_dump())
    with pytest.raises(ConfigError, match="API_TOKEN is not set"):
        Settings(_env_file=None).api_tokens()  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="number 2 are shorter than 16") as refused:
        Settings(_env_file=None, api_token="tok-aaaaaaaaaaaaaaaa,short-one").api_tokens()  # type: ignore[call-arg]
    assert "short-one" not in str(refused.value)
    with pytest.raises(ConfigError, match="API_MAX_BODY_BYTES") as bad:
        load_settings(api_max_body_bytes=10, api_token="secret-token-never-shown")
    assert "secret-token-never-shown" not in str(bad.value)


def test_given_live_call_caps_when_read_then_each_account_has_its_own_and_bad_ones_are_named() -> (
    None
):
    from callq.settings import ConfigError, load_settings
    from callq.store.slots import live_caps

    north = {"account_sid": "n", "api_key": "k", "api_token": "t", "max_live_calls": 50}
    south = {"account_sid": "s", "api_key": "k", "api_token": "t"}
    s = load_settings(exotel_max_live_calls=10, exotel_accounts={"north": north, "south": south})
    assert s.for_account("north").exotel_max_live_calls == 50
    assert s.for_account("south").exotel_max_live_calls == 10  # the default account's cap
    assert live_caps(s) == {"default": 10, "north": 50, "south": 10}
    assert live_caps(load_settings()) == {}  # unset: no cap
    with pytest.raises(ConfigError, match="EXOTEL_MAX_LIVE_CALLS"):
        load_settings(exotel_max_live_calls=0)
    with pytest.raises(ConfigError, match=r"EXOTEL_ACCOUNTS\[north\]\.\[max_live_calls\]"):
        load_settings(exotel_accounts={"north": {**north, "max_live_calls": -1}})


def test_given_a_live_call_cap_below_one_connect_call_when_read_then_it_is_refused_by_name() -> (
    None
):
    # A connect-two-numbers call holds 2 slots: under a cap of 1 none could ever be granted,
    # and the feed would look again every 50 ms (nothing held, so no lease to wait for).
    from callq.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="EXOTEL_MAX_LIVE_CALLS"):
        load_settings(exotel_max_live_calls=1)
    north = {"account_sid": "n", "api_key": "k", "api_token": "t", "max_live_calls": 1}
    with pytest.raises(ConfigError, match=r"EXOTEL_ACCOUNTS\[north\]\.\[max_live_calls\]"):
        load_settings(exotel_accounts={"north": north})
    assert load_settings(exotel_max_live_calls=2).exotel_max_live_calls == 2
