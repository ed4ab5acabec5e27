"""Events sent onward: the stream the Lua transitions write to, and its delivery state.

A transition that makes a call final (``failed``, ``cancelled``, ``expired``, ``skipped``, or
``originated`` once its terminal call_status is known and no redial follows) writes a
``call.final`` event into one Redis stream in the same script (``emit_final`` in
``lua/prelude.lua``); the call's last final event completes its campaign
(``campaign.completed``). Optionally each recorded attempt outcome writes ``call.attempt``.
Nothing is written when no ``EVENTS_URL`` is set.

Delivery (callq.sweeping.events) reads the stream with one consumer group and hands every
entry to each receiver ("sink") through a due set of its own; this module owns those keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis

from callq.settings import Settings
from callq.store.keys import Keys
from callq.store.scripts import Scripts

GROUP = "callq-delivery"
"""The consumer group that moves stream entries into the receivers' due sets."""


@dataclass(frozen=True)
class EventFlags:
    """What the scripts write: nothing (``on`` False), final-call events, per-attempt events
    too, and whether an ``originated`` call is final at once (no call_status will ever come:
    the call_status backfill is off and no CALLBACK_URL is set)."""

    on: bool = False
    per_attempt: bool = False
    originated_final: bool = False

    @classmethod
    def for_settings(cls, settings: Settings) -> EventFlags:
        """From the settings (``EVENTS_URL``, ``EVENTS_PER_ATTEMPT``, the backfill and
        ``CALLBACK_URL``)."""
        return cls(
            on=bool(settings.event_urls()),
            per_attempt=bool(settings.events_per_attempt),
            originated_final=not settings.call_status_backfill and not settings.callback_url,
        )

    def arg(self, *, originated_final: bool | None = None) -> str:
        """The scripts' events flag (see prelude.lua): '' off, else 'f' [+ 'a'] [+ 'o']."""
        if not self.on:
            return ""
        of = self.originated_final if originated_final is None else originated_final
        return "f" + ("a" if self.per_attempt else "") + ("o" if of else "")


def shown_url(url: str) -> str:
    """A receiver's URL as it may be stored and printed: scheme, host, port and path, without
    any user:password or query (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def sink_id(url: str) -> str:
    """A receiver's short stable name (its due set's key): a hash of its URL, so no
    secret and no path shows in key names."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Event:
    """One stream entry: ``entry`` (the stream id), ``id`` (stable: the receiver dedupes on
    it), ``type``, ``at`` (ms, Redis clock) and ``data``."""

    entry: str
    id: str
    type: str
    at: int
    data: dict[str, Any]

    @classmethod
    def from_fields(cls, entry: str, fields: dict[str, str]) -> Event:
        return cls(
            entry=entry,
            id=fields.get("id", ""),
            type=fields.get("type", ""),
            at=int(fields.get("at", "0") or 0),
            data=json.loads(fields.get("data") or "{}"),
        )

    def body(self) -> bytes:
        """The POST body: the same bytes on every try."""
        doc = {"id": self.id, "type": self.type, "at": self.at, "data": self.data}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _min_id(a: str, b: str) -> str:
    """The older of two stream entry ids."""

    def parts(x: str) -> tuple[int, int]:
        ms, _, seq = x.partition("-")
        return int(ms), int(seq or 0)

    return a if parts(a) <= parts(b) else b


def entry_ms(entry: str) -> int:
    """The Redis clock (ms) when a stream entry was added: the first part of its id."""
    return int(entry.split("-", 1)[0])


