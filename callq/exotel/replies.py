"""Pure functions that read Exotel's replies and turn them into exactly one outcome
(:mod:`callq.exotel.outcome`).

Nothing here does I/O. ``classify_response`` and ``classify_exception`` never raise: whatever
they cannot understand becomes :class:`~callq.exotel.outcome.Unknown`, because an Unknown call is
never redialled until it is proven unplaced. Only ``parse_reply`` raises
(:class:`~callq.errors.ExotelReplyError`), and only for a body it refuses to read.

The classification table (``classify_response``)::

    2xx with a readable Call.Sid   -> Originated(sid, status)
    2xx without one                -> Unknown          (a call may exist: never redial)
    4xx naming concurrent calls    -> NotPlaced(at_capacity=True) (the live-call cap; a 429
                                      stays rate_limited too: it still pushes back)
    429                            -> NotPlaced(rate_limited=True, retry_after=Retry-After)
    500, 504                       -> NotPlaced        (Exotel: "could not originate on any route")
    502, 503                       -> Unknown          (see _NOT_PLACED_5XX below)
    other 4xx                      -> Rejected(Message, status); account_level for 401, 402
                                      and a 403 that is not about one number
    1xx, 3xx, other 5xx, garbage   -> Unknown
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET
import requests.exceptions as rexc
import urllib3.exceptions as uexc

from callq.errors import ExotelReplyError
from callq.exotel.outcome import NotPlaced, Originated, Outcome, Rejected, Unknown

__all__ = [
    "MAX_REPLY_BYTES",
    "ExotelStatusError",
    "cause_chain",
    "classify_exception",
    "classify_response",
    "describe_exception",
    "error_message",
    "header_value",
    "parse_reply",
    "parse_retry_after",
    "redact",
]

MAX_REPLY_BYTES = 16 * 1024 * 1024
"""A reply larger than this is refused unread (a page of 100 calls is about 100 kB)."""

MAX_RETRY_AFTER_SECONDS = 86_400.0
"""A Retry-After hint is capped at one day; anything longer is a broken header."""

_MAX_REASON = 500

# Exotel documents 500 and 504 as "could not originate the call on any route" (seed 000):
# the call was not placed, retrying is safe. 502 and 503 are not documented by Exotel for
# Calls/connect. They usually come from a proxy or load balancer in front of the API, and a
# gateway can fail *after* handing our POST to the origination service, which dials
# synchronously (up to 30 s). So for them we cannot know: Unknown, never NotPlaced.
# 504 is also what such a gateway says when it gives up waiting: only a 504 that carries
# Exotel's own RestException is Exotel's "not originated"; any other 504 is Unknown.
_NOT_PLACED_5XX = frozenset({500, 504})
#: A refusal at the account's cap on concurrent calls names it ("concurrent calls",
#: "concurrency limit"); Exotel documents the cap, not its wording, so this is a reading.
_CONCURRENCY = re.compile(r"concurren", re.IGNORECASE)
_NOT_PLACED_ONLY_FROM_EXOTEL = frozenset({504})

# 403 refusals about ONE number (DND register, blacklist, whitelisting): fail that call only.
_PER_NUMBER_403 = re.compile(
    r"\b(dnd|ndnc|ncpr|nccp)\b|do[\s-]*not[\s-]*disturb|black[\s-]?list|block[\s-]?list"
    r"|white[\s-]?list|opted[\s-]?out|opt[\s-]?out|unsubscrib",
    re.IGNORECASE,
)
# ... unless it is about the caller's IP address ("your IP is not whitelisted"): account-wide.
_IP_403 = re.compile(r"\bip\b|ip[\s-]*address", re.IGNORECASE)

_TOKEN_RE = re.compile(r"((?:token|api_?key|api_?token|password|secret)=)[^&\s\"'<>]+", re.I)
_SID_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")


class ExotelStatusError(ExotelReplyError):
    """Exotel answered a look-up with something other than success.

    ``status`` is the HTTP status (None when the request failed at the transport),
    ``retry_after`` the Retry-After hint of a 429. The message never holds a secret.
    """

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def redact(text: str) -> str:
    """Mask ``token=…``-style values (e.g. a StatusCallback URL echoed back in a message)."""
    return _TOKEN_RE.sub(r"\1***", text)


# --------------------------------------------------------------------------------------------
# parse_reply


def parse_reply(body: bytes, content_type: str | None = None) -> dict[str, Any]:
    """Read an Exotel reply, JSON or XML, into the JSON shape.

    ``{"Call": {...}}``, ``{"RestException": {"Status": ..., "Message": ...}}``,
    ``{"Metadata": {...}, "Calls": [...]}``. XML is read only with :mod:`defusedxml` and with
    DTDs forbidden, so entity bombs and external entities are refused. Raises
    :class:`ExotelReplyError` for anything it cannot read into a dict.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ExotelReplyError(f"reply body is {type(body).__name__}, not bytes")
    data = bytes(body)
    if len(data) > MAX_REPLY_BYTES:
        raise ExotelReplyError(f"reply too large ({len(data)} bytes)")
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    ctype = (content_type or "").lower()
    # The body decides; the content type only breaks a tie (an empty or odd first byte).
    if head in (b"{", b"["):
        return _parse_json(data)
    if head == b"<":
        return _parse_xml(data)
    if "json" in ctype:
        return _parse_json(data)
    if "xml" in ctype:
        return _parse_xml(data)
    raise ExotelReplyError("reply is neither JSON nor XML" if data.strip() else "empty reply")


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
        try:
            value = json.loads(text)
        except ValueError:
            if "\u00a0" not in text:
                raise
            # Exotel's documentation pages render the indentation of their sample replies as
            # no-break spaces, which JSON does not accept as whitespace. Tolerate that copy.
            value = json.loads(text.replace("\u00a0", " "))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ExotelReplyError(f"unreadable JSON reply ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ExotelReplyError(f"JSON reply is a {type(value).__name__}, not an object")
    return value


def _parse_xml(data: bytes) -> dict[str, Any]:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise ExotelReplyError(f"XML reply refused ({type(exc).__name__})") from None
    except (ParseError, ValueError, RecursionError) as exc:
        raise ExotelReplyError(f"unreadable XML reply ({type(exc).__name__})") from None
    try:
        tag = _local(root.tag)
        value = _element_value(root)
    except RecursionError:
        raise ExotelReplyError("XML reply nested too deeply") from None
    if tag == "TwilioResponse":
        if not isinstance(value, dict):
            raise ExotelReplyError("empty TwilioResponse")
        return value
    return {tag: value}


def _local(tag: Any) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1] if text.startswith("{") else text


