"""Producer throughput: ``Enqueuer.enqueue_file`` against a plain ``send_task`` loop.

Both sides publish the same number of ``place_call`` tasks with the same Celery config
(``callq.transport.config.make_app``), each on a fresh ledger and broker key prefix. Only the
enqueue or the loop is timed: building the CSV, the app and the request ids is not. Runs alternate
(enqueue, loop, enqueue, loop ...) so that a noisy neighbour hurts both alike.

Diagnostics (reported apart, and never in place of the measurement):

* stages: parse only, ledger only, publish only (``send_task`` in a batch, as the first
  ``Enqueuer`` did);
* what-ifs: the publish with ``task_send_sent_event`` off, and a raw kombu publish of the
  message ``app.amqp.as_task_v2`` builds (the floor under ``send_task``);
* a cProfile of one ``enqueue_file`` run: where the time goes.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import re
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bench.env import BenchRedis
from bench.markdown import nbytes, table, thousands, us_per
from bench.parse import bench_parse
from bench.trips import RoundTrips
from callq.intake.csvread import read_rows
from callq.intake.enqueue import Enqueuer
from callq.intake.request import CallRequest, request_id
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.transport.config import make_app
from callq.transport.queues import CALLS_QUEUE, PLACE_CALL

CAMPAIGN = "bench"
BATCH = 1000  # Enqueuer's default batch size
GOAL_RATE = 10_000  # calls/s through enqueue_file (issue 8)
GOAL_RATIO = 9.0  # times the plain send_task loop


def campaign_csv(n: int, start: int = 0) -> bytes:
    """``n`` good rows in the shape of tests/campaigns.campaign_csv: E.164 From and To."""
    lines = ["From,To,CallerId,Url,CustomField,TimeLimit,TimeOut"]
    lines.extend(
        f"+9198{i:08d},+9197{i:08d},08030752400,,order-{i},600,30" for i in range(start, start + n)
    )
    return ("\n".join(lines) + "\n").encode()


def request_ids(n: int) -> list[str]:
    """Request ids shaped like the Enqueuer's (``{campaign}:{20 hex}``), for the loop."""
    return [request_id(CAMPAIGN, f"loop-{i}") for i in range(n)]


@dataclass
class Memory:
    """Redis memory after ``calls`` calls were queued (before any worker took one)."""

    calls: int
    info_delta: int  # INFO memory used_memory after - before
    ledger_bytes: int  # MEMORY USAGE of the ledger keys (call hashes, campaign list ...)
    broker_bytes: int  # MEMORY USAGE of kombu's keys (the queue list of messages ...)

    @property
    def per_call_info(self) -> float:
        return self.info_delta / self.calls

    @property
    def per_call_keys(self) -> float:
        return (self.ledger_bytes + self.broker_bytes) / self.calls


@dataclass
class SizeResult:
    size: int
    enqueue_s: list[float] = field(default_factory=list)
    loop_s: list[float] = field(default_factory=list)
    enqueue_mem: Memory | None = None
    loop_mem: Memory | None = None

    @property
    def enqueue_rate(self) -> float:
        return self.size / statistics.median(self.enqueue_s)

    @property
    def loop_rate(self) -> float:
        return self.size / statistics.median(self.loop_s)

    @property
    def ratio(self) -> float:
        return self.enqueue_rate / self.loop_rate

    @property
    def spread(self) -> tuple[float, float]:
        """(lowest, highest) enqueue/loop ratio over the paired runs."""
        pairs = [
            (self.size / e) / (self.size / lo)
            for e, lo in zip(self.enqueue_s, self.loop_s, strict=False)
        ]
        return min(pairs), max(pairs)


@dataclass
class Stage:
    name: str
    calls: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass
class ProfileLine:
    where: str
    calls: str
    own: float
    cumulative: float


@dataclass
class ProducerReport:
    sizes: list[SizeResult]
    dropped: str  # why a size was reduced, or ""
    parse_rows: int
    parse_rate: float
    stages: list[Stage]
    profile_calls: int
    profile_seconds: float
    profile_own: list[ProfileLine]
    profile_cumulative: list[ProfileLine]
    trips_calls: int = 0
    trips_enqueue: int = 0  # Redis round trips for trips_calls calls, all included
    trips_loop: int = 0


