"""The delivery worker: events from the stream to every ``EVENTS_URL``, signed, at least once.

A thread in each Celery worker process (started beside the sweeper, only when ``EVENTS_URL``
is set). It never touches the dialling path: the Lua transitions only XADD to a stream
(callq.store.events); this thread, with an HTTP session of its own, does the rest:

1. **pump**: one consumer group reads the stream; each entry goes into every receiver's due
   set and is acked in the same MULTI. An entry a killed worker read but never acked is
   claimed by another worker (XAUTOCLAIM) after one lease (below).
2. **send**: due entries are leased (one worker at a time sends one), POSTed with
   ``X-Callq-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, and leave the due set on
   a 2xx. Anything else (an error status, a timeout, a refused connection) counts a try and
   the entry is due again after an exponential backoff with jitter (1 s doubling to 10 min),
   until ``EVENTS_RETRY_SECONDS`` after the event was written; then it is kept in the dead
   hash (``callq events dead``). A batch's lease is its sends' worst case (``BATCH`` x
   ``EVENTS_TIMEOUT_SECONDS`` + 5 s): a worker killed mid-send leaves it to run out, and the
   entry is sent again by another. Receivers dedupe on the event's ``id``.
3. **trim**: entries older than ``EVENTS_RETAIN_SECONDS`` leave the stream (``replay`` reads it),
   except from the oldest one not yet delivered on (unread, unacked, or still due somewhere).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time

import redis
import requests

from callq.settings import Settings
from callq.store.events import Event, EventLog, entry_ms, sink_id
from callq.store.keys import Keys

log = logging.getLogger("callq.events")

SIGNATURE_HEADER = "X-Callq-Signature"
EVENT_ID_HEADER = "X-Callq-Event-Id"
BATCH = 10
"""Events taken from one receiver's due set at a time (sent one after another)."""
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 600.0
TICK_SECONDS = 0.25
TRIM_EVERY_SECONDS = 60.0


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of b"<t>." + body>``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of ``now`` (against replay). What a receiver does; see
    docs/operations.md for the same in a few lines of standard library."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = signature(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(tries: int, *, jitter: bool = True) -> float:
    """Seconds before the next send after ``tries`` failed ones: 1, 2, 4 ... up to 600,
    each drawn between half and all of it (so many events do not come back in step)."""
    delay = min(BACKOFF_FIRST_SECONDS * 2 ** max(tries - 1, 0), BACKOFF_MAX_SECONDS)
    return float(delay * random.uniform(0.5, 1.0)) if jitter else float(delay)


class Delivery:
    """The stream's consumer and every receiver's sender, in one thread."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, consumer: str):
        self.log = EventLog(client, keys)
        self.settings = settings
        self.consumer = consumer
        self.sinks = [(sink_id(url), url, secret) for url, secret in settings.event_sinks()]
        self.session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._grouped = False
        self._trimmed = 0.0
        # How long a taken batch is ours: every send in it may take the whole timeout.
        self.lease_ms = int((BATCH * settings.events_timeout_seconds + 5) * 1000)

    def run_once(self) -> dict[str, int]:
        """One pass: pump, send what is due, trim now and then. Returns counts."""
        seen = {"pumped": 0, "sent": 0, "failed": 0, "dead": 0}
        if not self._grouped:
            self.log.ensure_group()
            self._grouped = True
        ids = [s for s, _, _ in self.sinks]
        seen["pumped"] = self.log.pump(
            self.consumer, ids, count=200, block_ms=0, idle_ms=self.lease_ms
        )
        for sink, url, secret in self.sinks:
            for what, n in self.send_due(sink, url, secret.get_secret_value().encode()).items():
                seen[what] += n
        if time.monotonic() - self._trimmed > TRIM_EVERY_SECONDS:
            now_ms = int(float(self.log.redis.time()[0]) * 1000)
            self.log.trim(now_ms - int(self.settings.events_retain_seconds * 1000), ids)
            self._trimmed = time.monotonic()
        return seen

    def send_due(self, sink: str, url: str, secret: bytes) -> dict[str, int]:
        timeout = self.settings.events_timeout_seconds
        now_ms, events = self.log.take(sink, count=BATCH, lease_ms=self.lease_ms)
        seen = {"sent": 0, "failed": 0, "dead": 0}
        for ev in events:
            error = self._post(url, secret, ev, timeout)
            if error is None:
                self.log.delivered(sink, ev.entry)
                seen["sent"] += 1
                continue
            tries = self.log.failed(sink, ev.entry)
            age_ms = now_ms - entry_ms(ev.entry)
            if age_ms >= self.settings.events_retry_seconds * 1000:
                self.log.bury(sink, url, ev, tries, error, now_ms)
                log.warning("event %s to %s dead after %d tries: %s", ev.id, sink, tries, error)
                seen["dead"] += 1
            else:
                self.log.retry_at(sink, ev.entry, now_ms + int(backoff(tries) * 1000))
                seen["failed"] += 1
        return seen

    def _post(self, url: str, secret: bytes, ev: Event, timeout: float) -> str | None:
        """POST one event; None on a 2xx, else what went wrong (no secret, no body)."""
        body = ev.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(secret, body, int(time.time())),
            EVENT_ID_HEADER: ev.id,
        }
        try:
            reply = self.session.post(url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            return exc.__class__.__name__
        if 200 <= reply.status_code < 300:
            return None
        return f"HTTP {reply.status_code}"

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                seen = self.run_once()
            except redis.RedisError as exc:
                log.warning("event delivery: %s", exc.__class__.__name__)
                self._grouped = False  # a Redis without persistence may have lost the group
                self._stop.wait(1.0)
                continue
            except Exception:
                log.exception("event delivery failed")
                self._stop.wait(1.0)
                continue
            if seen["sent"] or seen["failed"] or seen["dead"]:
                log.info("events: %s", seen)
            elif not seen["pumped"]:
                self._stop.wait(TICK_SECONDS)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="callq-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.events_timeout_seconds + 5)
