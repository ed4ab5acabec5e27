"""The feed: parked calls go to the queue with their permits, per account, in fair shares.

A waiting call is *parked*: its request id sits in its campaign's parked set and no message
or thread holds it (see ``claim.lua`` and ``release.lua``). A feeder thread in every worker
finds, with one poll of Redis (``due.lua``), two kinds of work:

* **Judge a campaign**, when its wake time comes (it was enqueued, paused, resumed, changed,
  cancelled, or its window opens or closes). Cancelled: its parked calls end `cancelled`;
  past ``end_at``: `expired`; paused, outside its calling window or before ``send_at``: it
  leaves its account's feed and waits for its time; open: it joins its account's feed (a
  priority campaign's calls go straight to `calls.priority` instead, where each reserves the
  next free permit itself).
* **Feed an account**, when its next pass is due. One feeder at a time holds the account's
  turn. It reserves every permit free within the lead (``FEED_LEAD_SECONDS``) in one round
  trip, gives them to the feed's campaigns by weighted round-robin
  (:mod:`callq.campaign.share`), and
  pushes each chosen call's task message with its slot. The worker that takes the message
  sleeps until the slot (at most the lead) and sends. The next pass falls due when the next
  permit can be reserved, so every permit the limit allows goes to a call, and the queue holds
  only about lead / interval messages per account.

**Back-pressure** (``FEED_BACKPRESSURE``, on by default). A fed message is useful only while a
worker takes it before its slot; when the workers' threads are short, fed messages wait in
the queue past their slots, each permit is wasted (the worker reserves another, later) and,
past ``RETRY_OVERDUE_SECONDS``, the sweeper publishes a copy of each. So every pass first
reads the oldest message waiting in `calls` (one LINDEX, :func:`oldest_message`): while it
is a fed message already late for its slot (past the dialer's tolerance, half the margin), no
account is fed in that pass (the threads are shared by all), their turns fall due again
after ``HOLD_TICK``. Holding hands out fewer permits, never more: it cannot dial twice nor
break a limit. It never holds for ever: a message without a slot or that cannot be read
holds nothing, nor does one later than ``RETRY_OVERDUE_SECONDS`` (nobody consumes it: the
sweeper has published its copy already).

Between passes a feeder blocks on the nudge list (``Keys.nudge``) until the next thing falls
due, so an enqueue is judged at once, and an idle feeder costs one round trip per sweep tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from celery import Celery

from callq.campaign import zones
from callq.campaign.controls import Controls
from callq.campaign.share import Member, advances, allocate
from callq.dialing.dialer import Account, Dialer
from callq.dialing.limiter import Grant, Limiter, Slot
from callq.metrics import FED, FEED_HELD, NUMBER_CAPPED
from callq.settings import Settings
from callq.store.ledger import Ledger, NumberCheck, NumberTake, Unpark
from callq.store.records import Unparked
from callq.store.slots import SlotClaim
from callq.transport.messages import TaskMessages, oldest_message, slot_of
from callq.transport.queues import CALLS_QUEUE, PRIORITY_QUEUE

log = logging.getLogger("callq.feed")

SETTLE_BATCH = 500
MAX_PRIORITY_PUSH = 1000
MAX_FEED_BATCH = 100  # permits handed out in one pass, at most
MIN_PASS_GAP = 0.05  # seconds: no account is fed more often than this
DUE_LIMIT = 50  # campaigns taken from one poll
# Accounts taken from one poll, each with its turn (due.lua): few, so that the feeders of
# several workers polling at once share the due accounts between them (disjoint turns), and
# none holds many turns while it feeds the others one by one.
CLAIM_LIMIT = 8
HOLD_TICK = 0.1  # seconds: a pass held back by the queue looks again after this
HOLD_LOG_EVERY = 10.0  # seconds: at most one log line of held passes this often
RECHECK_TICKS = 10  # an open campaign is judged again after this many sweep intervals
ZONES_BATCH = 1000  # parked calls a callee-zone campaign's judge sorts per band, per round
ZONES_ROUNDS = 5  # rounds over the head of its ready band


@dataclass
class PassResult:
    """What one pass did (for logs and tests)."""

    judged: dict[str, int] = field(default_factory=dict)
    fed: int = 0
    next_in: float | None = None
    held: float | None = None  # seconds the oldest fed message was late: no account fed
    looked: bool = False  # the queue's oldest message was read in this pass

    def count(self, what: str, n: int = 1) -> None:
        self.judged[what] = self.judged.get(what, 0) + n


class Feeder:
    def __init__(self, ledger: Ledger, settings: Settings, dialer: Dialer, app: Celery) -> None:
        self.ledger = ledger
        self.settings = settings
        self.dialer = dialer
        self.normal = TaskMessages(app, queue=CALLS_QUEUE)
        self.priority = TaskMessages(app, queue=PRIORITY_QUEUE)
        self._joined: list[str] = []  # accounts a campaign joined in this pass
        # The broker's Redis, where the task messages wait: the ledger's own, unless
        # LEDGER_REDIS_URL puts the ledger apart (Ledger.broker).
        self.broker: redis.Redis = ledger.broker if ledger.broker is not None else ledger.redis
        self._held_unlogged = 0
        self._held_logged_at = -HOLD_LOG_EVERY

    @property
    def recheck(self) -> float:
        return self.settings.sweep_interval_seconds * RECHECK_TICKS

    @property
    def turn_lease(self) -> float:
        return max(self.settings.sweep_interval_seconds, 1.0)

    # One pass -----------------------------------------------------------------------------

    def run_once(self) -> PassResult:
        """Judge the campaigns due and feed the accounts due; say when the next is due."""
        polled = time.monotonic()
        due = self.ledger.due_work(DUE_LIMIT, accounts=CLAIM_LIMIT, lease=self.turn_lease)
        result = PassResult(next_in=due.next_in)
        self._joined = []
        accounts = due.accounts
        try:
            if accounts and self._held(result, due.now_ms):
                self._hold(accounts, due.now_ms, result)
                accounts = []
        except BaseException:  # the queue's read (or a hold's end) failed: turns go back
            self._hand_back(accounts, due.now_ms, polled)
            raise
        # First the accounts due: this feeder holds their turns (due.lua took them), whose
        # leases run while it works.
        for i, account in enumerate(accounts):
            try:
                result.fed += self.feed(account, held_since=polled)
            except BaseException:
                self._hand_back(accounts[i + 1 :], due.now_ms, polled)
                raise
        for campaign in due.campaigns:
            try:
                result.count(self.judge(campaign))
            except (ValueError, KeyError) as exc:
                # Unreadable controls (meta edited by hand?): this campaign waits and says
                # why; the others go on.
                log.error("campaign %s: cannot judge it: %s", campaign, exc)
                self.ledger.rewake(campaign, 60.0)
                result.count("error")
        # The accounts a campaign just joined or made ready (a window or a callee zone that
        # opened): fed in this pass, not the next, with their turns taken one by one; one fed
        # above before its campaigns were judged is fed again (its turn is free once fed).
        # Held back, they stay due and the next poll holds them with the others.
        joined = list(dict.fromkeys(self._joined))
        if joined and self._held(result, due.now_ms):
            if not accounts:  # not counted twice in one pass
                self._hold([], due.now_ms, result)
            joined = []
        for account in joined:
            result.fed += self.feed(account)
        if due.campaigns or due.accounts:
            result.next_in = 0.0  # what was done set new due times: look again at once
        if result.held is not None and not due.campaigns:
            result.next_in = HOLD_TICK
        return result

    # Back-pressure --------------------------------------------------------------------------

    def behind(self, now_ms: int) -> float | None:
        """Seconds the oldest message waiting in `calls` is late for its fed slot (``now_ms``:
        the Redis clock), if it is late past the dialer's tolerance for that account (its
        permit is lost: the workers' threads are behind); else None. None too for a message
        without a slot or unreadable, and for one later than ``RETRY_OVERDUE_SECONDS``: no
        worker may ever take it (its copy is published), and the feed must not wait on it."""
        slot = slot_of(oldest_message(self.broker, self.normal.queue_key))
        if slot is None:
            return None
        late = now_ms / 1000 - slot.at_us / 1e6
        acct = self.dialer.account(slot.account)
        tolerance = (
            acct.limiter.tolerance
            if acct is not None
            else self.settings.rate_limit_margin_seconds / 2
        )
        if late <= tolerance or late > self.settings.retry_overdue_seconds:
            return None
        return late

    def _held(self, result: PassResult, now_ms: int) -> bool:
        """Whether this pass is held back (read once per pass, when an account is to be fed)."""
        if not self.settings.feed_backpressure:
            return False
        if not result.looked:
            result.held = self.behind(now_ms)
            result.looked = True
        return result.held is not None

    def _hold(self, accounts: list[str], now_ms: int, result: PassResult) -> None:
        """A pass held back: the turns its poll took fall due again after HOLD_TICK, with no
        permit reserved."""
        late = result.held
        FEED_HELD.inc()
        self._held_unlogged += 1
        for account in accounts:
            self.ledger.feed_done(account, now_ms + int(HOLD_TICK * 1000))
        mono = time.monotonic()
        if mono - self._held_logged_at >= HOLD_LOG_EVERY:
            log.warning(
                "feed held back: the oldest fed message in %s is %.2f s late for its slot "
                "(the workers' threads are behind); %d passes held since the last line",
                self.normal.queue_key,
                late,
                self._held_unlogged,
            )
            self._held_logged_at = mono
            self._held_unlogged = 0

    def drain_once(self) -> dict[str, int]:
        """One pass, as counts by what happened (``fed`` among them)."""
        r = self.run_once()
        return {**r.judged, **({"fed": r.fed} if r.fed else {})}

    # Judging a campaign ---------------------------------------------------------------------

    def judge(self, campaign: str) -> str:
        ledger = self.ledger
        ctl = self.dialer.controls_of(campaign, fresh=True)
        acct_name = ctl.account or "default"
        if ctl.cancelled:
            ledger.leave_feed(acct_name, [campaign])
            return self._settle(campaign, "cancelled")
        gate = ctl.gate(self.dialer.clock())
        if gate.kind == "expire":
            ledger.leave_feed(acct_name, [campaign])
            return self._settle(campaign, "expired")
        if ctl.paused:
            # Atomic with the paused flag: the wake entry goes (or waits for end_at); if a
            # resume raced this, the campaign is judged again at once.
            ledger.leave_feed(acct_name, [campaign])
            ledger.unpark(
                campaign,
                [],
                queue_key=self.normal.queue_key,
                overdue=self.settings.retry_overdue_seconds,
                rewake_in=0.0,
                end_at=ctl.end_at,
                version=ctl.version,
            )
            return "paused"
        if gate.kind == "wait":
            ledger.leave_feed(acct_name, [campaign])
            ledger.rewake(campaign, gate.wait, version=ctl.version)
            return "waiting"
        acct = self.dialer.account(ctl.account)
        if acct is None:
            ledger.leave_feed(acct_name, [campaign])
            ledger.rewake(campaign, 60.0, version=ctl.version)
            return "unknown_account"
        # Open. A callee-zone campaign's calls go to the ready band or their zone's band first
        # (callq.campaign.zones): the feed takes only ready calls, so none outside its own
        # window costs a permit, and the campaign is judged again when a zone opens or closes.
        zone_change = self._sort_zones(campaign, ctl) if ctl.by_callee else self._unband(campaign)
        if ctl.priority:
            return self._push_priority(campaign, ctl, acct)
        # Stay judged until the window closes (a zone opens or closes) or end_at, then look
        # again.
        closes_in = ctl.open_for(self.dialer.clock())
        rewake_in = self.recheck
        for change in (closes_in, zone_change):
            if change is not None:
                rewake_in = min(rewake_in, change + 0.001)
        done = ledger.unpark(
            campaign,
            [],
            queue_key=self.normal.queue_key,
            overdue=self.settings.retry_overdue_seconds,
            rewake_in=rewake_in,
            end_at=ctl.end_at,
            version=ctl.version,
        )
        if done.paused:
            return "paused"  # paused since the controls were read
        if done.left == 0:
            return "empty"  # its wake entry went with its last parked call
        if ctl.by_callee and not ledger.parked_counts([campaign], ready=True)[0]:
            # Every parked call waits for its own zone's window: the wake set above (the
            # next zone opening at the latest) brings the campaign back.
            ledger.leave_feed(acct.name, [campaign])
            return "waiting_zones"
        ledger.join_feed(acct.name, campaign)
        self._joined.append(acct.name)
        return "open"

    def _sort_zones(self, campaign: str, ctl: Controls) -> float | None:
        """Sort a callee-zone campaign's parked calls by their own zone's window, now: the
        held ones of a zone now open to the ready band, the ready ones at the head of the
        queue (what the feed takes before the next look) of a zone now closed to its band.
        Returns the seconds until one of its zones next opens or closes (sooner when a batch
        was full: more to sort). The dialer still judges each call's own zone before it
        dials, so a call this missed is never dialled outside its window either."""
        ledger = self.ledger
        now = self.dialer.clock()
        present = ledger.campaign_zones(campaign) | {""}
        is_open: dict[str, bool] = {}
        changes: list[float] = []

        def opened(zone: str) -> bool:
            if zone not in is_open:
                tz = ctl.zone_of(zone)
                wait = ctl.window_wait(now, tz)
                is_open[zone] = wait is None
                if zone in present:
                    changes.append(ctl.window_closes_in(now, tz) if wait is None else wait)
            return is_open[zone]

        def where(zone: str, score: float) -> int:
            """The score a parked call belongs at now: ready, or its closed zone's band."""
            created = zones.created_of(score)
            return created if opened(zone) else zones.held_offset(zone) + created

        # The bands of the zones open now, then the head of the ready band.
        bands = sorted({zones.band(z) for z in present if opened(z)})
        full = False
        for b in bands:
            # Where the last judge stopped: calls of a closed zone sharing the band, more than
            # one judge reads, would otherwise hide those of the open zone behind them.
            start = ledger.zone_sort_start(campaign, b)
            lo, hi = zones.band_base(b), zones.band_base(b + 1)
            left = self._sort_band(campaign, lo, hi, where, start=start)
            if left is not None or start:
                ledger.set_zone_sort_start(campaign, b, left or 0)
            full = left is not None or full
        head = self._sort_band(campaign, 0, zones.SPAN, where, enough=ZONES_BATCH)
        full = head is not None or full
        for zone in present:
            opened(zone)  # every zone's next change counts, sorted or not
        if full:
            changes.append(self.settings.sweep_interval_seconds)
        return min(changes) if changes else None

    def _sort_band(
        self,
        campaign: str,
        lo: int,
        hi: int,
        where: Callable[[str, float], int],
        *,
        enough: int | None = None,
        start: int = 0,
    ) -> int | None:
        """Move the parked calls scored in ``[lo, hi)`` to where they belong (``where``: by
        their zone and score), in rounds of ZONES_BATCH past those that stay, from the
        ``start``-th, until the band is done or ``enough`` stay (the head of the ready band:
        more than the feed takes before the next look). Returns None when the band was read
        to its end, else how many calls stay before where this stopped (more may be
        unsorted: every round was full)."""
        kept = start
        for _ in range(ZONES_ROUNDS):
            got = self.ledger.parked_band(campaign, lo, hi, ZONES_BATCH, start=kept)
            moves = [(rid, score, where(z, score)) for rid, score, z in got]
            moves = [m for m in moves if m[2] != m[1]]
            self.ledger.move_parked(campaign, moves)
            kept += len(got) - len(moves)
            if len(got) < ZONES_BATCH or (enough is not None and kept >= enough):
                return None
        return kept

    def _unband(self, campaign: str) -> float | None:
        """A campaign judged in its own zone holds no call in a zone band; any left from a
        ``--window-zone callee`` since changed go back to the ready band (the window is
        judged for the campaign as a whole again)."""
        got = self.ledger.parked_band(
            campaign, zones.SPAN, zones.band_base(zones.CAMPAIGN_BAND + 1), ZONES_BATCH
        )
        self.ledger.move_parked(campaign, [(r, s, zones.created_of(s)) for r, s, _ in got])
        return self.settings.sweep_interval_seconds if len(got) == ZONES_BATCH else None

    def _settle(self, campaign: str, to: str) -> str:
        n = self.ledger.settle_parked(campaign, to, SETTLE_BATCH)  # type: ignore[arg-type]
        return to if n else f"{to}_none"

    def _push_priority(self, campaign: str, ctl: Controls, acct: Account) -> str:
        """A priority campaign's parked calls (it was paused, or outside its window) go to
        `calls.priority`, about as many as the account can dial before the next look."""
        s = acct.settings
        within = self.settings.sweep_interval_seconds + s.rate_limit_max_ahead_seconds
        count = min(MAX_PRIORITY_PUSH, acct.limiter.free_slots(within) + 1)
        ids = self.ledger.parked(campaign, count, ready=True)
        done = self.ledger.unpark(
            campaign,
            [(rid, self.priority.encode(rid)) for rid in ids],
            queue_key=self.priority.queue_key,
            overdue=self.settings.retry_overdue_seconds,
            rewake_in=self.settings.sweep_interval_seconds,
            end_at=ctl.end_at,
            version=ctl.version,
        )
        return "paused" if done.paused else "priority"

    # Feeding an account ---------------------------------------------------------------------

    def feed(self, account: str, *, held_since: float | None = None) -> int:
        """One pass over one account's feed, if it is due and this feeder takes the turn
        (``held_since``: it holds the turn already, taken by :meth:`Ledger.due_work` at that
        ``time.monotonic()``). Returns how many calls were handed to the queue."""
        ledger = self.ledger
        if held_since is not None and time.monotonic() - held_since > self.turn_lease / 2:
            # Slow over the accounts before this one: the turn's lease may have run out and
            # another feeder may hold it now. Take it again (refused while either holds it:
            # then it is fed when the hold ends), never feed on a turn that may be gone.
            held_since = None
        if held_since is None and not ledger.take_feed_turn(account, self.turn_lease):
            return 0
        try:
            return self._feed(account)
        except redis.RedisError:
            raise
        except Exception:
            log.exception(
                "feeding account %s failed; it is fed again after the turn's lease", account
            )
            return 0

    def _feed(self, account: str) -> int:
        ledger = self.ledger
        acct = self.dialer.account(account)
        if acct is None:
            log.error("account %r is fed but unknown to this worker (EXOTEL_ACCOUNTS)", account)
            return 0  # the turn's lease runs out; a worker that knows it feeds it
        lim = acct.limiter
        lead = acct.settings.feed_lead_seconds
        if acct.breaker is not None:
            closed_in = acct.breaker.open_for()
            if closed_in > 0:
                self._done(account, closed_in)
                return 0
        most = min(MAX_FEED_BATCH, int(lead / lim.interval) + 1)
        members = ledger.feed_members(account, most)
        shares, strays = self._shares(account, members)
        if strays:
            ledger.leave_feed(account, strays)
            for campaign in strays:  # judged again where they belong
                ledger.rewake(campaign, 0.0)
        ids = ledger.parked_many([m.campaign for m in shares], most)
        ready = [
            Member(m.campaign, m.vtime, m.weight, len(ids[m.campaign]))
            for m in shares
            if ids[m.campaign]
        ]
        empty = [m.campaign for m in shares if not ids[m.campaign]]
        if empty:
            self._leave(account, empty)
        if not ready:
            self._done(account, self.settings.sweep_interval_seconds)
            return 0
        want = min(most, sum(m.available for m in ready))
        named = _named(allocate(want, ready), ids)
        named, counted = self._number_caps(named)
        if not named:  # every call chosen was held at its number's cap: choose again now
            self._done(account, MIN_PASS_GAP)
            return 0
        claims: list[SlotClaim] = []
        try:
            claims = self._claims(acct, [rid for _, rid in named])
            grant = lim.reserve(ahead=lead, count=len(named), claims=claims)
            room = _room(lim, grant, claims)
            # The counts of the calls with no permit go back; the claim keeps the others'.
            ledger.number_give_back(
                counted[rid] for _, rid in named[grant.count :] if rid in counted
            )
            if not grant.granted:
                self._done(account, _next_pass(grant, lead, self.recheck), room=room)
                return 0
            batches, results = self._move(account, ready, named[: grant.count], grant)
        except BaseException:
            self._undo(account, named, slots=bool(claims), counted=counted)
            raise
        moved = 0
        fed: list[str] = []
        gone: list[str] = []
        stopped: dict[str, list[str]] = {}
        for b, done in zip(batches, results, strict=True):
            moved += max(done.moved, 0)
            fed.extend([b.campaign] * max(done.moved, 0))
            if not done.paused and done.left == 0:
                gone.append(b.campaign)
            if done.moved < len(b.calls):
                stopped[b.campaign] = [rid for rid, _ in b.calls]
        self._give_back(account, stopped, slots=bool(claims), counted=counted)
        ledger.advance_feed(account, advances(fed, {m.campaign: m.weight for m in ready}))
        if gone:
            self._leave(account, gone)
        FED.inc(moved)
        self._done(
            account, _next_pass(grant, lead, self.recheck), now_ms=grant.now_us // 1000, room=room
        )
        return moved

    def _move(
        self, account: str, ready: list[Member], named: list[tuple[str, str]], grant: Grant
    ) -> tuple[list[Unpark], list[Unparked]]:
        """Hand the calls granted (``named``, in slot order) to the queue, each with its
        permit's slot: their task messages, and what each campaign's batch did."""
        calls: dict[str, list[tuple[str, str]]] = {m.campaign: [] for m in ready}
        for i, (campaign, rid) in enumerate(named):
            calls[campaign].append((rid, self.normal.encode(rid, Slot(grant.slot_us(i), account))))
        batches = [Unpark(c, calls[c], self.normal.queue_key) for c in calls if calls[c]]
        return batches, self.ledger.unpark_many(
            batches, overdue=self.settings.retry_overdue_seconds
        )

    def _undo(
        self,
        account: str,
        named: list[tuple[str, str]],
        *,
        slots: bool,
        counted: dict[str, NumberTake],
    ) -> None:
        """A pass that failed after it took the calls' per-number counts (the limiter
        unreachable, a reservation or a move whose reply was lost): the counts, and the live
        slots its reservation may have taken, of the calls it did not hand out go back now,
        not left on parked calls that may never be fed (cancelled or expired while parked:
        nothing else gives those back). A call the move did hand out keeps them (the checks
        of :meth:`_give_back`)."""
        stopped: dict[str, list[str]] = {}
        for campaign, rid in named:
            stopped.setdefault(campaign, []).append(rid)
        try:
            self._give_back(account, stopped, slots=slots, counted=counted)
        except redis.RedisError as exc:
            log.warning("feed %s: cannot give back what a failed pass took: %s", account, exc)

    def _give_back(
        self,
        account: str,
        stopped: dict[str, list[str]],
        *,
        slots: bool,
        counted: dict[str, NumberTake],
    ) -> None:
        """Paused (or fed by another feeder) since the calls were read: the live slots and
        the per-number counts taken for calls still parked go back."""
        if not stopped:
            return
        if slots:
            self.dialer.slots.free_unless_moved(account, stopped)
        if counted:  # of calls still parked (or ended): number_give.lua checks
            self.ledger.number_give_back(
                counted[rid] for rids in stopped.values() for rid in rids if rid in counted
            )

    def _claims(self, acct: Account, named: list[str]) -> list[SlotClaim]:
        """Under a cap on live calls each permit goes with its call's slots, in the same step:
        the calls, named in slot order (permit i goes to the i-th: the script stops at the
        first call the cap refuses). None without a cap."""
        if acct.limiter.max_live is None:
            return []
        return self.dialer.slots.claims(named, acct.settings)

    def _number_caps(
        self, named: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], dict[str, NumberTake]]:
        """Under a per-number cap each call's count is taken before its permit is reserved
        (number_take.lua), so a call the cap refuses spends no permit: it is held (or
        skipped) there, and left out. Returns the calls still to feed, in slot order, and
        the counts taken, by request id (given back for a call not handed out)."""
        checks: dict[str, NumberCheck] = {}
        capped = []
        for campaign, rid in named:
            ctl = self.dialer.controls_of(campaign)
            cap = self.dialer.number_cap(ctl)
            if cap is not None:
                capped.append((rid, cap, ctl.end_at))
        if not capped:
            return named, {}
        numbers = self.ledger.callees([rid for rid, _, _ in capped])
        for (rid, cap, end_at), number in zip(capped, numbers, strict=True):
            if number:
                checks[rid] = NumberCheck(number, cap, end_at)
        takes = self.ledger.number_take_many(list(checks.items()))
        verdicts = dict(zip(checks, takes, strict=True))
        counted = {rid: t for rid, t in verdicts.items() if t.taken}
        kept = [(c, rid) for c, rid in named if rid not in verdicts or verdicts[rid].taken]
        for t in takes:
            if t.verdict in ("held", "skipped"):
                NUMBER_CAPPED.labels(t.verdict).inc()
        return kept, counted

    def _shares(
        self, account: str, members: list[tuple[str, float]]
    ) -> tuple[list[Member], list[str]]:
        """The members this account may feed now, and those that no longer belong here
        (paused, cancelled or moved to another account since they were judged)."""
        shares: list[Member] = []
        strays: list[str] = []
        for campaign, vtime in members:
            ctl = self.dialer.controls_of(campaign)
            if ctl.paused or ctl.cancelled or ctl.priority or (ctl.account or "default") != account:
                strays.append(campaign)
            else:
                shares.append(Member(campaign, vtime, ctl.weight))
        return shares, strays

    def _leave(self, account: str, campaigns: list[str]) -> None:
        """Campaigns whose parked set ran empty leave the feed; one that got a call parked
        meanwhile is judged again (its park also set its wake: belt and braces)."""
        ledger = self.ledger
        ledger.leave_feed(account, campaigns)
        ready = ledger.parked_counts(campaigns, ready=True)  # not those held for their zone
        for campaign, count in zip(campaigns, ready, strict=True):
            if count:
                ledger.rewake(campaign, 0.0)

    def _hand_back(self, accounts: list[str], polled_ms: int, polled: float) -> None:
        """A pass that fails (a Redis error) gives back the turns its poll took and it did not
        reach, due again at once, for another feeder: not left for their leases to run out.
        Only while the leases surely last (past half of one, another may hold a turn now)."""
        if not accounts or time.monotonic() - polled > self.turn_lease / 2:
            return
        try:
            for account in accounts:
                self.ledger.feed_done(account, polled_ms)
        except redis.RedisError as exc:
            log.warning("cannot give back feed turns: %s", exc.__class__.__name__)

    def _done(
        self,
        account: str,
        next_in: float,
        *,
        now_ms: int | None = None,
        room: tuple[str, int, int] | None = None,
    ) -> None:
        if now_ms is None:
            sec, usec = self.ledger.redis.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
        self.ledger.feed_done(account, now_ms + max(1, int(next_in * 1000)), room=room)


