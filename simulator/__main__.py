"""``python -m simulator``: run the Exotel simulator in the foreground.

Prints one line, the base URL, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from simulator.config import Account, SimConfig
from simulator.server import Simulator

__all__ = ["build_parser", "main"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability must be within [0, 1]: {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _status_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, sep, weight = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected status=weight, got {item!r}")
        try:
            mix[name.strip()] = float(weight)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}") from exc
    return mix


def build_parser() -> argparse.ArgumentParser:
    defaults = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="A real HTTP server that behaves like Exotel's voice API (Calls/connect, "
        "Call Details, StatusCallbacks), with a strict per-account rate limit, injectable "
        "faults and a ground-truth endpoint at GET /_sim/truth.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8099, help="port to bind; 0 picks a free one")
    acc = p.add_argument_group("account")
    acc.add_argument("--account-sid", default="sim-account")
    acc.add_argument("--api-key", default="sim-key")
    acc.add_argument("--api-token", default="sim-token")
    acc.add_argument("--rate-limit", type=int, default=200, help="requests per period")
    acc.add_argument("--period", type=float, default=60.0, help="rate-limit window, seconds")
    beh = p.add_argument_group("behaviour")
    beh.add_argument(
        "--time-scale",
        type=_non_negative,
        default=1.0,
        help="multiplies every latency, call duration and callback delay (0.01 = 100x faster)",
    )
    beh.add_argument(
        "--no-latency", action="store_true", help="reply at once instead of the seed profile"
    )
    beh.add_argument("--no-callbacks", action="store_true", help="never POST StatusCallbacks")
    beh.add_argument("--seed", type=int, default=None, help="seed of the random generator")
    beh.add_argument(
        "--status-mix",
        type=_status_mix,
        default=None,
        help="terminal status weights, e.g. completed=.7,busy=.1,no-answer=.15,failed=.05",
    )
    beh.add_argument(
        "--ring-seconds", type=_non_negative, nargs=2, metavar=("LOW", "HIGH"), default=None
    )
    beh.add_argument(
        "--talk-seconds", type=_non_negative, nargs=2, metavar=("LOW", "HIGH"), default=None
    )
    beh.add_argument(
        "--callback-content-type",
        default=defaults.default_callback_content_type,
        help="StatusCallback content type when a request names none (default %(default)s)",
    )
    beh.add_argument("--timezone", default=defaults.timezone, help="zone of all timestamps")
    flt = p.add_argument_group("faults (probability per request)")
    flt.add_argument("--p-500", type=_probability, default=0.0)
    flt.add_argument("--p-504", type=_probability, default=0.0)
    flt.add_argument(
        "--p-slow-placed", type=_probability, default=0.0, help="placed, reply delayed"
    )
    flt.add_argument(
        "--slow-seconds", type=_non_negative, default=5.0, help="delay of a slow reply (unscaled)"
    )
    flt.add_argument("--p-reset-before", type=_probability, default=0.0, help="RST, not placed")
    flt.add_argument("--p-reset-after", type=_probability, default=0.0, help="placed, then RST")
    flt.add_argument("--p-duplicate-callback", type=_probability, default=0.0)
    flt.add_argument("--p-late-callback", type=_probability, default=0.0)
    flt.add_argument("--late-callback-seconds", type=_non_negative, default=20.0)
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    config = SimConfig(
        accounts=[
            Account(args.account_sid, args.api_key, args.api_token, args.rate_limit, args.period)
        ],
        time_scale=args.time_scale,
        latency=not args.no_latency,
        p_500=args.p_500,
        p_504=args.p_504,
        p_slow_placed=args.p_slow_placed,
        slow_seconds=args.slow_seconds,
        p_reset_before=args.p_reset_before,
        p_reset_after=args.p_reset_after,
        callbacks=not args.no_callbacks,
        p_duplicate_callback=args.p_duplicate_callback,
        p_late_callback=args.p_late_callback,
        late_callback_seconds=args.late_callback_seconds,
        seed=args.seed,
        default_callback_content_type=args.callback_content_type,
        timezone=args.timezone,
    )
    if args.status_mix is not None:
        config.status_mix = args.status_mix
    if args.ring_seconds is not None:
        config.ring_seconds = (args.ring_seconds[0], args.ring_seconds[1])
    if args.talk_seconds is not None:
        config.talk_seconds = (args.talk_seconds[0], args.talk_seconds[1])
    config.validate()
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim = Simulator(config, host=args.host, port=args.port, verbose=args.verbose).start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(sim.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
