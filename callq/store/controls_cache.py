"""Each campaign's controls, read from its meta hash at most once per ``ttl`` per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from callq.campaign.controls import Controls
from callq.store.keys import Keys


class ControlsCache:
    """Each campaign's controls, read at most once per ``ttl`` seconds per process."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        default_window: str,
        default_timezone: str,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.default_window = default_window
        self.default_timezone = default_timezone
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Controls]] = {}

    def get(self, campaign: str, *, fresh: bool = False) -> Controls:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(campaign)
        if hit is not None and not fresh and now - hit[0] < self.ttl:
            return hit[1]
        meta = self.redis.hgetall(self.keys.campaign_meta(campaign))
        ctl = Controls.from_meta(
            campaign,
            meta,  # type: ignore[arg-type]
            default_window=self.default_window,
            default_timezone=self.default_timezone,
        )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[campaign] = (now, ctl)
        return ctl
