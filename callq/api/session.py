"""The campaign page's browser sessions: an HMAC-signed cookie after a token login, and the
CSRF token of the page's POSTs.

A session is ``<issued>.<expires>.<nonce>.<signature>``: two epoch seconds, 16 random bytes
(hex) and the HMAC-SHA256 of the rest under a key derived from the API token that logged in
(``HMAC(token, "callq page session v1")``). The cookie thus never holds a token, and a
token removed from ``API_TOKEN`` ends every session it opened. Every key is tried, each in
constant time, as :func:`callq.api.app.authorized` does for bearer tokens.

The CSRF token is the HMAC of the session's nonce under the same key (another label): the
page carries it in a ``<meta>`` tag and sends it in ``X-CSRF-Token``; a cross-site page can
neither read it nor forge it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["COOKIE", "SESSION_SECONDS", "Session", "open_session", "read_session"]

COOKIE = "callq_session"
#: How long a login lasts (the cookie's Max-Age and the signed expiry).
SESSION_SECONDS = 12 * 3600
_KEY_LABEL = b"callq page session v1"


def _key(token: bytes) -> bytes:
    return hmac.new(token, _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, label: str, data: str) -> str:
    digest = hmac.new(key, f"{label}:{data}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    """A valid session: its cookie value, expiry and the CSRF token of its page's POSTs."""

    cookie: str
    expires: int
    csrf: str

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(
            (given or "").encode("utf-8", "replace"), self.csrf.encode()
        )


def open_session(token: bytes, now: float, seconds: int = SESSION_SECONDS) -> Session:
    """A new session for a browser that logged in with ``token`` (one of the API's)."""
    key = _key(token)
    issued = int(now)
    body = f"{issued}.{issued + seconds}.{secrets.token_hex(16)}"
    nonce = body.rsplit(".", 1)[1]
    return Session(
        cookie=f"{body}.{_mac(key, 'session', body)}",
        expires=issued + seconds,
        csrf=_mac(key, "csrf", nonce),
    )


def read_session(value: str | None, tokens: list[bytes], now: float) -> Session | None:
    """The session of cookie ``value`` when it is signed by one of ``tokens``' keys and has
    not expired; else None (absent, malformed, tampered, expired, or its token removed)."""
    if not value or len(value) > 256:
        return None
    body, _, sig = value.rpartition(".")
    parts = body.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isalnum() for p in parts):
        return None
    issued, expires, nonce = parts
    if not (issued.isdigit() and expires.isdigit()) or not int(issued) <= now < int(expires):
        return None
    found: bytes | None = None
    for token in tokens:  # every key, so the timing tells nothing about which matched
        key = _key(token)
        if hmac.compare_digest(sig.encode("utf-8", "replace"), _mac(key, "session", body).encode()):
            found = key
    if found is None:
        return None
    return Session(cookie=value, expires=int(expires), csrf=_mac(found, "csrf", nonce))
