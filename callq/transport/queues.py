"""Queue and task names: what the producer, the feed and the worker agree on."""

from __future__ import annotations

CALLS_QUEUE = "calls"
PRIORITY_QUEUE = "calls.priority"  # consumed first by every worker that consumes `calls`
PLACE_CALL = "callq.place_call"
RECONCILE = "callq.reconcile"
