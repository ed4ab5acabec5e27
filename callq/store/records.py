"""What a call is: its states, its record, and what every ledger script answers.

This module is the one owner of the call record. The record is one Redis hash
(``Keys.call``); :class:`CallRecord` reads it (:meth:`CallRecord.from_hash`), naming each
field once. The Lua transitions write the same field names (``callq/store/lua``); their
answers come back as the enums and small classes below, never as bare numbers or
``"code:state"`` strings.

States::

    queued -> dialing -> originated                      (final for the queue)
    dialing -> retrying -> dialing ...  -> failed        (not placed; rejected)
    dialing -> in_doubt -> originated | retrying | failed
    originated -> retrying                               (a redial on busy/no-answer/failed)
    queued | retrying -> cancelled                       (campaign cancelled)
    queued | retrying -> expired                         (campaign's end_at passed)
    queued | retrying -> skipped                         (over the per-number cap until
                                                          past the campaign's end_at)

A waiting call (`queued`, `retrying`) may also be *parked*: held in its campaign's parked set
(the campaign paused, outside its calling window, its account's breaker open, or no permit
free within the limiter's horizon) until the feed hands it out. Its state does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Final


class State(StrEnum):
    QUEUED = "queued"
    DIALING = "dialing"
    RETRYING = "retrying"
    IN_DOUBT = "in_doubt"
    ORIGINATED = "originated"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SKIPPED = "skipped"


STATES: Final = tuple(State)
#: Waiting for an attempt: these may be parked, cancelled or expired.
WAITING: Final = frozenset({State.QUEUED, State.RETRYING})
#: Nothing more happens to the call (but a redial on its call_status, from `originated`).
FINAL: Final = frozenset(
    {State.ORIGINATED, State.FAILED, State.CANCELLED, State.EXPIRED, State.SKIPPED}
)
#: A campaign is settled when none of its calls is in one of these.
UNSETTLED: Final = frozenset({State.QUEUED, State.DIALING, State.RETRYING, State.IN_DOUBT})


class CallStatus(StrEnum):
    """What Exotel's terminal StatusCallback says of a placed call."""

    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"


CALL_STATUSES: Final = tuple(CallStatus)

#: The fields of a call's request, as ``CallRequest.to_record`` writes them at enqueue.
REQUEST_FIELDS: Final = (
    "from",
    "to",
    "url",
    "caller_id",
    "custom_field",
    "time_limit",
    "time_out",
    "extra",
    "line",
)


def _int(raw: str | None) -> int | None:
    return int(raw) if raw not in (None, "") else None


@dataclass(frozen=True)
class CallRecord:
    """One call's record (the ``call`` hash), each field named once.

    Times are epoch milliseconds on the Redis clock. ``claim`` is the claim token of the
    call's current attempt, fresh for every claim; the scripts that may end an attempt
    (``mark_sent``, ``release``, ``finish``) must present it, so it is also the attempt's
    fence. ``sent`` is the claim token the sent mark was set under ("0" before any).
    """

    request_id: str
    campaign: str
    state: State
    attempts: int = 0
    created_at: int | None = None
    updated_at: int | None = None
    # The request, as the row gave it.
    from_: str = ""
    to: str = ""
    url: str = ""
    caller_id: str = ""
    custom_field: str = ""
    time_limit: int | None = None
    time_out: int | None = None
    extra: str = ""
    line: int | None = None
    zone: str = ""  # the callee's time zone, '' for none (recorded at enqueue)
    # The current attempt.
    claim: str = ""
    claimed_from: str = ""
    worker: str = ""
    lease_until: int | None = None
    sent: str = "0"
    sent_at: int | None = None
    account: str = ""
    parties: str = ""
    next_at: int | None = None
    parked: str = ""
    # What came of it.
    sid: str = ""
    call_status: str = ""
    call_status_source: str = ""  # "callback", or "backfill" (Call Details by Sid)
    callback_sid: str = ""
    callback_at: int | None = None
    #: A callback for a Sid that is not the call's (was it placed twice?), and its status.
    callback_sid_mismatch: str = ""
    callback_sid_mismatch_status: str = ""
    last_error: str = ""
    in_doubt_since: int | None = None
    originated_at: int | None = None
    # Redials on the call's outcome.
    prev_sids: tuple[str, ...] = ()
    redials_done: int = 0
    redial_base: int = 0
    #: Everything else on the record: the callback's details (times, durations, legs ...).
    details: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> CallRecord:
        """The record of a ``call`` hash as HGETALL returns it (it must have a state)."""
        known = {
            "request_id", "campaign", "state", "attempts", "created_at", "updated_at",
            *REQUEST_FIELDS, "claim", "claimed_from", "worker", "lease_until", "sent",
            "sent_at", "account", "parties", "next_at", "parked", "sid", "call_status",
            "call_status_source", "callback_sid", "callback_at", "callback_sid_mismatch",
            "callback_sid_mismatch_status", "last_error", "in_doubt_since", "originated_at",
            "prev_sids", "redials_done", "redial_base", "zone",
        }  # fmt: skip
        return cls(
            request_id=h.get("request_id", ""),
            campaign=h.get("campaign", ""),
            state=State(h["state"]),
            attempts=int(h.get("attempts") or 0),
            created_at=_int(h.get("created_at")),
            updated_at=_int(h.get("updated_at")),
            from_=h.get("from", ""),
            to=h.get("to", ""),
            url=h.get("url", ""),
            caller_id=h.get("caller_id", ""),
            custom_field=h.get("custom_field", ""),
            time_limit=_int(h.get("time_limit")),
            time_out=_int(h.get("time_out")),
            extra=h.get("extra", ""),
            line=_int(h.get("line")),
            zone=h.get("zone", ""),
            claim=h.get("claim", ""),
            claimed_from=h.get("claimed_from", ""),
            worker=h.get("worker", ""),
            lease_until=_int(h.get("lease_until")),
            sent=h.get("sent", "0"),
            sent_at=_int(h.get("sent_at")),
            account=h.get("account", ""),
            parties=h.get("parties", ""),
            next_at=_int(h.get("next_at")),
            parked=h.get("parked", ""),
            sid=h.get("sid", ""),
            call_status=h.get("call_status", ""),
            call_status_source=h.get("call_status_source", ""),
            callback_sid=h.get("callback_sid", ""),
            callback_at=_int(h.get("callback_at")),
            callback_sid_mismatch=h.get("callback_sid_mismatch", ""),
            callback_sid_mismatch_status=h.get("callback_sid_mismatch_status", ""),
            last_error=h.get("last_error", ""),
            in_doubt_since=_int(h.get("in_doubt_since")),
            originated_at=_int(h.get("originated_at")),
            prev_sids=tuple((h.get("prev_sids") or "").split()),
            redials_done=int(h.get("redials_done") or 0),
            redial_base=int(h.get("redial_base") or 0),
            details={k: v for k, v in h.items() if k not in known},
        )

    def request(self) -> dict[str, str]:
        """The request's fields as the hash holds them (``from``, ``to``, ``url`` ...)."""
        return {
            "from": self.from_,
            "to": self.to,
            "url": self.url,
            "caller_id": self.caller_id,
            "custom_field": self.custom_field,
            "time_limit": "" if self.time_limit is None else str(self.time_limit),
            "time_out": "" if self.time_out is None else str(self.time_out),
            "extra": self.extra,
            "line": "" if self.line is None else str(self.line),
        }

    @property
    def is_sent(self) -> bool:
        """The current attempt passed its sent mark (its request may have gone out)."""
        return self.sent not in ("", "0") and self.sent == self.claim

    @property
    def sent_seconds(self) -> float | None:
        """``sent_at`` (or, for a call judged in doubt by the sweeper, ``in_doubt_since``)
        as epoch seconds."""
        at = self.sent_at or self.in_doubt_since
        return at / 1000 if at else None


