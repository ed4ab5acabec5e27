"""Worker memory with 100 calls in flight at once, for each Celery pool.

The simulator answers every ``Calls/connect`` after ``slow_seconds`` (its ``slow_placed``
fault on every request: the call is placed, the reply comes late), with a limit so high that
neither it nor our limiter holds anything back. Our real worker (``celery -A worker worker
-Q calls``, :func:`devstack.stack.worker_argv` with only ``--pool`` changed) takes ``calls``
queued calls, one per slot. Once the simulator has received every POST, and before the
first could have been answered, the memory of each worker's whole process tree (the
Celery parent and, for prefork, its children) is read from /proc a few times; the largest
total is kept.

One worker process tree is one pod. RSS is the sum of each process's VmRSS, so with prefork
a page shared by the parent and its 100 children counts 101 times; PSS divides each shared
page among the processes that map it (close to what a pod's cgroup is charged); USS is the
tree's private memory only.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import plots
from bench.env import BenchRedis
from bench.markdown import MIB, figure, mib, table, verdict
from bench.throughput import campaign_csv
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.procs import TreeMemory, spawn, stop, tail, tree_memory
from devstack.stack import child_env, worker_argv
from simulator import Account, SimConfig, Simulator

SID, KEY, TOKEN = "bench-mem-account", "bench-mem-key", "bench-mem-token"
CAMPAIGN = "bench-memory"
ROOT = Path(__file__).resolve().parent.parent
GOAL_BYTES = 150_000_000  # 150 MB, read strictly (143 MiB)


@dataclass(frozen=True)
class Layout:
    pool: str  # threads | prefork | gevent
    pods: int
    concurrency: int  # slots per pod

    @property
    def slots(self) -> int:
        return self.pods * self.concurrency

    @property
    def label(self) -> str:
        return f"{self.pool}, {self.pods} x {self.concurrency}"


@dataclass
class MemLoad:
    calls: int
    slow_seconds: float
    layouts: list[Layout]


@dataclass
class MemResult:
    layout: Layout
    calls: int
    slow_seconds: float
    idle: list[TreeMemory] = field(default_factory=list)  # per pod, ready and idle
    busy: list[TreeMemory] = field(default_factory=list)  # per pod, all calls in flight
    in_flight: int = 0  # POSTs the simulator had received (and not answered) when sampled
    ready_s: float = 0.0  # from spawning the pods until all were ready
    spread_s: float = 0.0  # from the first POST to the last
    sampled_at_s: float = 0.0  # the last sample, seconds after the first POST
    originated: int = 0  # calls placed in the end, per the ledger
    error: str = ""  # the pool did not work: why

    @property
    def ok(self) -> bool:
        return not self.error

    def total(self, which: str = "rss", state: str = "busy") -> int:
        mems = self.busy if state == "busy" else self.idle
        return sum(int(getattr(m, which)) for m in mems)

    def processes(self) -> int:
        return sum(m.processes for m in self.busy)


_BANNER = re.compile(r"concurrency:\s*(\d+)\s*\((\w+)\)")
_KIND = {"threads": "thread", "prefork": "prefork", "gevent": "gevent"}


def _pool_in_log(text: str) -> tuple[int, str] | None:
    """(concurrency, pool kind) from the worker's start-up banner."""
    m = _BANNER.search(text)
    return (int(m.group(1)), m.group(2)) if m else None


def _sample(pids: list[int]) -> list[TreeMemory]:
    return [tree_memory(pid) for pid in pids]


