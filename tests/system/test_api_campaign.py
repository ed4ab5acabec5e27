"""A campaign posted through the HTTP API is dialled whole: real Redis, real Celery worker
processes, the simulator over real HTTP, and the API served by uvicorn on the loopback. Its
status and report are read back through the API and checked against the simulator."""

from __future__ import annotations

import csv
import io
import socket
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from callq.api.app import create_app
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import AGENT, mobile, verdict
from tests.conftest import ServerThread, Workers, wait_for

pytestmark = pytest.mark.slow

TOKEN = "api-system-token-6a2f90c1"
N = 60


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (100, 5.0)  # the time-scaled limit: 100 per 5 s


def agent_file(n: int) -> bytes:
    """The agent in From on every row; customers in the formats Indian files use."""
    rows = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    for i in range(n):
        digits = mobile("97", i)[3:]
        to = (f"+91{digits}", digits, f"0{digits}")[i % 3]
        rows.append(f"{AGENT},{to},08030752400,order-{i},600,30")
    return ("\n".join(rows) + "\n").encode()


def test_given_a_campaign_posted_through_the_api_when_workers_run_then_every_call_is_placed_once(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    api_settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sim.configure(latency=True, time_scale=0.2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        ServerThread(sock, create_app(api_settings)),
        httpx.Client(base_url=base, headers=headers, timeout=30) as api,
    ):
        files = {"file": ("calls.csv", agent_file(N), "text/csv")}
        resp = api.post("/v1/campaigns/api-run/calls", files=files, data={"redials": "0"})
        assert resp.status_code == 200, resp.text
        assert (resp.json()["accepted"], resp.json()["rejected"]) == (N, 0)
        workers.start(2, concurrency=6)

        def done() -> bool:
            states = api.get("/v1/campaigns/api-run").json()["states"]
            return all(states[s] == 0 for s in ("queued", "dialing", "retrying"))

        wait_for(done, timeout=120, message=lambda: workers.output()[-3000:])
        # Posted again mid-way or after: nothing is dialled twice.
        again = api.post(
            "/v1/campaigns/api-run/calls",
            content=agent_file(N),
            headers={"Content-Type": "text/csv"},
        )
        assert again.status_code == 200 and again.json()["accepted"] == 0
        assert again.json()["existing"] == N
        status = api.get("/v1/campaigns/api-run").json()
        report = api.get("/v1/campaigns/api-run/report", params={"format": "csv"}).text
        listed = api.get("/v1/campaigns").json()["campaigns"]

    truth = sim.truth()
    v = verdict(ledger, "api-run", truth)
    assert v["states"] == {"originated": N}, workers.output()[-3000:]
    assert v["duplicates"] == [] and v["wrong_sid"] == []
    assert truth["originated"] == N
    assert sorted(truth["by_custom_field"].values()) == [1] * N
    assert status["total"] == N and status["states"]["originated"] == N
    assert status["held"] is None
    rows = list(csv.DictReader(io.StringIO(report)))
    assert len(rows) == N
    assert {r["From"] for r in rows} == {AGENT}
    assert {r["To"] for r in rows} == {mobile("97", i) for i in range(N)}
    sids = {c["custom_field"]: c["sid"] for c in truth["calls"]}
    assert all(r["state"] == "originated" and r["sid"] == sids[r["request_id"]] for r in rows)
    assert [c["campaign"] for c in listed] == ["api-run"]
