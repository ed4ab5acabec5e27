"""The local stack's supervision leaves nothing running, on the failure paths too."""

from __future__ import annotations

import gc
import socket
import warnings
from pathlib import Path

import pytest

from callq.settings import Settings
from devstack.stack import pid_alive
from devstack.workers import Receiver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_given_a_receiver_that_does_not_come_up_in_time_when_start_gives_up_then_it_is_stopped(
    settings: Settings, tmp_path: Path
) -> None:
    # Found when the blanket ResourceWarning filter went: a receiver that was not answering
    # by the timeout was left running, its Popen dropped ("subprocess ... is still running").
    receiver = Receiver(settings, tmp_path, free_port())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RuntimeError, match="did not answer"):
            receiver.start(timeout=0.05)  # a Python process cannot answer within 50 ms
        gc.collect()
    assert receiver.proc is None
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    mine = [
        pid
        for pid in pids
        if str(tmp_path) in _cwd(pid) and pid_alive(pid)  # its cwd is the test's directory
    ]
    assert mine == [], f"left running: {mine}"
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


def _cwd(pid: int) -> str:
    try:
        return str(Path(f"/proc/{pid}/cwd").resolve())
    except OSError:
        return ""
