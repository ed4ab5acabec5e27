"""The Celery app. Configured lazily from :class:`config.Settings` when first used."""

from __future__ import annotations

from typing import Any

from celery import Celery

from config import Settings, load_settings

CALLS_QUEUE = "calls"
PLACE_CALL = "callq.place_call"
RECONCILE = "callq.reconcile"


def celery_config(settings: Settings) -> dict[str, Any]:
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.broker_key_prefix:
        transport["global_keyprefix"] = settings.broker_key_prefix
    return {
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
        "worker_pool": "threads",
        "worker_concurrency": settings.worker_concurrency,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }


def make_app(settings: Settings) -> Celery:
    """An app for publishing with explicit settings (the producer, tests)."""
    publisher = Celery("callq", set_as_current=False)
    publisher.conf.update(celery_config(settings))
    return publisher


app = Celery("callq", include=["worker.tasks"])


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(load_settings()))
