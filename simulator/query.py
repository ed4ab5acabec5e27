"""Reading a Call Details query string: list filters, single values and page cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping


def cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"c{seq}".encode()).decode().rstrip("=")


def uncursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("bad cursor") from exc
    if not raw.startswith("c") or not raw[1:].isdigit():
        raise ValueError("bad cursor")
    return int(raw[1:])


class BadQuery(ValueError):
    """A query Exotel would refuse with 400; the message says why."""


def split_list(query: Mapping[str, list[str]], name: str, limit: int) -> list[str] | None:
    values = query.get(name)
    if not values:
        return None
    items = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    if not items:
        return None
    if len(items) > limit:
        raise BadQuery(f"At most {limit} values may be given for '{name}'")
    return items


def last_value(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    return values[-1]
