"""When will a campaign finish? A forecast from its controls and its account: pure functions.

The model is a fluid one: calls are a quantity that drains at the campaign's throughput,

* the account's rate (permits per second, the limiter's spacing), or less under the live-call
  cap: ``slots / (2 slots per connect-two-numbers call, 1 per flow call) / mean call length``;
* times its share of the account against the account's other open campaigns: ``weight / (sum
  of the weights of the campaigns still with calls)``, each other campaign draining its own
  waiting calls at its share (their own windows and redials are not modelled);
* only while the calling window is open, from ``send_at`` (or now), and up to ``end_at``:
  what still waits then (a first dial or a redial) expires;
* with redials: of the calls dialled, the fraction whose call_status is in ``redial_on``
  (from a stated mix before the start, or the campaign's call_status counts so far) comes
  back after the call's length plus the redial interval (``interval x n``, linear, or
  ``interval x 2^(n-1)``, exponential), up to ``redials`` times.

``finish`` is when the last call is dialled (its request sent); the campaign settles one call
length later. Tested without Redis in tests/unit/test_forecast.py.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from callq.campaign.controls import MAX_WEIGHT, REDIAL_STATUSES
from callq.campaign.window import Window

#: The call_status values a mix may name.
CALL_STATUSES = ("completed", "busy", "no-answer", "failed")
#: Below this many calls left, a quantity counts as done (the model is continuous).
_EPS = 0.5
#: At most this many steps are simulated; beyond it the forecast says "not within" the horizon.
_MAX_STEPS = 200_000
#: The forecast looks at most this far ahead (seconds).
HORIZON_SECONDS = 30 * 86400.0

Bound = Literal["rate", "live_cap"]


def parse_mix(text: str) -> dict[str, float]:
    """``completed=0.6,busy=0.2,no-answer=0.2`` -> fractions summing to 1. Raises ValueError
    naming ``mix`` and the part at fault."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in CALL_STATUSES:
            raise ValueError(
                f"mix: {part!r} is not STATUS=FRACTION, STATUS one of {', '.join(CALL_STATUSES)}"
            )
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"mix: {part!r}: {value.strip()!r} is not a number") from None
        if not (math.isfinite(share) and share >= 0):
            raise ValueError(f"mix: {part!r}: a fraction must be 0 or more")
        out[name] = out.get(name, 0.0) + share
    return normalise_mix(out, what="mix")


def normalise_mix(counts: Mapping[str, float], *, what: str = "call_status") -> dict[str, float]:
    """Counts or fractions per call_status -> fractions summing to 1 (an empty or all-zero
    mix: ``{}``, which expects no redial). Unknown statuses are left out."""
    known = {k: float(v) for k, v in counts.items() if k in CALL_STATUSES and v > 0}
    total = sum(known.values())
    if total <= 0:
        if counts and what == "mix":
            raise ValueError("mix: the fractions add up to 0")
        return {}
    return {k: v / total for k, v in sorted(known.items())}


@dataclass(frozen=True)
class Other:
    """Another open campaign of the same account: its weight and its calls still to dial."""

    campaign: str
    weight: float
    waiting: int