# ------------------------------------------------------------------------------------------
# One run of each side


def _memory(target: BenchRedis, prefix: str, calls: int, before: int) -> Memory:
    after = target.used_memory()
    ledger = broker = 0
    pipe = target.admin.pipeline(transaction=False)
    names: list[str] = []

    def flush() -> tuple[int, int]:
        got = pipe.execute()
        led = brk = 0
        for name, size in zip(names, got, strict=True):
            if name.startswith(f"{prefix}."):
                brk += int(size or 0)
            else:
                led += int(size or 0)
        names.clear()
        return led, brk

    for key in target.own_keys(prefix):
        pipe.memory_usage(key, samples=0)
        names.append(key)
        if len(names) >= 1000:
            a, b = flush()
            ledger += a
            broker += b
    if names:
        a, b = flush()
        ledger += a
        broker += b
    return Memory(calls, after - before, ledger, broker)


def run_enqueue(
    target: BenchRedis,
    size: int,
    *,
    measure_memory: bool = False,
    trips: RoundTrips | None = None,
) -> tuple[float, Memory | None]:
    prefix = target.new_prefix(f"e{size}")
    settings = target.settings(prefix)
    data = campaign_csv(size)
    enqueuer = Enqueuer(settings)
    before = target.used_memory() if measure_memory else 0
    with trips or contextlib.nullcontext():
        started = time.perf_counter()
        result = enqueuer.enqueue_file(io.BytesIO(data), CAMPAIGN)
        elapsed = time.perf_counter() - started
    if result.accepted != size:
        raise RuntimeError(
            f"enqueue accepted {result.accepted} of {size} "
            f"(rejected {len(result.rejected)}, existing {result.existing})"
        )
    parked = target.admin.zcard(Keys(prefix).campaign_parked(CAMPAIGN))
    if parked != size:
        raise RuntimeError(f"enqueue: {parked} calls parked for the workers, not {size}")
    memory = _memory(target, prefix, size, before) if measure_memory else None
    enqueuer.ledger.redis.close()
    target.drop(prefix)
    return elapsed, memory


def run_loop(
    target: BenchRedis,
    size: int,
    *,
    measure_memory: bool = False,
    trips: RoundTrips | None = None,
) -> tuple[float, Memory | None]:
    prefix = target.new_prefix(f"l{size}")
    app = make_app(target.settings(prefix))
    rids = request_ids(size)
    before = target.used_memory() if measure_memory else 0
    with trips or contextlib.nullcontext():
        started = time.perf_counter()
        for rid in rids:
            app.send_task(PLACE_CALL, args=(rid,), queue=CALLS_QUEUE)
        elapsed = time.perf_counter() - started
    queued = target.admin.llen(f"{prefix}.{CALLS_QUEUE}")
    if queued != size:
        raise RuntimeError(f"loop: {queued} messages in the broker queue, not {size}")
    memory = _memory(target, prefix, size, before) if measure_memory else None
    app.close()
    target.drop(prefix)
    return elapsed, memory


# ------------------------------------------------------------------------------------------
# Stages and what-ifs


def _parsed(size: int) -> list[CallRequest]:
    return [r for r in read_rows(io.BytesIO(campaign_csv(size))) if isinstance(r, CallRequest)]


def stage_ledger(target: BenchRedis, size: int) -> Stage:
    """What Enqueuer does besides parsing and publishing: request ids, records, the ledger."""
    prefix = target.new_prefix(f"s{size}")
    calls = _parsed(size)
    client = make_redis(target.url)
    ledger = Ledger(client, Keys(prefix))
    started = time.perf_counter()
    for i in range(0, size, BATCH):
        records = [(request_id(CAMPAIGN, c.row_key()), c.to_record()) for c in calls[i : i + BATCH]]
        ledger.enqueue_many(CAMPAIGN, records)
    elapsed = time.perf_counter() - started
    client.close()
    target.drop(prefix)
    return Stage("ledger only: request id + record + Ledger.enqueue_many", size, elapsed)


