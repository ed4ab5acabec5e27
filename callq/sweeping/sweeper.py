"""The lease sweeper: a timer in every worker, safe to run in many at once.

Every few seconds it asks the ledger which calls are past their deadline and lets
``sweep.lua`` judge each one: a `dialing` call whose lease ran out is requeued if nothing was
sent, or put `in_doubt` if its request went out; an overdue retry is republished; an in-doubt
call whose check is due gets a reconcile task. It does not wait for the broker's
visibility_timeout, which is hours. It also runs the call_status backfill (callq.dialing.backfill).
(Parked calls are the feed's: worker.feed.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import redis

from callq.settings import Settings, caller_ids
from callq.store.ledger import Ledger
from callq.store.records import SweepVerdict

log = logging.getLogger("callq.sweeper")


class Sweeper:
    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        *,
        requeue: Callable[[str], None],
        reconcile: Callable[[str], None] | None = None,
        backfill: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.requeue = requeue
        self.reconcile = reconcile
        self.backfill = backfill  # the call_status backfill (callq.dialing.backfill), if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> dict[str, int]:
        """One pass. Returns the count of each verdict (for logs and tests)."""
        s = self.settings
        seen: dict[str, int] = {}
        verdicts = self.ledger.sweep_many(
            self.ledger.due(),
            # Re-arm far enough ahead for the published reconcile to get through the queue;
            # it sets the call's real next look itself. (Re-arming at the reconcile interval
            # piled up copies behind a long queue: 2,752 tasks for 104 calls in a chaos run.)
            reconcile_in=max(s.reconcile_interval_seconds, s.retry_overdue_seconds),
            overdue_in=s.retry_overdue_seconds,
            queued_overdue_in=s.queued_overdue_seconds,
        )
        unpublished: list[str] = []
        for request_id, verdict in verdicts:
            seen[verdict] = seen.get(verdict, 0) + 1
            if verdict is SweepVerdict.IN_DOUBT:
                log.warning("%s: worker lost after sending; now in doubt", request_id)
                continue
            publish = self.requeue if verdict is SweepVerdict.REQUEUE else None
            if verdict is SweepVerdict.RECONCILE:
                publish = self.reconcile
            if publish is None:
                continue
            if unpublished:  # the broker refused one already this pass: not each in turn
                unpublished.append(request_id)
                continue
            try:
                publish(request_id)
            except Exception as exc:
                # The ledger answered (sweep.lua re-armed the deadline: for a call still
                # queued, queued_overdue ahead, hours) but the broker did not: the ledger
                # apart from it (LEDGER_REDIS_URL), or a publish that failed. These calls
                # are looked at again one guard from now, not hours.
                log.warning(
                    "sweep: publish failed (%s); republished after %.0f s",
                    exc.__class__.__name__,
                    s.retry_overdue_seconds,
                )
                unpublished.append(request_id)
        if unpublished:
            self.ledger.rearm(unpublished, s.retry_overdue_seconds)
            seen["unpublished"] = len(unpublished)
        if self.backfill is not None:
            for what, n in self.backfill().items():
                if n and what != "locked":
                    seen[f"backfill_{what}"] = seen.get(f"backfill_{what}", 0) + n
        return seen

    def run(self) -> None:
        upgraded = self._upgrade()
        while not self._stop.wait(self.settings.sweep_interval_seconds):
            if not upgraded:
                upgraded = self._upgrade()
            try:
                seen = self.sweep_once()
                self._heartbeat()
                if seen:
                    log.info("sweep: %s", seen)
            except redis.RedisError as exc:
                log.warning("sweep failed: %s", exc.__class__.__name__)
            except Exception:
                log.exception("sweep failed")

    def _upgrade(self) -> bool:
        """At start (and each tick until it succeeds): index the unresolved calls that a
        release before the unresolved index sent, so reconcile sees them as rivals.
        Idempotent; every worker may run it. True when done."""
        s = self.settings
        try:
            n = self.ledger.index_unresolved(caller_ids(s))
        except redis.RedisError as exc:
            log.warning("could not index unresolved calls yet: %s", exc.__class__.__name__)
            return False
        if n:
            log.warning("indexed %d unresolved calls sent before the unresolved index", n)
        return True

    def _heartbeat(self) -> None:
        """Touch WORKER_HEARTBEAT_FILE after a sweep that reached Redis (liveness probe)."""
        path = self.settings.worker_heartbeat_file
        if path:
            try:
                p = Path(path)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            except OSError as exc:
                log.warning("cannot touch heartbeat file: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="callq-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
