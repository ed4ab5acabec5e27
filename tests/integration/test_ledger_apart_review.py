"""The ledger apart from the broker (LEDGER_REDIS_URL): the push after the script, where it
can fail on its own.

On one Redis a script's push is part of the script: whatever happens after it (a WAIT that
falls short, another step of the same pass) the message is on the queue. Apart, the push is
a step of its own, and these tests hold it to the same: a step after it failing does not
leave messages unpushed, and one push failing does not leave the others unpushed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from callq.errors import Unreplicated
from callq.intake.enqueue import Enqueuer
from callq.intake.request import request_id
from callq.settings import Settings
from callq.store.connect import broker_redis_for, redis_for
from callq.store.keys import Keys
from callq.store.ledger import ENQUEUE_CHUNK, Ledger, Unpark
from callq.sweeping.feed import Feeder
from callq.sweeping.sweeper import Sweeper
from callq.transport.config import make_app
from callq.transport.messages import TaskMessages
from callq.transport.queues import CALLS_QUEUE, PRIORITY_QUEUE
from devstack.embedded import EmbeddedRedis
from tests.campaigns import agent_csv, as_stream
from tests.conftest import make_dialer, placed, wait_for


@pytest.fixture(scope="module")
def ledger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("ledger"), appendonly=False) as server:
        yield server


@pytest.fixture
def apart(settings: Settings, ledger_server: EmbeddedRedis) -> Settings:
    return settings.model_copy(update={"ledger_redis_url": ledger_server.url})


@pytest.fixture
def ledger_of(apart: Settings) -> Iterator[Ledger]:
    client = redis_for(apart)
    broker = broker_redis_for(apart)
    ledger = Ledger(client, Keys.for_settings(apart), broker=broker)
    yield ledger
    for key in client.scan_iter(match=f"{apart.key_prefix}:*", count=1000):
        client.delete(key)
    client.close()
    if broker is not None:
        broker.close()


def enqueue(settings: Settings, rows: int, campaign: str) -> None:
    """A campaign of ``rows`` calls, through the producer (its clients closed after)."""
    enqueuer = Enqueuer(settings)
    try:
        enqueuer.enqueue_file(as_stream(agent_csv(rows)), campaign)
    finally:
        enqueuer.ledger.redis.close()
        if enqueuer.ledger.broker is not None:
            enqueuer.ledger.broker.close()


def broker_ids(settings: Settings, queue: str = CALLS_QUEUE) -> list[str]:
    """The request ids of the broker's messages on ``queue``, oldest first."""
    client = redis.Redis.from_url(settings.require_redis_url())
    raw = client.lrange(f"{settings.broker_key_prefix}{queue}", 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]


@pytest.mark.parametrize("one_redis", [True, False], ids=["one_redis", "apart"])
def test_given_a_priority_batch_the_replicas_do_not_acknowledge_then_its_messages_are_on_the_queue_all_the_same(
    one_redis: bool, settings: Settings, apart: Settings, ledger: Ledger, ledger_of: Ledger
) -> None:
    """WAIT comes after the script: on one Redis the script has pushed the messages by the
    time the producer is told the batch is not replicated (enqueueing again is harmless).
    Apart, the push must not hang on the acknowledgement either: the records are written
    (queued, on the 6 h queued_overdue guard), so a message left unpushed would wait hours."""
    s, led = (settings, ledger) if one_redis else (apart, ledger_of)
    messages = TaskMessages(make_app(s), queue=PRIORITY_QUEUE)
    rids = [request_id("unrep", f"row{i}") for i in range(8)]
    records = [
        (rid, {"from": "08030752400", "to": f"0981234{i:04d}"}) for i, rid in enumerate(rids)
    ]
    with pytest.raises(Unreplicated):
        led.enqueue_many(
            "unrep",
            records,
            queue_key=messages.queue_key,
            messages=[messages.encode(rid) for rid in rids],
            queued_overdue=s.queued_overdue_seconds,
            replicas=1,  # no replica anywhere here: WAIT 1 gets 0
            replica_timeout_ms=20,
        )
    assert led.status("unrep").states["queued"] == 8  # written all the same
    assert broker_ids(s, PRIORITY_QUEUE) == rids


class FlakyBroker:
    """The broker's client, its first ``refuse`` LPUSHes refused (a blip: the broker
    restarting, a dropped connection; None: all, the broker down), the others through."""

    def __init__(self, client: redis.Redis, refuse: int | None = 1) -> None:
        self.client = client
        self.refuse = refuse
        self.refused: list[int] = []  # the size of each push refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def lpush(self, key: str, *values: str) -> Any:
        if self.refuse is None or len(self.refused) < self.refuse:
            self.refused.append(len(values))
            raise redis.ConnectionError("Connection reset by peer")
        return self.client.lpush(key, *values)


