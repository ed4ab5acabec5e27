"""The call_status backfill: originated calls whose StatusCallback never came get their status
from a bulk Call Details look-up by Sid, through the account's limiter. Real Redis, the
simulator over real HTTP; with real workers (the sweeper drives it) in
tests/system/test_backfill_workers.py."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from callq.dialing.backfill import BATCH, Backfill
from callq.dialing.dialer import Account
from callq.dialing.limiter import Limiter
from callq.exotel.client import ExotelClient, make_session
from callq.settings import Settings
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from tests.campaigns import mobile
from tests.conftest import (
    callback_receiver,
    make_dialer,
    placed,
    wait_for,
)

CAMPAIGN = "bf"


def quick_backfill(settings: Settings) -> Settings:
    """Calls of a second or two (TimeOut 1, TimeLimit 1 in the rows), a short margin."""
    return settings.model_copy(
        update={
            "call_status_backfill_margin_seconds": 0.5,
            "call_status_backfill_interval_seconds": 0.2,
        }
    )


@pytest.fixture
def bsettings(settings: Settings) -> Settings:
    return quick_backfill(settings)


def dead_callback_url() -> str:
    """A StatusCallback URL where nothing listens: the simulator retries, then gives up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/exotel/status-callback"


def place(settings: Settings, ledger: Ledger, n: int, start: int = 0) -> list[str]:
    """``n`` calls placed through the dialer (TimeOut 1, TimeLimit 1)."""
    ids = []
    for i in range(start, start + n):
        rid = f"{CAMPAIGN}:{i:020x}"
        record = {
            "from": mobile("98", i),
            "to": mobile("97", i),
            "caller_id": "+918030752400",
            "time_limit": "1",
            "time_out": "1",
        }
        assert ledger.enqueue_many(CAMPAIGN, [(rid, record)]) == [1]
        ids.append(rid)
    dialer = make_dialer(settings, ledger)
    for rid in ids:
        assert placed(dialer, rid).result == "originated"
    return ids


def make_backfill(settings: Settings, ledger: Ledger) -> Backfill:
    limiter = Limiter.for_settings(ledger.redis, ledger.keys, settings)
    client = ExotelClient(settings, make_session())
    return Backfill(settings, ledger, {"default": Account("default", settings, client, limiter)})


def wait_due(ledger: Ledger) -> None:
    """Until every awaited call is due (by the Redis clock)."""
    key = ledger.keys.awaiting_status()

    def due() -> bool:
        last = ledger.redis.zrange(key, -1, -1, withscores=True)
        return not last or last[0][1] <= ledger.clock() * 1000

    wait_for(due, timeout=15, message="calls due for a look-up")


