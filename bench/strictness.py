"""Limit strictness: our limiter against four others, as the simulator's strict window sees them.

The simulator keeps a strict sliding window per account (every arrival counted, a 429 when
the window already holds ``rate_limit``); its ``truth()`` gives ``max_in_window`` and the
429 count. Each limiter drives the same load: ``threads`` threads placing ``calls`` calls
through ``callq.exotel.ExotelClient``, a 429 retried at once through the limiter (ours also
pushes its schedule back, as the worker does). Each run has a simulator of its own.

The others (bench only):

* BullMQ-style fixed window (``fixed_window.lua``): one counter that opens with the first
  call and expires a window later;
* clock-aligned fixed window: a counter per ``floor(now / period)``, the Redis INCR pattern.
  This run starts half-way through a window, as a campaign may start at any moment;
* the ``limits`` library's moving window (Redis storage, ``MovingWindowRateLimiter``), the
  callers polling ``hit()`` with a short sleep;
* Celery's own ``rate_limit`` (``bench/celery_rate.py``) on 3 real workers (Celery's default
  prefork pool): the same calls published as tasks at once, each worker with its own token
  bucket.

The wait is from asking for a permit to the POST (for Celery: from the task's publish, which
includes its time in the queue, to the POST), once per request.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from bench import celery_rate, plots
from bench.env import BenchRedis
from bench.markdown import figure, ms_or_dash, table, verdict
from callq.dialing.limiter import Limiter
from callq.exotel.client import ExotelClient, make_session
from callq.exotel.outcome import NotPlaced, Originated
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from devstack.procs import spawn, stop, tail
from devstack.stack import child_env, python_module_argv
from simulator import Account, SimConfig, Simulator

SID, KEY, TOKEN = "bench-account", "bench-key", "bench-token"
_LUA = Path(__file__).with_name("fixed_window.lua")
ROOT = Path(__file__).resolve().parent.parent
GOAL_UTILISATION = 0.98  # of the limit, with 0 x 429 (issue 8)


@dataclass
class Load:
    calls: int
    threads: int
    limit: int
    period: float
    margin: float
    time_scale: float = 0.2
    #: The limits library's callers sleep this long between two hit() that said no.
    poll: float = 0.02
    #: Celery's rate_limit: this many workers (default prefork pool), each this many slots;
    #: ``threads`` should be their product, so that every contender has as many callers.
    celery_workers: int = 3
    celery_concurrency: int = 4

    @property
    def rate(self) -> float:
        return self.limit / self.period


@dataclass
class StrictResult:
    name: str
    sends: list[tuple[float, bool]]  # (monotonic time of the POST, was it a 429)
    seconds: float
    originated: int
    rate_limited: int
    max_in_window: int
    requests: int
    duplicates: int
    series: list[tuple[float, int]] = field(default_factory=list)  # (t, arrivals in window)
    waits: list[float] = field(default_factory=list)  # seconds, one per request
    calls: int = 0  # calls the run was asked to place
    note: str = ""  # how the run ended when it did not place every call
    round_trips: int | None = None  # limiter round trips, where counted

    def wait_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the waits, in ms; None when none was measured."""
        if not self.waits:
            return None
        if len(self.waits) == 1:
            return self.waits[0] * 1000
        cuts = statistics.quantiles(self.waits, n=100, method="inclusive")
        return cuts[min(max(round(q * 100) - 1, 0), 98)] * 1000

    def first_429(self) -> float | None:
        """Seconds from the first request to the first 429, or None."""
        if not self.sends:
            return None
        t0 = self.sends[0][0]
        return next((t - t0 for t, limited in self.sends if limited), None)

    def peak_rate(self, window: float = 1.0) -> float:
        """The most requests sent in any ``window`` seconds, per second."""
        counts = _sliding([t for t, _ in self.sends], window)
        return max((n for _, n in counts), default=0) / window

    def rate_after(self, skip: float) -> float:
        """Requests per second sent from ``skip`` s after the first until the last."""
        if not self.sends:
            return 0.0
        t0, t1 = self.sends[0][0] + skip, self.sends[-1][0]
        n = sum(1 for t, _ in self.sends if t >= t0)
        return n / (t1 - t0) if t1 > t0 else 0.0

    def achieved_rate(self) -> float:
        ok = sorted(t for t, limited in self.sends if not limited)
        if len(ok) < 2:
            return 0.0
        return (len(ok) - 1) / (ok[-1] - ok[0])


