"""Many accounts at once: every account at its own limit, and what that costs Redis.

Each of ``n`` Exotel accounts (``EXOTEL_ACCOUNTS``) has its own time-scaled limit (``limit``
per ``period``) at the simulator and in the limiter, and one campaign of its own
(``CampaignOptions(account=...)``, the CLI's ``--account``) long enough for several periods.
The producer (``Enqueuer``) enqueues them all to start at one moment (``send_at``), the calls
wait parked, the workers' feeders hand each account's permits to its campaign, real Celery
workers (threads pool) dial them through the limiter, and the simulator counts every arrival
per account on its strict sliding window. Measured:

* per account: the most in any window (never over), its 429s (none), its utilisation at
  steady state; the aggregate over the span where every account is at steady state, against
  the sum of the limits (the goal is 95 %);
* the CPU of Redis (``INFO cpu`` deltas), of the worker processes (``/proc``) and
  of this process (producer and simulator), over the run;
* Redis commands per placed call (``INFO commandstats`` deltas: the broker's, the ledger's
  and the limiter's, commands run inside Lua scripts included);
* the feed's cost per pass against the number of campaigns due and idle: in-process feeders
  on the same private Redis, commands and time per pass with 10 and 1,000 idle campaigns
  (parked calls, waiting for their ``send_at``) and 0, 10 or 50 accounts due; and the
  lease sweeper's pass beside it;
* limiter permits per second from one Redis (a diagnostic: ``Limiter.reserve`` from threads
  across the accounts' keys, with a limit so high that only the cost counts).

Everything runs on a private ``redis-server`` (``devstack.embedded``, no persistence), so the
``INFO`` deltas are this run's alone, not those of others sharing 127.0.0.1:6379.

Part of ``make bench`` (section 9); alone:
``python -m bench.accounts [--accounts 10,50,200] [--limit 10 --period 5] [--workers 3]``.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import gc
import io
import itertools
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from bench.env import BenchRedis
from bench.pipeline import max_in_window
from callq.campaign.controls import CampaignOptions
from callq.dialing.dialer import Account as DialAccount
from callq.dialing.dialer import Dialer
from callq.dialing.limiter import Limiter
from callq.dialing.retry import RetryPolicy
from callq.exotel.client import ExotelClient, make_session
from callq.intake.enqueue import Enqueuer
from callq.settings import ExotelAccount, Settings, time_scaled
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.sweeping.sweeper import Sweeper
from callq.transport.config import make_app
from devstack.embedded import EmbeddedRedis
from devstack.workers import WorkerPool
from simulator import Account, SimConfig, Simulator, latency_quantile

GOAL_AGGREGATE = 0.95
FEED_LEAD = float(Settings.model_fields["feed_lead_seconds"].default)
DEFAULT_CONCURRENCY = int(Settings.model_fields["worker_concurrency"].default)
#: The margin of these runs, at least: the time-scaled 0.1 s is below this machine's jitter
#: between a permit's slot and its arrival at the simulator when many accounts dial at once.
#: Measured here as how much closer than the limiter spaces them limit + 1 arrivals of one
#: account came (``AccResult.jitter``): 0.11-0.18 s with 50 accounts whose permits fall at
#: one instant (load average 3-6), where windows went over at 0.1 s; 0.07 s with 50 and
#: 0.05 s with 200 accounts whose starts are spread, none over at 0.2 s. At a 5 s period
#: it costs 2 % of the rate (ceiling 96.2 %, from 98.0 %). Production (1 s) is untouched.
MARGIN_FLOOR = 0.2
DEFAULT_SID, DEFAULT_KEY, DEFAULT_TOKEN = "bench-acc-default", "bench-acc-key", "bench-acc-tok"


def account_name(i: int) -> str:
    return f"a{i:03d}"


def account_sid(i: int) -> str:
    return f"bench-acc-{i:03d}"


def campaign_csv(n: int, account: int) -> bytes:
    """``n`` rows, each a unique customer (per account) and one agent number."""
    lines = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    lines.extend(
        f"+91803075{account:04d},+9198{account:03d}{i:05d},08030752400,o-{account}-{i},600,30"
        for i in range(n)
    )
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class AccLoad:
    accounts: int
    limit: int = 10  # per account, per ``period`` (time-scaled)
    period: float = 5.0
    periods: float = 6.0  # each campaign holds this many periods of calls at the limit
    workers: int = 3
    concurrency: int | None = None  # threads per worker (None: sized from the load, threads())
    speed: float = 12.0  # the shipped defaults this many times faster (config.time_scaled)
    # RATE_LIMIT_MARGIN_SECONDS: None is the time-scaled one (config.time_scaled: 1 s / 12,
    # floored at 0.1 s) raised to MARGIN_FLOOR; a number is a what-if.
    margin: float | None = None
    # Every campaign starts at the same instant, so every account's permits fall together
    # (a what-if: the worst case for the jitter); else the starts are spread over one
    # interval, as tenants' campaigns would be.
    aligned: bool = False
    backpressure: bool = True  # FEED_BACKPRESSURE (a what-if: off)

    @property
    def threads(self) -> int:
        """Threads per worker: ``concurrency``, else what the load needs. A fed call holds a
        thread from its message to the reply: the feed's lead, then one request (the
        simulator's p95 reply at this speed). One account has at most ``ceil(hold /
        interval)`` calls in hand at once, and the accounts' permits fall together (every
        campaign starts at one ``send_at`` and every account has the same interval), so
        the threads are the accounts times that, not the sum of the limits times the hold
        (which the demand gauge reckons, for accounts whose permits do not line up); never
        fewer than the shipped WORKER_CONCURRENCY. At 16 threads per worker, 200 accounts x
        10 per 5 s had 48 threads for the 400 their permits need: the fed messages waited
        in the queue past their overdue guard, the sweeper published a copy of nearly every
        call (11,195 ``skip:originated`` tasks for 12,000 calls), and the copies took a
        third of the workers' CPU."""
        if self.concurrency is not None:
            return self.concurrency
        hold = FEED_LEAD + latency_quantile(0.95) / self.speed
        interval = self.period / self.limit  # the margin makes it longer: this is the most
        needed = self.accounts * math.ceil(hold / interval)
        return max(DEFAULT_CONCURRENCY, math.ceil(needed / self.workers))

    @property
    def calls_per_account(self) -> int:
        return round(self.limit * self.periods)

    @property
    def sum_of_limits(self) -> float:
        """Requests per second all accounts' limits allow together."""
        return self.accounts * self.limit / self.period

    @property
    def label(self) -> str:
        what_if = "" if self.margin is None else f", margin {self.margin:g} s"
        what_if += ", starts aligned" if self.aligned else ""
        what_if += "" if self.backpressure else ", no back-pressure"
        return f"{self.accounts} accounts x {self.limit} per {self.period:g} s{what_if}"


