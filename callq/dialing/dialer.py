"""One attempt at one call: claim -> limiter -> mark sent -> POST -> classify -> record.

This is the plain function behind the ``place_call`` task. It knows nothing of Celery: it
returns a :class:`Step` that the task maps (retry later, or nothing more to do).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis

from callq.campaign import zones
from callq.campaign.controls import GO, Controls, Gate, NumberCap
from callq.dialing.backfill import status_due_in
from callq.dialing.breaker import Breaker
from callq.dialing.limiter import Limiter, NoSlot, Permit, Slot
from callq.dialing.retry import RetryPolicy
from callq.errors import InvalidRow, LimiterUnavailable, Stopping
from callq.exotel.client import ExotelClient
from callq.exotel.outcome import NotPlaced, Originated, Outcome, Rejected, Unknown
from callq.exotel.params import build_connect_params
from callq.exotel.parties import callee, request_parties
from callq.ids import campaign_of
from callq.metrics import (
    CALLS,
    EXOTEL_LATENCY,
    FED_LATE,
    LIMITER_WAIT,
    LIVE_CALLS_REFUSED,
    NUMBER_CAPPED,
    RATE_LIMITED,
    UNREPLICATED,
)
from callq.settings import Settings
from callq.store.callbacks import CallbackStore
from callq.store.connect import MasterCheck
from callq.store.controls_cache import ControlsCache
from callq.store.ledger import PLACED_EARLIER, Claim, Finish, Ledger, NumberCheck, ReleaseAction
from callq.store.records import CallRecord, ClaimCode, SendMark, State
from callq.store.slots import LiveSlots, claim_for

log = logging.getLogger("callq.dialer")
#: How often the auto WAIT policy asks the master how many replicas it has (ROLE).
REPLICAS_TTL_SECONDS = 1.0


def _count_capped(claimed: Claim) -> None:
    """callq_number_capped_total: a claim held or skipped at the per-number cap."""
    if claimed.code in (ClaimCode.HELD, ClaimCode.SKIPPED):
        NUMBER_CAPPED.labels(str(claimed.code)).inc()


def _stopped_unsent(claimed: Claim) -> bool:
    """The claim stopped the call unsent (parked it, cancelled it, let it expire, held or
    skipped it at the per-number cap), or found it cancelled, expired or skipped before: no
    attempt of it is live. Not an early copy of a retry's message, nor a skip of a call that
    is dialling, in doubt or otherwise final."""
    if claimed.code in (
        ClaimCode.PARKED,
        ClaimCode.CANCELLED,
        ClaimCode.EXPIRED,
        ClaimCode.HELD,  # at the per-number cap (a fed call whose cap was set since its feed)
        ClaimCode.SKIPPED,
    ):
        return True
    return claimed.code is ClaimCode.SKIP and claimed.state in ("cancelled", "expired", "skipped")


@dataclass(frozen=True)
class Step:
    """What one attempt came to (``kind``, with a detail for some) and what the task does
    next: ``retry_in`` set, publish the call again after that long."""

    kind: str
    detail: str = ""
    retry_in: float | None = None

    @property
    def result(self) -> str:
        """``kind`` or ``kind:detail``: the task's result, as Flower shows it."""
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


@dataclass(frozen=True)
class Account:
    """One Exotel account's parts: its settings (credentials, endpoint, rate limit), its
    client, its limiter and its breaker. Nothing is shared between two accounts."""

    name: str
    settings: Settings
    client: ExotelClient
    limiter: Limiter
    breaker: Breaker | None = None


