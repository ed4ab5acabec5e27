"""Thin tasks: unpack the id, call a plain function, map the outcome.

Task arguments carry only the request id: no phone number or secret travels through the
broker or shows in Flower.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Reject, Retry
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_after_setup,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from callq.dialing.limiter import Slot
from callq.ids import campaign_of
from callq.logs import current_request, install
from callq.metrics import RECONCILED
from callq.store.gauges import DemandCollector, LedgerCollector
from callq.store.slots import live_caps
from callq.sweeping.events import Delivery
from callq.sweeping.feed import FeedLoop, PassResult
from callq.sweeping.sweeper import Sweeper
from callq.transport.queues import CALLS_QUEUE, PLACE_CALL, PRIORITY_QUEUE, RECONCILE
from callq.worker.app import app
from callq.worker.runtime import get_runtime, reset_runtime

log = logging.getLogger("callq.worker")


@app.task(name=PLACE_CALL, bind=True, max_retries=None, acks_late=True)  # type: ignore[untyped-decorator]
def place_call(self: Task, request_id: str, slot: int | None = None, account: str = "") -> str:
    """One attempt at one call. ``slot``/``account``: the permit the feed reserved for it
    (Redis-clock microseconds, and the account whose limiter granted it). Retries (not
    placed) go through Celery's own retry, without the slot: a retry reserves its own."""
    queue = _queue_of(self)
    fed = Slot(int(slot), account) if slot is not None else None
    with _running(self, request_id):
        step = get_runtime().dialer.place(request_id, priority=queue == PRIORITY_QUEUE, slot=fed)
    if step.retry_in is not None:
        raise self.retry(countdown=step.retry_in, max_retries=None, queue=queue, kwargs={})
    return step.result


def _queue_of(task: Task) -> str:
    info = task.request.delivery_info or {}
    return PRIORITY_QUEUE if info.get("routing_key") == PRIORITY_QUEUE else CALLS_QUEUE


@contextmanager
def _running(task: Task, request_id: str) -> Iterator[None]:
    """The task's log context; a Redis error inside it redelivers the message."""
    token = current_request.set(request_id)
    try:
        yield
    except redis.RedisError as exc:
        _redeliver(task, exc)
    finally:
        current_request.reset(token)


def _redeliver(task: Task, exc: Exception) -> NoReturn:
    """Redis failed mid-task. Whatever the ledger holds is safe (a claimed call has a lease the
    sweeper watches), but this message must not be acked and lost: publish it again later, or,
    if the broker is down too, reject it with requeue so kombu keeps it."""
    log.warning("Redis error (%s); the task will run again", exc.__class__.__name__)
    try:
        raise task.retry(countdown=5, max_retries=None, kwargs={})
    except Retry:
        raise
    except Exception:
        raise Reject(str(exc.__class__.__name__), requeue=True) from None


@app.task(name=RECONCILE, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
def reconcile(self: Task, request_id: str) -> str:
    """Settle one in-doubt call: callback, else Call Details search, else wait for proof."""
    with _running(self, request_id):
        verdict = get_runtime().reconciler_for(request_id).reconcile(request_id)
    RECONCILED.labels(verdict.kind).inc()
    if verdict.redial:
        publish_place_call(request_id)
    return verdict.result


def publish_place_call(request_id: str, *, priority: bool | None = None) -> None:
    """Publish one attempt; ``priority`` None takes its campaign's (cached controls)."""
    if priority is None:
        priority = get_runtime().dialer.controls_of(campaign_of(request_id)).priority
    place_call.apply_async((request_id,), queue=PRIORITY_QUEUE if priority else CALLS_QUEUE)


def publish_reconcile(request_id: str) -> None:
    reconcile.apply_async((request_id,), queue=CALLS_QUEUE)


_sweeper: Sweeper | None = None
_feed: FeedLoop | None = None
_delivery: Delivery | None = None


@after_setup_logger.connect  # type: ignore[untyped-decorator]
@after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def _setup_logging(logger: logging.Logger, **_: Any) -> None:
    from callq.settings import load_settings

    install(logger, load_settings().log_format)


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]
def _priority_first(instance: Any, **_: Any) -> None:
    """A worker consuming `calls` (the documented `-Q calls`) also consumes `calls.priority`,
    and polls it first (with the transport's `queue_order_strategy: priority`)."""
    queues = instance.app.amqp.queues
    names = list(queues.consume_from or {}) or [CALLS_QUEUE]
    if CALLS_QUEUE in names or PRIORITY_QUEUE in names:
        names = [PRIORITY_QUEUE, *(n for n in names if n != PRIORITY_QUEUE)]
        queues.select(names)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _child_init(**_: Any) -> None:
    reset_runtime()
    get_runtime()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_sweeper(**_: Any) -> None:
    global _sweeper, _feed, _delivery  # noqa: PLW0603 - one of each per worker
    rt = get_runtime()
    _sweeper = Sweeper(
        rt.ledger,
        rt.settings,
        requeue=publish_place_call,
        reconcile=publish_reconcile,
        backfill=rt.backfill.run_once,
    )
    _sweeper.start()
    _feed = FeedLoop(rt.feeder, rt.settings, on_pass=_log_pass)
    _feed.start()
    if rt.settings.event_urls():
        import os
        import socket

        consumer = f"{socket.gethostname()}:{os.getpid()}"
        _delivery = Delivery(rt.redis, rt.ledger.keys, rt.settings, consumer)
        _delivery.start()
    if rt.settings.metrics_port:
        from prometheus_client import REGISTRY, start_http_server

        REGISTRY.register(LedgerCollector(rt.redis, rt.ledger.keys, live_caps(rt.settings)))
        queues = (CALLS_QUEUE, PRIORITY_QUEUE)
        REGISTRY.register(DemandCollector(rt.redis, rt.settings, queues, broker=rt.ledger.broker))
        start_http_server(rt.settings.metrics_port)
        log.info("metrics on :%d/metrics", rt.settings.metrics_port)
    # What the worker built to start (Celery, kombu, the runtime: ~70,000 objects) lives as
    # long as the process: left out of every collection from now on, a full collection no
    # longer stops the threads 15-50 ms between a permit's check and its request (the
    # limit's margin covers that gap).
    gc.freeze()


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _stop_waiting(**_: Any) -> None:
    """Warm shutdown begins: calls waiting for a permit are given back at once."""
    from callq.worker.runtime import current_runtime

    rt = current_runtime()
    if rt is not None:
        rt.dialer.stopping.set()


def _log_pass(result: PassResult) -> None:
    judged = {k: v for k, v in result.judged.items() if v}
    if judged:
        log.info("feed: judged %s", judged)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_sweeper(**_: Any) -> None:
    if _feed is not None:
        _feed.stop()
    if _delivery is not None:
        _delivery.stop()
    if _sweeper is not None:
        _sweeper.stop()
