"""Limit strictness: our limiter and two naive fixed-window limiters against the simulator.

The simulator keeps a strict sliding window per account (every arrival counted, a 429 when
the window already holds ``rate_limit``); its ``truth()`` gives ``max_in_window`` and the
429 count. Each limiter drives the same load: ``threads`` threads placing ``calls`` calls
through ``callq.exotel.ExotelClient``, a 429 retried at once through the limiter (ours also
pushes its schedule back, as the worker does). Each run has a simulator of its own.

The naive limiters (``fixed_window.lua``, bench only):

* BullMQ-style: one counter that opens with the first call and expires a window later;
* clock-aligned: a counter per ``floor(now / period)``, the Redis INCR pattern. This run
  starts half-way through a window, as a campaign may start at any moment.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from bench.env import BenchRedis
from callq.exotel import ExotelClient, make_session
from callq.keys import Keys
from callq.limiter import Limiter
from callq.outcome import NotPlaced, Originated
from callq.redis_conn import make_redis
from config import Settings
from simulator import Account, SimConfig, Simulator

SID, KEY, TOKEN = "bench-account", "bench-key", "bench-token"
_LUA = Path(__file__).with_name("fixed_window.lua")


@dataclass
class Load:
    calls: int
    threads: int
    limit: int
    period: float
    margin: float
    time_scale: float = 0.2

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

    def first_429(self) -> float | None:
        """Seconds from the first request to the first 429, or None."""
        if not self.sends:
            return None
        t0 = self.sends[0][0]
        return next((t - t0 for t, limited in self.sends if limited), None)

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

    def acquire(self) -> None:
        while True:
            granted, wait_ms = cast(
                list[int],
                self.script(keys=[self.key], args=[self.window_ms, self.limit, self.mode]),
            )
            if int(granted):
                return
            time.sleep(int(wait_ms) / 1000)


def _sliding(sends: list[float], period: float) -> list[tuple[float, int]]:
    """For each arrival, how many arrivals the window ``(t - period, t]`` holds."""
    out: list[tuple[float, int]] = []
    lo = 0
    for hi, t in enumerate(sends):
        while sends[lo] <= t - period:
            lo += 1
        out.append((t, hi - lo + 1))
    return out


def _drive(
    name: str,
    load: Load,
    acquire: Callable[[], object],
    on_429: Callable[[], object],
    before_start: Callable[[], object] | None = None,
) -> StrictResult:
    account = Account(SID, KEY, TOKEN, rate_limit=load.limit, period=load.period)
    config = SimConfig(
        accounts=[account], latency=True, time_scale=load.time_scale, callbacks=False, seed=11
    )
    with Simulator(config) as sim:
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
                        acquire()
                        sent_at = time.monotonic()
                        outcome, _ = client.connect(params)
                        limited = isinstance(outcome, NotPlaced) and outcome.rate_limited
                        with lock:
                            sends.append((sent_at, limited))
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
    )
    result.series = _sliding([t for t, _ in sends], load.period)
    return result


def _wait_for_phase(client: redis.Redis, period: float, phase: float) -> None:
    """Sleep until the Redis clock is ``phase`` (0..1) of the way through a window."""
    secs, micros = client.time()
    now = secs + micros / 1e6
    into = (now % period) / period
    time.sleep(((phase - into) % 1.0) * period)


def run(target: BenchRedis, load: Load, log: Callable[[str], None]) -> list[StrictResult]:
    """Our limiter, then the two naive ones, under the same load."""
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
                ours.acquire,
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
    finally:
        client.close()
    return results


def _nop() -> None:
    return None


def _line(r: StrictResult, load: Load) -> str:
    return (
        f"  {r.name}: max_in_window {r.max_in_window} (limit {load.limit}), "
        f"429s {r.rate_limited}, {r.achieved_rate():.1f}/s of {load.rate:.1f}/s, "
        f"{r.seconds:.1f} s"
    )


def plot(results: list[StrictResult], load: Load, path: Path) -> str:
    """Sliding-window count over time, one line per limiter. Returns a note ("" when drawn)."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib is not installed (`.venv/bin/pip install matplotlib`): no plot"
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for r in results:
        if not r.series:
            continue
        t0 = r.series[0][0]
        xs = [t - t0 for t, _ in r.series]
        ys = [n for _, n in r.series]
        ax.step(xs, ys, where="post", label=f"{r.name}: max {r.max_in_window}", linewidth=1.2)
    ax.axhline(load.limit, color="black", linestyle="--", linewidth=1, label="limit")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel(f"requests in the last {load.period:g} s")
    ax.set_title(
        f"Arrivals in a sliding {load.period:g} s window ({load.limit} allowed), "
        f"{load.threads} threads, {load.calls} calls"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return ""
