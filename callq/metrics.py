"""Every Prometheus metric of the project, in one place.

The worker serves them on ``METRICS_PORT`` (threads pool: one process, all threads share the
registry); the callback receiver on its own ``/metrics``. Gauges that describe the whole
deployment (calls in doubt, open breakers) are read from Redis at scrape time, so every
replica reports the same true value; alert on ``max()`` of them (callq.store.gauges).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CALLS = Counter("callq_calls", "Calls/connect attempts by outcome", ["outcome"])
EXOTEL_LATENCY = Histogram(
    "callq_exotel_latency_seconds",
    "Time Exotel took to answer Calls/connect",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
LIMITER_WAIT = Histogram(
    "callq_limiter_wait_seconds",
    "Time a call waited for a permit from the global limiter",
    buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
RATE_LIMITED = Counter("callq_rate_limited", "HTTP 429 answers from Exotel")
LIVE_CALLS_REFUSED = Counter(
    "callq_live_calls_refused",
    "Calls Exotel refused at its cap on concurrent calls (EXOTEL_MAX_LIVE_CALLS is above the "
    "account's real cap, or another client uses the account)",
)
NUMBER_CAPPED = Counter(
    "callq_number_capped",
    "Calls refused at the per-number cap (NUMBER_DAILY_CAP, --number-cap): held until the "
    "number may be called again, or skipped (that is past the campaign's end_at)",
    ["verdict"],
)
FED = Counter("callq_fed_calls", "Parked calls the feed handed to the queue with a permit")
FEED_HELD = Counter(
    "callq_feed_held_passes",
    "Feed passes that handed out no permit because the oldest fed message in the calls queue "
    "was already late for its slot (FEED_BACKPRESSURE: the workers' threads are behind)",
)
FED_LATE = Counter(
    "callq_fed_late",
    "Fed calls that reached a worker after their permit's slot (the permit went unused; the "
    "call reserved another): a sign of too few free worker threads",
)
UNREPLICATED = Counter(
    "callq_unreplicated",
    "Calls held back unsent because no Redis replica acknowledged the sent mark in time "
    "(REDIS_WAIT_REPLICAS); they are retried",
)
CALLBACKS = Counter(
    "callq_callbacks",
    "StatusCallbacks received, by call status and match result",
    ["status", "match"],
)
RECONCILED = Counter("callq_reconciled", "Reconcile verdicts", ["verdict"])
STATUS_BACKFILL = Counter(
    "callq_status_backfill",
    "call_status backfill: look-ups made and what came of each call looked up",
    ["result"],
)
