"""Live progress and the final summary of a demo campaign.

:class:`Monitor` samples the ledger (O(1) counters every tick, a scan of the records now and
then) and, when the simulator runs locally, its ground truth. :func:`render_live` draws one
block that is redrawn in place on a terminal; :func:`render_line` is the plain line written
periodically otherwise. :func:`summarise` computes the final figures once, as plain data, so
the printed table and ``reports/<campaign>.summary.json`` carry the same numbers.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callq.store.ledger import CampaignStatus, Ledger
from callq.store.records import STATES, CallRecord, State

__all__ = [
    "LIVE_STATES",
    "Monitor",
    "Snapshot",
    "render_line",
    "render_live",
    "render_summary",
    "summarise",
]

LIVE_STATES = STATES
_SHOWN_IF_ANY = ("cancelled", "expired", "skipped")
UNSETTLED = ("queued", "dialing", "retrying", "in_doubt")
_BAR = {
    "originated": ("█", "32"),
    "failed": ("x", "31"),
    "cancelled": ("-", "90"),
    "expired": ("e", "90"),
    "skipped": ("s", "90"),
    "in_doubt": ("?", "35"),
    "retrying": ("r", "33"),
    "dialing": (">", "36"),
    "queued": ("·", "2"),
}
_SCAN_EVERY_SMALL = 1.0  # seconds between record scans while a campaign is small
_SCAN_EVERY_LARGE = 10.0
_SMALL = 5000


def fetch_truth(sim_url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The simulator's ground truth, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{sim_url}/_sim/truth", timeout=timeout) as resp:  # noqa: S310
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RecordFacts:
    """What a scan of the campaign's records tells beyond the counters."""

    attempts_total: int = 0
    retries: int = 0
    in_doubt_entered: int = 0
    in_doubt_settled: int = 0


def scan_records(records: list[CallRecord]) -> RecordFacts:
    facts = RecordFacts()
    for rec in records:
        facts.attempts_total += rec.attempts
        facts.retries += max(rec.attempts - 1, 0)
        if rec.in_doubt_since:
            facts.in_doubt_entered += 1
            if rec.state is not State.IN_DOUBT:
                facts.in_doubt_settled += 1
    return facts


@dataclass
class Snapshot:
    elapsed: float
    status: CampaignStatus
    facts: RecordFacts
    #: Requests in the last window (None until known) and the window, seconds.
    in_window: int | None
    window: float
    limit: int
    rate_limited: int | None = None

    @property
    def settled(self) -> bool:
        return self.status.settled

    @property
    def callbacks(self) -> int:
        return sum(self.status.call_status.values())


@dataclass
class Monitor:
    ledger: Ledger
    campaign: str
    limit: int
    window: float
    sim_url: str | None = None
    started: float = field(default_factory=time.monotonic)
    truth: dict[str, Any] | None = None
    _facts: RecordFacts = field(default_factory=RecordFacts)
    _last_scan: float = -1e9
    _last_truth: float = -1e9
    _counts: deque[tuple[float, int]] = field(default_factory=deque)

    def _sent_so_far(self) -> int:
        """A cumulative count of requests sent: the simulator's truth (connect and Call
        Details), else the ledger's attempts."""
        if self.truth is not None:
            return int(self.truth["requests"]) + int(self.truth.get("details_requests", 0))
        return self._facts.attempts_total

    def poll(self) -> Snapshot:
        now = time.monotonic()
        status = self.ledger.status(self.campaign)
        every = _SCAN_EVERY_SMALL if status.total <= _SMALL else _SCAN_EVERY_LARGE
        if now - self._last_scan >= every:
            self._facts = scan_records(list(self.ledger.call_records(self.campaign)))
            self._last_scan = now
        if self.sim_url and now - self._last_truth >= 1.0:
            self.truth = fetch_truth(self.sim_url) or self.truth
            self._last_truth = now
        sent = self._sent_so_far()
        self._counts.append((now, sent))
        while len(self._counts) > 1 and self._counts[1][0] <= now - self.window:
            self._counts.popleft()
        in_window = sent - self._counts[0][1] if len(self._counts) > 1 else 0
        return Snapshot(
            elapsed=now - self.started,
            status=status,
            facts=self._facts,
            in_window=in_window,
            window=self.window,
            limit=self.limit,
            rate_limited=int(self.truth["rate_limited"]) if self.truth else None,
        )

    def refresh_truth(self) -> dict[str, Any] | None:
        if self.sim_url:
            self.truth = fetch_truth(self.sim_url) or self.truth
        return self.truth


