"""``python -m callbacks --host H --port P [--workers N]``: serve the receiver with uvicorn."""

from __future__ import annotations

import argparse
import sys

from callq.receiver.app import DEFAULT_MAX_BODY_BYTES, create_app
from callq.receiver.openapi import CALLBACK_PATH
from callq.receiver.serve import serve
from callq.settings import ConfigError, load_settings


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
    serve(
        app,
        "callq.receiver.app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