def _room(lim: Limiter, grant: Grant, claims: list[SlotClaim]) -> tuple[str, int, int] | None:
    """For a pass the cap stopped: what feed_done needs to tell whether a slot was freed
    since the reservation (its end would otherwise overwrite the freed slot's wake)."""
    if grant.slots_full is None or lim.max_live is None or len(claims) <= grant.count:
        return None
    return (lim.slots_key, lim.max_live, claims[grant.count].weight)


def _named(order: list[str], ids: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(campaign, request id) of each permit in slot order: the i-th time a campaign comes
    in ``order`` it feeds its i-th parked call."""
    taken = dict.fromkeys(ids, 0)
    named = []
    for campaign in order:
        named.append((campaign, ids[campaign][taken[campaign]]))
        taken[campaign] += 1
    return named


def _next_pass(grant: Grant, lead: float, recheck: float) -> float:
    """Seconds until an account's next feed pass: when the next permit can be reserved within
    the lead; at the cap on live calls, when the earliest slot lapses (a freed slot makes the
    account due at once: slot_free.lua; one freed between this pass's reservation and its
    end, feed_done.lua sees), or after ``recheck`` at the latest."""
    if not grant.granted:
        wait = grant.wait
    else:
        wait = grant.wait + grant.count * grant.interval_us / 1e6 - lead
    if grant.slots_full is not None:
        wait = max(wait, min(grant.slots_full, recheck))
    return max(wait, MIN_PASS_GAP)


class FeedLoop:
    """The feeder thread of one worker: a pass, then a wait for the next due time or a nudge."""

    def __init__(
        self,
        feeder: Feeder,
        settings: Settings,
        *,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self.feeder = feeder
        self.settings = settings
        self.on_pass = on_pass
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        tick = self.settings.sweep_interval_seconds
        while not self._stop.is_set():
            try:
                result = self.feeder.run_once()
                if self.on_pass is not None:
                    self.on_pass(result)
                wait = tick if result.next_in is None else min(result.next_in, tick)
                if wait > 0:
                    self.feeder.ledger.wait_for_nudge(wait)
            except redis.RedisError as exc:
                log.warning("feed pass failed: %s", exc.__class__.__name__)
                self._stop.wait(tick)
            except Exception:
                log.exception("feed pass failed")
                self._stop.wait(tick)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="callq-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.sweep_interval_seconds + 5)