class EventLog:
    """The events stream and each receiver's delivery state. Safe to share between threads."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self.scripts = Scripts(client)

    # The stream -> each receiver's due set ----------------------------------------------

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; harmless when it exists."""
        try:
            self.redis.xgroup_create(self.keys.events(), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def pump(
        self, consumer: str, sinks: Sequence[str], *, count: int, block_ms: int, idle_ms: int
    ) -> int:
        """Move stream entries into every receiver's due set, then ack them, in one MULTI per
        batch: entries a dead consumer read but never acked are claimed first (after
        ``idle_ms``), then new ones (waiting up to ``block_ms``). Returns how many moved."""
        key = self.keys.events()
        got: list[str] = []
        # With justid, redis-py answers just the ids claimed.
        claimed = self.redis.xautoclaim(
            key, GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=count, justid=True
        )
        got += [str(x) for x in cast(list[str], claimed)]
        if not got:
            read = self.redis.xreadgroup(
                GROUP, consumer, {key: ">"}, count=count, block=block_ms if block_ms > 0 else None
            )
            for _, entries in cast(list[tuple[str, list[tuple[str, Any]]]], read or []):
                got += [str(entry) for entry, _ in entries]
        if not got:
            return 0
        sec, usec = self.redis.time()
        now = int(sec) * 1000 + int(usec) // 1000
        pipe = self.redis.pipeline(transaction=True)
        for sink in sinks:
            pipe.zadd(self.keys.events_due(sink), dict.fromkeys(got, now), nx=True)
        pipe.xack(key, GROUP, *got)
        pipe.execute()
        return len(got)

    # One receiver's deliveries -----------------------------------------------------------

    def take(self, sink: str, *, count: int, lease_ms: int) -> tuple[int, list[Event]]:
        """Due events of one receiver, each leased; and the Redis clock (ms). An entry the
        stream no longer holds (trimmed) leaves the due set."""
        now, ids = self.scripts.events_take(
            keys=[self.keys.events_due(sink)], args=[count, lease_ms]
        )
        out: list[Event] = []
        gone: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        for entry in ids:
            pipe.xrange(self.keys.events(), entry, entry)
        for entry, found in zip(ids, pipe.execute(), strict=True):
            if found:
                out.append(Event.from_fields(str(entry), found[0][1]))
            else:
                gone.append(str(entry))
        if gone:
            self.redis.zrem(self.keys.events_due(sink), *gone)
        return int(now), out

    def delivered(self, sink: str, entry: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.keys.events_due(sink), entry)
        pipe.hdel(self.keys.events_tries(sink), entry)
        pipe.hdel(self.keys.events_dead(), f"{sink}|{entry}")
        pipe.execute()

    def failed(self, sink: str, entry: str) -> int:
        """Count a failed send; returns the failures so far."""
        return int(self.redis.hincrby(self.keys.events_tries(sink), entry, 1))

    def retry_at(self, sink: str, entry: str, at_ms: int) -> None:
        self.redis.zadd(self.keys.events_due(sink), {entry: at_ms}, xx=True)

    def bury(self, sink: str, url: str, event: Event, tries: int, error: str, now_ms: int) -> None:
        """Give up on one receiver for one event: keep it in the dead hash for inspection
        (the URL without credentials: see :func:`shown_url`)."""
        doc = {
            "sink": sink,
            "url": shown_url(url),
            "entry": event.entry,
            "event": json.loads(event.body()),
            "tries": tries,
            "last_error": error,
            "dead_at": now_ms,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.events_dead(), f"{sink}|{event.entry}", json.dumps(doc))
        pipe.zrem(self.keys.events_due(sink), event.entry)
        pipe.hdel(self.keys.events_tries(sink), event.entry)
        pipe.execute()

    def trim(self, older_than_ms: int, sinks: Sequence[str], *, batch: int = 500) -> int:
        """Drop stream entries older than ``older_than_ms`` (Redis clock), but never one not
        yet delivered: the trim stops at the oldest entry the consumer group has not read or
        not acked, or that is still due at one of ``sinks`` (being retried). Without the
        group (nothing read yet) nothing is dropped. Returns how many entries went."""
        key = self.keys.events()
        try:
            groups = self.redis.xinfo_groups(key)
        except redis.ResponseError:  # no stream
            return 0
        group = next((g for g in groups if str(g.get("name")) == GROUP), None)
        if group is None:
            return 0
        floor = f"{older_than_ms}-0"
        # Not read yet: the entries after the group's last-delivered-id.
        unread = self.redis.xrange(key, "(" + str(group["last-delivered-id"]), "+", count=1)
        if unread:
            floor = _min_id(floor, str(unread[0][0]))
        # Read but not acked (a consumer killed before its MULTI).
        pending = self.redis.xpending(key, GROUP)
        if pending.get("pending") and pending.get("min"):
            floor = _min_id(floor, str(pending["min"]))
        # Still due at a receiver: the oldest such entry among those the trim would drop.
        start = "-"
        while sinks:
            entries = self.redis.xrange(key, start, "(" + floor, count=batch)
            if not entries:
                break
            ids = [str(e) for e, _ in entries]
            pipe = self.redis.pipeline(transaction=False)
            for sink in sinks:
                pipe.zmscore(self.keys.events_due(sink), ids)
            due = [
                i
                for i, scores in enumerate(zip(*pipe.execute(), strict=True))
                if any(x is not None for x in scores)
            ]
            if due:
                floor = ids[due[0]]
                break
            start = "(" + ids[-1]
        return int(self.redis.xtrim(key, minid=floor))

    # Operators: replay and the dead events ------------------------------------------------

    def replay(self, sinks: Sequence[str], since_ms: int, *, batch: int = 500) -> int:
        """Send again every event the stream holds from ``since_ms`` (Redis clock) on, to each
        receiver, now, its backoff started again; returns how many events. Receivers dedupe
        by the event id."""
        n = 0
        start = f"{since_ms}-0"
        while True:
            entries = self.redis.xrange(self.keys.events(), start, "+", count=batch)
            if not entries:
                return n
            ids = [str(e) for e, _ in entries]
            sec, usec = self.redis.time()
            now = int(sec) * 1000 + int(usec) // 1000
            pipe = self.redis.pipeline(transaction=False)
            for sink in sinks:
                pipe.zadd(self.keys.events_due(sink), dict.fromkeys(ids, now))
                pipe.hdel(self.keys.events_tries(sink), *ids)  # the backoff starts again
            pipe.execute()
            n += len(ids)
            start = "(" + ids[-1]

    def dead(self) -> Iterator[dict[str, Any]]:
        """Every dead event (see :meth:`bury`), oldest entry first."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.events_dead()))
        docs = [json.loads(v) for v in raw.values()]
        yield from sorted(docs, key=lambda d: (str(d.get("entry", "")), str(d.get("sink", ""))))

    def counts(self, sinks: Sequence[str]) -> dict[str, int]:
        """Stream length, events waiting per receiver in all, and dead events."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.events())
        for sink in sinks:
            pipe.zcard(self.keys.events_due(sink))
        pipe.hlen(self.keys.events_dead())
        raw = [int(x) for x in pipe.execute()]
        return {"stream": raw[0], "due": sum(raw[1:-1]), "dead": raw[-1]}
