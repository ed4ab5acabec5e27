"""Fair shares of one account's permits between its campaigns: weighted round-robin.

Each campaign in an account's feed has a virtual time. A permit goes to the campaign with the
lowest one, whose time then grows by ``1 / weight``: with equal weights the campaigns take
turns, and a campaign of weight 2 gets two permits for every one of a campaign of weight 1.
A campaign that joins starts at the lowest time in the feed (see ``lua/feed_join.lua``), so
a one-call campaign enqueued while a large one saturates the account gets the next permit,
and a campaign that was away gets no credit for the time it was.

This is stride scheduling (Waldspurger and Weihl, 1995); the times are the scores of the
account's feed zset. Pure functions: tested without Redis.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """A campaign in an account's feed: its virtual time, weight and calls ready to go."""

    campaign: str
    vtime: float
    weight: float = 1.0
    available: int = 0


def allocate(n: int, members: Sequence[Member]) -> list[str]:
    """The campaign of each of ``n`` permits, in slot order. No campaign gets more permits
    than it has calls available; fewer than ``n`` come back when they run out. Ties go to
    the campaign id that sorts first, so the order is deterministic."""
    heap = [(m.vtime, m.campaign, m) for m in members if m.available > 0 and m.weight > 0]
    heapq.heapify(heap)
    left = {m.campaign: m.available for m in members}
    order: list[str] = []
    while heap and len(order) < n:
        vtime, name, m = heapq.heappop(heap)
        order.append(name)
        left[name] -= 1
        if left[name] > 0:
            heapq.heappush(heap, (vtime + 1.0 / m.weight, name, m))
    return order


def advances(order: Sequence[str], weights: dict[str, float]) -> dict[str, float]:
    """How much each campaign's virtual time grows for the permits it got in ``order``."""
    out: dict[str, float] = {}
    for name in order:
        out[name] = out.get(name, 0.0) + 1.0 / weights.get(name, 1.0)
    return out
