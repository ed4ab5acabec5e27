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
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import redis
from kombu.exceptions import OperationalError

from callq.campaign.controls import REDIAL_STATUSES, WINDOW_ZONES, CampaignOptions, parse_time
from callq.campaign.forecast import Forecast, parse_mix
from callq.errors import Unreplicated
from callq.intake import (
    campaign_status,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
    set_campaign,
    write_report_file,
)
from callq.intake.enqueue import DEDUPE_CHOICES, Enqueuer, check_campaign, options_meta
from callq.intake.forecast import DEFAULT_CALL_SECONDS, forecast_campaign, forecast_file
from callq.settings import ConfigError, Settings, load_settings
from callq.store.connect import redis_for
from callq.store.events import EventLog, sink_id
from callq.store.keys import Keys
from callq.store.records import STATES

STATE_ORDER = STATES


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


def _options(args: argparse.Namespace) -> CampaignOptions:
    """The campaign controls given on the command line (None = unchanged)."""
    return CampaignOptions(
        priority=True if getattr(args, "priority", False) else None,
        account=args.account,
        window=args.window,
        timezone=args.timezone,
        window_zone=args.window_zone,
        send_at=args.send_at,
        end_at=args.end_at,
        redial_on=args.redial_on,
        redials=args.redials,
        redial_interval=args.redial_interval,
        redial_backoff=args.redial_backoff,
        weight=args.weight,
        number_cap=args.number_cap,
    )


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings = load_settings()
    options = _options(args)
    try:
        options_meta(options, settings)  # refuse a bad option before reading the file
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar(sys.stderr, f"enqueue {args.campaign}", _count_lines(args.file))
    try:
        with open(args.file, "rb") as fh:
            result = Enqueuer(settings).enqueue_file(
                fh,
                args.campaign,
                strict=args.strict,
                batch_size=args.batch_size,
                progress=bar,
                options=options,
                dedupe=args.dedupe,
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
        refused = f", refused {result.refused} (campaign cancelled)" if result.refused else ""
        print(
            f"campaign {args.campaign}: accepted {result.accepted}, "
            f"rejected {len(result.rejected)}{strict_note}, duplicates {len(result.duplicates)}, "
            f"already enqueued {result.existing} (republished {result.republished}){refused}"
        )
        if result.accepted or result.existing:
            held = campaign_status(args.campaign, settings=settings).held
            if held is not None:
                print(f"held: {held.message(time.time())}")
    if args.strict and result.rejected:
        return 1
    if result.accepted == 0 and result.existing == 0:
        return 1
    return 3 if result.rejected else 0


def cmd_forecast(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        result, count = forecast_file(
            args.file,
            _options(args),
            settings,
            mix=args.mix,
            campaign=args.campaign,
            call_seconds=args.call_seconds,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict() | {"rejected": count.rejected}))
        return 0
    if count.rejected:
        print(f"({count.rejected} rows would be rejected: `enqueue` names each)")
    for line in result.lines():
        print(line)
    return 0


def _status_forecast(args: argparse.Namespace, settings: Settings) -> Forecast | None:
    """``status --forecast``: the running campaign's forecast (the calls it has left)."""
    return forecast_campaign(args.campaign, settings, mix=args.mix, call_seconds=args.call_seconds)


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    status = campaign_status(args.campaign, settings=settings)
    if status.total == 0:
        print(f"error: no campaign {args.campaign!r}", file=sys.stderr)
        return 1
    if args.json:
        out = status.as_dict(details=args.details)
        if args.forecast:
            fc = _status_forecast(args, settings)
            out["forecast"] = None if fc is None else fc.as_dict()
        print(json.dumps(out))
        return 0
    print(f"campaign {status.campaign}: {status.total} calls")
    if status.held is not None:
        print(f"  HELD: {status.held.message(time.time())}")
    c = status.controls
    flags = [name.upper() for name in ("cancelled", "paused") if c.get(name)]
    window = f"window {c.get('window')} {c.get('timezone')}"
    if c.get("window_zone") == "callee":
        window = f"window {c.get('window')} in each callee's zone (else {c.get('timezone')})"
    extra = ", ".join(f"{k} {c[k]}" for k in ("send_at", "end_at") if k in c)
    print(
        f"  {' '.join(flags) + ', ' if flags else ''}account {c.get('account')}, {window}"
        f"{', ' + extra if extra else ''}{', priority' if c.get('priority') else ''}"
    )
    redial = c.get("redial")
    if isinstance(redial, dict):
        print(
            f"  redial on {','.join(redial['on'])}: up to {redial['redials']}, every "
            f"{redial['interval_seconds']:g} s ({redial['backoff']}); {status.redials} so far"
        )
    if status.parked:
        print(f"  parked (waiting calls held back): {status.parked}")
    if status.live_calls is not None:
        lc = status.live_calls
        print(f"  live-call slots of account {lc['account']}: {lc['used']} of {lc['cap']}")
    for state in [*STATE_ORDER, *sorted(set(status.states) - set(STATE_ORDER))]:
        count = status.states.get(state, 0)
        print(f"  {state:<11} {count:>8}  {100.0 * count / status.total:5.1f}%")
    if status.call_status:
        print("call_status:")
        for name, count in status.call_status.items():
            print(f"  {name:<11} {count:>8}")
    fc = _status_forecast(args, settings) if args.forecast else None
    for line in [] if fc is None else fc.lines():
        print(line)
    return 0


def _existing(campaign: str) -> Settings | None:
    """The settings, or None (after saying so) when the campaign does not exist."""
    settings = load_settings()
    if campaign_status(campaign, settings=settings).total == 0:
        print(f"error: no campaign {campaign!r}", file=sys.stderr)
        return None
    return settings


def cmd_report(args: argparse.Namespace) -> int:
    settings = _existing(args.campaign)
    if settings is None:
        return 1
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            n = write_report_file(
                args.campaign, out, args.format, settings=settings, attempts=args.attempts
            )
        print(f"wrote {n} rows to {args.output}", file=sys.stderr)
    else:
        write_report_file(
            args.campaign, sys.stdout, args.format, settings=settings, attempts=args.attempts
        )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    settings = _existing(args.campaign)
    if settings is None:
        return 1
    n = cancel_campaign(args.campaign, settings=settings)
    print(f"campaign {args.campaign}: cancelled {n} calls not yet dialled")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    settings = _existing(args.campaign)
    if settings is None:
        return 1
    pause_campaign(args.campaign, settings=settings)
    print(f"campaign {args.campaign}: paused (calls already sent finish; nothing new is dialled)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    settings = _existing(args.campaign)
    if settings is None:
        return 1
    n = resume_campaign(args.campaign, settings=settings)
    print(f"campaign {args.campaign}: resumed; {n} parked calls go back to the queue")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    settings = _existing(args.campaign)
    if settings is None:
        return 1
    try:
        set_campaign(args.campaign, _options(args), settings=settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(campaign_status(args.campaign, settings=settings).controls))
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> float:
    """``--since``: an ISO 8601 time with an offset, or a span back from now (``90m``, ``2h``,
    ``1d``). Returns epoch seconds."""
    text = value.strip()
    if text[-1:] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * _UNITS[text[-1]]
    try:
        return parse_time(text, "--since").timestamp()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or a span such as 90m, 2h, 1d") from None


def _event_log() -> tuple[EventLog, list[tuple[str, str]]]:
    """The events stream and the receivers (sink id, URL). Raises ConfigError without
    EVENTS_URL (there is nothing to send to). Needs no EVENTS_SECRET: the workers sign."""
    settings = load_settings()
    sinks = [(sink_id(url), url) for url in settings.event_urls()]
    if not sinks:
        raise ConfigError("EVENTS_URL is not set: there is no receiver to send events to")
    client = redis_for(settings)
    return EventLog(client, Keys.for_settings(settings)), sinks


def cmd_events_replay(args: argparse.Namespace) -> int:
    events, sinks = _event_log()
    n = events.replay([s for s, _ in sinks], int(args.since * 1000))
    print(
        f"{n} events since {datetime.fromtimestamp(args.since).astimezone().isoformat()} "
        f"queued again for {len(sinks)} receiver(s); receivers dedupe by event id"
    )
    return 0


def cmd_events_dead(args: argparse.Namespace) -> int:
    events, _ = _event_log()
    dead = list(events.dead())
    if args.json:
        for doc in dead:
            print(json.dumps(doc, sort_keys=True))
        return 0
    for doc in dead:
        ev = doc.get("event", {})
        print(
            f"{ev.get('id')}  {doc.get('url')}  tries {doc.get('tries')}  {doc.get('last_error')}"
        )
    print(f"{len(dead)} dead events (send them again: events replay --since ...)")
    return 0


def cmd_events_status(args: argparse.Namespace) -> int:
    events, sinks = _event_log()
    counts = events.counts([s for s, _ in sinks])
    if args.json:
        print(json.dumps(counts | {"receivers": len(sinks)}))
    else:
        print(
            f"events: {counts['stream']} in the stream, {counts['due']} waiting to be sent, "
            f"{counts['dead']} dead, {len(sinks)} receiver(s)"
        )
    return 0


def _time(what: str) -> Callable[[str], datetime]:
    def parse(value: str) -> datetime:
        try:
            return parse_time(value, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _statuses(value: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in value.split(",") if x.strip())
    bad = [x for x in items if x not in REDIAL_STATUSES]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{value!r}: a comma-separated list of {', '.join(REDIAL_STATUSES)}"
        )
    return items


def _control_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("campaign controls (kept in the campaign; unset = unchanged)")
    g.add_argument("--account", help="the Exotel account to dial from: a name in EXOTEL_ACCOUNTS")
    g.add_argument(
        "--window",
        help="daily calling window HH:MM-HH:MM, or 'always' (default: CALLING_WINDOW, unset: "
        "any hour; TRAI's 09:00-21:00 is for promotional calls)",
    )
    g.add_argument(
        "--timezone", help="time zone of the window (default: CALLING_TIMEZONE, Asia/Kolkata)"
    )
    g.add_argument(
        "--window-zone",
        choices=WINDOW_ZONES,
        help="judge the window in the campaign's --timezone (campaign, the default) or in each "
        "callee's own zone (callee: To, or From for a call flow; the campaign's zone where "
        "the number maps to several zones or none)",
    )
    g.add_argument(
        "--send-at",
        type=_time("--send-at"),
        help="dial nothing before, e.g. 2026-11-24T10:00+05:30",
    )
    g.add_argument(
        "--end-at", type=_time("--end-at"), help="calls not dialled by then end as `expired`"
    )
    g.add_argument(
        "--redial-on",
        type=_statuses,
        help=f"redial when a call ends with one of: {','.join(REDIAL_STATUSES)}",
    )
    g.add_argument("--redials", type=int, help="redials per call, 0-10 (default 0)")
    g.add_argument(
        "--redial-interval", type=float, help="seconds before the first redial (default 600)"
    )
    g.add_argument(
        "--weight",
        type=float,
        help="this campaign's share of its account's permits against the account's other "
        "campaigns (default 1: equal turns; 2 gets twice as many)",
    )
    g.add_argument(
        "--number-cap",
        metavar="N/PERIOD",
        help="at most N placed calls to one number (the callee) per rolling PERIOD, over "
        "every campaign and account, e.g. 2/1d or 1/6h (default: NUMBER_DAILY_CAP per 24 h; "
        "'none' follows it again); a call over it waits, or ends `skipped` past --end-at",
    )
    g.add_argument(
        "--redial-backoff",
        choices=("linear", "exponential"),
        help="interval x n (linear, default) or x 2^(n-1) (exponential)",
    )


def _mix(value: str) -> dict[str, float]:
    try:
        return parse_mix(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86400:
        raise argparse.ArgumentTypeError(f"{value!r}: seconds, more than 0 and under 86400")
    return seconds


def _forecast_args(p: argparse.ArgumentParser, *, running: bool) -> None:
    p.add_argument(
        "--mix",
        type=_mix,
        help="the call_status mix expected, for the redials: e.g. "
        "completed=0.6,busy=0.2,no-answer=0.2"
        + (" (default: the campaign's call_status counts so far)" if running else ""),
    )
    p.add_argument(
        "--call-seconds",
        type=_seconds,
        default=DEFAULT_CALL_SECONDS,
        help="mean call length (ring + talk), for the live-call cap and the redials' delay "
        f"(default {DEFAULT_CALL_SECONDS:g})",
    )


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
    p.add_argument(
        "--dedupe",
        choices=DEDUPE_CHOICES,
        default="first",
        help="the same parties twice in the file (the same From and To; for a call flow the "
        "same From): keep the first row (default), the last, or dial all; every dropped row "
        "is reported with both lines",
    )
    p.add_argument(
        "--priority",
        action="store_true",
        help="the priority lane: dialled before any campaign, at the next free permit",
    )
    _control_args(p)
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("status", help="counts per state and per call_status (O(1))")
    p.add_argument("campaign", type=_campaign)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--details", action="store_true", help="with --json: add parked, redials and controls"
    )
    p.add_argument(
        "--forecast",
        action="store_true",
        help="when the campaign will finish and what will expire (with --json: `forecast`)",
    )
    _forecast_args(p, running=True)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="one row per call (or per attempt)")
    p.add_argument("campaign", type=_campaign)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.add_argument(
        "--attempts",
        action="store_true",
        help="one row per attempt and redial, each with its Sid and call_status",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("cancel", help="cancel every call of a campaign not yet dialled")
    p.add_argument("campaign", type=_campaign)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("pause", help="stop dialling a campaign (its calls wait, parked)")
    p.add_argument("campaign", type=_campaign)
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="dial a paused campaign again")
    p.add_argument("campaign", type=_campaign)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("set", help="change a campaign's controls (window, end_at, redials ...)")
    p.add_argument("campaign", type=_campaign)
    _control_args(p)
    p.set_defaults(func=cmd_set)

    p = sub.add_parser(
        "forecast", help="when a campaign file would finish, and what would expire, if enqueued now"
    )
    p.add_argument("file", help="the campaign CSV (as for enqueue)")
    p.add_argument(
        "--campaign",
        type=_campaign,
        help="its campaign id, when it is already enqueued (it is then not counted twice "
        "among the account's campaigns)",
    )
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    _forecast_args(p, running=False)
    _control_args(p)
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("events", help="events sent onward to EVENTS_URL: replay, dead, status")
    ev = p.add_subparsers(dest="events_command", required=True)
    e = ev.add_parser("replay", help="send again every event since a time (receivers dedupe)")
    e.add_argument(
        "--since",
        required=True,
        type=_since,
        help="an ISO 8601 time with an offset, or a span back from now: 90m, 2h, 1d",
    )
    e.set_defaults(func=cmd_events_replay)
    e = ev.add_parser("dead", help="events a receiver did not take within EVENTS_RETRY_SECONDS")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.set_defaults(func=cmd_events_dead)
    e = ev.add_parser("status", help="events in the stream, waiting, and dead")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_events_status)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m producer") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Unreplicated as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (redis.RedisError, OperationalError) as exc:
        # The URL is not printed: it may hold a password.
        print(
            f"error: cannot reach Redis ({exc.__class__.__name__}); check REDIS_URL",
            file=sys.stderr,
        )
        return 1
    return rc
