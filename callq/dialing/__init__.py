"""Placing calls: one attempt (the dialer), the global limiter, the breaker, retries,
settling in-doubt calls (reconcile) and the call_status backfill. Knows nothing of Celery.

May import: callq.store, callq.exotel, callq.campaign, and the base modules.
"""
