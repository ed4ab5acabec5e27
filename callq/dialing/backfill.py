"""The call_status backfill: Call Details for originated calls whose StatusCallback never came.

Exotel posts a StatusCallback when a call ends and retries it at most twice; when the receiver
is away longer, the call never gets its call_status, and a redial on busy or no-answer never
happens. So every originated call waits in ``{p}:awaiting_status`` (finish.lua adds it, due
TimeOut + TimeLimit + ``CALL_STATUS_BACKFILL_MARGIN_SECONDS`` after it was placed; a callback
with a terminal status removes it, callback.lua). A periodic pass (:meth:`Backfill.run_once`,
run by every worker's sweeper, at most once per ``CALL_STATUS_BACKFILL_INTERVAL_SECONDS``
over all workers) looks the due ones up in bulk Call Details by Sid, :data:`BATCH` a request,
each request through the account's limiter like every voice request, and applies each
terminal status found exactly as a callback (:class:`~callq.store.callbacks.CallbackStore`):
call_status, counters, and the campaign's redial on busy / no-answer / failed. A call Exotel
does not list yet (still going on) is looked at again later, less often as it ages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis

from callq.errors import ExotelReplyError, LimiterUnavailable
from callq.exotel.client import ExotelStatusError
from callq.exotel.params import longest_call
from callq.metrics import STATUS_BACKFILL
from callq.settings import Settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.ledger import Ledger
from callq.store.records import CALL_STATUSES, CallRecord

if TYPE_CHECKING:
    from callq.dialing.dialer import Account

__all__ = ["BATCH", "MAX_REQUESTS_PER_PASS", "Backfill", "status_due_in"]

log = logging.getLogger("callq.backfill")

BATCH = 20
"""Sids per bulk Call Details request (Exotel takes up to 100 and recommends 20)."""
MAX_REQUESTS_PER_PASS = 5
"""Look-ups in one pass, so a pass holds the sweeper for a few permits at most."""
LONGEST_WAIT = 6 * 3600.0
"""A call not listed yet is looked at again after at most this long."""

#: Call Details fields kept on the record, as a callback's are (callq.store.callbacks).
_FIELDS = ("DateCreated", "DateUpdated", "StartTime", "EndTime", "RecordingUrl", "Direction")


def status_due_in(record: CallRecord, settings: Settings) -> float | None:
    """Seconds after a call was placed when its call_status is looked up if no callback has
    brought it: the call may ring TimeOut and talk TimeLimit (Exotel's maxima when the row
    sets none), then its callback and Exotel's retries get the margin. None when the
    backfill is off (the call is then never awaited)."""
    if not settings.call_status_backfill:
        return None
    return longest_call(record.time_out, record.time_limit) + (
        settings.call_status_backfill_margin_seconds
    )


class Backfill:
    """One pass at a time over all workers (a lock with the interval as its TTL)."""

    def __init__(self, settings: Settings, ledger: Ledger, accounts: Mapping[str, Account]):
        self.settings = settings
        self.ledger = ledger
        self.accounts = dict(accounts)
        self.callbacks = CallbackStore(ledger.redis, ledger.keys, events=ledger.events)

    def run_once(self) -> dict[str, int]:
        """One pass, if it is this worker's turn. Returns counts: ``locked`` (another worker's
        pass is recent), ``requests`` (look-ups made), ``recorded`` (statuses applied),
        ``redialled``, ``not_listed`` (looked up, not ended yet), ``no_permit`` /
        ``failed`` (a look-up that could not be made, the rest wait for the next pass),
        ``unknown_account``. Empty when the backfill is off or nothing is due."""
        s = self.settings
        if not s.call_status_backfill:
            return {}
        interval_ms = max(1, int(s.call_status_backfill_interval_seconds * 1000))
        if not self.ledger.redis.set(
            self.ledger.keys.backfill_lock(), "1", nx=True, px=interval_ms
        ):
            return {"locked": 1}
        due = self.ledger.awaiting_due(BATCH * MAX_REQUESTS_PER_PASS)
        taken = self.ledger.take_awaiting(
            due, again_in=s.call_status_backfill_interval_seconds, longest=LONGEST_WAIT
        )
        counts: dict[str, int] = {}
        by_account: dict[str, list[tuple[str, str]]] = {}
        for rid, sid, account in taken:
            by_account.setdefault(account or "default", []).append((rid, sid))
        for name, calls in by_account.items():
            acct = self.accounts.get(name)
            if acct is None:
                log.error("calls placed through account %r, unknown to this worker", name)
                _add(counts, "unknown_account", len(calls))
                continue
            for i in range(0, len(calls), BATCH):
                if not self._look_up(acct, calls[i : i + BATCH], counts):
                    break  # no permit, or Exotel refused: the rest wait for the next pass
        for result, n in counts.items():
            STATUS_BACKFILL.labels(result).inc(n)
        return counts

    def _look_up(self, acct: Account, calls: list[tuple[str, str]], counts: dict[str, int]) -> bool:
        """One bulk look-up; False when it could not be made."""
        s = acct.settings

        def permit() -> None:
            acct.limiter.acquire(timeout=s.rate_limit_max_ahead_seconds)

        try:
            listed = acct.client.calls_by_sid([sid for _, sid in calls], before_request=permit)
        except (TimeoutError, LimiterUnavailable):
            _add(counts, "no_permit")
            return False
        except (ExotelReplyError, ValueError) as exc:
            if isinstance(exc, ExotelStatusError) and exc.status == 429:
                try:
                    acct.limiter.push_back(exc.retry_after or s.rate_limited_pushback_seconds)
                except LimiterUnavailable:
                    log.warning("could not push the limiter back after a 429")
            log.warning("call_status backfill look-up failed: %s", exc)
            _add(counts, "failed")
            return False
        _add(counts, "requests")
        found: dict[str, dict[str, Any]] = {str(c.get("Sid")): c for c in listed}
        for rid, sid in calls:
            call = found.get(sid)
            status = str((call or {}).get("Status") or "")
            if call is None or status not in CALL_STATUSES:
                _add(counts, "not_listed")  # still going on: looked at again later
                continue
            fields = {name: str(call[name]) for name in _FIELDS if call.get(name)}
            fields["StatusSource"] = "backfill"
            try:
                applied = self.callbacks.apply_event(CallbackEvent(sid, status, rid, fields))
            except redis.RedisError:
                log.warning("%s: could not record the backfilled status", rid)
                _add(counts, "failed")
                continue
            if applied.result == "matched":
                _add(counts, "recorded")
                if applied.redialled:
                    _add(counts, "redialled")
            else:
                _add(counts, applied.result)
        return True


def _add(counts: dict[str, int], name: str, n: int = 1) -> None:
    counts[name] = counts.get(name, 0) + n
