"""The docs match the code: every setting, state and command is documented."""

from __future__ import annotations

from pathlib import Path

from callq.intake.cli import build_parser
from callq.settings import Settings
from callq.store.ledger import STATES

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_operator_table() -> None:
    missing = [n.upper() for n in Settings.model_fields if f"| `{n.upper()}` |" not in OPERATIONS]
    assert missing == []


def test_every_state_is_described() -> None:
    assert [s for s in STATES if f"| `{s}` |" not in OPERATIONS] == []


def test_every_producer_command_is_documented() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = list(sub.choices)  # type: ignore[arg-type]
    assert commands == [
        "enqueue",
        "status",
        "report",
        "cancel",
        "pause",
        "resume",
        "set",
        "forecast",
        "events",
    ]
    assert [c for c in commands if f"python -m producer {c}" not in OPERATIONS] == []


def test_the_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
