"""Per-call report rows, shared by the CLI and the Python API."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO

from callq.intake.csvsafe import neutralise
from callq.store.ledger import Ledger
from callq.store.records import CallRecord

# The contract's columns first, in its order; more after.
REPORT_COLUMNS = (
    "request_id",
    "From",
    "To",
    "state",
    "attempts",
    "sid",
    "call_status",
    "last_error",
    "Url",
    "CustomField",
    "duration",
    "line",
)


def _row(rec: CallRecord) -> dict[str, str]:
    """One report row of a call, in REPORT_COLUMNS order."""
    return {
        "request_id": rec.request_id,
        "From": rec.from_,
        "To": rec.to,
        "state": rec.state,
        "attempts": str(rec.attempts),
        "sid": rec.sid,
        "call_status": rec.call_status,
        "last_error": rec.last_error,
        "Url": rec.url,
        "CustomField": rec.custom_field,
        "duration": rec.details.get("duration", ""),
        "line": "" if rec.line is None else str(rec.line),
    }


# ``report --attempts``: one row per request sent to Exotel (and per call a callback proved
# that no reply recorded), in order; ``redial`` is 0 for the first dial, n for the n-th redial.
ATTEMPT_COLUMNS = (
    "request_id",
    "To",
    "redial",
    "attempt",
    "outcome",
    "sid",
    "call_status",
    "error",
    "at",
)


def report_rows(ledger: Ledger, campaign: str) -> Iterator[dict[str, str]]:
    for rec in ledger.call_records(campaign):
        yield _row(rec)


def _iso(at: object, scale: float) -> str:
    try:
        return datetime.fromtimestamp(float(at) / scale, UTC).isoformat(timespec="seconds")  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return ""


def attempt_rows(ledger: Ledger, campaign: str) -> Iterator[dict[str, str]]:
    """Every attempt of every call, from the call's attempts log (worker entries, callback
    entries and redial entries; see dialer.py and callback.lua)."""
    for rec in ledger.call_records(campaign):
        rid = rec.request_id
        log = ledger.attempts_log(rid)
        status_of = {e["sid"]: str(e["callback"]) for e in log if "callback" in e and e.get("sid")}
        if rec.sid and rec.call_status:
            status_of.setdefault(rec.sid, rec.call_status)
        shown: set[str] = set()
        redial = 0
        for e in log:
            if "redial" in e:
                redial = int(e["redial"])
                continue
            if "callback" in e:
                sid = str(e.get("sid", ""))
                if sid in shown or any(x.get("sid") == sid and "outcome" in x for x in log):
                    continue
                at, outcome, error = _iso(e.get("at"), 1000), "originated", "(from its callback)"
            else:
                sid, at = str(e.get("sid", "")), _iso(e.get("at"), 1)
                outcome, error = str(e.get("outcome", "")), str(e.get("error", ""))
            shown.add(sid)
            yield {
                "request_id": rid,
                "To": rec.to,
                "redial": str(redial),
                "attempt": str(e.get("attempt", "")),
                "outcome": outcome,
                "sid": sid,
                "call_status": status_of.get(sid, "") if sid else "",
                "error": error,
                "at": at,
            }


def report_lines(
    ledger: Ledger, campaign: str, fmt: str = "csv", *, attempts: bool = False
) -> Iterator[str]:
    """The report as text, one line at a time (the CSV header first): memory stays bounded
    whatever the campaign's size (the records are read in batches). CSV cells are
    neutralised against formula injection (a cell starting with = + - @ cannot run in a
    spreadsheet). Raises ValueError for an unknown ``fmt`` before reading anything."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use csv or jsonl")
    columns = ATTEMPT_COLUMNS if attempts else REPORT_COLUMNS
    rows = attempt_rows(ledger, campaign) if attempts else report_rows(ledger, campaign)
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, ensure_ascii=False) + "\n"
        return
    # Every cell quoted: a CR or LF inside a value (which csv would leave bare with a "\n"
    # terminator) can then never start a row of its own in a spreadsheet.
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def line(cells: Iterable[str]) -> str:
        writer.writerow(cells)
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    yield line(columns)
    for row in rows:
        yield line(neutralise(row[c]) for c in columns)


REPORT_FORMATS = ("csv", "jsonl")


def write_report(
    ledger: Ledger, campaign: str, out: IO[str], fmt: str = "csv", *, attempts: bool = False
) -> int:
    """Write the report (:func:`report_lines`); returns the number of rows."""
    n = -1 if fmt == "csv" else 0
    for text in report_lines(ledger, campaign, fmt, attempts=attempts):
        out.write(text)
        n += 1
    return max(n, 0)
