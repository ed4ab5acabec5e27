"""The call request: :class:`CallRequest` and the checks of its fields.

A ``CallRequest`` is one good row of a campaign: numbers normalised to E.164, a URL that is
a real URL, seconds in Exotel's ranges, the optional Exotel parameters a row may carry
(``EXTRA_PARAMS``). The field checks (``check_url``, ``check_extra``, ...) are the ones the
CSV reader (``producer.csvread``) runs on each cell, and the model's own validators run them
too, so a request built in Python gets the same guarantees as one read from a file. Each
check raises ``InvalidRow`` naming the Exotel parameter at fault.

Also here: ``request_id`` (the id of a call in the ledger), and what the reader yields
besides good rows: ``RowError`` (a refused row) and ``FileIssue`` (the file as a whole).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import pydantic

from callq.errors import InvalidRow
from callq.exotel.params import (
    CUSTOM_FIELD_MAX,
    EXTRA_PARAMS,
    OPTION_CHOICES,
    OPTION_URL_SCHEMES,
    TIME_LIMIT_MAX,
    TIME_OUT_MAX,
    URL_MAX,
)
from callq.ids import CAMPAIGN_RE
from callq.intake.phone import callee_zone, normalise_number, show

__all__ = [
    "CUSTOM_FIELD_MAX",
    "EXTRA_PARAMS",
    "REQUEST_KEY_MAX",
    "TIME_LIMIT_MAX",
    "TIME_OUT_MAX",
    "URL_MAX",
    "CallRequest",
    "FileIssue",
    "RowError",
    "check_custom_field",
    "check_extra",
    "check_request_key",
    "check_url",
    "parse_seconds",
    "request_id",
]

REQUEST_KEY_MAX = 256
_HTTP = ("http", "https")

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


def parse_seconds(field: str, raw: str, maximum: int) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value) is None:
        raise InvalidRow(field, f"{show(value)} is not a whole number of seconds")
    return _check_seconds(field, int(value.split(".", 1)[0]), maximum)


def check_custom_field(value: str) -> str:
    if len(value) > CUSTOM_FIELD_MAX:
        raise InvalidRow(
            "CustomField", f"is {len(value)} characters long; the limit is {CUSTOM_FIELD_MAX}"
        )
    return value


def check_request_key(raw: str) -> str:
    value = raw.strip()
    if len(value) > REQUEST_KEY_MAX:
        raise InvalidRow(
            "RequestKey", f"is {len(value)} characters long; the limit is {REQUEST_KEY_MAX}"
        )
    if _CONTROL.search(value):
        raise InvalidRow("RequestKey", f"{show(value)} contains control codes")
    return value


def check_extra(name: str, raw: str) -> str:
    value = raw.strip()
    choices = OPTION_CHOICES.get(name)
    if choices is not None:
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise InvalidRow(name, f"{show(value)} is not one of {', '.join(choices)}")
    schemes = OPTION_URL_SCHEMES.get(name)
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
            return check_custom_field(v)
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
            return {name: check_extra(name, value) for name, value in v.items()}
        except InvalidRow as exc:
            raise _as_value_error(exc) from None

    @pydantic.field_validator("request_key")
    @classmethod
    def _v_key(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            _check_text("RequestKey", v)
            return check_request_key(v) or None
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
            # The callee's zone (To, or From for a call flow), for `--window-zone callee`.
            "zone": callee_zone(self.to if self.to is not None else self.from_),
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
