"""StatusCallbacks into the ledger: matched by request id (CustomField, else the URL's
``rid``) or by Sid, applied once.

A callback proves that its call was placed, so it also settles the call's state (see
``lua/callback.lua``). The common case, a callback that names our request id, is one round
trip: CustomField first (a connect-two-numbers call's terminal callback carries it), else the
``rid`` the dialer put in the StatusCallback URL's query (a flow call's callback has only the
four basic fields: the URL is all that names its request), with the ``attempt`` number beside
it. Without either, the Sid index is consulted; a callback whose call is still unknown (it
beat the worker's own record of the Sid) is kept for a while under ``pending_callback(sid)``,
and the worker applies it with :meth:`CallbackStore.apply_pending` as soon as it records that
Sid.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import redis

from callq.ids import campaign_of
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.records import CALL_STATUSES
from callq.store.scripts import Scripts
from callq.store.slots import LiveSlots

__all__ = ["RECORD_FIELDS", "Applied", "CallbackEvent", "CallbackStore", "Result"]

log = logging.getLogger("callq.callbacks")

Result = Literal["matched", "duplicate", "pending"]

#: Event field -> the record fields it is stored under. Phone numbers (To, From) are not
#: stored from a callback: the record already holds them.
RECORD_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "DateCreated": ("date_created",),
    "DateUpdated": ("date_updated",),
    "StartTime": ("start_time",),
    "EndTime": ("end_time",),
    "ConversationDuration": ("conversation_duration", "duration"),
    "RecordingUrl": ("recording_url",),
    "Direction": ("direction",),
    "EventType": ("event_type",),
    "legs": ("legs",),
    # Not an Exotel field (the receiver keeps only known ones): set by the backfill.
    "StatusSource": ("call_status_source",),
}


@dataclass(frozen=True)
class CallbackEvent:
    """One StatusCallback, already parsed. ``fields`` holds flat strings (``legs`` is JSON).
    ``rid`` and ``attempt``: the request id and attempt number the StatusCallback URL's query
    named (:func:`callq.exotel.params.status_callback_url`), None when absent or unreadable."""

    sid: str
    status: str
    custom_field: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    rid: str | None = None
    attempt: int | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "sid": self.sid,
            "status": self.status,
            "custom_field": self.custom_field,
            "fields": self.fields,
        }
        if self.rid is not None:  # absent, a copy reads like one kept before the URL's rid
            data["rid"] = self.rid
            data["attempt"] = self.attempt
        return json.dumps(
            data,
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CallbackEvent:
        """Raises ValueError when ``text`` is not what :meth:`to_json` writes."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        sid, status, custom_field, fields, rid, attempt = (
            data.get("sid"),
            data.get("status"),
            data.get("custom_field"),
            data.get("fields", {}),
            data.get("rid"),
            data.get("attempt"),
        )
        if not isinstance(sid, str) or not isinstance(status, str):
            raise ValueError("sid and status must be strings")
        if custom_field is not None and not isinstance(custom_field, str):
            raise ValueError("custom_field must be a string or null")
        if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
        ):
            raise ValueError("fields must map strings to strings")
        if rid is not None and not isinstance(rid, str):
            raise ValueError("rid must be a string or null")
        if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
            raise ValueError("attempt must be an integer or null")
        return cls(
            sid=sid,
            status=status,
            custom_field=custom_field,
            fields=fields,
            rid=rid,
            attempt=attempt,
        )

    def record_args(self) -> list[str]:
        """``field, value, ...`` for the call record (empty values are not written).
        ``call_status_source`` says where the status came from: ``callback`` unless the
        event says otherwise (the backfill's say ``backfill``)."""
        args: list[str] = []
        fields = {"StatusSource": "callback", **self.fields}
        for name, targets in RECORD_FIELDS.items():
            value = fields.get(name, "")
            if value:
                for target in targets:
                    args.append(target)
                    args.append(value)
        return args


@dataclass(frozen=True)
class Applied:
    """What :meth:`CallbackStore.apply_event` did. ``request_id`` is None when pending."""

    result: Result
    request_id: str | None = None
    previous_state: str = ""
    previous_status: str = ""
    sid_mismatch: bool = False
    redialled: bool = False  # the campaign redials on this outcome: the call is `retrying`
    #: How the call was found: "custom_field", "url" (the URL's rid), "sid"; "" when pending.
    matched_by: str = ""
    #: The callback is an earlier attempt's than the one in flight (callback.lua): kept apart
    #: like a Sid mismatch, the call not settled by it.
    stale_attempt: bool = False
    #: A ``completed`` callback of an attempt of the dial before a redial, applied while no
    #: redial attempt had been sent (callback.lua): the person was reached, the call settled
    #: by it and the waiting (or claimed, unsent) redial dropped.
    redial_dropped: bool = False


