"""What the campaign page shows beyond ``status --json``, derived from what the ledger
already holds; nothing here is written by, or waited on by, the dialling path.

- **The request rate over time.** Every Calls/connect request leaves its time in the ledger:
  the record's ``sent_at`` (the sent mark of its latest attempt, Redis clock) and, for a
  call tried more than once, the attempts log (``at - elapsed`` of every attempt that got a
  reply or timed out). :func:`scan` reads them for a campaign (one pipelined ``HMGET`` per
  call, and the log of only those calls with more than one attempt or that were in doubt);
  :func:`rate_series` turns the times into "requests in the trailing period" at regular
  points, the quantity the account's limit bounds. It counts this campaign's requests only;
  the limit is the account's, shared by its campaigns.
- **In-doubt calls and how they were settled**: every record with ``in_doubt_since``,
  classified by its state and its attempts log.
- **The held reasons over time**: ``held`` is a reading of now; :class:`HeldLog` keeps, in
  this process, when each reason was first and last seen.

A scan costs O(calls) Redis reads, so :class:`LiveCache` shares one per campaign between
viewers and refreshes it at most every ``total / 5000`` seconds (2 s to 30 s).
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from callq.campaign.controls import Held
from callq.store.ledger import Ledger

__all__ = [
    "REQUEST_OUTCOMES",
    "HeldLog",
    "LiveCache",
    "Scan",
    "classify_in_doubt",
    "rate_series",
    "request_times",
    "scan",
    "settled_counts",
]

#: Attempts-log outcomes of a request that went out (the others, ``reconciled`` and
#: ``unplaced``, are reconcile's verdicts, not requests).
REQUEST_OUTCOMES = frozenset({"originated", "not_placed", "rejected", "unknown"})
_FIELDS = ("state", "attempts", "sent_at", "in_doubt_since", "redials_done", "sid")
#: In-doubt calls listed one by one (the most recent first); the counts cover them all.
IN_DOUBT_LISTED = 20
#: Points of the rate chart at most.
MAX_POINTS = 240


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def request_times(rec: dict[str, str], log: Sequence[dict[str, Any]] | None) -> list[int]:
    """The times (ms) of the requests a call's record and attempts log tell of. ``log`` is
    None when it was not read (a call with one attempt at most, never in doubt): its request,
    if sent, is its ``sent_at``."""
    attempts = _int(rec.get("attempts"))
    sent_at = _int(rec.get("sent_at"))
    if log is None:
        return [sent_at] if attempts >= 1 and sent_at else []
    times = [
        round((float(e.get("at", 0)) - float(e.get("elapsed", 0))) * 1000)
        for e in log
        if e.get("outcome") in REQUEST_OUTCOMES and e.get("at")
    ]
    # The latest attempt is logged when its reply came; until then (in flight, or judged in
    # doubt by the sweeper after its worker died) only its sent mark tells.
    if attempts >= 1 and sent_at and (not times or sent_at > max(times) + 1000):
        times.append(sent_at)
    return times


def classify_in_doubt(rec: dict[str, str], log: Sequence[dict[str, Any]]) -> str:
    """How an in-doubt call was settled, in the page's words."""
    state = rec.get("state", "")
    outcomes = [e.get("outcome") for e in log]
    if state == "in_doubt":
        return "still in doubt"
    if "unplaced" in outcomes:
        return "proven unplaced, redialled"
    if "reconciled" in outcomes:
        return "found placed by Call Details"
    since = _int(rec.get("in_doubt_since")) / 1000
    if any(e.get("outcome") == "originated" and float(e.get("at", 0)) >= since for e in log):
        return "placed: the worker's late reply"
    if state == "originated":
        return "placed: its StatusCallback"
    return state


@dataclass
class Scan:
    """One read of a campaign's records."""

    taken: float  # Redis clock, epoch seconds
    times: list[int]  # every request's time, ms, sorted
    in_doubt: dict[str, int]  # how settled -> calls
    in_doubt_calls: list[dict[str, Any]]  # the most recent, at most IN_DOUBT_LISTED
    duration: float  # seconds the scan took


def scan(ledger: Ledger, campaign: str, *, batch: int = 500) -> Scan:
    """Read the campaign's request times and in-doubt calls (see the module's docstring)."""
    started = time.monotonic()
    sec, usec = ledger.redis.time()
    k = ledger.keys
    times: list[int] = []
    in_doubt: dict[str, int] = {}
    listed: list[dict[str, Any]] = []
    chunk: list[str] = []

    def flush() -> None:
        pipe = ledger.redis.pipeline(transaction=False)
        for rid in chunk:
            pipe.hmget(k.call(rid), _FIELDS)
        rows = [dict(zip(_FIELDS, r, strict=True)) for r in pipe.execute()]
        wanted = [
            (rid, rec)
            for rid, rec in zip(chunk, rows, strict=True)
            if rec["state"]
            and (_int(rec["attempts"]) > 1 or rec["in_doubt_since"] or _int(rec["redials_done"]))
        ]
        logs: dict[str, list[dict[str, Any]]] = {}
        if wanted:
            pipe = ledger.redis.pipeline(transaction=False)
            for rid, _ in wanted:
                pipe.lrange(k.attempts(rid), 0, -1)
            for (rid, _), lines in zip(wanted, pipe.execute(), strict=True):
                logs[rid] = [json.loads(x) for x in lines]
        for rid, rec in zip(chunk, rows, strict=True):
            if not rec["state"]:
                continue
            clean = {f: v or "" for f, v in rec.items()}
            log = logs.get(rid)
            times.extend(request_times(clean, log))
            if clean["in_doubt_since"]:
                how = classify_in_doubt(clean, log or [])
                in_doubt[how] = in_doubt.get(how, 0) + 1
                listed.append(
                    {
                        "request_id": rid,
                        "since": _int(clean["in_doubt_since"]) / 1000,
                        "how": how,
                        "sid": clean["sid"],
                    }
                )
                listed.sort(key=lambda c: -float(c["since"]))
                del listed[IN_DOUBT_LISTED:]
        chunk.clear()

    for rid in ledger.iter_request_ids(campaign, batch=batch):
        chunk.append(rid)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    times.sort()
    return Scan(
        taken=sec + usec / 1e6,
        times=times,
        in_doubt=in_doubt,
        in_doubt_calls=listed,
        duration=time.monotonic() - started,
    )