def measure(
    target: BenchRedis, load: MemLoad, layout: Layout, log: Callable[[str], None]
) -> MemResult:
    result = MemResult(layout, load.calls, load.slow_seconds)
    prefix = target.new_prefix("m")
    config = _sim_config(load)
    workdir = Path(tempfile.mkdtemp(prefix="callq-bench-mem-"))
    procs: list[Any] = []
    try:
        with Simulator(config) as sim:
            settings = _settings(target, prefix, sim.url, load, layout)
            env = child_env(settings)
            began = time.monotonic()
            logs = _spawn_pods(layout, env, workdir, procs)
            error = _wait_ready(procs, logs, began)
            if error is not None:
                result.error = error
                log(f"  {layout.label}: {result.error}:\n{_why(logs)}")
                return result
            result.ready_s = time.monotonic() - began
            error = _check_pool(logs, layout)
            if error is not None:
                result.error = error
                log(f"  {layout.label}: {result.error}")
                return result
            time.sleep(1.0)
            pids = [p.pid for p in procs]
            result.idle = _sample(pids)

            enq = Enqueuer(settings).enqueue_file(io.BytesIO(campaign_csv(load.calls)), CAMPAIGN)
            if enq.accepted != load.calls:
                raise RuntimeError(f"memory bench: enqueue refused rows: {enq.as_dict()}")
            first = _all_in_flight(sim, load, procs, result)
            if first is None:
                log(f"  {layout.label}: {result.error}:\n{_why(logs)}")
                return result
            time.sleep(min(1.0, max(load.slow_seconds / 4, 0.2)))
            _sample_busy(pids, load, first, result)
            if not result.busy:
                result.error = "no sample could be taken while every call was in flight"
                return result

            # Let the calls finish: every one must come back originated, or the figure above
            # was not of a working worker.
            result.originated = _originated(target, prefix, load)
            if result.originated < load.calls:
                result.error = (
                    f"only {result.originated} of {load.calls} calls came back originated"
                )
                log(f"  {layout.label}: {result.error}:\n{_why(logs)}")
    finally:
        for note in stop(procs, timeout=30):
            log(f"  {layout.label}: {note}")
        with contextlib.suppress(Exception):
            target.drop(prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _sim_config(load: MemLoad) -> SimConfig:
    account = Account(SID, KEY, TOKEN, rate_limit=1_000_000, period=1.0)
    return SimConfig(
        accounts=[account],
        latency=False,
        p_slow_placed=1.0,
        slow_seconds=load.slow_seconds,
        callbacks=False,
        seed=5,
    )


def _settings(
    target: BenchRedis, prefix: str, sim_url: str, load: MemLoad, layout: Layout
) -> Settings:
    return target.settings(
        prefix,
        exotel_account_sid=SID,
        exotel_api_key=KEY,
        exotel_api_token=TOKEN,
        exotel_base_url=sim_url,
        exotel_caller_id="08030752400",
        exotel_connect_timeout=10.0,
        exotel_read_timeout=load.slow_seconds + 30.0,
        # 1,000,000 per 60 s: permits 61 us apart, the shipped 1 s margin (a request
        # more than half of it late for its permit is held back).
        rate_limit_calls=1_000_000,
        rate_limit_period_seconds=60.0,
        retry_backoff_base_seconds=0.2,
        retry_backoff_max_seconds=1.0,
        worker_concurrency=layout.concurrency,
    )


def _spawn_pods(layout: Layout, env: dict[str, str], workdir: Path, procs: list[Any]) -> list[Path]:
    """Start the pods, each added to ``procs`` as it starts; their log files."""
    logs = []
    for i in range(layout.pods):
        log_file = workdir / f"pod{i}.log"
        name = f"mem{i}-{uuid.uuid4().hex[:6]}@%h"
        procs.append(
            spawn(
                worker_argv(name, layout.concurrency, pool=layout.pool),
                env,
                log_file,
                cwd=ROOT,
            )
        )
        logs.append(log_file)
    return logs


def _why(logs: list[Path]) -> str:
    return "\n".join(f"--- pod {i}\n{tail(f, 1500)}" for i, f in enumerate(logs))


def _wait_ready(procs: list[Any], logs: list[Path], began: float) -> str | None:
    """None once every pod has logged "ready.", else why not (within 120 s of ``began``)."""
    ready_by = began + 120
    while not all("ready." in f.read_text(errors="replace") for f in logs):
        if any(p.poll() is not None for p in procs):
            return "a worker exited before it was ready"
        if time.monotonic() > ready_by:
            return "the workers were not ready in 120 s"
        time.sleep(0.1)
    return None


def _check_pool(logs: list[Path], layout: Layout) -> str | None:
    """None if every pod's banner shows the pool and concurrency asked for, else why not."""
    for f in logs:
        banner = _pool_in_log(f.read_text(errors="replace"))
        want = (layout.concurrency, _KIND.get(layout.pool, layout.pool))
        if banner != want:
            return f"the worker ran {banner}, not {want}"
    return None


def _all_in_flight(
    sim: Simulator, load: MemLoad, procs: list[Any], result: MemResult
) -> float | None:
    """Wait until the simulator has every POST; the time of the first, or None (with
    ``result.in_flight`` and ``result.error`` set) if they did not all arrive in time."""
    first: float | None = None
    last_seen = 0
    last_at = 0.0
    give_up = time.monotonic() + 120
    while True:
        n = int(sim.truth()["requests"])
        now = time.monotonic()
        if n and first is None:
            first = now
        if n > last_seen:
            last_seen, last_at = n, now
        if n >= load.calls:
            break
        late = first is not None and now - first > load.slow_seconds - 1.0
        if late or now > give_up or any(p.poll() is not None for p in procs):
            result.in_flight = n
            result.error = (
                f"only {n} of {load.calls} calls were in flight at once "
                f"(the first reply was due {load.slow_seconds:g} s after the first POST)"
            )
            return None
        time.sleep(0.05)
    assert first is not None
    result.in_flight = last_seen
    result.spread_s = last_at - first
    return first


def _sample_busy(pids: list[int], load: MemLoad, first: float, result: MemResult) -> None:
    """Up to five samples 0.3 s apart before the first reply is due; keep the largest."""
    best: list[TreeMemory] = []
    for _ in range(5):
        if time.monotonic() - first > load.slow_seconds - 0.5:
            break
        sample = _sample(pids)
        if sum(m.rss for m in sample) > sum(m.rss for m in best):
            best = sample
        result.sampled_at_s = time.monotonic() - first
        time.sleep(0.3)
    result.busy = best


def _originated(target: BenchRedis, prefix: str, load: MemLoad) -> int:
    """The campaign's calls in state originated, once all are or the replies are overdue."""
    ledger = Ledger(make_redis(target.url), Keys(prefix))
    try:
        done_by = time.monotonic() + load.slow_seconds + 60
        originated = 0
        while time.monotonic() < done_by:
            originated = ledger.status(CAMPAIGN).states.get("originated", 0)
            if originated >= load.calls:
                break
            time.sleep(0.2)
    finally:
        ledger.redis.close()
    return originated


def run(target: BenchRedis, load: MemLoad, log: Callable[[str], None]) -> list[MemResult]:
    results = []
    for layout in load.layouts:
        r = measure(target, load, layout, log)
        results.append(r)
        log(line(r))
    return results


def line(r: MemResult) -> str:
    if not r.ok and not r.busy:
        return f"  {r.layout.label}: FAILED: {r.error.splitlines()[0]}"
    return (
        f"  {r.layout.label}: {r.in_flight} in flight, RSS {mib(r.total('rss'))}, "
        f"PSS {mib(r.total('pss'))}, {r.processes()} processes, "
        f"per slot RSS {mib(r.total('rss') / r.layout.slots)}"
        + (f" ({r.error})" if r.error else "")
    )


def plot(results: list[MemResult], path: Path) -> str:
    """Total RSS and PSS per layout with all calls in flight (log scale), with the goal."""
    done = [r for r in results if r.busy]
    if not done:
        return "no memory run to plot"
    mib_ = 1 << 20
    return plots.bars(
        path,
        [r.layout.label.replace(", ", "\n") for r in done],
        [
            ("RSS, sum over the tree(s)", [r.total("rss") / mib_ for r in done]),
            ("PSS (shared pages divided)", [r.total("pss") / mib_ for r in done]),
        ],
        title=f"Worker memory with {done[0].calls} calls in flight (MiB, log scale)",
        ylabel="MiB",
        goal=GOAL_BYTES / mib_,
        goal_label="goal: 150 MB (143 MiB)",
        log_scale=True,
    )


# ------------------------------------------------------------------------------------------
# The report section (docs/benchmarks.md)


def render(load: MemLoad, results: list[MemResult], plot_path: str, plot_note: str) -> list[str]:
    """Section 4 of docs/benchmarks.md: worker memory (markdown lines)."""
    goal_mib = GOAL_BYTES / MIB
    out = [
        f"## 4. Worker memory: {load.calls} calls in flight",
        "",
        f"The simulator answers every `Calls/connect` after {load.slow_seconds:g} s "
        "(`slow_placed` on every request: placed, answered late) and allows 1,000,000 per "
        "second, and our limiter 1,000,000 per 60 s, so nothing holds a call back. Our real "
        "worker (`celery -A worker worker -Q calls`, `devstack.stack.worker_argv` with only "
        f"`--pool` changed) takes {load.calls} queued calls, one per slot. Once the simulator "
        "has received every POST, and before the first can be answered, the memory of each "
        "pod's whole process tree (the Celery parent and any pool children) is read from "
        "/proc five times, 0.3 s apart; the largest total is kept. Each run then waits for "
        f"all {load.calls} calls to come back `originated`, so the figure is of a worker "
        "that did its job. The simulator listens with a backlog of 1,024 here "
        "(socketserver's default of 5 overflowed when 100 greenlets connected at once: "
        "connections reset, calls in doubt instead of in flight).",
        "",
        "One worker process tree is one pod. **RSS** is the sum of VmRSS over the processes "
        "(a page shared by a prefork parent and its children counts once per process); "
        "**PSS** divides each shared page among the processes mapping it (about what the "
        "pod's cgroup is charged); **USS** is private memory only. Idle is the same pods, "
        "ready, before the calls.",
        "",
    ]
    rows = []
    for r in results:
        lay = r.layout
        if not r.busy:
            rows.append(
                [
                    lay.pool,
                    f"{lay.pods} x {lay.concurrency}",
                    str(r.in_flight),
                    "-",
                    "-" if not r.idle else mib(r.total("rss", "idle")),
                    f"**failed**: {r.error.splitlines()[0] if r.error else '?'}",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                ]
            )
            continue
        rss = r.total("rss")
        rows.append(
            [
                lay.pool,
                f"{lay.pods} x {lay.concurrency}",
                str(r.in_flight),
                str(r.processes()),
                mib(r.total("rss", "idle")),
                f"**{mib(rss)}**",
                mib(rss / lay.pods),
                f"{rss / lay.slots / 1024:,.0f} KiB",
                mib(r.total("pss")),
                mib(r.total("uss")),
                verdict(rss <= GOAL_BYTES, f"{rss / GOAL_BYTES:.1f}x")
                + ("" if r.ok else f"; {r.error}"),
            ]
        )
    out += table(
        [
            "pool",
            "pods x slots",
            "in flight",
            "processes",
            "idle RSS",
            "RSS total",
            "RSS per pod",
            "RSS per slot",
            "PSS total",
            "USS total",
            f"goal: <= 150 MB ({goal_mib:.0f} MiB) RSS",
        ],
        rows,
    )
    out.append("")
    out += _notes(load, results)
    out += figure("Worker memory per pool", plot_path, plot_note)
    return out


def _notes(load: MemLoad, results: list[MemResult]) -> list[str]:
    by = {(r.layout.pool, r.layout.pods): r for r in results}
    done = [r for r in results if r.busy]
    out: list[str] = []
    if done:
        spread = max(r.spread_s for r in done)
        at = max(r.sampled_at_s for r in done)
        out.append(
            f"Every sample was taken with all calls in flight: the last POST reached the "
            f"simulator at most {spread:.1f} s after the first, and the last sample "
            f"{at:.1f} s after the first POST, before any reply ({load.slow_seconds:g} s)."
        )
        out.append("")
    goal_mib = GOAL_BYTES / MIB
    out.append(f"**Goal: {load.calls} in-flight calls in <= 150 MB** ({goal_mib:.0f} MiB):")
    out.append("")
    for r in results:
        lay = r.layout
        if not r.busy:
            out.append(f"- {lay.label}: **failed**, {r.error.splitlines()[0]}")
            continue
        rss, pss = r.total("rss"), r.total("pss")
        per_slot = (rss - r.total("rss", "idle")) / lay.slots
        text = (
            f"- {lay.label}: {mib(rss)} RSS is {verdict(rss <= GOAL_BYTES)}"
            + ("" if rss <= GOAL_BYTES else f" by {mib(rss - GOAL_BYTES)}")
            + f" (PSS {mib(pss)}, {verdict(pss <= GOAL_BYTES)}); a slot in flight adds "
            f"{per_slot / 1024:,.0f} KiB over the idle pod"
        )
        out.append(text + ".")
    out.append("")
    threads = by.get(("threads", 1))
    if threads is not None and threads.busy:
        out.append(
            "- **threads**: one process; a call in flight is a thread blocked on its socket "
            "(a stack that is mostly untouched virtual memory, one pooled HTTP connection, "
            "a Redis connection when it needs one), so the pod's memory is mostly the "
            "interpreter with Celery, kombu, redis-py, requests and pydantic imported."
        )
    scaled = next((r for r in results if r.layout.pool == "threads" and r.layout.pods > 1), None)
    if scaled is not None and scaled.busy and threads is not None and threads.busy:
        out.append(
            f"- **{scaled.layout.pods} pods of {scaled.layout.concurrency}** (threads) hold the "
            f"same {load.calls} calls in {mib(scaled.total('rss'))} "
            f"({scaled.total('rss') / threads.total('rss'):.1f}x one pod of "
            f"{threads.layout.concurrency}): every pod pays the interpreter and its imports "
            f"again ({mib(scaled.total('rss', 'idle') / scaled.layout.pods)} idle each)."
        )
    prefork = by.get(("prefork", 1))
    if prefork is not None:
        if prefork.busy:
            kids = max(prefork.processes() - 1, 1)
            out.append(
                f"- **prefork**: {prefork.processes()} processes (the parent and "
                f"{kids} children, one per slot). The children are forked after the imports, "
                "but each one's own start-up (its Redis client, HTTP session, the ledger's "
                "scripts) and CPython's reference counts and GC dirty the shared pages: "
                f"{mib(prefork.total('uss') / kids)} private per child. The RSS sum counts "
                "the shared rest once per child; PSS is the fair total. (This bench found "
                "that `celery worker --pool prefork` silently ran the threads pool: Celery "
                "takes `prefork` for 'no pool given' and let the shipped `worker_pool` win. "
                "The worker's config now leaves the pool alone when `--pool` is given.)"
            )
        else:
            out.append(f"- **prefork** failed: {prefork.error}")
    gevent = by.get(("gevent", 1))
    if gevent is not None:
        if gevent.busy and gevent.ok:
            out.append(
                "- **gevent** works: `--pool gevent` monkey-patches sockets, threads and "
                "sleeps before the worker imports anything, and every call came back "
                "originated (with the shipped 1 s limiter margin: the dialer holds back a "
                "request more than half the margin late for its permit, and a greenlet can "
                f"be scheduled late). Its pod was {mib(gevent.total('rss'))} against "
                + (
                    f"{mib(threads.total('rss'))} for threads"
                    if threads is not None and threads.busy
                    else "threads"
                )
                + ": gevent's own modules and hub cost more than 100 parked threads."
            )
        else:
            why = gevent.error.splitlines()[0] if gevent.error else "?"
            out.append(f"- **gevent did not work**: {why}")
    out.append("")
    return out
