"""Redis clients for the ledger, the limiter, the breaker and the receiver: one factory.

``REDIS_URL`` is a plain ``redis://`` / ``rediss://`` / ``unix://`` URL, or Celery's own
Sentinel form ``sentinel://[:password@]host:port;sentinel://host:port;...[/db]``: the
Sentinels to ask, the master's password on the first of them, and the database on any one.
The master is ``REDIS_SENTINEL_MASTER`` (default ``mymaster``); the Sentinels' own password,
if they have one, is ``REDIS_SENTINEL_PASSWORD``. A Sentinel URL gives a client from
redis-py's ``Sentinel(...).master_for(...)``: it asks the Sentinels for the master on every
new connection, so after a failover the next command goes to the promoted replica.

``LEDGER_REDIS_URL`` (default ``REDIS_URL``) puts the ledger, the limiter and every other key
of callq's own on a Redis of their own: :func:`redis_for` is its client, and
:func:`broker_redis_for` the broker's when the two are apart (the task messages a script hands
to the queue are then pushed on it, after the script: callq.store.ledger). It takes every form
``REDIS_URL`` takes, and a Redis Cluster: ``redis+cluster://[user:password@]host:port[,host:port
...]`` (``rediss+cluster://`` for TLS), the nodes to ask for the cluster's layout. Every key of a
deployment then carries the hash tag ``{KEY_PREFIX}`` (callq.store.keys), so they all live in
one slot, and the client is a plain ``redis.Redis`` whose pool is pinned to the master that
owns that slot (:class:`SlotPool`): redis-py's ``ClusterPipeline`` refuses EVALSHA, and every
call of the ledger is a script or a pipeline of them. A ``MOVED`` reply (the slot moved, or a
failover promoted a replica) or a connection that fails re-reads the layout (``CLUSTER
SLOTS``) and the next command goes to the master named there.

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
from redis.connection import AbstractConnection, Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import MovedError
from redis.sentinel import Sentinel, SentinelConnectionPool

from callq.settings import CLUSTER_SCHEMES, ConfigError, Settings

__all__ = [
    "ClusterURL",
    "MasterCheck",
    "SentinelURL",
    "SlotPool",
    "broker_redis_for",
    "is_cluster_url",
    "is_sentinel_url",
    "make_redis",
    "parse_cluster_url",
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


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: the nodes to ask for the layout, the credentials and
    TLS. ``repr`` never shows the password."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __repr__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes)
        return f"ClusterURL({hosts}, password={'***' if self.password else None}, tls={self.tls})"


def is_cluster_url(url: str) -> bool:
    return url.strip().lower().startswith(CLUSTER_SCHEMES)


def parse_cluster_url(url: str, name: str = "LEDGER_REDIS_URL") -> ClusterURL:
    """``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
    TLS). A Cluster has database 0 only: a path other than ``/`` or ``/0`` is refused. Raises
    :class:`ConfigError` naming ``name`` (never echoing a password)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in ("redis+cluster", "rediss+cluster"):
        raise ConfigError(f"{name}: a Cluster URL starts redis+cluster:// or rediss+cluster://")
    auth, at, hosts = rest.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts, slash, path = hosts.partition("/")
    if slash and path.strip("/") not in ("", "0"):
        raise ConfigError(f"{name}: a Redis Cluster has database 0 only (got /{path})")
    nodes: list[tuple[str, int]] = []
    for i, part in enumerate(p.strip() for p in hosts.split(",")):
        if not part:
            continue
        host, colon, port = part.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}: node {i + 1} of the Cluster URL is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigError(f"{name}: a Cluster URL names no node (host:port[,host:port...])")
    return ClusterURL(tuple(nodes), username, password, scheme.lower() == "rediss+cluster")


