"""What the simulator remembers of one call, and of one StatusCallback delivery; how Exotel
shows a call (Call Details) and what its StatusCallback carries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from simulator.formats import (
    format_time,
)

__all__ = ["CallRecord", "Decision", "Delivery"]


@dataclass
class Decision:
    """What the HTTP layer must do with one request."""

    status: int
    payload: dict[str, Any]
    #: Seconds to wait before replying (or before resetting).
    delay: float = 0.0
    #: Abort the connection with an RST instead of replying.
    reset: bool = False
    #: A reply that is not Exotel's (body, Content-Type): a proxy's error page.
    raw: tuple[bytes, str] | None = None


@dataclass
class CallRecord:
    """One placed call."""

    seq: int
    sid: str
    account_sid: str
    from_: str
    to: str  # as shown by Exotel: the ExoPhone for a call connected to a flow
    to_param: str | None
    caller_id: str
    url: str | None
    custom_field: str | None
    created_wall: float
    placed_mono: float
    end_mono: float
    end_wall: float
    status: str  # terminal status, shown once the call has ended
    duration: int  # simulated seconds, first leg
    conversation: int  # simulated seconds both legs were talking
    legs: list[dict[str, Any]]
    record: bool
    fault: str | None
    params: dict[str, str] = field(default_factory=dict)
    #: ``outbound-api`` for a Calls/connect call; an added call may be ``inbound`` (the
    #: customer calling an ExoPhone) or another system's.
    direction: str = "outbound-api"
    #: Added with :meth:`SimState.add_call`, not placed through Calls/connect.
    added: bool = False

    def ended(self, now: float) -> bool:
        return now >= self.end_mono

    def recording_url(self) -> str | None:
        if self.record and self.conversation > 0:
            return (
                "https://s3-ap-southeast-1.amazonaws.com/exotelrecordings/"
                f"{self.account_sid}/{self.sid}.mp3"
            )
        return None

    def view(self, now: float, tz: tzinfo, *, as_json: bool, details: bool) -> dict[str, Any]:
        """The ``Call`` object of Exotel's replies, as the call stands at ``now``."""
        created = format_time(self.created_wall, tz)
        ended = self.ended(now)
        uri = (
            f"/v1/Accounts/{self.account_sid}/Calls.json/{self.sid}"
            if as_json
            else f"/v1/Accounts/{self.account_sid}/Calls/{self.sid}"
        )
        price = None
        if ended and self.status == "completed":
            price = f"{0.5 * max(1, math.ceil(self.duration / 60)):.3f}"
        call: dict[str, Any] = {
            "Sid": self.sid,
            "ParentCallSid": None,
            "DateCreated": created,
            "DateUpdated": format_time(self.end_wall, tz) if ended else created,
            "AccountSid": self.account_sid,
            "To": self.to,
            "From": self.from_,
            "PhoneNumberSid": self.caller_id,
            "Status": self.status if ended else "in-progress",
            "StartTime": created,
            "EndTime": format_time(self.end_wall, tz) if ended else None,
            "Duration": str(self.duration) if ended else None,
            "Price": price,
            "Direction": self.direction,
            "AnsweredBy": None,
            "ForwardedFrom": None,
            "CallerName": None,
            "Uri": uri,
            "RecordingUrl": self.recording_url() if ended else None,
        }
        if details:
            legs = self.legs if ended else []
            call["Details"] = {
                "ConversationDuration": self.conversation if ended else 0,
                "Leg1Status": legs[0]["Status"] if legs else None,
                "Leg2Status": legs[1]["Status"] if len(legs) > 1 else None,
                "Legs": [
                    {"Leg": {"Id": i + 1, "OnCallDuration": leg["OnCallDuration"]}}
                    for i, leg in enumerate(legs)
                ],
            }
        return call

    def callback_payload(self, tz: tzinfo, *, terminal: bool) -> dict[str, Any]:
        """The StatusCallback body (seed 002): four fields, or the full terminal event.

        A call connected to a flow (``Url``) gets the four basic fields only, whatever
        StatusCallbackEvents asked for: that is all Exotel documents for flows (EXOTEL.md), so
        such a callback carries no CustomField and must be matched by its CallSid.
        """
        updated = format_time(self.end_wall, tz)
        if not terminal or self.url:
            return {
                "CallSid": self.sid,
                "Status": self.status,
                "RecordingUrl": self.recording_url(),
                "DateUpdated": updated,
            }
        created = format_time(self.created_wall, tz)
        payload: dict[str, Any] = {
            "CallSid": self.sid,
            "EventType": "terminal",
            "DateCreated": created,
            "DateUpdated": updated,
            "Status": self.status,
            "To": self.to,
            "From": self.from_,
            "PhoneNumberSid": self.caller_id,
            "StartTime": created,
            "EndTime": updated,
            "Direction": "outbound-api",
            "RecordingUrl": self.recording_url(),
            "ConversationDuration": self.conversation,
            "Legs": [dict(leg) for leg in self.legs],
        }
        if self.custom_field is not None:
            payload["CustomField"] = self.custom_field
        return payload


@dataclass
class Delivery:
    """One StatusCallback to deliver (a duplicate is a second Delivery of the same payload)."""

    id: int
    generation: int
    call_sid: str
    custom_field: str | None
    url: str
    content_type: str
    payload: dict[str, Any]
    duplicate: bool = False
    late: bool = False
    attempts: int = 0
    state: str = "pending"  # pending | sent | failed
    http_status: int | None = None
    last_error: str | None = None
    #: Every attempt: [wall time, HTTP status or None, error or the start of the reply body].
    tries: list[list[Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_sid": self.call_sid,
            "custom_field": self.custom_field,
            "url": self.url,
            "content_type": self.content_type,
            "duplicate": self.duplicate,
            "late": self.late,
            "attempts": self.attempts,
            "retries": max(0, self.attempts - 1),
            "state": self.state,
            "http_status": self.http_status,
            "last_error": self.last_error,
            # What the receiver could match it by: a flow call's payload has no CustomField.
            "payload_custom_field": self.payload.get("CustomField"),
            "tries": [list(t) for t in self.tries],
        }
