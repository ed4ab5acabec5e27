"""The simulator's memory and rules, independent of HTTP.

Everything here is guarded by one lock. The HTTP layer (``server.py``) asks this module for
a decision, then waits, replies or resets the connection as told. A call's record and its
views are in ``calls.py``; reading a Call Details query in ``query.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import operator
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urlencode, urlsplit

from simulator.calls import CallRecord, Decision, Delivery
from simulator.config import FAULTS, STATUSES, Account, SimConfig, apply_changes
from simulator.formats import (
    TIME_FORMAT,
    encode_callback,
    format_time,
    rest_exception,
    wall_time,
    zone,
)
from simulator.latency import sample_latency
from simulator.query import BadQuery, cursor, last_value, split_list, uncursor
from simulator.scheduler import Scheduler

__all__ = ["SimState"]

log = logging.getLogger(__name__)

MAX_TIME_LIMIT = 14400
MAX_TIME_OUT = 60
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
MAX_NUMBERS_PER_FILTER = 5
MAX_SIDS_PER_FILTER = 100
#: Directions Call Details shows.
DIRECTIONS = ("outbound-api", "outbound-dial", "inbound")
CALLBACK_RETRIES = 5
CALLBACK_TIMEOUT = 5.0
CALLBACK_BACKOFF_BASE = 1.0
CALLBACK_BACKOFF_CAP = 30.0

#: What a proxy or load balancer in front of the API sends when it gives up waiting.
PROXY_504_PAGE = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)

#: Faults counted in truth["faults"] (every name but "ok").
COUNTED_FAULTS = tuple(f for f in FAULTS if f != "ok")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


class SimState:
    """All calls, counters and fault scripts of one simulator."""

    def __init__(self, config: SimConfig, scheduler: Scheduler) -> None:
        config.validate()
        self._lock = threading.RLock()
        self._scheduler = scheduler
        self._config = config
        self._tz = zone(config.timezone)
        self._rng = random.Random(config.seed)
        self._accounts = {a.sid: a for a in config.accounts}
        self._generation = 0
        self._reset_counters()

    # --- configuration ----------------------------------------------------------------

    def _reset_counters(self) -> None:
        self._calls: dict[str, CallRecord] = {}
        self._seq = 0
        self._requests = 0
        self._details_requests = 0
        self._originated = 0
        self._rate_limited = 0
        self._rate_limited_by: Counter[str] = Counter()  # 429s per account sid
        self._windows: dict[str, deque[float]] = {sid: deque() for sid in self._accounts}
        # Every authenticated arrival, per account: (monotonic time, "connect" | "details").
        self._arrivals: dict[str, list[tuple[float, str]]] = {}
        self._max_in_window: dict[str, int] = dict.fromkeys(self._accounts, 0)
        # Live calls per account, as a heap of (end, slots), and the most slots seen live.
        self._live: dict[str, list[tuple[float, int]]] = {}
        self._max_live: dict[str, int] = dict.fromkeys(self._accounts, 0)
        self._live_refused = 0
        self._faults: Counter[str] = Counter()
        self._scripts: dict[str, deque[str]] = {}
        self._deliveries: list[Delivery] = []
        self._delivery_ids = 0

    @property
    def config(self) -> SimConfig:
        with self._lock:
            return self._config

    def configure(self, changes: Mapping[str, Any]) -> SimConfig:
        """Apply ``changes`` (SimConfig field names). Raises ValueError when refused."""
        with self._lock:
            new = apply_changes(self._config, dict(changes))
            tz = zone(new.timezone)
            self._config = new
            self._tz = tz
            for acc in new.accounts:
                self._accounts[acc.sid] = acc
            if "seed" in changes:
                self._rng.seed(new.seed)
            return new

    def config_view(self) -> dict[str, Any]:
        with self._lock:
            data = dataclasses.asdict(self._config)
        for acc in data["accounts"]:
            acc.pop("api_token", None)
        return data

    def script(self, key: str, faults: list[str]) -> None:
        """Queue ``faults`` for requests whose CustomField, To or From equals ``key``."""
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise ValueError("faults must be a list of strings")
        bad = [f for f in faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown fault(s) {bad}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(faults)

    def reset(self) -> None:
        """Forget calls, counters, windows, scripts and pending callbacks."""
        with self._lock:
            self._generation += 1
            self._reset_counters()
        self._scheduler.clear()

    # --- auth and rate limit --------------------------------------------------------------

    def account(self, sid: str) -> Account | None:
        with self._lock:
            return self._accounts.get(sid)

    def admit(self, account: Account, *, connect: bool) -> bool:
        """Count one authenticated arrival; False when the sliding window is already full.

        Strict reading: the arrival is counted even when it is refused with a 429, and
        ``max_in_window`` counts every arrival in the window, refused or not.
        """
        now = time.monotonic()
        with self._lock:
            if connect:
                self._requests += 1
            else:
                self._details_requests += 1
            self._arrivals.setdefault(account.sid, []).append(
                (now, "connect" if connect else "details")
            )
            window = self._windows.setdefault(account.sid, deque())
            cutoff = now - account.period
            while window and window[0] <= cutoff:
                window.popleft()
            full = len(window) >= account.rate_limit
            window.append(now)
            if len(window) > self._max_in_window.get(account.sid, 0):
                self._max_in_window[account.sid] = len(window)
            if full:
                self._rate_limited += 1
                self._rate_limited_by[account.sid] += 1
            return not full

    # --- Calls/connect ---------------------------------------------------------------------

    def _pick_fault(self, params: Mapping[str, str]) -> str:
        """The fault for this request: the next scripted one, else a random draw (lock held)."""
        for name in ("CustomField", "To", "From"):
            key = params.get(name)
            if key:
                queued = self._scripts.get(key)
                if queued:
                    fault = queued.popleft()
                    if not queued:
                        del self._scripts[key]
                    return fault
        cfg = self._config
        u = self._rng.random()
        for fault, p in (
            ("500", cfg.p_500),
            ("504", cfg.p_504),
            ("slow_placed", cfg.p_slow_placed),
            ("reset_before", cfg.p_reset_before),
            ("reset_after", cfg.p_reset_after),
        ):
            if u < p:
                return fault
            u -= p
        return "ok"

    def _latency(self) -> float:
        cfg = self._config
        if not cfg.latency:
            return 0.0
        return sample_latency(self._rng, cfg.time_scale)

    @staticmethod
    def _validate(params: Mapping[str, str]) -> str | None:
        """Exotel's 400 message for bad parameters, or None."""
        if not params.get("From"):
            return "Invalid Call Parameters: No 'From' specified"
        if not params.get("CallerId"):
            return "Invalid Call Parameters: No 'CallerId' specified"
        to, url = params.get("To"), params.get("Url")
        if to and url:
            return "Invalid Call Parameters: Both 'To' and 'Url' specified"
        if not to and not url:
            return "Invalid Call Parameters: No 'To' or 'Url' specified"
        for name, top in (("TimeLimit", MAX_TIME_LIMIT), ("TimeOut", MAX_TIME_OUT)):
            raw = params.get(name)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                return f"Invalid Call Parameters: '{name}' must be an integer"
            if value < 1 or value > top:
                return f"Invalid Call Parameters: '{name}' must be between 1 and {top}"
        callback = params.get("StatusCallback")
        if callback:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return "Invalid Call Parameters: 'StatusCallback' is not a valid URL"
        return None

    def connect(self, account: Account, params: Mapping[str, str], *, as_json: bool) -> Decision:
        """Rate limit, then fault, then validation, then origination."""
        if not self.admit(account, connect=True):
            return Decision(429, rest_exception(429, "Too Many Requests"))
        with self._lock:
            fault = self._pick_fault(params)
            if fault != "ok":
                self._faults[fault] += 1
            if fault == "429":
                return Decision(429, rest_exception(429, "Too Many Requests"))
            refusal = self._at_cap(account, params)
            if refusal is not None:
                return refusal
            if fault == "reset_before":
                return Decision(0, {}, reset=True)
            if fault in ("500", "504"):
                message = (
                    "Internal Server Error: the call could not be originated"
                    if fault == "500"
                    else "Gateway Timeout: the call could not be originated"
                )
                return Decision(int(fault), rest_exception(int(fault), message), self._latency())
            problem = self._validate(params)
            if problem is not None:
                return Decision(400, rest_exception(400, problem))
            record = self._originate(account, params, fault if fault != "ok" else None)
            body = {"Call": record.view(time.monotonic(), self._tz, as_json=as_json, details=False)}
            # A fresh call is always shown in progress, however short its simulated life.
            body["Call"].update(
                Status="in-progress",
                EndTime=None,
                Duration=None,
                Price=None,
                RecordingUrl=None,
                DateUpdated=body["Call"]["DateCreated"],
            )
            if fault == "slow_placed":
                return Decision(200, body, self._config.slow_seconds)
            if fault == "reset_after":
                return Decision(0, {}, self._latency(), reset=True)
            if fault == "proxy_504":
                return Decision(504, {}, self._latency(), raw=(PROXY_504_PAGE, "text/html"))
            return Decision(200, body, self._latency())

    def _live_slots(self, sid: str, now: float) -> int:
        """Slots held now on account ``sid`` by calls not yet ended (lock held)."""
        heap = self._live.setdefault(sid, [])
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)
        return sum(w for _, w in heap)

    def _at_cap(self, account: Account, params: Mapping[str, str]) -> Decision | None:
        """The refusal when this call's slots would pass the account's cap (lock held)."""
        cap = account.max_live_slots
        if cap is None:
            return None
        weight = 2 if params.get("To") else 1
        if self._live_slots(account.sid, time.monotonic()) + weight <= cap:
            return None
        self._live_refused += 1
        cfg = self._config
        return Decision(
            cfg.live_cap_status, rest_exception(cfg.live_cap_status, cfg.live_cap_message)
        )

    def _new_sid(self) -> str:
        while True:
            sid = f"{self._rng.getrandbits(128):032x}"
            if sid not in self._calls:
                return sid

    def _originate(
        self, account: Account, params: Mapping[str, str], fault: str | None
    ) -> CallRecord:
        """Place the call (lock held) and schedule its StatusCallback."""
        cfg = self._config
        rng = self._rng
        statuses = list(cfg.status_mix)
        status = rng.choices(statuses, weights=[cfg.status_mix[s] for s in statuses])[0]
        time_out = int(params["TimeOut"]) if params.get("TimeOut") else None
        time_limit = int(params["TimeLimit"]) if params.get("TimeLimit") else None
        ring_lo, ring_hi = cfg.ring_seconds
        if status == "no-answer":
            ring = float(time_out) if time_out is not None else ring_hi
        elif status == "failed":
            ring = ring_lo
        else:
            ring = rng.uniform(ring_lo, ring_hi)
        if time_out is not None:
            ring = min(ring, float(time_out))
        talk = 0.0
        if status == "completed":
            talk = rng.uniform(*cfg.talk_seconds)
            if time_limit is not None:
                talk = min(talk, float(time_limit))
        two_numbers = bool(params.get("To"))
        ring_second_leg = ring / 2 if two_numbers else 0.0
        talk_s = round(talk)
        first_leg = round(ring_second_leg + talk) if status == "completed" else 0
        legs: list[dict[str, Any]] = [{"Status": status, "OnCallDuration": first_leg}]
        if two_numbers:
            legs.append(
                {
                    "Status": "completed" if status == "completed" else None,
                    "OnCallDuration": talk_s,
                }
            )
        now_mono = time.monotonic()
        now_wall = time.time()
        life = (ring + talk) * cfg.time_scale
        self._seq += 1
        to_param = params.get("To") or None
        record = CallRecord(
            seq=self._seq,
            sid=self._new_sid(),
            account_sid=account.sid,
            from_=params["From"],
            to=to_param or params["CallerId"],
            to_param=to_param,
            caller_id=params["CallerId"],
            url=params.get("Url") or None,
            custom_field=params.get("CustomField"),
            created_wall=now_wall,
            placed_mono=now_mono,
            end_mono=now_mono + life,
            end_wall=now_wall + life,
            status=status,
            duration=round(ring + talk) if status == "completed" else 0,
            conversation=talk_s,
            legs=legs,
            record=params.get("Record", "").lower() == "true",
            fault=fault,
            params=dict(params),
        )
        self._calls[record.sid] = record
        self._originated += 1
        heap = self._live.setdefault(account.sid, [])
        live = self._live_slots(account.sid, now_mono) + (2 if two_numbers else 1)
        heapq.heappush(heap, (record.end_mono, 2 if two_numbers else 1))
        if live > self._max_live.get(account.sid, 0):
            self._max_live[account.sid] = live
        callback = params.get("StatusCallback")
        if callback and cfg.callbacks:
            self._schedule_callbacks(record, callback, params)
        return record

    def add_call(
        self,
        account_sid: str,
        from_: str,
        to: str,
        *,
        direction: str,
        status: str = "completed",
        created: float | None = None,
        duration: int = 30,
    ) -> str:
        """A call Call Details lists that we did not place (no CustomField, no callback): the
        customer calling an ExoPhone (``inbound``), or another system's call on the account.
        It has already ended. Raises ValueError naming a bad field. Returns its Sid."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        for name, value in (("from_", from_), ("to", to)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise ValueError("duration must be an integer >= 0")
        with self._lock:
            if account_sid not in self._accounts:
                raise ValueError(f"unknown account {account_sid!r}")
            now_mono = time.monotonic()
            created_wall = time.time() if created is None else float(created)
            talk = duration if status == "completed" else 0
            self._seq += 1
            record = CallRecord(
                seq=self._seq,
                sid=self._new_sid(),
                account_sid=account_sid,
                from_=from_,
                to=to,
                to_param=to,
                caller_id=to if direction == "inbound" else "",
                url=None,
                custom_field=None,
                created_wall=created_wall,
                placed_mono=now_mono,
                end_mono=now_mono,
                end_wall=created_wall + duration,
                status=status,
                duration=duration if status == "completed" else 0,
                conversation=talk,
                legs=[{"Status": status, "OnCallDuration": talk}],
                record=False,
                fault=None,
                direction=direction,
                added=True,
            )
            self._calls[record.sid] = record
            return record.sid

    # --- StatusCallbacks -------------------------------------------------------------------

    def _schedule_callbacks(self, record: CallRecord, url: str, params: Mapping[str, str]) -> None:
        cfg = self._config
        terminal = any(
            k.startswith("StatusCallbackEvents") and v.strip().lower() == "terminal"
            for k, v in params.items()
        )
        content_type = params.get("StatusCallbackContentType") or cfg.default_callback_content_type
        payload = record.callback_payload(self._tz, terminal=terminal)
        late = self._rng.random() < cfg.p_late_callback
        due = record.end_mono + (cfg.late_callback_seconds * cfg.time_scale if late else 0.0)
        copies = [(due, False)]
        if self._rng.random() < cfg.p_duplicate_callback:
            copies.append((due + self._rng.uniform(0.1, 2.0) * cfg.time_scale, True))
        for when, duplicate in copies:
            self._delivery_ids += 1
            delivery = Delivery(
                id=self._delivery_ids,
                generation=self._generation,
                call_sid=record.sid,
                custom_field=record.custom_field,
                url=url,
                content_type=content_type,
                payload=payload,
                duplicate=duplicate,
                late=late,
            )
            self._deliveries.append(delivery)
            self._scheduler.schedule(when, functools.partial(self._deliver, delivery))

    def _deliver(self, delivery: Delivery) -> None:
        """One attempt (runs on a scheduler worker); schedules the retry on failure."""
        with self._lock:
            if delivery.generation != self._generation:
                return
            delivery.attempts += 1
            scale = self._config.time_scale
        body, content_type = encode_callback(delivery.payload, delivery.content_type)
        request = urllib.request.Request(  # noqa: S310 - scheme checked at validation
            delivery.url,
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "User-Agent": "Exotel-Simulator/1.0"},
        )
        status: int | None = None
        error: str | None = None
        reply = ""
        began = time.time()
        try:
            with _OPENER.open(request, timeout=CALLBACK_TIMEOUT) as response:
                status = int(response.status)
                reply = response.read(200).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code}"
            exc.close()
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        with self._lock:
            if delivery.generation != self._generation:
                return
            delivery.http_status = status
            delivery.tries.append([round(began, 3), status, error or reply])
            if ok:
                delivery.state = "sent"
                delivery.last_error = None
                return
            delivery.last_error = error or f"HTTP {status}"
            if delivery.attempts > CALLBACK_RETRIES:
                delivery.state = "failed"
                return
            backoff = min(
                CALLBACK_BACKOFF_BASE * 2 ** (delivery.attempts - 1), CALLBACK_BACKOFF_CAP
            )
        self._scheduler.schedule(
            time.monotonic() + backoff * scale, functools.partial(self._deliver, delivery)
        )

    # --- Call Details ----------------------------------------------------------------------

    def get_call(self, account: Account, sid: str, *, as_json: bool, details: bool) -> Decision:
        with self._lock:
            record = self._calls.get(sid)
            if record is None or record.account_sid != account.sid:
                return Decision(404, rest_exception(404, f"Call {sid} not found"))
            call = record.view(time.monotonic(), self._tz, as_json=as_json, details=details)
        return Decision(200, {"Call": call})

    def list_calls(
        self, account: Account, query: Mapping[str, list[str]], *, as_json: bool
    ) -> Decision:
        try:
            return self._list_calls(account, query, as_json=as_json)
        except BadQuery as exc:
            return Decision(400, rest_exception(400, str(exc)))

    def _list_calls(
        self, account: Account, query: Mapping[str, list[str]], *, as_json: bool
    ) -> Decision:
        tos = split_list(query, "To", MAX_NUMBERS_PER_FILTER)
        froms = split_list(query, "From", MAX_NUMBERS_PER_FILTER)
        sids = split_list(query, "Sid", MAX_SIDS_PER_FILTER)
        statuses = split_list(query, "Status", 10)
        directions = split_list(query, "Direction", 5)
        raw_size = last_value(query, "PageSize")
        try:
            page_size = int(raw_size) if raw_size else DEFAULT_PAGE_SIZE
        except ValueError as exc:
            raise BadQuery("PageSize must be an integer") from exc
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadQuery(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")
        page_size = min(page_size, self.config.max_page_size)
        sort_by = last_value(query, "SortBy") or "DateCreated:desc"
        if sort_by not in ("DateCreated:asc", "DateCreated:desc"):
            raise BadQuery("SortBy must be DateCreated:asc or DateCreated:desc")
        ascending = sort_by.endswith(":asc")
        after_raw, before_raw = last_value(query, "After"), last_value(query, "Before")
        if after_raw and before_raw:
            raise BadQuery("Only one of After and Before may be given")
        try:
            after = uncursor(after_raw) if after_raw else None
            before = uncursor(before_raw) if before_raw else None
        except ValueError as exc:
            raise BadQuery("Invalid cursor") from exc
        with self._lock:
            tz = self._tz
            bounds = self._date_bounds(last_value(query, "DateCreated"), tz)
            now = time.monotonic()
            matched = [
                r
                for r in self._calls.values()
                if r.account_sid == account.sid
                and r.ended(now)
                and (tos is None or r.to in tos)
                and (froms is None or r.from_ in froms)
                and (sids is None or r.sid in sids)
                and (statuses is None or r.status in statuses)
                and (directions is None or r.direction in directions)
                and all(op(wall_time(r.created_wall, tz), bound) for op, bound in bounds)
            ]

            # Sorted by DateCreated (an added call may be older than calls placed before it),
            # then by the order calls were made; a cursor names a call by its seq.
            def key(r: CallRecord) -> tuple[float, int]:
                return (r.created_wall, r.seq)

            matched.sort(key=key, reverse=not ascending)
            by_seq = {r.seq: r for r in self._calls.values()}

            # Position in sort order: "later" means further along the listing.
            def later(a: tuple[float, int], b: tuple[float, int]) -> bool:
                return a > b if ascending else a < b

            def anchor(seq: int) -> tuple[float, int]:
                call = by_seq.get(seq)
                if call is None:
                    raise BadQuery("Invalid cursor")
                return key(call)

            if after is not None:
                mark = anchor(after)
                start = next(
                    (i for i, r in enumerate(matched) if later(key(r), mark)), len(matched)
                )
                stop = min(len(matched), start + page_size)
            elif before is not None:
                mark = anchor(before)
                stop = next(
                    (i for i, r in enumerate(matched) if not later(mark, key(r))), len(matched)
                )
                start = max(0, stop - page_size)
            else:
                start, stop = 0, min(len(matched), page_size)
            records = matched[start:stop]
            page = [r.view(now, tz, as_json=as_json, details=False) for r in records]
        base_params = [
            (k, v)
            for k, values in query.items()
            if k not in ("After", "Before", "PageSize", "SortBy")
            for v in values
        ]
        base_params += [("PageSize", str(page_size)), ("SortBy", sort_by)]
        base = f"/v1/Accounts/{account.sid}/Calls{'.json' if as_json else ''}"

        def uri(extra: list[tuple[str, str]]) -> str:
            return f"{base}?{urlencode(base_params + extra)}"

        has_prev = start > 0 and bool(records)
        has_next = stop < len(matched) and bool(records)
        metadata = {
            "Total": len(matched),
            "PageSize": page_size,
            "FirstPageUri": uri([]),
            "PrevPageUri": uri([("Before", cursor(records[0].seq))]) if has_prev else None,
            "NextPageUri": uri([("After", cursor(records[-1].seq))]) if has_next else None,
        }
        return Decision(200, {"Metadata": metadata, "Calls": page})

    @staticmethod
    def _date_bounds(
        raw: str | None, tz: tzinfo
    ) -> list[tuple[Callable[[datetime, datetime], bool], datetime]]:
        """The DateCreated filter as (operator, wall-clock time) pairs. Exotel keeps plain
        local times and compares them as such: in a zone with daylight saving, "01:30" on the
        night the clocks go back matches calls of both 01:30s."""
        if not raw:
            return []
        ops: dict[str, Callable[[datetime, datetime], bool]] = {
            "gte": operator.ge,
            "lte": operator.le,
            "gt": operator.gt,
            "lt": operator.lt,
            "eq": operator.eq,
        }
        bounds: list[tuple[Callable[[datetime, datetime], bool], datetime]] = []
        for raw_part in raw.split(";"):
            part = raw_part.strip()
            if not part:
                continue
            name, sep, value = part.partition(":")
            if not sep or name not in ops:
                raise BadQuery(
                    "DateCreated must look like gte:YYYY-MM-DD HH:mm:ss;lte:YYYY-MM-DD HH:mm:ss"
                )
            try:
                bounds.append((ops[name], datetime.strptime(value.strip(), TIME_FORMAT)))
            except ValueError as exc:
                raise BadQuery(f"Invalid DateCreated bound {value!r}") from exc
        return bounds

    # --- ground truth -------------------------------------------------------------------------

    def arrivals(self) -> dict[str, Any]:
        """Every authenticated arrival per account, as seconds on the simulator's monotonic
        clock, with its kind (for measuring how much of the limit a run used)."""
        with self._lock:
            return {
                "now": time.monotonic(),
                "accounts": {
                    sid: [[round(t, 6), kind] for t, kind in items]
                    for sid, items in self._arrivals.items()
                },
            }

    def counts(self) -> dict[str, int]:
        """The running totals alone (cheap to poll while a run goes on)."""
        with self._lock:
            return {
                "requests": self._requests,
                "details_requests": self._details_requests,
                "originated": self._originated,
                "rate_limited": self._rate_limited,
            }

    def truth(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            every = sorted(self._calls.values(), key=lambda r: r.seq)
            calls = [r for r in every if not r.added]
            by_cf: Counter[str] = Counter(r.custom_field for r in calls if r.custom_field)
            by_to: Counter[str] = Counter(r.to for r in calls)
            by_from: Counter[str] = Counter(r.from_ for r in calls)
            deliveries = [d.summary() for d in self._deliveries]
            return {
                "requests": self._requests,
                "details_requests": self._details_requests,
                "originated": self._originated,
                "rate_limited": self._rate_limited,
                "max_in_window": dict(self._max_in_window),
                # 429s of the rate limit per account sid (every account, 0 included).
                "rate_limited_by_account": {
                    sid: self._rate_limited_by.get(sid, 0) for sid in self._accounts
                },
                # Live-call slots: the most seen at once, those held now, refusals at the cap.
                "max_live_slots": dict(self._max_live),
                "live_slots": {sid: self._live_slots(sid, now) for sid in self._accounts},
                "live_refused": self._live_refused,
                "limit": {a.sid: [a.rate_limit, a.period] for a in self._accounts.values()},
                "by_custom_field": dict(by_cf),
                "by_to": dict(by_to),
                "by_from": dict(by_from),
                "calls": [
                    {
                        "sid": r.sid,
                        "to": r.to,
                        "from": r.from_,
                        "custom_field": r.custom_field,
                        "account_sid": r.account_sid,
                        "status": r.status if r.ended(now) else "in-progress",
                        "final_status": r.status,
                        "ended": r.ended(now),
                        "fault": r.fault,
                        "date_created": format_time(r.created_wall, self._tz),
                        # Its life on the simulator's monotonic clock (live slots over time).
                        "placed_at": round(r.placed_mono, 6),
                        "ends_at": round(r.end_mono, 6),
                        "slots": 2 if r.to_param else 1,
                    }
                    for r in calls
                ],
                "injected": [
                    {
                        "sid": r.sid,
                        "to": r.to,
                        "from": r.from_,
                        "account_sid": r.account_sid,
                        "direction": r.direction,
                        "status": r.status,
                        "date_created": format_time(r.created_wall, self._tz),
                    }
                    for r in every
                    if r.added
                ],
                "faults": {f: self._faults.get(f, 0) for f in COUNTED_FAULTS},
                "scripts": {k: list(v) for k, v in self._scripts.items()},
                "callbacks": {
                    "sent": sum(1 for d in self._deliveries if d.state == "sent"),
                    "failed": sum(1 for d in self._deliveries if d.state == "failed"),
                    "pending": sum(1 for d in self._deliveries if d.state == "pending"),
                    "duplicates": sum(1 for d in self._deliveries if d.duplicate),
                    "late": sum(1 for d in self._deliveries if d.late),
                    "retries": sum(max(0, d.attempts - 1) for d in self._deliveries),
                    "deliveries": deliveries,
                },
            }
