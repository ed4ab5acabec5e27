"""Live-call slots: an account's cap on concurrent calls (``EXOTEL_MAX_LIVE_CALLS``).

Exotel caps the calls live at once per account; a connect-two-numbers call holds 2 slots
(both legs) and a flow call 1, and at the cap a request is refused. A request's rate permit
says nothing about that: a call lives long after its request returned. So a call takes its
slots in the same step as its permit (``lua/limiter_acquire.lua``, :class:`SlotClaim`), and
frees them (``lua/slot_free.lua``, :meth:`LiveSlots.free`) on whichever comes first:

* its terminal StatusCallback, or the call_status backfill finding it ended;
* a not-placed or rejected outcome, or an attempt given back unsent (a fed call stopped at
  its claim: paused, cancelled, expired);
* reconcile settling an in-doubt call (found, ended; or proven unplaced);
* its lease: the origination window + TimeOut + TimeLimit (Exotel's maxima for those unset)
  after its permit's slot (when it is sent, up to a priority call's max wait after the slots
  were taken), or ``EXOTEL_LIVE_CALL_LEASE_SECONDS``; past it the next taker drops
  it, so a lost callback cannot leak a slot for good.

An in-doubt call keeps its slots until it is settled or its lease lapses: an unknown
outcome may be a live call. Freeing is idempotent (members are ``{weight}:{request id}``),
and a redial of the same request takes its slots again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from callq.exotel.params import longest_call
from callq.settings import Settings
from callq.store.keys import Keys
from callq.store.records import CallRecord
from callq.store.scripts import Scripts

log = logging.getLogger("callq.slots")

CONNECT_SLOTS = 2
FLOW_SLOTS = 1


@dataclass(frozen=True)
class SlotClaim:
    """What one call asks of the cap with its permit: its request id, its slots and how long
    they may be held at most (seconds)."""

    request_id: str
    weight: int
    lease: float

    def args(self) -> list[str | int]:
        return [self.request_id, self.weight, max(1, round(self.lease * 1000))]


def weight_of(record: CallRecord) -> int:
    """2 slots for a connect-two-numbers call (both legs), 1 for a flow call (Url)."""
    return FLOW_SLOTS if record.url else CONNECT_SLOTS


def slot_lease(time_out: int | None, time_limit: int | None, settings: Settings) -> float:
    """How long a call's slots may be held at most: until it could have ended (the
    origination window + TimeOut + TimeLimit) plus the feed's lead as slack, or
    ``EXOTEL_LIVE_CALL_LEASE_SECONDS``; counted from the permit's slot (limiter_acquire.lua),
    not from when the slots were taken."""
    if settings.exotel_live_call_lease_seconds is not None:
        return settings.exotel_live_call_lease_seconds
    return (
        settings.feed_lead_seconds
        + settings.exotel_origination_window_seconds
        + longest_call(time_out, time_limit)
    )


def claim_for(record: CallRecord, request_id: str, settings: Settings) -> SlotClaim:
    return SlotClaim(
        request_id, weight_of(record), slot_lease(record.time_out, record.time_limit, settings)
    )


def live_caps(settings: Settings) -> dict[str, int]:
    """Account name -> EXOTEL_MAX_LIVE_CALLS, for the accounts that have a cap."""
    caps = {}
    for name in settings.account_names():
        cap = settings.for_account(name).exotel_max_live_calls
        if cap is not None:
            caps[name] = cap
    return caps


class LiveSlots:
    """Freeing and reading the live-call slots of every account."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts | None = None) -> None:
        self.redis = client
        self.keys = keys
        self.scripts = scripts or Scripts(client)

    def free(self, request_id: str, account: str | None = None) -> int:
        """Free the call's slots (idempotent) and wake its account's feed; the slots freed.
        ``account`` None: read from the call record (set when the request was marked sent);
        a call never sent there holds nothing. A Redis error is logged, not raised: the
        lease frees the slots then."""
        try:
            if account is None:
                raw = self.redis.hget(self.keys.call(request_id), "account")
                if raw is None:
                    return 0
                account = str(raw)
            name = account or "default"
            k = self.keys
            return int(
                self.scripts.slot_free(
                    keys=[k.live_slots(name), k.feeds(), k.nudge()], args=[request_id, name]
                )
            )
        except redis.RedisError as exc:
            log.warning("%s: could not free its live slots (%s); its lease will", request_id, exc)
            return 0

    def free_many(self, request_ids: Iterable[str], account: str) -> int:
        """:meth:`free` for many calls of one account, in one round trip; the slots freed."""
        ids = list(request_ids)
        if not ids:
            return 0
        name = account or "default"
        k = self.keys
        keys = [k.live_slots(name), k.feeds(), k.nudge()]
        try:
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                self.scripts.slot_free(keys=keys, args=[rid, name], client=pipe)
            return sum(int(n) for n in pipe.execute())
        except redis.RedisError as exc:
            log.warning(
                "could not free %d calls' live slots (%s); their leases will", len(ids), exc
            )
            return 0

    def claims(self, request_ids: list[str], settings: Settings) -> list[SlotClaim]:
        """The slot claim of each call (one round trip over their records)."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in request_ids:
            pipe.hmget(self.keys.call(rid), "url", "time_out", "time_limit")
        out = []
        for rid, (url, time_out, time_limit) in zip(request_ids, pipe.execute(), strict=True):
            lease = slot_lease(
                int(time_out) if time_out else None,
                int(time_limit) if time_limit else None,
                settings,
            )
            out.append(SlotClaim(rid, FLOW_SLOTS if url else CONNECT_SLOTS, lease))
        return out

    def free_unless_moved(self, account: str, parked: dict[str, list[str]]) -> int:
        """Free the slots taken for calls that were not moved (``parked``: campaign ->
        request ids; the feed took their slots, then a pause, cancel or expiry stopped their
        move): those still parked, and those cancelled or expired (out of the parked set,
        but never to be claimed). A call another feeder moved keeps them."""
        pipe = self.redis.pipeline(transaction=False)
        pairs = [(c, rid) for c, ids in parked.items() for rid in ids]
        for c, rid in pairs:
            pipe.zscore(self.keys.campaign_parked(c), rid)
            pipe.hget(self.keys.call(rid), "state")
        got = pipe.execute()
        return self.free_many(
            (
                rid
                for (_, rid), score, state in zip(pairs, got[::2], got[1::2], strict=True)
                if score is not None or state in ("cancelled", "expired")
            ),
            account,
        )

    def used(self, account: str) -> int:
        """Slots in use now on ``account`` (members whose lease has not lapsed)."""
        sec, _ = self.redis.time()
        members = self.redis.zrangebyscore(self.keys.live_slots(account), int(sec) * 1000, "+inf")
        return sum(int(str(m).split(":", 1)[0]) for m in members)

    def earliest_release(self, account: str) -> float | None:
        """Seconds until the earliest held slot's lease lapses, or None when none is held."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.keys.live_slots(account), 0, 0, withscores=True)
        pipe.time()
        head, (sec, usec) = pipe.execute()
        if not head:
            return None
        now_ms = int(sec) * 1000 + int(usec) // 1000
        return max(float(head[0][1]) - now_ms, 0.0) / 1000