class FixedWindow:
    """A naive fixed-window limiter: one INCR (and a PEXPIRE) per permit."""

    def __init__(self, client: redis.Redis, key: str, load: Load, *, aligned: bool) -> None:
        self.key = key
        self.window_ms = round(load.period * 1000)
        self.limit = load.limit
        self.mode = "aligned" if aligned else "first-call"
        self.script = client.register_script(_LUA.read_text(encoding="utf-8"))

    def acquire(self) -> float:
        started = time.monotonic()
        while True:
            granted, wait_ms = cast(
                list[int],
                self.script(keys=[self.key], args=[self.window_ms, self.limit, self.mode]),
            )
            if int(granted):
                return time.monotonic() - started
            time.sleep(int(wait_ms) / 1000)


class MovingWindow:
    """The ``limits`` library's moving window on Redis, polled as its users do: ``hit()``,
    and a short sleep while it says no."""

    def __init__(self, url: str, prefix: str, load: Load, poll: float = 0.02) -> None:
        try:
            from limits import RateLimitItemPerSecond
            from limits.storage import RedisStorage
            from limits.strategies import MovingWindowRateLimiter
        except ImportError:  # pragma: no cover - the bench extra installs it
            raise RuntimeError(
                "the limits library is not installed: `.venv/bin/pip install -e '.[bench]'`"
            ) from None
        if not float(load.period).is_integer():
            raise ValueError("limits counts windows in whole seconds: use an integer period")
        self.storage = RedisStorage(url, key_prefix=f"{prefix}:limits")
        self.item = RateLimitItemPerSecond(load.limit, int(load.period))
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.poll = poll
        self.hits = 0  # hit() calls, each one round trip
        self._lock = threading.Lock()

    def acquire(self) -> float:
        started = time.monotonic()
        while True:
            with self._lock:
                self.hits += 1
            if self.limiter.hit(self.item, "bench"):
                return time.monotonic() - started
            time.sleep(self.poll)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            cast(Any, self.storage.get_connection()).close()


def _sliding(sends: list[float], period: float) -> list[tuple[float, int]]:
    """For each arrival, how many arrivals the window ``(t - period, t]`` holds."""
    out: list[tuple[float, int]] = []
    lo = 0
    for hi, t in enumerate(sends):
        while sends[lo] <= t - period:
            lo += 1
        out.append((t, hi - lo + 1))
    return out


def _sim_config(load: Load) -> SimConfig:
    account = Account(SID, KEY, TOKEN, rate_limit=load.limit, period=load.period)
    return SimConfig(
        accounts=[account], latency=True, time_scale=load.time_scale, callbacks=False, seed=11
    )


def _result(
    name: str,
    load: Load,
    sends: list[tuple[float, bool]],
    waits: list[float],
    seconds: float,
    truth: dict[str, Any],
    note: str = "",
) -> StrictResult:
    by_cf = cast(dict[str, int], truth["by_custom_field"])
    sends.sort()
    result = StrictResult(
        name=name,
        sends=sends,
        seconds=seconds,
        originated=int(truth["originated"]),
        rate_limited=int(truth["rate_limited"]),
        max_in_window=int(cast(dict[str, int], truth["max_in_window"]).get(SID, 0)),
        requests=int(truth["requests"]),
        duplicates=sum(1 for n in by_cf.values() if n > 1),
        waits=waits,
        calls=load.calls,
        note=note,
    )
    result.series = _sliding([t for t, _ in sends], load.period)
    return result


