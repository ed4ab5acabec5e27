"""Celery's configuration from the settings, and a publisher app for the producer.

Importing this module configures no app and patches nothing: the worker's own app is
:mod:`callq.worker.app`.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery

from callq.settings import Settings
from callq.store.connect import is_sentinel_url, parse_sentinel_url
from callq.transport.queues import CALLS_QUEUE


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
    broker_url = settings.require_redis_url()
    if is_sentinel_url(broker_url):
        # kombu's `sentinel` transport: the master by name, the Sentinels' own password in
        # sentinel_kwargs (the one in the URL is the master's). kombu takes the password and
        # the database from the URL's first part only, so every part carries them.
        broker_url = parse_sentinel_url(broker_url).celery_url()
        transport["master_name"] = settings.redis_sentinel_master
        sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 3, "socket_timeout": 3}
        password = settings.redis_sentinel_password.get_secret_value()
        if password:
            sentinel_kwargs["password"] = password
        transport["sentinel_kwargs"] = sentinel_kwargs
    config: dict[str, Any] = {
        "broker_url": broker_url,
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


def make_app(settings: Settings) -> Celery:
    """An app for publishing with explicit settings (the producer, tests)."""
    publisher = Celery("callq", set_as_current=False)
    publisher.conf.update(celery_config(settings))
    return publisher
