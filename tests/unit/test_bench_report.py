"""docs/benchmarks.md as rendered by ``bench.report.render``, pinned byte for byte.

Three ``Everything``s built from small fixed fake results (no Redis, no run): one with
goals missed and failed runs, one with every goal met, and one with nothing measured. Each
is compared with its golden file under tests/unit/golden/. The goldens were written by the
renderer as it was before the sections moved into their bench modules (issue 14); a change
to the generated text must show up here as a diff of the golden file.

After a deliberate change of the text: ``CALLQ_UPDATE_GOLDEN=1 pytest tests/unit/test_bench_report.py``
rewrites the goldens, then review the diff.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pytest

from bench.env import Machine
from bench.limiter_cost import CostResult
from bench.memory import Layout, MemLoad, MemResult
from bench.pipeline import PipeLoad, PipeResult
from bench.priority import PrioLoad, PrioResult
from bench.receiver import Config, RecvLoad, RecvResult
from bench.report import DEFAULT_INTRO, Everything, render
from bench.strictness import Load, StrictResult
from bench.throughput import Memory, ProducerReport, ProfileLine, SizeResult, Stage
from devstack.procs import TreeMemory

GOLDEN = Path(__file__).resolve().parent / "golden"
MIB = 1 << 20


def _machine() -> Machine:
    return Machine(
        date="2026-01-02 03:04 UTC",
        nproc=2,
        usable_cpus=2,
        cpu_model="Fake CPU @ 2.00GHz",
        ram="3.8 GiB",
        kernel="Linux 6.1.0",
        python="CPython 3.11.9",
        redis_server="7.2.4",
        redis_origin="local server",
        celery="5.4.0",
        kombu="5.4.2",
        redis_py="5.2.1",
        matplotlib="not installed",
        load_before="0.50 0.40 0.30",
    )


def _sends(n: int, spacing: float, limited: Collection[int] = ()) -> list[tuple[float, bool]]:
    return [(100.0 + i * spacing, i in limited) for i in range(n)]


def _waits(n: int, step: float) -> list[float]:
    return [step * (i % 7 + 1) for i in range(n)]


def _tree(mib: float, processes: int = 1, shared: float = 0.0) -> TreeMemory:
    rss = int(mib * MIB)
    return TreeMemory(processes, rss, int(rss * (1 - shared / 2)), int(rss * (1 - shared)))


def _profile() -> tuple[list[ProfileLine], list[ProfileLine]]:
    own = [
        ProfileLine("producer/csvread.py:302(_row)", "1000", 0.0123, 0.0456),
        ProfileLine("phonenumbers/phonenumberutil.py:3001(parse)", "2000", 0.0100, 0.0200),
    ]
    cum = [
        ProfileLine("producer/enqueue.py:120(enqueue_file)", "1", 0.0010, 0.1500),
        ProfileLine("producer/enqueue.py:180(enqueue)", "1", 0.0020, 0.1400),
    ]
    return own, cum


def _mixed() -> Everything:
    """Goals missed, runs failed, every optional part present."""
    own, cum = _profile()
    producer = ProducerReport(
        sizes=[
            SizeResult(
                1000,
                enqueue_s=[0.080, 0.090, 0.100],
                loop_s=[0.90, 1.00, 0.95],
                enqueue_mem=Memory(1000, 612_345, 401_000, 203_000),
                loop_mem=Memory(1000, 900_100, 0, 812_000),
            ),
            SizeResult(
                10_000,
                enqueue_s=[1.2],
                loop_s=[9.0],
                enqueue_mem=Memory(10_000, 6_000_000, 4_100_000, 0),
            ),
        ],
        dropped="100,000 calls would take 400 s of a 240 s budget: 10,000",
        parse_rows=5000,
        parse_rate=71_234.5,
        stages=[
            Stage("parse only: read_rows (bench_parse)", 1000, 0.014),
            Stage("ledger only: enqueue.lua, pipelined", 1000, 0.055, "1,000 per batch"),
            Stage("publish only: send_task in Producer.batch (what-if)", 1000, 0.31, "what-if"),
        ],
        profile_calls=1000,
        profile_seconds=0.42,
        profile_own=own,
        profile_cumulative=cum,
        trips_calls=1000,
        trips_enqueue=3,
        trips_loop=2000,
    )
    limiter = [
        CostResult(1, 0.3, 3000, 3001, 0.31, 0.62, 12_000.0),
        CostResult(8, 0.3, 4500, 4510, 1.71, 3.20, 14_000.0),
        CostResult(64, 0.3, 4200, 4350, 14.20, 30.10, 13_500.0),
    ]
    load = Load(calls=60, threads=12, limit=20, period=1.0, margin=0.02)
    strict = [
        StrictResult(
            "ours: GCRA limiter",
            _sends(60, 0.0525),
            3.2,
            60,
            0,
            20,
            60,
            0,
            waits=_waits(60, 0.05),
            calls=60,
            round_trips=61,
        ),
        StrictResult(
            "fixed window, BullMQ-style",
            _sends(70, 0.04, {20, 21, 40, 41, 42}),
            2.9,
            60,
            5,
            31,
            70,
            0,
            waits=_waits(70, 0.02),
            calls=60,
        ),
        StrictResult(
            "fixed window, clock-aligned INCR",
            _sends(64, 0.045, {30, 31}),
            2.9,
            60,
            2,
            24,
            64,
            1,
            waits=_waits(64, 0.03),
            calls=60,
        ),
        StrictResult(
            "limits library, moving window (hit() polled every 20 ms)",
            _sends(61, 0.049, {45}),
            3.0,
            60,
            1,
            21,
            61,
            0,
            waits=[0.4],
            calls=60,
            round_trips=950,
        ),
        StrictResult(
            "Celery rate_limit, 3 workers",
            [(200.0 + i * 0.01, i % 3 == 0) for i in range(40)]
            + [(201.0 + i * 0.2, False) for i in range(30)],
            9.5,
            52,
            14,
            38,
            70,
            0,
            waits=[],
            calls=60,
            note="stopped after 9.5 s",
        ),
    ]
    mem_load = MemLoad(
        calls=10,
        slow_seconds=3.0,
        layouts=[
            Layout("threads", 1, 10),
            Layout("threads", 2, 5),
            Layout("prefork", 1, 10),
            Layout("gevent", 1, 10),
        ],
    )
    memory = [
        MemResult(
            Layout("threads", 1, 10),
            10,
            3.0,
            idle=[_tree(88.0)],
            busy=[_tree(92.5)],
            in_flight=10,
            spread_s=0.4,
            sampled_at_s=1.9,
            originated=10,
        ),
        MemResult(
            Layout("threads", 2, 5),
            10,
            3.0,
            idle=[_tree(87.0), _tree(87.5)],
            busy=[_tree(89.0), _tree(89.25)],
            in_flight=10,
            spread_s=0.5,
            sampled_at_s=2.0,
            originated=10,
        ),
        MemResult(
            Layout("prefork", 1, 10),
            10,
            3.0,
            idle=[_tree(400.0, 11, 0.6)],
            busy=[_tree(420.0, 11, 0.6)],
            in_flight=10,
            spread_s=0.6,
            sampled_at_s=2.2,
            originated=9,
            error="1 call not originated",
        ),
        MemResult(
            Layout("gevent", 1, 10),
            10,
            3.0,
            idle=[_tree(95.0)],
            error="ImportError: No module named 'gevent'\nTraceback ...",
        ),
    ]
    recv_load = RecvLoad(
        records=6000,
        seconds=1.5,
        warmup=0.5,
        connections=16,
        configs=[Config(1), Config(4), Config(1, "warning"), Config(2)],
    )
    receiver = [
        RecvResult(
            Config(1),
            seconds=1.5,
            count=1350,
            latencies_ms=[float(i % 40 + 5) for i in range(200)],
            codes={"200": 1350},
            results={"matched": 1350},
            generator_cpu=0.31,
            receiver_cpu=0.98,
            redis_cpu=0.12,
            other_cpu=0.05,
            receiver_rss=int(61.5 * MIB),
            processes=1,
        ),
        RecvResult(
            Config(4),
            seconds=1.5,
            count=1650,
            latencies_ms=[float(i % 60 + 8) for i in range(200)],
            codes={"200": 1640, "503": 10},
            results={"matched": 1640},
            generator_cpu=0.35,
            receiver_cpu=1.45,
            redis_cpu=0.15,
            other_cpu=0.25,
            receiver_rss=int(240.0 * MIB),
            processes=5,
        ),
        RecvResult(
            Config(1, "warning"),
            seconds=1.5,
            count=1800,
            latencies_ms=[float(i % 30 + 4) for i in range(200)],
            codes={"200": 1800},
            results={"matched": 1800},
            generator_cpu=0.33,
            receiver_cpu=0.99,
            redis_cpu=None,
            other_cpu=None,
            receiver_rss=int(60.0 * MIB),
            processes=1,
        ),
        RecvResult(Config(2), error="the receiver did not start\nlog: ..."),
    ]
    prio = PrioResult(
        PrioLoad(campaign_calls=300, probes=4, every=1.0),
        priority=[0.21, 0.35, 0.41, 1.30],
        ordinary=[0.45, 0.52, 0.61, 0.70],
        backlog_at_probes=[250, 210, 170, 130],
        max_in_window=100,
        rate_limited=0,
        duplicates=0,
        note="one probe was late",
    )
    pipeline = [
        PipeResult(
            PipeLoad("100 per 5 s, 12x, 3 workers", 300, 100, 60.0, 12.0, 3),
            placed=300,
            elapsed=16.0,
            first_request=0.21,
            utilisation=0.962,
            steady_span=10.0,
            ramp=0.93,
            max_in_window=100,
            rate_limited=0,
        ),
        PipeResult(
            PipeLoad("100 per 5 s, 12x, 3 workers, faults", 300, 100, 60.0, 12.0, 3, faults=True),
            placed=299,
            elapsed=18.0,
            first_request=0.18,
            utilisation=0.95,
            steady_span=11.0,
            ramp=0.9,
            max_in_window=101,
            rate_limited=1,
            duplicates=1,
            note="a worker was killed at 6 s.",
        ),
        PipeResult(
            PipeLoad(
                "100 per 5 s, 12x, 2 workers, fair share", 400, 100, 60.0, 12.0, 2, share_probes=4
            ),
            placed=404,
            elapsed=22.0,
            first_request=1.4,
            utilisation=0.975,
            steady_span=14.0,
            ramp=0.96,
            max_in_window=100,
            rate_limited=0,
            share_latency=[0.3, 0.5, 0.8, 2.1],
        ),
    ]
    return Everything(
        machine=_machine(),
        mode="quick (smoke run: small sizes)",
        seconds=93.4,
        load_after="1.20 0.80 0.50",
        producer=producer,
        limiter=limiter,
        limiter_seconds=0.3,
        strict_load=load,
        strict=strict,
        plot_path="",
        plot_note="matplotlib is not installed",
        mem_load=mem_load,
        memory=memory,
        mem_plot_path="",
        mem_plot_note="matplotlib is not installed",
        recv_load=recv_load,
        receiver=receiver,
        recv_plot_path="",
        recv_plot_note="matplotlib is not installed",
        priority=prio,
        pipeline=pipeline,
    )


def _met() -> Everything:
    """Every goal met, plots drawn, no pipeline section."""
    own, cum = _profile()
    producer = ProducerReport(
        sizes=[
            SizeResult(
                1000,
                enqueue_s=[0.08],
                loop_s=[0.95],
                enqueue_mem=Memory(1000, 640_000, 400_000, 48_000),
            )
        ],
        dropped="",
        parse_rows=50_000,
        parse_rate=72_063.0,
        stages=[Stage("ledger only: enqueue.lua", 1000, 0.05)],
        profile_calls=1000,
        profile_seconds=0.40,
        profile_own=own,
        profile_cumulative=cum,
    )
    limiter = [
        CostResult(1, 1.6, 20_000, 20_000, 0.08, 0.2, 25_000.0),
        CostResult(8, 1.6, 19_000, 19_000, 0.7, 1.4, 24_000.0),
    ]
    load = Load(calls=300, threads=12, limit=100, period=5.0, margin=0.1)
    strict = [
        StrictResult(
            "ours: GCRA limiter",
            _sends(300, 0.0504),
            15.2,
            300,
            0,
            100,
            300,
            0,
            waits=_waits(300, 0.1),
            calls=300,
        ),
        StrictResult(
            "fixed window, BullMQ-style",
            _sends(300, 0.0506),
            15.3,
            300,
            0,
            100,
            300,
            0,
            waits=_waits(300, 0.1),
            calls=300,
        ),
        StrictResult(
            "limits library, moving window (hit() polled every 20 ms)",
            _sends(300, 0.0400),
            12.0,
            300,
            0,
            100,
            300,
            0,
            waits=_waits(300, 0.1),
            calls=300,
        ),
    ]
    mem_load = MemLoad(calls=100, slow_seconds=30.0, layouts=[Layout("threads", 1, 100)])
    memory = [
        MemResult(
            Layout("threads", 1, 100),
            100,
            30.0,
            idle=[_tree(90.0)],
            busy=[_tree(101.0)],
            in_flight=100,
            spread_s=1.1,
            sampled_at_s=3.4,
            originated=100,
        ),
        MemResult(
            Layout("gevent", 1, 100),
            100,
            30.0,
            idle=[_tree(110.0)],
            busy=[_tree(118.0)],
            in_flight=100,
            spread_s=0.9,
            sampled_at_s=3.0,
            originated=100,
        ),
    ]
    recv_load = RecvLoad(
        records=30_000, seconds=8.0, warmup=1.0, connections=32, configs=[Config(1), Config(4)]
    )
    receiver = [
        RecvResult(
            Config(1),
            seconds=8.0,
            count=17_600,
            latencies_ms=[float(i % 20 + 3) for i in range(100)],
            codes={"200": 17_600},
            generator_cpu=0.3,
            receiver_cpu=0.97,
            redis_cpu=0.2,
            other_cpu=0.01,
            receiver_rss=int(62.0 * MIB),
            processes=1,
        ),
        RecvResult(
            Config(4),
            seconds=8.0,
            count=20_800,
            latencies_ms=[float(i % 25 + 3) for i in range(100)],
            codes={"200": 20_800},
            generator_cpu=0.4,
            receiver_cpu=1.2,
            redis_cpu=0.25,
            other_cpu=0.02,
            receiver_rss=int(250.0 * MIB),
            processes=5,
        ),
    ]
    prio = PrioResult(
        PrioLoad(),
        priority=[0.2, 0.3, 0.4],
        ordinary=[0.5, 0.6],
        backlog_at_probes=[1200, 900],
        max_in_window=100,
    )
    return Everything(
        machine=_machine(),
        mode="full",
        seconds=612.0,
        load_after="1.00 0.90 0.80",
        producer=producer,
        limiter=limiter,
        limiter_seconds=1.6,
        strict_load=load,
        strict=strict,
        plot_path="img/limit_strictness.png",
        plot_note="",
        mem_load=mem_load,
        memory=memory,
        mem_plot_path="img/worker_memory.png",
        mem_plot_note="",
        recv_load=recv_load,
        receiver=receiver,
        recv_plot_path="img/callback_receiver.png",
        recv_plot_note="",
        priority=prio,
        pipeline=None,
    )


def _broken() -> Everything:
    """Our limiter over the limit, a lone failed receiver, no producer sizes."""
    e = _empty()
    load = Load(calls=60, threads=12, limit=20, period=1.0, margin=0.02)
    e.strict_load = load
    e.strict = [
        StrictResult(
            "ours: GCRA limiter",
            _sends(60, 0.049, {10}),
            3.0,
            60,
            1,
            22,
            61,
            0,
            waits=_waits(60, 0.05),
            calls=60,
        )
    ]
    e.memory = [
        MemResult(
            Layout("threads", 1, 10),
            10,
            3.0,
            idle=[_tree(160.0)],
            busy=[_tree(170.0)],
            in_flight=10,
            spread_s=0.4,
            sampled_at_s=1.9,
            originated=10,
        ),
        MemResult(Layout("prefork", 1, 10), 10, 3.0, error="the pool did not start"),
    ]
    e.receiver = [RecvResult(Config(1), error="bind: address in use")]
    e.plot_note = e.recv_plot_note = ""
    e.priority = PrioResult(PrioLoad(), note="no probe came back")
    return e


def _empty() -> Everything:
    """Nothing measured: every section with no results."""
    producer = ProducerReport(
        sizes=[],
        dropped="",
        parse_rows=0,
        parse_rate=0.0,
        stages=[],
        profile_calls=0,
        profile_seconds=0.0,
        profile_own=[],
        profile_cumulative=[],
    )
    return Everything(
        machine=_machine(),
        mode="quick (smoke run: small sizes)",
        seconds=1.0,
        load_after="0.00 0.00 0.00",
        producer=producer,
        limiter=[],
        limiter_seconds=0.3,
        strict_load=Load(calls=0, threads=1, limit=1, period=1.0, margin=0.0),
        strict=[],
        plot_path="",
        plot_note="no strictness run to plot",
        mem_load=MemLoad(calls=0, slow_seconds=1.0, layouts=[]),
        memory=[],
        mem_plot_path="",
        mem_plot_note="",
        recv_load=RecvLoad(records=0, seconds=0.0, warmup=0.0, connections=0, configs=[]),
        receiver=[],
        recv_plot_path="",
        recv_plot_note="no receiver run to plot",
        priority=None,
        pipeline=[],
    )


INTRO = "# Benchmarks\n\nA hand-written intro, kept as found.\n\n\n"

CASES: dict[str, tuple[Callable[[], Everything], str, bool]] = {
    # name: (the results, the intro, whether uvloop and httptools are "installed")
    "mixed": (_mixed, DEFAULT_INTRO, False),
    "met": (_met, INTRO, True),
    "broken": (_broken, DEFAULT_INTRO, False),
    "empty": (_empty, INTRO, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_report_renders_as_the_golden_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, intro, fast_http = CASES[name]
    real = importlib.util.find_spec

    def find_spec(module: str, *args: Any, **kwargs: Any) -> Any:
        if module in ("uvloop", "httptools"):
            return object() if fast_http else None
        return real(module, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    text = render(build(), intro)
    path = GOLDEN / f"benchmarks_{name}.md"
    if os.environ.get("CALLQ_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
