"""The package layering holds: no import runs upward (import-linter's contracts in
pyproject.toml). An upward import (a dialer importing the worker app, the product importing
the local stack, the bench importing the chaos run) fails this test and `make lint`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_import_linter(cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the tree at ``cwd`` (its packages first on the path)."""
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(lint), "--no-cache"], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )


def test_given_the_tree_when_its_imports_are_checked_then_every_contract_is_kept() -> None:
    done = run_import_linter(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout or "broken" not in done.stdout.split("Contracts:")[-1]


#: What the contracts cover: the product, the entry points, the local stack and the tools.
PACKAGES = ("callq", "worker", "producer", "callbacks", "config", "devstack", "simulator",
            "bench", "chaos")  # fmt: skip


def tree_copy(tmp_path: Path) -> Path:
    """The packages and pyproject.toml, copied: the contracts as they are, on a tree we may
    break."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        # the dialer importing the worker app (a layer above it)
        ("callq/dialing/dialer.py", "callq.worker.app", "callq is in layers"),
        # the store importing the queue names (transport sits above the store)
        ("callq/store/keys.py", "callq.transport.queues", "callq is in layers"),
        # intake importing the HTTP API (which sits on it), and the API importing the worker
        ("callq/intake/report.py", "callq.api.app", "callq is in layers"),
        ("callq/api/app.py", "callq.worker.app", "callq is in layers"),
        # the product importing the local stack
        ("callq/intake/report.py", "devstack.progress", "the product never imports"),
        # an entry point importing the simulator
        ("producer/__init__.py", "simulator.state", "the entry points are thin"),
        # the bench importing the chaos run
        ("bench/pipeline.py", "chaos.verdict", "the bench and the chaos run never import"),
    ],
)
def test_given_an_upward_import_when_checked_then_a_contract_is_broken(
    tmp_path: Path, module: str, upward: str, contract: str
) -> None:
    tree = tree_copy(tmp_path)
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\nimport {upward}  # noqa\n")
    done = run_import_linter(tree)
    assert done.returncode != 0, done.stdout[-3000:]
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout[-3000:]
