"""``python -m bench.million [--rows N] [--redis-url URL]``: one campaign of a million calls.

Issue 15 §5. A CSV file of ``N`` realistic rows (one agent number in From, the customers in
To in mixed Indian formats, a CustomField per row) is enqueued with the real command
(``python -m producer enqueue``, a child process: its wall time and peak RSS), while a thread
samples Redis ``used_memory``. Then, against the same campaign:

* Redis memory at rest after the enqueue, and what each key costs (``MEMORY USAGE``);
* ``Ledger.status`` at ``N`` calls against a campaign of 1,000 (it must stay O(1));
* ``python -m producer report`` of the whole campaign to a file: time and peak RSS, against
  the same at 1,000 calls (it must stream: bounded memory);
* the drain: feeder passes (``Feeder.run_once``, the account's limit set high so that each
  pass hands out its most, 100 calls) with ``N`` calls parked against 1,000: time per pass
  and the Redis server's CPU per pass (``INFO cpu``; the server is shared, so an upper bound).

Everything runs on database 14 under key prefixes of its own, deleted at the end (never a
FLUSHDB). The figures are printed as Markdown; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.env import BenchRedis, bench_redis
from bench.markdown import mib, nbytes, table, thousands
from callq.dialing.dialer import Dialer
from callq.dialing.limiter import Limiter
from callq.dialing.retry import RetryPolicy
from callq.exotel.client import ExotelClient, make_session
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "million"
AGENT = "080 4711 2233"  # the one agent dialled first on every row
GOAL_MEMORY = 1 << 30  # Redis used_memory during a 1M-call enqueue (issue 15)
SMALL = 1000  # the reference campaign for status, report and the drain
PASSES = 8  # feeder passes timed at each size (100 calls each: fewer than SMALL)
STATUS_CALLS = 200  # Ledger.status calls timed at each size

# The customers' numbers as people type them: every format the reader accepts for a mobile.
_FORMATS: tuple[Callable[[str], str], ...] = (
    lambda d: f"+91{d}",
    lambda d: f"0{d}",
    lambda d: d,
    lambda d: f"91 {d[:5]} {d[5:]}",
    lambda d: f"+91-{d[:5]}-{d[5:]}",
    lambda d: f"0{d[:5]} {d[5:]}",
    lambda d: f"(+91) {d[:5]}-{d[5:]}",
    lambda d: f"0091 {d}",
)


def write_csv(path: Path, rows: int) -> int:
    """``rows`` calls to ``path``; returns its size in bytes."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("From,To,CallerId,CustomField,TimeLimit,TimeOut\n")
        for i in range(rows):
            mobile = f"9{(i * 7919) % 10**9:09d}"  # distinct for i < 10**9 (7919 is prime)
            to = _FORMATS[i % len(_FORMATS)](mobile)
            f.write(f"{AGENT},{to},08030752400,order-{i:07d}|lang=hi,600,30\n")
    return path.stat().st_size


@dataclass
class Sampler:
    """Polls Redis ``used_memory`` every ``every`` seconds on its own thread; keeps the peak."""

    target: BenchRedis
    every: float = 0.2
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.peak = self.target.used_memory()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.target.used_memory())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.target.used_memory())


@dataclass
class Child:
    seconds: float
    max_rss: int  # bytes
    stdout: str


def run_child(args: list[str], settings: Settings, cwd: Path) -> Child:
    """``python -m producer ...`` on ``settings``' Redis and prefix: wall time, peak RSS."""
    env = {
        **os.environ,
        "REDIS_URL": settings.require_redis_url(),
        "KEY_PREFIX": settings.key_prefix,
        "BROKER_KEY_PREFIX": settings.broker_key_prefix,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer", *args],
            cwd=cwd,  # no .env of the project's is read
            env=env,
            stdout=out,
            stderr=err,
        )
        # wait4, not Popen.wait: this child's own peak RSS, not the largest child's so far.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(
                f"producer {args[0]} failed ({proc.returncode}): {err.read().strip()[-500:]}"
            )
        return Child(seconds, usage.ru_maxrss * 1024, out.read())


