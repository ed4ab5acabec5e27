"""StatusCallback bodies -> :class:`~callq.store.callbacks.CallbackEvent`.

Exotel posts JSON (``Legs`` an array) or multipart/form-data (``Legs[0][Status]`` keys); an
urlencoded body with the same keys is accepted too. Known fields are checked; unknown ones are
ignored, so a field Exotel adds later does no harm. Every refusal is a :class:`BadCallback`
carrying the HTTP status to answer: 400 for a body that cannot be read, 422 for one that reads
but is not a callback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from callq.errors import CallqError
from callq.store.callbacks import CallbackEvent

__all__ = [
    "ATTEMPT_PATTERN",
    "CONTENT_TYPES",
    "MAX_FIELDS",
    "MAX_LEGS",
    "RID_PATTERN",
    "SID_PATTERN",
    "STATUS_PATTERN",
    "BadCallback",
    "media_type",
    "parse_callback",
    "url_reference",
]

JSON, MULTIPART, URLENCODED = (
    "application/json",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
)
CONTENT_TYPES: Final = (JSON, MULTIPART, URLENCODED)
MAX_LEGS: Final = 32
MAX_FIELDS: Final = 512
#: Printable ASCII without spaces. Exotel's Sids are 32 hex digits (some with a suffix).
SID_PATTERN: Final = r"^[!-~]{1,128}$"
STATUS_PATTERN: Final = r"^[!-~]{1,64}$"
_SID_RE = re.compile(SID_PATTERN)
_STATUS_RE = re.compile(STATUS_PATTERN)
#: The request id and attempt number the dialer puts in the StatusCallback URL's query
#: (callq.exotel.params.status_callback_url). A request id is ``{campaign}:{digest}``.
RID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:[!-~]{1,128}$"
ATTEMPT_PATTERN: Final = r"^[0-9]{1,9}$"
_RID_RE = re.compile(RID_PATTERN)
_ATTEMPT_RE = re.compile(ATTEMPT_PATTERN)
_LEG_KEY = re.compile(r"^Legs\[(\d{1,6})\]\[([A-Za-z]{1,32})\]$")

#: Fields kept in :attr:`CallbackEvent.fields`, and whether a JSON number is allowed.
STRING_FIELDS: Final = (
    "DateCreated",
    "DateUpdated",
    "StartTime",
    "EndTime",
    "RecordingUrl",
    "To",
    "From",
    "Direction",
    "EventType",
)
NUMBER_FIELDS: Final = ("ConversationDuration",)
#: Fields checked (a string or null, like the OpenAPI document says) but not kept.
CHECKED_FIELDS: Final = ("PhoneNumberSid",)


class BadCallback(CallqError):
    """A callback body refused; ``status`` is the HTTP status to answer (400 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(header: str | None) -> str:
    """``multipart/form-data`` of ``Multipart/Form-Data; boundary=x``; "" when absent."""
    return (header or "").split(";", 1)[0].strip().lower()


def url_reference(
    rids: Iterable[str], attempts: Iterable[str]
) -> tuple[str | None, int | None, str | None]:
    """``(rid, attempt, problem)`` from the values of the URL's ``rid`` and ``attempt``
    query parameters (each given any number of times).

    An unreadable value is not a refusal: the callback is still matched by CustomField or by
    Sid (or kept pending), as before the URL named its request, and ``problem`` says why the
    URL's was dropped (for the log). Refusing it would lose the callback for good (Exotel
    retries twice, then gives up). An attempt without a readable rid is dropped with it.
    """
    rid_values = list(dict.fromkeys(rids))
    attempt_values = list(dict.fromkeys(attempts))
    if not rid_values:
        return None, None, ("attempt without rid" if attempt_values else None)
    if len(rid_values) > 1:
        return None, None, "rid given more than once, with different values"
    rid = rid_values[0]
    if not _RID_RE.fullmatch(rid):
        return None, None, "rid is not a request id"
    if not attempt_values:
        return rid, None, None
    if len(attempt_values) > 1:
        return rid, None, "attempt given more than once, with different values"
    if not _ATTEMPT_RE.fullmatch(attempt_values[0]):
        return rid, None, "attempt is not a whole number"
    return rid, int(attempt_values[0]), None


async def parse_callback(content_type: str, body: bytes) -> CallbackEvent:
    """Parse ``body`` sent with the ``content_type`` header (one of :data:`CONTENT_TYPES`)."""
    kind = media_type(content_type)
    if kind == JSON:
        return _from_json(body)
    if kind == URLENCODED:
        return _from_pairs(_urlencoded(body))
    if kind == MULTIPART:
        return _from_pairs(await _multipart(content_type, body))
    raise BadCallback(415, f"unsupported content type {kind or '(none)'!r}")


# --- JSON -------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _from_json(body: bytes) -> CallbackEvent:
    try:
        data: Any = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and huge integers
        raise BadCallback(400, "malformed JSON") from None
    if not isinstance(data, dict):
        raise BadCallback(422, "the body must be a JSON object")
    legs = data.get("Legs")
    if legs is None:
        leg_list: list[Any] = []
    elif isinstance(legs, list):
        leg_list = legs
    else:
        raise BadCallback(422, "Legs must be an array")
    if len(leg_list) > MAX_LEGS:
        raise BadCallback(422, f"Legs holds more than {MAX_LEGS} items")
    for leg in leg_list:
        if not isinstance(leg, dict):
            raise BadCallback(422, "each item of Legs must be an object")
    return _event(data, leg_list)


# --- forms ------------------------------------------------------------------------------


def _urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except ValueError:  # includes UnicodeDecodeError and too many fields
        raise BadCallback(400, "malformed urlencoded body") from None


async def _multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        Headers({"content-type": content_type}),
        stream(),
        max_files=0,
        max_fields=MAX_FIELDS,
        max_part_size=max(len(body), 1),
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadCallback(400, f"malformed multipart body: {exc.message}") from None
    except Exception:  # python-multipart may raise other errors on garbage
        raise BadCallback(400, "malformed multipart body") from None
    pairs: list[tuple[str, str]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):  # pragma: no cover - max_files=0 refuses files
            raise BadCallback(422, "file parts are not accepted")
        pairs.append((key, value))
    return pairs


def _from_pairs(pairs: Iterable[tuple[str, str]]) -> CallbackEvent:
    """Flat form pairs; ``Legs[i][Field]`` keys are folded into a list of dicts."""
    data: dict[str, Any] = {}
    legs: dict[int, dict[str, str]] = {}
    for key, value in pairs:
        m = _LEG_KEY.match(key)
        if m is None:
            data[key] = value
            continue
        index = int(m.group(1))
        if index < MAX_LEGS:  # a leg beyond any real call is ignored, like an unknown key
            legs.setdefault(index, {})[m.group(2)] = value
    leg_list: list[Any] = [legs.get(i, {}) for i in range(max(legs) + 1)] if legs else []
    return _event(data, leg_list)


# --- common -----------------------------------------------------------------------------


def _text(name: str, value: Any, *, number: bool = False) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if number and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise BadCallback(422, f"{name} must be a finite number")
        return str(value)
    kind = "a number, a string or null" if number else "a string or null"
    raise BadCallback(422, f"{name} must be {kind}")


def _duration(value: str | None) -> int | str | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def _legs_json(legs: list[Any]) -> str:
    out = []
    for i, leg in enumerate(legs):
        status = _text(f"Legs[{i}][Status]", leg.get("Status"))
        duration = _text(f"Legs[{i}][OnCallDuration]", leg.get("OnCallDuration"), number=True)
        out.append({"Status": status or None, "OnCallDuration": _duration(duration)})
    return json.dumps(out, separators=(",", ":"))


def _event(data: Mapping[str, Any], legs: list[Any]) -> CallbackEvent:
    sid = data.get("CallSid")
    if sid is None or sid == "":
        raise BadCallback(422, "CallSid is missing")
    if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
        raise BadCallback(422, "CallSid must be 1-128 printable characters without spaces")
    status = data.get("Status")
    if status is None or status == "":
        raise BadCallback(422, "Status is missing")
    if not isinstance(status, str) or not _STATUS_RE.fullmatch(status):
        raise BadCallback(422, "Status must be 1-64 printable characters without spaces")
    custom_field = _text("CustomField", data.get("CustomField"))
    fields: dict[str, str] = {}
    for name in STRING_FIELDS:
        value = _text(name, data.get(name))
        if value is not None:
            fields[name] = value
    for name in CHECKED_FIELDS:
        _text(name, data.get(name))
    for name in NUMBER_FIELDS:
        value = _text(name, data.get(name), number=True)
        if value is not None:
            fields[name] = value
    if legs:
        fields["legs"] = _legs_json(legs)
    return CallbackEvent(sid=sid, status=status, custom_field=custom_field or None, fields=fields)
