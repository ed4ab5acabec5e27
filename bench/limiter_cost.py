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
from bench.markdown import table, thousands
from bench.trips import RoundTrips
from callq.dialing.limiter import Limiter
from callq.store.connect import make_redis
from callq.store.keys import Keys

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


# ------------------------------------------------------------------------------------------
# The report section (docs/benchmarks.md)


def render(results: list[CostResult], seconds: float, nproc: int) -> list[str]:
    """Section 2 of docs/benchmarks.md: the limiter's cost (markdown lines)."""
    rows = [
        [
            str(r.threads),
            thousands(r.rate),
            f"{r.trips_per_permit:.3f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            thousands(r.ping_rate),
            f"{r.rate / r.ping_rate:.2f}",
        ]
        for r in results
    ]
    out = [
        "## 2. Limiter cost",
        "",
        "`Limiter.reserve()` with `calls=10**9, period=1` (every reservation granted at once, "
        "so the cost is measured, not the limit), from 1, 8 and 64 threads sharing one client, "
        f"{seconds:g} s each. Round trips are counted on the client side (commands "
        "sent on the pool's connections). `PING/s` is a bare `PING` from the same threads, "
        "run in slices alternating with the reservations: the floor for one round trip from "
        "Python on this machine.",
        "",
        *table(
            [
                "threads",
                "permits/s",
                "round trips / permit",
                "p50 ms",
                "p99 ms",
                "PING/s",
                "permits / PING",
            ],
            rows,
        ),
        "",
    ]
    if results:
        best = max(results, key=lambda r: r.rate)
        one = results[0]
        last = results[-1]
        trip_text = (
            "Every permit took one round trip (one EVALSHA of `limiter_acquire.lua`; any "
            "excess over 1.000 is new connections' handshakes)"
            if all(round(r.trips_per_permit, 1) == 1.0 for r in results)
            else "Round trips per permit varied with the thread count (see the table)"
        )
        exotel = 200 / 60
        if best is one:
            scaling = (
                f"Permits/s do not grow with threads: {thousands(one.rate)} from one thread, "
                f"{thousands(last.rate)} from {last.threads}"
            )
        else:
            scaling = (
                f"Permits/s peak at {thousands(best.rate)} with {best.threads} threads "
                f"({best.rate / one.rate:.1f}x one thread)"
            )
        out += [
            f"{trip_text}. From one thread a permit costs {one.ping_rate / one.rate:.1f}x a "
            f"bare PING (the EVALSHA's arguments, the script's TIME/GET/SET and the reply make "
            f"the difference). {scaling}, while p50 latency goes from {one.p50_ms:.2f} ms to "
            f"{last.p50_ms:.2f} ms at {last.threads} threads: past a few threads they mostly "
            f"queue (this machine has {nproc} CPUs, shared by the Python client and "
            f"redis-server, and all threads reserve on one key). The cost is negligible "
            f"against any Exotel limit: the default 200 per 60 s is {exotel:.1f} permits/s, "
            f"{one.rate / exotel:,.0f} times less than one thread can take.",
            "",
        ]
    return out
