"""The key layout a deployment's ledger was written in, checked before a process uses it.

Two layouts (callq.store.keys): 1 plain (``callq:call:<id>``), for one Redis or a Sentinel
master; 2 tagged (``{callq}:call:<id>``), every key in one hash slot, for a Redis Cluster
(``LEDGER_REDIS_URL=redis+cluster://...``). The first process to use a ledger writes its
layout's version under :meth:`Keys.layout`; every worker, producer, API and receiver checks
it at start and refuses a ledger of the other layout: reading one layout's keys with the
other's names would find no call, and would dial again the calls it cannot see. The way from
one layout to the other is to drain the deployment (every campaign finished or cancelled, no
call dialling or in doubt), then switch ``KEY_PREFIX`` or the ledger's server.
"""

from __future__ import annotations

import logging

import redis

from callq.settings import ConfigError, Settings
from callq.store.keys import PLAIN, TAGGED, Keys

__all__ = ["check_layout"]

log = logging.getLogger("callq.layout")

_NAMES = {PLAIN: "1 (plain keys, one Redis)", TAGGED: "2 (keys tagged {prefix}, a Redis Cluster)"}


def _name(version: int | str) -> str:
    try:
        return _NAMES[int(version)]
    except (KeyError, ValueError):
        return f"{version!r} (unknown to this version of callq)"


def check_layout(client: redis.Redis, keys: Keys, settings: Settings | None = None) -> int | None:
    """Write ``keys``' layout version if the ledger has none, and raise :class:`ConfigError`
    if it holds another (or, on one Redis, if keys of the tagged layout are there too).
    Returns the version; ``None`` when Redis does not answer (a process may start before its
    Redis does, and waits for it as before: the check is then left undone, with a warning).
    One round trip (two the first time)."""
    try:
        return _check(client, keys, settings)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("key layout not checked: the ledger's Redis does not answer (%s)", exc)
        return None


def _check(client: redis.Redis, keys: Keys, settings: Settings | None) -> int:
    mine = keys.version
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.layout())
    if not keys.tagged:
        # One Redis holds both layouts' keys: a tagged ledger here is another layout's.
        pipe.get(Keys(keys.prefix, tagged=True).layout())
    found, *other = pipe.execute()
    conflict = other[0] if other and other[0] is not None else None
    if found is None and conflict is None:
        client.set(keys.layout(), mine, nx=True)
        found = client.get(keys.layout())
    if conflict is None and found is not None and str(found) == str(mine):
        return mine
    seen = conflict if conflict is not None else found
    prefix = settings.key_prefix if settings is not None else keys.prefix
    where = "LEDGER_REDIS_URL (or REDIS_URL)"
    raise ConfigError(
        f"KEY_PREFIX={prefix}: the ledger on {where} holds key layout {_name(seen or '?')}, "
        f"and this process would use layout {_name(mine)}. Drain the deployment first "
        "(every campaign finished or cancelled, no call dialling or in doubt), then switch "
        "KEY_PREFIX or the ledger's server (docs/cluster.md, 'Key layout')"
    )
