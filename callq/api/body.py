"""Reading the API's request bodies and parameters: within the size limit, each refusal a
:class:`BadRequest` carrying its HTTP status and the field at fault (never a 500).

A campaign's calls come as a CSV file (``text/csv`` body, or the ``file`` part of a
multipart/form-data upload), or as JSON rows (an array of objects keyed by Exotel's parameter
names, or an object ``{"rows": [...], <controls>}``). The controls are those of ``python -m
producer enqueue`` (and of ``set``), by the names of :class:`CampaignOptions`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from callq.campaign.controls import CampaignOptions, parse_time
from callq.errors import CallqError
from callq.intake.enqueue import DEDUPE_CHOICES, Dedupe, options_meta
from callq.settings import Settings

__all__ = [
    "CONTROLS",
    "CSV_TYPES",
    "ENQUEUE_FLAGS",
    "JSON_TYPES",
    "MULTIPART",
    "BadRequest",
    "BodyTooLarge",
    "Controls",
    "media_type",
    "parse_controls",
    "parse_flag",
    "read_bytes",
    "read_multipart",
    "rows_from_json",
    "spool",
]

CSV_TYPES: Final = ("text/csv", "application/csv")
JSON_TYPES: Final = ("application/json", "application/merge-patch+json")
MULTIPART: Final = "multipart/form-data"
#: The file part of a multipart upload.
FILE_FIELD: Final = "file"
#: The controls kept in the campaign (``set`` changes them), with their JSON types.
CONTROLS: Final = (
    "account",
    "window",
    "timezone",
    "window_zone",
    "send_at",
    "end_at",
    "redial_on",
    "redials",
    "redial_interval",
    "redial_backoff",
    "weight",
    "number_cap",
)
#: What only an enqueue takes besides the controls.
ENQUEUE_FLAGS: Final = ("priority", "strict", "dedupe")
MAX_FORM_FIELDS: Final = 64
MAX_FIELD_BYTES: Final = 4096
SPOOL_IN_MEMORY: Final = 1 << 20
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class BadRequest(CallqError):
    """A request refused: ``status`` to answer, the ``field`` at fault (or None)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class BodyTooLarge(Exception):
    """The body is larger than ``API_MAX_BODY_BYTES``."""


def media_type(header: str | None) -> str:
    """``text/csv`` of ``Text/CSV; charset=utf-8``; "" when absent."""
    return (header or "").split(";", 1)[0].strip().lower()


# --- the body, within the limit ------------------------------------------------------------


