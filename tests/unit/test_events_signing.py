"""Signing events (Stripe's scheme), the backoff, and the events settings."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from pydantic import SecretStr

from callq.settings import ConfigError, load_settings
from callq.store.events import Event, EventFlags, sink_id
from callq.sweeping.events import backoff, signature, verify

SECRET = b"whsec-a-long-random-secret"
BODY = b'{"id":"call.final:c:1","type":"call.final"}'


def test_given_a_body_when_signed_then_the_header_is_t_and_the_hmac_of_t_dot_body() -> None:
    header = signature(SECRET, BODY, 1_700_000_000)
    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_given_a_signed_body_when_verified_then_only_the_same_secret_body_and_fresh_time_pass() -> (
    None
):
    header = signature(SECRET, BODY, 1_700_000_000)
    assert verify(SECRET, BODY, header, now=1_700_000_010)
    assert not verify(b"another-secret-xxxxx", BODY, header, now=1_700_000_010)
    assert not verify(SECRET, BODY + b" ", header, now=1_700_000_010)
    assert not verify(SECRET, BODY, header, now=1_700_000_000 + 301)  # a replay, too late
    assert not verify(SECRET, BODY, "t=abc,v1=00", now=1_700_000_000)
    assert not verify(SECRET, BODY, "", now=1_700_000_000)
    # The timestamp is signed: moving it breaks the signature.
    moved = header.replace("t=1700000000", "t=1700000005")
    assert not verify(SECRET, BODY, moved, now=1_700_000_005)


def test_given_an_event_when_its_body_is_built_twice_then_the_bytes_are_the_same() -> None:
    ev = Event("1-0", "call.final:c:1", "call.final", 5, {"b": 1, "a": "x"})
    assert ev.body() == ev.body()
    assert json.loads(ev.body()) == {
        "id": "call.final:c:1",
        "type": "call.final",
        "at": 5,
        "data": {"a": "x", "b": 1},
    }


def test_given_failed_sends_when_backing_off_then_the_wait_doubles_up_to_its_cap() -> None:
    assert [backoff(n, jitter=False) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(40, jitter=False) == 600.0
    assert all(1.0 <= backoff(2) <= 2.0 for _ in range(50))


def test_given_events_settings_when_loaded_then_flags_follow_them() -> None:
    off = load_settings()
    assert off.event_sinks() == [] and EventFlags.for_settings(off).arg() == ""
    s = load_settings(
        events_url="https://a.example/x, https://b.example/y",
        events_secret=SecretStr("s" * 16 + ",t" + "u" * 16),
        events_per_attempt=True,
    )
    assert [u for u, _ in s.event_sinks()] == ["https://a.example/x", "https://b.example/y"]
    assert EventFlags.for_settings(s).arg() == "fa"  # the backfill is on: originated waits
    quiet = load_settings(
        events_url="https://a.example/x",
        events_secret=SecretStr("s" * 16),
        call_status_backfill=False,
    )
    assert EventFlags.for_settings(quiet).arg() == "fo"  # no status will ever come
    assert sink_id("https://a.example/x") == sink_id("https://a.example/x") != sink_id("x")
    assert "s" * 16 not in repr(s) and "s" * 16 not in str(s)


def test_given_mismatched_events_settings_when_loaded_then_the_error_names_them_not_secrets() -> (
    None
):
    secret = "k" * 20
    with pytest.raises(ConfigError) as err:
        load_settings(
            events_url="http://a/x,http://b/y", events_secret=SecretStr(secret)
        ).event_sinks()
    assert "EVENTS_SECRET" in str(err.value) and secret not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(events_url="ftp://a/x", events_secret=SecretStr(secret))
    assert "EVENTS_URL" in str(err.value) and secret not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(events_url="http://a/x", events_secret=SecretStr("zq9x")).event_sinks()
    assert "EVENTS_SECRET" in str(err.value) and "zq9x" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(events_retry_seconds=100, events_retain_seconds=10)
    assert "EVENTS_RETAIN_SECONDS" in str(err.value)