def test_given_two_campaigns_fed_in_one_pass_when_the_push_of_one_fails_then_the_others_are_pushed_and_the_pass_ends(
    apart: Settings, ledger_of: Ledger
) -> None:
    """One feed pass, one script per campaign, in one pipeline: both scripts have moved
    their calls off the parked set before the first push. A push that fails leaves its calls
    to their deadline (retry_overdue); it must not leave the other campaign's calls, whose
    script ran too, unpushed, nor abort the pass's own bookkeeping after the scripts."""
    for campaign in ("fa", "fb"):
        enqueue(apart, 5, campaign)
    assert ledger_of.broker is not None
    flaky = FlakyBroker(ledger_of.broker)
    ledger_of.broker = flaky  # type: ignore[assignment]
    feeder = Feeder(ledger_of, apart, make_dialer(apart, ledger_of), make_app(apart))
    got = feeder.drain_once()
    assert flaky.refused == [5]
    assert got == {"open": 2, "fed": 10}  # handed to the queue, ledger-wise: all ten
    on_queue = broker_ids(apart)
    assert len(on_queue) == 5 and len({rid.split(":")[0] for rid in on_queue}) == 1
    # The refused campaign's calls: off the parked set, still queued, each on its deadline
    # (the sweeper republishes them then).
    lost = [
        r["request_id"]
        for c in ("fa", "fb")
        for r in ledger_of.iter_records(c)
        if r["request_id"] not in on_queue
    ]
    assert len(lost) == 5
    for rid in lost:
        assert ledger_of.record(rid).state == "queued"  # type: ignore[union-attr]
        assert ledger_of.redis.zscore(ledger_of.keys.deadlines(), rid) is not None
    assert ledger_of.status("fa").parked == ledger_of.status("fb").parked == 0


class BrokerDown(Exception):
    """What Celery's publish raises with the broker unreachable (kombu's OperationalError,
    after its own retries)."""


def test_given_the_broker_down_when_the_sweeper_republishes_lost_calls_then_they_come_back_when_it_is_up(
    apart: Settings, ledger_of: Ledger
) -> None:
    """Apart, the ledger answers while the broker does not: a feed's push fails (its calls
    on their retry_overdue deadline), then so does the sweeper's republish at that deadline.
    sweep.lua re-arms a `queued` call's deadline to queued_overdue (6 h by default) before
    the publish: a publish that fails must not leave the call that far off."""
    s = apart.model_copy(update={"retry_overdue_seconds": 1.0})
    enqueue(s, 4, "down")
    assert ledger_of.broker is not None
    ledger_of.broker = FlakyBroker(ledger_of.broker, refuse=None)  # type: ignore[assignment]
    feeder = Feeder(ledger_of, s, make_dialer(s, ledger_of), make_app(s))
    assert feeder.drain_once() == {"open": 1, "fed": 4}
    assert broker_ids(s) == []
    rids = [r["request_id"] for r in ledger_of.iter_records("down")]

    tried: list[str] = []

    def publish_refused(rid: str) -> None:
        tried.append(rid)
        raise BrokerDown("[Errno 111] Connection refused")

    down = Sweeper(ledger_of, s, requeue=publish_refused)
    wait_for(lambda: ledger_of.due() != [], timeout=10, message="the deadlines")
    # The pass tries the broker once, not once per call, and keeps the calls near.
    assert down.sweep_once()["unpublished"] == 4
    assert len(tried) == 1

    # The broker is back: the next sweeps republish every call, within a few guards.
    published: list[str] = []
    up = Sweeper(ledger_of, s, requeue=published.append)

    def all_back() -> bool:
        up.sweep_once()
        return sorted(set(published)) == sorted(rids)

    wait_for(all_back, timeout=8, message=lambda: f"republished {published} of {rids}")


