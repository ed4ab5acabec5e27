"""The campaign CSV reader: ``read_rows``.

``read_rows`` turns a CSV file whose header uses Exotel's parameter names into a stream of
``CallRequest`` (a good row), ``RowError`` (a bad row: its line, the field at fault, why) and
``FileIssue`` (something about the file as a whole). It never raises for bad data, and one bad
row never stops the good ones. Each data line yields at most one item, so "rows rejected" is
the number of ``RowError``; a row with several problems names the first and adds the rest to
the message ("...; also TimeOut: ...").

How the file is read:

* in binary, split into physical lines on ``\\n``, ``\\r\\n`` or ``\\r``, each decoded on its own
  (a leading UTF-8 BOM is dropped), so that one line that is not UTF-8 rejects only its row;
* the lines go through ``csv`` (strict quoting), so a quoted cell may hold a newline. A record
  that spans several lines and is broken (a quote never closed properly, the wrong number of
  cells, more than ``RECORD_MAX_LINES`` lines or ``RECORD_MAX_CHARS`` characters) is reported
  on its first line, and the lines after it are read again on their own: a stray quote costs
  one row, not the rest of the file;
* a physical line longer than ``LINE_MAX_BYTES`` is skipped unread and reported; memory stays
  bounded whatever the input;
* blank lines (and rows of empty cells) are skipped; line numbers count every physical line,
  the header being line 1.

Header rules: names are matched case-insensitively with surrounding spaces stripped. An
unknown column yields one ``FileIssue`` (with a "did you mean" hint) and is ignored. A file
that cannot give any good row (no From column, neither To nor Url, no CallerId column and no
default caller id, a column named twice) yields one ``FileIssue`` and nothing else, rather
than one identical error per row.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple, ParamSpec, TypeVar

from callq.errors import InvalidRow
from callq.intake.phone import normalise_number, show
from callq.intake.request import (
    EXTRA_PARAMS,
    TIME_LIMIT_MAX,
    TIME_OUT_MAX,
    CallRequest,
    FileIssue,
    RowError,
    check_custom_field,
    check_extra,
    check_request_key,
    check_url,
    parse_seconds,
)

__all__ = ["LINE_MAX_BYTES", "RECORD_MAX_CHARS", "RECORD_MAX_LINES", "read_cells", "read_rows"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

LINE_MAX_BYTES = 64 * 1024
RECORD_MAX_CHARS = 64 * 1024
RECORD_MAX_LINES = 32
_CHUNK = 1 << 20

_NAMED = ("From", "To", "Url", "CallerId", "CustomField", "TimeLimit", "TimeOut", "RequestKey")
_KNOWN: dict[str, str] = {name.lower(): name for name in (*_NAMED, *EXTRA_PARAMS)}


# --------------------------------------------------------------------------------------------
# Reading: bytes -> physical lines -> decoded lines -> csv records


class _Line(NamedTuple):
    no: int
    offset: int  # byte offset of the line in the file
    text: str
    bad_at: int  # byte offset of the first byte that is not UTF-8, or -1
    too_long: bool


def _physical_lines(stream: Any) -> Iterator[tuple[int, bytes, bool]]:
    """(byte offset, line with its ending, too long) for every physical line.

    Splits on \\n, \\r\\n and \\r. A line over LINE_MAX_BYTES is skipped, never held whole.
    """
    offset = 0  # file offset of the first byte not yet yielded or skipped
    carry = b""
    skipping = False
    skip_start = 0
    while True:
        chunk = stream.read(_CHUNK)
        if isinstance(chunk, str):  # a text stream was passed; tolerate it
            chunk = chunk.encode("utf-8", "surrogateescape")
        if not chunk:
            if skipping:
                yield skip_start, b"", True
            elif carry:
                yield offset, carry, len(carry) > LINE_MAX_BYTES
            return
        data = carry + chunk if carry else chunk
        parts = data.splitlines(keepends=True)
        # The last part may be unfinished (no ending yet), or a \r whose \n is in the next chunk.
        carry = b"" if parts[-1].endswith(b"\n") else parts.pop()
        for part in parts:
            if skipping:
                skipping = False
                offset += len(part)
                yield skip_start, b"", True
                continue
            if len(part) > LINE_MAX_BYTES + 2:
                yield offset, b"", True
            else:
                yield offset, part, False
            offset += len(part)
        if len(carry) > LINE_MAX_BYTES:
            if not skipping:
                skipping, skip_start = True, offset
            keep = carry[-1:] if carry.endswith(b"\r") else b""
            offset += len(carry) - len(keep)
            carry = keep


class _TooBig(Exception):
    pass


class _Feed:
    """The line iterator handed to ``csv.reader``. It remembers the lines of the record being
    read (so a broken multi-line record can be reported on its first line and the rest read
    again), and refuses to let one record grow without bound."""

    def __init__(self, stream: Any) -> None:
        self._src = self._decode(stream)
        self._back: deque[_Line] = deque()
        self.record: list[_Line] = []
        self.chars = 0
        self.bad_at = -1
        self.too_long = False
        self.utf16 = False

    def _decode(self, stream: Any) -> Iterator[_Line]:
        no = 0
        for start, line, too_long in _physical_lines(stream):
            no += 1
            offset, raw = start, line
            if no == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    self.utf16 = True
                    return
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[3:]
                    offset += 3
            if too_long:
                yield _Line(no, offset, "\n", -1, True)
                continue
            try:
                yield _Line(no, offset, raw.decode("utf-8"), -1, False)
            except UnicodeDecodeError as exc:
                yield _Line(no, offset, raw.decode("utf-8", "replace"), offset + exc.start, False)

    def begin(self) -> None:
        self.record = []
        self.chars = 0
        self.bad_at = -1
        self.too_long = False

    def unread(self, lines: list[_Line]) -> None:
        self._back.extendleft(reversed(lines))

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = self._back.popleft() if self._back else next(self._src)
        self.record.append(line)
        if line.bad_at >= 0 and self.bad_at < 0:
            self.bad_at = line.bad_at
        if line.too_long:
            self.too_long = True
        self.chars += len(line.text)
        if self.chars > RECORD_MAX_CHARS or len(self.record) > RECORD_MAX_LINES:
            raise _TooBig
        return line.text


class _Record(NamedTuple):
    lines: list[_Line]
    cells: list[str]
    problem: str | None  # a structural problem: the cells are not to be trusted
    bad_at: int  # byte offset of the first non-UTF-8 byte, or -1


def _records(feed: _Feed) -> Iterator[_Record]:
    reader = csv.reader(feed, strict=True)
    while True:
        feed.begin()
        problem: str | None = None
        cells: list[str] = []
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = f"not valid CSV: {exc}"
        except _TooBig:
            problem = f"over {RECORD_MAX_LINES} lines or {RECORD_MAX_CHARS} characters"
        lines = feed.record
        if not lines:  # pragma: no cover - csv reads a line before any error
            continue
        if problem is None and feed.too_long:
            problem = f"longer than {LINE_MAX_BYTES} bytes, not read"
        if problem is not None:
            if len(lines) > 1:
                problem = _quote_problem(lines, feed, problem)
            else:
                problem = f"the line is {problem}"
        yield _Record(lines, cells, problem, feed.bad_at)


def _quote_problem(lines: list[_Line], feed: _Feed, what: str) -> str:
    """A broken record of several lines: blame its first line, read the others again."""
    feed.unread(lines[1:])
    return (
        f"a quoted cell starting on this line is not closed properly (the record runs to "
        f"line {lines[-1].no} and is {what}); the lines after this one were read on their own"
    )


def _is_blank(cells: list[str]) -> bool:
    return not cells or not "".join(cells).strip()


class _Index(NamedTuple):
    from_: int
    to: int | None
    url: int | None
    caller: int | None
    custom: int | None
    time_limit: int | None
    time_out: int | None
    key: int | None
    extras: tuple[tuple[str, int], ...]


def _header(
    cells: list[str], default_caller: str | None
) -> tuple[_Index | None, list[FileIssue], list[int]]:
    """Map the header to column indexes. (None, [fatal issue], []) when no row could be good."""
    issues: list[FileIssue] = []
    unnamed: list[int] = []
    cols: dict[str, int] = {}
    for i, name in enumerate(cells):
        key = name.strip().lower()
        if not key:
            unnamed.append(i)
            continue
        canon = _KNOWN.get(key)
        if canon is None:
            issues.append(FileIssue(_unknown_column(name.strip(), i)))
            continue
        if canon in cols:
            msg = f"the column {canon} appears twice (columns {cols[canon] + 1} and {i + 1})"
            return None, [FileIssue(msg + "; no row can be read")], []
        cols[canon] = i
    fatal = None
    if "From" not in cols:
        fatal = "the header has no From column, so no row can be read"
    elif "To" not in cols and "Url" not in cols:
        fatal = "the header has neither a To nor a Url column, so no row can be read"
    elif "CallerId" not in cols and default_caller is None:
        fatal = "the header has no CallerId column and no default caller id is set"
    if fatal is not None:
        shown = ", ".join(repr(c.strip()) for c in cells)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        hint = ""
        if len(cells) == 1 and any(sep in cells[0] for sep in ";\t|"):
            hint = "; the file seems not to be comma-separated: save it as CSV with commas"
        return None, [FileIssue(f"{fatal} (header: {shown}){hint}")], []
    index = _Index(
        from_=cols["From"],
        to=cols.get("To"),
        url=cols.get("Url"),
        caller=cols.get("CallerId"),
        custom=cols.get("CustomField"),
        time_limit=cols.get("TimeLimit"),
        time_out=cols.get("TimeOut"),
        key=cols.get("RequestKey"),
        extras=tuple((name, cols[name]) for name in EXTRA_PARAMS if name in cols),
    )
    return index, issues, unnamed


def _unknown_column(name: str, i: int) -> str:
    where = f"column {i + 1}"
    if name.lower().startswith("statuscallback"):
        return f"the column {name!r} ({where}) is ignored: the queue sets StatusCallback itself"
    close = difflib.get_close_matches(name.lower(), list(_KNOWN), n=1, cutoff=0.75)
    hint = f" (did you mean {_KNOWN[close[0]]}?)" if close else ""
    return f"unknown column {show(name)} ({where}) is ignored{hint}"


def _row(
    cells: list[str], ix: _Index, default_caller: str | None, line: int
) -> CallRequest | list[tuple[str, str]]:
    """A CallRequest, or the (field, message) problems of the row in column order."""
    errors: list[tuple[str, str]] = []
    from_ = _from(cells[ix.from_], errors)
    to, url = _to_or_url(cells, ix, errors)
    caller = _caller(cells, ix, default_caller, errors)
    opts = _options(cells, ix, errors)
    if errors or from_ is None:
        return errors
    # Every field has been checked above with the model's own checks: skip re-validation.
    return CallRequest.model_construct(
        line=line,
        from_=from_,
        to=to,
        url=url,
        caller_id=caller,
        custom_field=opts.custom,
        time_limit=opts.time_limit,
        time_out=opts.time_out,
        extra=opts.extra,
        request_key=opts.key,
    )


def _checked(
    errors: list[tuple[str, str]], check: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T | None:
    """``check(*args, **kwargs)``, or None with its InvalidRow added to ``errors``."""
    try:
        return check(*args, **kwargs)
    except InvalidRow as exc:
        errors.append((exc.field, exc.message))
        return None


def _from(raw: str, errors: list[tuple[str, str]]) -> str | None:
    if not raw.strip():
        errors.append(("From", "is empty; every row needs From, the number called first"))
        return None
    return _checked(errors, normalise_number, raw, field="From")


def _to_or_url(
    cells: list[str], ix: _Index, errors: list[tuple[str, str]]
) -> tuple[str | None, str | None]:
    """(To, Url) of the row: exactly one of them must be given."""
    raw_to = "" if ix.to is None else cells[ix.to].strip()
    raw_url = "" if ix.url is None else cells[ix.url].strip()
    if raw_to and raw_url:
        errors.append(
            ("Url", "a row takes To (connect two numbers) or Url (a call flow), not both")
        )
    elif not raw_to and not raw_url:
        if ix.url is None:
            errors.append(("To", "is empty; every row needs To, the number to connect"))
        elif ix.to is None:
            errors.append(("Url", "is empty; every row needs Url, the call flow to connect to"))
        else:
            errors.append(("To", "is empty, and so is Url: give a number to connect or a flow"))
    to = _checked(errors, normalise_number, raw_to, field="To") if raw_to else None
    url = _checked(errors, check_url, "Url", raw_url) if raw_url else None
    return to, url


def _caller(
    cells: list[str], ix: _Index, default_caller: str | None, errors: list[tuple[str, str]]
) -> str | None:
    raw = "" if ix.caller is None else cells[ix.caller]
    if raw.strip():
        return _checked(errors, normalise_number, raw, field="CallerId")
    if default_caller is None:
        errors.append(("CallerId", "is empty and no default caller id is set"))
    return default_caller


class _Options(NamedTuple):
    custom: str | None
    time_limit: int | None
    time_out: int | None
    extra: dict[str, str]
    key: str | None


def _options(cells: list[str], ix: _Index, errors: list[tuple[str, str]]) -> _Options:
    """The optional fields, in column order: CustomField, TimeLimit, TimeOut, the Exotel
    parameters, RequestKey. An empty cell is not given."""
    custom = key = None
    time_limit = time_out = None
    if ix.custom is not None and cells[ix.custom].strip():
        custom = _checked(errors, check_custom_field, cells[ix.custom])
    if ix.time_limit is not None:
        time_limit = _checked(
            errors, parse_seconds, "TimeLimit", cells[ix.time_limit], TIME_LIMIT_MAX
        )
    if ix.time_out is not None:
        time_out = _checked(errors, parse_seconds, "TimeOut", cells[ix.time_out], TIME_OUT_MAX)
    extra: dict[str, str] = {}
    for name, i in ix.extras:
        value = cells[i]
        if value.strip():
            checked = _checked(errors, check_extra, name, value)
            if checked is not None:
                extra[name] = checked
    if ix.key is not None and cells[ix.key].strip():
        key = _checked(errors, check_request_key, cells[ix.key])
    return _Options(custom, time_limit, time_out, extra, key)


def _row_error(line: int, errors: list[tuple[str, str]]) -> RowError:
    field, message = errors[0]
    if len(errors) > 1:
        message += "; also " + "; ".join(f"{f}: {m}" for f, m in errors[1:])
    return RowError(line, field, message)


def read_rows(
    source: str | os.PathLike[str] | BinaryIO, *, default_caller_id: str | None = None
) -> Iterator[CallRequest | RowError | FileIssue]:
    """Read a campaign CSV (a path or a binary stream): see the module docstring."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield from _read(stream, default_caller_id)
    else:
        yield from _read(source, default_caller_id)


