"""Celery's own ``rate_limit``, as a contender in the strictness bench (bench only).

``celery -A bench.celery_rate worker``: one task, ``bench.celery_place``, with
``rate_limit=`` set to the limit's rate. Celery applies it per worker (a token bucket in each
worker's consumer), so N workers send at up to N times the rate. The task places one call
through :class:`callq.exotel.ExotelClient` and, on a 429, simply retries itself at once
(``self.retry(countdown=0)``): the retry goes through the worker's bucket again.

Everything comes from the environment, set by :func:`bench.strictness.run_celery`:

* ``BENCH_CELERY_BROKER`` the bench Redis (database 14), ``BENCH_CELERY_PREFIX`` the run's key
  prefix (kombu's ``global_keyprefix`` is the prefix plus ``.``; the task's own bookkeeping
  goes under ``<prefix>:``), ``BENCH_CELERY_RATE`` the ``rate_limit`` string (``20/s``);
* ``BENCH_SIM_URL``, ``BENCH_SIM_SID``, ``BENCH_SIM_KEY``, ``BENCH_SIM_TOKEN``: the simulator.

Per POST the task appends ``"<sent_at> <429: 0|1> <wait>"`` to the list ``<prefix>:sends``
(wall-clock seconds; ``wait`` is from the message's publish to the POST), counts an accepted
call in ``<prefix>:done`` and any other outcome in ``<prefix>:errors``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_ready

from callq.exotel.client import ExotelClient, make_session
from callq.exotel.outcome import NotPlaced, Originated
from callq.settings import Settings

TASK = "bench.celery_place"
QUEUE = "bench-celery"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


PREFIX = _env("BENCH_CELERY_PREFIX", "bench-celery")


def celery_config(broker: str, prefix: str) -> dict[str, Any]:
    """What a Celery user would write: the defaults, a broker, JSON, no result backend."""
    return {
        "broker_url": broker,
        "broker_transport_options": {"global_keyprefix": f"{prefix}."},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
    }


app = Celery("bench_celery_rate", set_as_current=False)
app.conf.update(celery_config(_env("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/14"), PREFIX))

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _runtime() -> tuple[ExotelClient, redis.Redis]:
    with _lock:
        if not _state:
            settings = Settings(
                _env_file=None,
                exotel_account_sid=_env("BENCH_SIM_SID"),
                exotel_api_key=_env("BENCH_SIM_KEY"),
                exotel_api_token=_env("BENCH_SIM_TOKEN"),
                exotel_base_url=_env("BENCH_SIM_URL"),
                exotel_connect_timeout=2.0,
                exotel_read_timeout=10.0,
            )
            _state["client"] = ExotelClient(settings, make_session(pool_size=16))
            _state["redis"] = redis.Redis.from_url(_env("BENCH_CELERY_BROKER"))
        return _state["client"], _state["redis"]


@app.task(  # type: ignore[untyped-decorator]
    name=TASK,
    bind=True,
    max_retries=None,
    rate_limit=_env("BENCH_CELERY_RATE", "20/s"),
)
def celery_place(self: Task, i: int, published_at: float) -> str:
    client, r = _runtime()
    params = [
        ("From", f"+9198{i:08d}"),
        ("To", f"+9197{i:08d}"),
        ("CallerId", "08030752400"),
        ("CustomField", f"bench-{i}"),
    ]
    sent_at = time.time()
    outcome, _ = client.connect(params)
    limited = isinstance(outcome, NotPlaced) and outcome.rate_limited
    r.rpush(f"{PREFIX}:sends", f"{sent_at:.6f} {int(limited)} {sent_at - published_at:.6f}")
    if limited:
        raise self.retry(args=(i, time.time()), countdown=0, max_retries=None)
    if not isinstance(outcome, Originated):
        r.rpush(f"{PREFIX}:errors", f"{i}: {outcome}")
        return "error"
    r.incr(f"{PREFIX}:done")
    return "originated"


@worker_ready.connect  # type: ignore[untyped-decorator]
def _ready(sender: Any = None, **_: Any) -> None:
    r = redis.Redis.from_url(_env("BENCH_CELERY_BROKER"))
    r.rpush(f"{PREFIX}:ready", str(os.getpid()))
    r.close()
