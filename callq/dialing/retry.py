"""Retry policy as data and pure functions (no broker needed to test it).

Celery's ``get_exponential_backoff_interval`` only takes whole seconds (it draws with
``randrange``), which rules out the sub-second backoffs of time-scaled tests and demos, so the
same exponential-with-jitter rule is written here as a pure function.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callq.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base: float = 5.0
    cap: float = 300.0
    jitter: bool = True

    @classmethod
    def for_settings(cls, settings: Settings) -> RetryPolicy:
        """MAX_ATTEMPTS, RETRY_BACKOFF_BASE_SECONDS, RETRY_BACKOFF_MAX_SECONDS, RETRY_JITTER."""
        return cls(
            max_attempts=settings.max_attempts,
            base=settings.retry_backoff_base_seconds,
            cap=settings.retry_backoff_max_seconds,
            jitter=settings.retry_jitter,
        )

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` (1-based) was the last one allowed."""
        return attempt >= self.max_attempts

    def backoff(self, attempt: int) -> float:
        """The step after ``attempt``: ``base * 2**(attempt-1)``, capped."""
        return min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds before the next attempt. With jitter, a uniform draw in [step/2, step]
        ("equal jitter": spread out, never straight back). Never below the server's
        Retry-After hint, which is itself capped."""
        step = self.backoff(attempt)
        if self.jitter:
            step = (rng or random).uniform(step / 2, step)
        if retry_after is not None:
            step = max(step, min(retry_after, self.cap))
        return step
