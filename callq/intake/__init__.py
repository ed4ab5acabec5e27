"""Intake: campaign rows validated and written to the ledger, parked for the feed; the
campaign operations (status, pause, resume, set, cancel, report) and their command line.

May import: callq.transport (a priority call's message), callq.store, callq.campaign and the
base modules. ``producer`` re-exports this API. Python API for campaign schedulers::

    from producer import enqueue_file, campaign_status
    result = enqueue_file("calls.csv", "reminders-2026-11-23")
    print(result.accepted, [str(e) for e in result.rejected])
    print(campaign_status("reminders-2026-11-23").as_dict())

Every function takes an optional ``settings`` (built from the environment when omitted).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from callq.campaign.controls import CampaignOptions, Controls, Held
from callq.dialing.breaker import Breaker
from callq.intake.enqueue import (
    Dedupe,
    Enqueuer,
    EnqueueResult,
    Progress,
    check_campaign,
    confirming,
)
from callq.intake.report import report_rows, write_report
from callq.intake.request import CallRequest
from callq.settings import ConfigError, Settings, load_settings
from callq.store.connect import broker_redis_for, redis_for
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.ledger import CampaignStatus, Ledger
from callq.store.slots import LiveSlots

__all__ = [
    "CallRequest",
    "CampaignOptions",
    "EnqueueResult",
    "campaign_status",
    "cancel_campaign",
    "enqueue_calls",
    "enqueue_file",
    "held_back",
    "iter_report",
    "pause_campaign",
    "resume_campaign",
    "set_campaign",
    "write_report_file",
]


def _ledger(settings: Settings | None) -> Ledger:
    s = settings or load_settings()
    ledger = Ledger(
        redis_for(s), Keys.for_settings(s), EventFlags.for_settings(s), broker=broker_redis_for(s)
    )
    return confirming(ledger, s)


def enqueue_file(
    source: Any,
    campaign: str,
    *,
    settings: Settings | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    options: CampaignOptions | None = None,
    dedupe: Dedupe = "first",
) -> EnqueueResult:
    """Enqueue a CSV file (path or binary stream) whose header uses Exotel's parameter names.

    ``options`` sets the campaign's controls (``CampaignOptions(priority=True)``,
    ``account=``, ``window=``, ``end_at=``, ``redial_on=``, ``redials=`` ...); ``dedupe`` says
    which row to keep when one number appears twice (``first``, ``last`` or ``all``).
    """
    return Enqueuer(settings or load_settings()).enqueue_file(
        source, campaign, strict=strict, progress=progress, options=options, dedupe=dedupe
    )


def enqueue_calls(
    campaign: str,
    calls: Iterable[CallRequest],
    *,
    settings: Settings | None = None,
    options: CampaignOptions | None = None,
    dedupe: Dedupe = "first",
) -> EnqueueResult:
    """Enqueue already-validated :class:`CallRequest` objects. For a one-off call that must
    not wait behind campaigns, use a campaign of its own with
    ``options=CampaignOptions(priority=True)``."""
    return Enqueuer(settings or load_settings()).enqueue(
        campaign, calls, options=options, dedupe=dedupe
    )


def set_campaign(
    campaign: str, options: CampaignOptions, *, settings: Settings | None = None
) -> dict[str, str]:
    """Change a campaign's controls; returns its meta hash. ValueError names a bad option."""
    return Enqueuer(settings or load_settings()).set_options(check_campaign(campaign), options)


def campaign_status(
    campaign: str,
    *,
    settings: Settings | None = None,
    now: float | None = None,
    ledger: Ledger | None = None,
) -> CampaignStatus:
    """Counts by state and call_status (O(1)), the controls, and ``held``: why waiting
    calls are held back (pause, send_at, window, the account's breaker) and until when.
    ``ledger``: one to use (a server keeps one), else one is made from the settings."""
    s = settings or load_settings()
    read: list[Controls] = []

    def controls(meta: dict[str, str]) -> dict[str, Any]:
        ctl = Controls.from_meta(
            campaign,
            meta,
            default_window=s.calling_window,
            default_timezone=s.calling_timezone,
        )
        read.append(ctl)
        return ctl.describe()

    ledger = ledger or _ledger(s)
    status = ledger.status(check_campaign(campaign), controls=controls)
    waiting = status.states.get("queued", 0) + status.states.get("retrying", 0)
    held = held_back(ledger, s, read[0], waiting, time.time() if now is None else now)
    return dataclasses.replace(status, held=held, live_calls=live_calls(ledger, s, read[0]))


def live_calls(ledger: Ledger, settings: Settings, ctl: Controls) -> dict[str, Any] | None:
    """The campaign's account's live-call slots in use against its cap, or None when the
    account has no cap (or is unknown here)."""
    name = ctl.account or "default"
    try:
        cap = settings.for_account(name).exotel_max_live_calls
    except ConfigError:
        return None
    if cap is None:
        return None
    used = LiveSlots(ledger.redis, ledger.keys).used(name)
    return {"account": name, "used": used, "cap": cap}


def held_back(
    ledger: Ledger, settings: Settings, ctl: Controls, waiting: int, now: float
) -> Held | None:
    """Why ``waiting`` calls of a campaign are held back now, or None: its own controls
    first, then its account (unknown to these settings, or refused by Exotel: breaker open)."""
    held = ctl.held(now, waiting)
    if held is not None or waiting <= 0 or ctl.cancelled:
        return held
    try:
        acct = settings.for_account(ctl.account)
    except ConfigError as exc:
        return Held("unknown_account", waiting, None, ctl.timezone, str(exc))
    if not acct.exotel_account_sid:
        return None
    state = Breaker(ledger.redis, ledger.keys, acct.exotel_account_sid).state()
    if not state.get("until"):
        return None
    return Held(
        "breaker", waiting, int(state["until"]) / 1000, ctl.timezone, state.get("reason", "")
    )


def cancel_campaign(campaign: str, *, settings: Settings | None = None) -> int:
    """Cancel every call not yet dialled; returns how many were cancelled."""
    return _ledger(settings).cancel(check_campaign(campaign))


def pause_campaign(campaign: str, *, settings: Settings | None = None) -> None:
    """Stop dialling: nothing more passes the sent mark; waiting calls are parked."""
    _ledger(settings).pause(check_campaign(campaign))


def resume_campaign(campaign: str, *, settings: Settings | None = None) -> int:
    """Dial again; returns how many calls were parked (the workers drain them)."""
    return _ledger(settings).resume(check_campaign(campaign))


def iter_report(campaign: str, *, settings: Settings | None = None) -> Iterator[dict[str, str]]:
    return report_rows(_ledger(settings), check_campaign(campaign))


def write_report_file(
    campaign: str,
    out: IO[str],
    fmt: str = "csv",
    *,
    settings: Settings | None = None,
    attempts: bool = False,
) -> int:
    """Write the report: one row per call, or with ``attempts`` one row per attempt."""
    return write_report(_ledger(settings), check_campaign(campaign), out, fmt, attempts=attempts)
