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


@pytest.mark.slow
def test_given_flow_calls_from_one_number_all_in_doubt_when_their_callbacks_come_then_each_is_settled(
    settings: Settings, sim: Any, tmp_path: Path, ledger: Ledger
) -> None:
    # docs/reliability.md finding 9, through real workers: flow calls (their callbacks carry
    # the four basic fields, no CustomField) from the same number, every reply lost (the
    # read times out at 2.5 s, the reply would come at 4 s), every callback after that (4 s
    # late). Call Details cannot tell them apart (same From, same ExoPhone). Each callback's
    # URL names its request, so each call is settled with its own Sid, none left ambiguous.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cb = settings.model_copy(
        update={
            "callback_url": f"http://127.0.0.1:{port}{CALLBACK_PATH}",
            "callback_token": SecretStr(TOKEN),
        }
    )
    assert cb.exotel_read_timeout < 4.0
    sim.configure(
        callbacks=True,
        time_scale=0.02,
        p_slow_placed=1.0,
        slow_seconds=4.0,
        p_late_callback=1.0,
        late_callback_seconds=200,
    )
    url = "http://my.exotel.com/acct/exoml/start_voice/7"
    rows = ["From,To,CallerId,Url,CustomField"]
    rows += [f"+919800000001,,08030752400,{url},order-{i}" for i in range(12)]
    workers = Workers(cb, tmp_path)
    with ServerThread(sock, create_app(cb)):
        try:
            csv = ("\n".join(rows) + "\n").encode()
            # --dedupe all: the same number called several times on purpose.
            result = Enqueuer(cb).enqueue_file(as_stream(csv), "fl", dedupe="all")
            assert result.accepted == 12
            workers.start(1, concurrency=4)
            wait_for(
                lambda: sim.truth()["callbacks"]["sent"] == 12,
                timeout=120,
                message=lambda: workers.output()[-3000:],
            )
            wait_for(
                lambda: ledger.status("fl").states["originated"] == 12,
                timeout=30,
                message=lambda: str(ledger.status("fl")),
            )
        finally:
            workers.stop()
    truth = sim.truth()
    assert truth["originated"] == 12 and truth["by_custom_field"] == {
        r["request_id"]: 1 for r in ledger.iter_records("fl")
    }  # each dialled once
    assert all(d["payload_custom_field"] is None for d in truth["callbacks"]["deliveries"])
    calls = {c["custom_field"]: c for c in truth["calls"]}
    for rec in ledger.iter_records("fl"):
        call = calls[rec["request_id"]]
        assert (rec["state"], rec["sid"]) == ("originated", call["sid"]), rec
        assert rec["call_status"] == call["final_status"], rec
        assert "callback_sid_mismatch" not in rec
        assert rec.get("in_doubt_since"), rec  # its reply was lost: it was in doubt first
        assert "ambiguous" not in rec.get("last_error", "")
    assert not list(ledger.redis.scan_iter(match=f"{ledger.keys.prefix}:pending_cb:*"))
