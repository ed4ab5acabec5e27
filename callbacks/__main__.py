"""``python -m callbacks --host H --port P [--workers N]``: serve the receiver with uvicorn."""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import uvicorn

from callq.receiver.app import DEFAULT_MAX_BODY_BYTES, create_app
from callq.receiver.openapi import CALLBACK_PATH
from callq.settings import ConfigError, load_settings


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus our own loggers (callbacks, callq) on its default handler."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in ("callbacks", "callq"):
        config["loggers"][name] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m callbacks",
        description=(
            f"Serve the Exotel StatusCallback receiver: POST {CALLBACK_PATH}?token=... "
            "Settings come from the environment (REDIS_URL, KEY_PREFIX, CALLBACK_TOKEN)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="default %(default)s",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest accepted body; only with --workers 1 (default %(default)s)",
    )
    return parser


def _restore_tcp_nodelay() -> None:
    """uvicorn issue #3149: with ``--workers N`` its supervisor binds the listening socket
    itself with ``proto`` 0; accepted sockets inherit it, and asyncio turns on TCP_NODELAY
    only for sockets that say IPPROTO_TCP. Nagle's algorithm then holds each keep-alive
    response's second segment for the client's delayed ACK (about 40 ms): the bench measured
    4 workers slower than 1. The bound socket is re-wrapped as IPPROTO_TCP, as the fix
    proposed upstream does."""
    import socket

    import uvicorn.config

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("callbacks: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and args.max_body_bytes != DEFAULT_MAX_BODY_BYTES:
        print("callbacks: --max-body-bytes works only with --workers 1", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        app = create_app(settings, max_body_bytes=args.max_body_bytes)
    except (ConfigError, ValueError) as exc:
        print(f"callbacks: {exc}", file=sys.stderr)
        return 2
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "log_config": _log_config(args.log_level),
        "server_header": False,
    }
    if args.workers == 1:
        uvicorn.run(app, **common)
    else:
        # Each worker process imports the app and loads the same settings when it starts.
        _restore_tcp_nodelay()
        uvicorn.run("callq.receiver.app:app", workers=args.workers, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