@dataclass(frozen=True)
class Plan:
    """What the forecast is made from. Times are epoch seconds."""

    calls: int  # calls still to dial (their first dial, or a redial already due)
    now: float
    rate: float  # the account's permits per second
    weight: float = 1.0
    others: tuple[Other, ...] = ()
    live_cap: int | None = None  # EXOTEL_MAX_LIVE_CALLS of the account
    slots_per_call: float = 2.0  # 2: connect two numbers, 1: a flow call
    call_seconds: float = 60.0  # mean time a call holds its slots (ring + talk)
    window: Window = field(default_factory=Window)
    timezone: str = "Asia/Kolkata"
    send_at: float | None = None
    end_at: float | None = None
    redial_on: tuple[str, ...] = ()
    redials: int = 0
    redial_interval: float = 600.0
    redial_backoff: Literal["linear", "exponential"] = "linear"
    mix: Mapping[str, float] = field(default_factory=dict)  # call_status fractions

    @property
    def p_redial(self) -> float:
        """The fraction of dialled calls that come back for a redial."""
        if self.redials <= 0:
            return 0.0
        return sum(self.mix.get(s, 0.0) for s in self.redial_on if s in REDIAL_STATUSES)

    def redial_delay(self, n: int) -> float:
        """Seconds from a call's dial to its ``n``-th redial (n >= 1)."""
        factor = n if self.redial_backoff == "linear" else 2 ** (n - 1)
        return self.call_seconds + self.redial_interval * factor

    def account_throughput(self) -> tuple[float, Bound]:
        """Calls per second the account can dial, and what bounds it."""
        rate = max(self.rate, 0.0)
        if self.live_cap is not None and self.call_seconds > 0:
            cap = self.live_cap / max(self.slots_per_call, 1.0) / self.call_seconds
            if cap < rate:
                return cap, "live_cap"
        return rate, "rate"


@dataclass(frozen=True)
class Forecast:
    """The forecast of one campaign."""

    start: float  # when its first (next) call can be dialled
    finish: float | None  # when its last call is dialled; None: not before end_at / horizon
    calls: int  # calls to dial at the start
    dials: float  # dials expected, redials included (those before end_at)
    expected_redials: float  # redials expected, had nothing expired
    expire: int  # calls expected to expire at end_at (waiting for a first dial or a redial)
    throughput: float  # the campaign's calls per second while open, at the start
    bound: Bound  # the account's rate or its live-call cap
    share: float  # the campaign's share of the account at the start (1: alone)
    advice: tuple[str, ...] = ()  # controls that would change the expiries
    redials_cut: int = 0  # redials that would fall due after end_at (not scheduled)
    timezone: str = "Asia/Kolkata"

    def local(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, ZoneInfo(self.timezone)).isoformat(timespec="seconds")

    def as_dict(self) -> dict[str, object]:
        return {
            "start": self.local(self.start),
            "finish": None if self.finish is None else self.local(self.finish),
            "seconds": None if self.finish is None else round(self.finish - self.start, 3),
            "calls": self.calls,
            "dials": round(self.dials, 1),
            "redials": round(self.expected_redials, 1),
            "expire": self.expire,
            "redials_cut": self.redials_cut,
            "calls_per_second": round(self.throughput, 4),
            "bound": self.bound,
            "share": round(self.share, 4),
            "advice": list(self.advice),
        }

    def lines(self) -> list[str]:
        """For an operator."""
        span = "" if self.finish is None else f" ({_span(self.finish - self.start)})"
        finish = (
            "not before end_at"
            if self.finish is None
            else f"{self.local(self.finish)}{span}, the last call dialled"
        )
        share = f", {100 * self.share:.0f}% share of the account" if self.share < 1 else ""
        out = [
            f"forecast: {self.calls} calls, about {self.dials:.0f} dials "
            f"({self.expected_redials:.0f} redials expected)",
            f"  starts {self.local(self.start)}, finishes {finish}",
            f"  {self.throughput:.2f} calls/s while open (bound by the account's "
            f"{'live-call cap' if self.bound == 'live_cap' else 'rate'}{share})",
        ]
        if self.expire:
            out.append(f"  {self.expire} calls expire at end_at")
        if self.redials_cut:
            out.append(f"  {self.redials_cut} redials would fall due after end_at (not made)")
        if self.expire:
            out.extend(f"  - {a}" for a in self.advice)
        return out


def _span(seconds: float) -> str:
    s = max(0, round(seconds))
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


@dataclass
class _Run:
    finish: float | None
    dials: float
    expire: float
    cut: float = 0.0  # redials pending at end_at: due after it, never scheduled