def _publish(target: BenchRedis, size: int, tag: str, sent_event: bool, raw: bool) -> float:
    prefix = target.new_prefix(tag)
    app = make_app(target.settings(prefix))
    app.conf.task_send_sent_event = sent_event
    rids = request_ids(size)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        if raw:
            producer.maybe_declare(app.amqp.queues[CALLS_QUEUE])
        for i in range(0, size, BATCH):
            chunk = rids[i : i + BATCH]
            with producer.batch(max_size=len(chunk) + 1):
                for rid in chunk:
                    if raw:
                        msg = app.amqp.as_task_v2(str(uuid.uuid4()), PLACE_CALL, args=(rid,))
                        producer.publish(
                            msg.body,
                            exchange="",  # what send_task does for a named queue
                            routing_key=CALLS_QUEUE,
                            headers=msg.headers,
                            serializer="json",
                            declare=None,
                            retry=False,
                            **msg.properties,
                        )
                    else:
                        app.send_task(PLACE_CALL, args=(rid,), queue=CALLS_QUEUE, producer=producer)
    elapsed = time.perf_counter() - started
    queued = target.admin.llen(f"{prefix}.{CALLS_QUEUE}")
    if queued != size:
        raise RuntimeError(f"publish ({tag}): {queued} messages queued, not {size}")
    app.close()
    target.drop(prefix)
    return elapsed


def stages(target: BenchRedis, size: int, parse_rate: float) -> list[Stage]:
    out = [
        Stage("parse only: read_rows (bench_parse)", size, size / parse_rate),
        stage_ledger(target, size),
        Stage(
            "publish only: send_task in Producer.batch (the first Enqueuer)",
            size,
            _publish(target, size, f"p{size}", sent_event=True, raw=False),
        ),
        Stage(
            "what-if: the same publish, task_send_sent_event off",
            size,
            _publish(target, size, f"q{size}", sent_event=False, raw=False),
            "not the shipped config",
        ),
        Stage(
            "what-if: kombu Producer.publish of as_task_v2 messages, batched",
            size,
            _publish(target, size, f"r{size}", sent_event=False, raw=True),
            "bypasses send_task; no sent event",
        ),
    ]
    return out


# ------------------------------------------------------------------------------------------
# Profile


_STDLIB = re.compile(r"^.*/lib/python3\.\d+/")


