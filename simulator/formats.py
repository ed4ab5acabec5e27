"""Wire formats: Exotel's XML/JSON bodies, its timestamps, and StatusCallback encodings."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

__all__ = [
    "TIME_FORMAT",
    "encode_callback",
    "flatten_form",
    "format_time",
    "json_body",
    "parse_time",
    "rest_exception",
    "wall_time",
    "xml_body",
    "zone",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_IST = timezone(timedelta(hours=5, minutes=30), "IST")


def zone(name: str) -> tzinfo:
    """The zone called ``name``; Asia/Kolkata works even without tz data (it has no DST)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception as exc:
        if name in ("Asia/Kolkata", "Asia/Calcutta", "IST"):
            return _IST
        raise ValueError(f"unknown time zone {name!r}") from exc


def format_time(epoch: float, tz: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM:SS`` wall-clock time in ``tz``, with no zone, as Exotel shows it."""
    return datetime.fromtimestamp(epoch, tz).strftime(TIME_FORMAT)


def wall_time(epoch: float, tz: tzinfo) -> datetime:
    """The naive wall-clock time in ``tz``, to the second, as Exotel stores and compares it."""
    return datetime.fromtimestamp(math.floor(epoch), tz).replace(tzinfo=None)


def parse_time(text: str, tz: tzinfo) -> float:
    """The epoch seconds of a ``YYYY-MM-DD HH:MM:SS`` wall-clock time in ``tz``."""
    return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=tz).timestamp()


# --- replies ---------------------------------------------------------------------------

_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Element name of each item of a list, by the list's name.
_ITEM_NAMES = {"Calls": "Call", "Legs": "Leg"}


def _xml_value(name: str, value: Any, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    if value is None or value == "":
        out.append(f"{pad}<{name}/>")
    elif isinstance(value, Mapping):
        out.append(f"{pad}<{name}>")
        for key, sub in value.items():
            _xml_value(str(key), sub, depth + 1, out)
        out.append(f"{pad}</{name}>")
    elif isinstance(value, list | tuple):
        out.append(f"{pad}<{name}>")
        item = _ITEM_NAMES.get(name, "Item")
        for sub in value:
            if isinstance(sub, Mapping) and len(sub) == 1 and item in sub:
                _xml_value(item, sub[item], depth + 1, out)
            else:
                _xml_value(item, sub, depth + 1, out)
        out.append(f"{pad}</{name}>")
    else:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append(f"{pad}<{name}>{escape(text)}</{name}>")


def xml_body(payload: Mapping[str, Any]) -> bytes:
    """``<TwilioResponse>`` wrapping each top-level key, indented like Exotel's samples."""
    out = [_XML_HEAD.rstrip("\n"), "<TwilioResponse>"]
    for key, value in payload.items():
        _xml_value(key, value, 1, out)
    out.append("</TwilioResponse>")
    return ("\n".join(out) + "\n").encode("utf-8")


def json_body(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2) + "\n").encode("utf-8")


def rest_exception(status: int, message: str) -> dict[str, Any]:
    return {"RestException": {"Status": status, "Message": message}}


# --- StatusCallback bodies ---------------------------------------------------------------


def _form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten_form(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten for form encodings: ``Legs`` becomes ``Legs[0][Status]``, ``Legs[0][...]``."""
    pairs: list[tuple[str, str]] = []
    for key, value in payload.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    for sub_key, sub in item.items():
                        pairs.append((f"{key}[{i}][{sub_key}]", _form_text(sub)))
                else:
                    pairs.append((f"{key}[{i}]", _form_text(item)))
        else:
            pairs.append((key, _form_text(value)))
    return pairs


def _multipart(pairs: Iterable[tuple[str, str]]) -> tuple[bytes, str]:
    boundary = "----ExotelSim" + secrets.token_hex(12)
    chunks: list[bytes] = []
    for name, value in pairs:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def encode_callback(payload: Mapping[str, Any], content_type: str) -> tuple[bytes, str]:
    """The body and Content-Type header of a StatusCallback POST.

    ``application/json`` gives JSON (Legs as an array); ``multipart/form-data`` gives form
    parts with ``Legs[i][Field]`` names; anything else gives the same pairs url-encoded.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return json.dumps(payload).encode("utf-8"), "application/json"
    pairs = flatten_form(payload)
    if kind == "multipart/form-data":
        return _multipart(pairs)
    return urlencode(pairs).encode("ascii"), "application/x-www-form-urlencoded"
