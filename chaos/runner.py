"""A chaos campaign: real workers, a Redis of the run's own, the simulator over real HTTP, and
faults everywhere at once.

What runs:

* an :class:`~devstack.embedded.EmbeddedRedis` (AOF on) in a temporary directory, never the
  machine's 6379;
* the Exotel simulator (in this process, over real HTTP) with random 500s, 504s, slow replies
  that were placed, resets before and after origination, duplicate and late callbacks, and a
  strict, time-scaled limit;
* ``python -m callbacks`` (the StatusCallback receiver) as a child process;
* ``workers`` real ``celery -A worker worker -Q calls`` processes (threads pool).

What happens meanwhile: a worker is killed with SIGKILL every ``kill_every`` seconds and
replaced; Redis is stopped and started again once (same port, same AOF); the receiver is
restarted once (longer than the simulator's callback retries: some are given up, and the
backfill must bring those calls' call_status); a second campaign is enqueued while all this
goes on, every ``shared_every``-th row calling the same numbers as a row of the first; the
first campaign redials busy calls once; flow calls' callbacks carry no CustomField (as
Exotel's); and calls we did not place (customers calling the ExoPhone, another system's
calls from our numbers) show up in Call Details.

Then the run waits (bounded) for every call to settle, in-doubt ones included once their proof
is possible, and for the simulator's callbacks to be delivered, and judges the ledger and
the report against the simulator's ground truth (:mod:`chaos.verdict`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from callq.campaign.controls import CampaignOptions
from callq.intake.csvread import read_rows
from callq.intake.enqueue import Enqueuer
from callq.intake.report import write_report
from callq.intake.request import CallRequest, request_id
from callq.settings import Settings, time_scaled
from callq.store.callbacks import CallbackEvent
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from chaos.verdict import CampaignData, Check, judge, left_for_a_person
from devstack.embedded import EmbeddedRedis, free_port
from devstack.workers import Receiver, WorkerPool
from simulator import Account, SimConfig, Simulator

__all__ = ["ChaosConfig", "ChaosReport", "campaign_rows", "run_chaos"]

ACCOUNT = ("chaos-account", "chaos-key-5d1e", "chaos-token-9a7c")
CALLBACK_PATH = "/exotel/status-callback"
Out = Callable[[str], None]


#: The chaos runs the shipped defaults this many times faster (config.time_scaled).
CHAOS_SPEED = 12.0


@dataclass
class ChaosConfig:
    """Every knob of a run. The defaults are the full run; :meth:`short` is the CI one."""

    calls: int = 2000
    #: Share of the calls in the second campaign, enqueued while the chaos is going on.
    second_share: float = 0.4
    workers: int = 3
    concurrency: int = 8
    #: Seconds between two SIGKILLs (each victim is replaced at once).
    kill_every: float = 5.0
    #: Fractions of the expected dialling time at which the other events happen.
    second_at: float = 0.15
    redis_restart_at: float = 0.4
    receiver_restart_at: float = 0.6
    redis_down_seconds: float = 3.0
    #: Longer than the simulator's callback retries last (1+2+4+8+16 s, times time_scale):
    #: some callbacks are retried and get through, some are given up (as Exotel would), and
    #: their in-doubt calls must be settled by a Call Details search instead.
    receiver_down_seconds: float = 8.0
    # The time-scaled limit: 100 per 5 s.
    rate_limit: int = 100
    period: float = 5.0
    margin: float = 0.5
    # The simulator.
    time_scale: float = 0.2
    p_500: float = 0.08
    p_504: float = 0.05
    p_slow_placed: float = 0.04
    p_reset_after: float = 0.02
    p_reset_before: float = 0.02
    p_duplicate_callback: float = 0.1
    p_late_callback: float = 0.05
    slow_seconds: float = 3.0
    # The queue.
    read_timeout: float = 2.0
    origination_window: float = 2.0
    max_attempts: int = 5
    #: Rows get TimeLimit in [2, time_limit_max] and TimeOut in [1, time_out_max].
    time_limit_max: int = 4
    time_out_max: int = 3
    flow_every: int = 9
    #: Every ``shared_every``-th row of the second campaign has the same From and To (or the
    #: same From and flow) as a row of the first: two in-doubt calls may share their numbers.
    shared_every: int = 10
    #: The first campaign redials a busy call once, after ``redial_interval`` seconds.
    redial_busy: bool = True
    redial_interval: float = 2.0
    #: Calls we did not place, listed by Call Details: a customer calling the ExoPhone back
    #: (three in four) or another system's call from the same number (one in four).
    listed_not_ours_per_second: float = 2.0
    # The call_status backfill (time-scaled: the simulator's callback retries last 6.2 s).
    status_backfill_margin: float = 8.0
    status_backfill_interval: float = 1.0
    # Bounds.
    settle_timeout: float = 240.0
    callbacks_timeout: float = 60.0
    progress_every: float = 3.0
    seed: int = 20261123
    workdir: Path | None = None
    keep: bool = False

    @classmethod
    def short(cls, **overrides: Any) -> ChaosConfig:
        """A few hundred calls, all the same faults and events, in about a minute."""
        base: dict[str, Any] = {
            "calls": 300,
            "kill_every": 3.0,
            "settle_timeout": 90.0,
            "callbacks_timeout": 40.0,
        }
        base.update(overrides)
        return cls(**base)

    @property
    def permits_per_second(self) -> float:
        return self.rate_limit / (self.period + self.margin)

    @property
    def expected_dial_seconds(self) -> float:
        """Roughly how long dialling takes at the limit, with retries and searches."""
        return self.calls * 1.3 / self.permits_per_second

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["workdir"] = str(self.workdir) if self.workdir else None
        return out


@dataclass
class ChaosReport:
    config: ChaosConfig
    checks: list[Check]
    figures: dict[str, Any]
    events: list[tuple[float, str]]
    timings: dict[str, float]
    workdir: str
    started_at: str
    code: str = "unknown"
    #: A failed line explained (see :meth:`_Run.explain`): records, logs, deliveries.
    diagnostics: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at,
            "code": self.code,
            "config": self.config.as_dict(),
            "checks": [c.as_dict() for c in self.checks],
            "figures": self.figures,
            "events": [{"t": round(t, 1), "event": e} for t, e in self.events],
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
            "workdir": self.workdir,
            "diagnostics": self.diagnostics,
        }

    def render(self) -> str:
        from chaos.table import render_report

        return render_report(self)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=False) + "\n")


def code_version() -> str:
    """``git`` commit of the code under test (``-dirty`` with local changes), or "unknown"."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def campaign_rows(
    n: int, start: int, rng: random.Random, cfg: ChaosConfig, *, share: int = 0
) -> bytes:
    """A campaign CSV of ``n`` rows numbered from ``start``: numbers of their own, small
    TimeLimit/TimeOut (so in-doubt proof comes within the run), and every ``flow_every``-th
    row connected to a flow instead of a number. ``share`` (the size of an earlier campaign
    numbered from 0): every ``shared_every``-th row takes the numbers of one of its rows
    instead, so two campaigns call the same people (reconcile decides jointly over them).
    """
    lines = ["From,To,CallerId,Url,CustomField,TimeLimit,TimeOut"]
    for i in range(start, start + n):
        who = i
        if share and cfg.shared_every and (i - start) % cfg.shared_every == 0:
            who = (i - start) % share
        frm = f"+9198{who:08d}"
        limit = rng.randint(2, cfg.time_limit_max)
        timeout = rng.randint(1, cfg.time_out_max)
        if cfg.flow_every and who % cfg.flow_every == 0:
            url = f"http://my.exotel.com/chaos/exoml/start_voice/{1000 + i}"
            lines.append(f"{frm},,08030752400,{url},order-{i},{limit},{timeout}")
        else:
            lines.append(f"{frm},+9197{who:08d},08030752400,,order-{i},{limit},{timeout}")
    return ("\n".join(lines) + "\n").encode()


