"""Events sent onward, on a real Redis: an event is written iff its transition happens, in the
same Lua step; once per call; the campaign's completion once per total; nothing at all
without EVENTS_URL. And the delivery worker against a real receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from callq.settings import Settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.events import EventFlags, EventLog, sink_id
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.sweeping.events import SIGNATURE_HEADER, Delivery, verify

CAMPAIGN = "ev1"
ON = EventFlags(on=True)


def rid(n: int) -> str:
    return f"{CAMPAIGN}:{n:020d}"


@pytest.fixture
def evledger(rclient: redis.Redis, keys: Keys) -> Ledger:  # type: ignore[type-arg]
    return Ledger(rclient, keys, ON)


def enqueue(ledger: Ledger, n: int, campaign: str = CAMPAIGN) -> list[str]:
    ids = [f"{campaign}:{i:020d}" for i in range(n)]
    fields = {"from": "+919000000000", "to": "+919000000001", "custom_field": "row-own"}
    assert ledger.enqueue_many(campaign, [(r, fields) for r in ids]) == [1] * n
    return ids


def events(ledger: Ledger) -> list[dict[str, Any]]:
    out = []
    for entry, fields in ledger.redis.xrange(ledger.keys.events()):
        out.append({"entry": entry, **fields, "data": json.loads(fields["data"])})
    return out


def claim(ledger: Ledger, r: str, gate: str = "") -> Any:
    return ledger.claim(r, lease_seconds=30, early_tolerance=0.5, worker="t", gate=gate)


def sent(ledger: Ledger, r: str) -> str:
    c = claim(ledger, r)
    assert c.claimed
    assert ledger.mark_sent(r, c.claim, lease_seconds=30)
    return str(c.claim)


def test_given_no_events_url_when_calls_end_then_nothing_is_written(ledger: Ledger) -> None:
    a, b = enqueue(ledger, 2)
    ledger.finish(a, sent(ledger, a), "failed", error="rejected")
    ledger.cancel(CAMPAIGN)
    assert ledger.get(b)["state"] == "cancelled"
    assert not ledger.redis.exists(ledger.keys.events())
    assert not ledger.redis.exists(ledger.keys.campaign_events(CAMPAIGN))


def test_given_events_when_a_call_fails_then_one_event_carries_its_record(
    evledger: Ledger,
) -> None:
    (a,) = enqueue(evledger, 1)
    token = sent(evledger, a)
    assert events(evledger) == []  # claimed and sent: not final
    assert evledger.finish(a, token, "failed", error="HTTP 400: bad number").ok
    (ev,) = [e for e in events(evledger) if e["type"] == "call.final"]
    assert ev["id"] == f"call.final:{a}"
    assert ev["data"] == {
        "request_id": a,
        "campaign": CAMPAIGN,
        "state": "failed",
        "sid": "",
        "call_status": "",
        "attempts": 1,
        "custom_field": "row-own",
        "last_error": "HTTP 400: bad number",
    }
    # A refused (stale) finish writes nothing more.
    assert not evledger.finish(a, token, "failed").ok
    assert len([e for e in events(evledger) if e["type"] == "call.final"]) == 1


def test_given_events_when_a_call_retries_or_goes_in_doubt_then_no_event(
    evledger: Ledger,
) -> None:
    a, b = enqueue(evledger, 2)
    evledger.finish(a, sent(evledger, a), "retrying", next_in=0, look_again_in=60)
    evledger.finish(b, sent(evledger, b), "in_doubt", look_again_in=60)
    assert events(evledger) == []


def test_given_callbacks_awaited_when_originated_then_the_event_waits_for_the_terminal_status(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "originated", sid="sid-a", status_due_in=60)
    assert events(evledger) == []  # a call_status will come
    store = CallbackStore(rclient, keys, events=ON)
    store.apply(CallbackEvent("sid-a", "in-progress", a))
    assert events(evledger) == []  # not terminal
    store.apply(CallbackEvent("sid-a", "completed", a))
    store.apply(CallbackEvent("sid-a", "completed", a))  # a repeat
    store.apply(CallbackEvent("sid-a", "failed", a))  # a changed status: still one event
    finals = [e for e in events(evledger) if e["type"] == "call.final"]
    assert [e["data"]["call_status"] for e in finals] == ["completed"]
    assert finals[0]["data"]["sid"] == "sid-a" and finals[0]["data"]["state"] == "originated"
    (done,) = [e for e in events(evledger) if e["type"] == "campaign.completed"]
    assert done["id"] == f"campaign.completed:{CAMPAIGN}:1"
    assert done["data"]["states"] == {"originated": 1}
    assert done["data"]["call_status"] == {"completed": 1}


def test_given_no_status_will_come_when_originated_then_the_call_is_final_at_once(
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    ledger = Ledger(rclient, keys, EventFlags(on=True, originated_final=True))
    a, b = enqueue(ledger, 2)
    ledger.finish(a, sent(ledger, a), "originated", sid="sid-a")
    # With a status due (the backfill on for this call), it waits even so.
    ledger.finish(b, sent(ledger, b), "originated", sid="sid-b", status_due_in=60)
    finals = [e for e in events(ledger) if e["type"] == "call.final"]
    assert [e["data"]["request_id"] for e in finals] == [a]


def test_given_a_redial_on_busy_when_the_callback_comes_then_no_event_until_the_last_outcome(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    (a,) = enqueue(evledger, 1)
    evledger.set_controls(CAMPAIGN, {"redial_on": "busy", "redials": "1", "redial_interval": "0"})
    store = CallbackStore(rclient, keys, events=ON)
    evledger.finish(a, sent(evledger, a), "originated", sid="s1", status_due_in=60)
    assert store.apply_event(CallbackEvent("s1", "busy", a)).redialled
    assert events(evledger) == []  # a redial follows: not final
    evledger.finish(a, sent(evledger, a), "originated", sid="s2", status_due_in=60)
    assert not store.apply_event(CallbackEvent("s2", "busy", a)).redialled
    finals = [e for e in events(evledger) if e["type"] == "call.final"]
    assert [(e["data"]["sid"], e["data"]["attempts"]) for e in finals] == [("s2", 2)]


def test_given_cancel_claim_release_and_settle_when_calls_end_then_each_has_one_event(
    evledger: Ledger,
) -> None:
    ids = enqueue(evledger, 5)
    dialing = claim(evledger, ids[0])  # claimed, nothing sent
    token = sent(evledger, ids[1])  # sent: cancel leaves it alone
    assert evledger.cancel(CAMPAIGN) == 3  # ids 2, 3, 4 (parked) are cancelled
    assert evledger.release(ids[0], dialing.claim, republish_after=1)  # -> cancelled
    got = {
        e["data"]["request_id"]: e["data"]["state"]
        for e in events(evledger)
        if e["type"] == "call.final"
    }
    assert got == {r: "cancelled" for r in (ids[0], *ids[2:])}
    assert not [e for e in events(evledger) if e["type"] == "campaign.completed"]
    evledger.finish(ids[1], token, "failed", error="x")
    (done,) = [e for e in events(evledger) if e["type"] == "campaign.completed"]
    assert done["data"]["total"] == 5 and done["data"]["states"] == {"cancelled": 4, "failed": 1}
    assert evledger.cancel(CAMPAIGN) == 0  # again: nothing moves, nothing written
    assert len(events(evledger)) == 6


def test_given_an_expired_campaign_when_claims_and_the_judge_settle_then_each_call_has_its_event(
    evledger: Ledger,
) -> None:
    a, b, c = enqueue(evledger, 3)
    assert claim(evledger, a, gate="expire").code == "expired"
    assert evledger.settle_parked(CAMPAIGN, "expired", 10) == 2
    assert evledger.settle_parked(CAMPAIGN, "expired", 10) == 0
    finals = [e for e in events(evledger) if e["type"] == "call.final"]
    assert sorted(e["data"]["request_id"] for e in finals) == [a, b, c]
    assert {e["data"]["state"] for e in finals} == {"expired"}
    assert len([e for e in events(evledger) if e["type"] == "campaign.completed"]) == 1


def test_given_a_completed_campaign_when_more_rows_come_then_it_completes_again_with_a_new_id(
    evledger: Ledger,
) -> None:
    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "failed")
    more = f"{CAMPAIGN}:{7:020d}"
    assert evledger.enqueue_many(CAMPAIGN, [(more, {"from": "+919000000000"})]) == [1]
    evledger.finish(more, sent(evledger, more), "failed")
    done = [e["id"] for e in events(evledger) if e["type"] == "campaign.completed"]
    assert done == [f"campaign.completed:{CAMPAIGN}:1", f"campaign.completed:{CAMPAIGN}:2"]


def test_given_per_attempt_events_when_attempts_end_then_each_outcome_has_one(
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    ledger = Ledger(rclient, keys, EventFlags(on=True, per_attempt=True))
    (a,) = enqueue(ledger, 1)
    ledger.finish(a, sent(ledger, a), "retrying", error="HTTP 500", next_in=0, look_again_in=60)
    token = sent(ledger, a)
    ledger.finish(a, token, "in_doubt", look_again_in=60)
    ledger.finish(a, token, "in_doubt", look_again_in=60)  # reconcile looks again: no event
    ledger.finish(a, token, "failed", error="HTTP 400")
    got = [(e["type"], e["id"]) for e in events(ledger)]
    assert got == [
        ("call.attempt", f"call.attempt:{a}:1:retrying"),
        ("call.attempt", f"call.attempt:{a}:2:in_doubt"),
        ("call.attempt", f"call.attempt:{a}:3:failed"),
        ("call.final", f"call.final:{a}"),
        ("campaign.completed", f"campaign.completed:{CAMPAIGN}:1"),
    ]


# The delivery worker against a real receiver on loopback ------------------------------------


class Receiver:
    """A threaded HTTP server: answers ``script`` in turn (an int status, or 'slow' to sleep
    past the sender's timeout), then 200; records every request."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.got.append((dict(self.headers), body))
                    step = outer.script.pop(0) if outer.script else 200
                if step == "slow":
                    threading.Event().wait(1.5)
                    step = 200
                self.send_response(int(step))
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, "slow", 503])
    yield r
    r.close()