def test_given_calls_whose_callbacks_were_given_up_when_due_then_backfill_records_each_status(
    bsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    sim.configure(callbacks=True, time_scale=0.01)
    settings = bsettings.model_copy(update={"callback_url": dead_callback_url()})
    ids = place(settings, ledger, BATCH + 5)
    assert ledger.redis.zcard(keys.awaiting_status()) == BATCH + 5
    wait_for(lambda: sim.truth()["callbacks"]["failed"] == BATCH + 5, timeout=20)
    wait_due(ledger)
    limiter = Limiter.for_settings(ledger.redis, keys, settings)
    before, _ = limiter.next_free()
    counts = make_backfill(settings, ledger).run_once()
    assert counts["requests"] == 2 and counts["recorded"] == BATCH + 5, counts
    assert sim.truth()["details_requests"] == 2  # bulk look-ups by Sid, 20 a request
    # Both look-ups took a permit of the account's limiter, like every voice request.
    assert limiter.next_free()[0] - before >= 2 * limiter.interval_us
    final = {c["sid"]: c["final_status"] for c in sim.truth()["calls"]}
    for rid in ids:
        rec = ledger.get(rid)
        assert rec["state"] == "originated" and rec["call_status"] == final[rec["sid"]]
        assert rec["call_status_source"] == "backfill"
    status = ledger.status(CAMPAIGN)
    assert sum(status.call_status.values()) == BATCH + 5
    assert ledger.redis.zcard(keys.awaiting_status()) == 0
    assert make_backfill(settings, ledger).run_once().get("requests", 0) == 0


def test_given_a_busy_status_backfilled_when_the_campaign_redials_on_busy_then_it_redials(
    bsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    ledger.set_controls(CAMPAIGN, {"redial_on": "busy", "redials": "1", "redial_interval": "60"})
    sim.configure(time_scale=0.01, status_mix={"busy": 1.0})
    (rid,) = place(bsettings, ledger, 1)
    sid = ledger.get(rid)["sid"]
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10)
    wait_due(ledger)
    assert make_backfill(bsettings, ledger).run_once()["redialled"] == 1
    rec = ledger.get(rid)
    assert (rec["state"], rec["call_status"], rec["prev_sids"]) == ("retrying", "busy", sid)
    assert ledger.status(CAMPAIGN).redials == 1


def test_given_a_call_whose_callback_came_when_backfill_runs_then_it_is_not_looked_up(
    bsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    sim.configure(callbacks=True, time_scale=0.01)
    with callback_receiver(bsettings) as cb:
        (rid,) = place(cb, ledger, 1)
        wait_for(lambda: "call_status" in ledger.get(rid), timeout=10, message="callback")
    assert ledger.redis.zcard(keys.awaiting_status()) == 0
    counts = make_backfill(bsettings, ledger).run_once()
    assert counts.get("requests", 0) == 0
    assert sim.truth()["details_requests"] == 0


def test_given_a_call_still_going_on_when_due_then_it_is_looked_at_again_later(
    bsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    sim.configure(time_scale=1.0, ring_seconds=[1.0, 1.0], status_mix={"no-answer": 1.0})
    settings = bsettings.model_copy(update={"call_status_backfill_margin_seconds": 0.01})
    (rid,) = place(settings, ledger, 1)
    # Due at TimeOut + TimeLimit + margin, but this call rings 1 s: not listed yet at first.
    ledger.redis.zadd(keys.awaiting_status(), {rid: 0})
    backfill = make_backfill(settings, ledger)
    counts = backfill.run_once()
    assert counts["requests"] == 1 and counts.get("recorded", 0) == 0 and counts["not_listed"]
    again = ledger.redis.zscore(keys.awaiting_status(), rid)
    assert again is not None and again > ledger.clock() * 1000
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10)
    ledger.redis.zadd(keys.awaiting_status(), {rid: 0})
    assert backfill.run_once()["recorded"] == 1
    assert ledger.get(rid)["call_status"] == "no-answer"


def test_given_two_workers_when_both_run_a_pass_then_only_one_looks_up(
    bsettings: Settings, ledger: Ledger, sim: Any
) -> None:
    sim.configure(time_scale=0.01)
    place(bsettings, ledger, 2)
    wait_for(lambda: all(c["ended"] for c in sim.truth()["calls"]), timeout=10)
    wait_due(ledger)
    one, two = make_backfill(bsettings, ledger), make_backfill(bsettings, ledger)
    assert one.run_once()["recorded"] == 2
    assert two.run_once() == {"locked": 1}  # within the interval of the other's pass
    assert sim.truth()["details_requests"] == 1


def test_given_backfill_turned_off_then_no_call_is_awaited_and_nothing_is_looked_up(
    bsettings: Settings, ledger: Ledger, sim: Any, keys: Keys
) -> None:
    settings = bsettings.model_copy(update={"call_status_backfill": False})
    sim.configure(time_scale=0.01)
    place(settings, ledger, 2)
    assert ledger.redis.zcard(keys.awaiting_status()) == 0
    assert make_backfill(settings, ledger).run_once() == {}
    assert sim.truth()["details_requests"] == 0
