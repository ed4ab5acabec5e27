"""Retry policy as data and pure functions (no broker needed to test it)."""

from __future__ import annotations

from dataclasses import dataclass

from celery.utils.time import get_exponential_backoff_interval


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base: float = 5.0
    cap: float = 300.0
    jitter: bool = True

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` (1-based) was the last one allowed."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before the attempt after ``attempt``: Celery's exponential backoff
        (``base * 2**(attempt-1)``, capped, full jitter when enabled), never below the server's
        Retry-After hint."""
        backoff = float(
            get_exponential_backoff_interval(
                factor=self.base, retries=max(attempt - 1, 0), maximum=self.cap,
                full_jitter=self.jitter,
            )
        )
        if self.jitter:
            # Full jitter can draw 0; keep a floor of a tenth of the step so that a burst of
            # failures does not come straight back at Exotel.
            backoff = max(backoff, min(self.cap, self.base * 2 ** max(attempt - 1, 0)) / 10)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.cap))
        return backoff