# --- rendering ----------------------------------------------------------------------------


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color and text else text


def _bar(states: Mapping[str, int], total: int, width: int, color: bool) -> str:
    if total <= 0:
        return "·" * width
    cells: list[str] = []
    used = 0
    order = (
        "originated",
        "failed",
        "cancelled",
        "expired",
        "skipped",
        "in_doubt",
        "retrying",
        "dialing",
        "queued",
    )
    for i, state in enumerate(order):
        n = states.get(state, 0)
        if i == len(order) - 1:
            k = width - used
        else:
            k = round(n * width / total)
            if n and not k:
                k = 1
            k = min(k, width - used)
        used += k
        char, code = _BAR[state]
        cells.append(_paint(char * k, code, color))
    return "".join(cells)


def _fmt_counts(counts: Mapping[str, int], sep: str = "  ") -> str:
    return sep.join(f"{k} {v}" for k, v in counts.items()) or "none yet"


def render_live(
    snap: Snapshot, *, title: str, color: bool, callbacks_expected: bool, width: int = 48
) -> list[str]:
    st = snap.status
    states = st.states
    pct = 100.0 * (st.total - sum(states.get(s, 0) for s in UNSETTLED)) / max(st.total, 1)
    lines = [
        f"{title}  ·  {snap.elapsed:5.1f} s",
        f"[{_bar(states, st.total, width, color)}] {pct:5.1f}% settled",
        "  ".join(
            _paint(f"{s} {states.get(s, 0)}", _BAR[s][1], color and states.get(s, 0) > 0)
            for s in LIVE_STATES
            if s not in _SHOWN_IF_ANY or states.get(s, 0)
        )
        + (f"  (parked {st.parked})" if st.parked else ""),
    ]
    if snap.in_window is not None:
        fill = min(snap.in_window / max(snap.limit, 1), 1.0)
        meter = "#" * round(fill * 20)
        lines.append(
            f"rate      {snap.in_window:>4} requests in the last {snap.window:.1f} s "
            f"/ limit {snap.limit}  [{meter:<20}]"
            + (f"  429s {snap.rate_limited}" if snap.rate_limited is not None else "")
        )
    f = snap.facts
    lines.append(
        f"retries   {f.retries:>4}    in doubt settled {f.in_doubt_settled} of {f.in_doubt_entered}"
    )
    cb = f"call_status {_fmt_counts(st.call_status)}"
    if callbacks_expected:
        cb += f"   ({snap.callbacks} of {states.get('originated', 0)} originated)"
    else:
        cb += "   (no callback receiver: call_status will not arrive)"
    lines.append(cb)
    return lines


def render_line(snap: Snapshot) -> str:
    st = snap.status
    states = " ".join(f"{s}={st.states.get(s, 0)}" for s in LIVE_STATES[:6])
    rate = (
        f" | rate {snap.in_window}/{snap.limit} per {snap.window:.1f}s"
        if snap.in_window is not None
        else ""
    )
    cs = " ".join(f"{k}={v}" for k, v in st.call_status.items()) or "-"
    return (
        f"[{snap.elapsed:6.1f}s] {states}{rate} | retries {snap.facts.retries} | "
        f"in-doubt settled {snap.facts.in_doubt_settled}/{snap.facts.in_doubt_entered} | "
        f"call_status {cs}"
    )


# --- the summary --------------------------------------------------------------------------