SECRET = "a-long-events-secret-1234"


def test_given_a_failing_receiver_when_delivering_then_each_event_arrives_signed_after_retries(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,
    receiver: Receiver,  # type: ignore[type-arg]
) -> None:
    ids = enqueue(evledger, 3)
    for r in ids:
        evledger.finish(r, sent(evledger, r), "failed", error="x")
    s = Settings(
        redis_url="redis://unused",
        key_prefix=keys.prefix,
        events_url=receiver.url,
        events_secret=SecretStr(SECRET),
        events_timeout_seconds=0.5,
    )
    d = Delivery(rclient, keys, s, "c1")
    sink = sink_id(receiver.url)
    wanted = {f"call.final:{r}" for r in ids} | {f"campaign.completed:{CAMPAIGN}:3"}
    seen: set[str] = set()
    for _ in range(40):
        d.run_once()
        # Retries are due after a backoff: bring them forward rather than wait.
        due = keys.events_due(sink)
        waiting = rclient.zrange(due, 0, -1)
        if waiting:
            rclient.zadd(due, dict.fromkeys(waiting, 0), xx=True)
        seen = {json.loads(b)["id"] for _, b in receiver.got}
        if seen == wanted and not rclient.zcard(due):
            break
    assert seen == wanted
    assert len(receiver.got) > len(wanted)  # the failures were sent again
    for headers, body in receiver.got:
        assert verify(SECRET.encode(), body, headers[SIGNATURE_HEADER])
        assert not verify(b"another-secret-entirely", body, headers[SIGNATURE_HEADER])
    assert EventLog(rclient, keys).counts([sink]) == {"stream": 4, "due": 0, "dead": 0}


