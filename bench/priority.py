"""Priority latency: how long a priority call waits while a campaign saturates the limit.

A campaign of ``campaign_calls`` calls saturates a time-scaled limit (``limit`` per
``period`` s) through real workers (``celery -A worker worker -Q calls``, threads pool)
against the simulator with its seed latency profile. Once it is saturating, one priority call
(``enqueue --priority``: the `calls.priority` queue, and a reservation past the horizon) and
one ordinary call (a small campaign of its own, the `calls` queue) are enqueued together,
every ``every`` seconds, ``probes`` times. Latency is ``sent_at - created_at`` of each probe
call, both on the Redis clock: from the moment its record was written to the moment its
request was marked sent. The goal is a priority call out within 1 s (issue 12; it was 2 s).
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from bench.env import BenchRedis
from bench.throughput import campaign_csv
from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.workers import WorkerPool
from simulator import Account, SimConfig, Simulator

SID, KEY, TOKEN = "bench-prio", "bench-prio-key", "bench-prio-token"
GOAL_SECONDS = 1.0


@dataclass
class PrioLoad:
    campaign_calls: int = 1500
    limit: int = 100
    period: float = 5.0
    probes: int = 20
    every: float = 1.5
    workers: int = 2
    concurrency: int = 8
    time_scale: float = 0.2
    speed: float = 12.0  # the shipped defaults this many times faster (config.time_scaled)


@dataclass
class PrioResult:
    load: PrioLoad
    priority: list[float] = field(default_factory=list)  # seconds, one per probe
    ordinary: list[float] = field(default_factory=list)
    backlog_at_probes: list[int] = field(default_factory=list)  # campaign calls still waiting
    max_in_window: int = 0
    rate_limited: int = 0
    duplicates: int = 0
    note: str = ""

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float]:
        return {
            "priority_p50": self.pct(self.priority, 0.5),
            "priority_p99": self.pct(self.priority, 0.99),
            "priority_max": max(self.priority, default=float("nan")),
            "ordinary_p50": self.pct(self.ordinary, 0.5),
            "ordinary_p99": self.pct(self.ordinary, 0.99),
        }


def _latency(ledger: Ledger, rid: str) -> float | None:
    rec = ledger.get(rid)
    if "sent_at" not in rec:
        return None
    return (int(rec["sent_at"]) - int(rec["created_at"])) / 1000


def run(target: BenchRedis, load: PrioLoad, log: Callable[[str], None]) -> PrioResult:
    result = PrioResult(load)
    prefix = target.new_prefix("prio")
    account = Account(SID, KEY, TOKEN, rate_limit=load.limit, period=load.period)
    config = SimConfig(
        accounts=[account], latency=True, time_scale=load.time_scale, callbacks=False, seed=11
    )
    with Simulator(config) as sim, tempfile.TemporaryDirectory(prefix="bench-prio-") as tmp:
        settings = target.settings(
            prefix,
            speed=load.speed,
            exotel_account_sid=SID,
            exotel_api_key=SecretStr(KEY),
            exotel_api_token=SecretStr(TOKEN),
            exotel_base_url=sim.url,
            exotel_caller_id="08030752400",
            rate_limit_calls=load.limit,
            rate_limit_period_seconds=load.period,
            worker_concurrency=load.concurrency,
        )
        ledger = Ledger(make_redis(settings.require_redis_url()), Keys(prefix))
        enq = Enqueuer(settings)
        enq.enqueue_file(io.BytesIO(campaign_csv(load.campaign_calls, start=0)), "bulk")
        pool = WorkerPool(settings, Path(tmp), concurrency=load.concurrency)
        try:
            pool.start(load.workers)
            deadline = time.monotonic() + 60
            while ledger.status("bulk").states["originated"] < load.limit // 2:
                if time.monotonic() > deadline:
                    result.note = "the campaign never started; see the worker logs"
                    return result
                time.sleep(0.2)
            probes: list[tuple[str, str]] = []
            for i in range(load.probes):
                base = 100_000 + 2 * i
                enq.enqueue_file(
                    io.BytesIO(campaign_csv(1, start=base)),
                    f"prio-{i}",
                    options=CampaignOptions(priority=True),
                )
                enq.enqueue_file(io.BytesIO(campaign_csv(1, start=base + 1)), f"ord-{i}")
                (p,) = ledger.iter_request_ids(f"prio-{i}")
                (o,) = ledger.iter_request_ids(f"ord-{i}")
                probes.append((p, o))
                st = ledger.status("bulk").states
                result.backlog_at_probes.append(st["queued"] + st["retrying"] + st["dialing"])
                time.sleep(load.every)
            log(f"   {load.probes} probes sent; waiting for them to go out")
            deadline = time.monotonic() + 120
            pending = list(probes)
            while pending and time.monotonic() < deadline:
                time.sleep(0.5)
                pending = [
                    (p, o)
                    for p, o in pending
                    if _latency(ledger, p) is None or _latency(ledger, o) is None
                ]
            for p, o in probes:
                lp, lo = _latency(ledger, p), _latency(ledger, o)
                if lp is not None:
                    result.priority.append(lp)
                if lo is not None:
                    result.ordinary.append(lo)
            if pending:
                result.note = f"{len(pending)} probe pairs had not gone out after 120 s"
            truth = sim.truth()
            result.max_in_window = int(truth["max_in_window"].get(SID, 0))
            result.rate_limited = int(truth["rate_limited"])
            result.duplicates = sum(1 for n in truth["by_custom_field"].values() if n > 1)
        finally:
            pool.stop()
            target.drop(prefix)
    s = result.summary()
    log(
        f"   priority p50 {s['priority_p50']:.2f} s, p99 {s['priority_p99']:.2f} s; "
        f"ordinary p50 {s['ordinary_p50']:.2f} s; max in window {result.max_in_window}/"
        f"{load.limit}, 429s {result.rate_limited}"
    )
    return result


def render(result: PrioResult) -> list[str]:
    """The report section (markdown lines)."""
    load = result.load
    s = result.summary()
    met = s["priority_p99"] <= GOAL_SECONDS
    lines = [
        "## 6. Priority latency during a saturating campaign",
        "",
        f"A campaign of {load.campaign_calls:,} calls saturates {load.limit} per "
        f"{load.period:g} s ({load.limit / load.period:g}/s) through {load.workers} real "
        f"workers x {load.concurrency} threads, the simulator's seed latency at time_scale "
        f"{load.time_scale:g}. Every {load.every:g} s, {load.probes} times, one priority call "
        "(`--priority`: the `calls.priority` queue, and a permit reserved past the horizon) "
        "and one ordinary call (a one-call campaign of its own on `calls`) are enqueued "
        "together. Latency is `sent_at - created_at` of the call's record, both on the Redis "
        f"clock. Settings: the shipped defaults {load.speed:g} times faster "
        "(`config.time_scaled`), so the feed's lead is 0.5 s and the horizon 1 s.",
        "",
        "| lane | p50 | p99 | max | calls |",
        "|:--|--:|--:|--:|--:|",
        f"| priority | {s['priority_p50']:.2f} s | {s['priority_p99']:.2f} s | "
        f"{s['priority_max']:.2f} s | {len(result.priority)} |",
        f"| ordinary | {s['ordinary_p50']:.2f} s | {s['ordinary_p99']:.2f} s | "
        f"{max(result.ordinary, default=float('nan')):.2f} s | {len(result.ordinary)} |",
        "",
        f"Campaign calls still waiting when the probes were sent: "
        f"{min(result.backlog_at_probes, default=0):,} to "
        f"{max(result.backlog_at_probes, default=0):,}. At the simulator: at most "
        f"{result.max_in_window} requests in any {load.period:g} s window against a limit of "
        f"{load.limit}, {result.rate_limited} x 429, {result.duplicates} calls placed twice.",
        "",
        f"Goal: a priority call out within {GOAL_SECONDS:g} s (p99). "
        + (
            f"**Met**: p99 {s['priority_p99']:.2f} s."
            if met
            else f"**Missed** by {s['priority_p99'] - GOAL_SECONDS:.2f} s at p99."
        ),
        "",
        "The ordinary call is a campaign of its own: it is parked at enqueue, the nudge "
        "wakes a feeder, and the campaign joins the account's feed at the lowest virtual "
        "time, so it gets the next permit the feed hands out, behind the permits already "
        "handed out within the lead. The priority call does not wait for the feed: its "
        "message goes straight onto `calls.priority`, which workers poll first, and it may "
        "reserve past the lead while the feed never does, so its wait is bounded by the lead "
        "plus one interval, plus the time until a worker thread takes its message.",
    ]
    if result.note:
        lines += ["", f"Note: {result.note}"]
    return lines
