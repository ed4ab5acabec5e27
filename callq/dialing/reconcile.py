"""Settle an in-doubt call without ever dialling it twice.

A call goes ``in_doubt`` when its request may have reached Exotel but no answer came back.
It is settled by, in order:

1. its terminal StatusCallback (matched by our request id in CustomField, or for a flow
   call, whose callback has none, by the ``rid`` in its StatusCallback URL; see
   :mod:`callq.store.callbacks`), which moves it to ``originated`` with its Sid at any time;
2. a Call Details search (``Calls.json`` by From and a DateCreated window), through the same
   global limiter as Calls/connect. A candidate is an ``outbound-api`` call with the request's
   parties (:mod:`callq.parties`) created in its window, whose Sid no attempt has recorded.
   The decision is joint over the unresolved index (every request with the same parties in
   doubt or dialling past its sent mark): a candidate another of them could own settles none
   of them, and keeps them all from being proven unplaced, until one is settled otherwise
   (its callback, a late reply, a call only it could own); when all are past their proof,
   they are left ``ambiguous`` for a person. One candidate only this request could own ->
   ``originated`` with that Sid, and a callback kept for that Sid (a flow call's has no
   CustomField) is applied at once;
3. "not found" proves the call unplaced only once it could have ended: sent_at +
   EXOTEL_ORIGINATION_WINDOW_SECONDS + TimeOut + TimeLimit (Exotel lists only ended calls).
   Then the call goes back to ``retrying`` (or ``failed`` when its attempts are used up, or
   when IN_DOUBT_POLICY=fail). Until then it stays ``in_doubt`` and is looked at again later.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from callq.dialing.limiter import Limiter
from callq.dialing.retry import RetryPolicy
from callq.errors import ExotelReplyError, LimiterUnavailable
from callq.exotel.client import ExotelClient, ExotelStatusError
from callq.exotel.params import longest_call
from callq.exotel.parties import parties, record_parties
from callq.settings import Settings
from callq.store.callbacks import CallbackStore
from callq.store.ledger import Finish, Ledger
from callq.store.records import CallRecord, State

log = logging.getLogger("callq.reconcile")

SEARCH_MARGIN = 120.0  # seconds either side of the window: clock skew, zone mistakes


@dataclass(frozen=True)
class Verdict:
    """What reconcile decided (``kind``: found, not_yet, unplaced, failed, shared,
    ambiguous, search_failed, skip, not_recorded), with a detail for some. ``redial``:
    publish place_call now."""

    kind: str
    detail: str = ""
    redial: bool = False

    @property
    def result(self) -> str:
        """``kind`` or ``kind:detail``: the task's result, as Flower shows it."""
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


def proof_seconds(record: CallRecord, settings: Settings) -> float:
    """How long after sending a call could still be going on (so absent from Call Details)."""
    return settings.exotel_origination_window_seconds + longest_call(
        record.time_out, record.time_limit
    )


def exotel_instants(text: Any, zone: str) -> tuple[float, ...]:
    """The epoch seconds an Exotel time (plain ``YYYY-MM-DD HH:MM:SS`` in ``zone``) may
    stand for: one, or two in the hour repeated when daylight saving ends (both folds; also
    a wall time skipped when it starts, read with either offset). A candidate is in its
    window if either is. Empty when ``text`` is not such a time."""
    from zoneinfo import ZoneInfo

    try:
        naive = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return ()
    tz = ZoneInfo(zone)
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    return (first,) if first == second else (first, second)


