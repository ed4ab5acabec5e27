"""StatusCallbacks of a whole campaign through real workers and the real receiver."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from callq.intake.enqueue import Enqueuer
from callq.receiver.app import CALLBACK_PATH, create_app
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import ServerThread, Workers, wait_for
from tests.integration.test_callbacks import TOKEN, recount_call_status


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (100, 5.0)  # the end-to-end test runs faster with a short window


@pytest.mark.slow
def test_given_a_campaign_with_duplicated_callbacks_when_it_runs_then_each_call_status_is_the_truth(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cb = settings.model_copy(
        update={
            "callback_url": f"http://127.0.0.1:{port}{CALLBACK_PATH}",
            "callback_token": SecretStr(TOKEN),
        }
    )
    sim.configure(callbacks=True, time_scale=0.02, p_duplicate_callback=0.3)
    workers = Workers(cb, tmp_path)
    with ServerThread(sock, create_app(cb)):
        try:
            result = Enqueuer(cb).enqueue_file(as_stream(campaign_csv(40)), "cb")
            assert result.accepted == 40
            workers.start(1, concurrency=4)

            def delivered() -> bool:
                truth = sim.truth()
                cbs = truth["callbacks"]
                placed = ledger.status("cb").states["originated"]
                return (
                    placed == 40
                    and truth["originated"] == 40
                    and cbs["pending"] == 0
                    and len(cbs["deliveries"]) >= 40
                )

            wait_for(delivered, timeout=120, message=lambda: workers.output()[-3000:])
        finally:
            workers.stop()
    truth = sim.truth()
    cbs = truth["callbacks"]
    assert cbs["failed"] == 0 and cbs["duplicates"] > 0
    assert all(d["http_status"] == 200 for d in cbs["deliveries"])
    final = {c["custom_field"]: c["final_status"] for c in truth["calls"]}
    records = list(ledger.iter_records("cb"))
    assert len(records) == 40
    for rec in records:
        assert rec["state"] == "originated"
        assert rec["call_status"] == final[rec["request_id"]], rec
        assert "callback_sid_mismatch" not in rec
    status = ledger.status("cb")
    assert {k: v for k, v in status.call_status.items() if v} == recount_call_status(ledger, "cb")
    assert sum(status.call_status.values()) == 40  # duplicates counted nothing twice
    assert not list(ledger.redis.scan_iter(match=f"{ledger.keys.prefix}:pending_cb:*"))
