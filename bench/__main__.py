"""``python -m bench [--quick] [--out PATH]``: run every benchmark and write the report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    accounts,
    forecast,
    limiter_cost,
    live_calls,
    memory,
    pipeline,
    priority,
    receiver,
    strictness,
    throughput,
)
from bench.env import Machine, bench_redis, load_now
from bench.report import Everything, intro_of, render

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
PLOT_NAME = "limit_strictness.png"
MEM_PLOT_NAME = "worker_memory.png"
RECV_PLOT_NAME = "callback_receiver.png"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("sizes: a comma-separated list of numbers") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes: positive numbers")
    return sorted(sizes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of everything, ~1.5 min"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    p.add_argument("--redis-url", help="this Redis (database 14 is used), not 127.0.0.1:6379")
    p.add_argument("--embedded", action="store_true", help="start a private embedded Redis")
    p.add_argument("--sizes", type=_sizes, help="producer sizes, e.g. 1000,10000,100000")
    p.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="seconds the producer sizes may take in all; a size that would not fit is "
        "reduced, and the report says so (default 240)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    out: Path = args.out
    sizes: list[int] = args.sizes or ([200, 1000] if quick else [1000, 10_000, 100_000])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    with bench_redis(args.redis_url, embedded=args.embedded) as target:
        machine = Machine.describe(target)
        log(f"bench: Redis {machine.redis_server} ({target.origin}) at {target.url}")
        log(f"bench: {machine.nproc} CPUs, {machine.cpu_model}, load {machine.load_before}")

        log("0. the limit through the pipeline (producer, feed, workers, simulator) ...")
        pipe_loads = (
            [
                pipeline.PipeLoad("100 per 5 s, 12x, 3 workers", 300, 100, 60.0, 12.0, 3),
                pipeline.PipeLoad(
                    "100 per 5 s, 12x, 2 workers, fair share",
                    400,
                    100,
                    60.0,
                    12.0,
                    2,
                    share_probes=4,
                ),
            ]
            if quick
            else [
                *(
                    pipeline.PipeLoad(
                        f"200 per 60 s, real time, {n} worker{'s' * (n > 1)}",
                        800,
                        200,
                        60.0,
                        1.0,
                        n,
                    )
                    for n in (1, 3, 8)
                ),
                *(
                    pipeline.PipeLoad(
                        f"100 per 5 s, 12x, {n} worker{'s' * (n > 1)}", 600, 100, 60.0, 12.0, n
                    )
                    for n in (1, 3, 8)
                ),
                pipeline.PipeLoad(
                    "100 per 5 s, 12x, 3 workers, faults", 600, 100, 60.0, 12.0, 3, faults=True
                ),
                pipeline.PipeLoad(
                    "100 per 5 s, 12x, 3 workers, fair share",
                    1500,
                    100,
                    60.0,
                    12.0,
                    3,
                    share_probes=20,
                ),
            ]
        )
        pipe = [pipeline.run(target, load, log) for load in pipe_loads]

        log("1. producer throughput ...")
        producer = throughput.run(
            target,
            sizes,
            repeats=1 if quick else 3,
            parse_rows=5_000 if quick else 50_000,
            stage_size=1_000 if quick else 10_000,
            budget_s=args.budget,
            log=log,
        )

        log("2. limiter cost ...")
        duration = 0.3 if quick else 1.6
        limiter = limiter_cost.run(target, [1, 8, 64], duration, log)

        log("3. limit strictness ...")
        load = (
            strictness.Load(calls=60, threads=12, limit=20, period=1.0, margin=0.02)
            if quick
            else strictness.Load(calls=300, threads=12, limit=100, period=5.0, margin=0.1)
        )
        strict = strictness.run(target, load, log)

        log("4. worker memory ...")
        mem_load = (
            memory.MemLoad(
                calls=10,
                slow_seconds=3.0,
                layouts=[
                    memory.Layout("threads", 1, 10),
                    memory.Layout("threads", 2, 5),
                    memory.Layout("prefork", 1, 10),
                    memory.Layout("gevent", 1, 10),
                ],
            )
            if quick
            else memory.MemLoad(
                calls=100,
                slow_seconds=30.0,
                layouts=[
                    memory.Layout("threads", 1, 100),
                    memory.Layout("threads", 4, 25),
                    memory.Layout("prefork", 1, 100),
                    memory.Layout("gevent", 1, 100),
                ],
            )
        )
        mem = memory.run(target, mem_load, log)

        log("5. callback receiver ...")
        configs = [
            receiver.Config(1),
            receiver.Config(4),
            receiver.Config(1, log_level="warning"),
            receiver.Config(4, log_level="warning"),
        ]
        recv_load = (
            receiver.RecvLoad(
                records=6_000,
                seconds=1.5,
                warmup=0.5,
                connections=16,
                configs=[configs[0], configs[1]],
            )
            if quick
            else receiver.RecvLoad(
                records=30_000, seconds=8.0, warmup=1.0, connections=32, configs=configs
            )
        )
        recv = receiver.run(target, recv_load, log)

        log("6. priority latency ...")
        prio_load = (
            priority.PrioLoad(campaign_calls=300, probes=4, every=1.0)
            if quick
            else priority.PrioLoad()
        )
        prio = priority.run(target, prio_load, log)

        log("7. throughput at a live-call cap ...")
        live = live_calls.run(
            target, live_calls.LiveLoad(calls=60) if quick else live_calls.LiveLoad(), log
        )

        log("8. forecast against reality ...")
        fc = forecast.run(
            target,
            forecast.ForecastLoad(calls=300, rival=150, runs=1, cut_calls=200)
            if quick
            else forecast.ForecastLoad(),
            log,
        )
        log("9. many accounts at once (a private redis-server) ...")
        acc = accounts.run_all(accounts.loads(quick), log, quick=quick)

    def drawn(name: str, draw: Callable[[Path], str]) -> tuple[str, str]:
        """(path relative to the report, or "", note)."""
        path = out.parent / "img" / name
        note = draw(path)
        log(f"plot: {note or path}")
        return ("" if note else os.path.relpath(path, out.parent)), note

    plot_rel, note = drawn(PLOT_NAME, lambda p: strictness.plot(strict, load, p))
    mem_rel, mem_note = drawn(MEM_PLOT_NAME, lambda p: memory.plot(mem, p))
    recv_rel, recv_note = drawn(RECV_PLOT_NAME, lambda p: receiver.plot(recv, p))

    report = Everything(
        machine=machine,
        mode="quick (smoke run: small sizes)" if quick else "full",
        seconds=time.monotonic() - started,
        load_after=load_now(),
        producer=producer,
        limiter=limiter,
        limiter_seconds=duration,
        strict_load=load,
        strict=strict,
        plot_path=plot_rel,
        plot_note=note,
        mem_load=mem_load,
        memory=mem,
        mem_plot_path=mem_rel,
        mem_plot_note=mem_note,
        recv_load=recv_load,
        receiver=recv,
        recv_plot_path=recv_rel,
        recv_plot_note=recv_note,
        priority=prio,
        pipeline=pipe,
        live_calls=live,
        forecast=fc,
        accounts=acc,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report, intro_of(out)), encoding="utf-8")
    log(f"bench: wrote {out} in {report.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