def read_cells(
    header: list[str],
    rows: Iterable[list[str]],
    *,
    default_caller_id: str | None = None,
) -> Iterator[CallRequest | RowError | FileIssue]:
    """Rows already split into cells (the HTTP API's JSON rows), read by the same header and
    row rules as a file: ``header`` names the columns, each row has one cell per column.
    Rows are numbered from 1 (the first row is "line 1"); a blank row is skipped."""
    default, unusable = _default_caller(default_caller_id)
    if unusable is not None:
        yield unusable
    index, issues, _ = _header(header, default)
    yield from issues
    if index is None:
        return
    data_rows = 0
    for no, cells in enumerate(rows, start=1):
        if len(cells) != len(header):
            raise ValueError(f"row {no} has {len(cells)} cells, the header {len(header)}")
        if _is_blank(cells):
            continue
        data_rows += 1
        result = _row(cells, index, default, no)
        yield result if isinstance(result, CallRequest) else _row_error(no, result)
    if data_rows == 0:
        yield FileIssue("there are no data rows")


def _read(
    stream: Any, default_caller_id: str | None
) -> Iterator[CallRequest | RowError | FileIssue]:
    default, unusable = _default_caller(default_caller_id)
    if unusable is not None:
        yield unusable
    feed = _Feed(stream)
    records = _records(feed)
    header = _first_record(records)
    if feed.utf16:
        yield FileIssue("the file is UTF-16 text, not UTF-8: save it as 'CSV UTF-8'")
        return
    if header is None:
        yield FileIssue("the file has no header row")
        return
    head_no = header.lines[0].no
    if header.problem is not None:
        yield FileIssue(f"the header row (line {head_no}) cannot be read: it {header.problem}")
        return
    if header.bad_at >= 0:
        yield FileIssue(
            f"the header row (line {head_no}) is not UTF-8 text (byte offset {header.bad_at})"
        )
    index, issues, unnamed = _header(header.cells, default)
    yield from issues
    if index is None:
        return
    body = _DataRows(feed, header.cells, index, unnamed, default)
    data_rows = 0
    for rec in records:
        if rec.problem is None and _is_blank(rec.cells):
            continue
        data_rows += 1
        yield from body.items(rec)
    if data_rows == 0:
        yield FileIssue("the file has no data rows")


