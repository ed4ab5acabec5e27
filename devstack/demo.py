"""``make run`` (``python -m devstack.demo``, ``callq run``): the whole stack and one campaign.

From a fresh clone with only Python, it:

1. reads the settings (environment and ``.env``). With ``REDIS_URL`` unset it starts an
   embedded Redis of its own (AOF under ``./.data/redis``), even when another Redis answers.
   Without Exotel credentials it starts the Exotel simulator with a small, realistic fault mix;
2. starts the StatusCallback receiver, worker processes (threads pool) and Flower (generated
   basic-auth credentials, printed);
3. with the simulator, runs time-scaled: ``DEMO_SPEED`` (or ``--speed``, default 10) divides
   the simulator's clock and the limiter's period, margin and the other waits alike, so the
   200/min behaviour shows ten times faster. With real credentials nothing is scaled;
4. enqueues ``examples/campaign.csv`` (rejected lines are printed with their reasons), shows
   live progress, and when the campaign is settled and its callbacks are in (or at
   ``--timeout``) prints a summary, writes ``reports/<campaign>.csv`` and
   ``reports/<campaign>.summary.json`` (the same figures, machine-readable);
5. stops everything (on completion, Ctrl-C or SIGTERM) and leaves nothing running.

Exit status: 0 when the verdict is clean (no call placed twice, no window over the limit,
every call settled), 1 otherwise, 2 for bad settings or usage, 130 when interrupted.

``make up`` (``callq up``) starts the same stack without a campaign and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit

from callq.ids import CAMPAIGN_RE
from callq.settings import ConfigError, Settings, load_settings, time_scaled
from callq.store.connect import redis_for
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.progress import Monitor, Snapshot, render_line, render_live, render_summary, summarise
from devstack.stack import (
    Child,
    Stack,
    StackError,
    child_env,
    http_status,
    pick_port,
    python_module_argv,
    worker_argv,
)

__all__ = ["build_parser", "main", "up_main"]

SIM_SID, SIM_KEY, SIM_TOKEN = "sim-account", "sim-key", "sim-token"
DEFAULT_SPEED = 10.0
MAX_SPEED = 1000.0
#: The simulator's fault mix: a few not-placed errors, a few placed-but-no-answer replies.
FAULT_MIX: dict[str, float] = {
    "p-500": 0.03,
    "p-504": 0.02,
    "p-slow-placed": 0.01,
    "p-reset-after": 0.005,
    "p-duplicate-callback": 0.05,
}
FLOWER_PORT = 5555
FLOWER_USER = "callq"
CALLBACK_PATH = "/exotel/status-callback"
REFRESH_SECONDS = 0.5
PLAIN_EVERY_SECONDS = 5.0


# --- small helpers ------------------------------------------------------------------------


class Interrupts:
    """SIGINT/SIGTERM/SIGHUP set a flag; the loops look at it. A second one hurries the stop."""

    def __init__(self) -> None:
        self.count = 0
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.signum = signum

    def __call__(self) -> bool:
        return self.count > 0

    def twice(self) -> bool:
        return self.count > 1


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _clip(line: str, width: int) -> str:
    """Cut a line to ``width`` visible characters, keeping colour codes intact."""
    out, seen, i = [], 0, 0
    while i < len(line):
        m = _ANSI.match(line, i)
        if m:
            out.append(m.group())
            i = m.end()
            continue
        if seen >= width:
            i += 1
            continue
        out.append(line[i])
        seen += 1
        i += 1
    return "".join(out)


class Console:
    """Plain lines, plus one live block that is redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, *, live: bool, color: bool) -> None:
        self.stream = stream
        self.live = live
        self.color = color
        self._drawn = 0

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def say(self, text: str = "") -> None:
        self._erase()
        self.stream.write(text + "\n")
        self.stream.flush()

    def draw(self, lines: list[str]) -> None:
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        self._erase()
        for line in lines:
            self.stream.write(_clip(line, width) + "\x1b[K\n")
        self._drawn = len(lines)
        self.stream.flush()

    def keep(self) -> None:
        """Leave the last block on screen; what follows is written below it."""
        self._drawn = 0


def _read_speed(args: argparse.Namespace) -> tuple[float, str]:
    if args.speed is not None:
        return float(args.speed), "--speed"
    raw = os.environ.get("DEMO_SPEED")
    where = "DEMO_SPEED"
    if raw is None and Path(".env").is_file():
        from dotenv import dotenv_values

        raw = dotenv_values(".env").get("DEMO_SPEED")
        where = "DEMO_SPEED in .env"
    if raw in (None, ""):
        return DEFAULT_SPEED, "default"
    try:
        return float(str(raw)), where
    except ValueError:
        raise ConfigError(f"{where}: not a number (got {raw!r})") from None


