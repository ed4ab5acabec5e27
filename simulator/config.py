"""Configuration of the Exotel simulator: the accounts it knows and the faults it injects."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALLBACK_CONTENT_TYPES",
    "FAULTS",
    "STATUSES",
    "Account",
    "SimConfig",
    "apply_changes",
]

#: Every fault a script may name. "ok" means normal behaviour.
FAULTS: tuple[str, ...] = (
    "ok",
    "500",
    "504",
    "429",
    "slow_placed",
    "reset_before",
    "reset_after",
    "proxy_504",
)

#: Terminal statuses a simulated call may end with.
STATUSES: tuple[str, ...] = ("completed", "busy", "no-answer", "failed")

CALLBACK_CONTENT_TYPES: tuple[str, ...] = ("multipart/form-data", "application/json")


@dataclass
class Account:
    """One Exotel account the simulator knows."""

    sid: str
    api_key: str
    api_token: str
    rate_limit: int = 200
    period: float = 60.0
    #: Exotel's cap on concurrent calls, in slots (a connect-two-numbers call holds 2 for its
    #: life, a flow call 1); None = no cap. At the cap a request is refused, not placed.
    max_live_slots: int | None = None


def _default_accounts() -> list[Account]:
    return [Account("sim-account", "sim-key", "sim-token")]


def _default_mix() -> dict[str, float]:
    return {"completed": 0.7, "busy": 0.1, "no-answer": 0.15, "failed": 0.05}


@dataclass
class SimConfig:
    """How the simulator behaves. Probabilities are per request (or per callback)."""

    accounts: list[Account] = field(default_factory=_default_accounts)
    #: Multiplies every latency, call duration and callback delay (0.01 = 100x faster).
    time_scale: float = 1.0
    #: Seed latency profile (mean ~480 ms, p95 ~1.1 s, p99 ~2.5 s); False replies at once.
    latency: bool = True
    p_500: float = 0.0
    p_504: float = 0.0
    #: The call IS placed, the reply is delayed by ``slow_seconds`` (not scaled).
    p_slow_placed: float = 0.0
    slow_seconds: float = 5.0
    #: A listing page holds at most this many calls, whatever PageSize asks (1-100), so a
    #: test can make a search span pages.
    max_page_size: int = 100
    #: Connection reset, call NOT placed.
    p_reset_before: float = 0.0
    #: Call placed, then connection reset (no reply).
    p_reset_after: float = 0.0
    #: POST a StatusCallback when a simulated call ends.
    callbacks: bool = True
    status_mix: dict[str, float] = field(default_factory=_default_mix)
    p_duplicate_callback: float = 0.0
    #: The callback is delayed by ``late_callback_seconds`` extra (scaled).
    p_late_callback: float = 0.0
    late_callback_seconds: float = 20.0
    #: Ring and talk durations in simulated seconds (scaled by ``time_scale`` in real time).
    ring_seconds: tuple[float, float] = (2.0, 15.0)
    talk_seconds: tuple[float, float] = (5.0, 60.0)
    seed: int | None = None
    #: Content type of a StatusCallback when the request names none. Exotel's page says
    #: multipart/form-data is the default.
    default_callback_content_type: str = "multipart/form-data"
    #: The refusal at an account's live-call cap (``max_live_slots``): status and message
    #: (a RestException). Exotel documents the cap, not its reply; this is a guess.
    live_cap_status: int = 429
    live_cap_message: str = (
        "Too many concurrent calls: the account's concurrency limit has been reached"
    )
    #: Zone of every timestamp shown (DateCreated, StartTime, filters, callbacks).
    timezone: str = "Asia/Kolkata"

    def validate(self) -> None:
        """Raise ValueError when a value makes no sense."""
        _validate_accounts(self.accounts)
        if not (self.time_scale >= 0 and math.isfinite(self.time_scale)):
            raise ValueError("time_scale must be a finite number >= 0")
        probs = {
            "p_500": self.p_500,
            "p_504": self.p_504,
            "p_slow_placed": self.p_slow_placed,
            "p_reset_before": self.p_reset_before,
            "p_reset_after": self.p_reset_after,
            "p_duplicate_callback": self.p_duplicate_callback,
            "p_late_callback": self.p_late_callback,
        }
        for name, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        fault_total = (
            self.p_500 + self.p_504 + self.p_slow_placed + self.p_reset_before + self.p_reset_after
        )
        if fault_total > 1.0 + 1e-9:
            raise ValueError("the fault probabilities add up to more than 1")
        for name in ("slow_seconds", "late_callback_seconds"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0")
        if not self.status_mix or any(k not in STATUSES for k in self.status_mix):
            raise ValueError(f"status_mix keys must be among {', '.join(STATUSES)}")
        if any(v < 0 for v in self.status_mix.values()) or sum(self.status_mix.values()) <= 0:
            raise ValueError("status_mix weights must be >= 0 and not all 0")
        for name in ("ring_seconds", "talk_seconds"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi and math.isfinite(hi)):
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
        if isinstance(self.max_page_size, bool) or not 1 <= self.max_page_size <= 100:
            raise ValueError("max_page_size must be an integer within [1, 100]")
        if isinstance(self.live_cap_status, bool) or not 400 <= self.live_cap_status <= 599:
            raise ValueError("live_cap_status must be an HTTP error status within [400, 599]")
        if not self.default_callback_content_type:
            raise ValueError("default_callback_content_type must not be empty")


_FLOAT_FIELDS = {
    "time_scale",
    "p_500",
    "p_504",
    "p_slow_placed",
    "slow_seconds",
    "p_reset_before",
    "p_reset_after",
    "p_duplicate_callback",
    "p_late_callback",
    "late_callback_seconds",
}
_BOOL_FIELDS = {"latency", "callbacks"}
_STR_FIELDS = {"default_callback_content_type", "timezone", "live_cap_message"}
_PAIR_FIELDS = {"ring_seconds", "talk_seconds"}
_INT_FIELDS = {"max_page_size", "live_cap_status"}
#: Besides SimConfig's own fields, ``rate_limit``, ``period`` and ``max_live_slots`` set every
#: account's limit (``max_live_slots`` null: no cap).
CHANGEABLE: frozenset[str] = frozenset(
    _FLOAT_FIELDS | _BOOL_FIELDS | _STR_FIELDS | _PAIR_FIELDS | _INT_FIELDS | {"status_mix", "seed"}
) | frozenset({"rate_limit", "period", "max_live_slots"})


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _validate_accounts(accounts: list[Account]) -> None:
    if not accounts:
        raise ValueError("at least one account is needed")
    sids = [a.sid for a in accounts]
    if len(set(sids)) != len(sids):
        raise ValueError("account sids must be unique")
    for acc in accounts:
        if not acc.sid or "/" in acc.sid:
            raise ValueError(f"bad account sid {acc.sid!r}")
        if acc.rate_limit < 1 or not (acc.period > 0 and math.isfinite(acc.period)):
            raise ValueError(f"bad rate limit for account {acc.sid!r}")
        cap = acc.max_live_slots
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"bad max_live_slots for account {acc.sid!r}: an integer >= 1")


def _coerce(name: str, value: Any) -> Any:
    """``value`` checked for field ``name``'s type (the simple fields)."""
    if name in _FLOAT_FIELDS:
        return _as_float(name, value)
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    if name in _PAIR_FIELDS:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError(f"{name} must be a pair [low, high]")
        return (_as_float(name, value[0]), _as_float(name, value[1]))
    if name == "status_mix":
        if not isinstance(value, dict):
            raise ValueError("status_mix must be an object")
        return {str(k): _as_float(name, v) for k, v in value.items()}
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):  # seed
        raise ValueError("seed must be an integer or null")
    return value


def apply_changes(config: SimConfig, changes: dict[str, Any]) -> SimConfig:
    """Return a copy of ``config`` with ``changes`` applied and validated.

    Raises ValueError for an unknown field or a value of the wrong type.
    """
    unknown = sorted(set(changes) - CHANGEABLE)
    if unknown:
        raise ValueError(f"unknown or unchangeable field(s): {', '.join(unknown)}")
    new = dataclasses.replace(
        config,
        accounts=[dataclasses.replace(a) for a in config.accounts],
        status_mix=dict(config.status_mix),
    )
    for name, value in changes.items():
        if name == "rate_limit":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("rate_limit must be an integer")
            for acc in new.accounts:
                acc.rate_limit = value
        elif name == "max_live_slots":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError("max_live_slots must be an integer or null")
            for acc in new.accounts:
                acc.max_live_slots = value
        elif name == "period":
            period = _as_float(name, value)
            for acc in new.accounts:
                acc.period = period
        else:
            setattr(new, name, _coerce(name, value))
    new.validate()
    return new
