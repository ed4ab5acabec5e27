"""``python -m bench.wait_cost [--calls N]``: what ``WAIT 1`` after the sent mark costs.

On a master (AOF, ``appendfsync always``) with one replica and three Sentinels on loopback
(devstack/sentinel.py), through the Sentinel client the workers use: the time of the sent
mark (``mark_sent.lua``) alone, and with ``WAIT 1 <timeout>`` in the same round trip, for
``N`` claimed calls, one at a time. Then what ``auto`` does when the master has no replica:
the mark on a pinned connection checked against the Sentinels' master (``MasterCheck``), with
their answer cached (a second, as the workers do) and asked each time (the cost of a cache
miss). Prints the median, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from redis.connection import AbstractConnection

from callq.store.connect import MasterCheck, make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.store.records import SendMark
from devstack.sentinel import SentinelStack


def _claimed(ledger: Ledger, tag: str, n: int) -> list[tuple[str, str]]:
    ids = [f"{tag}:{i:020x}" for i in range(n)]
    ledger.enqueue_many(
        tag, [(rid, {"from": "+919800000001", "to": f"+9197{i:08d}"}) for i, rid in enumerate(ids)]
    )
    out = []
    for rid in ids:
        c = ledger.claim(rid, lease_seconds=60, early_tolerance=1.0, worker="bench", gate="")
        out.append((rid, c.claim))
    return out


def _time(
    ledger: Ledger,
    calls: list[tuple[str, str]],
    replicas: int,
    confirm: Callable[[AbstractConnection], bool] | None = None,
) -> tuple[list[float], int]:
    """The sorted times (ms), and how many marks were held back (no replica acknowledged
    within 100 ms, or not confirmed on the master)."""
    took, unacked = [], 0
    for rid, claim in calls:
        t = time.perf_counter()
        mark = ledger.mark_sent(
            rid,
            claim,
            lease_seconds=60,
            replicas=replicas,
            replica_timeout_ms=100,
            confirm=confirm,
        )
        took.append((time.perf_counter() - t) * 1000)
        unacked += mark is not SendMark.SENT
    return sorted(took), unacked


def _row(name: str, ms: list[float]) -> str:
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {name} | {statistics.median(ms):.3f} | {p99:.3f} | {ms[-1]:.3f} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wait_cost", description=__doc__)
    p.add_argument("--calls", type=int, default=2000)
    n = p.parse_args(argv).calls
    with tempfile.TemporaryDirectory() as d, SentinelStack(d) as stack:
        ledger = Ledger(make_redis(stack.url), Keys("bench"))
        plain, _ = _time(ledger, _claimed(ledger, "nowait", n), 0)
        waited, unacked = _time(ledger, _claimed(ledger, "wait", n), 1)
        cached = MasterCheck.of(ledger.redis)
        assert cached is not None
        asked = MasterCheck(cached.pool, ttl=0.0)
        checked, refused = _time(ledger, _claimed(ledger, "check", n), 0, cached.confirm)
        each, refused_each = _time(ledger, _claimed(ledger, "ask", n), 0, asked.confirm)
    print("| sent mark | median ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    print(_row("alone", plain))
    print(_row("+ WAIT 1", waited))
    print(_row("no replica: + master check (answer cached 1 s)", checked))
    print(_row("no replica: + master check (Sentinels asked each time)", each))
    print(f"\n{unacked} of {n} marks not acknowledged within 100 ms (held back)")
    print(f"{refused + refused_each} of {2 * n} checked marks not confirmed (held back)")
    med = statistics.median(plain)
    print(f"extra per call (median): WAIT {statistics.median(waited) - med:.3f} ms, ", end="")
    print(f"check cached {statistics.median(checked) - med:.3f} ms, ", end="")
    print(f"check asked {statistics.median(each) - med:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
