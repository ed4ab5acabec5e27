"""Redis clients for the ledger and the limiter."""

from __future__ import annotations

import redis


def make_redis(url: str, *, max_connections: int = 64) -> redis.Redis:
    """A client that returns ``str`` and fails fast: a dead Redis is an error, not a hang."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
        max_connections=max_connections,
    )