class _Run:
    """One chaos run, start to finish. Use :func:`run_chaos`."""

    def __init__(self, cfg: ChaosConfig, out: Out) -> None:
        self.cfg = cfg
        self.out = out
        self.rng = random.Random(cfg.seed)
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.timings: dict[str, float] = {}
        self.own_workdir = cfg.workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="chaos-")) if cfg.workdir is None else cfg.workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_dir = self.workdir / "redis"
        self.redis_server: EmbeddedRedis | None = None
        self.sim: Simulator | None = None
        self.receiver: Receiver | None = None
        self.pool: WorkerPool | None = None
        self.ledger: Ledger | None = None
        self.settings: Settings | None = None
        self.campaigns: dict[str, list[str]] = {}
        self.numbers: list[str] = []  # every From enqueued (for calls we did not place)
        self.diagnostics: list[str] = []

    # --- helpers ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str) -> None:
        t = self.now()
        self.events.append((t, text))
        self.out(f"[chaos {t:6.1f}s] {text}")

    # --- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        self.redis_server = EmbeddedRedis(self.redis_dir, appendonly=True).start()
        sid, key, token = ACCOUNT
        sim_config = SimConfig(
            accounts=[Account(sid, key, token, rate_limit=cfg.rate_limit, period=cfg.period)],
            time_scale=cfg.time_scale,
            latency=True,
            p_500=cfg.p_500,
            p_504=cfg.p_504,
            p_slow_placed=cfg.p_slow_placed,
            slow_seconds=cfg.slow_seconds,
            p_reset_after=cfg.p_reset_after,
            p_reset_before=cfg.p_reset_before,
            callbacks=True,
            p_duplicate_callback=cfg.p_duplicate_callback,
            p_late_callback=cfg.p_late_callback,
            seed=cfg.seed,
        )
        self.sim = Simulator(sim_config).start()
        port = free_port()
        # The shipped defaults, time-scaled (the limit's period is 5 s, not 60: 12 times
        # faster), and what the chaos is about: its own limit and margin, short calls and
        # proofs, a callback receiver, more attempts of a kind that fails often.
        base = Settings(_env_file=None)
        self.settings = Settings(
            _env_file=None,
            **{
                **time_scaled(base, CHAOS_SPEED),
                "redis_url": self.redis_server.url,
                "key_prefix": "chaos",
                "exotel_account_sid": sid,
                "exotel_api_key": SecretStr(key),
                "exotel_api_token": SecretStr(token),
                "exotel_base_url": self.sim.url,
                "exotel_caller_id": "08030752400",
                "exotel_read_timeout": cfg.read_timeout,
                "exotel_origination_window_seconds": cfg.origination_window,
                "rate_limit_calls": cfg.rate_limit,
                "rate_limit_period_seconds": cfg.period,
                "rate_limit_margin_seconds": cfg.margin,
                "max_attempts": cfg.max_attempts,
                "call_status_backfill_margin_seconds": cfg.status_backfill_margin,
                "call_status_backfill_interval_seconds": cfg.status_backfill_interval,
                "callback_url": f"http://127.0.0.1:{port}{CALLBACK_PATH}",
                "callback_token": SecretStr(f"chaos-cb-{self.rng.getrandbits(64):016x}"),
                "worker_concurrency": cfg.concurrency,
                # kombu restores a killed worker's unacknowledged messages after this: short,
                # so the chaos sees it happen (the sweeper's overdue guard comes first).
                "visibility_timeout_seconds": 60,
            },
        )
        self.ledger = Ledger(make_redis(self.redis_server.url), Keys(self.settings.key_prefix))
        self.receiver = Receiver(self.settings, self.workdir, port).start()
        self.pool = WorkerPool(
            self.settings,
            self.workdir,
            concurrency=cfg.concurrency,
            rng=random.Random(cfg.seed + 1),
        )
        self.pool.start(cfg.workers)
        self.event(
            f"up: redis :{self.redis_server.port} (AOF) in {self.redis_dir}, simulator "
            f"{self.sim.url}, receiver :{port}, {cfg.workers} workers x {cfg.concurrency} threads"
        )

    def enqueue(
        self, campaign: str, n: int, start: int, *, share: int = 0, redial: bool = False
    ) -> None:
        assert self.settings is not None
        data = campaign_rows(n, start, self.rng, self.cfg, share=share)
        rows = [
            item
            for item in read_rows(io.BytesIO(data), default_caller_id="08030752400")
            if isinstance(item, CallRequest)
        ]
        ids = [request_id(campaign, item.row_key()) for item in rows]
        self.numbers += [item.from_ for item in rows]
        options = (
            CampaignOptions(
                redial_on=("busy",), redials=1, redial_interval=self.cfg.redial_interval
            )
            if redial
            else None
        )
        began = time.monotonic()
        result = Enqueuer(self.settings).enqueue_file(io.BytesIO(data), campaign, options=options)
        took = time.monotonic() - began
        self.campaigns[campaign] = ids
        self.event(
            f"enqueued {campaign}: {result.accepted} accepted, {len(result.rejected)} rejected "
            f"in {took:.2f} s"
        )
        if result.accepted != n or result.rejected:
            raise RuntimeError(f"enqueue of {campaign} was refused: {result.as_dict()}")

    # --- the chaos ---------------------------------------------------------------------------

    def list_a_call_not_ours(self) -> None:
        """A call Call Details lists that we did not place, from one of our numbers: the
        customer calling the ExoPhone (inbound), or another system calling from it."""
        assert self.sim is not None
        if not self.numbers:
            return
        frm = self.rng.choice(self.numbers)
        if self.rng.random() < 0.75:
            self.sim.add_call(from_=frm, to="08030752400", direction="inbound")
        else:
            other = f"+9196{self.rng.randrange(10**8):08d}"
            self.sim.add_call(from_=frm, to=other, direction="outbound-api")

    def awaiting_status(self) -> int | None:
        """Originated calls still waiting for their call_status (None while Redis is away)."""
        assert self.ledger is not None
        try:
            return int(self.ledger.redis.zcard(self.ledger.keys.awaiting_status()))
        except (redis.RedisError, OSError):
            return None

    def restart_redis(self) -> None:
        assert self.redis_server is not None
        port = self.redis_server.port
        self.event(f"redis: stopping (AOF kept) for {self.cfg.redis_down_seconds:g} s")
        self.redis_server.stop()
        time.sleep(self.cfg.redis_down_seconds)
        began = time.monotonic()
        self.redis_server = EmbeddedRedis(self.redis_dir, port=port, appendonly=True).start()
        self.timings["redis_reload"] = time.monotonic() - began
        self.event(f"redis: back on :{port} after {time.monotonic() - began:.2f} s load")

    def restart_receiver(self) -> None:
        assert self.receiver is not None
        away = self.receiver.restart(self.cfg.receiver_down_seconds)
        self.event(f"receiver: restarted, away {away:.2f} s (pid {self.receiver.pid})")

    def states(self) -> dict[str, int] | None:
        """Summed states of every campaign, or None while Redis does not answer."""
        assert self.ledger is not None
        total: dict[str, int] = {}
        try:
            for campaign in self.campaigns:
                for s, v in self.ledger.status(campaign).states.items():
                    total[s] = total.get(s, 0) + v
        except (redis.RedisError, OSError):
            return None
        return total

    def progress(self, phase: str) -> None:
        assert self.sim is not None and self.pool is not None
        states = self.states()
        truth = self.sim.truth()
        requests, originated = truth["requests"], truth["originated"]
        limited = truth["rate_limited"]
        window = max(truth["max_in_window"].values() or [0])
        shown = (
            " ".join(f"{k} {v}" for k, v in states.items() if v)
            if states is not None
            else "redis down"
        )
        self.out(
            f"[chaos {self.now():6.1f}s] {phase}: {shown} | sim requests {requests} "
            f"placed {originated} 429s {limited} max/window {window} | "
            f"workers {len(self.pool.alive())} killed {self.pool.killed}"
        )

    def busy(self, *, in_doubt: bool) -> int | None:
        """Calls not settled yet (None while Redis does not answer). With ``in_doubt``, those
        in doubt count too, except the ones left for a person (reconcile's ``ambiguous``:
        two requests with the same numbers, a candidate call either could own), which no
        waiting settles."""
        states = self.states()
        if states is None:
            return None
        names = ["queued", "dialing", "retrying"] + (["in_doubt"] if in_doubt else [])
        busy = sum(states.get(s, 0) for s in names)
        if in_doubt and busy and busy == states.get("in_doubt", 0):
            left = self.left_for_a_person()
            busy = busy - left if left is not None else busy
        return busy

    def left_for_a_person(self) -> int | None:
        """In-doubt calls reconcile left ``ambiguous`` (None while Redis does not answer)."""
        assert self.ledger is not None
        try:
            return sum(
                1
                for campaign in self.campaigns
                for rec in self.ledger.call_records(campaign)
                if left_for_a_person(rec)
            )
        except (redis.RedisError, OSError):
            return None

    def chaos_phase(self) -> None:
        """Kills, a Redis restart, a receiver restart, a second campaign: until nothing is
        left to dial (or the bound)."""
        cfg = self.cfg
        assert self.pool is not None
        first = round(cfg.calls * (1 - cfg.second_share))
        self.enqueue("chaos-a", first, 0, redial=cfg.redial_busy)
        began = time.monotonic()
        expected = cfg.expected_dial_seconds
        pending = [
            (cfg.second_at * expected, "second"),
            (cfg.redis_restart_at * expected, "redis"),
            (cfg.receiver_restart_at * expected, "receiver"),
        ]
        pending.sort()
        next_kill = began + max(cfg.kill_every, 4.0)  # let the first workers come up
        next_progress = began
        next_listed = began
        bound = began + expected * 2 + 45
        while True:
            now = time.monotonic()
            if pending and now - began >= pending[0][0]:
                _, what = pending.pop(0)
                if what == "second":
                    self.enqueue("chaos-b", cfg.calls - first, first, share=first)
                elif what == "redis":
                    self.restart_redis()
                else:
                    self.restart_receiver()
                continue
            if now >= next_kill:
                pid = self.pool.kill_one(min_age=1.0)
                if pid is not None:
                    self.event(f"SIGKILL worker pid {pid}; replacement started")
                next_kill = now + cfg.kill_every * self.rng.uniform(0.7, 1.3)
            died = self.pool.ensure(cfg.workers)
            if died:
                self.event(f"worker(s) exited by themselves (exit codes {died}); replaced")
            if now >= next_progress:
                self.progress("chaos")
                next_progress = now + cfg.progress_every
            if cfg.listed_not_ours_per_second > 0 and now >= next_listed:
                self.list_a_call_not_ours()
                next_listed = now + 1.0 / cfg.listed_not_ours_per_second
            if not pending:
                left = self.busy(in_doubt=False)
                if left == 0:
                    break
            if now > bound:
                self.event("chaos phase bound reached with calls still to dial")
                break
            time.sleep(0.2)
        self.timings["chaos_phase"] = time.monotonic() - began
        self.event(f"chaos over: {self.pool.killed} workers killed; waiting for calls to settle")

    def settle_phase(self) -> None:
        """No more faults of ours: wait (bounded) for every call to settle, in-doubt ones
        included, for the simulator's callbacks to be delivered or given up, and for every
        originated call to have its call_status (the backfill). A status may redial a call,
        so this goes round until all three hold at once."""
        cfg = self.cfg
        assert self.pool is not None and self.sim is not None
        began = time.monotonic()
        next_progress = began
        settled = drained = 0.0
        while time.monotonic() - began < cfg.settle_timeout + cfg.callbacks_timeout:
            died = self.pool.ensure(cfg.workers)
            if died:
                self.event(f"worker(s) exited by themselves (exit codes {died}); replaced")
            busy = self.busy(in_doubt=True)
            pending = self.sim.truth()["callbacks"]["pending"]
            awaiting = self.awaiting_status()
            if busy == 0 and not settled:
                settled = time.monotonic() - began
            if busy == 0 and pending == 0 and not drained:
                drained = time.monotonic() - began
            if busy == 0 and pending == 0 and awaiting == 0:
                break
            if time.monotonic() >= next_progress:
                self.progress(f"settle (callbacks pending {pending}, awaiting status {awaiting})")
                next_progress = time.monotonic() + cfg.progress_every
            time.sleep(0.25)
        else:
            self.event("settle bound reached")
        total = time.monotonic() - began
        self.timings["settle_phase"] = settled or total
        self.timings["callbacks_drain"] = max(0.0, (drained or total) - (settled or total))
        self.timings["status_backfill"] = max(0.0, total - (drained or total))
        self.progress("settled")

    # --- verdict -------------------------------------------------------------------------------

    def collect(self) -> tuple[list[Check], dict[str, Any]]:
        assert self.ledger is not None and self.sim is not None and self.settings is not None
        assert self.pool is not None and self.receiver is not None
        ledger = self.ledger
        truth = self.sim.truth()
        data = []
        for campaign, ids in self.campaigns.items():
            records = list(ledger.call_records(campaign))
            buf = io.StringIO()
            write_report(ledger, campaign, buf, "csv")
            report = list(csv.DictReader(io.StringIO(buf.getvalue())))
            pipe = ledger.redis.pipeline(transaction=False)
            rids = [r.request_id for r in records]
            for rid in rids:
                pipe.lrange(ledger.keys.attempts(rid), 0, -1)
            logs = {
                rid: [json.loads(x) for x in raw]
                for rid, raw in zip(rids, pipe.execute(), strict=True)
            }
            data.append(
                CampaignData(
                    campaign=campaign,
                    accepted=ids,
                    records=records,
                    status=ledger.status(campaign).as_dict(),
                    report=report,
                    attempts=logs,
                )
            )
        pending = self.pending_callbacks()
        sec, usec = ledger.redis.time()
        checks, figures = judge(
            data, truth, self.settings, sec * 1000 + usec // 1000, pending_callbacks=pending
        )
        for check in checks:
            if not check.ok and check.subjects:
                self.diagnostics += self.explain(check, truth)
        figures["workers_killed"] = self.pool.killed
        figures["workers_started"] = self.pool.started
        figures["workers_exited_by_themselves"] = len(self.pool.exits)
        figures["sweeper_requeue_log_lines"] = self.pool.grep("requeue")
        figures["worker_error_lines"] = self.pool.grep(" ERROR", "Traceback", " CRITICAL")
        figures["redis_restarts"] = 1
        figures["receiver_restarts"] = self.receiver.restarts
        figures["awaiting_status_left"] = self.awaiting_status()
        figures["pending_callbacks_left"] = len(pending)
        return checks, figures

    def pending_callbacks(self) -> dict[str, str]:
        """Sid -> status of every callback the ledger keeps pending (its Sid not recorded)."""
        assert self.ledger is not None
        ledger = self.ledger
        prefix = ledger.keys.pending_callback("")
        keys = list(ledger.redis.scan_iter(match=prefix + "*", count=1000))
        raws = ledger.redis.mget(keys) if keys else []
        out: dict[str, str] = {}
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                continue  # expired meanwhile
            try:
                out[str(key)[len(prefix) :]] = CallbackEvent.from_json(str(raw)).status
            except ValueError:
                out[str(key)[len(prefix) :]] = "(unreadable)"
        return out

    def explain(self, check: Check, truth: dict[str, Any]) -> list[str]:
        """What a failed line's calls went through, so that a failing run explains itself:
        each one's record and attempts log, the simulator's calls and callback deliveries
        for it (every try, with the receiver's answer), what the ledger keeps for those Sids
        (index, pending callback), and the receiver's and workers' log lines naming it."""
        assert self.ledger is not None and self.receiver is not None and self.pool is not None
        ledger, keys = self.ledger, self.ledger.keys
        logs = [self.receiver.log] + [w.log for w in self.pool.workers]
        texts = {p: p.read_text(errors="replace").splitlines() for p in logs if p.exists()}
        out = [f"EXPLAIN {check.name}:"]
        for rid in check.subjects:
            calls = [c for c in truth.get("calls", []) if c.get("custom_field") == rid]
            sids = [str(c["sid"]) for c in calls]
            deliveries = [
                d
                for d in truth.get("callbacks", {}).get("deliveries", [])
                if d.get("custom_field") == rid or d.get("call_sid") in sids
            ]
            out.append(f"-- {rid}")
            try:
                out.append(f"   record: {ledger.redis.hgetall(keys.call(rid))!r}")
                for line in ledger.redis.lrange(keys.attempts(rid), 0, -1):
                    out.append(f"   attempt log: {line!r}")
                for sid in sids:
                    pending = ledger.redis.get(keys.pending_callback(sid))
                    out.append(
                        f"   sid {sid}: index -> {ledger.redis.hget(keys.sids(), sid)!r}, "
                        f"pending callback: {pending!r}"
                    )
            except (redis.RedisError, OSError) as exc:
                out.append(f"   ledger unreadable: {exc}")
            for c in calls:
                out.append(f"   simulator call: {c}")
            for d in deliveries:
                shown = {k: v for k, v in d.items() if k not in ("url", "tries")}
                out.append(f"   delivery: {shown}")
                for t in d.get("tries", []):
                    out.append(f"     try at {t[0]}: HTTP {t[1]} {t[2]}")
            needles = [rid, *sids]
            for path, lines in texts.items():
                for line in lines:
                    if any(n in line for n in needles):
                        out.append(f"   {path.name}: {line[:300]}")
        return out

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.receiver is not None:
            self.receiver.stop()
        if self.sim is not None:
            self.sim.stop()
        if self.ledger is not None:
            self.ledger.redis.close()
        if self.redis_server is not None:
            self.redis_server.stop()