class SlotPool(redis.ConnectionPool):
    """Connections to the master that owns one hash slot of a Redis Cluster (the slot of
    ``slot_key``: every key of a deployment carries its hash tag, callq.store.keys).

    The master comes from ``CLUSTER SLOTS``, asked of the nodes known (those of the URL, then
    every node a layout named), and is kept until a connection to it fails or a reply says
    ``MOVED``: then the idle connections go, and the next new connection reads the layout
    again (a failover promoted a replica, or the slot was moved). The command that met the
    change fails (``MOVED``, a connection error): the callers' retries take it from there."""

    def __init__(self, target: ClusterURL, slot_key: str, **kwargs: Any) -> None:
        self.target = target
        self.slot = key_slot(slot_key.encode("utf-8"))
        self._nodes: list[tuple[str, int]] = list(target.nodes)
        self._master: tuple[str, int] | None = None
        self._master_lock = threading.Lock()
        kwargs.setdefault("username", target.username)
        kwargs.setdefault("password", target.password)
        cls = _SlotSSLConnection if target.tls else _SlotConnection
        super().__init__(connection_class=cls, slot_pool=self, **kwargs)

    def __repr__(self) -> str:
        # Not redis-py's: it prints the connection kwargs, and ``slot_pool`` is this pool
        # (a RecursionError). Nodes and slot only, never the credentials.
        with self._master_lock:
            master = self._master
        at = "?" if master is None else f"{master[0]}:{master[1]}"
        hosts = ",".join(f"{h}:{p}" for h, p in self.target.nodes)
        return f"<SlotPool(slot={self.slot}, master={at}, nodes={hosts}, tls={self.target.tls})>"

    def master(self) -> tuple[str, int]:
        """The address of the slot's master (cached until :meth:`forget`)."""
        with self._master_lock:
            if self._master is not None:
                return self._master
        found = self._discover()
        with self._master_lock:
            self._master = found
        return found

    def moved(self, host: str, port: int) -> None:
        """A reply said the slot is served at ``host:port`` now."""
        with self._master_lock:
            self._master = (host, port)
            if (host, port) not in self._nodes:
                self._nodes.append((host, port))
        self.disconnect(inuse_connections=False)

    def forget(self) -> None:
        """The master may have changed: read the layout again on the next connection."""
        with self._master_lock:
            self._master = None
        self.disconnect(inuse_connections=False)

    def release(self, connection: Connection) -> None:  # type: ignore[override]
        """A connection to a server that is no longer the slot's master (it met the MOVED
        reply, or was in use meanwhile) is closed on its way back: it reconnects to the
        master on its next use."""
        with self._master_lock:
            master = self._master
        at = (getattr(connection, "host", None), getattr(connection, "port", None))
        if master is None or at != master:
            connection.disconnect()  # type: ignore[no-untyped-call]
        super().release(connection)

    def _discover(self) -> tuple[str, int]:
        kw = self.connection_kwargs
        last: Exception | None = None
        for host, port in list(self._nodes):
            probe = redis.Redis(
                host=host,
                port=port,
                username=kw.get("username"),
                password=kw.get("password"),
                ssl=self.target.tls,
                socket_connect_timeout=kw.get("socket_connect_timeout", 3),
                socket_timeout=kw.get("socket_timeout", 3),
                decode_responses=True,
            )
            try:
                layout = probe.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError) as exc:
                last = exc
                continue
            finally:
                probe.close()
            found: tuple[str, int] | None = None
            for start, end, master, *_ in _slot_ranges(layout):
                h, p = str(master[0]) or host, int(master[1])
                if (h, p) not in self._nodes:
                    self._nodes.append((h, p))
                if int(start) <= self.slot <= int(end):
                    found = (h, p)
            if found is not None:
                return found
            last = redis.ConnectionError(f"no master serves slot {self.slot} ({host}:{port})")
        raise redis.ConnectionError(
            f"no Cluster node told the master of slot {self.slot}: "
            f"{last.__class__.__name__ if last else 'no node'}"
        )


def _slot_ranges(layout: Any) -> list[list[Any]]:
    """``CLUSTER SLOTS`` as a list of ``[start, end, [host, port, ...], replicas...]`` (redis-py
    parses it into a dict on some versions)."""
    if isinstance(layout, dict):
        return [[lo, hi, [m["primary"][0], m["primary"][1]]] for (lo, hi), m in layout.items()]
    return [list(r) for r in layout]


