"""Serving an ASGI app with uvicorn, as ``python -m callbacks`` and ``python -m callq.api``
do: our loggers on uvicorn's handler, no Server header, and with ``workers`` > 1 the
listener fix below (each worker process imports the app by ``import_path`` and loads the
same settings when it starts)."""

from __future__ import annotations

import copy
from typing import Any

import uvicorn
import uvicorn.config

__all__ = ["log_config", "serve"]


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus our own loggers (callbacks, callq) on its default handler."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in ("callbacks", "callq"):
        config["loggers"][name] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config


def serve(
    app: Any, import_path: str, *, host: str, port: int, workers: int, log_level: str
) -> None:
    """Run ``app`` (one process), or ``import_path`` in ``workers`` processes."""
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "log_config": log_config(log_level),
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(app, **common)
    else:
        _restore_tcp_nodelay()
        uvicorn.run(import_path, workers=workers, **common)


def _restore_tcp_nodelay() -> None:
    """uvicorn issue #3149: with ``--workers N`` its supervisor binds the listening socket
    itself with ``proto`` 0; accepted sockets inherit it, and asyncio turns on TCP_NODELAY
    only for sockets that say IPPROTO_TCP. Nagle's algorithm then holds each keep-alive
    response's second segment for the client's delayed ACK (about 40 ms): the bench measured
    4 workers slower than 1. The bound socket is re-wrapped as IPPROTO_TCP, as the fix
    proposed upstream does."""
    import socket

    original = uvicorn.config.Config.bind_socket
    if getattr(original, "_callq_patched", False):
        return

    def bind_socket(self: Any) -> socket.socket:
        sock: socket.socket = original(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock

    bind_socket._callq_patched = True  # type: ignore[attr-defined]
    setattr(uvicorn.config.Config, "bind_socket", bind_socket)  # noqa: B010
