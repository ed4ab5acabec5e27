"""Count Redis round trips on the client side, whoever sends them.

While a :class:`RoundTrips` is active, every ``send_packed_command`` on any redis-py
connection (ours, kombu's) is counted: one command sent alone, or one whole pipeline, is one
round trip. Counting on the client keeps other users of a shared server out of the figure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.connection import AbstractConnection


class RoundTrips:
    """A context manager that counts round trips while it is active (not re-entrant)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0
        self._saved: Callable[..., None] | None = None

    @property
    def count(self) -> int:
        with self._lock:
            return self._n

    def __enter__(self) -> RoundTrips:
        original: Callable[..., None] = AbstractConnection.send_packed_command
        self._saved = original
        counter = self

        def counting(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            with counter._lock:
                counter._n += 1
            original(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._saved is not None:
            AbstractConnection.send_packed_command = self._saved  # type: ignore[method-assign]
            self._saved = None
