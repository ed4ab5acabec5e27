"""``make run`` end to end: the demo as a subprocess, short and time-scaled, in a directory of
its own (its .data/ and reports/ go there), with REDIS_URL unset although a system Redis may
answer. Then: its exit code, its summary against the ledger (read back from the AOF it left)
and the report CSV, and nothing left running.

The pieces are checked without starting anything in tests/unit/test_settings.py (speed
scaling) and tests/unit/test_console_script.py.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack.embedded import EmbeddedRedis
from devstack.stack import pid_alive, port_listening
from tests.campaigns import campaign_csv, mobile

ROOT = Path(__file__).resolve().parents[2]


def demo_env() -> dict[str, str]:
    names = {n.upper() for n in Settings.model_fields} | {"DEMO_SPEED", "NO_COLOR"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["PYTHONPATH"] = str(ROOT)
    return env


def write_campaign(tmp_path: Path, n: int, **kw: Any) -> Path:
    bad = [
        f"+91 12345,{mobile('97', 1)},08030752400,,bad-number,60,20",
        f"{mobile('98', 900)},{mobile('97', 900)},08030752400,,too-long,99999,20",
        f'{mobile("98", 901)},{mobile("97", 901)},08030752400,,"=HYPERLINK(""http://x.example"",""x"")",30,20',
    ]
    path = tmp_path / "campaign.csv"
    path.write_bytes(campaign_csv(n, flow_every=5, time_limit=30, time_out=20, extra_rows=bad))
    return path


def start_demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack.demo", *args],
        cwd=tmp_path,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stack_doc(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / ".data" / "stack.json").read_text())
    return doc


def assert_nothing_left(doc: dict[str, Any]) -> None:
    assert doc["state"] == "stopped"
    names = {c["name"] for c in doc["children"]}
    assert {"redis", "simulator", "worker1", "worker2"} <= names
    alive = [(c["name"], c["pid"]) for c in doc["children"] if pid_alive(int(c["pid"]))]
    assert alive == []
    listening = [p for p in doc["ports"] if port_listening(int(p))]
    assert listening == []


@pytest.mark.slow
def test_given_no_redis_url_when_the_demo_runs_a_40_call_campaign_then_its_summary_matches_the_ledger_and_nothing_is_left_running(
    tmp_path: Path,
) -> None:
    csv_path = write_campaign(tmp_path, 40)
    proc = start_demo(
        tmp_path,
        "--campaign-file",
        str(csv_path),
        "--campaign-id",
        "t40",
        "--speed",
        "30",
        "--workers",
        "2",
        "--no-flower",
        "--timeout",
        "120",
    )
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-4000:]

    # What it said.
    assert "rejected: line 42: From:" in out and "rejected: line 43: TimeLimit:" in out
    assert "accepted 41, rejected 2" in out
    assert "verdict     CLEAN" in out
    assert "reports/t40.csv (41 rows)" in out

    # Its own Redis, not the one that may answer on 6379.
    doc = stack_doc(tmp_path)
    (redis_entry,) = [c for c in doc["children"] if c["name"] == "redis"]
    assert redis_entry["port"] != 6379
    assert (tmp_path / ".data" / "redis" / "redis.log").exists()

    summary = json.loads((tmp_path / "reports" / "t40.summary.json").read_text())
    assert summary["mode"]["redis"] == "embedded" and summary["mode"]["exotel"] == "simulator"
    assert summary["mode"]["speed"] == 30.0
    assert summary["total"] == 41 and summary["settled"] and not summary["timed_out"]
    assert summary["truth"]["duplicates"] == 0
    assert summary["truth"]["wrong_sid"] == 0
    assert summary["truth"]["originated"] == summary["states"]["originated"]
    assert summary["verdict"] == {"clean": True, "problems": []}
    # The receiver ran: every originated call got its StatusCallback before the end.
    assert summary["mode"]["callbacks"] is True
    assert summary["callbacks"]["received"] == summary["states"]["originated"]
    peak = summary["rate"]["max_requests_in_any_window"]
    assert peak is not None and peak <= summary["rate"]["limit"]
    assert 0 < summary["rate"]["max_originated_in_any_window"] <= summary["rate"]["limit"]

    # The report CSV: one row per call, its states counted as the summary counts them.
    with open(tmp_path / "reports" / "t40.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["total"] == summary["report"]["rows"]
    by_state = Counter(r["state"] for r in rows)
    assert by_state == Counter({k: v for k, v in summary["states"].items() if v})
    by_status = Counter(r["call_status"] for r in rows if r["call_status"])
    assert by_status == Counter(summary["call_status"])
    attempts = Counter(r["attempts"] for r in rows)
    assert attempts == Counter(summary["attempts"])
    # The formula-looking CustomField is data: accepted, and neutralised in the CSV.
    assert any(r["CustomField"].startswith("'=HYPERLINK(") for r in rows)

    # Nothing left behind: no process, no listener.
    assert_nothing_left(doc)

    # The ledger, read back from the append-only file the demo's Redis left behind.
    with EmbeddedRedis(tmp_path / ".data" / "redis") as server:
        client = make_redis(server.url)
        status = Ledger(client, Keys("callq")).status("t40")
        client.close()
    assert status.total == summary["total"]
    assert status.states == summary["states"]
    assert status.call_status == summary["call_status"]


@pytest.mark.slow
def test_given_a_running_demo_when_it_gets_sigterm_then_it_stops_everything_and_exits_130(
    tmp_path: Path,
) -> None:
    csv_path = write_campaign(tmp_path, 200)
    proc = start_demo(
        tmp_path,
        "--campaign-file",
        str(csv_path),
        "--campaign-id",
        "term",
        "--speed",
        "5",
        "--workers",
        "2",
        "--no-flower",
        "--timeout",
        "120",
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # pragma: no branch - ends when the demo is dialling
        lines.append(line)
        if line.startswith("[") or time.monotonic() > deadline:
            break
    assert any(line.startswith("[") for line in lines), "".join(lines)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out
    assert "interrupted" in out
    assert_nothing_left(stack_doc(tmp_path))