def _peak_originations(records: list[CallRecord], window: float) -> int | None:
    """The most calls originated (by the ledger's ``originated_at``, Redis clock) in any
    window of ``window`` seconds: the achieved rate, comparable with the limit."""
    times = sorted(r.originated_at for r in records if r.originated_at)
    if not times:
        return None
    span_ms = window * 1000.0
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= span_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def summarise(
    *,
    ledger: Ledger,
    campaign: str,
    truth: dict[str, Any] | None,
    limit: int,
    window: float,
    wall_seconds: float,
    mode: Mapping[str, Any],
    enqueue: Mapping[str, Any],
    timed_out: bool,
    interrupted: bool,
    callbacks_expected: bool,
) -> dict[str, Any]:
    """Every figure of the summary, as plain JSON-able data."""
    status = ledger.status(campaign)
    records = list(ledger.call_records(campaign))
    attempts = Counter(r.attempts for r in records)
    logs = _attempt_logs(ledger, [r.request_id for r in records])
    in_doubt = [r for r in records if r.in_doubt_since]
    redialled = {
        r.request_id
        for r in in_doubt
        if any(e.get("outcome") == "unplaced" for e in logs.get(r.request_id, []))
    }
    # Placed, and settled by its own StatusCallback while the worker still waited for the
    # reply (the worker's late "unknown" was then refused): never in doubt at all.
    by_callback = sum(
        1
        for r in records
        if r.state is State.ORIGINATED
        and not r.in_doubt_since
        and not any(
            e.get("outcome") in ("originated", "reconciled") for e in logs.get(r.request_id, [])
        )
    )
    settled_in_doubt = [r for r in in_doubt if r.state is not State.IN_DOUBT]
    originated = status.states.get("originated", 0)
    callbacks = sum(status.call_status.values())
    out: dict[str, Any] = {
        "campaign": campaign,
        "mode": dict(mode),
        "enqueue": dict(enqueue),
        "total": status.total,
        "states": status.states,
        "call_status": status.call_status,
        "callbacks": {
            "expected": callbacks_expected,
            "received": callbacks,
            "missing": max(originated - callbacks, 0) if callbacks_expected else None,
        },
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "retries": sum(max(n - 1, 0) * c for n, c in attempts.items()),
        "in_doubt": {
            "entered": len(in_doubt),
            "settled": len(settled_in_doubt),
            "found_placed": sum(
                1
                for r in settled_in_doubt
                if r.state is State.ORIGINATED and r.request_id not in redialled
            ),
            "proven_unplaced": len(redialled),
            "still_in_doubt": len(in_doubt) - len(settled_in_doubt),
            "settled_by_callback_before_reply": by_callback,
        },
        "settled": status.settled,
        "timed_out": timed_out,
        "interrupted": interrupted,
        "wall_seconds": round(wall_seconds, 1),
        "rate": {
            "limit": limit,
            "window_seconds": round(window, 3),
            "max_originated_in_any_window": _peak_originations(records, window),
            "max_requests_in_any_window": None,
            "rate_limited_429": None,
        },
        "truth": None,
    }
    if truth is not None:
        out["truth"] = _truth_figures(truth, records)
        acct = next(iter(truth.get("max_in_window", {}).values()), None)
        out["rate"]["max_requests_in_any_window"] = acct
        out["rate"]["rate_limited_429"] = truth.get("rate_limited")
    out["verdict"] = _verdict(out)
    return out