def run_chaos(cfg: ChaosConfig | None = None, out: Out = print) -> ChaosReport:
    """Run one chaos campaign and return its verdict (``report.ok``). Prints progress lines
    through ``out``. The run's directory (logs, AOF) is removed afterwards unless the run
    failed or ``cfg.keep``."""
    cfg = cfg or ChaosConfig()
    code_at_start = code_version()
    run = _Run(cfg, out)
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %z")
    checks: list[Check] = []
    figures: dict[str, Any] = {}
    try:
        run.setup()
        run.chaos_phase()
        run.settle_phase()
        checks, figures = run.collect()
    except Exception as exc:
        run.event(f"run aborted: {type(exc).__name__}: {exc}")
        checks = [Check("the run completed", False, f"{type(exc).__name__}: {exc}", "yes")]
    finally:
        run.teardown()
    run.timings["total"] = run.now()
    report = ChaosReport(
        config=cfg,
        checks=checks,
        figures=figures,
        events=run.events,
        timings=run.timings,
        workdir=str(run.workdir),
        started_at=started_at,
        code=code_at_start,
        diagnostics=run.diagnostics,
    )
    code_at_end = code_version()
    if code_at_end != code_at_start:
        report.code = f"{code_at_start}, then {code_at_end} (the code changed during the run)"
    if report.ok and run.own_workdir and not cfg.keep:
        shutil.rmtree(run.workdir, ignore_errors=True)
        report.workdir = ""
    return report
