"""``python -m callq.api --host H --port P [--workers N]``: serve the HTTP API with uvicorn.

Settings come from the environment (REDIS_URL, KEY_PREFIX, API_TOKEN, API_MAX_BODY_BYTES and
the Exotel accounts' names for ``account``). Without API_TOKEN it refuses to start (exit 2).
"""

from __future__ import annotations

import argparse
import sys

from callq.api.app import create_app
from callq.receiver.serve import serve
from callq.settings import ConfigError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m callq.api",
        description="Serve the HTTP API for campaigns (/v1/campaigns ...; /openapi.json). "
        "Settings come from the environment: REDIS_URL, KEY_PREFIX, API_TOKEN (required: one "
        "or more bearer tokens, comma-separated), API_MAX_BODY_BYTES.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8001, help="port (default %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="default %(default)s",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("callq.api: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        app = create_app(load_settings())
    except ConfigError as exc:
        print(f"callq.api: {exc}", file=sys.stderr)
        return 2
    serve(
        app,
        "callq.api.app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
