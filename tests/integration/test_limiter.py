"""The global limiter, on a real Redis, with a fake clock passed into the Lua script."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callq.dialing.limiter import Limiter
from callq.errors import LimiterUnavailable
from callq.store.keys import Keys


def max_in_any_window(times_us: list[int], period_us: int) -> int:
    """The largest count of times in any half-open window (t - period, t]."""
    times = sorted(times_us)
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - period_us:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.fixture
def limiter_factory(rclient: redis.Redis, keys: Keys):  # type: ignore[no-untyped-def,type-arg]
    made: list[str] = []

    def make(
        calls: int,
        period: float,
        margin: float = 0.0,
        max_ahead: float = 5.0,
        account: str = "acct",
    ) -> Limiter:
        made.append(account)
        return Limiter(
            rclient, keys, account, calls=calls, period=period, margin=margin, max_ahead=max_ahead
        )

    return make


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.integers(min_value=1, max_value=20),
    period=st.floats(min_value=0.05, max_value=5.0),
    margin=st.floats(min_value=0.0, max_value=0.5),
    max_ahead=st.floats(min_value=0.0, max_value=3.0),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400_000), st.booleans(), st.booleans()),
        min_size=1,
        max_size=150,
    ),
)
def test_given_any_arrival_pattern_when_permits_granted_then_no_window_holds_more_than_the_limit(
    limiter_factory,
    rclient,
    keys,
    calls,
    period,
    margin,
    max_ahead,
    steps,  # type: ignore[no-untyped-def]
) -> None:
    account = f"prop{time.monotonic_ns()}"
    lim = limiter_factory(calls, period, margin, max_ahead, account=account)
    now = 1_000_000_000_000
    slots: list[int] = []
    for advance, penalise, _ in steps:
        now += advance
        if penalise:
            lim.push_back(0.01, now_us=now)
        r = lim.reserve(now_us=now)
        if r.granted:
            slot = now + round(r.wait * 1e6)
            assert r.wait <= max_ahead + 1e-6
            slots.append(slot)
        else:
            assert r.wait > 0
    rclient.delete(keys.limiter(account))
    assert max_in_any_window(slots, round(period * 1e6)) <= calls


def test_given_continuous_demand_when_reserving_then_permits_are_evenly_spaced_at_the_full_rate(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(100, 5.0, margin=0.1, max_ahead=10.0)
    now = 5_000_000_000
    slots = []
    while len(slots) < 300:
        r = lim.reserve(now_us=now)
        if r.granted:
            slots.append(now + round(r.wait * 1e6))
        else:
            now += round(r.wait * 1e6)
    gaps = {b - a for a, b in itertools.pairwise(slots)}
    assert gaps == {51_000}  # (5 s + 0.1 s) / 100
    span = (slots[-1] - slots[0]) / 1e6
    assert 299 / span == pytest.approx(100 / 5.1, rel=1e-6)


def test_given_a_429_when_pushed_back_then_no_permit_is_granted_before_the_pushback_ends(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.0)
    now = 9_000_000_000
    assert lim.reserve(now_us=now).granted
    lim.push_back(2.0, now_us=now)
    r = lim.reserve(now_us=now + 1_000_000)
    assert not r.granted
    assert r.wait == pytest.approx(1.0)
    assert lim.reserve(now_us=now + 2_000_000).granted


def test_given_reservations_far_ahead_when_over_the_horizon_then_refused_with_the_time_to_wait(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.25)  # one permit per 100 ms, 250 ms horizon
    now = 7_000_000_000
    granted = [lim.reserve(now_us=now) for _ in range(3)]
    assert [g.granted for g in granted] == [True, True, True]
    assert [round(g.wait, 3) for g in granted] == [0.0, 0.1, 0.2]
    refused = lim.reserve(now_us=now)
    assert not refused.granted
    assert refused.wait == pytest.approx(0.05)


def test_given_ordinary_callers_at_the_horizon_when_a_priority_caller_asks_then_it_gets_the_next_slot(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.25)  # one permit per 100 ms, 250 ms horizon
    now = 5_000_000_000
    while lim.reserve(now_us=now).granted:  # ordinary callers fill the horizon
        pass
    assert not lim.reserve(now_us=now).granted
    prio = lim.reserve(now_us=now, ahead=60.0)
    assert prio.granted
    assert prio.wait <= 0.25 + 0.1 + 1e-6  # at most the horizon plus one interval
    # It took a slot of its own: the spacing still holds for whoever comes next.
    nxt = lim.reserve(now_us=now, ahead=60.0)
    assert nxt.granted and nxt.wait == pytest.approx(prio.wait + 0.1)


def test_given_no_slot_within_the_horizon_when_asked_without_waiting_then_the_wait_is_returned(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.0)
    assert lim.try_acquire().waited < 0.5  # type: ignore[union-attr]
    got = lim.try_acquire()
    assert isinstance(got, float) and 0.0 < got <= 0.1 + 1e-6
    prio = lim.try_acquire(priority=True)  # max_wait defaults to the horizon ...
    assert isinstance(prio, float)
    lim.max_wait = 5.0  # ... RATE_LIMIT_MAX_WAIT_SECONDS lets a priority call reserve further
    prio = lim.try_acquire(priority=True)
    assert not isinstance(prio, float) and prio.waited <= 0.3


def test_given_many_threads_on_the_server_clock_when_acquiring_then_spacing_holds(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(20, 1.0, margin=0.05, max_ahead=0.5)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            lim.acquire(timeout=10)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 30 permits at 20/s: at least 29 intervals of 52.5 ms (minus sleep jitter).
    assert len(stamps) == 30
    assert max(stamps) - min(stamps) >= 29 * 0.0525 * 0.9
    us = [round(s * 1e6) for s in stamps]
    assert max_in_any_window(us, 1_000_000) <= 21  # wake-up jitter may add one, never a burst


def test_given_redis_unreachable_when_acquiring_then_it_fails_closed(keys: Keys) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    lim = Limiter(dead, keys, "acct", calls=10, period=1.0)
    with pytest.raises(LimiterUnavailable):
        lim.acquire(timeout=1)
    with pytest.raises(LimiterUnavailable):
        lim.push_back(1.0)


# --- many permits in one round trip (the feed) ------------------------------------------------


def test_given_a_batch_when_reserved_then_every_permit_lies_within_the_lead_and_is_spaced(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=1.0)  # one permit per 100 ms
    now = 3_000_000_000
    g = lim.reserve(now_us=now, ahead=0.35, count=50)
    assert (g.count, g.wait) == (4, 0.0)  # slots at 0, 100, 200, 300 ms
    assert [g.slot_us(i) - now for i in range(g.count)] == [0, 100_000, 200_000, 300_000]
    nxt = lim.reserve(now_us=now, ahead=0.35, count=50)
    assert not nxt.granted and nxt.wait == pytest.approx(0.05)  # 400 ms is 50 ms past the lead
    later = lim.reserve(now_us=now + 200_000, ahead=0.35, count=2)
    assert later.count == 2 and later.slot_us(0) == now + 400_000


# --- R5: a stall between the grant and its reply counts against the request ---------------


def test_given_a_reply_that_stalled_when_the_slot_is_reckoned_then_lateness_includes_the_stall(
    limiter_factory,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lim = limiter_factory(10, 2.0, margin=1.0, max_ahead=1.0)
    original = lim._scripts.limiter_acquire

    def stalled(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(*args, **kwargs)
        time.sleep(0.65)  # the script ran; its reply took 0.65 s to come back (an fsync)
        return out

    monkeypatch.setattr(lim._scripts, "limiter_acquire", stalled)
    g = lim.reserve()
    assert g.granted and g.wait == 0.0
    permit = g.permit()
    # The slot passed 0.65 s ago, at the server: the request must not go out on it.
    assert permit.lateness() >= 0.6
    assert not lim.on_time(permit)  # later than half the 1 s margin


# --- R8: a step of the Redis clock --------------------------------------------------------------


def test_given_reservations_far_ahead_when_the_clock_steps_forward_then_they_are_not_forgotten(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.3)  # one permit per 100 ms, horizon 300 ms
    now = 1_000_000_000
    slots = []
    for _ in range(30):  # a stack of priority calls: 3 s of permits handed out
        g = lim.reserve(now_us=now, ahead=10.0)
        slots.append(g.slot_us())
    assert slots[-1] - now == 2_900_000
    # The clock steps 61 s forward. The holders of those 30 permits still send on their own
    # clocks, within the next 3 s of real time; at most one horizon of them may be forgotten.
    stepped = now + 61_000_000
    after = [lim.reserve(now_us=stepped, ahead=10.0).slot_us() - stepped for _ in range(10)]
    real_ahead = [s - now for s in slots]  # when the old permits really fire, from the step
    fired_together = [s for s in after if s < max(real_ahead)]
    assert len(fired_together) <= 4  # the horizon plus one interval: 400 ms at 10/s


def test_given_an_idle_account_when_the_next_call_comes_then_its_permit_is_immediate(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.3)
    now = 2_000_000_000
    assert lim.reserve(now_us=now, ahead=0.3, count=3).count == 3  # the feed's last pass
    later = lim.reserve(now_us=now + 3_600_000_000)  # an hour later
    assert later.granted and later.wait == 0.0


def test_given_the_clock_steps_back_when_reserving_then_the_schedule_moves_with_it(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    lim = limiter_factory(10, 1.0, max_ahead=0.3)
    now = 4_000_000_000
    first = lim.reserve(now_us=now)
    back = lim.reserve(now_us=now - 30_000_000)  # 30 s back: no 30 s stall ...
    assert first.granted and back.granted and back.wait == pytest.approx(0.1)  # ... spacing kept


def test_given_priority_reservations_then_an_idle_account_when_ordinary_calls_come_then_they_are_granted(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    # Found in review: after a stack of priority reservations far ahead, then an idle gap,
    # the state was moved forward for each caller from its own now and never saved, so no
    # ordinary caller or feed pass was granted again (until the key expired, a day later).
    lim = limiter_factory(200, 60.0, margin=1.0, max_ahead=1.0)
    lim.max_wait = 5.0
    t0 = 1_000_000_000_000_000
    for later in (10, 3600, 86_000):
        for _ in range(14):  # a burst of priority calls, each the next free slot
            assert lim.reserve(now_us=t0, ahead=lim.max_wait).granted
        waited, got = 0.0, False
        while waited <= lim.max_wait and not got:  # ordinary callers and feed passes
            now = t0 + round((later + waited) * 1e6)
            got = (
                lim.reserve(now_us=now).granted
                or lim.reserve(now_us=now, ahead=0.5, count=2).granted
            )
            waited += 0.1
        assert got, f"nothing granted {later} s after a priority burst"
        t0 = now + 10_000_000


def test_given_a_low_rate_account_when_idle_then_its_next_permit_is_immediate(
    limiter_factory,  # type: ignore[no-untyped-def]
) -> None:
    # Found in review: an interval longer than the horizon plus the feed's lead (20 per 30 s:
    # 1.55 s) made every permit after an idle gap wait interval - horizon, and (unsaved) for
    # ever. One grant's reach is one interval: within the bound, nothing to keep.
    lim = limiter_factory(20, 30.0, margin=1.0, max_ahead=1.0)
    now = 2_000_000_000_000
    assert lim.reserve(now_us=now, ahead=0.5).granted
    later = lim.reserve(now_us=now + 2_000_000, ahead=0.5)
    assert later.granted and later.wait == 0.0