def _expected_redials(plan: Plan) -> float:
    p = plan.p_redial
    return plan.calls * sum((p**k for k in range(1, plan.redials + 1)), 0.0)


class _Fluid:
    """The calls left, as quantities: ready by generation (0: first dials, n: n-th redials),
    redials pending until due, and the account's other campaigns draining beside them."""

    def __init__(self, plan: Plan, rate: float) -> None:
        self.plan = plan
        self.rate = rate  # the account's calls per second
        self.p = plan.p_redial
        self.ready = [0.0] * (plan.redials + 1)
        self.ready[0] = float(plan.calls)
        self.pending: list[tuple[float, int, float]] = []  # (due, generation, amount)
        self.others = [[o.weight, float(o.waiting)] for o in plan.others if o.waiting > 0]
        self.dials = 0.0
        self.last = 0.0  # when the last dial went out

    def due(self, t: float) -> None:
        while self.pending and self.pending[0][0] <= t:
            _, gen, amount = heapq.heappop(self.pending)
            self.ready[gen] += amount

    def rest(self) -> float:
        return sum(self.ready) + sum(a for _, _, a in self.pending)

    def step(self, t: float, step: float) -> float:
        """Dial for up to ``step`` seconds from ``t``; returns the seconds used."""
        left = sum(self.ready)
        weights = self.plan.weight + sum(o[0] for o in self.others if o[1] >= _EPS)
        rate = self.rate * self.plan.weight / weights
        capacity = rate * step
        if capacity >= left:  # the last ready calls go out within this step
            step, capacity = left / rate, left
        for o in self.others:
            if o[1] >= _EPS:
                o[1] = max(o[1] - self.rate * o[0] / weights * step, 0.0)
        for gen, amount in enumerate(self.ready):
            take = min(amount, capacity)
            if take <= 0:
                continue
            self.ready[gen] -= take
            capacity -= take
            self.dials += take
            self.last = t + step
            if gen < self.plan.redials and self.p > 0:
                due = t + step / 2 + self.plan.redial_delay(gen + 1)
                heapq.heappush(self.pending, (due, gen + 1, take * self.p))
        return step


def _simulate(plan: Plan, start: float) -> _Run:
    """Drain the plan's calls from ``start``; the finish, the dials and what expires."""
    acct_rate, _ = plan.account_throughput()
    if plan.calls <= 0:
        return _Run(start, 0.0, 0.0)
    if acct_rate <= 0 or plan.weight <= 0:
        return _Run(None, 0.0, float(plan.calls) if plan.end_at is not None else 0.0)
    zone, fluid = ZoneInfo(plan.timezone), _Fluid(plan, acct_rate)
    work = plan.calls + _expected_redials(plan) + sum(o[1] for o in fluid.others)
    dt = min(max(work / acct_rate / 4000, 0.01), 60.0)
    t, horizon = start, start + HORIZON_SECONDS
    for _ in range(_MAX_STEPS):
        fluid.due(t)
        rest = fluid.rest()
        if plan.end_at is not None and t >= plan.end_at:
            ready = sum(fluid.ready)  # these expire; the redials pending are never made
            finish = fluid.last if ready < _EPS else None
            return _Run(finish, fluid.dials + ready * (ready < _EPS), ready, rest - ready)
        if rest < _EPS:  # under half a call left: that is the last one
            return _Run(t, fluid.dials + rest, 0.0)
        if t >= horizon:
            break
        local = datetime.fromtimestamp(t, zone)
        if not plan.window.is_open(local.hour * 60 + local.minute + local.second / 60):
            t = max(plan.window.next_open(local).timestamp(), t + 1e-3)
        elif sum(fluid.ready) <= 1e-9:
            t = fluid.pending[0][0]  # nothing to dial until the next redial falls due
        else:
            step = dt
            if not plan.window.always:
                step = min(step, max(plan.window.next_close(local).timestamp() - t, 1e-3))
            if plan.end_at is not None:
                step = min(step, plan.end_at - t)
            t += fluid.step(t, step)
    return _Run(None, fluid.dials, 0.0)