def _drive(
    name: str,
    load: Load,
    acquire: Callable[[], float],
    on_429: Callable[[], object],
    before_start: Callable[[], object] | None = None,
) -> StrictResult:
    with Simulator(_sim_config(load)) as sim:
        settings = Settings(
            _env_file=None,
            exotel_account_sid=SID,
            exotel_api_key=KEY,
            exotel_api_token=TOKEN,
            exotel_base_url=sim.url,
            exotel_connect_timeout=2.0,
            exotel_read_timeout=10.0,
        )
        client = ExotelClient(settings, make_session(pool_size=load.threads + 2))
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(load.calls):
            todo.put(i)
        sends: list[tuple[float, bool]] = []
        waits: list[float] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    params = [
                        ("From", f"+9198{i:08d}"),
                        ("To", f"+9197{i:08d}"),
                        ("CallerId", "08030752400"),
                        ("CustomField", f"bench-{i}"),
                    ]
                    while True:
                        waited = acquire()
                        sent_at = time.monotonic()
                        outcome, _ = client.connect(params)
                        limited = isinstance(outcome, NotPlaced) and outcome.rate_limited
                        with lock:
                            sends.append((sent_at, limited))
                            waits.append(waited)
                        if limited:
                            on_429()
                            continue
                        if not isinstance(outcome, Originated):
                            raise RuntimeError(f"{name}: call {i}: {outcome}")
                        break
            except BaseException as exc:
                errors.append(exc)

        if before_start is not None:
            before_start()
        started = time.monotonic()
        pool = [threading.Thread(target=worker, daemon=True) for _ in range(load.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        seconds = time.monotonic() - started
        client.close()
        if errors:
            raise RuntimeError(f"strictness ({name}): {errors[0]!r}") from errors[0]
        truth = sim.truth()
    return _result(name, load, sends, waits, seconds, truth)


def _wait_for_phase(client: redis.Redis, period: float, phase: float) -> None:
    """Sleep until the Redis clock is ``phase`` (0..1) of the way through a window."""
    secs, micros = client.time()
    now = secs + micros / 1e6
    into = (now % period) / period
    time.sleep(((phase - into) % 1.0) * period)


def rate_limit_string(rate: float) -> str:
    """``rate`` per second as a Celery ``rate_limit`` string (``20/s``, ``1200/m``)."""
    if float(rate).is_integer():
        return f"{int(rate)}/s"
    if float(rate * 60).is_integer():
        return f"{int(rate * 60)}/m"
    return f"{round(rate * 3600)}/h"


def run_celery(target: BenchRedis, load: Load, log: Callable[[str], None]) -> StrictResult:
    """Celery's ``rate_limit`` on ``load.celery_workers`` real worker processes: every call
    published as a task at once, then wait until all are placed or a deadline passes."""
    name = f"Celery rate_limit={rate_limit_string(load.rate)!r}, {load.celery_workers} workers"
    prefix = target.new_prefix("c")
    r = redis.Redis.from_url(target.url, decode_responses=True)
    workdir = Path(tempfile.mkdtemp(prefix="callq-bench-celery-"))
    procs: list[Any] = []
    deadline_s = max(15.0, 3 * load.calls / load.rate)
    note = ""
    try:
        with Simulator(_sim_config(load)) as sim:
            env = child_env(
                None,
                BENCH_CELERY_BROKER=target.url,
                BENCH_CELERY_PREFIX=prefix,
                BENCH_CELERY_RATE=rate_limit_string(load.rate),
                BENCH_SIM_URL=sim.url,
                BENCH_SIM_SID=SID,
                BENCH_SIM_KEY=KEY,
                BENCH_SIM_TOKEN=TOKEN,
            )
            try:
                for i in range(load.celery_workers):
                    argv = python_module_argv(
                        "celery",
                        "-A",
                        "bench.celery_rate",
                        "worker",
                        # Celery's default pool (prefork), as a Celery user would run it.
                        "-c",
                        str(load.celery_concurrency),
                        "-n",
                        f"rate{i}-{uuid.uuid4().hex[:6]}@%h",
                        "--without-mingle",
                        "--without-gossip",
                        "--without-heartbeat",
                        "--loglevel",
                        "WARNING",
                    )
                    procs.append(spawn(argv, env, workdir / f"celery{i}.log", cwd=ROOT))
                ready_by = time.monotonic() + 60
                while int(r.llen(f"{prefix}:ready")) < load.celery_workers:
                    dead = [p for p in procs if p.poll() is not None]
                    if dead or time.monotonic() > ready_by:
                        logs = "\n".join(
                            tail(workdir / f"celery{i}.log") for i in range(len(procs))
                        )
                        raise RuntimeError(f"Celery workers did not start:\n{logs}")
                    time.sleep(0.1)

                from celery import Celery

                publisher = Celery("bench-publisher", set_as_current=False)
                publisher.conf.update(celery_rate.celery_config(target.url, prefix))
                started = time.monotonic()
                for i in range(load.calls):
                    publisher.send_task(
                        celery_rate.TASK, args=(i, time.time()), queue=celery_rate.QUEUE
                    )
                done = 0
                while True:
                    done = int(r.get(f"{prefix}:done") or 0)
                    errors = cast(list[str], r.lrange(f"{prefix}:errors", 0, 4))
                    if errors:
                        raise RuntimeError(f"{name}: {errors}")
                    if done >= load.calls:
                        break
                    if time.monotonic() - started > deadline_s:
                        note = (
                            f"stopped at the deadline ({deadline_s:.0f} s, 3x the time the "
                            f"calls need at the limit): {done} of {load.calls} calls placed"
                        )
                        break
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"{name}: a worker exited")
                    time.sleep(0.05)
                seconds = time.monotonic() - started
                publisher.close()
            finally:
                for killed in stop(procs, timeout=20):
                    log(f"  celery worker {killed}")
            truth = sim.truth()
        sends: list[tuple[float, bool]] = []
        waits: list[float] = []
        for line in cast(list[str], r.lrange(f"{prefix}:sends", 0, -1)):
            sent_at, limited, waited = line.split()
            sends.append((float(sent_at), limited == "1"))
            waits.append(float(waited))
    finally:
        target.drop(prefix)
        r.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return _result(name, load, sends, waits, seconds, truth, note)


def run(target: BenchRedis, load: Load, log: Callable[[str], None]) -> list[StrictResult]:
    """Our limiter, then the four others, under the same load."""
    results: list[StrictResult] = []
    client = make_redis(target.url)
    try:
        prefix = target.new_prefix("k")
        ours = Limiter(
            client,
            Keys(prefix),
            SID,
            calls=load.limit,
            period=load.period,
            margin=load.margin,
            max_ahead=1.0,
        )
        results.append(
            _drive(
                "our limiter (GCRA on the Redis clock)",
                load,
                lambda: ours.acquire().waited,
                lambda: ours.push_back(load.period),
            )
        )
        log(_line(results[-1], load))

        prefix = target.new_prefix("b")
        bull = FixedWindow(client, f"{prefix}:fixed-window", load, aligned=False)
        results.append(
            _drive("fixed window, BullMQ-style (opens at first call)", load, bull.acquire, _nop)
        )
        log(_line(results[-1], load))

        prefix = target.new_prefix("a")
        aligned = FixedWindow(client, f"{prefix}:fixed-window", load, aligned=True)
        results.append(
            _drive(
                "fixed window, clock-aligned (INCR per window)",
                load,
                aligned.acquire,
                _nop,
                before_start=lambda: _wait_for_phase(client, load.period, 0.5),
            )
        )
        log(_line(results[-1], load))

        prefix = target.new_prefix("l")
        moving = MovingWindow(target.url, prefix, load, poll=load.poll)
        try:
            results.append(
                _drive(
                    f"limits library, moving window (hit() polled every {load.poll * 1000:g} ms)",
                    load,
                    moving.acquire,
                    _nop,
                )
            )
        finally:
            moving.close()
        results[-1].round_trips = moving.hits
        log(_line(results[-1], load))

        results.append(run_celery(target, load, log))
        log(_line(results[-1], load))
    finally:
        client.close()
    return results


def _nop() -> None:
    return None


def _line(r: StrictResult, load: Load) -> str:
    p50, p99 = r.wait_ms(0.5), r.wait_ms(0.99)
    waits = "" if p50 is None or p99 is None else f", wait p50 {p50:.0f} ms p99 {p99:.0f} ms"
    return (
        f"  {r.name}: max_in_window {r.max_in_window} (limit {load.limit}), "
        f"429s {r.rate_limited}, {r.achieved_rate():.1f}/s of {load.rate:.1f}/s, "
        f"{r.originated}/{r.calls} placed, {r.seconds:.1f} s{waits}"
        + (f" ({r.note})" if r.note else "")
    )


def plot(results: list[StrictResult], load: Load, path: Path) -> str:
    """Sliding-window count over time, one line per limiter. Returns a note ("" when drawn)."""
    plt = plots.pyplot()
    if plt is None:
        return plots.MISSING
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=110)
    styles = ["-", "-", "-", "-.", ":"]
    for k, r in enumerate(results):
        if not r.series:
            continue
        t0 = r.series[0][0]
        xs = [t - t0 for t, _ in r.series]
        ys = [n for _, n in r.series]
        ax.step(
            xs,
            ys,
            where="post",
            label=f"{r.name}: max {r.max_in_window}",
            linewidth=1.4 if k == 0 else 1.1,
            linestyle=styles[k % len(styles)],
        )
    ax.axhline(load.limit, color="black", linestyle="--", linewidth=1, label="limit")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel(f"requests in the last {load.period:g} s")
    ax.set_title(
        f"Arrivals in a sliding {load.period:g} s window ({load.limit} allowed), "
        f"{load.threads} threads, {load.calls} calls"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7.5)
    ax.grid(alpha=0.3)
    plots.save(plt, fig, path)
    return ""