def _declared(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    if size < 0:
        raise BadRequest(400, "bad Content-Length")
    if size > limit:
        raise BodyTooLarge


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refusing (before buffering) anything beyond ``limit`` bytes."""
    _declared(request, limit)
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise BodyTooLarge
            yield chunk
    except ClientDisconnect:
        raise BadRequest(400, "client disconnected") from None


async def read_bytes(request: Request, limit: int) -> bytes:
    """The whole body (at most ``limit`` bytes)."""
    body = bytearray()
    async for chunk in _limited(request, limit):
        body += chunk
    return bytes(body)


async def spool(request: Request, limit: int) -> IO[bytes]:
    """The body in a temporary file (in memory up to 1 MiB, on disk beyond), at position 0.
    The caller closes it."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        async for chunk in _limited(request, limit):
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


async def read_multipart(request: Request, limit: int) -> tuple[UploadFile | None, dict[str, str]]:
    """A multipart upload: its ``file`` part (or None) and its other fields (the controls).
    The caller closes the file."""
    parser = MultiPartParser(
        Headers({"content-type": request.headers.get("content-type", "")}),
        _limited(request, limit),
        max_files=1,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except (BodyTooLarge, BadRequest):
        raise
    except MultiPartException as exc:
        raise BadRequest(400, f"malformed multipart body: {exc.message}") from None
    except Exception:  # python-multipart may raise other errors on garbage
        raise BadRequest(400, "malformed multipart body") from None
    upload: UploadFile | None = None
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != FILE_FIELD:
                    raise BadRequest(422, f"the file part must be named {FILE_FIELD!r}", key)
                upload = value
            elif key == FILE_FIELD:
                raise BadRequest(422, "file: give the CSV as a file part", FILE_FIELD)
            elif key in fields:
                raise BadRequest(422, f"{key}: given twice", key)
            else:
                fields[key] = value
    except BadRequest:
        await form.close()
        raise
    return upload, fields


# --- JSON rows -----------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and huge integers
        raise BadRequest(400, "malformed JSON") from None


def _utf8(text: str, field: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(422, f"{field}: not UTF-8 text (a lone surrogate)", field) from None
    return text


def _cell(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _utf8(value, field)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(422, f"{field}: must be a finite number", field)
        return str(int(value)) if value.is_integer() else repr(value)
    raise BadRequest(422, f"{field}: must be a string, a number or null", field)


def rows_from_json(data: Any, field: str = "rows") -> tuple[list[str], list[list[str]]]:
    """JSON rows -> (header, cells per row): the header is every key in the order first
    seen, a key a row lacks is an empty cell. Refuses anything but an array of objects of
    strings, numbers, booleans and nulls, naming the item (``rows[3].TimeLimit``)."""
    if not isinstance(data, list):
        raise BadRequest(422, f"{field}: must be an array of objects", field)
    header: dict[str, int] = {}
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise BadRequest(422, f"{field}[{i}]: must be an object", f"{field}[{i}]")
        for key in row:
            if key not in header:
                header[_utf8(key, f"{field}[{i}]")] = len(header)
    names = list(header)
    cells = [
        [_cell(row.get(name), f"{field}[{i}].{name}") for name in names]
        for i, row in enumerate(data)
    ]
    return names, cells


# --- the controls --------------------------------------------------------------------------


@dataclass(frozen=True)
class Controls:
    """The campaign controls of a request, validated, and an enqueue's own flags."""

    options: CampaignOptions
    strict: bool = False
    dedupe: Dedupe = "first"


def parse_flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise BadRequest(422, f"{field}: must be true or false", field)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(422, f"{field}: must be a string", field)
    return _utf8(value, field)


def _int(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    raise BadRequest(422, f"{field}: must be a whole number", field)


def _float(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) < 32:
        try:
            number = float(value)
        except ValueError:
            raise BadRequest(422, f"{field}: must be a number", field) from None
    else:
        raise BadRequest(422, f"{field}: must be a number", field)
    if not math.isfinite(number):
        raise BadRequest(422, f"{field}: must be a finite number", field)
    return number


def _time(value: Any, field: str) -> datetime:
    try:
        return parse_time(_text(value, field), field)
    except ValueError as exc:
        raise BadRequest(422, str(exc), field) from None


def _statuses(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [x.strip() for x in value.split(",") if x.strip()]
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        items = [x.strip() for x in value]
    else:
        raise BadRequest(422, f"{field}: a list of busy, no-answer, failed", field)
    if not items:
        raise BadRequest(422, f"{field}: a list of busy, no-answer, failed", field)
    return tuple(items)


_CONVERT: Final[dict[str, Callable[[Any, str], Any]]] = {
    "priority": parse_flag,
    "account": _text,
    "window": _text,
    "timezone": _text,
    "window_zone": _text,
    "send_at": _time,
    "end_at": _time,
    "redial_on": _statuses,
    "redials": _int,
    "redial_interval": _float,
    "redial_backoff": _text,
    "weight": _float,
    "number_cap": _text,
}


def parse_controls(
    values: Mapping[str, Any], settings: Settings, *, allowed: Iterable[str]
) -> Controls:
    """The controls in ``values`` (query parameters, form fields or a JSON object), each
    checked by the rules of :class:`CampaignOptions` and named when refused; an unknown name
    is refused too (a typo must not pass for a default)."""
    allowed = tuple(allowed)
    for name in values:
        if name not in allowed:
            shown = name if name.isprintable() and len(name) <= 64 else ascii(name[:64])
            raise BadRequest(422, f"{shown}: not a parameter (use {', '.join(allowed)})", shown)
    options: dict[str, Any] = {}
    for name, convert in _CONVERT.items():
        if name in values and values[name] is not None:
            value = convert(values[name], name)
            try:  # each option alone, so the refusal names the right one
                options_meta(CampaignOptions(**{name: value}), settings)
            except ValueError as exc:
                raise BadRequest(422, str(exc), name) from None
            options[name] = value
    campaign_options = CampaignOptions(**options)
    try:
        options_meta(campaign_options, settings)  # the rules between options (end_at > send_at)
    except ValueError as exc:
        raise BadRequest(422, str(exc), str(exc).split(":", 1)[0]) from None
    strict = values.get("strict")
    dedupe = values.get("dedupe")
    if dedupe is not None and dedupe not in DEDUPE_CHOICES:
        raise BadRequest(422, f"dedupe: one of {', '.join(DEDUPE_CHOICES)}", "dedupe")
    return Controls(
        options=campaign_options,
        strict=False if strict is None else parse_flag(strict, "strict"),
        dedupe=dedupe or "first",
    )
