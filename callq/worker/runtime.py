"""Per-process state: settings, Redis, ledger, limiter, and one pooled HTTP session.

Built once per worker process (in a start-up signal, or on first use) and shared by its threads.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from callq.dialing.backfill import Backfill
from callq.dialing.breaker import Breaker
from callq.dialing.dialer import Account, Dialer
from callq.dialing.limiter import Limiter
from callq.dialing.reconcile import Reconciler
from callq.dialing.retry import RetryPolicy
from callq.exotel.client import ExotelClient, make_session
from callq.ids import campaign_of
from callq.settings import ConfigError, Settings, caller_ids, load_settings
from callq.store.connect import broker_redis_for, redis_for
from callq.store.epoch import MasterWatch
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.layout import check_layout
from callq.store.ledger import Ledger

if TYPE_CHECKING:
    from callq.sweeping.feed import Feeder


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    limiter: Limiter
    dialer: Dialer
    reconciler: Reconciler
    reconcilers: dict[str, Reconciler]
    feeder: Feeder
    backfill: Backfill

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.require_exotel()
        settings.event_sinks()  # with EVENTS_URL, a secret for each, or no start (ConfigError)
        keys = Keys.for_settings(settings)
        # Every new connection checks for a new Redis master (a failover): the limiters are
        # then held shut for a period (callq.store.epoch).
        watch = MasterWatch(keys, settings.failover_hold_seconds)
        client = redis_for(
            settings,
            max_connections=settings.worker_concurrency * 2 + 8,
            on_connect=watch.on_connect,
        )
        check_layout(client, keys, settings)
        # The broker's own client when the ledger is apart from it (LEDGER_REDIS_URL): the
        # feed's task messages are pushed on it after their script.
        broker = broker_redis_for(settings, max_connections=settings.worker_concurrency + 8)
        ledger = Ledger(client, keys, EventFlags.for_settings(settings), broker=broker)
        policy = RetryPolicy.for_settings(settings)
        name = f"{socket.gethostname()}:{os.getpid()}"

        def account(acct_name: str) -> Account:
            s = settings.for_account(acct_name)
            limiter = Limiter.for_settings(
                client, keys, s, scripts=ledger.scripts, name=acct_name, hold=watch
            )
            exotel = ExotelClient(s, make_session(pool_size=settings.worker_concurrency + 4))
            breaker = Breaker(
                client,
                keys,
                s.exotel_account_sid,
                cooldown=s.breaker_cooldown_seconds,
                max_cooldown=s.breaker_max_cooldown_seconds,
            )
            return Account(acct_name, s, exotel, limiter, breaker)

        default = account("default")
        others = {n: account(n) for n in settings.exotel_accounts}
        dialer = Dialer(
            settings,
            ledger,
            default.limiter,
            default.client,
            policy,
            worker=name,
            breaker=default.breaker,
            accounts=others,
        )
        reconcilers = {
            a.name: Reconciler(
                a.settings, ledger, a.limiter, a.client, policy, caller_ids(settings)
            )
            for a in (default, *others.values())
        }
        from callq.sweeping.feed import Feeder
        from callq.worker.app import app

        feeder = Feeder(ledger, settings, dialer, app)
        backfill = Backfill(settings, ledger, {"default": default, **others})
        return cls(
            settings,
            client,
            ledger,
            default.limiter,
            dialer,
            reconcilers["default"],
            reconcilers,
            feeder,
            backfill,
        )

    def reconciler_for(self, request_id: str) -> Reconciler:
        """The reconciler of the account the call's request went through (kept on the record
        by its sent mark), else of the account its campaign names."""
        name = self.redis.hget(self.ledger.keys.call(request_id), "account")
        if not name:
            name = self.dialer.controls_of(campaign_of(request_id)).account or "default"
        reconciler = self.reconcilers.get(str(name))
        if reconciler is None:
            # An account this worker does not know: searching another account's Call Details
            # would find nothing and "prove" the call unplaced. Refuse loudly instead.
            raise ConfigError(
                f"{request_id} went out through account {name!r}, unknown to this worker "
                "(EXOTEL_ACCOUNTS)"
            )
        return reconciler


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per process, by design
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = Runtime.build(load_settings())
    return _runtime


def current_runtime() -> Runtime | None:
    """The runtime if this process built one (never builds it)."""
    return _runtime


def reset_runtime(**_: Any) -> None:
    """Forget the runtime (after a fork, the child builds its own)."""
    global _runtime  # noqa: PLW0603
    _runtime = None
