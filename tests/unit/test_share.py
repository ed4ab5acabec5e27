"""Fair shares of an account's permits (weighted round-robin), as pure functions."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from callq.campaign.share import Member, advances, allocate


def test_given_two_campaigns_of_equal_weight_when_permits_are_shared_then_they_take_turns() -> None:
    order = allocate(6, [Member("big", 0.0, 1.0, 1500), Member("small", 0.0, 1.0, 1500)])
    assert order == ["big", "small", "big", "small", "big", "small"]


def test_given_a_newcomer_at_the_lowest_time_when_a_big_campaign_saturates_then_it_goes_next() -> (
    None
):
    # The big campaign has been fed for a while (its time is 40); the newcomer joins at the
    # lowest time in the feed, which is the big one's: it gets the next permit, not the 41st.
    order = allocate(3, [Member("big", 40.0, 1.0, 1000), Member("one-call", 40.0, 1.0, 1)])
    assert order.index("one-call") <= 1
    assert Counter(order) == {"big": 2, "one-call": 1}


def test_given_weights_when_shared_then_each_campaign_gets_its_weight_in_permits() -> None:
    order = allocate(300, [Member("a", 0.0, 2.0, 1000), Member("b", 0.0, 1.0, 1000)])
    assert Counter(order) == {"a": 200, "b": 100}


def test_given_a_campaign_with_few_calls_when_shared_then_it_gets_no_more_than_it_has() -> None:
    order = allocate(10, [Member("a", 0.0, 1.0, 2), Member("b", 5.0, 1.0, 3)])
    assert Counter(order) == {"a": 2, "b": 3}  # fewer permits than asked: they ran out


def test_given_the_order_when_times_advance_then_each_grows_by_one_over_its_weight() -> None:
    assert advances(["a", "b", "a"], {"a": 2.0, "b": 1.0}) == {"a": 1.0, "b": 1.0}


@given(
    weights=st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=1, max_size=6),
    n=st.integers(min_value=1, max_value=400),
)
def test_given_any_weights_when_all_have_calls_then_each_share_stays_near_its_weight(
    weights: list[float], n: int
) -> None:
    members = [Member(f"c{i}", 0.0, w, 10_000) for i, w in enumerate(weights)]
    got = Counter(allocate(n, members))
    assert sum(got.values()) == n
    total = sum(weights)
    for i, w in enumerate(weights):
        # Stride scheduling's bound: one permit, plus this campaign's part of one round.
        assert abs(got[f"c{i}"] - n * w / total) <= 1 + len(weights) * w / total + 1e-9