def _default_caller(raw: str | None) -> tuple[str | None, FileIssue | None]:
    """(the default caller id normalised, or None; why it is not usable, or None)."""
    if raw is None or not raw.strip():
        return None, None
    try:
        return normalise_number(raw, field="CallerId"), None
    except InvalidRow as exc:
        return None, FileIssue(
            f"the default caller id is not usable ({exc.message}); "
            "rows without a CallerId are refused"
        )


def _first_record(records: Iterator[_Record]) -> _Record | None:
    """The header: the first record that is not blank (or that is broken)."""
    for rec in records:
        if rec.problem is None and _is_blank(rec.cells):
            continue
        return rec
    return None


class _DataRows:
    """The records after a good header, each turned into a CallRequest or a RowError (and,
    once, a FileIssue for values in columns the header does not name)."""

    def __init__(
        self,
        feed: _Feed,
        header: list[str],
        index: _Index,
        unnamed: list[int],
        default: str | None,
    ) -> None:
        self.feed = feed
        self.index = index
        self.unnamed = unnamed
        self.default = default
        self.width = len(header)
        names = [c.strip() or f"column {i + 1}" for i, c in enumerate(header)]
        self.canon = [_KNOWN.get(n.lower(), n) for n in names]
        self.unnamed_reported = False

    def items(self, rec: _Record) -> Iterator[CallRequest | RowError | FileIssue]:
        """What one record (not blank) yields."""
        no = rec.lines[0].no
        if rec.problem is not None:
            yield RowError(no, "row", rec.problem)
            return
        malformed = self._malformed(rec)
        if malformed is not None:
            yield malformed
            return
        issue = self._unnamed_cells(no, rec.cells)
        if issue is not None:
            yield issue
        result = _row(rec.cells, self.index, self.default, no)
        yield result if isinstance(result, CallRequest) else self._refused(rec, result)

    def _malformed(self, rec: _Record) -> RowError | None:
        """The wrong number of cells, or bytes that are not UTF-8."""
        lines, cells, no = rec.lines, rec.cells, rec.lines[0].no
        if len(cells) != self.width:
            if len(lines) > 1:
                msg = _quote_problem(lines, self.feed, f"{len(cells)} cells long, not {self.width}")
            else:
                msg = f"has {len(cells)} cells but the header has {self.width}"
            return RowError(no, "row", msg)
        if rec.bad_at >= 0:
            field = next((self.canon[i] for i, c in enumerate(cells) if "\ufffd" in c), "row")
            if not field.isprintable():  # an unknown column's raw header: never echo controls
                field = ascii(field)
            return RowError(no, field, f"not UTF-8 text (byte offset {rec.bad_at})")
        return None

    def _unnamed_cells(self, no: int, cells: list[str]) -> FileIssue | None:
        if not self.unnamed or self.unnamed_reported:
            return None
        if not any(cells[i].strip() for i in self.unnamed):
            return None
        self.unnamed_reported = True
        cols = ", ".join(str(i + 1) for i in self.unnamed)
        return FileIssue(
            f"line {no} has a value in column(s) {cols}, which have no name in the header; "
            "such cells are ignored"
        )

    def _refused(self, rec: _Record, errors: list[tuple[str, str]]) -> RowError:
        lines, no = rec.lines, rec.lines[0].no
        error = _row_error(no, errors)
        if len(lines) > 1:
            # A multi-line record whose failing cell holds the line breaks is a quote left
            # open (e.g. `"abc` ... `x",y`) that swallowed good lines: give them back.
            failing = {field for field, _ in errors}
            if any(
                self.canon[i] in failing and ("\n" in c or "\r" in c)
                for i, c in enumerate(rec.cells)
            ):
                what = f"not a valid row ({error.field}: {error.message[:60]}...)"
                error = RowError(no, "row", _quote_problem(lines, self.feed, what))
        return error