def default_campaign_file() -> Path | None:
    """``examples/campaign.csv`` of the repository this package lives in, else of the cwd."""
    here = Path(__file__).resolve().parent.parent / "examples" / "campaign.csv"
    for path in (here, Path.cwd() / "examples" / "campaign.csv"):
        if path.is_file():
            return path
    return None


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    out: Console
    interrupts: Interrupts
    started: float = field(default_factory=time.monotonic)
    stack: Stack = field(init=False)
    settings: Settings | None = None
    simulated: bool = False
    embedded_redis: bool = False
    speed: float = 1.0
    sim_url: str | None = None
    callback_port: int | None = None
    flower_url: str | None = None
    flower_password: str = ""
    workers: list[Child] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = Path(self.args.data_dir)
        self.stack = Stack(data, data / "logs", say=self.out.say)

    # --- settings --------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        """Decide what runs where; returns the overrides known before anything starts."""
        base = load_settings()
        self.base = base
        speed, speed_from = _read_speed(self.args)
        if not 0 < speed <= MAX_SPEED:
            raise ConfigError(f"{speed_from}: the speed must be in (0, {MAX_SPEED:g}]")
        overrides: dict[str, Any] = {}
        self.simulated = not base.has_exotel_credentials
        if self.simulated:
            self.speed = speed
            overrides.update(
                exotel_account_sid=SIM_SID,
                exotel_api_key=SIM_KEY,
                exotel_api_token=SIM_TOKEN,
                **time_scaled(base, speed),
            )
        else:
            self.speed = 1.0
            if speed_from != "default":
                self.out.say(
                    f"note: real Exotel credentials found; {speed_from} is ignored "
                    "(real limits, real time)"
                )
        self.embedded_redis = not base.redis_url
        self.overrides = overrides
        return overrides

    # --- start -----------------------------------------------------------------------

    def start(self) -> None:
        overrides = dict(self.overrides)
        self.stack.check_stale()
        say = self.out.say
        if self.embedded_redis:
            url = self.stack.start_redis(Path(self.args.data_dir) / "redis")
            overrides["redis_url"] = url
            say(f"redis      {url}  (embedded, append-only file in {self.args.data_dir}/redis)")
        else:
            say(f"redis      {self._safe_url(self.base.require_redis_url())}  (REDIS_URL)")
        if self.simulated:
            self._start_simulator(overrides)
            overrides["exotel_base_url"] = self.sim_url
        else:
            say(
                f"exotel     {self.base.exotel_api_base}  (REAL calls: account "
                f"{self.base.exotel_account_sid})"
            )
        self._start_receiver(overrides)
        self.settings = load_settings(**overrides)
        self.stack.extra = {"mode": self.mode()}
        self._start_workers()
        if not self.args.no_flower:
            self._start_flower()
        self._wait_workers()

    def note_unsettled(self, limit: int = 200) -> None:
        """Say which campaigns already in this Redis are not settled: the workers dial them
        too (a run that was interrupted resumes here)."""
        assert self.settings is not None
        s = self.settings
        client = redis_for(s)
        try:
            ledger = Ledger(client, Keys.for_settings(s))
            names = sorted(client.sscan_iter(ledger.keys.campaigns(), count=500))[:limit]
            for name in names:
                st = ledger.status(str(name))
                if not st.settled:
                    left = sum(st.states.get(k, 0) for k in ("queued", "dialing", "retrying"))
                    doubt = st.states.get("in_doubt", 0)
                    self.out.say(
                        f"resuming   campaign {name}: {left} calls left to dial, {doubt} in "
                        "doubt (from an earlier run; the workers finish it too)"
                    )
        finally:
            client.close()

    @staticmethod
    def _safe_url(url: str) -> str:
        """The URL with every password hidden (each part of a Sentinel URL too)."""
        for part in url.split(";"):
            password = urlsplit(part).password
            if password:
                url = url.replace(f":{password}@", ":***@")
        return url

    def _start_simulator(self, overrides: dict[str, Any]) -> None:
        b = self.base
        period = b.rate_limit_period_seconds / self.speed
        # Speed 1 has no overrides (time_scaled): the shipped read timeout then.
        read_timeout = float(overrides.get("exotel_read_timeout", b.exotel_read_timeout))
        argv = python_module_argv(
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--account-sid",
            SIM_SID,
            "--api-key",
            SIM_KEY,
            "--api-token",
            SIM_TOKEN,
            "--rate-limit",
            str(b.rate_limit_calls),
            "--period",
            f"{period:g}",
            "--time-scale",
            f"{1.0 / self.speed:g}",
            # A slow reply outlasts the read timeout: the call is placed but we cannot know.
            "--slow-seconds",
            f"{read_timeout + 2.0:g}",
        )
        for name, p in FAULT_MIX.items():
            argv += [f"--{name}", f"{p:g}"]
        child = self.stack.spawn("simulator", argv, child_env(b))
        url: list[str] = []

        def ready() -> bool:
            text = child.log.read_text(errors="replace") if child.log.exists() else ""
            found = re.search(r"^(http://\S+)$", text, re.MULTILINE)
            if found and http_status(found.group(1) + "/_sim/health") == 200:
                url.append(found.group(1))
                return True
            return False

        if not self.stack.wait_until(child, ready, timeout=20, interrupted=self.interrupts):
            self._not_ready(child)
        self.sim_url = url[0]
        child.port = urlsplit(self.sim_url).port
        self.stack.write_pidfile()
        faults = ", ".join(f"{k.removeprefix('p-')} {v:g}" for k, v in FAULT_MIX.items())
        self.out.say(
            f"simulator  {self.sim_url}  (x{self.speed:g} speed: limit {b.rate_limit_calls} per "
            f"{period:g} s; faults: {faults})"
        )

    def _not_ready(self, child: Child) -> None:
        if self.interrupts():
            raise StackError("interrupted while starting")
        raise StackError(
            f"{child.name} did not become ready; last lines of {child.log}:\n{child.tail()}"
        )

    def _start_receiver(self, overrides: dict[str, Any]) -> None:
        say = self.out.say
        b = self.base
        if self.simulated:
            token = secrets.token_urlsafe(24)
        else:
            token = b.callback_token.get_secret_value() or secrets.token_urlsafe(24)
            if not b.callback_url:
                say(
                    "warning: CALLBACK_URL is not set: Exotel gets no StatusCallback, so "
                    "call_status will not arrive. Set CALLBACK_URL to a public URL that reaches "
                    "the receiver."
                )
                overrides["callback_url"] = None
                return
        if find_spec("callbacks.__main__") is None:
            say(
                "warning: the callback receiver (python -m callbacks) is not available; "
                "running without StatusCallbacks: call_status will not arrive"
            )
            overrides["callback_url"] = None
            return
        port = pick_port(self.args.callbacks_port)
        overrides["callback_token"] = token
        env = child_env(load_settings(**{**overrides, "callback_url": None}), CALLBACK_TOKEN=token)
        argv = python_module_argv(
            "callbacks", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"
        )
        child = self.stack.spawn("callbacks", argv, env, port=port)
        try:
            ok = self.stack.wait_until(
                child,
                lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200,
                timeout=20,
                interrupted=self.interrupts,
            )
        except StackError as exc:
            ok = False
            say(f"warning: {exc}")
        if not ok:
            if self.interrupts():
                raise StackError("interrupted while starting")
            say(
                "warning: the callback receiver did not start; running without "
                "StatusCallbacks: call_status will not arrive"
            )
            self.stack.terminate([child], lambda: False)
            overrides["callback_url"] = None
            return
        self.callback_port = port
        local = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        if self.simulated:
            overrides["callback_url"] = local
            say(f"callbacks  {local}  (token generated for this run)")
        else:
            say(f"callbacks  {local}  (CALLBACK_URL {b.callback_url} must reach it)")

    def _start_workers(self) -> None:
        assert self.settings is not None
        env = child_env(self.settings)
        tag = secrets.token_hex(3)
        for i in range(self.args.workers):
            argv = worker_argv(f"demo{i + 1}-{tag}@%h", self.settings.worker_concurrency)
            # Longer than one attempt can last, so a warm shutdown finishes what it started.
            grace = self.settings.exotel_connect_timeout + self.settings.exotel_read_timeout + 10
            self.workers.append(self.stack.spawn(f"worker{i + 1}", argv, env, grace=grace))

    def _wait_workers(self) -> None:
        def ready(c: Child) -> Callable[[], bool]:
            return lambda: "ready." in c.log.read_text(errors="replace")

        for c in self.workers:
            if not self.stack.wait_until(c, ready(c), timeout=90, interrupted=self.interrupts):
                self._not_ready(c)
        assert self.settings is not None
        self.out.say(
            f"workers    {len(self.workers)} x {self.settings.worker_concurrency} threads "
            f"(pids {', '.join(str(c.pid) for c in self.workers)}; logs in "
            f"{self.stack.log_dir}/)"
        )
        if self.flower_url:
            flower = next(c for c in self.stack.children if c.name == "flower")
            try:
                ok = self.stack.wait_until(
                    flower,
                    lambda: http_status(f"{self.flower_url}/healthcheck") is not None,
                    timeout=30,
                    interrupted=self.interrupts,
                )
            except StackError as exc:
                ok = False
                self.out.say(f"warning: {exc}")
            if ok:
                self.out.say(
                    f"flower     {self.flower_url}  (user {FLOWER_USER}, password "
                    f"{self.flower_password})"
                )
            else:
                self.out.say("warning: Flower did not start; going on without it")

    def _start_flower(self) -> None:
        assert self.settings is not None
        port = pick_port(self.args.flower_port)
        self.flower_password = secrets.token_urlsafe(12)
        env = child_env(self.settings, FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{self.flower_password}")
        argv = python_module_argv(
            "celery", "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}"
        )
        self.stack.spawn("flower", argv, env, port=port, grace=5)
        self.flower_url = f"http://127.0.0.1:{port}"

    def mode(self) -> dict[str, Any]:
        assert self.settings is not None
        return {
            "exotel": "simulator" if self.simulated else "real",
            "redis": "embedded" if self.embedded_redis else "external",
            "speed": self.speed,
            "workers": len(self.workers) or self.args.workers,
            "callbacks": self.settings.callback_url is not None,
            "rate_limit_calls": self.settings.rate_limit_calls,
            "rate_limit_period_seconds": self.settings.rate_limit_period_seconds,
        }

    # --- the campaign ----------------------------------------------------------------

    def campaign_file(self) -> Path:
        if self.args.campaign_file:
            path = Path(self.args.campaign_file)
            if not path.is_file():
                raise ConfigError(f"--campaign-file: no such file: {path}")
            return path
        path_or_none = default_campaign_file()
        if path_or_none is None:
            raise ConfigError("examples/campaign.csv not found: pass --campaign-file FILE.csv")
        if not self.simulated:
            raise ConfigError(
                "real Exotel credentials are set: refusing to dial the made-up numbers of "
                "examples/campaign.csv. Pass --campaign-file YOUR.csv, or unset EXOTEL_* to "
                "use the simulator."
            )
        return path_or_none

    def enqueue(self, path: Path, campaign: str) -> dict[str, Any]:
        from callq.intake.enqueue import Enqueuer

        assert self.settings is not None
        say = self.out.say
        say(f"enqueue    {_rel(path)} as campaign {campaign}")
        with open(path, "rb") as fh:
            result = Enqueuer(self.settings).enqueue_file(fh, campaign)
        for issue in result.issues:
            say(f"  warning: {issue.message}")
        for err in result.rejected:
            say(f"  rejected: {err}")
        for dup in result.duplicates:
            say(f"  duplicate: {dup}")
        say(
            f"  accepted {result.accepted}, rejected {len(result.rejected)}, duplicates "
            f"{len(result.duplicates)}, already enqueued {result.existing}"
        )
        return result.as_dict()

    def monitor(self, campaign: str) -> tuple[Snapshot, bool, Monitor]:
        """Show progress until settled with callbacks in, a timeout, or an interrupt."""
        assert self.settings is not None
        s = self.settings
        ledger = Ledger(redis_for(s), Keys.for_settings(s))
        mon = Monitor(
            ledger,
            campaign,
            limit=s.rate_limit_calls,
            window=s.rate_limit_period_seconds,
            sim_url=self.sim_url,
        )
        expect_cb = s.callback_url is not None
        title = f"campaign {campaign}" + (
            f"  ·  simulator x{self.speed:g}" if self.simulated else "  ·  REAL Exotel"
        )
        deadline = time.monotonic() + self.args.timeout
        last_plain = -1e9
        quiet_since: float | None = None
        settled_at: float | None = None
        warned: set[str] = set()
        timed_out = False
        while True:
            now = time.monotonic()
            snap = mon.poll()
            if self.out.live:
                self.out.draw(
                    render_live(
                        snap, title=title, color=self.out.color, callbacks_expected=expect_cb
                    )
                )
            elif now - last_plain >= PLAIN_EVERY_SECONDS:
                self.out.say(render_line(snap))
                last_plain = now
            for c in self.stack.dead_children():
                if c.name not in warned:
                    warned.add(c.name)
                    self.out.say(
                        f"warning: {c.name} (pid {c.pid}) exited with "
                        f"{c.proc.returncode}; see {c.log}"
                    )
            if self.workers and all(not c.alive() for c in self.workers):
                raise StackError(f"every worker has exited; see the logs in {self.stack.log_dir}/")
            if snap.settled and snap.status.total > 0:
                settled_at = settled_at or now
                originated = snap.status.states.get("originated", 0)
                if not expect_cb or snap.callbacks >= originated:
                    break
                if self._callbacks_over(mon, campaign):
                    quiet_since = quiet_since or now
                    if now - quiet_since > 2.0:
                        break
                elif not self.simulated and now - settled_at > self.args.callback_wait:
                    break
            if now > deadline:
                timed_out = True
                break
            if self.interrupts():
                break
            time.sleep(REFRESH_SECONDS)
        if self.out.live:
            self.out.keep()
        else:
            self.out.say(render_line(snap))
        return snap, timed_out, mon

    def _callbacks_over(self, mon: Monitor, campaign: str) -> bool:
        """With the simulator: every call of the campaign has ended and no delivery is due."""
        truth = mon.truth
        if truth is None:
            return False
        prefix = f"{campaign}:"
        ours = [
            c for c in truth.get("calls", []) if str(c.get("custom_field", "")).startswith(prefix)
        ]
        pending = int(truth.get("callbacks", {}).get("pending", 0))
        return pending == 0 and all(c.get("ended") for c in ours)

    def finish(self, campaign: str, mon: Monitor, timed_out: bool, enq: dict[str, Any]) -> int:
        assert self.settings is not None
        from callq.intake import write_report_file

        s = self.settings
        truth = mon.refresh_truth()
        summary = summarise(
            ledger=mon.ledger,
            campaign=campaign,
            truth=truth,
            limit=s.rate_limit_calls,
            window=s.rate_limit_period_seconds,
            wall_seconds=time.monotonic() - self.started,
            mode=self.mode(),
            enqueue={k: v for k, v in enq.items() if k not in ("errors", "duplicate_rows")},
            timed_out=timed_out,
            interrupted=self.interrupts(),
            callbacks_expected=s.callback_url is not None,
        )
        reports = Path(self.args.reports_dir)
        reports.mkdir(parents=True, exist_ok=True)
        csv_path = reports / f"{campaign}.csv"
        json_path = reports / f"{campaign}.summary.json"
        with open(csv_path, "w", encoding="utf-8", newline="") as fh:
            rows = write_report_file(campaign, fh, "csv", settings=s)
        summary["report"] = {"csv": _rel(csv_path), "rows": rows, "summary": _rel(json_path)}
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        say = self.out.say
        say("")
        for line in render_summary(summary, color=self.out.color):
            say(line)
        say(f"  report      {_rel(csv_path)} ({rows} rows); figures in {_rel(json_path)}")
        missing = summary["callbacks"]["missing"]
        if missing:
            say(f"  note        {missing} originated call(s) got no callback before the end")
        return 0 if summary["verdict"]["clean"] else 1

    # --- up --------------------------------------------------------------------------

    def serve(self) -> None:
        assert self.settings is not None
        say = self.out.say
        url = self.settings.require_redis_url()
        say("")
        say("The stack is up. Ctrl-C stops it. From another terminal:")
        say(f"  export REDIS_URL={self._safe_url(url)}")
        say("  .venv/bin/python -m producer enqueue examples/campaign.csv --campaign my-campaign")
        say("  .venv/bin/python -m producer status my-campaign")
        say("  .venv/bin/python -m producer report my-campaign --format csv -o my-campaign.csv")
        warned: set[str] = set()
        while not self.interrupts():
            for c in self.stack.dead_children():
                if c.name not in warned:
                    warned.add(c.name)
                    say(
                        f"warning: {c.name} (pid {c.pid}) exited with {c.proc.returncode}; "
                        f"see {c.log}"
                    )
            time.sleep(0.5)

    # --- stop ------------------------------------------------------------------------

    def stop(self) -> bool:
        notes = self.stack.stop(hurry=self.interrupts.twice)
        for note in notes:
            self.out.say(f"  {note}")
        left = self.stack.leftovers()
        n = len(self.stack.pids())
        if left:
            self.out.say("warning: " + "; ".join(left))
            return False
        if n:
            self.out.say(f"stopped {n} processes; nothing left running")
        return True


def _campaign_id(args: argparse.Namespace) -> str:
    if args.campaign_id:
        if not CAMPAIGN_RE.fullmatch(args.campaign_id):
            raise ConfigError(
                f"--campaign-id {args.campaign_id!r}: use 1-64 letters, digits, '_', '.' or '-'"
            )
        return str(args.campaign_id)
    return "demo-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _execute(args: argparse.Namespace, *, up: bool) -> int:
    stream = sys.stdout
    tty = stream.isatty() and os.environ.get("TERM") != "dumb"
    out = Console(stream, live=tty, color=tty and "NO_COLOR" not in os.environ)
    interrupts = Interrupts()
    interrupts.install()
    run = Run(args, out, interrupts)
    rc = 0
    try:
        campaign = None if up else _campaign_id(args)
        path = None
        run.plan()
        if not up:
            path = run.campaign_file()
        run.start()
        run.note_unsettled()
        if interrupts():
            rc = 130
        elif up:
            run.serve()
            rc = 0
        else:
            assert path is not None and campaign is not None
            enq = run.enqueue(path, campaign)
            if not enq["accepted"] and not enq["existing"]:
                raise ConfigError(f"nothing to dial: no row of {_rel(path)} was accepted")
            _, timed_out, mon = run.monitor(campaign)
            # Workers first: the summary then reads a ledger that no longer moves.
            for note in run.stack.stop_workers(hurry=interrupts.twice):
                out.say(f"  {note}")
            rc = run.finish(campaign, mon, timed_out, enq)
            if interrupts():
                rc = 130
                out.say(
                    f"interrupted: campaign {campaign} is kept in Redis; what is left of it "
                    "resumes on the next `make run` or `make up` with the same Redis"
                )
    except ConfigError as exc:
        out.say(f"error: {exc}")
        rc = 2
    except StackError as exc:
        out.say(f"error: {exc}")
        rc = 130 if interrupts() else 1
    finally:
        if not run.stop() and rc == 0:
            rc = 1
    return rc


def build_parser(
    prog: str = "python -m devstack.demo", *, up: bool = False
) -> argparse.ArgumentParser:
    if up:
        desc = (
            "Start the local stack (Redis, simulator, callback receiver, workers, Flower) "
            "and keep it running until Ctrl-C. Prints the URLs, credentials and how to "
            "enqueue a campaign."
        )
    else:
        desc = (
            "Run the whole stack and one campaign end to end, with live progress and a "
            "summary; then stop everything. Exit 0 when the verdict is clean."
        )
    p = argparse.ArgumentParser(prog=prog, description=desc)
    if not up:
        p.add_argument("--campaign-file", help="CSV to enqueue (default examples/campaign.csv)")
        p.add_argument("--campaign-id", help="campaign id (default demo-YYYYmmdd-HHMMSS)")
        p.add_argument(
            "--timeout",
            type=float,
            default=900.0,
            help="give up waiting after this many seconds (default %(default)g)",
        )
        p.add_argument(
            "--callback-wait",
            type=float,
            default=120.0,
            help="real Exotel: how long to wait for callbacks once settled (default %(default)g)",
        )
        p.add_argument("--reports-dir", default="reports", help="default %(default)s")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help=f"simulator only: time scale (default DEMO_SPEED, else {DEFAULT_SPEED:g})",
    )
    p.add_argument("--no-flower", action="store_true", help="do not start Flower")
    p.add_argument(
        "--flower-port",
        type=int,
        default=FLOWER_PORT,
        help="default %(default)s, or a free port when taken",
    )
    p.add_argument(
        "--callbacks-port",
        type=int,
        default=None,
        help="port of the callback receiver (default: a free port)",
    )
    p.add_argument(
        "--data-dir", default=".data", help="Redis AOF, logs, stack.json (default %(default)s)"
    )
    return p


def main(argv: list[str] | None = None, prog: str = "python -m devstack.demo") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.workers < 1:
        build_parser(prog).error("--workers must be at least 1")
    return _execute(args, up=False)


def up_main(argv: list[str] | None = None, prog: str = "callq up") -> int:
    args = build_parser(prog, up=True).parse_args(argv)
    if args.workers < 1:
        build_parser(prog, up=True).error("--workers must be at least 1")
    return _execute(args, up=True)


if __name__ == "__main__":
    sys.exit(main())