@dataclass
class Size:
    """What one campaign of ``calls`` costs."""

    calls: int
    enqueue: Child | None = None
    mem_before: int = 0
    mem_peak: int = 0
    mem_after: int = 0
    status_us: float = 0.0
    report: Child | None = None
    report_bytes: int = 0
    pass_ms: list[float] = field(default_factory=list)
    pass_fed: int = 0
    redis_cpu_ms: float = 0.0  # server CPU over the timed passes, per pass
    keys: dict[str, int] = field(default_factory=dict)  # MEMORY USAGE by kind, whole campaign
    encoding: str = ""


def _status_us(ledger: Ledger) -> float:
    times = []
    for _ in range(STATUS_CALLS):
        started = time.perf_counter()
        ledger.status(CAMPAIGN)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _redis_cpu(target: BenchRedis) -> float:
    info = target.admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _key_costs(target: BenchRedis, keys: Keys, rid: str) -> tuple[dict[str, int], str]:
    a = target.admin
    one = int(a.memory_usage(keys.call(rid), samples=0) or 0)
    per = {
        "call hash (one)": one,
        "parked zset": int(a.memory_usage(keys.campaign_parked(CAMPAIGN), samples=0) or 0),
        "calls list": int(a.memory_usage(keys.campaign_calls(CAMPAIGN), samples=0) or 0),
    }
    return per, str(a.object("encoding", keys.call(rid)))


def _drain(
    target: BenchRedis, settings: Settings, log: Callable[[str], None]
) -> tuple[list[float], int, float]:
    """Feeder passes with every call parked: ms per pass, calls fed, Redis CPU ms per pass."""
    ledger = Ledger(make_redis(settings.require_redis_url()), Keys(settings.key_prefix))
    limiter = Limiter.for_settings(ledger.redis, ledger.keys, settings)
    dialer = Dialer(
        settings,
        ledger,
        limiter,
        ExotelClient(settings, make_session()),
        RetryPolicy.for_settings(settings),
    )
    app = make_app(settings)
    feeder = Feeder(ledger, settings, dialer, app)
    feeder.run_once()  # judge the campaign (it joins its account's feed); not timed
    times: list[float] = []
    fed = 0
    cpu = 0.0
    deadline = time.monotonic() + 60.0
    while len(times) < PASSES and time.monotonic() < deadline:
        time.sleep(0.06)  # MIN_PASS_GAP: the account is due again
        cpu_before = _redis_cpu(target)
        started = time.perf_counter()
        result = feeder.run_once()
        elapsed = time.perf_counter() - started
        if result.fed:
            times.append(elapsed * 1e3)
            fed += result.fed
            cpu += _redis_cpu(target) - cpu_before
    app.close()
    ledger.redis.close()
    if not times:
        log("million: no feeder pass fed a call")
    return times, fed, (cpu * 1e3 / len(times)) if times else 0.0


def measure(target: BenchRedis, rows: int, tmp: Path, log: Callable[[str], None]) -> Size:
    prefix = target.new_prefix(f"m{rows}")
    settings = target.settings(prefix, rate_limit_calls=1_000_000, rate_limit_period_seconds=60.0)
    keys = Keys(prefix)
    size = Size(rows)
    path = tmp / f"calls-{rows}.csv"
    log(f"million: writing {thousands(rows)} rows ...")
    file_bytes = write_csv(path, rows)
    log(f"million: {mib(file_bytes)} file; enqueue ...")
    size.mem_before = target.used_memory()
    try:
        with Sampler(target) as sampler:
            size.enqueue = run_child(
                ["enqueue", str(path), "--campaign", CAMPAIGN, "--json"], settings, tmp
            )
        size.mem_peak = sampler.peak
        time.sleep(1.0)
        size.mem_after = target.used_memory()
        ledger = Ledger(make_redis(settings.require_redis_url()), keys)
        status = ledger.status(CAMPAIGN)
        if status.total != rows or status.parked != rows:
            raise RuntimeError(f"million: {status.total} calls, {status.parked} parked, not {rows}")
        first = ledger.redis.lindex(keys.campaign_calls(CAMPAIGN), 0)
        size.keys, size.encoding = _key_costs(target, keys, str(first))
        log("million: status ...")
        size.status_us = _status_us(ledger)
        ledger.redis.close()
        log("million: report ...")
        out = tmp / f"report-{rows}.csv"
        size.report = run_child(["report", CAMPAIGN, "--output", str(out)], settings, tmp)
        size.report_bytes = out.stat().st_size
        out.unlink()
        log("million: feeder passes ...")
        size.pass_ms, size.pass_fed, size.redis_cpu_ms = _drain(target, settings, log)
    finally:
        path.unlink(missing_ok=True)
        log("million: deleting the keys ...")
        target.drop(prefix)
    return size


