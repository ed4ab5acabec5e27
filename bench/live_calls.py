"""Throughput at a live-call cap: how close a campaign comes to what the cap allows.

A campaign of two-leg calls of realistic length (30-45 s simulated, every call completed,
time-scaled by ``time_scale``) runs through real workers against a simulator that enforces
a cap of ``cap`` live slots (2 per connect call), with ``EXOTEL_MAX_LIVE_CALLS`` set to the
same cap and the real StatusCallback receiver freeing slots. The rate limit is set far above
what the cap allows, so the cap binds. What the cap allows is ``cap / 2`` calls at once, so
``cap / 2 / mean call length`` calls per second; the run's utilisation is the slot-seconds the
calls held at the simulator between the first placement and the last, over ``cap`` times
that span (1.0: every slot busy all the time). The gap is the time from a call's end to its
callback freeing its slots and the next call reaching Exotel.

Part of ``make bench`` (section 7); alone: ``python -m bench.live_calls [--calls N]
[--time-scale S]`` prints the section.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from bench.env import BenchRedis, bench_redis
from bench.throughput import campaign_csv
from callq.intake.enqueue import Enqueuer
from callq.receiver.app import CALLBACK_PATH, create_app
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.workers import WorkerPool
from simulator import Account, SimConfig, Simulator

SID, KEY, TOKEN = "bench-live", "bench-live-key", "bench-live-token"


@dataclass
class LiveLoad:
    calls: int = 300
    cap: int = 20
    time_scale: float = 0.1  # 30-45 s calls last 3-4.5 s
    workers: int = 1
    concurrency: int = 8
    speed: float = 12.0


@dataclass
class LiveResult:
    load: LiveLoad
    seconds: float = 0.0
    utilisation: float = 0.0
    mean_call: float = 0.0  # seconds, real time at the simulator
    calls_per_second: float = 0.0
    max_live: int = 0
    refused: int = 0
    rate_limited: int = 0
    originated: int = 0


def utilisation(calls: list[dict[str, Any]], cap: int) -> float:
    t0 = min(c["placed_at"] for c in calls)
    t1 = max(c["placed_at"] for c in calls)
    held = sum(c["slots"] * max(0.0, min(c["ends_at"], t1) - c["placed_at"]) for c in calls)
    return float(held / (cap * (t1 - t0)))


def run(target: BenchRedis, load: LiveLoad, log: Callable[[str], None] = print) -> LiveResult:
    result = LiveResult(load)
    account = Account(SID, KEY, TOKEN, rate_limit=10_000, period=60.0, max_live_slots=load.cap)
    config = SimConfig(
        accounts=[account],
        latency=True,
        time_scale=load.time_scale,
        callbacks=True,
        seed=5,
        ring_seconds=(5.0, 10.0),
        talk_seconds=(25.0, 35.0),
        status_mix={"completed": 1.0},
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with (
        Simulator(config) as sim,
        tempfile.TemporaryDirectory(prefix="bench-live-") as tmp,
    ):
        prefix = target.new_prefix("live")
        settings = target.settings(
            prefix,
            speed=load.speed,
            exotel_account_sid=SID,
            exotel_api_key=SecretStr(KEY),
            exotel_api_token=SecretStr(TOKEN),
            exotel_base_url=sim.url,
            exotel_caller_id="08030752400",
            rate_limit_calls=10_000,
            rate_limit_period_seconds=60.0,
            exotel_max_live_calls=load.cap,
            worker_concurrency=load.concurrency,
            callback_url=f"http://127.0.0.1:{port}{CALLBACK_PATH}",
            callback_token=SecretStr(f"cb-{uuid.uuid4().hex}"),
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), ws="none", lifespan="on", log_level="warning")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
        thread.start()
        ledger = Ledger(make_redis(settings.require_redis_url()), Keys(prefix))
        pool = WorkerPool(settings, Path(tmp), concurrency=load.concurrency)
        try:
            Enqueuer(settings).enqueue_file(io.BytesIO(campaign_csv(load.calls)), "live")
            started = time.monotonic()
            pool.start(load.workers)
            deadline = started + 600
            while ledger.status("live").states["originated"] < load.calls:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            result.seconds = time.monotonic() - started
            truth = sim.truth()
        finally:
            pool.stop()
            server.should_exit = True
            thread.join(15)
            target.drop(prefix)
    calls = truth["calls"]
    result.originated = int(truth["originated"])
    result.max_live = int(truth["max_live_slots"].get(SID, 0))
    result.refused = int(truth["live_refused"])
    result.rate_limited = int(truth["rate_limited"])
    result.mean_call = statistics.fmean(c["ends_at"] - c["placed_at"] for c in calls)
    result.utilisation = utilisation(calls, load.cap)
    span = max(c["placed_at"] for c in calls) - min(c["placed_at"] for c in calls)
    result.calls_per_second = (len(calls) - 1) / span if span > 0 else 0.0
    log(
        f"   utilisation {100 * result.utilisation:.1f} % of the cap; max live "
        f"{result.max_live}/{load.cap}, refused {result.refused}, 429s {result.rate_limited}"
    )
    return result


def render(r: LiveResult) -> list[str]:
    load = r.load
    allowed = load.cap / 2 / r.mean_call
    return [
        "## 7. Throughput at a live-call cap",
        "",
        f"{load.calls} two-leg calls of 30-45 s (simulated; every call completed), at "
        f"time_scale {load.time_scale:g} (mean {r.mean_call:.2f} s real at the simulator), "
        f"through {load.workers} real worker x {load.concurrency} threads and the real "
        f"callback receiver, against a simulator enforcing {load.cap} live slots, with "
        f"`EXOTEL_MAX_LIVE_CALLS={load.cap}`; the rate limit far above what the cap allows. "
        "The simulator's seed latency profile is on. Settings: the shipped defaults "
        f"{load.speed:g} times faster.",
        "",
        "| measure | value |",
        "|:--|--:|",
        f"| what the cap allows ({load.cap // 2} calls / mean length) | {allowed:.2f} calls/s |",
        f"| achieved (first placement to last) | {r.calls_per_second:.2f} calls/s |",
        f"| slot utilisation at the simulator | {100 * r.utilisation:.1f} % |",
        f"| most slots live at once (simulator) | {r.max_live} of {load.cap} |",
        f"| refusals at the cap / 429s | {r.refused} / {r.rate_limited} |",
        f"| calls placed | {r.originated} of {load.calls} |",
        "",
        "Goal: throughput within 5 % of what the cap allows. "
        + (
            f"**Met**: {100 * r.utilisation:.1f} %."
            if r.utilisation >= 0.95
            else f"**Not met**: {100 * r.utilisation:.1f} %."
        )
        + " What is lost is, per call, the time from its end at the simulator to its callback "
        "freeing its slots, the feed's pass and the next request's arrival; it is the same "
        "in absolute terms at any call length, so its share shrinks as calls get longer "
        "(real calls last 10-20 times longer than these).",
    ]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.live_calls")
    p.add_argument("--calls", type=int, default=LiveLoad.calls)
    p.add_argument("--time-scale", type=float, default=LiveLoad.time_scale)
    args = p.parse_args()
    with bench_redis() as target:
        result = run(target, LiveLoad(calls=args.calls, time_scale=args.time_scale))
    print("\n".join(render(result)))


if __name__ == "__main__":
    main()
