"""The local stack of ``make run`` / ``make up``: child processes that start, answer and stop.

Every child runs in a session of its own, so a Ctrl-C at the terminal reaches only the demo,
which then stops the children in order: workers first (SIGTERM, a warm shutdown that hands
unstarted messages back to the broker), then Flower, the receiver, the simulator, and Redis
last. On Linux each child also gets SIGTERM if the demo itself dies (``PR_SET_PDEATHSIG``).

The pids, argv and ports are written to ``.data/stack.json`` while the stack runs (and kept,
marked stopped, afterwards), so a test or an operator can check that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callq.settings import Settings
from devstack import procs
from devstack.embedded import EmbeddedRedis, free_port

__all__ = [
    "Child",
    "DemoRedis",
    "Stack",
    "StackError",
    "http_status",
    "pick_port",
    "pid_alive",
    "port_free",
    "port_listening",
    "python_module_argv",
]


class StackError(RuntimeError):
    """A part of the local stack could not be started."""


def child_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child: ours without any setting, then exactly these settings."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    if settings is not None:
        env.update(settings.to_env())
        # An unset URL is passed as "" so that a child cannot pick another one up from .env.
        for name in ("callback_url", "exotel_base_url"):
            if getattr(settings, name) is None:
                env[name.upper()] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def worker_argv(
    name: str, concurrency: int, loglevel: str = "INFO", pool: str = "threads"
) -> list[str]:
    """The command line of one worker on the ``calls`` queue, threads pool unless ``pool``
    says otherwise, as run locally (the demo, the chaos runner, the tests, the bench)."""
    return python_module_argv(
        "celery",
        "-A",
        "worker",
        "worker",
        "-Q",
        "calls",
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-n",
        name,
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        loglevel,
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return not port_listening(port, host)


def port_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own URL
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class DemoRedis(EmbeddedRedis):
    """:class:`EmbeddedRedis` (AOF under its directory), started in a session of its own so
    that a Ctrl-C at the terminal does not stop Redis before the workers have finished."""

    def popen_options(self) -> dict[str, Any]:
        return procs.detached_popen_kwargs()

    def start(self, timeout: float = 10.0) -> DemoRedis:
        try:
            return super().start(timeout)
        except RuntimeError as exc:
            raise StackError(str(exc)) from None


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    #: Seconds a SIGTERM gets before SIGKILL.
    grace: float = 10.0
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """The children of one demo run, in start order."""

    data_dir: Path
    log_dir: Path
    say: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)
    redis: DemoRedis | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "stack.json"

    # --- start ---------------------------------------------------------------------------

    def check_stale(self) -> None:
        """Refuse to start next to a previous run that is still alive (same data directory:
        two Redis servers must never append to one AOF)."""
        try:
            old = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        alive = []
        for entry in old.get("children", []):
            pid = int(entry.get("pid", 0))
            if pid and pid != os.getpid() and pid_alive(pid) and _cmdline(pid) == entry.get("argv"):
                alive.append(f"{entry.get('name')} (pid {pid})")
        if alive:
            raise StackError(
                f"a previous run in {self.data_dir} is still running: {', '.join(alive)}. "
                "Stop it (Ctrl-C in its terminal, or kill those pids) and try again."
            )

    def start_redis(self, data_dir: Path) -> str:
        self.redis = DemoRedis(data_dir).start()
        self.write_pidfile()
        return self.redis.url

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        port: int | None = None,
        grace: float = 10.0,
        cwd: Path | None = None,
    ) -> Child:
        log = self.log_dir / f"{name}.log"
        proc = procs.spawn(argv, env, log, cwd=cwd, append=False)
        child = Child(name, argv, proc, log, port, grace)
        self.children.append(child)
        self.write_pidfile()
        return child

    def wait_until(
        self,
        child: Child,
        ready: Callable[[], bool],
        *,
        timeout: float,
        interrupted: Callable[[], bool],
    ) -> bool:
        """Poll ``ready`` until true. False on timeout or interruption; StackError if the
        child exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if interrupted():
                return False
            if not child.alive():
                raise StackError(
                    f"{child.name} exited with {child.proc.returncode}; last lines of "
                    f"{child.log}:\n{child.tail()}"
                )
            if ready():
                return True
            time.sleep(0.1)
        return False

    # --- bookkeeping ---------------------------------------------------------------------

    def write_pidfile(self, state: str = "running") -> None:
        entries: list[dict[str, Any]] = []
        if self.redis is not None and self.redis.proc is not None:
            entries.append(
                {
                    "name": "redis",
                    "pid": self.redis.proc.pid,
                    "port": self.redis.port,
                    "argv": self.redis.argv(),
                }
            )
        for c in self.children:
            entries.append({"name": c.name, "pid": c.pid, "port": c.port, "argv": c.argv})
        doc = {
            "demo_pid": os.getpid(),
            "state": state,
            "children": entries,
            "ports": sorted({e["port"] for e in entries if e.get("port")}),
            **self.extra,
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.pidfile)

    def pids(self) -> list[int]:
        out = [c.pid for c in self.children]
        if self.redis is not None and self.redis.proc is not None:
            out.append(self.redis.proc.pid)
        return out

    def ports(self) -> list[int]:
        out = [c.port for c in self.children if c.port]
        if self.redis is not None:
            out.append(self.redis.port)
        return out

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if not c.stopped and not c.alive()]

    # --- stop ----------------------------------------------------------------------------

    def stop(self, *, hurry: Callable[[], bool] = lambda: False) -> list[str]:
        """Stop everything in order; returns a note per process that had to be killed.

        Workers get SIGTERM together and up to their grace period; the rest one by one.
        ``hurry`` (a second Ctrl-C) cuts every grace period short.
        """
        notes = self.stop_workers(hurry=hurry)
        others = [c for c in reversed(self.children) if not c.stopped]
        for child in others:
            notes += self.terminate([child], hurry)
        if self.redis is not None and self.redis.proc is not None:
            proc = self.redis.proc
            # SIGTERM: redis flushes its AOF and exits
            notes += procs.stop([proc], 10.0, names=["redis"])
        self.write_pidfile("stopped")
        return notes

    def stop_workers(self, *, hurry: Callable[[], bool] = lambda: False) -> list[str]:
        """SIGTERM every worker at once (a warm shutdown: attempts in flight finish, messages
        not started go back to the broker) and wait up to their grace period."""
        workers = [c for c in self.children if c.name.startswith("worker") and not c.stopped]
        if not workers:
            return []
        self.say(
            f"stopping {len(workers)} worker(s): warm shutdown, attempts in flight finish "
            "(Ctrl-C again to kill them now) ..."
        )
        return self.terminate(workers, hurry)

    def terminate(self, group: list[Child], hurry: Callable[[], bool]) -> list[str]:
        """SIGTERM the group and wait up to its grace period (cut short by ``hurry``), then
        kill each whole session left: the one way every child of ours is stopped."""
        notes = procs.stop(
            [c.proc for c in group],
            max(c.grace for c in group),
            hurry=hurry,
            names=[c.name for c in group],
        )
        for c in group:
            c.stopped = True
        return notes

    def leftovers(self) -> list[str]:
        """Processes still alive or ports still listening after :meth:`stop`."""
        out = [f"pid {pid} is still running" for pid in self.pids() if pid_alive(pid)]
        out += [f"port {port} still listens" for port in self.ports() if port_listening(port)]
        return out


def pick_port(preferred: int | None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    if preferred and port_free(preferred):
        return preferred
    return free_port()
