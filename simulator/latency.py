"""Calls/connect reply latency shaped like Exotel's published figures (seed 000).

Exotel reports a mean of about 480 ms, a p95 of about 1.1 s and a p99 of about 2.5 s.
The sampler is a piecewise-linear inverse CDF through the knots below; its exact mean is
0.4785 s, its p95 1.1 s and its p99 2.5 s. The tail stops at 5.5 s: the "up to 30 s"
worst case is what ``slow_placed`` faults are for.
"""

from __future__ import annotations

import bisect
import itertools
import random

__all__ = ["LATENCY_KNOTS", "latency_mean", "latency_quantile", "sample_latency"]

#: (cumulative probability, seconds), strictly increasing in both.
LATENCY_KNOTS: tuple[tuple[float, float], ...] = (
    (0.00, 0.12),
    (0.25, 0.22),
    (0.50, 0.32),
    (0.75, 0.52),
    (0.90, 0.85),
    (0.95, 1.10),
    (0.99, 2.50),
    (1.00, 5.50),
)

_QS = [q for q, _ in LATENCY_KNOTS]


def latency_quantile(q: float) -> float:
    """The inverse CDF: the latency (seconds, unscaled) at cumulative probability ``q``."""
    if q <= 0.0:
        return LATENCY_KNOTS[0][1]
    if q >= 1.0:
        return LATENCY_KNOTS[-1][1]
    i = bisect.bisect_right(_QS, q)
    q1, x1 = LATENCY_KNOTS[i - 1]
    q2, x2 = LATENCY_KNOTS[i]
    return x1 + (x2 - x1) * (q - q1) / (q2 - q1)


def latency_mean() -> float:
    """The exact mean of the distribution (seconds, unscaled)."""
    return sum(
        (q2 - q1) * (x1 + x2) / 2 for (q1, x1), (q2, x2) in itertools.pairwise(LATENCY_KNOTS)
    )


def sample_latency(rng: random.Random, time_scale: float = 1.0) -> float:
    """One reply latency in seconds, multiplied by ``time_scale``."""
    return latency_quantile(rng.random()) * time_scale
