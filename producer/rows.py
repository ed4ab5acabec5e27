"""Campaign rows: the :class:`CallRequest` model and the CSV reader.

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
import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

import pydantic

from callq.errors import InvalidRow
from callq.keys import CAMPAIGN_RE
from producer.phone import normalise_number, show

__all__ = [
    "EXTRA_PARAMS",
    "CallRequest",
    "FileIssue",
    "RowError",
    "check_url",
    "read_rows",
    "request_id",
]

TIME_LIMIT_MAX = 14400
TIME_OUT_MAX = 60
CUSTOM_FIELD_MAX = 256
REQUEST_KEY_MAX = 256
URL_MAX = 2048
LINE_MAX_BYTES = 64 * 1024
RECORD_MAX_CHARS = 64 * 1024
RECORD_MAX_LINES = 32
_CHUNK = 1 << 20

# Optional Exotel parameters a row may carry (besides the named fields).
_CHOICES: dict[str, tuple[str, ...]] = {
    "CallType": ("trans", "promo"),
    "Record": ("true", "false"),
    "RecordingChannels": ("single", "dual"),
    "RecordingFormat": ("mp3", "mp3-hq"),
    "StartPlaybackToNew": ("Callee", "Both"),
    "StreamBeginNew": ("Leg1Connect", "Leg2Connect"),
}
_URL_PARAMS: dict[str, tuple[str, ...]] = {
    "WaitUrl": ("http", "https"),
    "StartPlaybackValueNew": ("http", "https"),
    "StreamUrlNew": ("ws", "wss"),
}
EXTRA_PARAMS: tuple[str, ...] = (*_CHOICES, *_URL_PARAMS)
_HTTP = ("http", "https")

_NAMED = ("From", "To", "Url", "CallerId", "CustomField", "TimeLimit", "TimeOut", "RequestKey")
_KNOWN: dict[str, str] = {name.lower(): name for name in (*_NAMED, *EXTRA_PARAMS)}

_SECONDS = re.compile(r"[0-9]{1,9}(?:\.0*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_BAD = re.compile(r"[\s\x00-\x1f\x7f]")
_HOST = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?"
)


# --------------------------------------------------------------------------------------------
# Field checks, shared by the reader and the model's own validators. Each raises InvalidRow.


def check_url(field: str, raw: str, schemes: tuple[str, ...] = _HTTP) -> str:
    """A real URL with one of ``schemes`` and a host; returned stripped."""
    value = raw.strip()
    if len(value) > URL_MAX:
        raise InvalidRow(field, f"is {len(value)} characters long; a URL may have {URL_MAX}")
    if _URL_BAD.search(value):
        raise InvalidRow(field, f"{show(value)} is not a URL: it contains spaces or control codes")
    want = " or ".join(f"{s}://" for s in schemes)
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidRow(field, f"{show(value)} is not a URL ({exc})") from None
    if parts.scheme.lower() not in schemes:
        raise InvalidRow(field, f"{show(value)} is not a URL: it must start with {want}")
    if not host or not _valid_host(host):
        raise InvalidRow(field, f"{show(value)} is not a URL: it has no valid host name")
    return value


def _valid_host(host: str) -> bool:
    if ":" in host:  # urlsplit has removed the brackets of an IPv6 literal
        try:
            ip_address(host)
        except ValueError:
            return False
        return True
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return len(host) <= 253 and _HOST.fullmatch(host) is not None


def _check_seconds(field: str, value: int, maximum: int) -> int:
    if not 1 <= value <= maximum:
        raise InvalidRow(field, f"{value} is out of range: {field} must be 1 to {maximum} seconds")
    return value


def _parse_seconds(field: str, raw: str, maximum: int) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value) is None:
        raise InvalidRow(field, f"{show(value)} is not a whole number of seconds")
    return _check_seconds(field, int(value.split(".", 1)[0]), maximum)


def _check_custom_field(value: str) -> str:
    if len(value) > CUSTOM_FIELD_MAX:
        raise InvalidRow(
            "CustomField", f"is {len(value)} characters long; the limit is {CUSTOM_FIELD_MAX}"
        )
    return value


def _check_request_key(raw: str) -> str:
    value = raw.strip()
    if len(value) > REQUEST_KEY_MAX:
        raise InvalidRow(
            "RequestKey", f"is {len(value)} characters long; the limit is {REQUEST_KEY_MAX}"
        )
    if _CONTROL.search(value):
        raise InvalidRow("RequestKey", f"{show(value)} contains control codes")
    return value


def _check_extra(name: str, raw: str) -> str:
    value = raw.strip()
    choices = _CHOICES.get(name)
    if choices is not None:
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise InvalidRow(name, f"{show(value)} is not one of {', '.join(choices)}")
    schemes = _URL_PARAMS.get(name)
    if schemes is not None:
        return check_url(name, value, schemes)
    raise InvalidRow(name, f"is not a parameter a row may set (known: {', '.join(EXTRA_PARAMS)})")


def _check_text(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRow(field, "is not valid Unicode text") from None


def _as_value_error(exc: InvalidRow) -> ValueError:
    return ValueError(f"{exc.field}: {exc.message}")


# --------------------------------------------------------------------------------------------
# The model


class CallRequest(pydantic.BaseModel, frozen=True, extra="forbid"):
    """One validated call request. Constructing one directly runs the same checks as the
    reader (numbers are normalised to E.164), so a Python caller gets the same guarantees."""

    line: int
    from_: str
    to: str | None = None
    url: str | None = None
    caller_id: str | None = None
    custom_field: str | None = None
    time_limit: int | None = None
    time_out: int | None = None
    extra: dict[str, str] = pydantic.Field(default_factory=dict)
    request_key: str | None = None

    @pydantic.field_validator("from_")
    @classmethod
    def _v_from(cls, v: str) -> str:
        try:
            return normalise_number(v, field="From")
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("to", "caller_id")
    @classmethod
    def _v_number(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        if v is None:
            return None
        try:
            return normalise_number(v, field="To" if info.field_name == "to" else "CallerId")
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("url")
    @classmethod
    def _v_url(cls, v: str | None) -> str | None:
        try:
            return None if v is None else check_url("Url", v)
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("custom_field")
    @classmethod
    def _v_custom(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            _check_text("CustomField", v)
            return _check_custom_field(v)
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("time_limit", "time_out")
    @classmethod
    def _v_seconds(cls, v: int | None, info: pydantic.ValidationInfo) -> int | None:
        if v is None:
            return None
        name, maximum = (
            ("TimeLimit", TIME_LIMIT_MAX)
            if info.field_name == "time_limit"
            else ("TimeOut", TIME_OUT_MAX)
        )
        try:
            return _check_seconds(name, v, maximum)
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("extra")
    @classmethod
    def _v_extra(cls, v: dict[str, str]) -> dict[str, str]:
        try:
            return {name: _check_extra(name, value) for name, value in v.items()}
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("request_key")
    @classmethod
    def _v_key(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            _check_text("RequestKey", v)
            return _check_request_key(v) or None
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.model_validator(mode="after")
    def _v_variant(self) -> CallRequest:
        if (self.to is None) == (self.url is None):
            raise ValueError("give exactly one of To (connect two numbers) or Url (a call flow)")
        return self

    def row_key(self) -> str:
        """The RequestKey if given, else a digest of the normalised call.

        The digest covers From, To, Url, CallerId and CustomField (not TimeLimit, TimeOut or the
        other options, nor the line), joined with US (0x1f) after a version tag. Changing it
        changes every request id, so re-running an old file would no longer be a no-op: it is
        pinned by a test.
        """
        if self.request_key is not None:
            return self.request_key
        parts = (
            "v1",
            self.from_,
            self.to or "",
            self.url or "",
            self.caller_id or "",
            self.custom_field or "",
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()

    def parties(self) -> tuple[str, ...]:
        """Who is dialled: a duplicate is the same parties twice. For "connect two numbers"
        the pair (From, To): From is often the agent, the same on every row of a campaign,
        and To the customer. For a call flow, From alone: From is the customer, and the flow
        is the campaign's."""
        return (self.from_, self.to) if self.to is not None else (self.from_,)

    def describe_parties(self) -> tuple[str, str]:
        """(the column(s), the number(s)) of :meth:`parties`, for a duplicate's report."""
        if self.to is not None:
            return "From,To", f"{self.from_} -> {self.to}"
        return "From", f"{self.from_} (a call flow)"

    def to_record(self) -> dict[str, str]:
        """Flat str -> str for the ledger hash; None becomes ""."""
        return {
            "from": self.from_,
            "to": self.to or "",
            "url": self.url or "",
            "caller_id": self.caller_id or "",
            "custom_field": self.custom_field or "",
            "time_limit": "" if self.time_limit is None else str(self.time_limit),
            "time_out": "" if self.time_out is None else str(self.time_out),
            "extra": json.dumps(self.extra, sort_keys=True, separators=(",", ":")),
            "line": str(self.line),
        }