def _request_id(custom_field: str | None) -> str | None:
    if not custom_field:
        return None
    try:
        campaign_of(custom_field)
    except ValueError:
        return None
    return custom_field


class CallbackStore:
    """Applies StatusCallbacks to the ledger. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        pending_ttl: float = 86400,
        events: EventFlags | None = None,
        capped: Collection[str] | None = None,
        known: Collection[str] | None = None,
    ) -> None:
        """``capped``: the accounts with a live-call cap (callq.store.slots.live_caps), whose
        slots a terminal callback frees; None (not known here) frees on every one.
        ``known``: the accounts ``capped`` speaks for (Settings.account_names); a call of
        any other account (EXOTEL_ACCOUNTS not given here: its cap unknown) is freed too."""
        if not pending_ttl > 0:
            raise ValueError("pending_ttl must be > 0 seconds")
        self.redis = client
        self.keys = keys
        self.events = events or EventFlags()  # a final callback's event (callq.store.events)
        self.pending_ttl = pending_ttl
        self.scripts = Scripts(client)
        self.slots = LiveSlots(client, keys, self.scripts)
        self.capped = None if capped is None else frozenset(capped)
        self.known = None if known is None else frozenset(known)

    def _may_hold_slots(self, account: str) -> bool:
        """Whether a call of ``account`` may hold live-call slots: its account is capped, or
        not one these settings know (its cap is unknown here)."""
        if self.capped is None or account in self.capped:
            return True
        return self.known is not None and account not in self.known

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.pending_ttl * 1000))

    def apply(self, ev: CallbackEvent) -> Result:
        """Record ``ev``: "matched", "duplicate" (nothing changed) or "pending" (kept)."""
        return self.apply_event(ev).result

    def apply_event(self, ev: CallbackEvent) -> Applied:
        """:meth:`apply`, telling also which call it matched and what it was before.

        One round trip when the CustomField names an existing call; otherwise a look-up by
        Sid (which also stores the callback when the Sid is unknown), then the update.
        """
        by_field = _request_id(ev.custom_field)
        by_url = _request_id(ev.rid)
        if by_field is not None and by_url is not None and by_field != by_url:
            # Both are ours, written into the same POST: they cannot differ unless something
            # between us and Exotel mixed requests up. CustomField stays the first source (it
            # is what every earlier release matched by); the URL's is tried if that call is
            # gone. Its attempt number belongs to the URL's request only.
            log.warning(
                "callback sid %s: CustomField %s and the URL's rid %s differ; matching by "
                "CustomField first",
                ev.sid,
                by_field,
                by_url,
            )
        tried: list[str] = []
        for rid, source in ((by_field, "custom_field"), (by_url, "url")):
            if rid is None or rid in tried:
                continue
            tried.append(rid)
            attempt = ev.attempt if rid == by_url else None
            applied = self._run(rid, ev, attempt=attempt, matched_by=source)
            if applied is not None:
                return applied
        k = self.keys
        found = cast(
            str,
            self.scripts.callback_orphan(
                keys=[k.sids(), k.pending_callback(ev.sid)],
                args=[ev.sid, ev.to_json(), self._ttl_ms],
            ),
        )
        if found:
            applied = self._run(found, ev, matched_by="sid") if found not in tried else None
            if applied is not None:
                return applied
            # The index names a record that is gone: keep the callback like an unknown one.
            self.redis.set(k.pending_callback(ev.sid), ev.to_json(), px=self._ttl_ms)
        return Applied("pending")

    def apply_pending(self, sid: str) -> str | None:
        """Apply the callback kept for ``sid``, now that the Sid is recorded, and delete it.

        Returns the call status it recorded, or None when nothing was pending (or the Sid is
        still unknown, in which case the callback stays).
        """
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(k.pending_callback(sid))
        pipe.hget(k.sids(), sid)
        raw, rid = cast(list[str | None], pipe.execute())
        if raw is None or rid is None:
            return None
        try:
            ev = CallbackEvent.from_json(raw)
        except ValueError:
            log.warning("dropping an unreadable pending callback for sid %s", sid)
            self.redis.delete(k.pending_callback(sid))
            return None
        if ev.sid != sid:
            ev = CallbackEvent(sid, ev.status, ev.custom_field, ev.fields, ev.rid, ev.attempt)
        # The worker recorded this Sid for ``rid``: the attempt the URL named is only its
        # own when the URL named this request.
        attempt = ev.attempt if ev.rid == rid else None
        applied = self._run(rid, ev, attempt=attempt, matched_by="sid")
        return None if applied is None else ev.status

    def apply_kept(self, request_id: str) -> Applied | None:
        """Apply the earlier attempt's callback kept apart on ``request_id`` while a later
        attempt was live, now that the later one came back unplaced (finish.lua refused to
        retry or fail it: ``Finish.placed_earlier``). It settles the call with its Sid and
        status (counters, redial on outcome, live-call slots), like any callback. None when
        there is none to apply."""
        sid, status = self.redis.hmget(
            self.keys.call(request_id), "callback_sid_mismatch", "callback_sid_mismatch_status"
        )
        if not sid or not status:
            return None
        ev = CallbackEvent(sid=str(sid), status=str(status))
        log.warning(
            "%s: its live attempt came back unplaced, but attempt %s's callback (sid %s) proves "
            "the call was placed: settled by it, not dialled again",
            request_id,
            self.redis.hget(self.keys.call(request_id), "callback_sid_mismatch_attempt") or "?",
            ev.sid,
        )
        return self._run(request_id, ev, matched_by="kept")

    def _run(
        self,
        request_id: str,
        ev: CallbackEvent,
        *,
        attempt: int | None = None,
        matched_by: str = "",
    ) -> Applied | None:
        """Run callback.lua for one call; None when there is no such record. ``attempt``:
        the attempt number the callback's URL named for this call, if any."""
        try:
            campaign = campaign_of(request_id)
        except ValueError:
            return None
        k = self.keys
        raw = self.scripts.callback(
            keys=[
                k.call(request_id),
                k.campaign_counts(campaign),
                k.campaign_call_status(campaign),
                k.sids(),
                k.deadlines(),
                k.pending_callback(ev.sid),
                k.campaign_meta(campaign),
                k.attempts(request_id),
                k.campaign_parked(campaign),
                k.unresolved(),
                k.awaiting_status(),
                k.events(),
                k.campaign_events(campaign),
            ],
            args=[
                request_id,
                ev.sid,
                ev.status,
                "1" if ev.status in CALL_STATUSES else "",
                "" if attempt is None else str(attempt),
                *ev.record_args(),
                # The events flag goes last, making the count even (see callback.lua).
                *([flag] if (flag := self.events.arg()) else []),
            ],
        )
        code, previous_state, mismatch, previous_status, redialled = raw[:5]
        if code == "missing":
            return None
        stale = len(raw) > 6 and str(raw[6]) != ""
        dropped = len(raw) > 7 and str(raw[7]) == "1"
        if code == "matched" and not int(mismatch) and ev.status in CALL_STATUSES:
            # The call has ended: its live-call slots are free (EXOTEL_MAX_LIVE_CALLS). The
            # script gave its account: one round trip more per terminal callback of a capped
            # account, none for an account without a cap.
            account = str(raw[5]) if len(raw) > 5 else ""
            if self._may_hold_slots(account or "default"):
                self.slots.free(request_id, account or None)
        if stale and code == "matched" and attempt is not None and attempt >= int(raw[6]):
            # Stale though no later attempt was sent: an attempt of the dial before a redial.
            log.warning(
                "callback sid %s for %s is attempt %s's, of the dial before the call's redial; "
                "kept as callback_sid_mismatch, the redial not settled by it",
                ev.sid,
                request_id,
                attempt,
            )
        elif stale and code == "matched":
            log.warning(
                "callback sid %s for %s is attempt %s's, but attempt %s was sent since; kept "
                "as callback_sid_mismatch, the call not settled by it (was attempt %s placed "
                "after all?)",
                ev.sid,
                request_id,
                attempt,
                raw[6],
                attempt,
            )
        elif dropped and code == "matched":
            log.warning(
                "callback sid %s for %s is attempt %s's, of the dial before the call's redial, "
                "and completed: the call is settled by it and its redial, not yet sent, dropped",
                ev.sid,
                request_id,
                attempt,
            )
        elif int(mismatch):
            log.warning(
                "callback sid %s for %s differs from the recorded sid; kept as "
                "callback_sid_mismatch (was the call placed twice?)",
                ev.sid,
                request_id,
            )
        return Applied(
            result=cast(Result, code),
            request_id=request_id,
            previous_state=str(previous_state),
            previous_status=str(previous_status),
            sid_mismatch=bool(int(mismatch)),
            redialled=bool(int(redialled)),
            matched_by=matched_by,
            stale_attempt=stale,
            redial_dropped=dropped,
        )
