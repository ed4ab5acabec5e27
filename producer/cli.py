"""The producer's command line (the contract's ``python -m producer ...`` forms).

Exit codes: 0 done; 3 some rows were rejected (the good ones were enqueued);
1 nothing was enqueued (unusable file, or ``--strict`` with a bad row), or no such campaign;
2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import redis
from kombu.exceptions import OperationalError

from callq.breaker import Breaker
from callq.keys import Keys
from callq.redis_conn import make_redis
from config import ConfigError, Settings, load_settings
from producer import campaign_status, cancel_campaign, write_report_file
from producer.enqueue import Enqueuer, check_campaign

STATE_ORDER = ("queued", "dialing", "retrying", "in_doubt", "originated", "failed", "cancelled")


class ProgressBar:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, out: TextIO, label: str, total: int | None = None) -> None:
        self.out = out
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.enabled = out.isatty()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            self.out.write(
                f"\r{self.label} [{bar:<30}] {self.done}/{self.total} rows ({rate:,.0f}/s)"
            )
        else:
            self.out.write(f"\r{self.label} {self.done} rows ({rate:,.0f}/s)")
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.out.write("\n")
            self.out.flush()


def _count_lines(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return None


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings = load_settings()
    bar = ProgressBar(sys.stderr, f"enqueue {args.campaign}", _count_lines(args.file))
    try:
        with open(args.file, "rb") as fh:
            result = Enqueuer(settings).enqueue_file(
                fh, args.campaign, strict=args.strict, batch_size=args.batch_size, progress=bar
            )
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        for issue in result.issues:
            print(f"warning: {issue.message}")
        for err in result.rejected:
            print(f"rejected: {err}")
        for dup in result.duplicates:
            print(f"duplicate: {dup}")
        strict_note = " (--strict: nothing enqueued)" if args.strict and result.rejected else ""
        print(
            f"campaign {args.campaign}: accepted {result.accepted}, "
            f"rejected {len(result.rejected)}{strict_note}, duplicates {len(result.duplicates)}, "
            f"already enqueued {result.existing} (republished {result.republished})"
        )
    if args.strict and result.rejected:
        return 1
    if result.accepted == 0 and result.existing == 0:
        return 1
    return 3 if result.rejected else 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    status = campaign_status(args.campaign, settings=settings)
    if status.total == 0:
        print(f"error: no campaign {args.campaign!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.as_dict()))
        return 0
    print(f"campaign {status.campaign}: {status.total} calls")
    paused = _breaker_note(settings)
    if paused:
        print(paused)
    for state in [*STATE_ORDER, *sorted(set(status.states) - set(STATE_ORDER))]:
        count = status.states.get(state, 0)
        print(f"  {state:<11} {count:>8}  {100.0 * count / status.total:5.1f}%")
    if status.call_status:
        print("call_status:")
        for name, count in status.call_status.items():
            print(f"  {name:<11} {count:>8}")
    return 0


def _breaker_note(settings: Settings) -> str:
    """One line when dialling is paused for the configured account, else ''."""
    if not settings.exotel_account_sid:
        return ""
    state = Breaker(
        make_redis(settings.require_redis_url()),
        Keys(settings.key_prefix),
        settings.exotel_account_sid,
    ).state()
    if not state:
        return ""
    until = datetime.fromtimestamp(int(state["until"]) / 1000, tz=UTC).strftime("%H:%M:%S UTC")
    return (
        f"DIALLING PAUSED for account {settings.exotel_account_sid} (breaker open, probe after "
        f"{until}): {state.get('reason', '')}"
    )


def cmd_report(args: argparse.Namespace) -> int:
    settings = load_settings()
    if campaign_status(args.campaign, settings=settings).total == 0:
        print(f"error: no campaign {args.campaign!r}", file=sys.stderr)
        return 1
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            n = write_report_file(args.campaign, out, args.format, settings=settings)
        print(f"wrote {n} rows to {args.output}", file=sys.stderr)
    else:
        write_report_file(args.campaign, sys.stdout, args.format, settings=settings)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    settings = load_settings()
    if campaign_status(args.campaign, settings=settings).total == 0:
        print(f"error: no campaign {args.campaign!r}", file=sys.stderr)
        return 1
    n = cancel_campaign(args.campaign, settings=settings)
    print(f"campaign {args.campaign}: cancelled {n} calls not yet dialled")
    return 0


def _campaign(value: str) -> str:
    try:
        return check_campaign(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(prog: str = "python -m producer") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Enqueue and operate call campaigns.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enqueue", help="validate a CSV file and enqueue its calls")
    p.add_argument(
        "file", help="CSV whose header uses Exotel's names: From, To, CallerId, Url, ..."
    )
    p.add_argument("--campaign", required=True, type=_campaign, help="campaign id")
    p.add_argument("--strict", action="store_true", help="reject the whole file on any bad row")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per Redis round trip")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("status", help="counts per state and per call_status (O(1))")
    p.add_argument("campaign", type=_campaign)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="one row per call")
    p.add_argument("campaign", type=_campaign)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("cancel", help="cancel every call of a campaign not yet dialled")
    p.add_argument("campaign", type=_campaign)
    p.set_defaults(func=cmd_cancel)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m producer") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (redis.RedisError, OperationalError) as exc:
        # The URL is not printed: it may hold a password.
        print(
            f"error: cannot reach Redis ({exc.__class__.__name__}); check REDIS_URL",
            file=sys.stderr,
        )
        return 1
    return rc
