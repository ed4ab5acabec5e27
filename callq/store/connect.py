"""Redis clients for the ledger, the limiter, the breaker and the receiver: one factory.

``REDIS_URL`` is a plain ``redis://`` / ``rediss://`` / ``unix://`` URL, or Celery's own
Sentinel form ``sentinel://[:password@]host:port;sentinel://host:port;...[/db]``: the
Sentinels to ask, the master's password on the first of them, and the database on any one.
The master is ``REDIS_SENTINEL_MASTER`` (default ``mymaster``); the Sentinels' own password,
if they have one, is ``REDIS_SENTINEL_PASSWORD``. A Sentinel URL gives a client from
redis-py's ``Sentinel(...).master_for(...)``: it asks the Sentinels for the master on every
new connection, so after a failover the next command goes to the promoted replica.

``on_connect`` runs on each new connection, after the handshake (the worker's new-master
watch, :mod:`callq.store.epoch`).

:class:`MasterCheck` (Sentinel only) tells whether one connection still talks to the master
the Sentinels name: an old master that stalled and came back after its replica was promoted
keeps its clients' open connections, and a master, until the Sentinels demote it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.connection import AbstractConnection
from redis.sentinel import Sentinel, SentinelConnectionPool

from callq.settings import ConfigError, Settings

__all__ = [
    "MasterCheck",
    "SentinelURL",
    "is_sentinel_url",
    "make_redis",
    "parse_sentinel_url",
    "redis_for",
]

DEFAULT_SENTINEL_PORT = 26379
#: How long the Sentinels' answer to "which is the master" is reused (MasterCheck).
MASTER_CHECK_TTL_SECONDS = 1.0
OnConnect = Callable[[AbstractConnection], None]


@dataclass(frozen=True)
class SentinelURL:
    """A parsed Sentinel ``REDIS_URL``: where the Sentinels are, the master's credentials and
    the database. ``repr`` never shows the password."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        hosts = ";".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"SentinelURL({hosts}/{self.db}, password={'***' if self.password else None})"

    def celery_url(self) -> str:
        """The URL for kombu's ``sentinel`` transport: kombu reads the credentials and the
        database from the first part only, so each part carries them."""
        auth = ""
        if self.password is not None or self.username:
            from urllib.parse import quote

            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in self.sentinels)


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """``sentinel://[:password@]host:port;sentinel://host:port;...[/db]``. Raises
    :class:`ConfigError` naming ``REDIS_URL`` (never echoing a password)."""
    sentinels: list[tuple[str, int]] = []
    db: int | None = None
    username: str | None = None
    password: str | None = None
    for i, part in enumerate(p.strip() for p in url.split(";")):
        if not part:
            continue
        try:
            parts = urlsplit(part)
            port = parts.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ConfigError(
                f"REDIS_URL: part {i + 1} of the Sentinel URL is not host:port"
            ) from None
        if parts.scheme.lower() != "sentinel" or not parts.hostname:
            raise ConfigError(
                f"REDIS_URL: part {i + 1} of the Sentinel URL must be sentinel://host:port"
            )
        if parts.password is not None and password is None:
            password = unquote(parts.password)
            username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigError(f"REDIS_URL: the database must be a number (got /{path})")
            if db is not None and int(path) != db:
                raise ConfigError("REDIS_URL: two different databases in one Sentinel URL")
            db = int(path)
        sentinels.append((parts.hostname, port))
    if not sentinels:
        raise ConfigError("REDIS_URL: a Sentinel URL names no Sentinel")
    return SentinelURL(tuple(sentinels), db or 0, username, password)


def _kwargs(max_connections: int, on_connect: OnConnect | None) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
        "health_check_interval": 30,
        "max_connections": max_connections,
    }
    if on_connect is not None:

        def connect(conn: AbstractConnection) -> None:
            conn.on_connect()  # type: ignore[no-untyped-call]
            on_connect(conn)

        kw["redis_connect_func"] = connect
    return kw


def make_redis(
    url: str,
    *,
    max_connections: int = 64,
    sentinel_master: str = "mymaster",
    sentinel_password: str | None = None,
    on_connect: OnConnect | None = None,
) -> redis.Redis:
    """A client that returns ``str`` and fails fast: a dead Redis is an error, not a hang.
    A Sentinel URL gives the master of ``sentinel_master``, found through the Sentinels."""
    kw = _kwargs(max_connections, on_connect)
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **kw)
    target = parse_sentinel_url(url)
    sentinel_kw: dict[str, Any] = {"socket_connect_timeout": 3, "socket_timeout": 3}
    if sentinel_password:
        sentinel_kw["password"] = sentinel_password
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kw)  # type: ignore[no-untyped-call]
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        sentinel_master,
        db=target.db,
        username=target.username,
        password=target.password,
        **kw,
    )
    return client


def redis_for(
    settings: Settings, *, max_connections: int = 64, on_connect: OnConnect | None = None
) -> redis.Redis:
    """The client for ``REDIS_URL`` with the settings' Sentinel master and password."""
    return make_redis(
        settings.require_redis_url(),
        max_connections=max_connections,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password.get_secret_value() or None,
        on_connect=on_connect,
    )


class MasterCheck:
    """Is the server a connection talks to the master the Sentinels name now? For a client
    from a Sentinel ``REDIS_URL`` only (:meth:`of` gives ``None`` for a plain one).

    The Sentinels' answer (redis-py's ``discover_master``) is reused for
    ``MASTER_CHECK_TTL_SECONDS``, so a worker asks them about once a second while it asks at
    all. :meth:`confirm` says no when the Sentinels name another server (and disconnects that
    connection and the pool's idle ones, so the next command opens a new connection, which
    asks the Sentinels for the master), or when no Sentinel answers."""

    def __init__(
        self,
        pool: SentinelConnectionPool,
        *,
        ttl: float = MASTER_CHECK_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._master: tuple[str, int] | None = None
        self._at = -1e9

    @classmethod
    def of(cls, client: redis.Redis) -> MasterCheck | None:
        pool = client.connection_pool
        return cls(pool) if isinstance(pool, SentinelConnectionPool) else None

    def master(self) -> tuple[str, int]:
        """The master's address as the Sentinels give it (cached). Raises ``RedisError``
        (``MasterNotFoundError``, a connection error) when no Sentinel names one."""
        with self._lock:
            if self._master is not None and self.clock() - self._at < self.ttl:
                return self._master
        manager = self.pool.sentinel_manager
        host, port = manager.discover_master(self.pool.service_name)
        found = (str(host), int(port))
        with self._lock:
            self._master, self._at = found, self.clock()
        return found

    def confirm(self, conn: AbstractConnection) -> bool:
        """``conn`` (connected) talks to the Sentinels' master. ``False`` if no Sentinel
        answers (the connection is kept: a new one could not find the master either), or if
        they name another server: then ``conn`` and the pool's idle connections are
        disconnected, so the next command reaches the master they name."""
        try:
            master = self.master()
        except (redis.RedisError, OSError):
            return False
        if (str(getattr(conn, "host", "")), int(getattr(conn, "port", 0) or 0)) == master:
            return True
        with self._lock:
            self._master = None  # ask again next time
        conn.disconnect()  # type: ignore[no-untyped-call]
        self.pool.disconnect(inuse_connections=False)
        return False
