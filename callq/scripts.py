"""The Lua scripts, loaded once from package data and registered on a client."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "mark_sent",
    "release",
    "finish",
    "expire",
    "cancel",
    "unpark",
    "settle_parked",
    "limiter_acquire",
    "limiter_push_back",
    "callback",
    "callback_orphan",
    "due",
    "feed_turn",
    "feed_join",
    "feed_done",
    "backfill_take",
    "index_unresolved",
    "rewake",
)


@cache
def source(name: str) -> str:
    """The text of ``callq/lua/{name}.lua``."""
    return (files("callq") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Every script registered on one client. ``scripts.claim(keys=[...], args=[...])``."""

    def __init__(self, client: redis.Redis) -> None:
        self._by_name: dict[str, Script] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    def __getattr__(self, name: str) -> Script:
        try:
            return self._by_name[name]
        except KeyError:
            raise AttributeError(name) from None
