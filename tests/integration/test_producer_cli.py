"""The producer's command line, as an operator runs it: a real process, a real Redis."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import campaign_csv, mobile


def run(
    settings: Settings, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k.upper() not in settings.to_env()}
    base.update(settings.to_env())
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
        check=False,
        cwd=cwd,
    )


BAD_ROWS = [
    ",+919700000101,08030752400,,no-from,600,30",  # line 5: missing From
    "+919800000102,12345,08030752400,,bad-to,600,30",  # line 6: bad number
    "+919800000103,+919700000103,08030752400,,too-long,99999,30",  # line 7: TimeLimit
]


def test_given_bad_rows_when_enqueued_then_each_is_reported_by_line_and_field_and_good_rows_go_in(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(3, extra_rows=BAD_ROWS))
    proc = run(settings, "enqueue", str(path), "--campaign", "mixed")
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout
    assert "line 5: From" in out
    assert "line 6: To" in out
    assert "line 7: TimeLimit" in out
    assert "accepted 3, rejected 3" in out
    status = json.loads(run(settings, "status", "mixed", "--json").stdout)
    assert status == {
        "campaign": "mixed",
        "total": 3,
        "states": {
            "queued": 3,
            "dialing": 0,
            "retrying": 0,
            "in_doubt": 0,
            "originated": 0,
            "failed": 0,
            "cancelled": 0,
            "expired": 0,
            "skipped": 0,
        },
        "call_status": {},
        "held": None,
    }


def test_given_an_unknown_column_and_a_non_utf8_line_when_enqueued_then_good_rows_still_go_in(
    settings: Settings, tmp_path: Path
) -> None:
    data = campaign_csv(2, extra_header=",Colour").replace(b"30\n", b"30,red\n")
    data += "+919800000050,+919700000050,08030752400,,caf\xe9,600,30,blue\n".encode("latin-1")
    path = tmp_path / "calls.csv"
    path.write_bytes(data)
    proc = run(settings, "enqueue", str(path), "--campaign", "odd")
    assert proc.returncode == 3
    assert "Colour" in proc.stdout  # the unknown column is named
    assert "line 4" in proc.stdout and "UTF-8" in proc.stdout
    assert "accepted 2" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "no header"), (b"From,To,CallerId\n", "no data rows")],
)
def test_given_an_empty_file_when_enqueued_then_a_clear_error_and_exit_1(
    settings: Settings, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    proc = run(settings, "enqueue", str(path), "--campaign", "empty")
    assert proc.returncode == 1
    assert message in proc.stdout.lower()


def test_given_strict_when_a_row_is_bad_then_nothing_is_enqueued(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(3, extra_rows=BAD_ROWS[:1]))
    proc = run(settings, "enqueue", str(path), "--campaign", "strict", "--strict")
    assert proc.returncode == 1
    assert "nothing enqueued" in proc.stdout
    assert run(settings, "status", "strict").returncode == 1


def test_given_the_same_file_when_enqueued_twice_then_nothing_is_added(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(5))
    first = json.loads(run(settings, "enqueue", str(path), "--campaign", "twice", "--json").stdout)
    second = json.loads(run(settings, "enqueue", str(path), "--campaign", "twice", "--json").stdout)
    assert (first["accepted"], first["existing"]) == (5, 0)
    assert (second["accepted"], second["existing"], second["republished"]) == (0, 5, 5)
    assert ledger.status("twice").total == 5


def test_given_a_duplicate_row_when_enqueued_then_it_is_reported_and_the_first_kept(
    settings: Settings, tmp_path: Path
) -> None:
    data = campaign_csv(2)
    first_row = data.decode().splitlines()[1]
    path = tmp_path / "calls.csv"
    path.write_bytes(data + (first_row + "\n").encode())
    proc = run(settings, "enqueue", str(path), "--campaign", "dup")
    assert proc.returncode == 0
    assert "duplicate: line 4: row: the same call as line 2" in proc.stdout
    assert "accepted 2" in proc.stdout and "duplicates 1" in proc.stdout


def test_given_a_campaign_when_reported_then_one_row_per_call_with_formulas_neutralised(
    settings: Settings, tmp_path: Path
) -> None:
    rows = ['+919800000077,+919700000077,08030752400,,=HYPERLINK("http://x"),600,30']
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(2, extra_rows=rows))
    assert run(settings, "enqueue", str(path), "--campaign", "rep").returncode == 0
    proc = run(settings, "report", "rep", "--format", "csv")
    assert proc.returncode == 0
    table = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(table[0])[:8] == [
        "request_id",
        "From",
        "To",
        "state",
        "attempts",
        "sid",
        "call_status",
        "last_error",
    ]
    assert [r["To"] for r in table] == [mobile("97", 0), mobile("97", 1), "+919700000077"]
    assert table[2]["CustomField"].startswith("'=HYPERLINK")
    assert {r["state"] for r in table} == {"queued"}
    jsonl = run(settings, "report", "rep", "--format", "jsonl").stdout.splitlines()
    assert json.loads(jsonl[2])["CustomField"].startswith("=HYPERLINK")  # data kept as is


def test_given_a_campaign_when_cancelled_then_undialled_calls_are_cancelled(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(4))
    run(settings, "enqueue", str(path), "--campaign", "cx")
    first = next(ledger.iter_request_ids("cx"))
    ledger.claim(first, lease_seconds=30, early_tolerance=0, worker="t")
    proc = run(settings, "cancel", "cx")
    assert proc.returncode == 0 and "cancelled 3" in proc.stdout
    assert ledger.status("cx").states["cancelled"] == 3
    assert ledger.status("cx").states["dialing"] == 1


def test_given_a_bad_setting_when_run_then_it_is_named_and_no_secret_is_printed(
    settings: Settings, tmp_path: Path
) -> None:
    proc = run(
        settings,
        "status",
        "x",
        env={"RATE_LIMIT_CALLS": "0", "EXOTEL_API_TOKEN": "tok-DO-NOT-PRINT"},
    )
    assert proc.returncode == 2
    assert "RATE_LIMIT_CALLS" in proc.stderr
    assert "tok-DO-NOT-PRINT" not in proc.stderr + proc.stdout


def test_given_redis_down_when_enqueueing_then_a_clear_error_without_the_url_password(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(1))
    proc = run(
        settings,
        "enqueue",
        str(path),
        "--campaign",
        "down",
        env={"REDIS_URL": "redis://:hunter2pass@127.0.0.1:1/0"},
    )
    assert proc.returncode == 1
    assert "cannot reach Redis" in proc.stderr
    assert "hunter2pass" not in proc.stderr + proc.stdout


def test_given_a_bad_campaign_id_when_enqueued_then_usage_error(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(1))
    proc = run(settings, "enqueue", str(path), "--campaign", "bad id:x")
    assert proc.returncode == 2
    assert "campaign id" in proc.stderr


def test_given_strict_wait_and_no_replica_when_enqueueing_then_a_clear_error_and_a_retry_keeps_each_call_once(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    # REDIS_WAIT_REPLICAS=1 on the test Redis, which has no replica: no batch is acknowledged,
    # so the producer must not report its calls as accepted.
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(3))
    strict = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "20"}
    proc = run(settings, "enqueue", str(path), "--campaign", "unrepl", env=strict)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REDIS_WAIT_REPLICAS" in proc.stderr and "enqueue again" in proc.stderr
    assert "accepted" not in proc.stdout
    # Enqueued again (the default policy: no replica, no WAIT), each call is there once.
    again = run(settings, "enqueue", str(path), "--campaign", "unrepl")
    assert again.returncode == 0, again.stderr
    assert len(list(ledger.iter_request_ids("unrepl"))) == 3


@pytest.mark.parametrize("command", ["pause", "resume", "cancel"])
def test_given_strict_wait_and_no_replica_when_a_campaign_is_stopped_or_resumed_then_a_clear_error(
    settings: Settings, tmp_path: Path, command: str
) -> None:
    # A cancel (or pause, or resume) the master alone holds could be lost by a failover: the
    # operator is told so (exit 1, the setting named), not told it is done.
    path = tmp_path / "calls.csv"
    path.write_bytes(campaign_csv(2))
    assert run(settings, "enqueue", str(path), "--campaign", "ops").returncode == 0
    strict = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "20"}
    proc = run(settings, command, "ops", env=strict)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REDIS_WAIT_REPLICAS" in proc.stderr and f"the {command} of campaign ops" in proc.stderr
    assert run(settings, command, "ops").returncode == 0  # no replica, no WAIT: it goes through
