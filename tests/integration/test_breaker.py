"""The per-account breaker's states in Redis (the campaign with real workers is in
tests/system/test_breaker.py)."""

from __future__ import annotations

import time
from typing import Any

from callq.dialing.breaker import Breaker
from callq.store.keys import Keys


def test_given_a_closed_breaker_when_tripped_then_open_then_one_probe_then_closed(
    rclient: Any, keys: Keys
) -> None:
    b = Breaker(rclient, keys, "acct", cooldown=0.2, max_cooldown=1.0)
    assert b.check().mode == "closed"
    assert b.trip("HTTP 401: bad token") == 0.2
    state = b.check()
    assert state.mode == "open" and 0 < state.wait <= 0.2 and "401" in state.reason
    time.sleep(0.25)
    assert b.check().mode == "probe"  # exactly one caller gets the probe
    assert b.check().mode == "open"
    assert b.trip("HTTP 401 again") == 0.4  # a failed probe doubles the cool-down
    b.close()
    assert b.check().mode == "closed" and b.state() == {}
