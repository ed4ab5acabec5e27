"""Parse-only speed of the campaign reader: ``read_rows`` over generated rows, no Redis.

``bench_parse`` is the "parse only" figure of section 1 (bench/throughput.py); ``bench_csv``
makes its input, and is handy wherever a test or a bench needs a file of good rows.
"""

from __future__ import annotations

import io
import random
import time

from callq.intake.csvread import read_rows
from callq.intake.request import CallRequest


def bench_csv(n: int, seed: int = 7) -> bytes:
    """A campaign file of ``n`` good rows: fresh From and To in mixed formats, few CallerIds."""
    rng = random.Random(seed)
    formats = ("+91{}", "{}", "0{}", "+91 {} ", "91{}")
    callers = [f"0803075240{d}" for d in range(5)]
    out = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    for i in range(n):
        a = f"9{rng.randrange(10**9):09d}"
        b = f"9{rng.randrange(10**9):09d}"
        out.append(
            f"{formats[i % 5].format(a)},{formats[(i + 2) % 5].format(b)},"
            f"{callers[i % 5]},order-{i},600,30"
        )
    return ("\r\n".join(out) + "\r\n").encode()


def bench_parse(n: int = 50_000) -> float:
    """Rows per second for ``read_rows`` over ``n`` generated rows (two fresh numbers each)."""
    data = bench_csv(n)
    start = time.perf_counter()
    good = sum(isinstance(item, CallRequest) for item in read_rows(io.BytesIO(data)))
    elapsed = time.perf_counter() - start
    if good != n:
        raise RuntimeError(f"bench: only {good} of {n} rows were accepted")
    return n / elapsed
