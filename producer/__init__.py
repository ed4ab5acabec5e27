"""The producer: validate campaign rows, write them to the ledger, publish one task per call.

Python API for campaign schedulers::

    from producer import enqueue_file, campaign_status
    result = enqueue_file("calls.csv", "reminders-2026-11-23")
    print(result.accepted, [str(e) for e in result.rejected])
    print(campaign_status("reminders-2026-11-23").as_dict())

Every function takes an optional ``settings`` (built from the environment when omitted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

from callq.keys import Keys
from callq.ledger import CampaignStatus, Ledger
from callq.redis_conn import make_redis
from config import Settings, load_settings
from producer.enqueue import Enqueuer, EnqueueResult, Progress, check_campaign
from producer.report import report_rows, write_report
from producer.rows import CallRequest

__all__ = [
    "CallRequest",
    "EnqueueResult",
    "campaign_status",
    "cancel_campaign",
    "enqueue_calls",
    "enqueue_file",
    "iter_report",
    "write_report_file",
]


def _ledger(settings: Settings | None) -> Ledger:
    s = settings or load_settings()
    return Ledger(make_redis(s.require_redis_url()), Keys(s.key_prefix))


def enqueue_file(
    source: Any,
    campaign: str,
    *,
    settings: Settings | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> EnqueueResult:
    """Enqueue a CSV file (path or binary stream) whose header uses Exotel's parameter names."""
    return Enqueuer(settings or load_settings()).enqueue_file(
        source, campaign, strict=strict, progress=progress
    )


def enqueue_calls(
    campaign: str, calls: Iterable[CallRequest], *, settings: Settings | None = None
) -> EnqueueResult:
    """Enqueue already-validated :class:`CallRequest` objects."""
    return Enqueuer(settings or load_settings()).enqueue(campaign, calls)


def campaign_status(campaign: str, *, settings: Settings | None = None) -> CampaignStatus:
    return _ledger(settings).status(check_campaign(campaign))


def cancel_campaign(campaign: str, *, settings: Settings | None = None) -> int:
    """Cancel every call not yet dialled; returns how many were cancelled."""
    return _ledger(settings).cancel(check_campaign(campaign))


def iter_report(campaign: str, *, settings: Settings | None = None) -> Iterator[dict[str, str]]:
    return report_rows(_ledger(settings), check_campaign(campaign))


def write_report_file(
    campaign: str, out: IO[str], fmt: str = "csv", *, settings: Settings | None = None
) -> int:
    return write_report(_ledger(settings), check_campaign(campaign), out, fmt)