# ------------------------------------------------------------------------------------------
# The report section (docs/benchmarks.md)


def render(load: Load, results: list[StrictResult], plot_path: str, plot_note: str) -> list[str]:
    """Section 3 of docs/benchmarks.md: limit strictness (markdown lines)."""
    rows = []
    for r in results:
        achieved = r.achieved_rate()
        first = r.first_429()
        rows.append(
            [
                r.name,
                f"**{r.max_in_window}** ({load.limit})",
                f"**{r.rate_limited:,}**",
                f"{r.requests:,}",
                str(r.originated) if r.originated >= r.calls else f"{r.originated} of {r.calls}",
                str(r.duplicates),
                f"{achieved:.2f}",
                f"{achieved / load.rate:.0%}",
                ms_or_dash(r.wait_ms(0.5)),
                ms_or_dash(r.wait_ms(0.99)),
                "-" if first is None else f"{first:.2f}",
                f"{r.seconds:.1f}",
            ]
        )
    out = [
        "## 3. Limit strictness (diagnostic: the limiter driven directly)",
        "",
        "This section drives `ExotelClient.connect` behind the limiter from threads of its "
        "own: no producer, no parked calls, no feed and no Celery workers. It compares "
        "limiters on one load; it is not the path users run, whose figure is in section 0.",
        "",
        f"The simulator with one account limited to {load.limit} requests per "
        f"{load.period:g} s (a strict sliding window that counts refused arrivals too), "
        f"latency on at `time_scale={load.time_scale:g}`, no callbacks. {load.threads} threads "
        f"(as {load.celery_workers} workers of {load.celery_concurrency} slots) "
        f"place {load.calls} calls through `ExotelClient.connect`, each call after one permit; "
        "a 429 is retried through the limiter at once (ours also calls `push_back`, as the "
        f"worker does). Our limiter runs with margin {load.margin:g} s and `max_ahead=1`. "
        f"Utilisation is the achieved rate of accepted calls over the limit ({load.rate:g}/s). "
        "`max_in_window` and 429s are the simulator's own count. Wait is from asking for a "
        "permit to the POST, per request (p50 / p99): with more callers than the limit "
        "needs, they queue for permits, so a wait near callers x spacing is by design.",
        "",
        "The others: BullMQ-style fixed window (bench/fixed_window.lua: one counter, `INCR`, "
        "`PEXPIRE` on the first call, wait `PTTL` when full); clock-aligned fixed window "
        "(`INCR` on a key per `floor(now / period)`, the Redis INCR rate-limiter pattern), "
        "started half-way through a window; the `limits` library's "
        "`MovingWindowRateLimiter` on its Redis storage, callers polling `hit()` every "
        f"{load.poll * 1000:g} ms; Celery's own `rate_limit="
        f"'{rate_limit_string(load.rate)}'` on a task (bench/celery_rate.py) run by "
        f"{load.celery_workers} real `celery worker`s (Celery's defaults: the prefork pool, "
        f"here {load.celery_concurrency} processes each, prefetch multiplier 4), the calls "
        "published as tasks at once and a 429 retried by `self.retry(countdown=0)`.",
        "",
        *table(
            [
                "limiter",
                "max_in_window (limit)",
                "429s",
                "requests",
                "originated",
                "dialled twice",
                "accepted/s",
                "utilisation",
                "wait p50 ms",
                "wait p99 ms",
                "first 429 at s",
                "wall s",
            ],
            rows,
        ),
        "",
        *_notes(load, results),
    ]
    out += figure("Sliding-window count over time", plot_path, plot_note)
    return out


