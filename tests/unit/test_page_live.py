"""The campaign page's derived figures (callq.api.live) and its session format
(callq.api.session), without Redis."""

from __future__ import annotations

from callq.api.live import HeldLog, classify_in_doubt, rate_series, request_times
from callq.api.session import open_session, read_session
from callq.campaign.controls import Held


def test_given_request_times_when_charted_then_each_point_counts_the_trailing_period() -> None:
    # 10 requests a second for 6 s, from t=100 s.
    times = [100_000 + i * 100 for i in range(60)]
    step, points = rate_series(times, period=5.0, now=106.0)
    assert step == 0.5
    assert points[0] == (100.0, 1) and points[-1][0] == 106.0
    assert max(n for _, n in points) == 50  # never more than the period holds
    # (t - period, t]: at 106 s, the requests from 101.1 s to 105.9 s.
    assert dict(points)[105.0] == 50 and dict(points)[106.0] == 49
    assert rate_series([], 5.0, 106.0) == (0.5, [])


def test_given_a_long_campaign_when_charted_then_the_points_are_bounded() -> None:
    times = list(range(0, 3_600_000, 300))
    step, points = rate_series(times, period=60.0, now=3600.0, max_points=240)
    assert len(points) <= 240 and step > 6.0
    assert {n for t, n in points if t >= 60} <= {199, 200}


def test_given_records_when_their_requests_are_read_then_sent_marks_and_logs_count() -> None:
    assert request_times({"attempts": "1", "sent_at": "5000"}, None) == [5000]
    assert request_times({"attempts": "1", "sent_at": ""}, None) == []  # claimed, not sent
    assert request_times({"attempts": "0", "sent_at": "5000"}, None) == []  # released unsent
    log = [
        {"attempt": 1, "outcome": "not_placed", "at": 10.5, "elapsed": 0.5},
        {"attempt": 2, "outcome": "unknown", "at": 20.0, "elapsed": 2.0},
        {"attempt": 2, "outcome": "reconciled", "at": 40.0},  # not a request
    ]
    # The latest attempt was logged: its sent mark is the same request.
    assert request_times({"attempts": "2", "sent_at": "18000"}, log) == [10000, 18000]
    # A third attempt in flight (not logged yet): its sent mark counts.
    assert request_times({"attempts": "3", "sent_at": "60000"}, log) == [10000, 18000, 60000]


def test_given_in_doubt_calls_when_classified_then_each_says_how_it_was_settled() -> None:
    since = {"in_doubt_since": "20000"}
    assert classify_in_doubt({**since, "state": "in_doubt"}, []) == "still in doubt"
    unplaced = [{"outcome": "unknown", "at": 20}, {"outcome": "unplaced", "at": 90}]
    assert classify_in_doubt({**since, "state": "queued"}, unplaced) == (
        "proven unplaced, redialled"
    )
    found = [{"outcome": "unknown", "at": 20}, {"outcome": "reconciled", "at": 30}]
    assert classify_in_doubt({**since, "state": "originated"}, found) == (
        "found placed by Call Details"
    )
    late = [{"outcome": "originated", "at": 25}]
    assert classify_in_doubt({**since, "state": "originated"}, late) == (
        "placed: the worker's late reply"
    )
    by_cb = [{"outcome": "unknown", "at": 20}]
    assert classify_in_doubt({**since, "state": "originated"}, by_cb) == (
        "placed: its StatusCallback"
    )


def test_given_held_readings_when_logged_then_each_reason_has_its_first_and_last_time() -> None:
    log = HeldLog()
    paused = Held(reason="paused", count=5)
    log.see(paused, 10.0, "5 calls wait")
    log.see(paused, 12.0, "5 calls wait")
    log.see(None, 14.0)
    window = Held(reason="window", count=3, until=500.0, detail="09:00-21:00")
    log.see(window, 20.0, "3 calls wait")
    shown = log.shown()
    assert [e["reason"] for e in shown] == ["window", "paused"]
    assert shown[1]["first_seen"] == 10.0 and shown[1]["last_seen"] == 12.0
    assert shown[1]["ended"] == 14.0 and shown[0]["ended"] is None
    assert shown[0]["until"] == 500.0 and shown[0]["detail"] == "09:00-21:00"


def test_given_a_session_when_read_back_then_it_holds_no_token_and_its_csrf_is_stable() -> None:
    token = b"a-token-of-the-api-1234"
    s = open_session(token, 1000.0, seconds=60)
    assert token.decode() not in s.cookie
    back = read_session(s.cookie, [b"another-token-56789", token], 1001.0)
    assert back is not None and back.csrf == s.csrf and back.csrf_ok(s.csrf)
    assert not back.csrf_ok("") and not back.csrf_ok(None) and not back.csrf_ok(s.csrf + "x")
    assert read_session(s.cookie, [token], 1060.0) is None  # expired
    assert read_session(s.cookie, [token], 999.0) is None  # issued in the future
    assert read_session("x" * 300, [token], 1001.0) is None