@dataclass
class AccResult:
    load: AccLoad
    placed: int = 0
    elapsed: float = 0.0
    over: int = 0  # accounts whose most-in-any-window exceeded the limit
    worst_window: int = 0
    rate_limited: int = 0
    accounts_429: int = 0
    duplicates: int = 0
    aggregate: float = float("nan")  # arrivals/s over the common steady span / sum of limits
    aggregate_rate: float = 0.0  # arrivals/s in that span
    steady_span: float = 0.0
    per_account_min: float = float("nan")
    per_account_median: float = float("nan")
    redis_cpu: float = 0.0  # cores (CPU-seconds per second of the run)
    workers_cpu: float = 0.0
    bench_cpu: float = 0.0  # this process: the producer and the simulator
    commands: int = 0
    commands_per_call: float = float("nan")
    redis_cpu_us_per_call: float = float("nan")
    top_commands: list[tuple[str, int]] = field(default_factory=list)
    fed_late: int = 0
    # The closest two arrivals of one account, over the limiter's interval: below 1 by the
    # jitter between a request's permit and its arrival (the margin covers it).
    min_gap_ratio: float = float("nan")
    # How much closer than the limiter spaces them ``limit + 1`` arrivals of one account
    # came, at most (seconds): limit x interval minus their shortest span. The limiter's
    # spacing holds ``margin`` in hand, so a window goes over exactly when this passes the
    # margin: it is the jitter between a permit's slot and its arrival that counts.
    jitter: float = float("nan")
    margin: float = float("nan")  # the run's RATE_LIMIT_MARGIN_SECONDS
    threads: int = 0  # per worker
    copies: int = 0  # tasks that found their call already placed (a copy's message)
    load_avg: str = ""  # the 1-minute load average at the start and the end of the run
    note: str = ""

    @property
    def met(self) -> bool:
        return (
            self.over == 0
            and self.rate_limited == 0
            and self.duplicates == 0
            and self.aggregate >= GOAL_AGGREGATE
        )


# --- measuring -------------------------------------------------------------------------------