def _element_value(element: Element) -> Any:
    """A leaf is its stripped text (None when empty, like JSON's null); a parent a dict.
    A tag repeated under one parent becomes a list."""
    children = list(element)
    if not children:
        text = (element.text or "").strip()
        return text or None
    out: dict[str, Any] = {}
    repeated: set[str] = set()
    for child in children:
        key = _local(child.tag)
        value = _element_value(child)
        if key in repeated:
            out[key].append(value)
        elif key in out:
            out[key] = [out[key], value]
            repeated.add(key)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# Retry-After


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date.

    None for a missing or unreadable value; a date in the past gives 0. Capped at one day.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (OverflowError, OSError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    try:
        for key, value in headers.items():
            if str(key).lower() == wanted:
                return str(value)
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------------------------
# classify_response


def classify_response(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Turn one Calls/connect reply into exactly one outcome. Pure; never raises."""
    try:
        return _classify_response(status, headers, body)
    except Exception as exc:  # a bug here must not lose a call: Unknown is never redialled
        return Unknown(
            reason=f"HTTP {status!r}: reply could not be classified ({type(exc).__name__})"
        )


def _classify_response(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    if not isinstance(status, int) or isinstance(status, bool):
        return Unknown(reason=f"no usable HTTP status ({type(status).__name__})")
    ctype = header_value(headers, "Content-Type")
    try:
        reply: dict[str, Any] | None = parse_reply(body, ctype)
    except ExotelReplyError:
        reply = None

    if 200 <= status < 300:
        sid, call_status = _sid_of(reply)
        if sid is None:
            return Unknown(reason=f"HTTP {status} without a readable Call Sid")
        return Originated(sid=sid, status=call_status)

    message = error_message(reply)
    if 400 <= status < 500 and message and _CONCURRENCY.search(message):
        # Refused at the account's cap on concurrent calls: not placed, whatever the code.
        # A 429 stays rate limited as well: its message is a reading, and a rate 429 misread
        # as the cap's must still push every worker back.
        return NotPlaced(
            reason=message,
            http_status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After")),
            rate_limited=status == 429,
            at_capacity=True,
        )
    if status == 429:
        return NotPlaced(
            reason=message or "HTTP 429: rate limited",
            http_status=429,
            retry_after=parse_retry_after(header_value(headers, "Retry-After")),
            rate_limited=True,
        )
    if status in _NOT_PLACED_ONLY_FROM_EXOTEL and not _is_rest_exception(reply):
        return Unknown(
            reason=f"HTTP {status} without Exotel's RestException (a gateway timed out?): "
            "the call may have been placed"
        )
    if status in _NOT_PLACED_5XX:
        return NotPlaced(
            reason=message or f"HTTP {status}: Exotel could not originate the call",
            http_status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After")),
        )
    if 400 <= status < 500:
        return Rejected(
            reason=message or f"HTTP {status}: request refused (unreadable reply)",
            http_status=status,
            account_level=_account_level(status, message),
        )
    if status in (502, 503):
        return Unknown(reason=f"HTTP {status} from a gateway: the call may have been placed")
    return Unknown(reason=f"HTTP {status}: not a documented Calls/connect reply")


def _is_rest_exception(reply: dict[str, Any] | None) -> bool:
    """The reply is Exotel's error shape: ``{"RestException": {...}}`` (JSON or XML)."""
    return reply is not None and isinstance(reply.get("RestException"), dict)


def _sid_of(reply: dict[str, Any] | None) -> tuple[str | None, str]:
    if reply is None:
        return None, ""
    call = reply.get("Call")
    if not isinstance(call, dict):
        return None, ""
    sid = call.get("Sid")
    if not isinstance(sid, str):
        return None, ""
    sid = sid.strip()
    if not _SID_RE.fullmatch(sid):
        return None, ""
    status = call.get("Status")
    return sid, status.strip() if isinstance(status, str) else ""


def error_message(reply: dict[str, Any] | None) -> str:
    """RestException.Message (or the v2 ``error_data`` shape), cleaned; "" when none."""
    if reply is None:
        return ""
    candidates: list[Any] = []
    rest = reply.get("RestException")
    if isinstance(rest, dict):
        candidates += [rest.get("Message"), rest.get("message")]
    candidates += [reply.get("Message"), reply.get("message")]
    response = reply.get("response")
    if isinstance(response, dict) and isinstance(response.get("error_data"), dict):
        err = response["error_data"]
        candidates += [err.get("description"), err.get("message")]
    for candidate in candidates:
        if isinstance(candidate, str | int | float) and not isinstance(candidate, bool):
            text = " ".join(str(candidate).split())
            if text:
                return redact(text)[:_MAX_REASON]
    return ""


def _account_level(status: int, message: str) -> bool:
    """Is this refusal about the account (trip the breaker) rather than this one call?

    401 and 402 always are. A 403 is per-call only when its message is about the number
    (DND/NDNC register, blacklist, not whitelisted), and not about the caller's IP. Any other
    403 (bad permissions, suspended account, KYC, outbound not enabled, an empty or unreadable
    body from a firewall) is treated as account-wide: pausing the account is recoverable,
    failing every call of a campaign one by one is not.
    """
    if status in (401, 402):
        return True
    if status != 403:
        return False
    if _IP_403.search(message):
        return True
    return not _PER_NUMBER_403.search(message)


# --------------------------------------------------------------------------------------------
# classify_exception

# Errors that can only happen before a single byte of the request left this host.
_PRE_SEND_CAUSES: tuple[type[BaseException], ...] = (
    uexc.NewConnectionError,  # includes NameResolutionError (urllib3 2)
    uexc.ConnectTimeoutError,
    ConnectionRefusedError,  # ECONNREFUSED only ever comes from connect()
    socket.gaierror,
    ssl.SSLCertVerificationError,  # the TLS handshake, before the request
)
# Raised by requests while preparing the request, before any connection is opened. (Redirects
# are never followed for the POST, so these cannot come from a redirect after sending.)
_PRE_SEND_REQUESTS: tuple[type[BaseException], ...] = (
    rexc.ConnectTimeout,
    rexc.MissingSchema,
    rexc.InvalidSchema,
    rexc.InvalidURL,
    rexc.InvalidHeader,
    rexc.URLRequired,
)


def cause_chain(exc: BaseException, limit: int = 32) -> list[BaseException]:
    """``exc`` and every exception reachable by __cause__, __context__, ``.reason`` (urllib3's
    MaxRetryError) and exception arguments (requests wraps with ``ConnectionError(e)``)."""
    seen: set[int] = set()
    out: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(out) < limit:
        cur = stack.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        nxt: list[Any] = [cur.__cause__, cur.__context__, getattr(cur, "reason", None)]
        args = getattr(cur, "args", ())
        if isinstance(args, tuple):
            nxt.extend(args)
        stack.extend(e for e in nxt if isinstance(e, BaseException))
    return out


def describe_exception(chain: list[BaseException]) -> str:
    """Exception type names and the OS error text; never ``str(exc)``, which may hold URLs."""
    names = []
    for item in chain:
        name = type(item).__name__
        if name not in names:
            names.append(name)
    detail = ""
    for item in chain:
        if isinstance(item, OSError) and item.strerror:
            detail = f" [{item.strerror}]"
            break
    return " <- ".join(names[:4]) + detail


def classify_exception(exc: BaseException) -> Outcome:
    """Turn a transport error from the POST into an outcome. Pure; never raises.

    NotPlaced only when the error proves nothing was sent (no connection could be made).
    Everything else (read timeout, reset or remote close after the connection was up,
    broken chunked body, anything unrecognised) is Unknown: the request may have reached
    Exotel, which may have originated the call.
    """
    try:
        chain = cause_chain(exc)
        what = describe_exception(chain)
        if isinstance(exc, rexc.ReadTimeout):
            return Unknown(reason=f"read timeout after sending: {what}")
        if isinstance(exc, _PRE_SEND_REQUESTS) or any(
            isinstance(item, _PRE_SEND_CAUSES) for item in chain
        ):
            return NotPlaced(reason=f"no connection, nothing sent: {what}")
        return Unknown(reason=f"transport error, the request may have been sent: {what}")
    except Exception:
        return Unknown(reason="transport error (unclassifiable)")