def request_id(campaign: str, row_key: str) -> str:
    """``{campaign}:{20 hex digits}``, the same for the same campaign and row key."""
    if not isinstance(campaign, str) or CAMPAIGN_RE.fullmatch(campaign) is None:
        raise ValueError(f"not a campaign id: {campaign!r} (letters, digits, _ . -; up to 64)")
    digest = hashlib.sha256(f"{campaign}\x00{row_key}".encode()).hexdigest()
    return f"{campaign}:{digest[:20]}"


@dataclass(frozen=True)
class RowError:
    """A refused row: its line (1-based, header = 1), the column at fault (or "row"), why."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class FileIssue:
    """Something about the file as a whole (an ignored column, no data rows, ...)."""

    message: str

    def __str__(self) -> str:
        return self.message


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

    def push_back(self, lines: list[_Line]) -> None:
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
    feed.push_back(lines[1:])
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
    from_ = to = url = caller = custom = key = None
    time_limit = time_out = None
    extra: dict[str, str] = {}

    raw = cells[ix.from_]
    if not raw.strip():
        errors.append(("From", "is empty; every row needs From, the number called first"))
    else:
        try:
            from_ = normalise_number(raw, field="From")
        except InvalidRow as exc:
            errors.append((exc.field, exc.message))

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
    if raw_to:
        try:
            to = normalise_number(raw_to, field="To")
        except InvalidRow as exc:
            errors.append((exc.field, exc.message))
    if raw_url:
        try:
            url = check_url("Url", raw_url)
        except InvalidRow as exc:
            errors.append((exc.field, exc.message))

    raw = "" if ix.caller is None else cells[ix.caller]
    if raw.strip():
        try:
            caller = normalise_number(raw, field="CallerId")
        except InvalidRow as exc:
            errors.append((exc.field, exc.message))
    elif default_caller is not None:
        caller = default_caller
    else:
        errors.append(("CallerId", "is empty and no default caller id is set"))

    try:
        if ix.custom is not None and cells[ix.custom].strip():
            custom = _check_custom_field(cells[ix.custom])
    except InvalidRow as exc:
        errors.append((exc.field, exc.message))
    try:
        if ix.time_limit is not None:
            time_limit = _parse_seconds("TimeLimit", cells[ix.time_limit], TIME_LIMIT_MAX)
    except InvalidRow as exc:
        errors.append((exc.field, exc.message))
    try:
        if ix.time_out is not None:
            time_out = _parse_seconds("TimeOut", cells[ix.time_out], TIME_OUT_MAX)
    except InvalidRow as exc:
        errors.append((exc.field, exc.message))
    for name, i in ix.extras:
        value = cells[i]
        if value.strip():
            try:
                extra[name] = _check_extra(name, value)
            except InvalidRow as exc:
                errors.append((exc.field, exc.message))
    try:
        if ix.key is not None and cells[ix.key].strip():
            key = _check_request_key(cells[ix.key])
    except InvalidRow as exc:
        errors.append((exc.field, exc.message))

    if errors or from_ is None:
        return errors
    # Every field has been checked above with the model's own checks: skip re-validation.
    return CallRequest.model_construct(
        line=line,
        from_=from_,
        to=to,
        url=url,
        caller_id=caller,
        custom_field=custom,
        time_limit=time_limit,
        time_out=time_out,
        extra=extra,
        request_key=key,
    )


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


def _read(
    stream: Any, default_caller_id: str | None
) -> Iterator[CallRequest | RowError | FileIssue]:
    default: str | None = None
    if default_caller_id is not None and default_caller_id.strip():
        try:
            default = normalise_number(default_caller_id, field="CallerId")
        except InvalidRow as exc:
            yield FileIssue(
                f"the default caller id is not usable ({exc.message}); "
                "rows without a CallerId are refused"
            )

    feed = _Feed(stream)
    records = _records(feed)
    header: _Record | None = None
    for rec in records:
        if rec.problem is None and _is_blank(rec.cells):
            continue
        header = rec
        break
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
    width = len(header.cells)
    names = [c.strip() or f"column {i + 1}" for i, c in enumerate(header.cells)]
    canon = [_KNOWN.get(n.lower(), n) for n in names]
    unnamed_reported = False
    data_rows = 0

    for rec in records:
        lines = rec.lines
        no = lines[0].no
        if rec.problem is not None:
            data_rows += 1
            yield RowError(no, "row", rec.problem)
            continue
        cells = rec.cells
        if _is_blank(cells):
            continue
        data_rows += 1
        if len(cells) != width:
            if len(lines) > 1:
                msg = _quote_problem(lines, feed, f"{len(cells)} cells long, not {width}")
            else:
                msg = f"has {len(cells)} cells but the header has {width}"
            yield RowError(no, "row", msg)
            continue
        if rec.bad_at >= 0:
            field = next((canon[i] for i, c in enumerate(cells) if "\ufffd" in c), "row")
            if not field.isprintable():  # an unknown column's raw header: never echo controls
                field = ascii(field)
            yield RowError(no, field, f"not UTF-8 text (byte offset {rec.bad_at})")
            continue
        if unnamed and not unnamed_reported and any(cells[i].strip() for i in unnamed):
            unnamed_reported = True
            cols = ", ".join(str(i + 1) for i in unnamed)
            yield FileIssue(
                f"line {no} has a value in column(s) {cols}, which have no name in the header; "
                "such cells are ignored"
            )
        result = _row(cells, index, default, no)
        if isinstance(result, CallRequest):
            yield result
            continue
        error = _row_error(no, result)
        if len(lines) > 1:
            # A multi-line record whose failing cell holds the line breaks is a quote left
            # open (e.g. `"abc` ... `x",y`) that swallowed good lines: give them back.
            failing = {field for field, _ in result}
            if any(canon[i] in failing and ("\n" in c or "\r" in c) for i, c in enumerate(cells)):
                what = f"not a valid row ({error.field}: {error.message[:60]}...)"
                error = RowError(no, "row", _quote_problem(lines, feed, what))
        yield error
    if data_rows == 0:
        yield FileIssue("the file has no data rows")
