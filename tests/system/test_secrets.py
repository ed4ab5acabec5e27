"""Secrets and phone numbers: a whole campaign with distinctive secrets, then a search for them
in every log line, every broker message in Redis, and the report."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from callq.intake.enqueue import Enqueuer
from callq.intake.report import write_report
from callq.settings import Settings
from callq.store.ledger import Ledger
from devstack.embedded import free_port
from tests.campaigns import as_stream, campaign_csv, mobile
from tests.conftest import Workers, wait_for

KEY, TOKEN, CB_TOKEN = "KEY-q8Zt3v", "TOKEN-w4Nc9x", "CBTOK-p2Lm7r"


def broker_payloads(client: redis.Redis, prefix: str) -> list[str]:
    """Every message body in the broker's keys under the test's prefix, decoded."""
    out: list[str] = []
    for key in client.scan_iter(match=f"{prefix}.*"):
        kind = client.type(key)
        values: list[Any] = []
        if kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = list(client.hgetall(key).values())
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        for raw in values:
            out.append(raw)
            try:
                message = json.loads(raw)
                if isinstance(message, list):
                    message = message[0] if message and isinstance(message[0], dict) else {}
                body = message.get("body", "")
                out.append(base64.b64decode(body).decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                pass
    return out


@pytest.mark.slow
def test_given_distinctive_secrets_when_a_campaign_runs_then_no_secret_or_number_is_exposed(
    settings: Settings, tmp_path: Path, ledger: Ledger, request: Any
) -> None:
    from simulator import Account, SimConfig, Simulator

    sim = Simulator(
        SimConfig(
            accounts=[Account(settings.exotel_account_sid, KEY, TOKEN)],
            latency=False,
            callbacks=True,
            time_scale=0.02,
            p_duplicate_callback=0.2,
            seed=3,
        )
    ).start()
    request.addfinalizer(sim.stop)
    sim.script(mobile("97", 1), ["500"])
    sim.script(mobile("97", 2), ["slow_placed"])
    sim.configure(slow_seconds=1.5)
    port = free_port()
    settings = settings.model_copy(
        update={
            "exotel_api_key": SecretStr(KEY),
            "exotel_api_token": SecretStr(TOKEN),
            "callback_token": SecretStr(CB_TOKEN),
            "exotel_read_timeout": 0.8,
            "exotel_base_url": sim.url,
            "callback_url": f"http://127.0.0.1:{port}/exotel/status-callback",
        }
    )
    workers = Workers(settings, tmp_path)
    request.addfinalizer(workers.stop)
    receiver_log = tmp_path / "callbacks.log"
    with open(receiver_log, "wb") as fh:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "callbacks", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=workers.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    request.addfinalizer(lambda: (receiver.terminate(), receiver.wait(10)))
    workers.start(1, concurrency=4)
    workers.start(1, concurrency=4, LOG_FORMAT="json")

    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(20, flow_every=5)), "sec")
    messages = broker_payloads(ledger.redis, settings.key_prefix)  # while tasks are queued
    wait_for(
        lambda: (
            ledger.status("sec").states["originated"] == 20
            and sum(ledger.status("sec").call_status.values()) == 20
        ),
        timeout=90,
        message=lambda: f"{ledger.status('sec').as_dict()} {receiver_log.read_text()[-1500:]}",
    )
    messages += broker_payloads(ledger.redis, settings.key_prefix)
    receiver.terminate()
    receiver.wait(10)
    workers.stop()

    logs = workers.output() + receiver_log.read_text(errors="replace")
    report = io.StringIO()
    write_report(ledger, "sec", report, "csv")
    assert "callq.place_call" in logs and "callback sid=" in logs  # the logs are really there
    assert any('"request_id": "sec:' in line for line in logs.splitlines())  # JSON lines
    assert "[sec sec:" in logs  # text lines carry campaign and request id
    assert messages, "no broker message was captured"
    records = list(ledger.iter_records("sec"))
    numbers = {r[k] for r in records for k in ("from", "to") if r.get(k)}
    for where, text in (
        ("logs", logs),
        ("broker", "\n".join(messages)),
        ("report", report.getvalue()),
    ):
        for secret in (KEY, TOKEN, CB_TOKEN):
            assert secret not in text, f"{secret} found in {where}"
        if where != "report":
            for n in numbers:
                assert n not in text and n[-10:] not in text, f"{n} found in {where}"
    rows = list(csv.DictReader(io.StringIO(report.getvalue())))
    assert len(rows) == 20 and all(r["sid"] for r in rows)
