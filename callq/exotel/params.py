"""What Exotel's Calls/connect takes: its parameters, their bounds, and the form of one POST.

The one place that knows Exotel's parameter names: the row model (callq.intake.request)
checks rows against these, the dialer builds each request with :func:`build_connect_params`,
and reconcile and the backfill bound a call's life by TimeOut and TimeLimit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from callq.errors import InvalidRow
from callq.settings import Settings

#: Exotel's largest (and default) TimeLimit and TimeOut, in seconds.
TIME_LIMIT_MAX = 14400
TIME_OUT_MAX = 60
CUSTOM_FIELD_MAX = 256
URL_MAX = 2048
#: The query parameters the queue adds to each call's StatusCallback URL: the request id and
#: the attempt number that placed it (see :func:`status_callback_url`).
CALLBACK_RID_PARAM = "rid"
CALLBACK_ATTEMPT_PARAM = "attempt"

# Optional Exotel parameters a row may carry (besides the named fields).
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "CallType": ("trans", "promo"),
    "Record": ("true", "false"),
    "RecordingChannels": ("single", "dual"),
    "RecordingFormat": ("mp3", "mp3-hq"),
    "StartPlaybackToNew": ("Callee", "Both"),
    "StreamBeginNew": ("Leg1Connect", "Leg2Connect"),
}
OPTION_URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "WaitUrl": ("http", "https"),
    "StartPlaybackValueNew": ("http", "https"),
    "StreamUrlNew": ("ws", "wss"),
}
EXTRA_PARAMS: tuple[str, ...] = (*OPTION_CHOICES, *OPTION_URL_SCHEMES)

# Parameters the queue owns: never taken from a row's "extra".
_OWNED = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Url",
        "CallerId",
        "TimeLimit",
        "TimeOut",
        "CustomField",
        "StatusCallback",
        "StatusCallbackContentType",
    )
)


def _owned(name: str) -> bool:
    low = name.strip().lower()
    return low in _OWNED or low.startswith("statuscallbackevents")


def _scalar(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip() or None
    raise InvalidRow("extra", f"{field}: a {type(value).__name__} is not a parameter value")


def _extra_params(raw: str) -> list[tuple[str, str]]:
    if not raw.strip():
        return []
    try:
        extra = json.loads(raw)
    except ValueError:
        raise InvalidRow("extra", "not valid JSON") from None
    if not isinstance(extra, dict):
        raise InvalidRow("extra", "must be a JSON object of Exotel parameters")
    out: list[tuple[str, str]] = []
    for name, value in extra.items():
        if not name.strip() or _owned(name):
            continue
        if isinstance(value, list):  # Exotel's array convention: Name[0]=…, Name[1]=…
            for i, item in enumerate(value):
                text = _scalar(name, item)
                if text is not None:
                    out.append((f"{name}[{i}]", text))
            continue
        text = _scalar(name, value)
        if text is not None:
            out.append((name, text))
    return out


def status_callback_url(target: str, request_id: str, attempt: int | None = None) -> str:
    """``target`` (CALLBACK_URL with its token) with ``rid={request_id}`` and, when given,
    ``attempt={attempt}`` added to its query; the query it had (the token) is kept as is.

    Exotel's callback of a flow call carries no CustomField (EXOTEL.md): the URL is then the
    only place that names the request, so a callback proves which request placed its Sid
    even when the worker never learned it (the call in doubt). The attempt number tells a
    late callback of an earlier attempt from the one in flight (callback.lua). Any ``rid`` or
    ``attempt`` already in ``target`` is replaced, so the receiver reads one value of each.
    """
    parts = urlsplit(target)
    ours = (CALLBACK_RID_PARAM, CALLBACK_ATTEMPT_PARAM)
    kept = [
        piece
        for piece in parts.query.split("&")
        if piece and unquote_plus(piece.split("=", 1)[0]) not in ours
    ]
    added = [f"{CALLBACK_RID_PARAM}={quote(request_id, safe=':')}"]
    if attempt is not None:
        added.append(f"{CALLBACK_ATTEMPT_PARAM}={int(attempt)}")
    return urlunsplit(parts._replace(query="&".join([*kept, *added])))


def build_connect_params(
    record: Mapping[str, str],
    request_id: str,
    settings: Settings,
    *,
    attempt: int | None = None,
) -> list[tuple[str, str]]:
    """The form parameters of one Calls/connect POST, in a stable order.

    ``record`` keys (each optional, "" meaning absent): from, to, url, caller_id, time_limit,
    time_out, extra (a JSON object of other Exotel parameters). ``CustomField`` is always
    ``request_id`` (a row's own CustomField stays in the ledger). The StatusCallback
    parameters come from settings only; extra cannot override any owned parameter. The
    StatusCallback URL names the request and ``attempt`` (:func:`status_callback_url`).
    Raises :class:`InvalidRow` for an unreadable ``extra``.
    """

    def field(name: str) -> str:
        value = record.get(name)
        return value.strip() if isinstance(value, str) else ""

    params: list[tuple[str, str]] = []
    for key, name in (("from", "From"), ("to", "To"), ("url", "Url")):
        if field(key):
            params.append((name, field(key)))
    caller_id = field("caller_id") or settings.exotel_caller_id.strip()
    if caller_id:
        params.append(("CallerId", caller_id))
    for key, name in (("time_limit", "TimeLimit"), ("time_out", "TimeOut")):
        if field(key):
            params.append((name, field(key)))
    params.extend(_extra_params(record.get("extra") or ""))
    params.append(("CustomField", request_id))
    target = settings.callback_target()
    if target is not None:
        params.append(("StatusCallback", status_callback_url(target, request_id, attempt)))
        params.append(("StatusCallbackEvents[0]", "terminal"))
        params.append(("StatusCallbackContentType", "application/json"))
    return params


def longest_call(time_out: int | None, time_limit: int | None) -> int:
    """How long a call may last at most, in seconds: TimeOut of ringing, then TimeLimit of
    talk (Exotel's maxima for those not given)."""
    return (time_out or TIME_OUT_MAX) + (time_limit or TIME_LIMIT_MAX)
