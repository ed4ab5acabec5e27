"""``python -m chaos.load``: a load measurement (not a test: nothing is asserted but the counters).

1. A Redis of its own (EmbeddedRedis, AOF on, in a temporary directory).
2. A burst of ``--calls`` (20,000) calls enqueued with ``Enqueuer.enqueue_file`` (validation,
   pipelined ledger writes, batched publishing). No worker runs, so they stay queued.
3. A real ``python -m callbacks`` receiver, driven for ``--seconds`` (10) at ``--rate``
   (2,000/s, or as fast as it goes) by ``--procs`` processes of ``--threads`` threads, each
   with a keep-alive ``requests.Session``. Each callback is a terminal JSON StatusCallback for
   one of the queued calls (its request id in CustomField, a made-up Sid of its own, a random
   status): first ones move the call to ``originated``, repeats are duplicates or change the
   status, so the counters move in every way they can.
4. Measured: enqueue calls/s, callbacks/s achieved and their latency, the receiver's RSS and
   Redis ``used_memory`` before and after; then the per-campaign counters against a recount
   of the 20,000 records.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from chaos.runner import ChaosConfig, campaign_rows
from chaos.table import table
from devstack.callbacks import STATUSES, callback_body
from devstack.embedded import EmbeddedRedis, free_port
from devstack.procs import cpu_seconds
from devstack.workers import Receiver

CAMPAIGN = "load"


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``: psutil if installed, else /proc."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class DriveResult:
    sent: int
    codes: dict[str, int]
    latencies: list[float]  # a sample, seconds
    elapsed: float


def _drive_thread(
    url: str,
    ids: list[str],
    per_thread_rate: float,
    seconds: float,
    seed: int,
    out: list[DriveResult],
) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    interval = 1.0 / per_thread_rate if per_thread_rate > 0 else 0.0
    began = time.monotonic()
    due = began
    sent = 0
    while True:
        now = time.monotonic()
        if now - began >= seconds:
            break
        if interval and now < due:
            time.sleep(min(due - now, 0.05))
            continue
        due += interval
        body = callback_body(rng.choice(ids), rng.choice(STATUSES))
        t = time.monotonic()
        try:
            r = session.post(url, data=body, timeout=10)
            codes[str(r.status_code)] += 1
        except requests.RequestException as exc:
            codes[type(exc).__name__] += 1
        if sent % 10 == 0:
            latencies.append(time.monotonic() - t)
        sent += 1
    session.close()
    out.append(DriveResult(sent, dict(codes), latencies, time.monotonic() - began))


def _drive_process(
    url: str,
    ids: list[str],
    threads: int,
    per_thread_rate: float,
    seconds: float,
    seed: int,
    queue: Any,
) -> None:
    results: list[DriveResult] = []
    workers = [
        threading.Thread(
            target=_drive_thread,
            args=(url, ids, per_thread_rate, seconds, seed * 1000 + i, results),
        )
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put(
        {
            "sent": sum(r.sent for r in results),
            "codes": dict(sum((Counter(r.codes) for r in results), Counter())),
            "latencies": [x for r in results for x in r.latencies],
            "elapsed": max((r.elapsed for r in results), default=0.0),
        }
    )


def drive(
    url: str, ids: list[str], *, rate: float, seconds: float, procs: int, threads: int
) -> dict[str, Any]:
    """Post callbacks from ``procs`` x ``threads`` keep-alive sessions for ``seconds``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    per_thread = rate / (procs * threads) if rate > 0 else 0.0
    workers = [
        ctx.Process(
            target=_drive_process, args=(url, ids, threads, per_thread, seconds, i + 1, queue)
        )
        for i in range(procs)
    ]
    began = time.monotonic()
    for w in workers:
        w.start()
    parts = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    wall = time.monotonic() - began
    codes: Counter[str] = Counter()
    for p in parts:
        codes.update(p["codes"])
    lat = sorted(x for p in parts for x in p["latencies"])
    sent = sum(p["sent"] for p in parts)
    busy = max((p["elapsed"] for p in parts), default=wall)

    def q(f: float) -> float:
        return lat[min(len(lat) - 1, int(f * len(lat)))] * 1000 if lat else 0.0

    return {
        "sent": sent,
        "seconds": busy,
        "per_second": sent / busy if busy else 0.0,
        "codes": dict(codes),
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "max_ms": lat[-1] * 1000 if lat else 0.0,
    }


def used_memory(ledger: Ledger) -> int:
    return int(ledger.redis.info("memory")["used_memory"])


