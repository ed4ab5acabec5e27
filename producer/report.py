"""Per-call report rows, shared by the CLI and the Python API."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO

from callq.ledger import Ledger
from producer.csvsafe import neutralise

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

_FIELDS = {
    "request_id": "request_id",
    "From": "from",
    "To": "to",
    "state": "state",
    "attempts": "attempts",
    "sid": "sid",
    "call_status": "call_status",
    "last_error": "last_error",
    "Url": "url",
    "CustomField": "custom_field",
    "duration": "duration",
    "line": "line",
}


def report_rows(ledger: Ledger, campaign: str) -> Iterator[dict[str, str]]:
    for rec in ledger.iter_records(campaign):
        yield {col: rec.get(name, "") for col, name in _FIELDS.items()}


def write_report(ledger: Ledger, campaign: str, out: IO[str], fmt: str = "csv") -> int:
    """Write the report; returns the number of rows. CSV cells are neutralised against
    formula injection (a cell starting with = + - @ cannot run in a spreadsheet)."""
    n = 0
    if fmt == "csv":
        # Every cell quoted: a CR or LF inside a value (which csv would leave bare with a "\n"
        # terminator) can then never start a row of its own in a spreadsheet.
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(REPORT_COLUMNS)
        for row in report_rows(ledger, campaign):
            writer.writerow([neutralise(row[c]) for c in REPORT_COLUMNS])
            n += 1
    elif fmt == "jsonl":
        for row in report_rows(ledger, campaign):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown report format {fmt!r}: use csv or jsonl")
    return n