def _attempt_logs(ledger: Ledger, request_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every attempts log of these requests, in pipelined batches."""
    out: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start : start + 500]
        pipe = ledger.redis.pipeline(transaction=False)
        for rid in chunk:
            pipe.lrange(ledger.keys.attempts(rid), 0, -1)
        for rid, raw in zip(chunk, pipe.execute(), strict=True):
            out[rid] = [json.loads(x) for x in raw]
    return out


def _truth_figures(truth: dict[str, Any], records: list[CallRecord]) -> dict[str, Any]:
    by_cf: dict[str, int] = truth.get("by_custom_field", {})
    ours = {r.request_id for r in records}
    sid_of = {c["custom_field"]: c["sid"] for c in truth.get("calls", []) if c.get("custom_field")}
    duplicates = sorted(rid for rid in ours if by_cf.get(rid, 0) > 1)
    wrong_sid = sorted(
        r.request_id
        for r in records
        if r.state is State.ORIGINATED and sid_of.get(r.request_id) != r.sid
    )
    placed_not_recorded = sorted(
        r.request_id
        for r in records
        if by_cf.get(r.request_id, 0) >= 1
        and r.state not in (State.ORIGINATED, State.IN_DOUBT, State.DIALING)
    )
    cbs = truth.get("callbacks", {})
    return {
        "originated": sum(by_cf.get(rid, 0) for rid in ours),
        "duplicates": len(duplicates),
        "duplicate_requests": duplicates[:20],
        "wrong_sid": len(wrong_sid),
        "placed_not_recorded": len(placed_not_recorded),
        "placed_not_recorded_requests": placed_not_recorded[:20],
        "requests": truth.get("requests"),
        "details_requests": truth.get("details_requests"),
        "faults": {k: v for k, v in truth.get("faults", {}).items() if v},
        "callbacks": {
            k: cbs.get(k) for k in ("sent", "failed", "pending", "duplicates", "retries")
        },
    }


def _verdict(s: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    t = s["truth"]
    if t is not None:
        if t["duplicates"]:
            problems.append(f"{t['duplicates']} request(s) originated more than once")
        if t["wrong_sid"]:
            problems.append(f"{t['wrong_sid']} call(s) recorded with the wrong Sid")
        if t["placed_not_recorded"]:
            problems.append(f"{t['placed_not_recorded']} placed call(s) not recorded as originated")
    peak = s["rate"]["max_requests_in_any_window"]
    if peak is not None and peak > s["rate"]["limit"]:
        problems.append(f"{peak} requests in one window, over the limit of {s['rate']['limit']}")
    if not s["settled"]:
        left = {k: s["states"][k] for k in UNSETTLED if s["states"].get(k)}
        problems.append(f"not settled: {_fmt_counts(left, ', ')}")
    return {"clean": not problems, "problems": problems}


def render_summary(s: dict[str, Any], *, color: bool = False) -> list[str]:
    total = max(s["total"], 1)
    ok = _paint("✓", "32", color)
    bad = _paint("✗", "31", color)
    lines = [f"Summary of campaign {s['campaign']} ({s['total']} calls)", ""]
    lines.append(f"  {'state':<12}{'calls':>7}{'%':>8}")
    for state in LIVE_STATES:
        n = s["states"].get(state, 0)
        if n or state in ("originated", "failed"):
            lines.append(f"  {state:<12}{n:>7}{100.0 * n / total:>7.1f}%")
    lines.append("")
    cb = s["callbacks"]
    mix = _fmt_counts(s["call_status"], " · ")
    if cb["expected"]:
        note = f"({cb['received']} of {s['states'].get('originated', 0)} originated calls)"
    else:
        note = "(no callback receiver: none expected)"
    rows: list[tuple[str, str]] = [
        ("call_status", f"{mix}  {note}"),
        (
            "attempts",
            "  ".join(f"{k}x: {v}" for k, v in s["attempts"].items())
            + f"   (retries {s['retries']})",
        ),
    ]
    d = s["in_doubt"]
    rows.append(
        (
            "in doubt",
            f"{d['entered']} entered, {d['settled']} settled ({d['found_placed']} found placed, "
            f"{d['proven_unplaced']} proven unplaced and redialled)"
            + (f", {d['still_in_doubt']} still in doubt" if d["still_in_doubt"] else "")
            + (
                f"; {d['settled_by_callback_before_reply']} more settled by their callback "
                "before the reply timed out"
                if d["settled_by_callback_before_reply"]
                else ""
            ),
        )
    )
    t = s["truth"]
    if t is not None:
        rows.append(
            (
                "duplicates",
                f"{t['duplicates']} {ok if not t['duplicates'] else bad}  (simulator ground truth: "
                f"{t['originated']} originations for {s['total']} requests; wrong Sid "
                f"{t['wrong_sid']}, placed but not recorded {t['placed_not_recorded']})",
            )
        )
    else:
        rows.append(("duplicates", "n/a (real Exotel: no ground truth to compare with)"))
    r = s["rate"]
    peak = r["max_requests_in_any_window"]
    rate = f"limit {r['limit']} per {r['window_seconds']:g} s"
    if peak is not None:
        rate = (
            f"max {peak} requests in any {r['window_seconds']:g} s window, "
            f"{rate} {ok if peak <= r['limit'] else bad}"
        )
    if r["max_originated_in_any_window"] is not None:
        rate += f"; at most {r['max_originated_in_any_window']} originated in any window"
    rows.append(("rate", rate))
    rows.append(("429s", "n/a" if r["rate_limited_429"] is None else str(r["rate_limited_429"])))
    if t is not None:
        faults = _fmt_counts(t["faults"], " · ") if t["faults"] else "none"
        rows.append(("faults", f"{faults}  (injected by the simulator)"))
        c = t["callbacks"]
        rows.append(
            (
                "callbacks",
                f"{c['sent']} delivered ({c['duplicates']} duplicate deliveries), "
                f"{c['failed']} failed, {c['pending']} pending",
            )
        )
    flags = []
    if s["timed_out"]:
        flags.append("timed out")
    if s["interrupted"]:
        flags.append("interrupted")
    rows.append(
        ("wall time", f"{s['wall_seconds']:.1f} s" + (f" ({', '.join(flags)})" if flags else ""))
    )
    for name, value in rows:
        lines.append(f"  {name:<12}{value}")
    v = s["verdict"]
    lines.append("")
    if v["clean"]:
        lines.append(
            "  verdict     "
            + _paint("CLEAN", "1;32", color)
            + ": every call placed at most once, within the limit, and settled"
        )
    else:
        lines.append(
            "  verdict     " + _paint("NOT CLEAN", "1;31", color) + ": " + "; ".join(v["problems"])
        )
    return lines
