"""Callback receiver throughput: ``python -m callbacks --workers 1`` against ``--workers 4``.

The ledger holds ``records`` queued calls (``Enqueuer.enqueue_file``, a key prefix of the
run's own). Each callback is a terminal JSON StatusCallback for one of them, built as
``devstack.callbacks`` builds them (its request id in CustomField, a Sid of its own, a status), each
call getting one callback: the receiver matches it by CustomField and moves the call to
``originated`` (one EVALSHA of ``callback.lua``).

The load generator is not ``chaos.load``'s (``requests`` sessions in threads, which cost
about as much CPU per callback as the receiver itself, on the same two cores): it is one
process with an asyncio loop driving ``connections`` keep-alive HTTP/1.1 connections, each
sending its next pre-built request as soon as the previous answer is read (a closed loop, as
wrk does). Its own CPU is measured and reported. The first ``warmup`` seconds are not
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import multiprocessing as mp
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import plots
from bench.env import BenchRedis
from bench.markdown import figure, mib, table, verdict
from bench.throughput import campaign_csv
from callq.intake.enqueue import Enqueuer
from callq.receiver.openapi import CALLBACK_PATH
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.callbacks import STATUSES, callback_body
from devstack.embedded import free_port
from devstack.procs import (
    cpu_seconds,
    machine_busy_seconds,
    spawn,
    stop,
    tail,
    tree_cpu_seconds,
    tree_memory,
)
from devstack.stack import child_env, http_status, python_module_argv

CAMPAIGN = "bench-callbacks"
TOKEN = "bench-callback-token"  # noqa: S105 - made up, for a receiver of the bench's own
ROOT = Path(__file__).resolve().parent.parent
GOAL_RATE = 2_000


@dataclass(frozen=True)
class Config:
    workers: int
    log_level: str = "info"  # the receiver's default, as deployed

    @property
    def label(self) -> str:
        base = f"--workers {self.workers}"
        if self.log_level != "info":
            base += f" --log-level {self.log_level}"
        return base

    @property
    def what_if(self) -> bool:
        return self.log_level != "info"


@dataclass
class RecvLoad:
    records: int
    seconds: float
    warmup: float
    connections: int
    configs: list[Config]


@dataclass
class RecvResult:
    config: Config
    seconds: float = 0.0
    count: int = 0  # answered callbacks in the measured window
    latencies_ms: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)  # matched / duplicate / ...
    generator_cpu: float = 0.0  # share of one core
    receiver_cpu: float = 0.0
    redis_cpu: float | None = None
    #: Every other process on the machine (other work on a shared box), about.
    other_cpu: float | None = None
    receiver_rss: int = 0
    receiver_pss: int = 0
    processes: int = 0
    error: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return cuts[min(max(round(q * 100) - 1, 0), 98)]


# ------------------------------------------------------------------------------------------
# The load generator (runs in a process of its own)


def _request(host: str, port: int, request_id: str, status: str) -> bytes:
    body = callback_body(request_id, status)
    head = (
        f"POST {CALLBACK_PATH}?token={TOKEN} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    start_at: float,
    stop_at: float,
    out: list[tuple[float, float, bytes, bytes]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req in requests:
            if time.monotonic() >= stop_at:
                break
            t = time.monotonic()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            low = head.lower()
            i = low.find(b"content-length:")
            n = int(head[i + 15 : head.index(b"\r\n", i)]) if i >= 0 else 0
            body = await reader.readexactly(n)
            done = time.monotonic()
            if done >= start_at:
                out.append((done, done - t, head[9:12], body))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _drive(
    host: str, port: int, per_conn: list[list[bytes]], warmup: float, seconds: float
) -> tuple[list[tuple[float, float, bytes, bytes]], float, float, float]:
    out: list[tuple[float, float, bytes, bytes]] = []
    began = time.monotonic()
    start_at = began + warmup
    stop_at = start_at + seconds
    cpu0 = 0.0
    tasks = [
        asyncio.create_task(_connection(host, port, reqs, start_at, stop_at, out))
        for reqs in per_conn
    ]

    async def mark() -> float:
        await asyncio.sleep(max(start_at - time.monotonic(), 0))
        return time.process_time()

    cpu0 = await mark()
    await asyncio.gather(*tasks)
    ended = time.monotonic()
    cpu = time.process_time() - cpu0
    return out, start_at, min(ended, stop_at), cpu


def generate(
    host: str,
    port: int,
    ids: list[str],
    connections: int,
    warmup: float,
    seconds: float,
    result: Any,
) -> None:
    """Post callbacks for ``ids`` (each one once, in order, spread over the connections)."""
    rng = random.Random(7)
    per_conn: list[list[bytes]] = [[] for _ in range(connections)]
    for n, rid in enumerate(ids):
        per_conn[n % connections].append(_request(host, port, rid, rng.choice(STATUSES)))
    out, start_at, end_at, cpu = asyncio.run(_drive(host, port, per_conn, warmup, seconds))
    counted = [o for o in out if o[0] <= end_at]
    results: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for _, _, code, body in counted:
        codes[code.decode(errors="replace")] += 1
        for word in ("matched", "duplicate", "pending"):
            if f'"{word}"'.encode() in body:
                results[word] += 1
                break
        else:
            results["other"] += 1
    window = max(end_at - start_at, 1e-9)
    result.put(
        {
            "seconds": window,
            "count": len(counted),
            "latencies_ms": [o[1] * 1000 for o in counted],
            "codes": dict(codes),
            "results": dict(results),
            "cpu_share": cpu / window,
            "cpu_total": time.process_time(),  # the whole process, start-up included
            "ran_out": len(out) >= len(ids),
        }
    )


# ------------------------------------------------------------------------------------------
# The receiver


def _redis_pid(target: BenchRedis) -> int | None:
    """The Redis server's pid when it runs on this machine (its CPU is then measured)."""
    try:
        pid = int(target.admin.info("server")["process_id"])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, KeyError, ValueError):
        return None
    return pid if b"redis" in cmd else None


