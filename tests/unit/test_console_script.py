"""The ``callq`` console script (devstack.cli) lists every command; nothing is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_given_the_console_script_when_asked_for_help_then_every_command_is_listed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack.cli", "--help"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0
    for command in (
        "run",
        "up",
        "worker",
        "callbacks",
        "api",
        "simulator",
        "flower",
        "enqueue",
        "status",
        "report",
        "cancel",
        "pause",
        "resume",
        "set",
        "events",
    ):
        assert f"    {command}" in done.stdout, command
    for command in ("run", "up", "worker", "api", "enqueue", "status"):
        sub = subprocess.run(
            [sys.executable, "-m", "devstack.cli", command, "--help"],
            check=False,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert sub.returncode == 0 and f"callq {command}" in sub.stdout, command


def test_given_the_api_command_when_its_own_help_is_asked_then_python_m_callq_api_answers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack.cli", "api", "--", "--help"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "python -m callq.api" in done.stdout and "--port" in done.stdout
