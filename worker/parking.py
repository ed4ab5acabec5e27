"""Drain parked calls back onto the queue: run by the sweeper in every worker.

A call is parked (see ``claim.lua`` and ``release.lua``) when its campaign is paused, outside
its calling window or before its ``send_at``, when its account's breaker is open, or when no
permit is free within the limiter's horizon. Its task message is then consumed: no thread
waits on it and no ETA task piles up in the transport. The campaign's entry in the wake set
says when to look again; this module looks, judges the campaign as a whole, and then:

* cancelled: ends parked calls as `cancelled`; past ``end_at``: as `expired`;
* still waiting (window closed, breaker open): sets the next look for the reopening;
* otherwise: pushes back the oldest parked calls, as many as the account can still dial
  before the next pass (the limiter's free slots within the sweep interval plus the horizon,
  plus one), so a large campaign is fed to the queue at the account's own pace.
"""

from __future__ import annotations

import logging

from celery import Celery

from callq.dialer import Dialer
from callq.ledger import Ledger
from config import Settings
from worker.app import CALLS_QUEUE, PRIORITY_QUEUE
from worker.messages import TaskMessages

log = logging.getLogger("callq.parking")

SETTLE_BATCH = 500
MAX_DRAIN = 1000


class Parking:
    def __init__(self, ledger: Ledger, settings: Settings, dialer: Dialer, app: Celery) -> None:
        self.ledger = ledger
        self.settings = settings
        self.dialer = dialer
        self.normal = TaskMessages(app, queue=CALLS_QUEUE)
        self.priority = TaskMessages(app, queue=PRIORITY_QUEUE)

    def drain_once(self) -> dict[str, int]:
        """One pass over the campaigns due. Returns counts by outcome (for logs and tests)."""
        seen: dict[str, int] = {}
        for campaign in self.ledger.due_campaigns():
            try:
                what, n = self.drain(campaign)
            except (ValueError, KeyError) as exc:
                # Unreadable controls (meta edited by hand?): this campaign waits and says
                # why; the others are drained.
                log.error("campaign %s: cannot drain its parked calls: %s", campaign, exc)
                self.ledger.rewake(campaign, 60.0)
                what, n = "error", 1
            seen[what] = seen.get(what, 0) + n
        return seen

    def drain(self, campaign: str) -> tuple[str, int]:
        ledger = self.ledger
        ctl = self.dialer.controls_of(campaign, fresh=True)
        if ctl.cancelled:
            return "cancelled", ledger.settle_parked(campaign, "cancelled", SETTLE_BATCH)
        gate = ctl.gate(self.dialer.clock())
        if gate.kind == "expire":
            return "expired", ledger.settle_parked(campaign, "expired", SETTLE_BATCH)
        if gate.kind == "wait":
            ledger.rewake(campaign, gate.wait)
            return "waiting", 0
        acct = self.dialer.account(ctl.account)
        if acct is None:
            ledger.rewake(campaign, 60.0)
            return "unknown_account", 0
        if acct.breaker is not None:
            closed_in = acct.breaker.open_for()
            if closed_in > 0:
                ledger.rewake(campaign, closed_in)
                return "breaker_open", 0
        s = acct.settings
        # As many as the account can still dial before the next pass: the free slots in the
        # horizon plus the next sweep interval, read from the limiter (so a drain never
        # pushes calls that would only be parked again), and at least one.
        within = self.settings.sweep_interval_seconds + s.rate_limit_max_ahead_seconds
        count = min(MAX_DRAIN, acct.limiter.free_slots(within) + 1)
        messages = self.priority if ctl.priority else self.normal
        ids = ledger.parked(campaign, count)
        moved, left = ledger.unpark(
            campaign,
            [(rid, messages.encode(rid)) for rid in ids],
            queue_key=messages.queue_key,
            # Short: the drain is metered, so the message is taken within seconds; if it is
            # lost (kombu's BRPOP-then-unacked gap when Redis dies), the sweeper republishes
            # the call after this, not after QUEUED_OVERDUE_SECONDS.
            overdue=self.settings.retry_overdue_seconds,
            rewake_in=self.settings.sweep_interval_seconds,
            end_at=ctl.end_at,
        )
        if moved < 0:
            return "paused", 0
        if moved:
            log.info(
                "campaign %s: %d parked calls back on the queue, %d left", campaign, moved, left
            )
        return "unparked", moved