def measure(
    target: BenchRedis, load: RecvLoad, config: Config, log: Callable[[str], None]
) -> RecvResult:
    result = RecvResult(config)
    prefix = target.new_prefix("r")
    settings = target.settings(prefix, callback_token=TOKEN)
    workdir = Path(tempfile.mkdtemp(prefix="callq-bench-recv-"))
    procs: list[Any] = []
    try:
        enq = Enqueuer(settings).enqueue_file(io.BytesIO(campaign_csv(load.records)), CAMPAIGN)
        if enq.accepted != load.records:
            raise RuntimeError(f"receiver bench: enqueue refused rows: {enq.as_dict()}")
        ledger = Ledger(make_redis(target.url), Keys(prefix))
        try:
            ids = list(ledger.iter_request_ids(CAMPAIGN))
        finally:
            ledger.redis.close()
        random.Random(3).shuffle(ids)

        port = free_port()
        argv = python_module_argv(
            "callbacks",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(config.workers),
            "--log-level",
            config.log_level,
        )
        log_file = workdir / "callbacks.log"
        proc = spawn(argv, child_env(settings), log_file, cwd=ROOT)
        procs.append(proc)
        ready_by = time.monotonic() + 60
        while http_status(f"http://127.0.0.1:{port}/healthz") != 200:
            if proc.poll() is not None or time.monotonic() > ready_by:
                result.error = f"the receiver did not start:\n{tail(log_file)}"
                return result
            time.sleep(0.1)
        if config.workers > 1:  # the other workers come up a moment later
            time.sleep(2.0)

        redis_pid = _redis_pid(target)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        gen = ctx.Process(
            target=generate,
            args=("127.0.0.1", port, ids, load.connections, load.warmup, load.seconds, out),
        )
        gen.start()
        # CPU of the receiver and Redis over the whole drive (warm-up included).
        began = time.monotonic()
        recv0 = tree_cpu_seconds(proc.pid)
        redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0
        busy0 = machine_busy_seconds()
        figures = out.get(timeout=load.warmup + load.seconds + 120)
        gen.join(timeout=30)
        busy = machine_busy_seconds() - busy0
        drove = time.monotonic() - began
        mem = tree_memory(proc.pid)
        result.receiver_cpu = (tree_cpu_seconds(proc.pid) - recv0) / drove
        if redis_pid:
            result.redis_cpu = (cpu_seconds(redis_pid) - redis0) / drove
        result.generator_cpu = float(figures["cpu_share"])
        if busy > 0:
            ours = (
                result.receiver_cpu
                + (result.redis_cpu or 0.0)
                + float(figures["cpu_total"]) / drove
            )
            result.other_cpu = max(busy / drove - ours, 0.0)
        result.receiver_rss, result.receiver_pss, result.processes = (
            mem.rss,
            mem.pss,
            mem.processes,
        )
        result.seconds = float(figures["seconds"])
        result.count = int(figures["count"])
        result.latencies_ms = list(figures["latencies_ms"])
        result.codes = dict(figures["codes"])
        result.results = dict(figures["results"])
        if figures["ran_out"]:
            result.error = f"the {load.records:,} records ran out before the end"
    finally:
        for note in stop(procs, timeout=20):
            log(f"  receiver {config.label}: {note}")
        with contextlib.suppress(Exception):
            target.drop(prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def run(target: BenchRedis, load: RecvLoad, log: Callable[[str], None]) -> list[RecvResult]:
    results = []
    for config in load.configs:
        r = measure(target, load, config, log)
        results.append(r)
        log(line(r))
    return results


def line(r: RecvResult) -> str:
    if r.error and not r.count:
        return f"  {r.config.label}: FAILED: {r.error}"
    return (
        f"  {r.config.label}: {r.rate:,.0f} callbacks/s, p50 {r.ms(0.5):.1f} ms, "
        f"p99 {r.ms(0.99):.1f} ms, codes {r.codes}, {r.results}; CPU receiver "
        f"{r.receiver_cpu:.0%}, generator {r.generator_cpu:.0%}"
        + ("" if r.redis_cpu is None else f", Redis {r.redis_cpu:.0%}")
        + ("" if r.other_cpu is None else f", others {r.other_cpu:.0%}")
        + (f" ({r.error})" if r.error else "")
    )


def plot(results: list[RecvResult], path: Path) -> str:
    """Callbacks/s per configuration (labelled with p50 / p99), with the goal line."""
    done = [r for r in results if r.count]
    if not done:
        return "no receiver run to plot"
    return plots.bars(
        path,
        [
            r.config.label.replace(", ", ",\n") + ("\n(what-if)" if r.config.what_if else "")
            for r in done
        ],
        [("callbacks/s", [r.rate for r in done])],
        annotations=[
            [f"{r.rate:,.0f}/s\np50 {r.ms(0.5):.0f} ms, p99 {r.ms(0.99):.0f} ms" for r in done]
        ],
        title="Callback receiver: callbacks/s (closed loop, keep-alive connections), 2-core box",
        ylabel="callbacks/s",
        goal=GOAL_RATE,
        goal_label=f"goal {GOAL_RATE:,}/s",
    )


# ------------------------------------------------------------------------------------------
# The report section (docs/benchmarks.md)


def render(
    load: RecvLoad, results: list[RecvResult], nproc: int, plot_path: str, plot_note: str
) -> list[str]:
    """Section 5 of docs/benchmarks.md: the callback receiver (markdown lines)."""
    base = next((r for r in results if r.config.workers == 1 and not r.config.what_if), None)
    rows = []
    for r in results:
        if not r.count:
            rows.append([r.config.label, f"**failed**: {r.error.splitlines()[0]}"] + ["-"] * 10)
            continue
        vs = "-" if base is None or not base.rate else f"{r.rate / base.rate:.2f}x"
        rows.append(
            [
                r.config.label + (" (what-if)" if r.config.what_if else ""),
                f"**{r.rate:,.0f}**",
                vs,
                f"{r.ms(0.5):.1f}",
                f"{r.ms(0.99):.1f}",
                ", ".join(f"{k}: {v:,}" for k, v in sorted(r.codes.items())),
                f"{r.receiver_cpu:.0%}",
                f"{r.generator_cpu:.0%}",
                "-" if r.redis_cpu is None else f"{r.redis_cpu:.0%}",
                "-" if r.other_cpu is None else f"{r.other_cpu:.0%}",
                mib(r.receiver_rss),
                str(r.processes),
            ]
        )
    out = [
        "## 5. Callback receiver",
        "",
        f"`python -m callbacks --workers N` (uvicorn; the shipped log level `info`, so an "
        "access-log line and a callback line per request) against a ledger holding "
        f"{load.records:,} queued calls (a fresh key prefix per row). Each callback is a "
        "terminal JSON StatusCallback for one of them (built by "
        "`devstack.callbacks.callback_body`: "
        "its request id in CustomField, a Sid, a status), each call getting one, so each is "
        "matched and moves its call to `originated` (one EVALSHA of `callback.lua`). The "
        "load generator is one process running an asyncio loop over "
        f"{load.connections} keep-alive connections, each sending its next pre-built request "
        "as soon as the answer is read (a closed loop, like wrk): a fraction of a core, "
        "where `chaos.load`'s `requests` threads cost about as much CPU as the receiver. "
        f"{load.seconds:g} s measured after {load.warmup:g} s of warm-up. "
        f"**This machine has {nproc} cores**, shared by the receiver, Redis and "
        "the load generator; CPU is the share of one core over the run, and `CPU others` "
        "is every other process on the machine then (from /proc/stat: other work on a "
        "shared box takes cores from the receiver).",
        "",
        *table(
            [
                "receiver",
                "callbacks/s",
                "vs --workers 1",
                "p50 ms",
                "p99 ms",
                "answers",
                "CPU receiver",
                "CPU generator",
                "CPU Redis",
                "CPU others",
                "receiver RSS",
                "processes",
            ],
            rows,
        ),
        "",
        *_notes(results, nproc),
    ]
    out += figure("Callback receiver throughput", plot_path, plot_note)
    return out


def _notes(results: list[RecvResult], nproc: int) -> list[str]:
    res = [r for r in results if r.count]
    shipped = [r for r in res if not r.config.what_if]
    if not shipped:
        return []
    one = next((r for r in shipped if r.config.workers == 1), None)
    four = next((r for r in shipped if r.config.workers > 1), None)
    best = max(shipped, key=lambda r: r.rate)
    ok = best.rate >= GOAL_RATE
    out = [
        f"**Goal: >= {GOAL_RATE:,} callbacks/s**: "
        + verdict(
            ok,
            f"{best.rate:,.0f}/s at best ({best.config.label}), "
            f"{best.rate / GOAL_RATE:.0%} of the goal, "
            f"{GOAL_RATE - best.rate:,.0f}/s short",
        )
        + ".",
        "",
    ]
    others = [r.other_cpu for r in res if r.other_cpu is not None]
    if others and max(others) >= 0.2:
        out.append(
            f"- **Other work on this shared box** took up to {max(others):.0%} of a core "
            "during these runs (`CPU others`): the absolute figures are low by up to that "
            "much, and rows measured at different moments compare only roughly."
        )
    if one is not None and four is not None and one.rate:
        out.append(
            f"- **4 workers against 1: {four.rate / one.rate:.2f}x** ({four.rate:,.0f} against "
            f"{one.rate:,.0f} callbacks/s; p99 {four.ms(0.99):.0f} against "
            f"{one.ms(0.99):.0f} ms)."
        )
    out.append(
        "- **`TCP_NODELAY` with `--workers N`**: uvicorn's supervisor binds the listener with "
        "`proto` 0 and asyncio then leaves Nagle's algorithm on (uvicorn issue #3149, open), "
        "so each keep-alive response waited ~40 ms for the client's delayed ACK and 4 workers "
        "measured slower than 1 (634 against 893/s, p50 48 ms, in this bench's first runs). "
        "`python -m callbacks` now re-binds the listener as `IPPROTO_TCP` (the fix proposed "
        "upstream); the rows above are with it."
    )
    if one is not None:
        out.append(
            f"- **One worker is CPU-bound**: {one.receiver_cpu:.0%} of a core for "
            f"{one.rate:,.0f}/s, about {one.receiver_cpu / one.rate * 1e6:,.0f} us of CPU per "
            "callback: Starlette's routing, the body read and JSON parse, the threadpool hop "
            "for the Redis call, two log lines, and the HTTP parsing itself."
        )
    quiet = next((r for r in res if r.config.workers == 1 and r.config.log_level != "info"), None)
    if quiet is not None and one is not None and one.rate:
        out.append(
            f"- **Logging**: `--log-level {quiet.config.log_level}` (no access-log and "
            f"callback lines) takes {quiet.rate:,.0f}/s, {quiet.rate / one.rate - 1:+.0%} "
            "against the shipped `info`"
            + (
                " (within this shared box's noise)."
                if abs(quiet.rate / one.rate - 1) < 0.1
                else "."
            )
        )
    best_all = max(res, key=lambda r: r.rate)
    if best_all is not best:
        busy = best_all.receiver_cpu + best_all.generator_cpu + (best_all.redis_cpu or 0)
        out.append(
            f"- **The best this box gave**: {best_all.rate:,.0f}/s ({best_all.config.label}), "
            f"with the receiver at {best_all.receiver_cpu:.0%}, Redis at "
            f"{(best_all.redis_cpu or 0):.0%} and the generator at "
            f"{best_all.generator_cpu:.0%} of a core: {busy:.0%} of the "
            f"{nproc * 100}% this machine has"
            + ("" if best_all.other_cpu is None else f", other processes {best_all.other_cpu:.0%}")
            + ". "
            + (
                "On two cores shared with Redis and the load, the receiver as built does not "
                "reach the goal; it needs more cores (it keeps no state, so pods add up) or "
                "less CPU per callback (below)."
                if best_all.rate < GOAL_RATE
                else "That meets the goal, with the fixes above."
            )
        )
    missing = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m) is None]
    if missing:
        out.append(
            f"- uvicorn runs here without {' and '.join(missing)} (plain `uvicorn`, not "
            "`uvicorn[standard]`): the pure-Python h11 parser and asyncio's own loop. Not "
            "measured here; they usually cut the per-request CPU of a small handler."
        )
    return [*out, ""]