@dataclass
class Dialer:
    settings: Settings
    ledger: Ledger
    limiter: Limiter
    client: ExotelClient
    policy: RetryPolicy
    worker: str = "worker"
    breaker: Breaker | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    accounts: dict[str, Account] = field(default_factory=dict)  # besides the default one
    controls: ControlsCache | None = None
    clock: Callable[[], float] = time.time  # wall clock for calling windows (tests fake it)
    # The replicas the master had connected at the last look (auto WAIT policy), and when.
    _replicas_seen: int = field(default=1, init=False, repr=False)
    _replicas_at: float = field(default=-1e9, init=False, repr=False)
    # Under Sentinel: is the server that took a sent mark the master? (None: plain Redis.)
    _master_check: MasterCheck | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._master_check = MasterCheck.of(self.ledger.redis)
        self.callbacks = CallbackStore(
            self.ledger.redis, self.ledger.keys, events=self.ledger.events
        )
        self.slots = LiveSlots(self.ledger.redis, self.ledger.keys)
        self.default_account = Account(
            "default", self.settings, self.client, self.limiter, self.breaker
        )
        if self.controls is None:
            self.controls = ControlsCache(
                self.ledger.redis,
                self.ledger.keys,
                default_window=self.settings.calling_window,
                default_timezone=self.settings.calling_timezone,
            )

    def _wait_replicas(self) -> int:
        """How many replicas must acknowledge the sent mark (WAIT). 'auto': 1 while the master
        has one connected, looked at (ROLE) at most once a second per process; a replica that
        connects in between has the mark from its full sync anyway."""
        wanted = self.settings.wait_replicas
        if wanted == 0 or self.settings.wait_strict:
            return wanted
        now = time.monotonic()
        if now - self._replicas_at >= REPLICAS_TTL_SECONDS:
            with contextlib.suppress(redis.RedisError):  # keep the last count
                self._replicas_seen = self.ledger.replicas_connected()
            self._replicas_at = now
        return min(wanted, self._replicas_seen)

    def account(self, name: str) -> Account | None:
        if name in ("", "default"):
            return self.default_account
        return self.accounts.get(name)

    def controls_of(self, campaign: str, *, fresh: bool = False) -> Controls:
        assert self.controls is not None
        return self.controls.get(campaign, fresh=fresh)

    @property
    def claim_lease(self) -> float:
        """A claimed call may wait this long for a permit before it is given back."""
        return self.settings.rate_limit_max_wait_seconds + self.settings.lease_grace_seconds

    @property
    def send_lease(self) -> float:
        """A sent request holds the call this long before the sweeper judges it."""
        s = self.settings
        return s.exotel_connect_timeout + s.exotel_read_timeout + s.lease_grace_seconds

    def place(self, request_id: str, *, priority: bool = False, slot: Slot | None = None) -> Step:
        """One attempt at one call. ``priority``: the call came on the priority queue; it
        may reserve past the limiter's horizon, so it goes out at the next free slot.
        ``slot``: the permit the feed reserved for this call (its message carries it)."""
        ctl = self.controls_of(campaign_of(request_id))
        acct = self.account(ctl.account)
        # A callee-zone campaign judges each call in the zone recorded on it (one more read).
        zone = self.ledger.call_zone(request_id) if ctl.by_callee else None
        gate = ctl.gate(self.clock(), zone)
        probe = False
        if acct is None:
            log.error(
                "%s: campaign %s names account %r, unknown to this worker (EXOTEL_ACCOUNTS); "
                "parked",
                request_id,
                ctl.campaign,
                ctl.account,
            )
            gate = Gate("wait", 60.0, "unknown account")
        elif gate.kind == "go" and acct.breaker is not None:
            check = acct.breaker.check(probe_ttl=self.claim_lease + self.send_lease)
            if check.mode == "open":
                # The account is refused: the call is parked until the cooldown ends, so no
                # thread waits on it and other accounts' calls go on.
                gate = Gate("wait", max(check.wait, 1.0), "account breaker open")
            probe = check.mode == "probe"
        try:
            step, outcome = self._attempt(
                request_id, ctl, acct, gate, priority=priority, slot=slot, zone=zone
            )
        except BaseException:
            if probe:
                self._drop_probe(acct)
            raise
        if probe and acct is not None and acct.breaker is not None:
            if outcome is None or isinstance(outcome, Unknown):
                # Nothing was sent, or the answer proves nothing: another call probes.
                self._drop_probe(acct)
            elif step.result != "breaker_tripped":
                acct.breaker.close()
        return step

    @staticmethod
    def _drop_probe(acct: Account | None) -> None:
        if acct is not None and acct.breaker is not None:
            acct.breaker.redis.delete(acct.breaker.probe_key)

    def _unreplicated(
        self,
        request_id: str,
        claim: str,
        attempt: int,
        marked: SendMark,
        acct: Account,
        number: str = "",
    ) -> Step:
        """No replica holds the sent mark (a failover now would lose it), or the server that
        holds it is no longer the master (its demotion will): a redial could follow. Nothing
        was sent: give the attempt back, uncounted, with its live-call slots, and retry. The
        release goes through the pool, whose stale connections were dropped."""
        why = (
            f"not sent: no Redis replica acknowledged the sent mark within "
            f"{self.settings.redis_wait_timeout_ms} ms (WAIT)"
            if marked is SendMark.UNREPLICATED
            else "not sent: the Redis server that took the sent mark is not the "
            "master the Sentinels name (or no Sentinel answered)"
        )
        self._release_unsent(
            request_id,
            claim,
            acct,
            number,
            entry={
                "attempt": attempt,
                "outcome": "unsent",
                "error": why,
                "at": round(time.time(), 3),
            },
        )
        if marked is SendMark.UNREPLICATED:
            UNREPLICATED.inc()
        log.warning("%s held back: %s", request_id, why)
        return Step(str(marked), retry_in=1.0)

    def _attempt(
        self,
        request_id: str,
        ctl: Controls,
        acct: Account | None,
        gate: Gate,
        *,
        priority: bool,
        slot: Slot | None = None,
        zone: str | None = None,
    ) -> tuple[Step, Outcome | None]:
        """Claim, permit, sent mark, POST, record. The outcome is None when nothing was sent.
        ``zone``: the callee zone read for a callee-zone campaign (None for any other)."""
        # Under a cap the claim is given the number whatever the gate: a call it stops unsent
        # (parked, cancelled, expired) gives back the count the feed took with its permit.
        check = self._number_check(request_id, ctl)
        number = "" if check is None else check.number
        claimed = self.ledger.claim(
            request_id,
            lease_seconds=self.claim_lease,
            early_tolerance=1.0,
            worker=self.worker,
            gate=_gate_arg(gate),
            band=_band(gate, zone),
            number=check,
        )
        if not claimed.claimed:
            _count_capped(claimed)
            log.info("%s: %s (%s) %s", request_id, claimed.code, claimed.state, gate.why)
            if _stopped_unsent(claimed):
                # A fed call took its slots with its permit (or a worker that died before its
                # sent mark did, for this call); stopped here (paused, held by its gate,
                # cancelled, expired), it sends nothing: they go back now, not at their
                # lease. Not for any other skip (a copy of a message whose call is dialling).
                self._free_slots(request_id, acct)
            return Step(claimed.code, claimed.state), None
        assert acct is not None and claimed.record is not None
        record = claimed.record
        s = acct.settings
        attempt = claimed.attempts
        claim = claimed.claim
        try:
            params = build_connect_params(record.request(), request_id, s, attempt=attempt)
        except InvalidRow as exc:
            # Built before anything is sent: a record we cannot turn into a request fails
            # here, with its reason, instead of going in doubt.
            self._finish(request_id, claim, State.FAILED, error=f"invalid record: {exc}")
            return Step("invalid"), None
        try:
            got = self._permit(request_id, acct, claimed, slot, priority=priority)
        except Stopping:
            # Warm shutdown: nothing was sent. Give the call back, uncounted, for another
            # worker; the in-flight requests of this worker finish and are recorded.
            self._release(request_id, claim, acct=acct, number=number)
            log.info("%s released: worker stopping, nothing was sent", request_id)
            return Step("released", retry_in=0.0), None
        except LimiterUnavailable as exc:
            # Nothing was sent: give the attempt back. If Redis is down this fails too, and
            # the sweeper requeues the call when the lease runs out.
            log.warning("no permit for %s: %s", request_id, exc)
            self._release(request_id, claim, acct=acct, number=number)
            return Step("no_permit", retry_in=1.0), None
        if isinstance(got, NoSlot):
            # The account is at its cap on live calls: park the call, attempt uncounted, no
            # thread held. A normal campaign's is judged now and waits in its account's feed,
            # which a freed slot wakes; a priority campaign's is looked at again after a tick
            # (or when the earliest slot lapses, if sooner).
            wake = min(got.wait, self.settings.sweep_interval_seconds) if priority else 0.0
            self._release(request_id, claim, action="park", wake_in=wake, acct=acct, number=number)
            return Step("parked", "live_calls"), None
        if not isinstance(got, Permit):
            if priority:
                self._release(request_id, claim, acct=acct, number=number)
                return Step("no_permit", retry_in=1.0), None
            # No slot within the horizon: park the call (no thread waits, no ETA task); the
            # feed hands it a permit of its own when its turn comes.
            self._release(request_id, claim, action="park", wake_in=got, acct=acct, number=number)
            return Step("parked", "rate"), None
        permit = got
        zone = record.zone if ctl.by_callee else None
        late_gate = ctl.gate(self.clock(), zone)
        if late_gate.kind != "go":
            # The window closed (or end_at passed) while this call waited for its slot.
            action: ReleaseAction = "expired" if late_gate.kind == "expire" else "park"
            self._release(
                request_id,
                claim,
                action=action,
                wake_in=late_gate.wait,
                acct=acct,
                band=_band(late_gate, zone),
                number=number,
            )
            return Step(action, late_gate.why), None
        replicas = self._wait_replicas()
        # auto found the master without a replica: no WAIT, so nothing proves the mark will
        # outlive a failover. Under Sentinel, the server that took it must at least be the
        # master the Sentinels name (an old master that came back after its replica was
        # promoted would take it and lose it at its demotion).
        master = self._master_check if replicas == 0 and self.settings.wait_replicas > 0 else None
        marked = self.ledger.mark_sent(
            request_id,
            claim,
            lease_seconds=self.send_lease,
            account=acct.name,
            parties=request_parties(params),
            replicas=replicas,
            replica_timeout_ms=self.settings.redis_wait_timeout_ms,
            number=number,
            confirm=master.confirm if master is not None else None,
        )
        if not marked:
            if marked in (SendMark.UNREPLICATED, SendMark.NOT_MASTER):
                return self._unreplicated(request_id, claim, attempt, marked, acct, number), None
            if marked is SendMark.LOST:
                log.warning("lease lost for %s attempt %d; not sending", request_id, attempt)
                return Step("lease_lost"), None
            # Paused or cancelled since the claim: stopped at its sent mark, nothing sent.
            paused = marked is SendMark.PAUSED
            self._release(
                request_id,
                claim,
                action="park" if paused else "cancelled",
                acct=acct,
                number=number,
            )
            log.info("%s not sent: campaign %s", request_id, marked)
            return Step(marked, "stopped"), None
        if not acct.limiter.on_time(permit):
            late = permit.lateness()
            # The limit holds only if every request leaves within the margin of its slot
            # (two requests N slots apart are then more than a period apart). This one is
            # late (a stall, a slow Redis): hold it back, unsent, and requeue it.
            self._release_unsent(request_id, claim, acct, number)
            log.warning("%s held back: %.3f s late for its permit; requeued", request_id, late)
            return Step("late", retry_in=0.0), None
        waited = permit.waited
        LIMITER_WAIT.observe(waited)
        outcome, elapsed = acct.client.connect(params)
        CALLS.labels(outcome.kind).inc()
        EXOTEL_LATENCY.observe(elapsed)
        step = self._record(request_id, claim, attempt, outcome, elapsed, waited, acct, record)
        return step, outcome

    def number_cap(self, ctl: Controls) -> NumberCap | None:
        """The campaign's per-number cap: its own (``--number-cap``), else NUMBER_DAILY_CAP
        over a rolling 24 h; None for none."""
        if ctl.number_cap is not None:
            return ctl.number_cap
        if self.settings.number_daily_cap is not None:
            return NumberCap(self.settings.number_daily_cap, 86400)
        return None

    def _number_check(self, request_id: str, ctl: Controls) -> NumberCheck | None:
        """The per-number cap this call's claim must pass: the campaign's own
        (``--number-cap``), else NUMBER_DAILY_CAP over 24 h; None without one. Its callee is
        read from the record (one round trip, only under a cap)."""
        cap = self.number_cap(ctl)
        if cap is None:
            return None
        frm, to, url = self.ledger.redis.hmget(
            self.ledger.keys.call(request_id), "from", "to", "url"
        )
        number = callee(frm, to, url)
        return NumberCheck(number, cap, ctl.end_at) if number else None

    def _permit(
        self,
        request_id: str,
        acct: Account,
        claimed: Claim,
        slot: Slot | None,
        *,
        priority: bool,
    ) -> Permit | float | NoSlot:
        """The call's permit, after sleeping until its slot; or the seconds until one could be
        had (no permit within the horizon: the caller parks the call).

        A call the feed handed over carries its slot: it sleeps until then, at most the feed's
        lead. One that missed its slot (it waited in the queue, a stall), or came without one
        (a retry, a requeue), reserves a slot of its own within the horizon."""
        if slot is not None and slot.account == acct.name:
            permit = Permit.of_slot(slot.at_us, claimed.now_us, claimed.sent, claimed.received)
            # No fed slot lies further ahead than the feed's lead (plus the margin for the
            # round trips); one that does came from before a backward step of the Redis
            # clock, and would hold this thread for the whole step.
            far = acct.settings.feed_lead_seconds + acct.limiter.margin
            sent_at = claimed.record.sent_at if claimed.record is not None else None
            if permit.latest - time.monotonic() > far:
                log.warning("a fed slot more than %.1f s ahead: the Redis clock stepped back?", far)
            elif sent_at is not None and sent_at * 1000 >= slot.at_us - far * 1e6:
                # A sent mark since the slot was reserved: an attempt of this call may have
                # gone out on it (a stray copy of the fed message, claimed again after that
                # attempt came back not placed with a short backoff). One permit, one request.
                log.warning("%s: its fed slot may be spent by an earlier attempt", request_id)
            elif acct.limiter.on_time(permit):
                permit.sleep(self.stopping, time.sleep)
                return Permit(permit.earliest, permit.latest, time.monotonic() - claimed.sent)
            else:
                FED_LATE.inc()
        if acct.limiter.max_live is None:
            return acct.limiter.try_acquire(self.stopping, priority=priority)
        assert claimed.record is not None
        claim = claim_for(claimed.record, request_id, acct.settings)
        return acct.limiter.try_acquire(self.stopping, priority=priority, claim=claim)

    def _release(
        self,
        request_id: str,
        claim: str,
        *,
        action: ReleaseAction = "",
        wake_in: float | None = None,
        acct: Account | None = None,
        band: int = 0,
        number: str = "",
    ) -> None:
        try:
            released = self.ledger.release(
                request_id,
                claim,
                republish_after=self.settings.retry_overdue_seconds,
                action=action,
                wake_in=wake_in,
                band=band,
                number=number,
            )
        except redis.RedisError:
            log.warning("could not release %s; the sweeper will requeue it", request_id)
            return
        if released:
            # Nothing was sent: slots it took with its permit (or the feed took for it) go.
            self._free_slots(request_id, acct)

    def _release_unsent(
        self,
        request_id: str,
        claim: str,
        acct: Account,
        number: str,
        entry: dict[str, object] | None = None,
    ) -> None:
        """Give back an attempt marked sent that sent nothing (held back), with its slots."""
        released = self.ledger.release(
            request_id,
            claim,
            republish_after=acct.settings.retry_overdue_seconds,
            unsent=True,
            number=number,
            log=entry,
        )
        if released:
            self._free_slots(request_id, acct)
        if released == PLACED_EARLIER:
            # Not released: an earlier attempt's callback, kept apart while this one was
            # live, proves the call placed (release.lua). Settled by it, not dialled again.
            self.callbacks.apply_kept(request_id)

    def _free_slots(self, request_id: str, acct: Account | None) -> None:
        if acct is not None and acct.limiter.max_live is not None:
            self.slots.free(request_id, acct.name)

    def _record(
        self,
        request_id: str,
        claim: str,
        attempt: int,
        outcome: Outcome,
        elapsed: float,
        waited: float,
        acct: Account,
        record: CallRecord,
    ) -> Step:
        s = acct.settings
        entry: dict[str, object] = {
            "attempt": attempt,
            "outcome": outcome.kind,
            "elapsed": round(elapsed, 3),
            "waited": round(waited, 3),
            "at": round(time.time(), 3),
        }
        retry_in: float | None = None
        if isinstance(outcome, Originated):
            entry["sid"] = outcome.sid
            fin = self._finish(
                request_id,
                claim,
                State.ORIGINATED,
                sid=outcome.sid,
                log=entry,
                status_due_in=status_due_in(record, s),
            )
            if fin is not None and fin.pending_callback:
                # Its callback beat us here (it had no usable CustomField): apply it now.
                self.callbacks.apply_pending(outcome.sid)
        elif isinstance(outcome, NotPlaced):
            entry["error"] = outcome.reason
            self._free_slots(request_id, acct)
            if outcome.rate_limited:
                # Any 429, one naming concurrency too: it may be the rate's (callq cannot
                # tell), and a missed push-back would let every worker go on at full rate.
                RATE_LIMITED.inc()
                try:
                    acct.limiter.push_back(outcome.retry_after or s.rate_limited_pushback_seconds)
                except LimiterUnavailable:
                    log.warning("could not push the limiter back after a 429")
            if outcome.at_capacity:
                # Refused at Exotel's cap on live calls: the call retries when our earliest
                # slot lapses (a callback may free one sooner).
                LIVE_CALLS_REFUSED.inc()
                hint = self.slots.earliest_release(acct.name) if acct.limiter.max_live else None
                outcome = replace(outcome, retry_after=hint or outcome.retry_after)
            # A redial starts a fresh count of retries (attempts before it do not count).
            if self.policy.exhausted(attempt - record.redial_base):
                fin = self._finish(
                    request_id,
                    claim,
                    State.FAILED,
                    error=f"not placed after {attempt} attempts: {outcome.reason}",
                    log=entry,
                )
            else:
                retry_in = self.policy.delay(attempt, outcome.retry_after)
                fin = self._finish(
                    request_id,
                    claim,
                    State.RETRYING,
                    error=outcome.reason,
                    next_in=retry_in,
                    look_again_in=retry_in + s.retry_overdue_seconds,
                    log=entry,
                )
        elif isinstance(outcome, Rejected) and outcome.account_level and acct.breaker:
            entry["error"] = outcome.reason
            self._free_slots(request_id, acct)
            cooldown = acct.breaker.trip(f"HTTP {outcome.http_status}: {outcome.reason}")
            fin = self._finish(
                request_id,
                claim,
                State.RETRYING,
                error=f"account refused ({outcome.http_status}): {outcome.reason}; dialling paused",
                next_in=cooldown,
                look_again_in=cooldown + s.retry_overdue_seconds,
                log=entry,
                uncount=True,
            )
            return Step("breaker_tripped", retry_in=cooldown) if fin else Step("not_recorded")
        elif isinstance(outcome, Rejected):
            entry["error"] = outcome.reason
            self._free_slots(request_id, acct)
            fin = self._finish(
                request_id,
                claim,
                State.FAILED,
                error=f"rejected ({outcome.http_status}): {outcome.reason}",
                log=entry,
            )
        else:
            assert isinstance(outcome, Unknown)
            entry["error"] = outcome.reason
            fin = self._finish(
                request_id,
                claim,
                State.IN_DOUBT,
                error=f"in doubt: {outcome.reason}",
                look_again_in=s.reconcile_interval_seconds,
                log=entry,
            )
        if not fin:
            return Step("not_recorded", outcome.kind)
        log.info("%s attempt %d: %s", request_id, attempt, outcome.kind)
        return Step(outcome.kind, retry_in=retry_in)

    def _finish(self, request_id: str, claim: str, state: State, **kw: object) -> Finish | None:
        """Record the outcome, retrying briefly on a Redis error. If it still fails, the lease
        runs out and the sweeper judges the call by its sent mark (in doubt): never redialled."""
        for delay in (0.1, 0.5, 1.0, 2.0, 0.0):
            try:
                fin = self.ledger.finish(request_id, claim, state, **kw)  # type: ignore[arg-type]
                if fin.placed_earlier:
                    # Unplaced, but an earlier attempt's callback (kept apart while this one
                    # was live) proves the call was placed: settled by it, not dialled again.
                    self.callbacks.apply_kept(request_id)
                return fin if fin.ok else None
            except redis.RedisError:
                if not delay:
                    break
                time.sleep(delay)
        log.error("could not record the outcome of %s; it will be judged in doubt", request_id)
        return None


def _band(gate: Gate, zone: str | None) -> int:
    """Where a call parked by ``gate`` waits: a callee-zone campaign's call outside its own
    window waits in its zone's band (callq.campaign.zones), out of the feed's way; any other
    in the ready band (0)."""
    if zone is None or gate.kind != "wait" or not gate.window:
        return 0
    return zones.held_offset(zone)


def _gate_arg(gate: Gate) -> str | float:
    if gate is GO or gate.kind == "go":
        return ""
    if gate.kind == "expire":
        return "expire"
    return gate.wait
