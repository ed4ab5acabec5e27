"""Per-process state: settings, Redis, ledger, limiter, and one pooled HTTP session.

Built once per worker process (in a start-up signal, or on first use) and shared by its threads.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import redis

from callq.breaker import Breaker
from callq.dialer import Dialer
from callq.exotel import ExotelClient, make_session
from callq.keys import Keys
from callq.ledger import Ledger
from callq.limiter import Limiter
from callq.reconcile import Reconciler
from callq.redis_conn import make_redis
from callq.retry import RetryPolicy
from config import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    limiter: Limiter
    dialer: Dialer
    reconciler: Reconciler

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.require_exotel()
        client = make_redis(
            settings.require_redis_url(), max_connections=settings.worker_concurrency * 2 + 8
        )
        keys = Keys(settings.key_prefix)
        ledger = Ledger(client, keys)
        limiter = Limiter(
            client,
            keys,
            settings.exotel_account_sid,
            calls=settings.rate_limit_calls,
            period=settings.rate_limit_period_seconds,
            margin=settings.rate_limit_margin_seconds,
            max_ahead=settings.rate_limit_max_ahead_seconds,
            scripts=ledger.scripts,
        )
        exotel = ExotelClient(settings, make_session(pool_size=settings.worker_concurrency + 4))
        policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base=settings.retry_backoff_base_seconds,
            cap=settings.retry_backoff_max_seconds,
            jitter=settings.retry_jitter,
        )
        name = f"{socket.gethostname()}:{os.getpid()}"
        breaker = Breaker(
            client,
            keys,
            settings.exotel_account_sid,
            cooldown=settings.breaker_cooldown_seconds,
            max_cooldown=settings.breaker_max_cooldown_seconds,
        )
        dialer = Dialer(settings, ledger, limiter, exotel, policy, worker=name, breaker=breaker)
        reconciler = Reconciler(settings, ledger, limiter, exotel, policy)
        return cls(settings, client, ledger, limiter, dialer, reconciler)


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
