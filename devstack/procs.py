"""Our child processes, started and stopped one way, and what /proc says about them.

Every child (a worker, the receiver, the simulator, Redis, Flower) runs in a session of its
own, with a log file of its own, and on Linux gets SIGTERM if its parent dies
(``PR_SET_PDEATHSIG``), so an aborted run leaves nothing behind. :func:`stop` sends SIGTERM
(a warm shutdown for a Celery worker), waits, and kills the whole session of what did not
stop in time, and whatever is left in a session (a prefork worker's children). The demo's
stack, the tests, the bench and the chaos run all use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the demo's own shutdown still applies
        pass


def detached_popen_kwargs() -> dict[str, Any]:
    """``Popen`` options for a child of ours: a session of its own, and on Linux SIGTERM
    when we die (``PR_SET_PDEATHSIG``), so an aborted run leaves nothing behind."""
    kw: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        kw["preexec_fn"] = _die_with_parent
    return kw


def spawn(
    argv: list[str],
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
    *,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached (:func:`detached_popen_kwargs`), its output into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab" if append else "wb") as fh:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            **detached_popen_kwargs(),
        )


def stop(
    procs: Sequence[subprocess.Popen[bytes]],
    timeout: float = 30.0,
    *,
    hurry: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
) -> list[str]:
    """SIGTERM them all, wait up to ``timeout`` s (less once ``hurry()`` is true), then
    SIGKILL the session of each one left, and anything still in their sessions (a prefork
    worker's children). Returns a note per process killed."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if hurry is not None and hurry():
            break
        time.sleep(0.05)
    notes: list[str] = []
    for i, p in enumerate(procs):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            name = names[i] if names else "pid"
            notes.append(f"{name} (pid {p.pid}) killed: it did not stop in {timeout:.0f} s")
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
    for p in procs:  # children left in the session (a prefork child that lost its parent)
        for pid in session_pids(p.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return notes


def tail(log: Path, chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------
# /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command name "(...)": [0] state, [1] ppid, ... [3] session
    return text.rsplit(")", 1)[1].split()


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        f = _stat_fields(pid)
        if f is None or f[0] == "Z":
            continue
        children.setdefault(int(f[1]), []).append(pid)
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if _stat_fields(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a child started with ``start_new_session``)."""
    out = []
    for pid in _all_pids():
        f = _stat_fields(pid)
        if f is not None and f[0] != "Z" and int(f[3]) == sid:
            out.append(pid)
    return out


def _kib(path: str, field: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class TreeMemory:
    """Memory of one process tree at one moment, in bytes."""

    processes: int
    rss: int  # sum of VmRSS: pages shared between the processes are counted once per process
    pss: int  # sum of Pss: each shared page divided among the processes that map it
    uss: int  # sum of Private_Clean + Private_Dirty: what killing the tree would free


def tree_memory(root: int) -> TreeMemory:
    pids = tree_pids(root)
    rss = pss = uss = 0
    for pid in pids:
        rss += _kib(f"/proc/{pid}/status", "VmRSS:")
        rollup = f"/proc/{pid}/smaps_rollup"
        pss += _kib(rollup, "Pss:")
        uss += _kib(rollup, "Private_Clean:") + _kib(rollup, "Private_Dirty:")
    return TreeMemory(len(pids), rss * 1024, pss * 1024, uss * 1024)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (0 if unreadable)."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    try:
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants (children that exited and were
    reaped are in the parent's cutime, which is added too)."""
    total = 0.0
    for pid in tree_pids(root):
        f = _stat_fields(pid)
        if f is None:
            continue
        try:
            ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        except (IndexError, ValueError):
            continue
        total += ticks / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...
    try:
        busy = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))
    except (IndexError, ValueError):
        return 0.0
    return busy / os.sysconf("SC_CLK_TCK")
