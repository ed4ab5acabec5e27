"""The Lua scripts, loaded once from package data and registered on a client.

Each script is ``callq/store/lua/{name}.lua`` with ``prelude.lua`` put before it: the Redis
clock (``now_ms()``, ``now_us()``), a call's move between states (``move``) and parking
(``park``), so each transition says only what is special about it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

PRELUDE = "prelude"


@cache
def text(name: str) -> str:
    """The text of ``callq/store/lua/{name}.lua`` as it is on disk."""
    return (files("callq.store") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """What runs in Redis: the prelude, then the script."""
    return f"{text(PRELUDE)}\n{text(name)}"


class Scripts:
    """Every script, registered on one client: ``scripts.claim(keys=[...], args=[...])``.
    One attribute per script, so a misspelt script name fails the type check."""

    def __init__(self, client: redis.Redis) -> None:
        def register(name: str) -> Script:
            return client.register_script(source(name))

        # The call's transitions.
        self.enqueue = register("enqueue")
        self.claim = register("claim")
        self.mark_sent = register("mark_sent")
        self.release = register("release")
        self.finish = register("finish")
        self.sweep = register("sweep")
        self.cancel = register("cancel")
        self.callback = register("callback")
        self.callback_orphan = register("callback_orphan")
        self.index_unresolved = register("index_unresolved")
        self.backfill_take = register("backfill_take")
        # Parked calls and the feed.
        self.unpark = register("unpark")
        self.settle_parked = register("settle_parked")
        self.zone_move = register("zone_move")
        self.due = register("due")
        self.rewake = register("rewake")
        self.feed_turn = register("feed_turn")
        self.feed_join = register("feed_join")
        self.feed_done = register("feed_done")
        self.number_take = register("number_take")
        self.number_give = register("number_give")
        # Events sent onward (callq.store.events).
        self.events_take = register("events_take")
        # The limiter.
        self.limiter_acquire = register("limiter_acquire")
        self.limiter_push_back = register("limiter_push_back")
        # Live-call slots (taken in limiter_acquire).
        self.slot_free = register("slot_free")
