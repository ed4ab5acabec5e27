"""Campaign controls: pause, cancel, priority, account, calling window, end time, redials,
and the campaign's weight in its account's share of permits.

They live in the campaign's meta hash (``Keys.campaign_meta``), written by the producer
(``enqueue`` options, ``pause``, ``resume``, ``cancel``) and read by the workers. The
``paused`` and ``cancelled`` flags are also read by the Lua scripts themselves, in the same
step as a claim or a sent mark, so neither is ever missed. The calling window needs a time
zone database, so it is judged here, in Python, with an injectable clock (tests run it on a
fake one); the verdict goes to ``claim.lua`` as a gate.

Times stored in the meta hash are epoch milliseconds; windows are ``HH:MM-HH:MM`` in the
campaign's time zone (``always`` for none; a window may cross midnight, e.g. ``20:00-08:00``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callq.campaign.window import ALWAYS, Window

REDIAL_STATUSES = ("busy", "no-answer", "failed")
WINDOW_ZONES = ("campaign", "callee")
#: The longest period a per-number cap may count over (``--number-cap N/PERIOD``).
NUMBER_CAP_MAX_SECONDS = 7 * 86400
_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_WEIGHT, MAX_WEIGHT = 0.01, 100.0


@dataclass(frozen=True)
class Gate:
    """The controls' verdict for a call now: dial, wait ``wait`` seconds, or expire."""

    kind: Literal["go", "wait", "expire"]
    wait: float = 0.0
    why: str = ""
    window: bool = False  # the wait is for the calling window (not send_at, not a breaker)


GO = Gate("go")

HeldReason = Literal["paused", "send_at", "window", "breaker", "unknown_account"]


def _duration(seconds: float) -> str:
    """``10 h 05 min``, ``4 min 10 s``, ``45 s``."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


@dataclass(frozen=True)
class Held:
    """Why a campaign's waiting calls are held back, and until when (``until`` None: until an
    operator acts). ``status --json`` shows it as ``held``; ``enqueue`` and ``status`` say it."""

    reason: HeldReason
    count: int
    until: float | None = None  # epoch seconds
    timezone: str = "Asia/Kolkata"
    detail: str = ""  # the window, the breaker's reason ...
    expires: bool = False  # ``until`` is the campaign's end_at: the calls expire then

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "until": None if self.until is None else self.local(self.until).isoformat(),
            "count": self.count,
            "detail": self.detail,
            "expires": self.expires,
        }

    def local(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, ZoneInfo(self.timezone))

    def _when(self, now: float) -> str:
        assert self.until is not None
        at = self.local(self.until)
        day = "" if at.date() == self.local(now).date() else at.strftime("%Y-%m-%d ")
        return f"{day}{at.strftime('%H:%M')} {at.strftime('%Z')} (in {_duration(self.until - now)})"

    def message(self, now: float) -> str:
        """One line for an operator, e.g. ``300 calls wait for the calling window 09:00-21:00
        Asia/Kolkata: it opens at 09:00 IST (in 10 h 05 min)``."""
        calls = f"{self.count} call{'' if self.count == 1 else 's'}"
        if self.reason == "window" and self.expires:
            return (
                f"{calls} wait for the calling window {self.detail}, which does not open "
                f"before the campaign's end_at: they expire at {self._when(now)}"
            )
        if self.reason == "window":
            return (
                f"{calls} wait for the calling window {self.detail}: it opens at {self._when(now)}"
            )
        if self.reason == "send_at":
            return f"{calls} wait for the campaign's send_at: {self._when(now)}"
        if self.reason == "breaker":
            return (
                f"{calls} wait: Exotel refused the account ({self.detail}); dialling resumes "
                f"with one probe call at {self._when(now)}"
            )
        if self.reason == "unknown_account":
            return f"{calls} wait: {self.detail}"
        return f"{calls} wait: the campaign is paused (`python -m producer resume` dials them)"


@dataclass(frozen=True)
class NumberCap:
    """At most ``calls`` placed calls to one number (the callee) in any ``seconds``,
    counted over every campaign and account."""

    calls: int
    seconds: int

    @classmethod
    def parse(cls, text: str, what: str = "number_cap") -> NumberCap:
        """``N/PERIOD``: ``2/1d``, ``1/6h``, ``3/90m``, ``1/3600s`` (a period of at most 7 d)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*([smhd])\s*", text or "")
        if not m:
            raise ValueError(f"{what}: {text!r} is not N/PERIOD, e.g. 2/1d or 1/6h")
        calls, seconds = int(m[1]), int(m[2]) * _PERIOD_UNITS[m[3]]
        if calls < 1:
            raise ValueError(f"{what}: at least 1 call per period")
        if not 1 <= seconds <= NUMBER_CAP_MAX_SECONDS:
            raise ValueError(f"{what}: the period must be from 1 s to 7 d")
        return cls(calls, seconds)

    def __str__(self) -> str:
        for unit in ("d", "h", "m"):
            size = _PERIOD_UNITS[unit]
            if self.seconds % size == 0:
                return f"{self.calls}/{self.seconds // size}{unit}"
        return f"{self.calls}/{self.seconds}s"


