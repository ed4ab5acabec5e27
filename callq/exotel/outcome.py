"""What one Calls/connect attempt came to. Exactly one of four outcomes.

``NotPlaced`` and ``Unknown`` are different things on purpose: the first may be retried,
the second must never be redialled until it is proven unplaced.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Originated:
    """HTTP 200: Exotel handed the first leg to the operator. ``sid`` is the CallSid."""

    sid: str
    status: str = ""
    kind: str = "originated"


@dataclass(frozen=True)
class NotPlaced:
    """429, 500, 504, or a connect error before any byte was sent: safe to retry.

    ``retry_after`` is the server's hint in seconds (Retry-After), if any.
    ``rate_limited`` is true for a 429, which also pushes the limiter back.
    ``at_capacity`` is true for a refusal at the account's cap on concurrent calls (its
    message names concurrency); the retry waits for the earliest live-call slot to free.
    Such a refusal with status 429 is ``rate_limited`` as well (the message is a reading: it
    may be the rate's), and pushes back like any 429.
    """

    reason: str
    http_status: int | None = None
    retry_after: float | None = None
    rate_limited: bool = False
    at_capacity: bool = False
    kind: str = "not_placed"


@dataclass(frozen=True)
class Rejected:
    """Another 4xx: Exotel refused the request; retrying will not help.

    ``account_level`` is true for auth (401), plan (402) and credential 403 refusals, which
    are about the account, not the call: they trip the breaker instead of failing calls.
    """

    reason: str
    http_status: int
    account_level: bool = False
    kind: str = "rejected"


@dataclass(frozen=True)
class Unknown:
    """A read timeout, or the connection broken after the request was sent: the call may
    have been originated. The call goes ``in_doubt``."""

    reason: str
    kind: str = "unknown"


Outcome = Originated | NotPlaced | Rejected | Unknown
