"""Flower against a real worker: every task visible, no phone number or secret in sight."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from devstack.embedded import free_port
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import Workers, wait_for

pytestmark = pytest.mark.slow

AUTH = "ops:flower-pass-5e1d"


def get(url: str, auth: str | None = AUTH) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def test_given_flower_and_a_worker_when_a_campaign_runs_then_flower_shows_its_tasks_without_pii(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger, request: Any
) -> None:
    settings = settings.model_copy(
        update={
            "callback_url": "http://127.0.0.1:9/cb",
            "callback_token": settings.exotel_api_key.__class__("cb-tok-77aa"),
        }
    )
    workers = Workers(settings, tmp_path)
    request.addfinalizer(workers.stop)
    workers.start(1, concurrency=4)
    port = free_port()
    env = workers.env(FLOWER_BASIC_AUTH=AUTH)
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed by the finalizer
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop_flower() -> None:
        flower.terminate()
        try:
            flower.wait(timeout=10)
        except subprocess.TimeoutExpired:
            flower.kill()
        log.close()

    request.addfinalizer(stop_flower)
    base = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: get(f"{base}/api/workers")[0] == 200,
        timeout=30,
        message=lambda: (tmp_path / "flower.log").read_text(errors="replace")[-2000:],
    )
    assert get(f"{base}/api/tasks", auth=None)[0] == 401  # basic auth is required

    def alive_in_events() -> bool:
        # /api/workers answers from a broadcast; the task list comes from the event stream,
        # whose consumer may bind later. Events sent before it binds are gone (a fanout), so
        # the campaign starts only once Flower has heard the worker's own heartbeat.
        status, body = get(f"{base}/workers?json=1")
        return status == 200 and any(w.get("status") for w in json.loads(body)["data"])

    wait_for(alive_in_events, timeout=30, message="a worker heartbeat in Flower's events")

    Enqueuer(settings).enqueue_file(as_stream(campaign_csv(8)), "flw")
    wait_for(
        lambda: ledger.status("flw").states["originated"] == 8,
        timeout=60,
        message=lambda: str(ledger.status("flw").states),
    )

    def place_calls() -> dict[str, Any]:
        status, body = get(f"{base}/api/tasks?limit=100")
        tasks = json.loads(body) if status == 200 else {}
        return {
            k: t
            for k, t in tasks.items()
            if t.get("name") == "callq.place_call" and t.get("state") == "SUCCESS"
        }

    def originated() -> dict[str, Any]:
        # A call may also show as a task that parked it ('parked:rate': no permit within the
        # horizon) before the task that placed it.
        return {k: t for k, t in place_calls().items() if t.get("result") == "'originated'"}

    wait_for(lambda: len(originated()) == 8, timeout=30, message=lambda: str(place_calls()))
    tasks = originated()
    request_ids = set(ledger.iter_request_ids("flw"))
    shown = {ast.literal_eval(t["args"])[0] for t in tasks.values()}
    assert shown == request_ids
    assert {t["result"] for t in tasks.values()} == {"'originated'"}

    everything = get(f"{base}/api/tasks?limit=1000")[1] + get(f"{base}/api/workers")[1]
    for rec in ledger.iter_records("flw"):
        for number in (rec["from"], rec["to"], rec["from"][-10:], rec["to"][-10:]):
            assert number not in everything
    for secret in (
        settings.exotel_api_key.get_secret_value(),
        settings.exotel_api_token.get_secret_value(),
        "cb-tok-77aa",
    ):
        assert secret not in everything