def render(big: Size, small: Size) -> str:
    assert big.enqueue and small.enqueue and big.report and small.report
    rate = big.calls / big.enqueue.seconds
    peak = big.mem_peak - big.mem_before
    rest = big.mem_after - big.mem_before
    verdict = "met" if peak <= GOAL_MEMORY else f"missed by {mib(peak - GOAL_MEMORY)}"
    lines = [
        f"One campaign of {thousands(big.calls)} calls, against one of {thousands(small.calls)}.",
        "",
        *table(
            ["", thousands(small.calls), thousands(big.calls)],
            [
                [
                    "enqueue (`python -m producer enqueue`, whole command)",
                    f"{small.enqueue.seconds:.1f} s",
                    f"{big.enqueue.seconds:.1f} s ({thousands(round(rate))} calls/s)",
                ],
                [
                    "producer peak RSS",
                    mib(small.enqueue.max_rss),
                    mib(big.enqueue.max_rss),
                ],
                [
                    "Redis used_memory, peak during the enqueue (over before)",
                    mib(small.mem_peak - small.mem_before),
                    f"{mib(peak)} (goal <= 1 GiB: {verdict})",
                ],
                [
                    "Redis used_memory at rest after it (over before)",
                    mib(small.mem_after - small.mem_before),
                    f"{mib(rest)} ({rest / big.calls:.0f} B per call)",
                ],
                [
                    "`Ledger.status` (median of 200)",
                    f"{small.status_us:.0f} us",
                    f"{big.status_us:.0f} us",
                ],
                [
                    "`python -m producer report` to a file",
                    f"{small.report.seconds:.1f} s",
                    f"{big.report.seconds:.1f} s ({mib(big.report_bytes)})",
                ],
                ["report peak RSS", mib(small.report.max_rss), mib(big.report.max_rss)],
                [
                    f"feeder pass, median of {len(big.pass_ms)} (100 calls fed each)",
                    f"{statistics.median(small.pass_ms):.1f} ms" if small.pass_ms else "-",
                    f"{statistics.median(big.pass_ms):.1f} ms" if big.pass_ms else "-",
                ],
                [
                    "Redis CPU per feeder pass (server-wide: an upper bound)",
                    f"{small.redis_cpu_ms:.1f} ms",
                    f"{big.redis_cpu_ms:.1f} ms",
                ],
            ],
        ),
        "",
        f"Memory by key at {thousands(big.calls)} calls (`MEMORY USAGE`): one call hash "
        f"{nbytes(big.keys['call hash (one)'])} ({big.encoding}), the parked zset "
        f"{mib(big.keys['parked zset'])} ({big.keys['parked zset'] / big.calls:.0f} B per "
        f"call), the calls list {mib(big.keys['calls list'])} "
        f"({big.keys['calls list'] / big.calls:.0f} B per call).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000, help="default 1,000,000")
    p.add_argument("--redis-url", help="this Redis (database 14 is used), not 127.0.0.1:6379")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with (
        bench_redis(args.redis_url) as target,
        tempfile.TemporaryDirectory(prefix="callq-million-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        small = measure(target, SMALL, tmp, log)
        big = measure(target, args.rows, tmp, log)
    print(render(big, small), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