@dataclass
class RedisSnap:
    cpu: float
    calls: dict[str, int]

    @classmethod
    def take(cls, client: redis.Redis) -> RedisSnap:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in stats.items()
            if isinstance(v, dict)
        }
        return cls(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls)

    def minus(self, before: RedisSnap) -> tuple[float, dict[str, int]]:
        calls = {k: v - before.calls.get(k, 0) for k, v in self.calls.items()}
        return self.cpu - before.cpu, {k: v for k, v in calls.items() if v > 0}


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (None when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU-seconds (user + system) of these processes and their live descendants so far,
    from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parent[int(entry.name)] = int(st[1])
    tree, frontier = set(pids), list(pids)
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0.0
    for pid in tree:
        st = _stat(pid)
        if st is not None:
            total += (int(st[11]) + int(st[12])) / ticks  # utime, stime
    return total


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextmanager
def private_redis() -> Iterator[BenchRedis]:
    """A redis-server of this run's own (no persistence): its INFO is ours alone."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-acc-redis-") as tmp,
        EmbeddedRedis(tmp, appendonly=False) as server,
    ):
        target = BenchRedis(server.url, "private (embedded redis-server)")
        try:
            yield target
        finally:
            target.admin.close()


def many_settings(
    target: BenchRedis, prefix: str, n: int, limit: int, period: float, url: str, **extra: Any
) -> Settings:
    """The shipped defaults ``speed`` times faster with ``n`` accounts of ``limit`` per
    ``period`` each, at the simulator ``url``."""
    accounts = {
        account_name(i): ExotelAccount(
            account_sid=account_sid(i),
            api_key=SecretStr(f"key-{i}"),
            api_token=SecretStr(f"token-{i}"),
            rate_limit_calls=limit,
            rate_limit_period_seconds=period,
        )
        for i in range(n)
    }
    return target.settings(
        prefix,
        exotel_account_sid=DEFAULT_SID,
        exotel_api_key=SecretStr(DEFAULT_KEY),
        exotel_api_token=SecretStr(DEFAULT_TOKEN),
        exotel_base_url=url,
        exotel_caller_id="08030752400",
        rate_limit_calls=limit,
        rate_limit_period_seconds=period,
        exotel_accounts=accounts,
        **extra,
    )


def base_margin(load: AccLoad) -> float:
    """The margin ``config.time_scaled`` gives the shipped defaults at the load's speed."""
    scaled = time_scaled(Settings(_env_file=None), load.speed)
    return float(
        scaled.get(
            "rate_limit_margin_seconds", Settings.model_fields["rate_limit_margin_seconds"].default
        )
    )


def sim_accounts(n: int, limit: int, period: float) -> list[Account]:
    return [
        Account(DEFAULT_SID, DEFAULT_KEY, DEFAULT_TOKEN, rate_limit=limit, period=period),
        *(
            Account(account_sid(i), f"key-{i}", f"token-{i}", rate_limit=limit, period=period)
            for i in range(n)
        ),
    ]


# --- the pipeline at n accounts ------------------------------------------------------------------


def run(target: BenchRedis, load: AccLoad, log: Callable[[str], None] = print) -> AccResult:
    result = AccResult(load)
    n = load.accounts
    config = SimConfig(
        accounts=sim_accounts(n, load.limit, load.period),
        latency=True,
        time_scale=1.0 / load.speed,
        callbacks=False,
        seed=23,
    )
    prefix = target.new_prefix("acc")
    # The simulator stamps arrivals in this process: a full collection of it would stamp them
    # late and show jitter (and windows over) that the workers did not make. What the bench
    # built so far is left out of the collections while the run lasts.
    gc.collect()
    gc.freeze()
    try:
        return _run(target, load, config, prefix, result, log)
    finally:
        gc.unfreeze()


def _run(
    target: BenchRedis,
    load: AccLoad,
    config: SimConfig,
    prefix: str,
    result: AccResult,
    log: Callable[[str], None],
) -> AccResult:
    n = load.accounts
    with Simulator(config) as sim, tempfile.TemporaryDirectory(prefix="bench-acc-") as tmp:
        settings = many_settings(
            target,
            prefix,
            n,
            load.limit,
            load.period,
            sim.url,
            speed=load.speed,
            worker_concurrency=load.threads,
            rate_limit_margin_seconds=(
                max(MARGIN_FLOOR, base_margin(load)) if load.margin is None else load.margin
            ),
            feed_backpressure=load.backpressure,
        )
        ledger = Ledger(make_redis(settings.require_redis_url()), Keys(prefix))
        pool = WorkerPool(settings, Path(tmp), concurrency=load.threads)
        total = n * load.calls_per_account
        try:
            pool.start(load.workers)
            _wait_ready(pool)
            pids = [w.proc.pid for w in pool.alive()]
            # Every campaign starts at the same moment (send_at), once the producer is done:
            # its CPU does not fall into the dialling, nor does an account start late.
            enq = Enqueuer(settings)
            start_at = datetime.now(UTC) + timedelta(seconds=3 + n * load.calls_per_account / 2000)
            # Spread over one interval (unless aligned): account i starts i/n of it later.
            step = 0.0 if load.aligned else settings.emission_interval_seconds / n
            for i in range(n):
                enq.enqueue_file(
                    io.BytesIO(campaign_csv(load.calls_per_account, i)),
                    f"c{i:03d}",
                    options=CampaignOptions(
                        account=account_name(i), send_at=start_at + timedelta(seconds=i * step)
                    ),
                )
            if datetime.now(UTC) > start_at:
                result.note += " (the enqueue ran past the common start)"
            time.sleep(max(0.0, (start_at - datetime.now(UTC)).total_seconds()))
            r0, w0, b0 = RedisSnap.take(target.admin), tree_cpu(pids), self_cpu()
            load0 = _load().split(" / ")[0]
            began = time.monotonic()
            deadline = began + load.periods * load.period * 3 + 60
            while sim.counts()["originated"] < total and time.monotonic() < deadline:
                time.sleep(0.25)
            result.elapsed = time.monotonic() - began
            r1, w1, b1 = RedisSnap.take(target.admin), tree_cpu(pids), self_cpu()
            result.load_avg = f"{load0}-{_load().split(' / ')[0]}"
            if sim.counts()["originated"] < total:
                result.note = f"not all placed within {deadline - began:.0f} s"
            truth = sim.truth()
            arrivals = sim.arrivals()["accounts"]
            result.fed_late = pool.grep("late for its permit")
            result.copies = pool.grep("'skip:originated'")
        finally:
            pool.stop()
            ledger.redis.close()
            target.drop(prefix)
    cpu, calls = r1.minus(r0)
    result.placed = int(truth["originated"])
    result.rate_limited = int(truth["rate_limited"])
    result.accounts_429 = sum(1 for v in truth["rate_limited_by_account"].values() if v)
    result.duplicates = sum(1 for v in truth["by_custom_field"].values() if v > 1)
    result.redis_cpu = cpu / result.elapsed
    result.workers_cpu = (w1 - w0) / result.elapsed
    result.bench_cpu = (b1 - b0) / result.elapsed
    result.commands = sum(calls.values())
    if result.placed:
        result.commands_per_call = result.commands / result.placed
        result.redis_cpu_us_per_call = cpu * 1e6 / result.placed
    result.top_commands = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    sids = [account_sid(i) for i in range(n)]
    times = {sid: sorted(t for t, _ in arrivals.get(sid, [])) for sid in sids}
    windows = [max_in_window(times[sid], load.period) if times[sid] else 0 for sid in sids]
    interval = (load.period + settings.rate_limit_margin_seconds) / load.limit
    gaps = [b - a for ts in times.values() for a, b in itertools.pairwise(ts)]
    if gaps:
        result.min_gap_ratio = min(gaps) / interval
    result.margin = settings.rate_limit_margin_seconds
    result.threads = load.threads
    spans = [b - a for ts in times.values() for a, b in zip(ts, ts[load.limit :], strict=False)]
    if spans:
        result.jitter = load.limit * interval - min(spans)
    result.worst_window = max(windows, default=0)
    result.over = sum(1 for w in windows if w > load.limit)
    _utilisation(result, times)
    log(f"   {line(result)}")
    return result


def _utilisation(result: AccResult, times: dict[str, list[float]]) -> None:
    """Per account: arrivals from one period after its first to one period before its last,
    over what its limit allows there. Aggregate: all arrivals in the span where every account
    is at steady state (after the last account's first period, before the first account's
    last period), over the sum of the limits in that span."""
    load = result.load
    p, rate = load.period, load.limit / load.period
    per: list[float] = []
    for ts in times.values():
        if len(ts) < 2:
            per.append(0.0)
            continue
        a, b = ts[0] + p, ts[-1] - p
        if b - a >= p:
            got = bisect.bisect_right(ts, b) - bisect.bisect_left(ts, a)
            per.append(got / ((b - a) * rate))
    if per:
        result.per_account_min = min(per)
        result.per_account_median = statistics.median(per)
    firsts = [ts[0] for ts in times.values() if ts]
    lasts = [ts[-1] for ts in times.values() if ts]
    if len(firsts) < len(times):
        result.aggregate = 0.0
        return
    a, b = max(firsts) + p, min(lasts) - p
    result.steady_span = max(b - a, 0.0)
    if b - a < p:
        result.note += " (no common steady span of a period: campaigns too short)"
        return
    got = sum(bisect.bisect_right(ts, b) - bisect.bisect_left(ts, a) for ts in times.values())
    result.aggregate_rate = got / (b - a)
    result.aggregate = result.aggregate_rate / load.sum_of_limits


def _wait_ready(pool: WorkerPool, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool.grep("ready.") >= len(pool.alive()):
            return
        time.sleep(0.2)
    raise RuntimeError("the workers did not start in time")


def line(r: AccResult) -> str:
    return (
        f"{r.load.label}: aggregate {r.aggregate:.1%} of the sum of the limits "
        f"({r.aggregate_rate:.1f}/s of {r.load.sum_of_limits:.1f}/s over {r.steady_span:.0f} s), "
        f"per account min {r.per_account_min:.1%} median {r.per_account_median:.1%}, "
        f"worst window {r.worst_window}/{r.load.limit} ({r.over} over), "
        f"{r.rate_limited} x 429 ({r.accounts_429} accounts), {r.duplicates} dup; "
        f"CPU redis {r.redis_cpu:.2f} workers {r.workers_cpu:.2f} bench {r.bench_cpu:.2f}; "
        f"{r.commands_per_call:.1f} commands/call; {r.fed_late} late for their permit; "
        f"closest arrivals {r.min_gap_ratio:.2f} x the interval, jitter {r.jitter:.3f} s "
        f"(margin {r.margin:.3f} s); {r.threads} threads/worker, {r.copies} copies; "
        f"{r.placed} placed in {r.elapsed:.0f} s"
        f"{r.note}"
    )


# --- the feed's pass against campaigns due and idle ----------------------------------------------


@dataclass
class PassCost:
    idle: int
    due: int  # accounts (one campaign each) due in the measured pass
    seconds: float  # wall time of the pass (median of the repeats)
    commands: float  # Redis commands of the pass (median)
    sweep_seconds: float
    sweep_commands: float


def in_process_feeder(settings: Settings, ledger: Ledger) -> Feeder:
    """A feeder as a worker builds one (callq.worker.runtime), every account included."""

    def account(name: str) -> DialAccount:
        s = settings.for_account(name)
        limiter = Limiter.for_settings(
            ledger.redis, ledger.keys, s, scripts=ledger.scripts, name=name
        )
        return DialAccount(name, s, ExotelClient(s, make_session()), limiter, None)

    default = account("default")
    dialer = Dialer(
        settings,
        ledger,
        default.limiter,
        default.client,
        RetryPolicy.for_settings(settings),
        accounts={n: account(n) for n in settings.exotel_accounts},
    )
    return Feeder(ledger, settings, dialer, make_app(settings))


def pass_cost(
    target: BenchRedis,
    idle_counts: Sequence[int] = (10, 1000),
    due_counts: Sequence[int] = (0, 10, 50),
    repeats: int = 5,
    log: Callable[[str], None] = print,
) -> list[PassCost]:
    """For each idle count: that many campaigns with a parked call waiting for their send_at
    (a wake entry an hour ahead), then passes with ``due`` accounts each made due by a
    campaign of a few calls joining now. Commands counted by the private server."""
    out: list[PassCost] = []
    accounts = max(due_counts)
    for idle in idle_counts:
        prefix = target.new_prefix("pass")
        settings = many_settings(
            target, prefix, accounts, 10_000, 1.0, "http://127.0.0.1:9", speed=12.0
        )
        ledger = Ledger(make_redis(settings.require_redis_url()), Keys(prefix))
        feeder = in_process_feeder(settings, ledger)
        sweeper = Sweeper(ledger, settings, requeue=lambda _rid: None)
        enq = Enqueuer(settings)
        later = CampaignOptions(send_at=datetime.now(UTC) + timedelta(hours=1))
        try:
            for i in range(idle):
                enq.enqueue_file(io.BytesIO(campaign_csv(1, 5000 + i)), f"idle{i}", options=later)
            while feeder.run_once().next_in == 0.0:  # judged once: they wait for send_at
                pass
            for due in due_counts:
                samples: list[tuple[float, int, float, int]] = []
                for rep in range(repeats):
                    for i in range(due):
                        enq.enqueue_file(
                            io.BytesIO(campaign_csv(3, 100 * rep + i)),
                            f"due{due}-{rep}-{i}",
                            options=CampaignOptions(account=account_name(i)),
                        )
                    s0 = RedisSnap.take(target.admin)
                    t0 = time.perf_counter()
                    feeder.run_once()
                    t1 = time.perf_counter()
                    s1 = RedisSnap.take(target.admin)
                    sweeper.sweep_once()
                    t2 = time.perf_counter()
                    s2 = RedisSnap.take(target.admin)
                    # Each INFO is itself one command: not the pass's.
                    fc = sum(s1.minus(s0)[1].values()) - 1
                    sc = sum(s2.minus(s1)[1].values()) - 1
                    samples.append((t1 - t0, fc, t2 - t1, sc))
                    while feeder.run_once().next_in == 0.0:  # settle before the next repeat
                        pass
                    ledger.redis.delete(f"{settings.broker_key_prefix}calls")
                out.append(
                    PassCost(
                        idle,
                        due,
                        statistics.median(s[0] for s in samples),
                        statistics.median(s[1] for s in samples),
                        statistics.median(s[2] for s in samples),
                        statistics.median(s[3] for s in samples),
                    )
                )
                c = out[-1]
                log(
                    f"   pass: {idle} idle, {due} due: {c.commands:.0f} commands, "
                    f"{1000 * c.seconds:.1f} ms; sweep {c.sweep_commands:.0f} commands, "
                    f"{1000 * c.sweep_seconds:.1f} ms"
                )
        finally:
            ledger.redis.close()
            target.drop(prefix)
    return out


# --- limiter permits per second from one Redis (diagnostic) ---------------------------------------


@dataclass
class PermitRate:
    threads: int
    batch: int  # permits per reservation (1: a call's own; 10: a feed pass)
    permits_per_second: float
    redis_cpu: float  # cores


def permit_rate(
    target: BenchRedis,
    accounts: int = 200,
    threads: Sequence[int] = (8, 32),
    batches: Sequence[int] = (1, 10),
    seconds: float = 2.0,
    log: Callable[[str], None] = print,
) -> list[PermitRate]:
    prefix = target.new_prefix("perm")
    client = make_redis(target.url, max_connections=max(threads) + 4)
    keys = Keys(prefix)
    limiters = [
        Limiter(client, keys, f"perm-{i}", calls=10**9, period=1.0, max_ahead=1.0)
        for i in range(accounts)
    ]
    out: list[PermitRate] = []
    try:
        for batch in batches:
            for t in threads:
                stop = threading.Event()
                counts = [0] * t

                def drive(
                    k: int,
                    batch: int = batch,
                    counts: list[int] = counts,
                    stop: threading.Event = stop,
                    step: int = t,
                ) -> None:
                    i = k
                    while not stop.is_set():
                        counts[k] += limiters[i % accounts].reserve(count=batch).count
                        i += step

                s0 = RedisSnap.take(target.admin)
                pool = [threading.Thread(target=drive, args=(k,)) for k in range(t)]
                began = time.perf_counter()
                for th in pool:
                    th.start()
                time.sleep(seconds)
                stop.set()
                for th in pool:
                    th.join()
                took = time.perf_counter() - began
                cpu, _ = RedisSnap.take(target.admin).minus(s0)
                out.append(PermitRate(t, batch, sum(counts) / took, cpu / took))
                log(
                    f"   permits: {t} threads, {batch} per reservation: "
                    f"{out[-1].permits_per_second:,.0f}/s, Redis {out[-1].redis_cpu:.2f} cores"
                )
    finally:
        client.close()
        target.drop(prefix)
    return out


# --- the section --------------------------------------------------------------------------------


@dataclass
class AccountsReport:
    runs: list[AccResult]
    passes: list[PassCost]
    permits: list[PermitRate]
    load_before: str = ""
    load_after: str = ""


def run_all(
    loads: Sequence[AccLoad], log: Callable[[str], None] = print, *, quick: bool = False
) -> AccountsReport:
    load_before = _load()
    with private_redis() as target:
        runs = [run(target, load, log) for load in loads]
        passes = pass_cost(
            target,
            idle_counts=(10, 200) if quick else (10, 1000),
            repeats=3 if quick else 5,
            log=log,
        )
        permits = permit_rate(target, seconds=0.5 if quick else 2.0, log=log)
    return AccountsReport(runs, passes, permits, load_before, _load())


def loads(quick: bool = False) -> list[AccLoad]:
    """``make bench``'s runs: 10 per 5 s each at 10, 50 and 200 accounts (400/s in all at
    200: past what two shared cores carry), 200 accounts at 5 per 20 s, a rate they do, and
    the same with every account's permits at one instant (a what-if: the jitter's worst
    case)."""
    if quick:
        return [AccLoad(10, periods=4.0)]
    return [
        AccLoad(10),
        AccLoad(50),
        AccLoad(200),
        AccLoad(200, limit=5, period=20.0, periods=4.0),
        # what-if: every account's permits at the same instant, the simulator's worst case
        AccLoad(200, limit=5, period=20.0, periods=4.0, aligned=True),
    ]


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _at_load(r: AccResult) -> str:
    return f"; load average {r.load_avg}" if r.load_avg else ""


def goal_rows(rep: AccountsReport) -> list[list[str]]:
    """[goal, measured, verdict] for each run (also in the goals at a glance)."""
    rows = []
    for r in rep.runs:
        ok = r.over == 0 and r.rate_limited == 0 and r.duplicates == 0
        rows.append(
            [
                f"Many accounts, {r.load.label}: every account within its limit, 0 x 429",
                f"worst window {r.worst_window}/{r.load.limit}, {r.rate_limited} x 429 "
                f"({r.accounts_429} accounts), {r.duplicates} dialled twice{_at_load(r)}",
                "**met**" if ok else "**missed**",
            ]
        )
        gap = GOAL_AGGREGATE - r.aggregate
        rows.append(
            [
                f"Many accounts, {r.load.label}: aggregate >= 95 % of the sum of the limits",
                f"{r.aggregate:.1%} ({r.aggregate_rate:.1f}/s of {r.load.sum_of_limits:.0f}/s)"
                f"{_at_load(r)}",
                "**met**" if gap <= 0 else f"**missed** by {100 * gap:.1f} points",
            ]
        )
    return rows


def worker_ms_per_call(r: AccResult) -> float:
    """Milliseconds of worker CPU per placed call."""
    return 1000 * r.workers_cpu * r.elapsed / r.placed if r.placed else float("nan")


def render(rep: AccountsReport) -> list[str]:
    out = [
        "## 9. Many accounts at once",
        "",
        "Each account has its own time-scaled limit (the same at the simulator and in "
        "`EXOTEL_ACCOUNTS`) and one campaign of its own (`--account`) of `limit x periods` "
        "calls (6 periods; 4 at 20 s); "
        "the producer enqueues them all, to start together (`send_at`), spread over one "
        "interval (account i starts i/n of it later; `starts aligned`: all at one instant), "
        "the workers' feeders hand each "
        "account's permits to its campaign, real Celery workers (threads pool) dial them "
        "against the simulator (seed latency profile, 12x faster), and the simulator keeps "
        "each account's strict window. Settings: the shipped defaults 12 times faster "
        "(`config.time_scaled`), with two choices of the bench's own: the threads per "
        "worker are what the load needs (`AccLoad.threads`: each account has at most "
        "`ceil(hold / interval)` calls in hand, `hold` the feed's lead plus the simulator's "
        "p95 reply; at the shipped 16 the fed messages outwaited their overdue guard and "
        "the sweeper published a copy of nearly every call), and the margin is at least "
        f"{MARGIN_FLOOR:g} s (`MARGIN_FLOOR`: the scaled 0.1 s is below this machine's "
        "jitter). Everything runs on a private `redis-server` "
        "(no persistence), so its `INFO cpu` and `INFO commandstats` deltas are this run's "
        "alone. Per-account utilisation counts from one period after that account's first "
        "arrival to one before its last; the aggregate counts every arrival in the span where "
        "all accounts are at steady state, against the sum of the limits (the ceiling is "
        f"`period / (period + margin)`, {5 / (5 + MARGIN_FLOOR):.1%} at 5 s with the "
        f"{MARGIN_FLOOR:g} s margin). CPU is in cores "
        "(CPU-seconds per second of the run), over the whole run from the first enqueue; "
        "`bench` is this process: the producer and the simulator; per call, over the "
        "calls placed. `jitter`: how much closer than the limiter spaces them `limit + 1` "
        "arrivals of one account came, at most (seconds); a window goes over exactly when "
        "it passes the margin (negative: no account dialled back to back at its limit). "
        "`copies`: tasks that found their call already placed (a copy the sweeper "
        "published). "
        f"Load average (1 / 5 / 15 min) before {rep.load_before}, after {rep.load_after}.",
        "",
        "| run | workers x threads | margin | sum of the limits | aggregate at steady state "
        "| per account min / median | worst window | 429s | dialled twice | jitter "
        "| CPU Redis / workers / bench | worker CPU per call | Redis commands per call "
        "| Redis CPU per call | copies |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rep.runs:
        out.append(
            f"| {r.load.label} | {r.load.workers} x {r.threads} | {r.margin:.2f} s "
            f"| {r.load.sum_of_limits:.0f}/s "
            f"| {r.aggregate:.1%} ({r.aggregate_rate:.1f}/s) "
            f"| {r.per_account_min:.1%} / {r.per_account_median:.1%} "
            f"| {r.worst_window} / {r.load.limit} | {r.rate_limited} | {r.duplicates} "
            f"| {r.jitter:.3f} s "
            f"| {r.redis_cpu:.2f} / {r.workers_cpu:.2f} / {r.bench_cpu:.2f} "
            f"| {worker_ms_per_call(r):.1f} ms "
            f"| {r.commands_per_call:.1f} | {r.redis_cpu_us_per_call:.0f} us "
            f"| {r.copies:,} |"
        )
    out.append("")
    for r in rep.runs:
        if r.note:
            out.append(f"- {r.load.label}: {r.note.strip()}")
    if rep.runs:
        big = max(rep.runs, key=lambda r: r.load.accounts)
        top = ", ".join(f"{k} {v / max(big.placed, 1):.1f}" for k, v in big.top_commands)
        out += ["", f"Commands per placed call at {big.load.label}, the most frequent: {top}.", ""]
    out += [
        "| goal | measured |  |",
        "|:--|:--|:--|",
        *(f"| {a} | {b} | {c} |" for a, b, c in goal_rows(rep)),
        "",
    ]
    if rep.passes:
        out += [
            "The feed's pass (in-process feeder, `Feeder.run_once`) and the lease sweeper's "
            "(`Sweeper.sweep_once`) against the campaigns idle (a parked call each, waiting "
            "an hour for its `send_at`) and the accounts due (each with a campaign of 3 "
            "calls that just joined): Redis commands of one pass as the server counts them "
            "(Lua's inner commands included), and its wall time; median of the repeats.",
            "",
            "| idle campaigns | accounts due | feed pass: commands | feed pass: ms "
            "| sweep pass: commands | sweep pass: ms |",
            "|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {c.idle:,} | {c.due} | {c.commands:.0f} | {1000 * c.seconds:.1f} "
                f"| {c.sweep_commands:.0f} | {1000 * c.sweep_seconds:.1f} |"
                for c in rep.passes
            ),
            "",
        ]
    if rep.permits:
        out += [
            "Limiter permits per second from one Redis (a diagnostic: `Limiter.reserve` in "
            "threads of this process over 200 accounts' keys, a limit so high that every "
            "reservation is granted; batch 10 is a feed pass's reservation):",
            "",
            "| threads | permits per reservation | permits/s | Redis CPU |",
            "|---:|---:|---:|---:|",
            *(
                f"| {p.threads} | {p.batch} | {p.permits_per_second:,.0f} | {p.redis_cpu:.2f} |"
                for p in rep.permits
            ),
            "",
        ]
    out += _one_redis(rep)
    return out


def _one_redis(rep: AccountsReport) -> list[str]:
    """Where one Redis stops, from this run's own figures."""
    costs = [r.redis_cpu_us_per_call for r in rep.runs if r.placed and r.elapsed > 0]
    workers = [r.workers_cpu / max(r.placed / r.elapsed, 1e-9) for r in rep.runs if r.placed]
    if not costs:
        return []
    per_call = statistics.median(costs)
    worker_ms = 1000 * statistics.median(workers)
    ceiling = 1e6 / per_call  # calls/s when Redis's one thread is busy all the time
    safe = ceiling / 2  # at half a core: room for bursts, the broker's polls and a replica
    prod = 200 / 60  # the production limit per account
    return [
        "**Where one Redis stops.** Redis runs commands on one thread, so its ceiling is one "
        f"core. Measured here, a placed call costs Redis {per_call:.0f} us of CPU (median of "
        f"the runs: about {statistics.median(r.commands_per_call for r in rep.runs):.0f} "
        "commands, the broker's included), so one core carries about "
        f"{ceiling:,.0f} calls/s, and half a core, where it should stay, {safe:,.0f} calls/s: "
        f"{safe / prod:,.0f} accounts at Exotel's 200 per minute. The limiter alone is far "
        "from that (the permits table). Before Redis, the workers run out: "
        f"{worker_ms:.1f} ms of worker CPU per call here, so {1000 / worker_ms:.0f} calls/s "
        "per worker core. Past one Redis the ledger must be spread over several masters, and "
        "that is a plan (docs/cluster.md): `LEDGER_REDIS_URL` already puts the ledger on a "
        "Redis of its own, apart from the broker (whose share of the commands then leaves it), "
        "or on a Redis Cluster, but in one hash slot per deployment (every key under "
        "`{KEY_PREFIX}`): one master carries it. The spread is a shard tag per campaign, "
        "with the global sets kept per shard; until it is built, more accounts than one "
        "Redis carries go to a second deployment (its own `KEY_PREFIX` or server and "
        "`EXOTEL_ACCOUNTS`).",
        "",
    ]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--accounts: a comma-separated list of numbers") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("--accounts: positive numbers")
    return counts


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__)
    p.add_argument(
        "--accounts",
        type=_counts,
        help="e.g. 10,50,200 (default: make bench's runs, bench.accounts.loads)",
    )
    p.add_argument("--limit", type=int, default=AccLoad.limit, help="per account, per period")
    p.add_argument("--period", type=float, default=AccLoad.period, help="seconds")
    p.add_argument("--periods", type=float, default=AccLoad.periods)
    p.add_argument("--workers", type=int, default=AccLoad.workers)
    p.add_argument("--margin", type=float, help="what-if: RATE_LIMIT_MARGIN_SECONDS")
    p.add_argument("--quick", action="store_true", help="smaller runs: a smoke test")
    p.add_argument(
        "--no-backpressure", action="store_true", help="what-if: FEED_BACKPRESSURE=false"
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    if args.limit < 1 or not args.period > 0 or args.workers < 1:
        p.error("--limit, --period and --workers must be positive")
    loads_ = (
        [
            AccLoad(
                n,
                args.limit,
                args.period,
                args.periods,
                args.workers,
                margin=args.margin,
                backpressure=not args.no_backpressure,
            )
            for n in args.accounts
        ]
        if args.accounts
        else loads(args.quick)
    )
    rep = run_all(loads_, quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(rep), indent=1), encoding="utf-8")
    print("\n".join(render(rep)))


def from_json(path: Path) -> AccountsReport:
    """A report written with ``--json`` (to render it again)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    runs = []
    for r in data["runs"]:
        r["load"] = AccLoad(**r["load"])
        r["top_commands"] = [tuple(x) for x in r["top_commands"]]
        runs.append(AccResult(**r))
    return AccountsReport(
        runs,
        [PassCost(**c) for c in data["passes"]],
        [PermitRate(**p) for p in data["permits"]],
        data["load_before"],
        data["load_after"],
    )


if __name__ == "__main__":
    main()
