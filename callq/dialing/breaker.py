"""A per-account breaker: an account-level refusal pauses dialling instead of failing calls.

A 401, a 402, or a 403 about credentials (see ``Rejected.account_level``) is about the
account, not the call: every other call would get the same answer. So the breaker opens for
``BREAKER_COOLDOWN_SECONDS``; calls stay where they are (queued or retrying): worker
threads wait unclaimed, so the queue stays in Redis instead of piling up as ETA tasks.
Then it half-opens: exactly one worker wins the probe lock and dials one call. A good answer
closes the breaker; another account-level refusal reopens it with twice the cool-down (up
to ``BREAKER_MAX_COOLDOWN_SECONDS``).

State lives in Redis (one hash per account, plus a probe lock), so every worker of every pod
sees it. Closed means the hash does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import redis

from callq.store.keys import Keys

log = logging.getLogger("callq.breaker")

BreakerMode = Literal["closed", "open", "probe"]
"""closed: dial; open: wait; probe: this caller dials the one half-open probe."""


@dataclass(frozen=True)
class BreakerState:
    mode: BreakerMode
    wait: float = 0.0  # seconds until it half-opens (when open)
    reason: str = ""


class Breaker:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        account: str,
        *,
        cooldown: float = 60.0,
        max_cooldown: float = 900.0,
    ) -> None:
        self.redis = client
        self.key = keys.breaker(account)
        self.probe_key = f"{self.key}:probe"
        self.account = account
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown

    def _now_ms(self) -> int:
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def check(self, probe_ttl: float = 120.0) -> BreakerState:
        """May this worker dial now? ``probe``: yes, as the one half-open probe."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.key, "until", "reason")
        pipe.time()
        (until, reason), (sec, usec) = pipe.execute()
        if until is None:
            return BreakerState("closed")
        now = int(sec) * 1000 + int(usec) // 1000
        if now < int(until):
            return BreakerState("open", (int(until) - now) / 1000.0, str(reason or ""))
        if self.redis.set(self.probe_key, "1", nx=True, px=int(probe_ttl * 1000)):
            return BreakerState("probe", 0.0, str(reason or ""))
        return BreakerState("open", min(self.cooldown, 5.0), str(reason or ""))

    def open_for(self) -> float:
        """Seconds until the breaker half-opens; 0 when closed or half-open. Takes no probe."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.key, "until")
        pipe.time()
        until, (sec, usec) = pipe.execute()
        if until is None:
            return 0.0
        return max(0.0, (int(until) - (int(sec) * 1000 + int(usec) // 1000)) / 1000.0)

    def trip(self, reason: str) -> float:
        """Open (or reopen, with doubled cool-down). Returns the cool-down in seconds."""
        previous = self.redis.hget(self.key, "cooldown")
        cooldown = (
            self.cooldown if previous is None else min(float(previous) * 2, self.max_cooldown)
        )
        now = self._now_ms()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.key,
            mapping={
                "until": now + int(cooldown * 1000),
                "cooldown": cooldown,
                "reason": reason[:300],
                "opened_at": now,
            },
        )
        pipe.expire(self.key, 86400)
        pipe.delete(self.probe_key)
        pipe.execute()
        log.warning("breaker open for account %s for %.0f s: %s", self.account, cooldown, reason)
        return cooldown

    def close(self) -> None:
        if self.redis.delete(self.key, self.probe_key):
            log.warning("breaker closed for account %s", self.account)

    def state(self) -> dict[str, str]:
        """The raw breaker hash (empty when closed), for status and metrics."""
        return {str(k): str(v) for k, v in self.redis.hgetall(self.key).items()}
