"""devstack.embedded: the bundled redis-server on a port of its own, also when the port it
picked is taken before the server binds it (a CI run's Cluster test once started a node whose
port another server held, took that server for its own, and waited 30 s for a cluster that
could not form)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedRedis


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port a listener of this process holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _first_pick(port: int) -> type[EmbeddedRedis]:
    class FirstPickTaken(EmbeddedRedis):
        picks = 0

        def pick_port(self) -> int:
            type(self).picks += 1
            return port if type(self).picks == 1 else super().pick_port()

    return FirstPickTaken


def test_given_its_picked_port_taken_when_started_then_the_server_moves_to_another(
    tmp_path: Path, held_port: int
) -> None:
    server = _first_pick(held_port)(tmp_path, appendonly=False)
    assert server.port == held_port
    with server:
        assert server.port != held_port
        assert server.proc is not None and server.proc.poll() is None


def test_given_another_redis_on_its_picked_port_when_started_then_it_is_not_taken_for_ours(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "other", appendonly=False) as other:
        server = _first_pick(other.port)(tmp_path / "ours", appendonly=False)
        with server:
            assert server.port != other.port
            assert server.proc is not None and server.proc.poll() is None


def test_given_a_port_the_caller_chose_when_it_is_taken_then_start_fails_naming_the_log(
    tmp_path: Path, held_port: int
) -> None:
    with pytest.raises(RuntimeError, match=r"exited with 1; see .*redis\.log"):
        EmbeddedRedis(tmp_path, port=held_port, appendonly=False).start()
