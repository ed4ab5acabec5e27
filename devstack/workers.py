"""Real Celery workers and a real callback receiver, as children of a test, a bench or a
chaos run.

Every child gets the run's settings as environment variables (``Settings.to_env()``), a log
file of its own, and, on Linux, SIGTERM if its parent dies, so an aborted run leaves nothing
behind. They are started and stopped by :mod:`devstack.procs`.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from callq.settings import Settings
from devstack.procs import spawn, stop
from devstack.stack import child_env, http_status, worker_argv

__all__ = ["Receiver", "WorkerPool", "child_env"]


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    name: str
    log: Path
    started: float
    reaped: bool = False


@dataclass
class WorkerPool:
    """``n`` real ``celery -A worker worker -Q calls`` processes (threads pool)."""

    settings: Settings
    workdir: Path
    concurrency: int = 8
    rng: random.Random = field(default_factory=random.Random)
    workers: list[_Worker] = field(default_factory=list)
    killed: int = 0
    started: int = 0
    #: Workers that exited without being killed by us (exit codes).
    exits: list[int] = field(default_factory=list)

    def start(self, n: int = 1) -> None:
        for _ in range(n):
            i = self.started
            self.started += 1
            name = f"chaos{i}-{uuid.uuid4().hex[:6]}@%h"
            log = self.workdir / f"worker{i}.log"
            argv = worker_argv(name, self.concurrency)
            proc = spawn(argv, child_env(self.settings), log, cwd=self.workdir)
            self.workers.append(_Worker(proc, name, log, time.monotonic()))

    def alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.proc.poll() is None]

    def _reap(self) -> list[int]:
        """Exit codes of workers that died by themselves since the last call."""
        codes = []
        for w in self.workers:
            if not w.reaped and w.proc.poll() is not None:
                w.reaped = True
                codes.append(int(w.proc.returncode))
        self.exits += codes
        return codes

    def kill_one(self, min_age: float = 0.0) -> int | None:
        """SIGKILL one live worker (at random among those at least ``min_age`` s old) and
        start its replacement at once. Returns the victim's pid, or None if none qualified."""
        now = time.monotonic()
        candidates = [w for w in self.alive() if now - w.started >= min_age]
        if not candidates:
            return None
        victim = self.rng.choice(candidates)
        pid = victim.proc.pid
        with contextlib.suppress(ProcessLookupError):
            victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=30)
        victim.reaped = True
        self.killed += 1
        self.start(1)
        return pid

    def ensure(self, n: int) -> list[int]:
        """Start workers until ``n`` are alive (one that died by itself is replaced).
        Returns the exit codes of the workers that died by themselves."""
        codes = self._reap()
        missing = n - len(self.alive())
        if missing > 0:
            self.start(missing)
        return codes

    def stop(self, timeout: float = 30.0) -> None:
        stop([w.proc for w in self.workers], timeout)

    def grep(self, *needles: str) -> int:
        """How many log lines of all workers (alive or dead) contain one of ``needles``."""
        n = 0
        for w in self.workers:
            if w.log.exists():
                for line in w.log.read_text(errors="replace").splitlines():
                    n += any(needle in line for needle in needles)
        return n


@dataclass
class Receiver:
    """``python -m callbacks`` on a fixed port, restartable."""

    settings: Settings
    workdir: Path
    port: int
    log_level: str = "info"
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "callbacks.log"

    def start(self, timeout: float = 30.0) -> Receiver:
        argv = [
            sys.executable,
            "-m",
            "callbacks",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]
        self.proc = spawn(argv, child_env(self.settings), self.log, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (code := self.proc.poll()) is not None:
                self.proc = None
                raise RuntimeError(
                    f"the callback receiver exited with {code}: "
                    f"{self.log.read_text(errors='replace')[-1500:]}"
                )
            if http_status(f"{self.base}/livez") == 200:
                return self
            time.sleep(0.1)
        self.stop()  # never leave a receiver that did not come up running
        raise RuntimeError(f"the callback receiver did not answer in {timeout:g} s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop([self.proc], timeout)
            self.proc = None

    def restart(self, down: float = 0.0) -> float:
        """Stop (SIGTERM), stay away ``down`` seconds, start again on the same port; returns
        the seconds it was away."""
        began = time.monotonic()
        self.stop()
        time.sleep(down)
        self.start()
        self.restarts += 1
        return time.monotonic() - began
