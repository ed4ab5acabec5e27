"""The dialer as a plain function: real Redis, the simulator over HTTP, no Celery."""

from __future__ import annotations

import time
from typing import Any

import pytest

from callq.dialing.limiter import Limiter, Permit, Slot
from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.callbacks import CallbackEvent
from callq.store.ledger import Ledger
from tests.campaigns import agent_csv, as_stream, mobile
from tests.conftest import make_dialer, placed
from tests.integration.test_feed import feeder_for, queued


class LateLimiter(Limiter):
    """Grants a permit whose slot is long past, as after a stall between permit and send."""

    def try_acquire(self, stop: Any = None, *, priority: bool = False) -> Permit:
        past = time.monotonic() - 5.0
        return Permit(earliest=past, latest=past)


def enqueue_one(ledger: Ledger, n: int = 1) -> str:
    rid = f"d:{n:020x}"
    ledger.enqueue_many(
        "d", [(rid, {"from": mobile("98", n), "to": mobile("97", n), "caller_id": "+918030752400"})]
    )
    return rid


def test_given_a_permit_when_on_time_then_the_call_is_placed_once(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    rid = enqueue_one(ledger)
    step = make_dialer(settings, ledger).place(rid)
    assert step.result == "originated"
    assert sim.truth()["by_custom_field"] == {rid: 1}
    assert make_dialer(settings, ledger).place(rid).result == "skip:originated"


def test_given_a_send_late_for_its_permit_when_dialling_then_it_is_held_back_unsent(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    rid = enqueue_one(ledger, 2)
    step = make_dialer(settings, ledger, LateLimiter).place(rid)
    assert (step.result, step.retry_in) == ("late", 0.0)
    assert sim.truth()["requests"] == 0  # nothing reached Exotel
    rec = ledger.get(rid)
    assert (rec["state"], rec["attempts"], rec["sent"]) == ("queued", "0", "0")
    assert placed(make_dialer(settings, ledger), rid).result == "originated"
    assert sim.truth()["by_custom_field"] == {rid: 1}


def test_given_a_proxy_504_while_exotel_placed_the_call_when_dialling_then_in_doubt_not_redialled(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # F9: a 504 whose body is not Exotel's RestException comes from something in front of
    # Exotel (a proxy, a load balancer), which may time out while Exotel still originates.
    rid = enqueue_one(ledger, 3)
    sim.script(rid, ["proxy_504"])
    dialer = make_dialer(settings, ledger)
    step = dialer.place(rid)
    assert (step.result, step.retry_in) == ("unknown", None)
    rec = ledger.get(rid)
    assert rec["state"] == "in_doubt" and "504" in rec["last_error"]
    assert dialer.place(rid).result == "skip:in_doubt"  # never dialled again while in doubt
    assert sim.truth()["by_custom_field"] == {rid: 1}


def test_given_exotels_own_504_when_dialling_then_not_placed_and_retried(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    rid = enqueue_one(ledger, 4)
    sim.script(rid, ["504"])  # Exotel's RestException: the call was not placed
    step = make_dialer(settings, ledger).place(rid)
    assert step.result == "not_placed" and step.retry_in is not None
    assert ledger.get(rid)["state"] == "retrying"
    assert sim.truth()["originated"] == 0


def test_given_wait_for_a_replica_that_does_not_answer_when_dialling_then_the_call_is_held_back_unsent_and_uncounted(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # REDIS_WAIT_REPLICAS=1 (strict) on the test Redis, which has no replica: the sent mark
    # is on no replica, so a failover could lose it. The request must not go out.
    assert ledger.replicas_connected() == 0
    strict = settings.model_copy(update={"redis_wait_replicas": 1, "redis_wait_timeout_ms": 20})
    rid = enqueue_one(ledger, 9)
    step = make_dialer(strict, ledger).place(rid)
    assert (step.result, step.retry_in) == ("unreplicated", 1.0)
    assert sim.truth()["requests"] == 0  # nothing reached Exotel
    rec = ledger.get(rid)
    assert (rec["state"], rec["attempts"], rec["sent"]) == ("queued", "0", "0")
    (entry,) = ledger.attempts_log(rid)
    assert entry["outcome"] == "unsent" and "no Redis replica acknowledged" in entry["error"]
    # The shipped policy (auto) waits only for the replicas the master has: none here.
    assert placed(make_dialer(settings, ledger), rid).result == "originated"
    assert sim.truth()["by_custom_field"] == {rid: 1}


def test_given_a_stray_copy_of_a_fed_message_when_the_first_copy_came_back_not_placed_then_it_does_not_send_on_the_same_permit(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # A fed message carries its permit's slot. Its first copy sends on it and comes back not
    # placed, retrying after a backoff shorter than the claim's early tolerance (1 s; the
    # time-scaled settings, or RETRY_BACKOFF_BASE_SECONDS below ~3 s). A stray copy of the
    # same message (restored after a worker's cold shutdown) claims the call at once while
    # the slot is still on time: it must not send a second request on that one permit.
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(1)), "dup")
    assert feeder_for(settings, ledger).drain_once() == {"open": 1, "fed": 1}
    ((rid, kw),) = queued(ledger, settings)
    sim.script(rid, ["504"])  # Exotel's own 504: not placed
    dialer = make_dialer(settings, ledger)
    first = dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
    if first.kind == "late":
        pytest.skip("the first copy was late for its fed slot (a loaded machine): not reached")
    assert first.result == "not_placed"
    assert first.retry_in is not None and first.retry_in < 1.0
    schedule = ledger.redis.get(dialer.limiter.key)
    stray = dialer.place(rid, slot=Slot(kw["slot"], kw["account"]))
    if stray.kind == "late":  # late for a permit of its own: retried as a worker does
        stray = placed(dialer, rid)
    assert stray.result == "originated"
    assert sim.truth()["requests"] == 2
    # The second request had a permit of its own: the limiter's schedule moved.
    assert ledger.redis.get(dialer.limiter.key) != schedule


def test_given_attempt_1_proven_placed_by_a_callback_during_attempt_2_when_attempt_2_is_not_placed_then_not_dialled_again(
    settings: Settings, ledger: Ledger, sim: Any
) -> None:
    # Review of cbrid: attempt 1 went in doubt and was judged unplaced (retrying); attempt 2
    # is sent, and while its POST is out attempt 1's callback comes (the URL's attempt=1):
    # kept apart, attempt 2 being live. Exotel then refuses attempt 2 (its own 504, not
    # placed). Retrying would dial the person a second time: attempt 1's call was placed.
    rid = enqueue_one(ledger, 21)
    c1 = ledger.claim(rid, lease_seconds=30, early_tolerance=0, worker="t")
    assert ledger.mark_sent(rid, c1.claim, lease_seconds=30)
    assert ledger.finish(rid, c1.claim, "in_doubt", error="timeout", look_again_in=60).ok
    assert ledger.finish(
        rid, c1.claim, "retrying", error="unplaced", next_in=0, look_again_in=60
    ).ok
    sim.script(rid, ["504"])  # Exotel's RestException: attempt 2 not placed
    dialer = make_dialer(settings, ledger)
    connect = dialer.client.connect

    def callback_first(params: Any) -> Any:
        late = CallbackEvent(sid="sid-attempt-1", status="completed", rid=rid, attempt=1)
        assert dialer.callbacks.apply_event(late).stale_attempt
        return connect(params)

    dialer.client.connect = callback_first  # type: ignore[method-assign]
    placed(dialer, rid)
    rec = ledger.get(rid)
    assert (rec["state"], rec["sid"], rec["call_status"]) == (
        "originated",
        "sid-attempt-1",
        "completed",
    )
    dialer.client.connect = connect  # type: ignore[method-assign]
    assert dialer.place(rid).result == "skip:originated"
    assert sim.truth()["requests"] == 1  # attempt 2's only