def test_given_a_receiver_down_past_the_horizon_when_delivering_then_the_event_is_kept_dead(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "failed")
    down = Receiver([500] * 100)
    try:
        s = Settings(
            redis_url="redis://unused",
            key_prefix=keys.prefix,
            events_url=down.url,
            events_secret=SecretStr(SECRET),
            events_retry_seconds=0.001,
        )
        d = Delivery(rclient, keys, s, "c1")
        d.run_once()
    finally:
        down.close()
    log = EventLog(rclient, keys)
    dead = list(log.dead())
    assert sorted(x["event"]["id"] for x in dead) == sorted(
        [f"call.final:{a}", f"campaign.completed:{CAMPAIGN}:1"]
    )
    assert dead[0]["last_error"] == "HTTP 500" and dead[0]["tries"] == 1
    assert SECRET not in json.dumps(dead)
    # replay puts them back in the receiver's due set
    sink = sink_id(down.url)
    assert log.replay([sink], 0) == 2
    assert rclient.zcard(keys.events_due(sink)) == 2


def test_given_events_when_operators_replay_and_list_dead_then_the_cli_says_what_it_did(
    evledger: Ledger,
    keys: Keys,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from callq.intake.cli import main

    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "failed")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KEY_PREFIX", keys.prefix)
    assert main(["events", "status"]) == 2  # no EVENTS_URL: a clear error
    assert "EVENTS_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("EVENTS_URL", "http://127.0.0.1:9/a,http://127.0.0.1:9/b")
    monkeypatch.setenv("EVENTS_SECRET", f"{SECRET},{SECRET}-second")
    assert main(["events", "replay", "--since", "1h"]) == 0
    assert capsys.readouterr().out.startswith("2 events since ")  # call.final + completed
    for url in ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b"):
        assert evledger.redis.zcard(keys.events_due(sink_id(url))) == 2
    assert main(["events", "replay", "--since", "2999-01-01T00:00+00:00"]) == 0
    assert capsys.readouterr().out.startswith("0 events since ")
    assert main(["events", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "stream": 2,
        "due": 4,
        "dead": 0,
        "receivers": 2,
    }
    assert main(["events", "dead"]) == 0
    out = capsys.readouterr().out
    assert "0 dead events" in out and SECRET not in out
    with pytest.raises(SystemExit):
        main(["events", "replay", "--since", "yesterday"])
    assert "--since" in capsys.readouterr().err


def _delivered(receiver: Receiver) -> set[str]:
    """Event ids the receiver got (after its script of failures ran out: each answered 200)."""
    return {json.loads(b)["id"] for _, b in receiver.got}


def test_given_retention_equal_to_the_horizon_when_an_event_is_still_retried_then_the_trim_keeps_it(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    # EVENTS_RETAIN_SECONDS may equal EVENTS_RETRY_SECONDS; an event's last try can come a
    # backoff (up to 10 min) after the horizon, so the trim must not take it from the stream
    # while it is still due: it is delivered (or kept dead), never dropped unsent.
    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "failed")
    rec = Receiver([500] * 100)
    try:
        s = Settings(
            redis_url="redis://unused",
            key_prefix=keys.prefix,
            events_url=rec.url,
            events_secret=SecretStr(SECRET),
            events_retry_seconds=1.0,
            events_retain_seconds=1.0,
        )
        d = Delivery(rclient, keys, s, "c1")
        sink = sink_id(rec.url)
        due = keys.events_due(sink)
        d.run_once()  # pumped, sent, refused: due again after a backoff
        assert rclient.zcard(due) == 2
        # A later backoff puts the next try past the retention (as after a few failures).
        rclient.zadd(due, dict.fromkeys(rclient.zrange(due, 0, -1), 2**50), xx=True)
        # Older than EVENTS_RETAIN_SECONDS now (the trim reads the clock in whole seconds).
        threading.Event().wait(2.1)
        d._trimmed = float("-inf")
        d.run_once()  # a trim pass while the retries wait
        with rec.lock:
            rec.got.clear()
            rec.script = []  # the receiver is back: 200 from now on
        rclient.zadd(due, dict.fromkeys(rclient.zrange(due, 0, -1), 0), xx=True)
        for _ in range(5):
            d.run_once()
        d._trimmed = float("-inf")
        d.run_once()  # delivered now: the next trim takes them
        assert not rclient.xlen(keys.events())
    finally:
        rec.close()
    dead = {x["event"]["id"] for x in EventLog(rclient, keys).dead()}
    wanted = {f"call.final:{a}", f"campaign.completed:{CAMPAIGN}:1"}
    assert _delivered(rec) | dead == wanted
    assert not rclient.zcard(due)


def test_given_an_entry_a_killed_worker_read_when_the_trim_runs_then_it_stays_for_delivery(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    # A worker SIGKILLed between its XREADGROUP and the MULTI that moves the entries into the
    # due sets leaves them pending; another claims them after one lease. A trim in between
    # (the entry already past EVENTS_RETAIN_SECONDS) must keep it.
    rec = Receiver([])
    try:
        s = Settings(
            redis_url="redis://unused",
            key_prefix=keys.prefix,
            events_url=rec.url,
            events_secret=SecretStr(SECRET),
            events_retry_seconds=1.0,
            events_retain_seconds=1.0,
        )
        d = Delivery(rclient, keys, s, "live")
        d.run_once()  # the group exists; nothing to send yet
        (a,) = enqueue(evledger, 1)
        evledger.finish(a, sent(evledger, a), "failed")  # call.final and campaign.completed
        got = rclient.xreadgroup("callq-delivery", "killed", {keys.events(): ">"}, count=1)
        (killed,) = [str(e) for _, entries in got for e, _ in entries]
        # Older than EVENTS_RETAIN_SECONDS now (the trim reads the clock in whole seconds).
        threading.Event().wait(2.1)
        d._trimmed = float("-inf")
        d.run_once()  # sends the unread entry; the killed one's lease has not run out: trims
        # The killed worker's lease runs out (its idle time brought forward, not waited).
        rclient.xclaim(
            keys.events(), "callq-delivery", "killed", 0, [killed], idle=d.lease_ms + 1000
        )
        for _ in range(3):
            d.run_once()
    finally:
        rec.close()
    assert _delivered(rec) == {f"call.final:{a}", f"campaign.completed:{CAMPAIGN}:1"}


def test_given_per_attempt_events_when_refusals_are_uncounted_then_each_outcome_has_its_own_id(
    rclient: redis.Redis,
    keys: Keys,  # type: ignore[type-arg]
) -> None:
    # An account-level refusal (the breaker's fault) uncounts its attempt, so the next attempt
    # has the same number: its event must not share the first one's id, or the receiver, which
    # dedupes on it, drops it.
    ledger = Ledger(rclient, keys, EventFlags(on=True, per_attempt=True))
    (a,) = enqueue(ledger, 1)
    for _ in range(2):
        token = sent(ledger, a)
        assert ledger.finish(
            a, token, "retrying", error="HTTP 403", next_in=0, look_again_in=60, uncount=True
        ).ok
    ledger.finish(a, sent(ledger, a), "failed", error="HTTP 400")
    attempts = [e for e in events(ledger) if e["type"] == "call.attempt"]
    assert [e["data"]["state"] for e in attempts] == ["retrying", "retrying", "failed"]
    assert len({e["id"] for e in attempts}) == 3


def test_given_a_receiver_url_with_credentials_when_its_event_is_dead_then_no_credential_shows(
    evledger: Ledger,
    rclient: redis.Redis,
    keys: Keys,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
) -> None:
    from callq.intake.cli import main

    (a,) = enqueue(evledger, 1)
    evledger.finish(a, sent(evledger, a), "failed")
    down = Receiver([500] * 100)
    try:
        port = down.server.server_address[1]
        url = f"http://hook-user:pw-in-the-url-9@127.0.0.1:{port}/events?token=tok-in-the-url-9"
        s = Settings(
            redis_url="redis://unused",
            key_prefix=keys.prefix,
            events_url=url,
            events_secret=SecretStr(SECRET),
            events_retry_seconds=0.001,
        )
        Delivery(rclient, keys, s, "c1").run_once()
    finally:
        down.close()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KEY_PREFIX", keys.prefix)
    monkeypatch.setenv("EVENTS_URL", url)
    assert main(["events", "dead"]) == 0
    assert main(["events", "dead", "--json"]) == 0
    out = capsys.readouterr().out + json.dumps(rclient.hgetall(keys.events_dead()))
    assert f"http://127.0.0.1:{port}/events" in out  # the receiver is named
    for secret in ("pw-in-the-url-9", "tok-in-the-url-9", "hook-user", SECRET):
        assert secret not in out
