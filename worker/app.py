"""The Celery app. Configured lazily from :class:`config.Settings` when first used."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from celery import Celery

from config import Settings, load_settings

CALLS_QUEUE = "calls"
PRIORITY_QUEUE = "calls.priority"  # consumed first by every worker that consumes `calls`
PLACE_CALL = "callq.place_call"
RECONCILE = "callq.reconcile"


def _pool_on_command_line(argv: list[str]) -> bool:
    """``-P``/``--pool`` given to ``celery worker``. Celery takes ``--pool prefork`` (its
    default) as "no pool given" and lets the app's ``worker_pool`` win, so an operator who
    asked for prefork silently got threads. The config then leaves the pool alone."""
    return any(a in ("-P", "--pool") or a.startswith(("--pool=", "-P")) for a in argv[1:])


def celery_config(settings: Settings, argv: list[str] | None = None) -> dict[str, Any]:
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_seconds,
        # BRPOP the queues in the order given, every time: `calls.priority` before `calls`.
        "queue_order_strategy": "priority",
    }
    if settings.broker_key_prefix:
        transport["global_keyprefix"] = settings.broker_key_prefix
    config: dict[str, Any] = {
        "broker_url": settings.require_redis_url(),
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": CALLS_QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }
    if not _pool_on_command_line(sys.argv if argv is None else argv):
        config["worker_pool"] = "threads"  # the documented default for `-Q calls`
    return config


def _survive_closed_channels() -> None:
    """Work around a kombu Redis-transport crash (celery/kombu#582, still in kombu 5.x).

    When Redis goes away, the consumer closes its channel; an ack or reject still pending for
    a message of that channel then calls ``Channel._connparams``, which dereferences the closed
    connection's ``client`` (None) and raises AttributeError. Celery catches only connection
    errors there, so the worker process exits (seen in our Redis-outage test and chaos runs).
    Raising the transport's ConnectionError instead lets Celery log "Couldn't ack/reject" and
    go on: the message stays in kombu's unacked hash and is restored after visibility_timeout,
    and the ledger's claim and fences make any second copy harmless.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    original: Callable[..., Any] = kombu_redis.Channel._connparams
    if getattr(original, "_callq_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the channel's connection is closed")
        return original(self, asynchronous=asynchronous)

    _connparams._callq_patched = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010


_survive_closed_channels()


def make_app(settings: Settings) -> Celery:
    """An app for publishing with explicit settings (the producer, tests)."""
    publisher = Celery("callq", set_as_current=False)
    publisher.conf.update(celery_config(settings))
    return publisher


app = Celery("callq", include=["worker.tasks"])


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(load_settings()))