# --- what the scripts answer ---------------------------------------------------------------


class Enqueued(IntEnum):
    """``enqueue.lua``, per record."""

    EXISTS = 0  # in another state: nothing written
    CREATED = 1  # written, and parked (or pushed, a priority call)
    REQUEUED = 2  # it existed and still waits: parked (or pushed) again
    REFUSED = 3  # the campaign was cancelled: nothing written


class ClaimCode(StrEnum):
    """``claim.lua``."""

    CLAIMED = "claimed"  # attempt n is ours
    PARKED = "parked"  # held in the campaign's parked set (paused or waiting)
    CANCELLED = "cancelled"  # ended here: the campaign is cancelled
    EXPIRED = "expired"  # ended here: past the campaign's end_at
    HELD = "held"  # over the per-number cap: held until the count lapses (its deadline)
    SKIPPED = "skipped"  # ended here: over the per-number cap until past end_at
    EARLY = "early"  # a retry's message came before its next_at (a stray copy)
    SKIP = "skip"  # nothing to do: already dialing, in doubt, or final
    MISSING = "missing"  # no such record


class SendMark(StrEnum):
    """``mark_sent.lua``: only ``SENT`` may send (it alone is true)."""

    SENT = "sent"
    LOST = "lost"  # the attempt is no longer ours (its lease ran out, or another state)
    PAUSED = "paused"  # the campaign was paused since the claim
    CANCELLED = "cancelled"  # ... or cancelled
    # Marked, but no replica acknowledged the mark in time (WAIT): a failover now could lose
    # it, so the caller must not send; it releases the attempt unsent.
    UNREPLICATED = "unreplicated"
    # Marked, but on a server the Sentinels no longer name as the master (an old master that
    # came back after a failover): the mark is lost at its demotion. Released unsent too.
    NOT_MASTER = "not_master"

    def __bool__(self) -> bool:
        return self is SendMark.SENT


class SweepVerdict(StrEnum):
    """``sweep.lua``: the sweeper's verdict on a call whose deadline passed."""

    REQUEUE = "requeue"  # publish it again (a copy is harmless: the claim is atomic)
    IN_DOUBT = "in_doubt"  # its worker was lost after its request was sent
    RECONCILE = "reconcile"  # in doubt, its check is due: publish reconcile
    ALIVE = "alive"  # its lease was renewed
    NOT_DUE = "not_due"
    GONE = "gone"


class CallbackResult(StrEnum):
    """``callback.lua`` (and the receiver's answer)."""

    MATCHED = "matched"
    DUPLICATE = "duplicate"  # changed nothing
    PENDING = "pending"  # its call is not known yet: kept for later
    MISSING = "missing"  # no such record (callback.lua only)


@dataclass(frozen=True)
class Unparked:
    """``unpark.lua``: calls handed to the queue, calls still parked; ``paused``: nothing
    moved (the campaign is paused)."""

    moved: int
    left: int
    paused: bool = False

    @classmethod
    def from_reply(cls, moved: int, left: int) -> Unparked:
        if moved < 0:
            return cls(0, 0, paused=True)
        return cls(moved, left)