@dataclass(frozen=True)
class _Rival:
    """Another unresolved request with the same parties: could it own a call found?"""

    request_id: str
    low: float  # its window of creation times
    high: float
    proven_at: float
    in_doubt: bool  # else dialling past its sent mark, its reply still to come
    zone: str

    def could_own(self, call: dict[str, Any]) -> bool:
        created = exotel_instants(call.get("DateCreated"), self.zone)
        return not created or any(self.low <= t <= self.high for t in created)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        limiter: Limiter,
        client: ExotelClient,
        policy: RetryPolicy,
        caller_ids: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.limiter = limiter
        self.client = client
        self.policy = policy
        self.callbacks = CallbackStore(ledger.redis, ledger.keys, events=ledger.events)
        # Every account's default CallerId, for indexing calls sent before the unresolved
        # index (settings here are one account's: EXOTEL_ACCOUNTS is not in them).
        self.caller_ids = dict(caller_ids or {"default": settings.exotel_caller_id})

    def reconcile(self, request_id: str) -> Verdict:
        rec = self.ledger.record(request_id)
        if rec is None or rec.state is not State.IN_DOUBT:
            return Verdict("skip", "missing" if rec is None else rec.state)
        attempt = rec.attempts
        claim = rec.claim
        sent_at = rec.sent_seconds or 0.0
        # The proof starts when the worker's request could last have left (the send lease),
        # not when it was marked sent: a worker may stall between the mark and the POST.
        s = self.settings
        send_window = s.exotel_connect_timeout + s.exotel_read_timeout + s.lease_grace_seconds
        proven_at = sent_at + send_window + proof_seconds(rec, s)
        # "Now" on the Redis clock (sent_at's), taken before the first page is asked for:
        # every page shows what had ended when it arrived, so this is the earliest moment the
        # search can vouch for. A worker clock, or a time taken after a slow search, could
        # already be past the proof while the search saw the call still ringing.
        now = self.ledger.clock()
        try:
            listed = self._search(rec, sent_at)
        except (ExotelReplyError, LimiterUnavailable, TimeoutError, ValueError) as exc:
            if isinstance(exc, ExotelStatusError) and exc.status == 429:
                # A look-up spends the same budget: a 429 pushes everyone back, as a call's does.
                with contextlib.suppress(LimiterUnavailable):
                    self.limiter.push_back(exc.retry_after or s.rate_limited_pushback_seconds)
            log.warning("%s: Call Details search failed (%s); will look again", request_id, exc)
            self._look_again(request_id, claim, now, sent_at, proven_at, f"search failed: {exc}")
            return Verdict("search_failed")
        if not self.ledger.unresolved_complete():
            # A release before the unresolved index may have left calls out of it (an
            # upgrade): index them before deciding, or one could take another's call.
            self.ledger.index_unresolved(self.caller_ids)
        if not rec.parties:
            # Sent before the index by an old worker still running: index it now, so the
            # reconciles of requests with the same numbers see it as a rival.
            self.ledger.index_one(request_id, self._parties(rec))
        # The decision is joint: another unresolved request with the same numbers (in doubt,
        # or dialling past its sent mark) may own a call found here. Only a call no other
        # one could own settles this request; a call others could own settles none of them,
        # and while one lies in this window this request is not proven unplaced either.
        # The rivals are read before the Sid index: a rival settled in between (its callback
        # or late reply) is then in the index, which one script writes as it leaves the
        # rivals; read the other way round, its call would look like nobody else's.
        others = self._others(request_id, rec)
        found = self._candidates(rec, sent_at, listed)
        owners = {id(c): [o.request_id for o in others if o.could_own(c)] for c in found}
        exclusive = [c for c in found if not owners[id(c)]]
        shared = [c for c in found if owners[id(c)]]
        if len(exclusive) == 1:
            sid = str(exclusive[0].get("Sid"))
            fin = self.ledger.finish(
                request_id,
                claim,
                State.ORIGINATED,
                sid=sid,
                # Listed, so it has ended: its callback (or Exotel's retries) gets the margin.
                status_due_in=(
                    s.call_status_backfill_margin_seconds if s.call_status_backfill else None
                ),
                log={
                    "attempt": attempt,
                    "outcome": "reconciled",
                    "sid": sid,
                    "at": round(time.time(), 3),
                },
            )
            self._free_slots(fin, rec)  # listed, so it has ended
            if fin.ok and fin.pending_callback:
                # Its callback came first and waited for the Sid (a flow call's carries no
                # CustomField): apply it now, as the dialer does, or the call would never get
                # its call_status, its counters or its redial.
                self.callbacks.apply_pending(sid)
            return Verdict("found") if fin.ok else Verdict("not_recorded", fin.state)
        if len(exclusive) > 1:
            # Placed, but we cannot tell which Sid is ours: never redial; an operator decides.
            sids = ",".join(str(c.get("Sid")) for c in exclusive[:5])
            self._look_again(
                request_id,
                claim,
                now,
                sent_at,
                proven_at,
                f"ambiguous: {len(exclusive)} candidate calls ({sids})",
                at=now + 4 * proof_seconds(rec, self.settings),
            )
            return Verdict("ambiguous")
        if shared:
            sids = ",".join(str(c.get("Sid")) for c in shared[:5])
            rivals = sorted({rid for c in shared for rid in owners[id(c)]})
            named = ", ".join(rivals[:5])
            involved = [o for o in others if o.request_id in rivals]
            if now >= proven_at and all(o.in_doubt and now >= o.proven_at for o in involved):
                # Every request that could own them is past its proof, and none was settled
                # otherwise (a callback, a call only it could own): a person must decide.
                self._look_again(
                    request_id,
                    claim,
                    now,
                    sent_at,
                    proven_at,
                    f"ambiguous: {len(shared)} candidate call(s) ({sids}) that request(s) "
                    f"with the same numbers could own too ({named})",
                    at=now + 4 * proof_seconds(rec, self.settings),
                )
                return Verdict("ambiguous")
            self._look_again(
                request_id,
                claim,
                now,
                sent_at,
                proven_at,
                f"waiting: call(s) {sids} could be another unresolved request's ({named})",
            )
            return Verdict("shared")
        if now < proven_at:
            self._look_again(request_id, claim, now, sent_at, proven_at, "not found yet")
            return Verdict("not_yet")
        reason = f"proven unplaced (not found {now - sent_at:.0f} s after sending)"
        # A redial starts a fresh count of attempts, as in the dialer.
        counted = attempt - rec.redial_base
        if self.settings.in_doubt_policy == "fail" or self.policy.exhausted(counted):
            why = (
                "IN_DOUBT_POLICY=fail"
                if self.settings.in_doubt_policy == "fail"
                else (f"after {attempt} attempts")
            )
            fin = self.ledger.finish(
                request_id,
                claim,
                State.FAILED,
                error=f"{reason}; {why}",
                log={"attempt": attempt, "outcome": "unplaced"},
            )
            self._free_slots(fin, rec)
            if fin.placed_earlier:
                return self._placed_earlier(request_id)
            return Verdict("failed") if fin.ok else Verdict("not_recorded", fin.state)
        fin = self.ledger.finish(
            request_id,
            claim,
            State.RETRYING,
            error=reason,
            next_in=0.0,
            look_again_in=self.settings.retry_overdue_seconds,
            log={"attempt": attempt, "outcome": "unplaced"},
        )
        self._free_slots(fin, rec)  # proven unplaced: its slots go before it redials
        if fin.placed_earlier:
            return self._placed_earlier(request_id)
        return Verdict("unplaced", redial=fin.ok)

    def _placed_earlier(self, request_id: str) -> Verdict:
        """This attempt is proven unplaced, but an earlier attempt's callback, kept apart
        while this one was live, proves the call was placed (finish.lua refused the retry or
        the failure): the call is settled by that callback, never dialled again."""
        if self.callbacks.apply_kept(request_id) is None:
            return Verdict("not_recorded", "earlier attempt's callback gone")  # looks again
        return Verdict("found", "earlier attempt's callback")

    def _free_slots(self, fin: Finish, rec: CallRecord) -> None:
        """A settled in-doubt call no longer holds its live-call slots (EXOTEL_MAX_LIVE_CALLS):
        it has ended, or it never was placed."""
        if fin.ok:
            self.callbacks.slots.free(rec.request_id, rec.account or "default")

    def _search(self, rec: CallRecord, sent_at: float) -> list[dict[str, Any]]:
        """Every call Call Details lists for the request's numbers in its window."""
        low, high = self._window(sent_at)
        # By From and, for "connect two numbers", by To as well: in a click-to-call campaign
        # From is the agent on every row, and From alone would list all the agent's calls in
        # the window, a page of 100 per permit. (A flow call's To is the ExoPhone.)
        return self.client.search_calls(
            from_=[rec.from_],
            to=[rec.to] if rec.to else None,
            created_from=datetime.fromtimestamp(low, tz=UTC),
            created_to=datetime.fromtimestamp(high, tz=UTC),
            before_request=self._permit,
        )

    def _candidates(
        self, rec: CallRecord, sent_at: float, calls: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The listed calls that could be this request's: not recorded for any attempt,
        outbound-api, its parties, created in its window."""
        s = self.settings
        low, high = self._window(sent_at)
        want = self._parties(rec)
        known = self._known_sids([str(c.get("Sid")) for c in calls])
        # This request's earlier calls (a redial's first attempt): never the one in doubt.
        earlier = set(rec.prev_sids)
        out = []
        for call in calls:
            sid = str(call.get("Sid") or "")
            if not sid or known.get(sid) is not None or sid in earlier:
                # A Sid already recorded belongs to a settled attempt: another request's call
                # to the same numbers, or this request's own earlier attempt.
                continue
            if str(call.get("Direction") or "").lower() != "outbound-api":
                continue  # the customer calling in, or a call another system dialled
            if parties(call.get("From"), call.get("To"), None) != want:
                continue  # for a flow call, To is the ExoPhone it went out from
            created = exotel_instants(call.get("DateCreated"), s.exotel_timezone)
            if created and not any(low <= t <= high for t in created):
                continue
            out.append(call)
        return out

    def _window(self, sent_at: float) -> tuple[float, float]:
        """When a request sent at ``sent_at`` may have been created at Exotel (a margin either
        side for clock skew)."""
        low = sent_at - SEARCH_MARGIN
        return low, sent_at + self.settings.exotel_origination_window_seconds + SEARCH_MARGIN

    def _parties(self, rec: CallRecord) -> str:
        """The parties its request went out with (kept by the sent mark), else the record's."""
        return rec.parties or record_parties(rec.request(), self.settings.exotel_caller_id)

    def _others(self, request_id: str, rec: CallRecord) -> list[_Rival]:
        """The other unresolved requests with this record's parties, on its account."""
        s = self.settings
        rids = [r for r in self.ledger.unresolved(self._parties(rec)) if r != request_id]
        if not rids:
            return []
        pipe = self.ledger.redis.pipeline(transaction=False)
        for rid in rids:
            pipe.hgetall(self.ledger.keys.call(rid))
        account = rec.account or "default"
        send_window = s.exotel_connect_timeout + s.exotel_read_timeout + s.lease_grace_seconds
        out = []
        for rid, raw in zip(rids, pipe.execute(), strict=True):
            if not raw:
                continue  # a stale member (its record deleted by hand)
            other = CallRecord.from_hash(raw)
            in_doubt = other.state is State.IN_DOUBT
            if not (in_doubt or (other.state is State.DIALING and other.is_sent)):
                continue  # settled since it was indexed (or a stale member)
            if (other.account or "default") != account or other.sent_at is None:
                continue
            other_sent = other.sent_at / 1000.0
            low, high = self._window(other_sent)
            proven_at = other_sent + send_window + proof_seconds(other, s)
            out.append(_Rival(rid, low, high, proven_at, in_doubt, s.exotel_timezone))
        return out

    def _permit(self) -> None:
        # A look-up spends the account's budget like a call: one permit per page, each
        # waited for at most a period (then the search fails and is tried again later).
        s = self.settings
        self.limiter.acquire(
            timeout=max(s.rate_limit_max_wait_seconds, s.rate_limit_period_seconds)
        )

    def _known_sids(self, sids: list[str]) -> dict[str, str | None]:
        if not sids:
            return {}
        values = self.ledger.redis.hmget(self.ledger.keys.sids(), sids)
        return {
            sid: (str(v) if v is not None else None) for sid, v in zip(sids, values, strict=True)
        }

    def _look_again(
        self,
        request_id: str,
        claim: str,
        now: float,
        sent_at: float,
        proven_at: float,
        note: str,
        at: float | None = None,
    ) -> None:
        """Stay in doubt; look again after an interval that grows with the time in doubt,
        and never later than the moment "not found" becomes proof. Times are on the Redis
        clock."""
        interval = max(self.settings.reconcile_interval_seconds, now - sent_at)
        if at is not None:
            target = at
        elif now < proven_at:
            target = min(now + interval, proven_at + 1.0)
        else:  # past the proof, the search itself failed: try again, but not in a tight loop
            target = now + self.settings.reconcile_interval_seconds
        try:
            self.ledger.finish(
                request_id,
                claim,
                State.IN_DOUBT,
                error=f"in doubt: {note}",
                look_again_in=max(target - now, 1.0),
            )
        except redis.RedisError:
            log.warning("%s: could not reschedule; the sweeper will look again", request_id)