def _where(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    if "/site-packages/" in filename:
        short = filename.rsplit("/site-packages/", 1)[1]
    elif _STDLIB.match(filename):
        short = _STDLIB.sub("", filename)
    else:
        short = filename.rsplit("/main/", 1)[-1]
    return f"{short}:{line}({func})"


def profile_enqueue(
    target: BenchRedis, size: int, top: int = 5
) -> tuple[float, list[ProfileLine], list[ProfileLine]]:
    """cProfile one ``enqueue_file``: the top functions by own time and by cumulative time."""
    prefix = target.new_prefix(f"f{size}")
    enqueuer = Enqueuer(target.settings(prefix))
    data = campaign_csv(size)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    enqueuer.enqueue_file(io.BytesIO(data), CAMPAIGN)
    profiler.disable()
    elapsed = time.perf_counter() - started
    enqueuer.ledger.redis.close()
    target.drop(prefix)

    stats = pstats.Stats(profiler)
    raw = cast(dict[tuple[str, int, str], tuple[int, int, float, float, Any]], stats.stats)  # type: ignore[attr-defined]
    rows = [
        ProfileLine(
            _where(key),
            str(nc) if nc == cc else f"{nc}/{cc}",
            own,
            cum,
        )
        for key, (cc, nc, own, cum, _) in raw.items()
    ]
    own_top = sorted(rows, key=lambda r: r.own, reverse=True)[:top]
    skip = ("(enqueue_file)", "(enqueue)", "(good_rows)", "disable' of", "(_batches)")
    cumulative = [r for r in rows if not any(s in r.where for s in skip)]
    cum_top = sorted(cumulative, key=lambda r: r.cumulative, reverse=True)[: top + 3]
    return elapsed, own_top, cum_top


# ------------------------------------------------------------------------------------------
# The whole producer benchmark


def run(
    target: BenchRedis,
    sizes: list[int],
    *,
    repeats: int,
    parse_rows: int,
    stage_size: int,
    budget_s: float,
    log: Callable[[str], None],
) -> ProducerReport:
    # Warm-up (imports, first connections, script loads): not reported.
    run_enqueue(target, 100)
    run_loop(target, 100)

    results: list[SizeResult] = []
    dropped = ""
    spent = 0.0
    for wanted in sizes:
        size = wanted
        if results:
            # Project this size from the last one; shrink it if it would blow the budget.
            last = results[-1]
            per_call = 1 / last.enqueue_rate + 1 / last.loop_rate
            projected = per_call * wanted
            if spent + projected > budget_s:
                fit = int((budget_s - spent) / per_call) // 1000 * 1000
                if fit <= last.size:
                    dropped = f"{wanted:,} calls skipped: projected {projected:.0f} s, over budget"
                    log(dropped)
                    break
                dropped = (
                    f"{wanted:,} calls reduced to {fit:,}: the pair was projected to take "
                    f"{projected:.0f} s, over the {budget_s:.0f} s budget"
                )
                log(dropped)
                size = fit
        # Small sizes are noisier and cheap: more runs of them.
        n = min(repeats, 3 if size <= 1_000 else 2 if size <= 10_000 else 1)
        res = SizeResult(size)
        for i in range(n):
            e, em = run_enqueue(target, size, measure_memory=i == 0)
            lo, lm = run_loop(target, size, measure_memory=i == 0)
            res.enqueue_s.append(e)
            res.loop_s.append(lo)
            spent += e + lo
            if i == 0:
                res.enqueue_mem, res.loop_mem = em, lm
            log(
                f"  {size:>7,} calls: enqueue {size / e:>8,.0f}/s  loop {size / lo:>7,.0f}/s  "
                f"ratio {lo / e:.2f}x"
            )
        results.append(res)

    log("parse only (bench_parse) ...")
    parse_rate = bench_parse(parse_rows)
    log(f"  {parse_rate:,.0f} rows/s")
    log("stages and what-ifs ...")
    stage_list = stages(target, stage_size, parse_rate)
    for st in stage_list:
        log(f"  {st.rate:>9,.0f}/s  {st.name}")
    log("round trips ...")
    trips_calls = min(stage_size, 1000)
    t_enqueue, t_loop = RoundTrips(), RoundTrips()
    run_enqueue(target, trips_calls, trips=t_enqueue)
    run_loop(target, trips_calls, trips=t_loop)
    log(
        f"  {trips_calls} calls: enqueue {t_enqueue.count} round trips, "
        f"loop {t_loop.count} round trips"
    )
    log("profile ...")
    prof_s, own, cum = profile_enqueue(target, stage_size)
    return ProducerReport(
        sizes=results,
        dropped=dropped,
        parse_rows=parse_rows,
        parse_rate=parse_rate,
        stages=stage_list,
        profile_calls=stage_size,
        profile_seconds=prof_s,
        profile_own=own,
        profile_cumulative=cum,
        trips_calls=trips_calls,
        trips_enqueue=t_enqueue.count,
        trips_loop=t_loop.count,
    )


# ------------------------------------------------------------------------------------------
# The report section (docs/benchmarks.md)


def render(p: ProducerReport) -> list[str]:
    """Section 1 of docs/benchmarks.md: producer throughput (markdown lines)."""
    out = [
        "## 1. Producer throughput",
        "",
        "`Enqueuer(settings).enqueue_file(io.BytesIO(csv), campaign)` (read and validate "
        "every row, then write each record and park it in its campaign, one script call per "
        "250 calls, one round trip per 1,000) against a plain loop of "
        "`app.send_task(PLACE_CALL, args=(rid,), queue=CALLS_QUEUE)` for the same number of "
        "calls. Each run has fresh ledger and broker key prefixes; runs alternate enqueue / "
        "loop. The loop uses the shipped Celery config (`callq.transport.config.make_app`), which "
        "publishes a task-sent event per task (`task_send_sent_event`). Figures are the "
        "median of the runs; the ratio range is over the paired runs. The two do not do "
        "quite the same work: the enqueue parks each call (its campaign's parked set) and the "
        "workers' sweepers build and push its task message later, at the account's pace "
        "(a few dozen per second), while the loop publishes every task now. Before the "
        "parking (issue 6) `enqueue.lua` pushed the message itself: "
        "10,342 / 10,339 / 9,811 calls/s at 1k / 10k / 100k, 9.7-11.0x the loop.",
        "",
    ]
    rows = []
    for r in p.sizes:
        lo, hi = r.spread
        rows.append(
            [
                thousands(r.size),
                thousands(r.enqueue_rate),
                thousands(r.loop_rate),
                f"**{r.ratio:.2f}x**" + (f" ({lo:.2f}-{hi:.2f})" if len(r.enqueue_s) > 1 else ""),
                us_per(r.enqueue_rate),
                us_per(r.loop_rate),
                str(len(r.enqueue_s)),
            ]
        )
    out += table(
        [
            "calls",
            "enqueue_file calls/s",
            "send_task loop calls/s",
            "enqueue / loop",
            "enqueue us/call",
            "loop us/call",
            "runs",
        ],
        rows,
    )
    out.append("")
    if p.dropped:
        out += [f"Size reduced to keep the run short: {p.dropped}.", ""]
    out += [
        f"Parse only (`bench.parse.bench_parse`, {thousands(p.parse_rows)} generated rows, two "
        f"fresh numbers each in mixed formats): **{thousands(p.parse_rate)} rows/s**.",
        "",
        f"### Goal: >= {thousands(GOAL_RATE)} calls/s and >= {GOAL_RATIO:g}x the loop",
        "",
    ]
    out += [f"- {_goal_line(r)}" for r in p.sizes]
    out.append("")
    out += _trips(p)
    out += _why(p)
    out += _redis_memory(p)
    out += _stages_table(p)
    out += _profile_tables(p)
    return out


def _goal_line(res: SizeResult) -> str:
    rate_ok = res.enqueue_rate >= GOAL_RATE
    ratio_ok = res.ratio >= GOAL_RATIO
    parts = [
        f"{thousands(res.enqueue_rate)} calls/s is "
        + (
            "**met**"
            if rate_ok
            else f"**missed** ({res.enqueue_rate / GOAL_RATE:.0%} of {thousands(GOAL_RATE)})"
        ),
        f"{res.ratio:.1f}x the loop is "
        + (
            "**met**"
            if ratio_ok
            else f"**missed** ({res.ratio / GOAL_RATIO:.0%} of {GOAL_RATIO:g}x)"
        ),
    ]
    return f"{thousands(res.size)} calls: " + "; ".join(parts)


def _why(p: ProducerReport) -> list[str]:
    if not p.sizes:
        return []
    missed = [r for r in p.sizes if r.enqueue_rate < GOAL_RATE or r.ratio < GOAL_RATIO]
    by_name = {s.name.split(":", 1)[0]: s for s in p.stages}
    parse = by_name.get("parse only")
    ledger = by_name.get("ledger only")
    publish = by_name.get("publish only")
    ref = max(p.sizes, key=lambda r: r.size)
    lines = [
        "Both goals are met at every size."
        if not missed
        else "Where a goal is missed, it is by the margin shown above; this 2-core machine is "
        "shared, so compare the ratios within one run.",
        "",
        "Where the time goes (the stage timings below):",
        "",
    ]
    if parse is not None and ledger is not None:
        lines.append(
            f"- Parse and validation take {1e6 / parse.rate:.0f} us per row and the ledger "
            f"write {1e6 / ledger.rate:.0f} us per call (one EVALSHA per 250 calls, one "
            f"round trip per 1,000), of the {1e6 / ref.enqueue_rate:.0f} us per call of the whole "
            f"enqueue at "
            f"{thousands(ref.size)} calls. No task message is built at enqueue: the call is parked "
            "by the same script (`enqueue.lua`), and a sweeper builds its message when the "
            "call's turn comes."
        )
    if publish is not None:
        lines.append(
            f"- The road not taken: Celery's `send_task` inside a kombu `Producer.batch` (the "
            f"first version of `Enqueuer`) publishes at {thousands(publish.rate)} calls/s "
            f"on its own, {1e6 / publish.rate:.0f} us per call, more than the whole enqueue now "
            "takes; the what-if rows show the same with the task-sent event off and with a raw "
            "kombu publish."
        )
    lines.append("")
    return lines


def _trips(p: ProducerReport) -> list[str]:
    if not p.trips_calls:
        return []
    return [
        f"Redis round trips, counted on the client for {thousands(p.trips_calls)} calls: "
        f"`enqueue_file` {p.trips_enqueue} ({p.trips_enqueue / p.trips_calls:.3f} per call), "
        f"the loop {p.trips_loop} ({p.trips_loop / p.trips_calls:.2f} per call: the task and "
        "its task-sent event are published separately).",
        "",
    ]


def _redis_memory(p: ProducerReport) -> list[str]:
    rows = []
    for r in p.sizes:
        em, lm = r.enqueue_mem, r.loop_mem
        if em is None:
            continue
        rows.append(
            [
                thousands(r.size),
                nbytes(em.per_call_info),
                nbytes(em.ledger_bytes / em.calls),
                nbytes(em.broker_bytes / em.calls),
                nbytes(em.per_call_keys),
                "" if lm is None else nbytes(lm.per_call_keys),
            ]
        )
    if not rows:
        return []
    return [
        "### Redis memory per queued call",
        "",
        "After the enqueue, before any worker took a task. `INFO memory` `used_memory` delta "
        "over the calls, and (steadier on a shared server, where other clients move "
        "`used_memory` too) the sum of `MEMORY USAGE key SAMPLES 0` over the run's own keys: "
        "the ledger (call hashes, the campaign's list, parked set and counters) and the "
        "broker (kombu's queue list of task messages: empty after our enqueue, whose calls "
        "wait parked; the loop's are all there).",
        "",
        *table(
            [
                "calls",
                "used_memory delta / call",
                "ledger / call",
                "broker / call",
                "ledger + broker / call",
                "loop: broker / call",
            ],
            rows,
        ),
        "",
        *_redis_memory_note(p),
    ]


def _redis_memory_note(p: ProducerReport) -> list[str]:
    mems = [r.enqueue_mem for r in p.sizes if r.enqueue_mem is not None]
    if not mems:
        return []
    m = mems[-1]
    total = m.ledger_bytes + m.broker_bytes
    if not total or not m.broker_bytes:
        return []
    return [
        f"The broker's task message is {m.broker_bytes / total:.0%} of it: "
        f"{nbytes(m.broker_bytes / m.calls)} per call for a task whose only argument is a "
        "request id (Celery's protocol-2 JSON envelope: base64 body, headers, "
        "properties). The ledger record is the rest.",
        "",
    ]


def _stages_table(p: ProducerReport) -> list[str]:
    if not p.stages:
        return []
    rows = [[s.name, thousands(s.rate), us_per(s.rate), s.note] for s in p.stages]
    return [
        f"### Where the time goes: stages ({thousands(p.stages[0].calls)} calls each)",
        "",
        "Each stage alone, timed the way `Enqueuer` runs it. The what-if rows are "
        "diagnostics, not the measurement above.",
        "",
        *table(["stage", "calls/s", "us/call", "note"], rows, "lrrl"),
        "",
    ]


def _profile_tables(p: ProducerReport) -> list[str]:
    if not p.profile_own:
        return []
    own = [[f"`{r.where}`", r.calls, f"{r.own:.3f}", f"{r.cumulative:.3f}"] for r in p.profile_own]
    cum = [
        [f"`{r.where}`", r.calls, f"{r.own:.3f}", f"{r.cumulative:.3f}"]
        for r in p.profile_cumulative
    ]
    head = ["function", "calls", "own s", "cumulative s"]
    return [
        "### Where the time goes: cProfile of one `enqueue_file` "
        f"({thousands(p.profile_calls)} calls, "
        f"{p.profile_seconds:.2f} s under the profiler)",
        "",
        "Top 5 by own time:",
        "",
        *table(head, own),
        "",
        "Top by cumulative time (below `enqueue_file` / `enqueue`):",
        "",
        *table(head, cum),
        "",
    ]
