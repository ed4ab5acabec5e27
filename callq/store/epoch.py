"""The new-master watch: after a Redis failover, hold every limiter shut for one period.

Replication is asynchronous: a promoted replica may lack the old master's last writes. A lost
sent mark is what ``WAIT`` after ``mark_sent`` prevents (callq.dialing.dialer); a lost
limiter schedule (its TAT) would let the first callers on the new master take permits the
old master had already handed out, a burst past the limit. So on every new connection the
worker compares the server's ``run_id`` with the one the ledger last recorded
(lua/master_epoch.lua): a different one means a new master (or a restart), and the
limiter grants nothing until a hold key expires. The hold lives in Redis, so every worker
honours it, even one that starts after the failover, and the first to see the new master
sets it for all of them (the script is atomic).

A connection to a server that is not a master (the role changed under it) is refused, so
redis-py drops it and asks again.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from callq.store.keys import Keys
from callq.store.scripts import text

log = logging.getLogger("callq.epoch")


class MasterWatch:
    """Runs on each new connection (``make_redis(on_connect=watch.on_connect)``) and keeps
    this process's copy of the hold: :meth:`held_for` is 0 unless a new master was seen less
    than ``hold_seconds`` ago."""

    def __init__(self, keys: Keys, hold_seconds: float) -> None:
        self.keys = keys
        self.hold_ms = max(1, round(hold_seconds * 1000))
        self._until = 0.0
        self._lock = threading.Lock()
        self.run_id = ""

    def held_for(self) -> float:
        """Seconds the limiter stays shut from now (0: not held)."""
        return max(0.0, self._until - time.monotonic())

    def on_connect(self, conn: AbstractConnection) -> None:
        """Check the server behind a fresh connection; raise to refuse a replica."""
        conn.send_command("ROLE")  # type: ignore[no-untyped-call]
        role = conn.read_response()
        if not isinstance(role, list) or not role or str(role[0]) != "master":
            what = role[0] if isinstance(role, list) and role else role
            raise RedisConnectionError(f"the Redis server is not a master (role {what!s})")
        conn.send_command("INFO", "server")  # type: ignore[no-untyped-call]
        info = str(conn.read_response())
        run_id = next(
            (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("run_id:")),
            "",
        )
        if not run_id:
            return
        conn.send_command(  # type: ignore[no-untyped-call]
            "EVAL",
            text("master_epoch"),
            2,
            self.keys.master_epoch(),
            self.keys.master_hold(),
            run_id,
            self.hold_ms,
        )
        left_ms = int(conn.read_response())
        with self._lock:
            if run_id != self.run_id and self.run_id:
                log.warning("a new Redis master (run_id changed): limiter held shut")
            self.run_id = run_id
            if left_ms > 0:
                now = time.monotonic()
                if self._until <= now:  # said once per hold, not once per connection
                    log.warning("limiter held shut for %.1f s: a new Redis master", left_ms / 1000)
                self._until = max(self._until, now + left_ms / 1000)