def rate_series(
    times: Sequence[int], period: float, now: float, *, max_points: int = MAX_POINTS
) -> tuple[float, list[tuple[float, int]]]:
    """``(step, [(t, n)])``: n is the number of ``times`` (ms) in the trailing ``period``
    seconds ending at t, for t every ``step`` seconds from the first request's time to
    ``now``. The step is a tenth of the period, or longer so that at most ``max_points``
    points cover the campaign's span. Empty when there is no request."""
    if not times:
        return period / 10, []
    first = times[0] / 1000
    span = max(now - first, 0.0)
    step = max(period / 10, span / max(max_points - 1, 1))
    width = round(period * 1000)
    points: list[tuple[float, int]] = []
    n = int(span // step) + 1
    for i in range(n):
        t = now - (n - 1 - i) * step
        end = round(t * 1000)
        count = bisect.bisect_right(times, end) - bisect.bisect_right(times, end - width)
        points.append((round(t, 3), count))
    return step, points


@dataclass
class HeldLog:
    """The held reasons seen for one campaign, in this process: each with when it was first
    and last seen, and its ``until``."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    limit: int = 20

    def see(self, held: Held | None, now: float, message: str = "") -> None:
        key = None if held is None else f"{held.reason}|{held.detail}|{held.until}"
        last = self.entries[-1] if self.entries else None
        if last is not None and last["key"] == key:
            last["last_seen"] = now
            if held is not None:
                last["count"] = held.count
                last["message"] = message
            return
        if last is not None and last["key"] is not None:
            last["ended"] = now
        if held is None:
            if last is not None and last["key"] is not None:
                self.entries.append({"key": None, "first_seen": now, "last_seen": now})
            return
        self.entries.append(
            {
                "key": key,
                "reason": held.reason,
                "detail": held.detail,
                "until": held.until,
                "count": held.count,
                "message": message,
                "first_seen": now,
                "last_seen": now,
                "ended": None,
            }
        )
        del self.entries[: -self.limit]

    def shown(self) -> list[dict[str, Any]]:
        """The reasons, the latest first (without the stretches when nothing was held)."""
        return [
            {k: v for k, v in e.items() if k != "key"}
            for e in reversed(self.entries)
            if e["key"] is not None
        ]


class LiveCache:
    """The latest :class:`Scan` and :class:`HeldLog` of each campaign viewed (the most
    recently viewed ``size`` campaigns), shared by every viewer of this process."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._scans: OrderedDict[str, tuple[float, Scan]] = OrderedDict()
        self._held: OrderedDict[str, HeldLog] = OrderedDict()
        self._scanning: dict[str, threading.Lock] = {}

    @staticmethod
    def max_age(total: int) -> float:
        return min(max(total / 5000, 2.0), 30.0)

    def scan(self, ledger: Ledger, campaign: str, total: int) -> Scan:
        """The campaign's scan, taken anew when the last one is older than :meth:`max_age`;
        one scan of a campaign at a time (the others wait and share it)."""
        with self._lock:
            lock = self._scanning.setdefault(campaign, threading.Lock())
        with lock:
            with self._lock:
                hit = self._scans.get(campaign)
            if hit is not None and time.monotonic() - hit[0] < self.max_age(total):
                return hit[1]
            fresh = scan(ledger, campaign)
            with self._lock:
                self._scans[campaign] = (time.monotonic(), fresh)
                self._scans.move_to_end(campaign)
                self._trim(self._scans)
            return fresh

    def held_log(self, campaign: str) -> HeldLog:
        with self._lock:
            log = self._held.get(campaign)
            if log is None:
                log = self._held[campaign] = HeldLog()
            self._held.move_to_end(campaign)
            self._trim(self._held)
            return log

    def _trim(self, d: OrderedDict[str, Any]) -> None:
        while len(d) > self.size:
            gone, _ = d.popitem(last=False)
            if d is self._scans:
                self._scanning.pop(gone, None)


def settled_counts(in_doubt: dict[str, int]) -> dict[str, int]:
    """entered / settled / still, from the classification."""
    entered = sum(in_doubt.values())
    still = in_doubt.get("still in doubt", 0)
    return {"entered": entered, "settled": entered - still, "still": still}
