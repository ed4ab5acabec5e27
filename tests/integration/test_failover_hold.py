"""A new Redis master holds every limiter shut (callq.store.epoch), on the real test Redis.

A failover is played by what the watch sees of it: the ledger's record of the master's
run_id (replicated with everything else) names another server than the one now answering.
"""

from __future__ import annotations

import redis

from callq.dialing.limiter import Limiter
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.epoch import MasterWatch
from callq.store.keys import Keys


def _watched(settings: Settings, keys: Keys) -> tuple[redis.Redis, MasterWatch]:
    watch = MasterWatch(keys, settings.failover_hold_seconds)
    client = make_redis(settings.require_redis_url(), on_connect=watch.on_connect)
    return client, watch


def test_given_a_redis_the_ledger_never_saw_when_a_worker_connects_then_nothing_is_held(
    settings: Settings, keys: Keys, rclient: redis.Redis
) -> None:
    client, watch = _watched(settings, keys)
    limiter = Limiter.for_settings(client, keys, settings, hold=watch)
    assert limiter.reserve().granted
    assert watch.held_for() == 0
    assert rclient.get(keys.master_epoch()) == watch.run_id != ""


def test_given_a_new_master_when_workers_connect_then_every_limiter_is_held_for_a_period(
    settings: Settings, keys: Keys, rclient: redis.Redis
) -> None:
    # The ledger last saw another server: this one was promoted (or restarted on an AOF).
    rclient.set(keys.master_epoch(), "0" * 40)
    client, watch = _watched(settings, keys)
    limiter = Limiter.for_settings(client, keys, settings, hold=watch)
    grant = limiter.reserve()
    assert not grant.granted
    hold = settings.failover_hold_seconds
    assert 0 < grant.wait <= hold
    assert hold >= settings.rate_limit_period_seconds + settings.rate_limit_max_wait_seconds
    assert limiter.free_slots(hold) == 0
    assert 0 < rclient.pttl(keys.master_hold()) <= round(hold * 1000)
    # A worker that starts after the failover honours the same hold.
    late_client, late_watch = _watched(settings, keys)
    late = Limiter.for_settings(late_client, keys, settings, hold=late_watch)
    assert not late.reserve().granted and late_watch.held_for() > 0
    # When the hold ends, the limiter grants again.
    rclient.delete(keys.master_hold())
    fresh_client, fresh_watch = _watched(settings, keys)
    assert Limiter.for_settings(fresh_client, keys, settings, hold=fresh_watch).reserve().granted


def test_given_a_server_that_is_not_a_master_when_a_worker_connects_then_the_connection_is_refused(
    settings: Settings, keys: Keys
) -> None:
    class Replica:
        """A connection whose server answers ROLE as a replica (the role changed under it)."""

        def send_command(self, *args: object) -> None:
            self.sent = args

        def read_response(self) -> object:
            return ["slave", "127.0.0.1", 6379, "connected", 1]

    watch = MasterWatch(keys, 1.0)
    try:
        watch.on_connect(Replica())  # type: ignore[arg-type]
    except redis.ConnectionError as exc:
        assert "not a master" in str(exc)
    else:
        raise AssertionError("a replica was taken for the master")