def test_given_a_lost_push_under_a_live_call_cap_then_the_republished_calls_keep_their_own_slots_and_dial_once(
    apart: Settings, ledger_of: Ledger, sim: Any
) -> None:
    """The feed takes a fed call's live slots with its permit, in the script before the
    push. A push that never happens leaves them held (the account's cap counts them) until
    the republished message's attempt: that attempt's permit renews the same slots
    (`{weight}:{request id}`), it does not take a second pair, nor find its own slots
    against it at the cap."""
    s = apart.model_copy(update={"retry_overdue_seconds": 1.0, "exotel_max_live_calls": 4})
    enqueue(s, 3, "cap")  # connect-two-numbers calls: 2 slots each, so 2 fit under 4
    assert ledger_of.broker is not None
    ledger_of.broker = FlakyBroker(ledger_of.broker, refuse=None)  # type: ignore[assignment]
    feeder = Feeder(ledger_of, s, make_dialer(s, ledger_of), make_app(s))
    assert feeder.drain_once().get("fed") == 2
    live = ledger_of.keys.live_slots("default")
    held = sorted(ledger_of.redis.zrange(live, 0, -1))
    assert len(held) == 2 and all(m.startswith("2:") for m in held)

    published: list[str] = []
    sweeper = Sweeper(ledger_of, s, requeue=published.append)

    def republished() -> bool:
        sweeper.sweep_once()
        return len(set(published)) == 2

    wait_for(republished, timeout=8, message=lambda: f"republished {published}")
    dialer = make_dialer(s, ledger_of)
    steps = [placed(dialer, rid).result for rid in sorted(set(published))]
    assert steps == ["originated", "originated"], steps
    assert sorted(ledger_of.redis.zrange(live, 0, -1)) == held  # the same two pairs
    truth = sim.truth()
    assert sorted(truth["by_custom_field"]) == sorted(m[2:] for m in held)
    assert set(truth["by_custom_field"].values()) == {1}
    assert ledger_of.status("cap").parked == 1  # the third waits for a slot


@pytest.mark.parametrize("one_redis", [True, False], ids=["one_redis", "apart"])
def test_given_a_priority_batch_whose_second_chunk_fails_then_the_first_chunks_messages_are_on_the_queue(
    one_redis: bool, settings: Settings, apart: Settings, ledger: Ledger, ledger_of: Ledger
) -> None:
    """One enqueue_many is one pipeline of one script per ENQUEUE_CHUNK rows. A chunk whose
    script fails (here a call key of the wrong type; in life an OOM refusal near maxmemory)
    writes nothing, but the chunks before it wrote their calls: on one Redis their scripts
    pushed the messages too. Apart, they must be pushed as well before the error is raised,
    or those calls wait for queued_overdue (hours) unless the file is enqueued again."""
    s, led = (settings, ledger) if one_redis else (apart, ledger_of)
    messages = TaskMessages(make_app(s), queue=PRIORITY_QUEUE)
    n = ENQUEUE_CHUNK + 10
    rids = [request_id("chunks", f"row{i}") for i in range(n)]
    records = [(rid, {"from": "08030752400", "to": f"098{i:07d}"}) for i, rid in enumerate(rids)]
    led.redis.set(led.keys.call(rids[ENQUEUE_CHUNK + 3]), "not a hash")  # in chunk 2
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            led.enqueue_many(
                "chunks",
                records,
                queue_key=messages.queue_key,
                messages=[messages.encode(rid) for rid in rids],
                queued_overdue=s.queued_overdue_seconds,
            )
        assert led.status("chunks").states["queued"] == ENQUEUE_CHUNK  # chunk 1 only
        assert broker_ids(s, PRIORITY_QUEUE) == rids[:ENQUEUE_CHUNK]
    finally:
        led.redis.delete(led.keys.call(rids[ENQUEUE_CHUNK + 3]))


@pytest.mark.parametrize("one_redis", [True, False], ids=["one_redis", "apart"])
def test_given_a_feed_pipeline_whose_second_script_fails_then_the_first_batchs_messages_are_on_the_queue(
    one_redis: bool, settings: Settings, apart: Settings, ledger: Ledger, ledger_of: Ledger
) -> None:
    """unpark_many: one unpark.lua per campaign in one pipeline. A script that fails moves
    nothing, but the batches before it moved their calls off the parked set: on one Redis
    their scripts pushed them. Apart they must be pushed as well, not left to their deadline."""
    s, led = (settings, ledger) if one_redis else (apart, ledger_of)
    enqueue(s, 3, "ok")
    messages = TaskMessages(make_app(s))
    rids = led.parked("ok", 10)
    assert len(rids) == 3
    bad = led.keys.campaign_meta("broken")
    led.redis.set(bad, "not a hash")  # unpark.lua's first read: WRONGTYPE, nothing moved
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            led.unpark_many(
                [
                    Unpark("ok", [(rid, messages.encode(rid)) for rid in rids], messages.queue_key),
                    Unpark(
                        "broken", [("broken:x", messages.encode("broken:x"))], messages.queue_key
                    ),
                ],
                overdue=s.retry_overdue_seconds,
            )
        assert led.status("ok").parked == 0
        assert broker_ids(s) == rids
    finally:
        led.redis.delete(bad)
