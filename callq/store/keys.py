"""Every Redis key name of the project, and nothing else builds one.

All keys share one prefix (``KEY_PREFIX``, default ``callq``) so that a deployment, or a test,
owns a namespace of its own. Lua scripts never build key names: they get them in KEYS.
The Celery broker's own keys (the ``calls`` list, ``unacked`` …) are kombu's, in the broker's
database (``REDIS_URL``), which is the ledger's unless ``LEDGER_REDIS_URL`` puts it apart.

The key layout, and its version (kept in :meth:`Keys.layout`, checked at start by
callq.store.layout):

* **1, plain**: ``callq:call:<id>``, ``callq:deadlines`` ... One Redis (or a Sentinel master).
* **2, tagged**: every key starts with the hash tag ``{callq}`` (``{callq}:call:<id>``), so
  all of a deployment's keys live in one hash slot of a Redis Cluster and every script
  touches one slot (no CROSSSLOT). Used when ``LEDGER_REDIS_URL`` is a Cluster URL. One
  deployment is one slot: it is spread over a Cluster by having several deployments
  (KEY_PREFIX each), not yet within one (docs/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callq.settings import Settings

#: The key layout versions (see the module's doc).
PLAIN, TAGGED = 1, 2


@dataclass(frozen=True)
class Keys:
    prefix: str = "callq"
    #: Every key carries the hash tag ``{prefix}`` (layout 2, a Redis Cluster).
    tagged: bool = False

    @classmethod
    def for_settings(cls, settings: Settings) -> Keys:
        """The deployment's keys: tagged when the ledger is on a Redis Cluster."""
        from callq.store.connect import is_cluster_url

        url = settings.ledger_redis_url or settings.redis_url or ""
        return cls(settings.key_prefix, tagged=is_cluster_url(url))

    @property
    def base(self) -> str:
        """What every key starts with: ``callq``, or ``{callq}`` tagged."""
        return f"{{{self.prefix}}}" if self.tagged else self.prefix

    @property
    def slot_key(self) -> str:
        """A key in the deployment's hash slot (a Cluster client pins its pool to it)."""
        return f"{{{self.prefix}}}"

    @property
    def version(self) -> int:
        """This layout's version: 1 plain, 2 tagged."""
        return TAGGED if self.tagged else PLAIN

    def layout(self) -> str:
        """String: the layout version the deployment's keys were written in (1 plain, 2
        tagged), set on first use; a process of another layout refuses to start."""
        return f"{self.base}:layout"

    # One call ---------------------------------------------------------------------------
    def call(self, request_id: str) -> str:
        """Hash: the call record (see ledger.CallRecord)."""
        return f"{self.base}:call:{request_id}"

    def attempts(self, request_id: str) -> str:
        """List: one JSON line per attempt (outcome, sid, error, times)."""
        return f"{self.base}:attempts:{request_id}"

    # One campaign -----------------------------------------------------------------------
    def campaign_counts(self, campaign: str) -> str:
        """Hash: state -> count, plus ``total``. Moved in the same step as each transition."""
        return f"{self.base}:campaign:{campaign}:counts"

    def campaign_call_status(self, campaign: str) -> str:
        """Hash: call_status (completed, busy, ...) -> count."""
        return f"{self.base}:campaign:{campaign}:call_status"

    def campaign_calls(self, campaign: str) -> str:
        """List: request ids in the order they were enqueued (for report and cancel)."""
        return f"{self.base}:campaign:{campaign}:calls"

    def campaign_meta(self, campaign: str) -> str:
        """Hash: campaign-level facts (created_at, paused, account, ...)."""
        return f"{self.base}:campaign:{campaign}:meta"

    def campaign_parked(self, campaign: str) -> str:
        """Sorted set: request id -> created_at ms. Calls held back (paused, outside the
        calling window, the account's breaker open, or no permit within the horizon). Their
        messages were consumed: this set is their only pointer until the sweeper drains it."""
        return f"{self.base}:campaign:{campaign}:parked"

    def campaign_zones(self, campaign: str) -> str:
        """Set: the callee zones recorded on the campaign's calls ('' for none), written at
        enqueue. A hint for a ``--window-zone callee`` campaign's judge (which zones to look
        at); the dialer judges every call's own zone whatever it holds."""
        return f"{self.base}:campaign:{campaign}:zones"

    def campaign_zone_sort(self, campaign: str) -> str:
        """Hash: zone band -> how many calls of it a ``--window-zone callee`` judge has looked
        at and left (their zone closed): the next judge goes on from there, so calls of an
        open zone behind many of a closed one sharing their band are reached."""
        return f"{self.base}:campaign:{campaign}:zone_sort"

    def wake(self) -> str:
        """Sorted set: campaign -> ms (Redis clock) when a feeder next judges the campaign
        (its controls, window, end_at: see worker.feed). Every script that parks a call sets
        it, so a parked call always has a way back. A paused campaign without end_at has no
        entry; resume adds one."""
        return f"{self.base}:wake"

    # One account's feed -----------------------------------------------------------------
    def feed(self, account: str) -> str:
        """Sorted set: campaign -> virtual time. The account's open campaigns with parked
        calls; the feed hands the account's permits to the lowest virtual time first, and
        a campaign's time grows by 1/weight per call fed (weighted round-robin)."""
        return f"{self.base}:feed:{account}"

    def feeds(self) -> str:
        """Sorted set: account -> ms (Redis clock) when its feed is next due. Taking a turn
        moves the score ahead by a short lease, so one feeder at a time feeds an account."""
        return f"{self.base}:feeds"

    def nudge(self) -> str:
        """List: a wake-up for the feeders (enqueue, pause, resume, set, cancel). A feeder
        blocks on it between passes, so a new campaign is judged at once, not one tick later."""
        return f"{self.base}:nudge"

    def campaigns(self) -> str:
        """Set: every campaign id known."""
        return f"{self.base}:campaigns"

    def campaigns_by_id(self) -> str:
        """Sorted set, all scores 0, members campaign ids: the same ids as :meth:`campaigns`,
        in an order that pages (``GET /v1/campaigns``: ZRANGE BYLEX after the last id seen).
        ``enqueue.lua`` adds a campaign to both in the same step; a ledger from before the
        index (fewer members than the set) is indexed again when the list is read."""
        return f"{self.base}:campaigns:by_id"

    # Global indexes ---------------------------------------------------------------------
    def deadlines(self) -> str:
        """Sorted set: request id -> ms (Redis clock) when the sweeper must look at it.

        dialing: the lease end; retrying: when an overdue retry is republished;
        in_doubt: when reconcile is next due.
        """
        return f"{self.base}:deadlines"

    def sids(self) -> str:
        """Hash: Exotel CallSid -> request id."""
        return f"{self.base}:sids"

    def unresolved(self) -> str:
        """Sorted set, all scores 0, members ``{parties}|{request_id}``: every call dialling
        past its sent mark or in doubt, by its two numbers (callq.parties), so reconcile can
        see every request that could own a call Call Details lists. Range it by lex."""
        return f"{self.base}:unresolved"

    def unresolved_indexed(self) -> str:
        """String: set once every call sent before the unresolved index existed is in it
        (a worker's start-up scan); until then reconcile runs the scan itself first."""
        return f"{self.base}:unresolved:indexed"

    def awaiting_status(self) -> str:
        """Sorted set: request id -> ms (Redis clock) when an originated call that has no
        terminal call_status yet is due for a Call Details look-up (the backfill)."""
        return f"{self.base}:awaiting_status"

    def backfill_lock(self) -> str:
        """String with a TTL: held by the worker running a backfill pass, so one pass runs
        per interval over all workers."""
        return f"{self.base}:backfill:lock"

    def pending_callback(self, sid: str) -> str:
        """String (JSON, with TTL): a callback that arrived before its Sid was recorded."""
        return f"{self.base}:pending_cb:{sid}"

    def limiter(self, account: str) -> str:
        """String ``"<tat> <at> <ahead>"``: the limiter's theoretical arrival time, the time of
        its last grant and how far ahead that grant reached (microseconds, Redis clock); see
        lua/limiter_acquire.lua."""
        return f"{self.base}:limiter:{account}"

    def live_slots(self, account: str) -> str:
        """Sorted set: ``{weight}:{request id}`` -> ms (Redis clock) when the slots lapse. The
        account's live calls under EXOTEL_MAX_LIVE_CALLS: weight 2 for a connect-two-numbers
        call, 1 for a flow call. Taken with the permit (lua/limiter_acquire.lua), freed by
        lua/slot_free.lua, and a member past its score is dropped by the next taker."""
        return f"{self.base}:live:{account}"

    def number_calls(self, number: str) -> str:
        """Sorted set: ``{request id}#{redial base}`` -> ms (Redis clock) when the call to
        ``number`` (E.164, the callee) was taken for dialling, restamped with its sent time by
        lua/mark_sent.lua, over every campaign and account: the per-number cap
        (NUMBER_DAILY_CAP, ``--number-cap``). Checked and taken in the claim's own step
        (lua/claim.lua) or by the feed before the permit (lua/number_take.lua); given back by
        a release (lua/release.lua), by a claim that parks the call or ends it unsent (or
        finds it cancelled or expired), or by the feed for a call still parked or ended unsent,
        while the count is its current dial's (lua/number_give.lua; a failed pass too);
        members older than the longest cap period go with the next take."""
        return f"{self.base}:number:{number}"

    def master_epoch(self) -> str:
        """String: the ``run_id`` of the Redis master the workers last saw (callq.store.epoch).
        Replicated with everything else, so a promoted replica still holds its old master's."""
        return f"{self.base}:master_epoch"

    def master_hold(self) -> str:
        """String with TTL: set when a new Redis master is seen; while it lives no limiter
        grants a permit (its value: the run_id of the master before)."""
        return f"{self.base}:master_hold"

    def breaker(self, account: str) -> str:
        """Hash: per-account breaker (state, reason, until)."""
        return f"{self.base}:breaker:{account}"

    # Events sent onward (callq.store.events) ----------------------------------------------
    def events(self) -> str:
        """Stream: one entry per event (call.final, call.attempt, campaign.completed), added
        in the same Lua step as the transition that causes it; fields ``id``, ``type``,
        ``at`` (ms, Redis clock) and ``data`` (JSON). Read by the delivery consumer group."""
        return f"{self.base}:events"

    def campaign_events(self, campaign: str) -> str:
        """Hash: the campaign's final calls as events saw them: ``final`` (how many),
        ``state:<s>`` and ``call_status:<s>`` counts, and ``completed_total`` (the total at
        the last campaign.completed, so each completion is written once)."""
        return f"{self.base}:campaign:{campaign}:events"

    def events_due(self, sink: str) -> str:
        """Sorted set: stream entry id -> ms (Redis clock) when it is next sent to one
        receiver (``sink``: a short hash of its URL). A taken entry's score moves ahead by a
        lease, so one worker at a time sends it."""
        return f"{self.base}:events:due:{sink}"

    def events_tries(self, sink: str) -> str:
        """Hash: stream entry id -> failed sends so far to that receiver (the backoff)."""
        return f"{self.base}:events:tries:{sink}"

    def events_dead(self) -> str:
        """Hash: ``{sink}|{entry id}`` -> JSON (the event, its receiver, tries, last error):
        events a receiver did not take within the retry horizon, kept for inspection."""
        return f"{self.base}:events:dead"