def recount(ledger: Ledger, campaign: str) -> dict[str, Any]:
    states: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    n = 0
    for rec in ledger.iter_records(campaign, batch=2000):
        n += 1
        states[rec.get("state", "")] += 1
        if rec.get("call_status"):
            statuses[rec["call_status"]] += 1
    status = ledger.status(campaign)
    counted = {s: v for s, v in status.states.items() if v}
    cs = {s: v for s, v in status.call_status.items() if v}
    return {
        "records": n,
        "total": status.total,
        "states": counted,
        "recount_states": dict(states),
        "call_status": cs,
        "recount_call_status": dict(statuses),
        "equal": counted == dict(states) and cs == dict(statuses) and status.total == n,
    }


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chaos-load-"))
    server = EmbeddedRedis(workdir / "redis", appendonly=True).start()
    receiver: Receiver | None = None
    try:
        port = free_port()
        settings = Settings(
            _env_file=None,
            redis_url=server.url,
            key_prefix="load",
            callback_token=SecretStr("load-cb-token"),
            callback_url=f"http://127.0.0.1:{port}/exotel/status-callback",
        )
        ledger = Ledger(make_redis(server.url), Keys.for_settings(settings))
        mem_empty = used_memory(ledger)
        data = campaign_rows(args.calls, 0, random.Random(1), ChaosConfig(flow_every=0))
        enqueuer = Enqueuer(settings)
        began = time.monotonic()
        result = enqueuer.enqueue_file(io.BytesIO(data), CAMPAIGN)
        enqueue_s = time.monotonic() - began
        if result.accepted != args.calls:
            raise RuntimeError(f"enqueue refused rows: {result.as_dict()}")
        mem_queued = used_memory(ledger)
        queue_len = ledger.redis.llen("calls")
        ids = list(ledger.iter_request_ids(CAMPAIGN))
        print(
            f"enqueued {args.calls} calls in {enqueue_s:.2f} s; starting the receiver",
            flush=True,
        )

        receiver = Receiver(settings, workdir, port, log_level=args.log_level).start()
        time.sleep(1.0)
        assert receiver.pid is not None
        rss_before = rss_bytes(receiver.pid)
        assert server.proc is not None
        cpu_before = (cpu_seconds(receiver.pid), cpu_seconds(server.proc.pid))
        url = f"{receiver.base}/exotel/status-callback?token=load-cb-token"
        print(
            f"driving callbacks at {args.rate:g}/s target for {args.seconds:g} s "
            f"({args.procs} procs x {args.threads} threads)",
            flush=True,
        )
        drove = drive(
            url,
            ids,
            rate=args.rate,
            seconds=args.seconds,
            procs=args.procs,
            threads=args.threads,
        )
        rss_after = rss_bytes(receiver.pid)
        cpu_after = (cpu_seconds(receiver.pid), cpu_seconds(server.proc.pid))
        mem_after = used_memory(ledger)
        counts = recount(ledger, CAMPAIGN)
        figures = {
            "calls": args.calls,
            "enqueue_seconds": enqueue_s,
            "enqueue_per_second": args.calls / enqueue_s,
            "broker_queue_length": queue_len,
            "redis_used_memory_empty": mem_empty,
            "redis_used_memory_queued": mem_queued,
            "redis_bytes_per_queued_call": (mem_queued - mem_empty) / args.calls,
            "redis_used_memory_after_callbacks": mem_after,
            "callbacks": drove,
            "receiver_rss_before": rss_before,
            "receiver_rss_after": rss_after,
            "receiver_cpu_share": (cpu_after[0] - cpu_before[0]) / drove["seconds"],
            "redis_cpu_share": (cpu_after[1] - cpu_before[1]) / drove["seconds"],
            "machine_cpus": os.cpu_count(),
            "counters": counts,
        }
    finally:
        if receiver is not None:
            receiver.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def render(f: dict[str, Any], args: argparse.Namespace) -> str:
    cb = f["callbacks"]
    c = f["counters"]
    rows = [
        ("calls enqueued (burst)", f"{f['calls']:,}"),
        ("enqueue time", f"{f['enqueue_seconds']:.2f} s"),
        ("enqueue rate", f"{f['enqueue_per_second']:,.0f} calls/s"),
        ("broker queue length after enqueue", f"{f['broker_queue_length']:,}"),
        ("callbacks target", f"{args.rate:,.0f}/s for {args.seconds:g} s"),
        ("callbacks sent", f"{cb['sent']:,} in {cb['seconds']:.1f} s"),
        ("callbacks achieved", f"{cb['per_second']:,.0f}/s"),
        ("callback answers", ", ".join(f"{k}: {v:,}" for k, v in sorted(cb["codes"].items()))),
        (
            "callback latency p50 / p99 / max",
            f"{cb['p50_ms']:.1f} / {cb['p99_ms']:.1f} / {cb['max_ms']:.1f} ms",
        ),
        (
            "CPU while driving: receiver / Redis",
            f"{f['receiver_cpu_share']:.0%} / {f['redis_cpu_share']:.0%} of one core "
            f"({f['machine_cpus']} cores; the load generator runs on the same machine)",
        ),
        (
            "receiver RSS before / after",
            f"{mib(f['receiver_rss_before'])} / {mib(f['receiver_rss_after'])}",
        ),
        ("Redis used_memory empty", mib(f["redis_used_memory_empty"])),
        ("Redis used_memory with the burst queued", mib(f["redis_used_memory_queued"])),
        ("Redis bytes per queued call", f"{f['redis_bytes_per_queued_call']:,.0f}"),
        ("Redis used_memory after callbacks", mib(f["redis_used_memory_after_callbacks"])),
        ("campaign states (counters)", ", ".join(f"{k}: {v:,}" for k, v in c["states"].items())),
        (
            "campaign call_status (counters)",
            ", ".join(f"{k}: {v:,}" for k, v in c["call_status"].items()) or "-",
        ),
        ("counters equal a recount of the records", "yes" if c["equal"] else "NO"),
    ]
    return table(["measure", "value"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.load", description=__doc__)
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=2000.0, help="callbacks/s to aim at (0: flat out)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=2, help="load-generating processes")
    p.add_argument("--threads", type=int, default=16, help="threads per process")
    p.add_argument("--log-level", default="info", help="the receiver's log level")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if min(args.calls, args.procs, args.threads) < 1 or args.seconds <= 0:
        print(
            "chaos.load: --calls, --procs, --threads and --seconds must be positive",
            file=sys.stderr,
        )
        return 2
    figures = run(args)
    print()
    print(f"Load run {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(render(figures, args))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["counters"]["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