def _start(plan: Plan) -> float:
    return max(plan.now, plan.send_at or plan.now)


def _throughput(plan: Plan) -> tuple[float, Bound, float]:
    acct_rate, bound = plan.account_throughput()
    weights = plan.weight + sum(o.weight for o in plan.others if o.waiting > 0)
    share = plan.weight / weights if weights > 0 else 0.0
    return acct_rate * share, bound, share


def forecast(plan: Plan, *, advise: bool = True) -> Forecast:
    """The forecast of ``plan``; with ``advise``, which control would save the calls that
    expire (a later end_at, a wider window, a higher weight)."""
    start = _start(plan)
    run = _simulate(plan, start)
    rate, bound, share = _throughput(plan)
    expire = round(run.expire)
    advice: tuple[str, ...] = ()
    if expire and advise:
        advice = tuple(_advice(plan, start, expire))
    return Forecast(
        start=start,
        finish=run.finish,
        calls=plan.calls,
        dials=run.dials,
        expected_redials=_expected_redials(plan),
        expire=expire,
        redials_cut=round(run.cut),
        throughput=rate,
        bound=bound,
        share=share,
        advice=advice,
        timezone=plan.timezone,
    )


def _advice(plan: Plan, start: float, expire: int) -> list[str]:
    zone = ZoneInfo(plan.timezone)
    out: list[str] = []
    later = _simulate(replace(plan, end_at=None), start)
    if later.finish is not None:
        at = datetime.fromtimestamp(math.ceil(later.finish / 60) * 60, zone)
        out.append(f"a later end_at: {at.isoformat(timespec='minutes')} or after dials them all")
    if not plan.window.always:
        wide = round(_simulate(replace(plan, window=Window()), start).expire)
        if wide < expire:
            out.append(f"a wider window: 'always' leaves {wide} to expire")
    if any(o.waiting > 0 for o in plan.others) and plan.weight < MAX_WEIGHT:
        top = round(_simulate(replace(plan, weight=MAX_WEIGHT), start).expire)
        if top < expire:
            out.append(_weight_advice(plan, start, top))
    if plan.live_cap is not None and plan.account_throughput()[1] == "live_cap":
        out.append("a higher EXOTEL_MAX_LIVE_CALLS (the live-call cap bounds the account)")
    if not out:
        out.append("none of end_at, window or weight: the account's rate is the limit")
    return out


def _weight_advice(plan: Plan, start: float, best: int) -> str:
    """The lowest weight (to 2 significant figures) that comes within 1% of ``best``, the
    fewest expiries any weight up to MAX_WEIGHT gives."""
    good = best + max(1, best // 100)
    lo, hi = plan.weight, MAX_WEIGHT
    for _ in range(14):
        mid = (lo + hi) / 2
        if round(_simulate(replace(plan, weight=mid), start).expire) <= good:
            hi = mid
        else:
            lo = mid
    weight = min(math.ceil(float(f"{hi:.2g}") * 100) / 100, MAX_WEIGHT)
    if weight < hi:
        weight = min(float(f"{hi:.3g}"), MAX_WEIGHT)
    left = round(_simulate(replace(plan, weight=weight), start).expire)
    return f"a higher weight: {weight:g} leaves {left} to expire"


def observed_mix(call_status: Mapping[str, int]) -> dict[str, float]:
    """The call_status mix of a running campaign, from its counts."""
    return normalise_mix({k: float(v) for k, v in call_status.items()})


def others_from(rows: Sequence[tuple[str, float, int]], campaign: str) -> tuple[Other, ...]:
    """(campaign, weight, waiting) rows of an account's campaigns -> the others of ``campaign``."""
    return tuple(Other(c, w, n) for c, w, n in rows if c != campaign and n > 0)
