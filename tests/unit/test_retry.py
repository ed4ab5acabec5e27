"""The retry policy: pure functions, no broker."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from callq.dialing.retry import RetryPolicy


def test_given_no_jitter_when_attempts_fail_then_the_delay_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base=0.5, cap=3.0, jitter=False)
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_given_max_attempts_when_counting_then_the_last_attempt_is_exhausted() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(a) for a in (1, 2, 3, 4)] == [False, False, True, True]


def test_given_a_retry_after_hint_when_longer_than_the_backoff_then_it_wins_but_is_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=False)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=3600.0) == 10.0
    assert policy.delay(4, retry_after=0.5) == 8.0


@given(
    attempt=st.integers(min_value=1, max_value=50),
    base=st.floats(min_value=0.01, max_value=60),
    cap=st.floats(min_value=60, max_value=3600),
    seed=st.integers(),
)
def test_given_jitter_when_drawing_then_the_delay_stays_within_half_and_full_step(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    policy = RetryPolicy(base=base, cap=cap, jitter=True)
    step = policy.backoff(attempt)
    d = policy.delay(attempt, rng=random.Random(seed))
    assert step / 2 <= d <= step <= cap