class _SlotConnection(Connection):
    """A connection of a :class:`SlotPool`: it connects to the slot's master as the pool
    knows it, and tells the pool of a MOVED reply or a failed connect."""

    def __init__(self, *, slot_pool: SlotPool, **kwargs: Any) -> None:
        self.slot_pool = slot_pool
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def connect(self) -> None:
        if self._sock:
            return
        self.host, self.port = self.slot_pool.master()
        try:
            super().connect()  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.slot_pool.forget()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except MovedError as exc:
            if int(exc.slot_id) == self.slot_pool.slot:  # not a stray key of another slot
                self.slot_pool.moved(str(exc.host), int(exc.port))
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            self.slot_pool.forget()
            raise


class _SlotSSLConnection(_SlotConnection, SSLConnection):
    pass


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str, name: str = "REDIS_URL") -> SentinelURL:
    """``sentinel://[:password@]host:port;sentinel://host:port;...[/db]``. Raises
    :class:`ConfigError` naming ``name``, the setting it came from (never echoing a
    password)."""
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
                f"{name}: part {i + 1} of the Sentinel URL is not host:port"
            ) from None
        if parts.scheme.lower() != "sentinel" or not parts.hostname:
            raise ConfigError(
                f"{name}: part {i + 1} of the Sentinel URL must be sentinel://host:port"
            )
        if parts.password is not None and password is None:
            password = unquote(parts.password)
            username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigError(f"{name}: the database must be a number (got /{path})")
            if db is not None and int(path) != db:
                raise ConfigError(f"{name}: two different databases in one Sentinel URL")
            db = int(path)
        sentinels.append((parts.hostname, port))
    if not sentinels:
        raise ConfigError(f"{name}: a Sentinel URL names no Sentinel")
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
    slot_key: str = "{callq}",
    name: str = "REDIS_URL",
) -> redis.Redis:
    """A client that returns ``str`` and fails fast: a dead Redis is an error, not a hang.
    A Sentinel URL gives the master of ``sentinel_master``, found through the Sentinels; a
    Cluster URL the master of ``slot_key``'s slot (:class:`SlotPool`). ``name``: the setting
    ``url`` came from, named by the errors of a URL that does not parse."""
    kw = _kwargs(max_connections, on_connect)
    if is_cluster_url(url):
        pool = SlotPool(parse_cluster_url(url, name), slot_key, **kw)
        return redis.Redis.from_pool(pool)  # close() disconnects the pool too
    if not is_sentinel_url(url):
        try:
            return redis.Redis.from_url(url, **kw)
        except ValueError:
            # redis-py's message, e.g. the schemes it takes; the URL itself is not echoed.
            raise ConfigError(
                f"{name}: not a Redis URL (redis://, rediss://, unix://, sentinel://"
                + (", redis+cluster://" if name == "LEDGER_REDIS_URL" else "")
                + ")"
            ) from None
    target = parse_sentinel_url(url, name)
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
    """The ledger's client: ``LEDGER_REDIS_URL``, else ``REDIS_URL``, with the settings'
    Sentinel master and password; on a Cluster, pinned to the deployment's slot."""
    from callq.store.keys import Keys

    return make_redis(
        settings.require_ledger_url(),
        max_connections=max_connections,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password.get_secret_value() or None,
        on_connect=on_connect,
        slot_key=Keys.for_settings(settings).slot_key,
        name="LEDGER_REDIS_URL" if (settings.ledger_redis_url or "").strip() else "REDIS_URL",
    )


def broker_redis_for(settings: Settings, *, max_connections: int = 16) -> redis.Redis | None:
    """The broker's client (``REDIS_URL``) when the ledger is apart from it
    (:attr:`Settings.ledger_apart`), for the task messages pushed after a script; ``None``
    when they share one Redis (the scripts push them themselves, in the same step)."""
    if not settings.ledger_apart:
        return None
    return make_redis(
        settings.require_redis_url(),
        max_connections=max_connections,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password.get_secret_value() or None,
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