def ours_goal(load: Load, results: list[StrictResult]) -> tuple[bool, str]:
    """(met, text) for the strictness goal: 0 x 429 at >= 98 % utilisation."""
    ours = results[0]
    util = ours.achieved_rate() / load.rate
    ok = ours.rate_limited == 0 and util >= GOAL_UTILISATION
    parts = [f"{ours.rate_limited} x 429 at {util:.1%} utilisation"]
    if not ok:
        why = []
        if ours.rate_limited:
            why.append(f"{ours.rate_limited} 429s")
        if util < GOAL_UTILISATION:
            why.append(f"utilisation {(GOAL_UTILISATION - util) * 100:.1f} points short")
        parts.append("; ".join(why))
    return ok, parts[0] + ("" if ok else f" ({parts[1]})")


def _notes(load: Load, results: list[StrictResult]) -> list[str]:
    if not results:
        return []
    ours = results[0]
    held = ours.max_in_window <= load.limit and ours.rate_limited == 0
    util = ours.achieved_rate() / load.rate
    cap = load.period / (load.period + load.margin)
    out: list[str] = []
    ok, text = ours_goal(load, results)
    out.append(
        f"**Goal: 0 x 429 at >= {GOAL_UTILISATION:.0%} utilisation**: {verdict(ok)}, {text}."
    )
    out.append("")
    if held:
        line = (
            f"- **Our limiter** held the limit: at most {ours.max_in_window} requests in any "
            f"{load.period:g} s window and no 429, at {util:.0%} of the allowed rate."
        )
    else:
        line = (
            f"- **Our limiter broke the limit**: {ours.max_in_window} requests in a window "
            f"(limit {load.limit}) and {ours.rate_limited} 429s. This is a bug to chase in "
            "`callq/dialing/limiter.py` / `limiter_acquire.lua`."
        )
    line += (
        f" Its margin ({load.margin:g} s per {load.period:g} s, room for arrival jitter) caps "
        f"it at {cap:.1%} by design"
    )
    if util < cap - 0.005:
        line += (
            f"; the other {(cap - util) * 100:.1f} points are permits nobody asked for in "
            f"time: while all {load.threads} callers wait on slow replies (the seed latency's "
            "tail), a slot passes unused"
        )
    out.append(line + ".")
    naive = [r for r in results[1:3]]
    broke = [r for r in naive if r.max_in_window > load.limit]
    if broke:
        worst = max(broke, key=lambda r: r.max_in_window)
        out.append(
            f"- **The fixed windows** let up to {worst.max_in_window} requests into one "
            f"{load.period:g} s window. A fixed window resets its count when it rolls over, "
            "while the requests of the window just ended are still inside Exotel's sliding "
            "window: the next window's first requests are refused, each refusal is an arrival "
            "that counts too, and the retries burn the new window's permits on 429s. The "
            "limit is then kept only on average, and throughput drops."
        )
    moving = next((r for r in results if r.name.startswith("limits")), None)
    if moving is not None:
        m_util = moving.achieved_rate() / load.rate
        trips = (
            ""
            if not moving.round_trips
            else f" It took {moving.round_trips:,} `hit()` round trips for "
            f"{moving.requests:,} requests ({moving.round_trips / max(moving.requests, 1):.1f} "
            f"each): callers poll every {load.poll * 1000:g} ms."
        )
        if moving.max_in_window <= load.limit and moving.rate_limited == 0:
            outcome = (
                f"held the limit here ({moving.max_in_window} at most, no 429) at "
                f"{m_util:.0%} utilisation"
            )
        else:
            outcome = (
                f"let {moving.max_in_window} requests into a window and drew "
                f"{moving.rate_limited} 429s at {m_util:.0%} utilisation"
            )
        out.append(
            f"- **The `limits` moving window** {outcome}. It keeps the last {load.limit} hit "
            "times in a Redis list (stamped with the caller's clock, whole-second windows) "
            "and grants a hit when the oldest has left the window: the same count Exotel "
            "keeps, but of hits, not of arrivals, with no margin: a request that reaches "
            "Exotel later than its hit (a slow connect, a thread paused between `hit()` and "
            "the POST) can land in a window that is already full, and each 429 then counts "
            "against the next window too."
            + (
                f" It lets the first {load.limit} through at once (a burst), so its "
                "accepted/s over a short run can read above the limit."
                if m_util > 1
                else ""
            )
            + trips
        )
    celery = next((r for r in results if r.name.startswith("Celery")), None)
    if celery is not None:
        c_util = celery.achieved_rate() / load.rate
        peak = celery.peak_rate(1.0)
        after = celery.rate_after(load.period)
        text = (
            f"- **Celery's `rate_limit`** is a token bucket in each worker, so "
            f"{load.celery_workers} workers may send at up to {load.celery_workers}x the "
            f"rate. Here they peaked at {peak:,.0f} requests in one second "
            f"({peak / load.rate:.1f}x the rate) while the prefetched tasks went out, and "
            f"Exotel's window saw up to {celery.max_in_window} "
            f"({celery.max_in_window / load.limit:.2f}x the limit) and drew "
            f"{celery.rate_limited:,} 429s. After the first "
            f"{load.period:g} s the workers sent only {after:.1f} requests/s together "
            f"({after / load.rate:.0%} of the limit): a worker whose prefetched tasks all wait "
            "on its bucket ran far fewer than its own rate (with the Redis broker, as in "
            "celery/celery#5927, open; Celery's docs warn that rate-limited tasks hold the "
            f"worker's prefetch slots). So it is neither strict nor fast: {c_util:.0%} "
            f"utilisation, {celery.originated} of {celery.calls} calls placed"
            + (f" ({celery.note})" if celery.note else "")
            + ". Its wait runs from the task's publish to its POST: all the calls are "
            "published at once, so it is mostly time in the queue (the others' wait starts "
            "when a caller asks for a permit)."
        )
        out.append(text)
    return [*out, ""]