@dataclass(frozen=True)
class Controls:
    campaign: str
    paused: bool = False
    cancelled: bool = False
    priority: bool = False
    account: str = ""  # '' = the default account (EXOTEL_ACCOUNT_SID ...)
    window: Window = field(default_factory=Window)
    timezone: str = "Asia/Kolkata"
    window_zone: Literal["campaign", "callee"] = "campaign"  # callee: each call's own zone
    send_at: float | None = None  # epoch seconds
    end_at: float | None = None
    redial_on: tuple[str, ...] = ()
    redials: int = 0
    redial_interval: float = 600.0
    redial_backoff: Literal["linear", "exponential"] = "linear"
    weight: float = 1.0  # its share of the account's permits against the account's others
    number_cap: NumberCap | None = None  # None: the NUMBER_DAILY_CAP setting, if any
    version: str = ""  # the meta's `v`: bumped by every pause, resume, set and cancel

    @classmethod
    def from_meta(
        cls,
        campaign: str,
        meta: Mapping[str, str],
        *,
        default_window: str = ALWAYS,
        default_timezone: str = "Asia/Kolkata",
    ) -> Controls:
        def ms(name: str) -> float | None:
            raw = meta.get(name, "")
            return int(raw) / 1000 if raw else None

        backoff = meta.get("redial_backoff", "linear")
        return cls(
            campaign=campaign,
            paused=meta.get("paused") == "1",
            cancelled=meta.get("cancelled") == "1",
            priority=meta.get("priority") == "1",
            account=meta.get("account", ""),
            window=Window.parse(meta.get("window") or default_window),
            timezone=meta.get("timezone") or default_timezone,
            window_zone="callee" if meta.get("window_zone") == "callee" else "campaign",
            send_at=ms("send_at"),
            end_at=ms("end_at"),
            redial_on=tuple(x for x in meta.get("redial_on", "").split(",") if x),
            redials=int(meta.get("redials") or 0),
            redial_interval=float(meta.get("redial_interval") or 600),
            redial_backoff="exponential" if backoff == "exponential" else "linear",
            weight=float(meta.get("weight") or 1.0),
            number_cap=NumberCap.parse(meta["number_cap"]) if meta.get("number_cap") else None,
            version=meta.get("v", ""),
        )

    @property
    def by_callee(self) -> bool:
        """Each call's window is judged in its callee's zone (``--window-zone callee``)."""
        return self.window_zone == "callee" and not self.window.always

    def zone_of(self, zone: str) -> str:
        """The zone a call's window is judged in: its callee's (recorded at enqueue) for a
        ``--window-zone callee`` campaign, else (or when none was recorded) the campaign's."""
        if zone and self.window_zone == "callee" and _known_zone(zone):
            return zone
        return self.timezone

    def gate(self, now: float, zone: str | None = None) -> Gate:
        """Whether a call of this campaign may be dialled at epoch second ``now``. ``zone``:
        the call's recorded callee zone ('' for none); None judges the campaign as a whole,
        which for a ``--window-zone callee`` campaign leaves the window to each call."""
        if self.end_at is not None and now >= self.end_at:
            return Gate("expire", why="past end_at")
        if self.send_at is not None and now < self.send_at:
            return Gate("wait", self.send_at - now, "before send_at")
        if self.window.always or (zone is None and self.by_callee):
            return GO
        wait = self.window_wait(now, self.timezone if zone is None else self.zone_of(zone))
        if wait is None:
            return GO
        if self.end_at is not None:
            wait = min(wait, self.end_at - now)  # wake at end_at to expire what waits
        return Gate("wait", max(wait, 1.0), f"outside the calling window {self.window}", True)

    def window_wait(self, now: float, tz: str) -> float | None:
        """Seconds until the window opens in zone ``tz``, or None when it is open now."""
        local = datetime.fromtimestamp(now, ZoneInfo(tz))
        if self.window.is_open(local.hour * 60 + local.minute + local.second / 60):
            return None
        # Timestamps, not aware datetimes: datetimes sharing a tzinfo subtract as wall clocks,
        # an hour off across a DST change.
        return self.window.next_open(local).timestamp() - now

    def window_closes_in(self, now: float, tz: str) -> float:
        """Seconds until the window, open now in zone ``tz``, next closes."""
        local = datetime.fromtimestamp(now, ZoneInfo(tz))
        return self.window.next_close(local).timestamp() - now

    def held(self, now: float, count: int) -> Held | None:
        """Why ``count`` waiting calls are held back at epoch second ``now`` by the campaign's
        own controls (pause, send_at, window), or None when they may be dialled (or are
        about to expire: past end_at)."""
        if self.cancelled or count <= 0:
            return None
        if self.paused:
            return Held("paused", count, None, self.timezone)
        gate = self.gate(now)
        if gate.kind != "wait":
            return None
        if self.send_at is not None and now < self.send_at:
            return Held("send_at", count, self.send_at, self.timezone)
        local = datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        opens = self.window.next_open(local).timestamp()
        window = f"{self.window} {self.timezone}"
        if self.end_at is not None and opens >= self.end_at:
            return Held("window", count, self.end_at, self.timezone, window, expires=True)
        return Held("window", count, opens, self.timezone, window)

    def open_for(self, now: float) -> float | None:
        """Seconds until a campaign open at epoch second ``now`` closes (its window's end or
        its end_at), or None when nothing will close it."""
        ends: list[float] = []
        if self.end_at is not None:
            ends.append(self.end_at - now)
        if not self.window.always and not self.by_callee:
            ends.append(self.window_closes_in(now, self.timezone))
        return max(min(ends), 0.0) if ends else None

    def describe(self) -> dict[str, object]:
        """For ``status``: the controls in force."""
        out: dict[str, object] = {
            "paused": self.paused,
            "cancelled": self.cancelled,
            "priority": self.priority,
            "account": self.account or "default",
            "window": str(self.window),
            "timezone": self.timezone,
        }
        if self.window_zone != "campaign":
            out["window_zone"] = self.window_zone
        for name in ("send_at", "end_at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = datetime.fromtimestamp(value, ZoneInfo(self.timezone)).isoformat()
        if self.weight != 1.0:
            out["weight"] = self.weight
        if self.number_cap is not None:
            out["number_cap"] = str(self.number_cap)
        if self.redials:
            out["redial"] = {
                "on": list(self.redial_on),
                "redials": self.redials,
                "interval_seconds": self.redial_interval,
                "backoff": self.redial_backoff,
            }
        return out


@dataclass(frozen=True)
class CampaignOptions:
    """What an operator sets for a campaign (``None`` = leave as it is). Validated here, so
    the CLI, the Python API and the worker agree on every rule."""

    priority: bool | None = None
    account: str | None = None
    window: str | None = None
    timezone: str | None = None
    window_zone: str | None = None
    send_at: datetime | None = None
    end_at: datetime | None = None
    redial_on: tuple[str, ...] | None = None
    redials: int | None = None
    redial_interval: float | None = None
    redial_backoff: str | None = None
    weight: float | None = None
    number_cap: str | None = None  # N/PERIOD

    def to_meta(self) -> dict[str, str]:
        """The meta fields to write; raises ValueError naming the option at fault."""
        out: dict[str, str] = {}
        for name, encode in _ENCODERS.items():
            value = getattr(self, name)
            if value is not None:
                out[name] = encode(value)
        if self.send_at and self.end_at and self.end_at <= self.send_at:
            raise ValueError("end_at: must be after send_at")
        return out


def _account(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError(f"account: {value!r} is not an account name")
    return "" if value == "default" else value


@lru_cache(maxsize=1024)
def _known_zone(zone: str) -> bool:
    """Whether this machine's zone database knows ``zone`` (one ``phonenumbers`` names but
    the database lacks is judged in the campaign's zone, rather than stall the campaign)."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone {value!r}") from None
    return value


def _window_zone(value: str) -> str:
    if value not in WINDOW_ZONES:
        raise ValueError(f"window_zone: {value!r} is not one of {', '.join(WINDOW_ZONES)}")
    return value


def _instant(name: str) -> Callable[[datetime], str]:
    def encode(value: datetime) -> str:
        if value.tzinfo is None:
            raise ValueError(f"{name}: give a time zone offset, e.g. +05:30")
        return str(math.floor(value.timestamp() * 1000))

    return encode


def _redial_on(value: tuple[str, ...]) -> str:
    bad = [s for s in value if s not in REDIAL_STATUSES]
    if bad:
        raise ValueError(f"redial_on: {', '.join(bad)} is not one of {', '.join(REDIAL_STATUSES)}")
    return ",".join(value)


def _redials(value: int) -> str:
    if not 0 <= value <= 10:
        raise ValueError("redials: must be between 0 and 10")
    return str(value)


def _redial_interval(value: float) -> str:
    if not value > 0:
        raise ValueError("redial_interval: must be a positive number of seconds")
    return repr(float(value))


def _redial_backoff(value: str) -> str:
    if value not in ("linear", "exponential"):
        raise ValueError("redial_backoff: 'linear' or 'exponential'")
    return value


def _weight(value: float) -> str:
    if not (math.isfinite(value) and MIN_WEIGHT <= value <= MAX_WEIGHT):
        raise ValueError(f"weight: a number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}")
    return repr(float(value))


#: Each option of CampaignOptions: how it is checked and written to the meta hash.
_ENCODERS: dict[str, Callable[[Any], str]] = {
    "priority": lambda value: "1" if value else "0",
    "account": _account,
    "window": lambda value: str(Window.parse(value)),
    "timezone": _timezone,
    "window_zone": _window_zone,
    "send_at": _instant("send_at"),
    "end_at": _instant("end_at"),
    "redial_on": _redial_on,
    "redials": _redials,
    "redial_interval": _redial_interval,
    "redial_backoff": _redial_backoff,
    "weight": _weight,
    # 'none': the campaign follows NUMBER_DAILY_CAP again.
    "number_cap": lambda value: "" if value.strip() == "none" else str(NumberCap.parse(value)),
}


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time with an offset (``2026-11-24T09:30:00+05:30``)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{what}: {text!r} has no offset; add one, e.g. +05:30")
    return value
