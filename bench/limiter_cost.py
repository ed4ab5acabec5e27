"""Limiter cost: ``Limiter.reserve()`` permits/s and round trips per permit.

The limit is set so high (``calls=10**9, period=1``) that every reservation is granted at
once: what is measured is the cost of one permit, not the limit. ``T`` client threads share
one client (one connection pool), as a worker process's threads do. Round trips are counted
on the client side (:mod:`bench.trips`), so that other users of a shared server do not blur
them. A bare ``PING`` under the same load, in alternating slices, is the floor.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.env import BenchRedis
from bench.trips import RoundTrips
from callq.keys import Keys
from callq.limiter import Limiter
from callq.redis_conn import make_redis

ROUNDS = 4


@dataclass
class CostResult:
    threads: int
    seconds: float
    permits: int
    round_trips: int
    p50_ms: float
    p99_ms: float
    ping_rate: float

    @property
    def rate(self) -> float:
        return self.permits / self.seconds

    @property
    def trips_per_permit(self) -> float:
        return self.round_trips / self.permits


def _drive(
    threads: int, duration: float, op: Callable[[], object]
) -> tuple[int, float, list[float]]:
    """Run ``op`` in ``threads`` threads for ``duration`` s; (ops, seconds, latencies in s)."""
    stop = threading.Event()
    start = threading.Barrier(threads + 1)
    counts = [0] * threads
    samples: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        mine = samples[i]
        try:
            start.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                op()
                mine.append(time.perf_counter() - t0)
            counts[i] = len(mine)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"limiter bench: {errors[0]!r}") from errors[0]
    return sum(counts), elapsed, [x for s in samples for x in s]


def measure(target: BenchRedis, threads: int, duration: float) -> CostResult:
    prefix = target.new_prefix(f"c{threads}")
    client = make_redis(target.url, max_connections=threads + 8)
    limiter = Limiter(client, Keys(prefix), "bench-account", calls=10**9, period=1.0)

    def reserve() -> None:
        r = limiter.reserve()
        if not r.granted:
            raise RuntimeError("a reservation was refused: the limit, not the cost, was hit")

    # Warm every connection and the script cache (a NOSCRIPT round trip is not the cost).
    _drive(threads, 0.1, reserve)
    # Alternate short slices of reserve and PING, so that a noisy neighbour hurts both alike.
    permits = pings = trips_n = 0
    elapsed = ping_s = 0.0
    lat: list[float] = []
    for _ in range(ROUNDS):
        with RoundTrips() as trips:
            n, secs, samples = _drive(threads, duration / ROUNDS, reserve)
        permits += n
        elapsed += secs
        lat += samples
        trips_n += trips.count
        n, secs, _ = _drive(threads, duration / ROUNDS, client.ping)
        pings += n
        ping_s += secs
    client.close()
    target.drop(prefix)
    lat.sort()
    return CostResult(
        threads=threads,
        seconds=elapsed,
        permits=permits,
        round_trips=trips_n,
        p50_ms=statistics.median(lat) * 1000,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        ping_rate=pings / ping_s,
    )


def run(
    target: BenchRedis, threads: list[int], duration: float, log: Callable[[str], None]
) -> list[CostResult]:
    out = []
    for n in threads:
        res = measure(target, n, duration)
        log(
            f"  {n:>3} threads: {res.rate:>8,.0f} permits/s, {res.trips_per_permit:.2f} "
            f"round trips/permit, p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms "
            f"(PING {res.ping_rate:,.0f}/s)"
        )
        out.append(res)
    return out
