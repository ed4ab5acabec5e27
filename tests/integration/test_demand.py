"""The autoscaling signal (callq.store.demand) on a real Redis: it follows the backlog that can
be dialled now, not the calls held by a calling window, a future send_at, a pause or an open
breaker, and the scrape-time gauges report it. Through real workers: tests/system/test_demand.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from callq.campaign.controls import CampaignOptions
from callq.dialing.breaker import Breaker
from callq.intake.enqueue import Enqueuer
from callq.settings import ExotelAccount, Settings
from callq.store.demand import Demand, account_rate, hold_seconds, read_demand
from callq.store.gauges import DemandCollector
from callq.store.ledger import Ledger
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app
from callq.transport.queues import CALLS_QUEUE, PRIORITY_QUEUE
from producer import pause_campaign, resume_campaign
from tests.campaigns import agent_csv, as_stream
from tests.conftest import make_dialer

QUEUES = (CALLS_QUEUE, PRIORITY_QUEUE)


def demand(ledger: Ledger, settings: Settings) -> Demand:
    return read_demand(ledger.redis, settings, QUEUES)


def closed_window() -> str:
    """A one-minute window two hours from now (UTC): closed now."""
    start = datetime.now(UTC) + timedelta(hours=2)
    return f"{start:%H}:00-{start:%H}:01"


def test_given_nothing_enqueued_then_the_demand_is_zero(settings: Settings, ledger: Ledger) -> None:
    d = demand(ledger, settings)
    assert (d.ready, d.held, d.queued, d.reserved, d.threads, d.workers) == (0, 0, 0, 0, 0.0, 0)


def test_given_a_campaign_enqueued_then_its_calls_are_ready_and_the_threads_follow_the_rate(
    settings: Settings, ledger: Ledger
) -> None:
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(agent_csv(3)), "small")
    d = demand(ledger, settings)
    assert d.ready == 3 and d.by_campaign == {"small": 3}
    # Three calls need three threads at most, whatever the rate allows.
    assert d.threads == 3.0 and d.workers == 1

    enq.enqueue_file(as_stream(agent_csv(500, start=100)), "big")
    d = demand(ledger, settings)
    assert d.ready == 503
    # 503 calls can use no more threads than the account's rate keeps busy: rate x hold.
    cap = account_rate(settings) * hold_seconds(settings)
    (acct,) = d.accounts
    assert acct.account == "default" and acct.threads == pytest.approx(cap)
    assert d.threads == pytest.approx(cap)
    assert d.workers == math.ceil(cap / settings.worker_concurrency)


def test_given_held_campaigns_then_only_what_can_be_dialled_now_counts(
    settings: Settings, ledger: Ledger
) -> None:
    enq = Enqueuer(settings)
    enq.enqueue_file(as_stream(agent_csv(4)), "open")
    enq.enqueue_file(
        as_stream(agent_csv(5, start=100)),
        "windowed",
        options=CampaignOptions(window=closed_window(), timezone="UTC"),
    )
    enq.enqueue_file(
        as_stream(agent_csv(6, start=200)),
        "later",
        options=CampaignOptions(send_at=datetime.now(UTC) + timedelta(hours=1)),
    )
    enq.enqueue_file(as_stream(agent_csv(7, start=300)), "paused")
    pause_campaign("paused", settings=settings)
    d = demand(ledger, settings)
    assert d.by_campaign == {"open": 4}
    assert (d.ready, d.held) == (4, 5 + 6 + 7)
    assert d.threads == 4.0

    resume_campaign("paused", settings=settings)
    enq.set_options("windowed", CampaignOptions(window="always"))
    d = demand(ledger, settings)
    assert d.by_campaign == {"open": 4, "paused": 7, "windowed": 5}
    assert (d.ready, d.held) == (16, 6)


def test_given_the_accounts_breaker_open_then_its_calls_are_held(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(4)), "brk")
    breaker = Breaker(ledger.redis, ledger.keys, "default", cooldown=60.0)
    breaker.trip("401 test")
    d = demand(ledger, settings)
    assert (d.ready, d.held, d.threads) == (0, 4, 0.0)
    breaker.close()
    assert demand(ledger, settings).ready == 4


def test_given_calls_fed_then_they_count_as_busy_until_the_queue_is_empty(
    settings: Settings, ledger: Ledger
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(30)), "fed")
    feeder = Feeder(ledger, settings, make_dialer(settings, ledger), make_app(settings))
    fed = feeder.drain_once()["fed"]
    d = demand(ledger, settings)
    assert d.queued == fed and d.ready == 30 - fed
    assert d.threads >= min(float(30 - fed), account_rate(settings) * hold_seconds(settings))
    assert d.threads >= fed  # what is queued needs threads too
    ledger.redis.delete(f"{settings.broker_key_prefix}{CALLS_QUEUE}")
    assert demand(ledger, settings).queued == 0


def test_given_a_second_account_then_each_account_is_capped_by_its_own_rate(
    settings: Settings, ledger: Ledger
) -> None:
    north = ExotelAccount(
        account_sid="north-sid",
        api_key=SecretStr("k"),
        api_token=SecretStr("t"),
        rate_limit_calls=20,
    )
    two = settings.model_copy(update={"exotel_accounts": {"north": north}})
    enq = Enqueuer(two)
    enq.enqueue_file(as_stream(agent_csv(400)), "south-big")
    enq.enqueue_file(
        as_stream(agent_csv(400, start=1000)), "north-big", options=CampaignOptions(account="north")
    )
    d = read_demand(ledger.redis, two, QUEUES)
    by = {a.account: a for a in d.accounts}
    hold = hold_seconds(two)
    assert by["default"].ready == by["north"].ready == 400
    assert by["default"].threads == pytest.approx(account_rate(two) * hold)
    assert by["north"].threads == pytest.approx(account_rate(two.for_account("north")) * hold)
    assert by["north"].threads < by["default"].threads
    assert d.threads == pytest.approx(by["default"].threads + by["north"].threads)


def test_the_gauges_report_the_demand_and_a_dead_redis_yields_nothing(
    settings: Settings, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(3)), "g")
    registry = CollectorRegistry()
    registry.register(DemandCollector(ledger.redis, settings, QUEUES))
    text = generate_latest(registry).decode()
    assert 'callq_ready_calls{account="default"} 3.0' in text
    assert "callq_worker_threads_needed 3.0" in text
    assert "callq_workers_needed 1.0" in text
    assert "callq_held_calls 0.0" in text

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    ticks = iter([0.0, 10.0, 400.0])
    broken = DemandCollector(dead, settings, QUEUES, clock=lambda: next(ticks))
    with caplog.at_level("WARNING", logger="callq.metrics"):
        for _ in range(3):
            assert list(broken.collect()) == []
    assert len([r for r in caplog.records if "demand gauges" in r.message]) == 2  # 0 s, 400 s
