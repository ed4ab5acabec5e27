"""The verdict of a chaos run: the simulator's ground truth against the ledger and the report.

Pure functions of what was collected at the end of the run (no Redis, no HTTP), so the
rules can be read, and tested, on their own.

The promise checked: every requested call is placed exactly once, or failed with a reason,
and nothing is lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from callq.dialing.reconcile import proof_seconds
from callq.exotel.params import CALLBACK_RID_PARAM
from callq.settings import Settings
from callq.store.records import CallRecord, State

__all__ = ["CampaignData", "Check", "judge"]

#: States a call may legitimately rest in at the end of a run.
FINAL = (State.ORIGINATED, State.FAILED)


@dataclass
class CampaignData:
    """What the run collected about one campaign once it had settled."""

    campaign: str
    accepted: list[str]  # request ids the producer accepted
    records: list[CallRecord]  # ledger.call_records
    status: dict[str, Any]  # ledger.status(...).as_dict()
    report: list[dict[str, str]]  # the report CSV (write_report), parsed
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One verdict line: ``value`` is what was measured, ``expected`` what is promised."""

    name: str
    ok: bool
    value: str
    expected: str
    examples: tuple[str, ...] = ()
    #: The request ids the examples are about (the run explains them when the line fails).
    subjects: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "ok": self.ok,
            "value": self.value,
            "expected": self.expected,
            "examples": list(self.examples),
        }


def _check(
    name: str,
    bad: list[str],
    expected: str = "0",
    value: str | None = None,
    subjects: list[str] | None = None,
) -> Check:
    return Check(
        name=name,
        ok=not bad,
        value=str(len(bad)) if value is None else value,
        expected=expected,
        examples=tuple(bad[:5]),
        subjects=tuple(dict.fromkeys(subjects or [])),
    )


def left_for_a_person(rec: CallRecord) -> bool:
    """An in-doubt call reconcile left ``ambiguous`` (two requests with the same numbers, a
    candidate call either could own): no waiting settles it."""
    return rec.state is State.IN_DOUBT and rec.last_error.startswith(
        ("ambiguous", "in doubt: ambiguous")
    )


def url_rid(url: str) -> str | None:
    """The request id a StatusCallback URL names (its ``rid`` query parameter), if any."""
    values = parse_qs(urlsplit(url).query).get(CALLBACK_RID_PARAM)
    return values[0] if values and len(set(values)) == 1 else None


def legitimately_in_doubt(rec: CallRecord, settings: Settings, now_ms: int) -> bool:
    """An in-doubt call whose proof is not possible yet, or one left for a person (two
    candidate calls): it may rest in doubt."""
    if rec.state is not State.IN_DOUBT:
        return False
    if left_for_a_person(rec):
        return True
    sent_ms = rec.sent_at or rec.in_doubt_since or 0
    proven_ms = sent_ms + int(proof_seconds(rec, settings) * 1000)
    return now_ms < proven_ms


# One function on purpose (ruff's C901 is silenced here): the verdict is one pass over the
# same indexes of the run (records, the simulator's calls, deliveries), each numbered check
# a few lines that read them; split, every check would take the whole set as arguments.
def judge(  # noqa: C901
    campaigns: Iterable[CampaignData],
    truth: Mapping[str, Any],
    settings: Settings,
    now_ms: int,
    pending_callbacks: Mapping[str, str] | None = None,
) -> tuple[list[Check], dict[str, Any]]:
    """The verdict lines and the figures of a finished run. ``pending_callbacks``: Sid ->
    status of each callback the ledger keeps pending (``Keys.pending_callback``) at the end."""
    data = list(campaigns)
    account = settings.exotel_account_sid
    by_cf: dict[str, int] = dict(truth.get("by_custom_field", {}))
    sim_calls: list[dict[str, Any]] = list(truth.get("calls", []))
    # A request's calls in the order they were placed: a redial places it again, so its
    # record's Sid is its latest call's, and the earlier ones are in its prev_sids.
    sim_sid: dict[str, str] = {}
    status_of_sid: dict[str, str] = {}
    for call in sim_calls:
        cf = call.get("custom_field")
        status_of_sid[call["sid"]] = call["final_status"]
        if cf:
            sim_sid[cf] = call["sid"]

    records: dict[str, CallRecord] = {}
    accepted: list[str] = []
    for c in data:
        accepted.extend(c.accepted)
        for rec in c.records:
            records[rec.request_id] = rec
    known = set(records) | set(accepted)

    def redials(rid: str) -> int:
        rec = records.get(rid)
        return rec.redials_done if rec else 0

    # 1. placed at most once per dial: once, plus once per redial the campaign asked for
    duplicates = [f"{rid} x{n}" for rid, n in sorted(by_cf.items()) if n > 1 + redials(rid)]
    strays = sorted(
        {str(c.get("custom_field")) for c in sim_calls if c.get("custom_field") not in known}
    )

    # 2. nothing lost: every accepted call is originated, failed with a reason, or still
    #    legitimately in doubt
    lost: list[str] = []
    for rid in accepted:
        found = records.get(rid)
        if found is None:
            lost.append(f"{rid}: no record")
            continue
        end = found.state
        if end is State.FAILED and not found.last_error:
            lost.append(f"{rid}: failed without a reason")
        elif end not in FINAL and not legitimately_in_doubt(found, settings, now_ms):
            lost.append(f"{rid}: {end} ({found.last_error[:60]})")

    # 3. the ledger's state agrees with what really happened
    disagree: list[str] = []
    for rid, rec in records.items():
        placed = by_cf.get(rid, 0) > 0
        now_state = rec.state
        if now_state is State.ORIGINATED and not placed:
            disagree.append(f"{rid}: originated in the ledger, never placed")
        elif now_state in (State.FAILED, State.CANCELLED, State.QUEUED) and placed:
            disagree.append(f"{rid}: {now_state} in the ledger, but placed")

    # 4. every Sid in the report is the simulator's
    wrong_sid: list[str] = []
    rows = 0
    for c in data:
        for row in c.report:
            rows += 1
            rid, sid = row.get("request_id", ""), row.get("sid", "")
            if sid and sim_sid.get(rid) != sid:
                wrong_sid.append(f"{rid}: report {sid}, simulator {sim_sid.get(rid)}")
            elif row.get("state") == "originated" and not sid:
                wrong_sid.append(f"{rid}: originated without a Sid")
    missing_rows = len(records) - rows

    # 5. the limit held, as the simulator saw arrivals
    limit, period = (truth.get("limit", {}).get(account) or [settings.rate_limit_calls, 0])[:2]
    max_window = int(truth.get("max_in_window", {}).get(account, 0))
    rate_limited = int(truth.get("rate_limited", 0))

    # 6. in-doubt calls settled once proof was possible
    ever_in_doubt = [rid for rid, r in records.items() if r.in_doubt_since]
    unsettled = [
        f"{rid}: {r.last_error[:60]}"
        for rid, r in records.items()
        if r.state is State.IN_DOUBT and not legitimately_in_doubt(r, settings, now_ms)
    ]
    still_in_doubt = sum(1 for r in records.values() if r.state is State.IN_DOUBT)

    # 7. callbacks: every delivered callback's status is recorded on its call: on the record
    #    for its latest call, in the attempts log for a call that was redialled. Except one
    #    the ledger could not tell the call of: a flow call's callback has no CustomField,
    #    so it is matched by its Sid, and a call still legitimately in doubt has no Sid yet
    #    (its proof is to come, or it is left for a person: two requests with the same
    #    numbers, each with a candidate call either could own). Such a callback must be kept
    #    pending, with its status, to be applied when the Sid is settled: not lost. Only
    #    when its URL did not name its request either: a StatusCallback URL with our
    #    `rid` (callq.exotel.params.status_callback_url) settles its call whatever its body.
    attempts: dict[str, list[dict[str, Any]]] = {}
    for c in data:
        attempts.update(c.attempts)

    def status_recorded(rid: str, sid: str) -> str | None:
        """The call_status recorded for call ``sid`` of request ``rid``."""
        rec = records.get(rid)
        if rec and rec.sid == sid and rec.state is State.ORIGINATED:
            return rec.call_status or None
        logged = [
            str(e["callback"])
            for e in attempts.get(rid, [])
            if e.get("sid") == sid and e.get("callback")
        ]
        return logged[-1] if logged else None

    deliveries = list(truth.get("callbacks", {}).get("deliveries", []))
    sent = [d for d in deliveries if d.get("state") == "sent"]
    delivered = {(d["custom_field"], d["call_sid"]) for d in sent}
    # Only a callback that names no request can be kept pending for its Sid: one with a
    # CustomField, or whose URL names its request (rid), is matched by it at once
    # (callback.lua), in doubt or not.
    by_sid_only = {
        (d["custom_field"], d["call_sid"])
        for d in sent
        if not d.get("payload_custom_field")
        and not (d.get("custom_field") and url_rid(str(d.get("url") or "")) == d["custom_field"])
    }
    kept = dict(pending_callbacks or {})
    cb_bad: list[str] = []
    cb_rids: list[str] = []
    cb_kept = 0
    for rid, sid in sorted(delivered):
        if rid not in records:
            continue  # a stray: counted above
        want, got = status_of_sid.get(sid), status_recorded(rid, sid)
        if got != want:
            if (
                (rid, sid) in by_sid_only
                and kept.get(sid) == want
                and legitimately_in_doubt(records[rid], settings, now_ms)
            ):
                cb_kept += 1  # kept for the Sid's settling: a person, or the proof to come
                continue
            state = records[rid].state
            cb_bad.append(f"{rid}: {state} call {sid[:8]} call_status={got!r}, sent {want!r}")
            cb_rids.append(rid)
    mismatch = [rid for rid, r in records.items() if r.callback_sid_mismatch]
    cb_bad += [f"{rid}: a callback for another Sid" for rid in mismatch]
    cb_rids += mismatch

    # 7b. every placed call has its call_status, its callback delivered or not (backfill)
    no_status: list[str] = []
    for call in sim_calls:
        placed_for = str(call.get("custom_field") or "")
        if placed_for not in records or not call.get("ended", True):
            continue
        if legitimately_in_doubt(records[placed_for], settings, now_ms):
            continue  # left for a person: no Sid is ours yet
        status = status_recorded(placed_for, call["sid"])
        if status != call["final_status"]:
            no_status.append(
                f"{placed_for}: call {call['sid'][:8]} {status!r}, Exotel {call['final_status']!r}"
            )

    # 8. the O(1) counters equal a recount of the records
    drift: list[str] = []
    for c in data:
        states = Counter(str(r.state) for r in c.records)
        statuses = Counter(r.call_status for r in c.records if r.call_status)
        counted = {s: int(v) for s, v in c.status["states"].items() if int(v)}
        if counted != dict(states):
            drift.append(f"{c.campaign}: states {counted} != recount {dict(states)}")
        if int(c.status["total"]) != len(c.records):
            drift.append(f"{c.campaign}: total {c.status['total']} != {len(c.records)} records")
        cs = {k: int(v) for k, v in c.status["call_status"].items() if int(v)}
        if cs != dict(statuses):
            drift.append(f"{c.campaign}: call_status {cs} != recount {dict(statuses)}")

    originated = sum(1 for r in records.values() if r.state is State.ORIGINATED)
    failed = sum(1 for r in records.values() if r.state is State.FAILED)
    checks = [
        _check("duplicates (one request placed twice)", duplicates),
        _check("unknown originations (not our request)", strays),
        _check("lost (neither placed, failed with a reason, nor in doubt)", lost),
        _check("ledger state disagrees with the simulator", disagree),
        _check(
            "report Sids differ from the simulator's",
            wrong_sid + ([f"{missing_rows} records missing from the report"] * bool(missing_rows)),
            value=f"{len(wrong_sid)} of {rows} rows",
        ),
        Check(
            "largest count in any window",
            max_window <= int(limit),
            f"{max_window} per {period:g} s",
            f"<= {limit}",
        ),
        Check("429s (rate limited)", rate_limited == 0, str(rate_limited), "0"),
        _check(
            "in doubt past their proof, unsettled",
            unsettled,
            value=f"{len(unsettled)} (of {len(ever_in_doubt)} ever in doubt)",
        ),
        _check(
            "delivered callbacks not recorded",
            cb_bad,
            value=f"{len(cb_bad)} of {len(delivered)} delivered",
            subjects=cb_rids[:5],
        ),
        _check(
            "placed calls without their call_status",
            no_status,
            value=f"{len(no_status)} of {len(sim_calls)} placed",
        ),
        _check("counters differ from a recount", drift),
    ]

    outcomes: Counter[str] = Counter()
    attempts_hist: Counter[int] = Counter()
    for c in data:
        for rid, log in c.attempts.items():
            outcomes.update(str(e["outcome"]) for e in log if "outcome" in e)
            known_rec = records.get(rid)
            attempts_hist[known_rec.attempts if known_rec else 0] += 1
    cb = truth.get("callbacks", {})
    figures: dict[str, Any] = {
        "calls_accepted": len(accepted),
        "originated": originated,
        "failed": failed,
        "in_doubt_at_end": still_in_doubt,
        "ever_in_doubt": len(ever_in_doubt),
        "in_doubt_found_by_search": outcomes.get("reconciled", 0),
        "in_doubt_settled_by_callback_or_late_reply": sum(
            1
            for c in data
            for rid in c.attempts
            if (r := records.get(rid)) is not None
            and r.in_doubt_since
            and r.state is State.ORIGINATED
            and not any(e.get("outcome") in ("reconciled", "unplaced") for e in c.attempts[rid])
        ),
        "proven_unplaced": outcomes.get("unplaced", 0),
        "attempt_outcomes": dict(sorted(outcomes.items())),
        "attempts_per_call": {str(k): v for k, v in sorted(attempts_hist.items())},
        "states": dict(Counter(str(r.state) for r in records.values())),
        "sim_requests": truth.get("requests", 0),
        "sim_details_requests": truth.get("details_requests", 0),
        "sim_originated": truth.get("originated", 0),
        "faults_injected": dict(truth.get("faults", {})),
        "max_in_window": max_window,
        "limit": [limit, period],
        "rate_limited": rate_limited,
        "callbacks": {
            k: cb.get(k, 0) for k in ("sent", "failed", "pending", "duplicates", "late", "retries")
        },
        "call_status": dict(Counter(r.call_status for r in records.values() if r.call_status)),
        "call_status_backfilled": sum(
            1 for r in records.values() if r.call_status_source == "backfill"
        ),
        "redials": sum(r.redials_done for r in records.values()),
        "requests_sharing_numbers": sum(
            n for n in Counter(r.parties for r in records.values() if r.parties).values() if n > 1
        ),
        "in_doubt_left_for_a_person": sum(1 for r in records.values() if left_for_a_person(r)),
        "calls_listed_not_ours": len(truth.get("injected", [])),
        "callbacks_kept_for_calls_in_doubt": cb_kept,
        "failed_reasons": dict(
            Counter(
                r.last_error.split(":")[0][:40] for r in records.values() if r.state is State.FAILED
            )
        ),
    }
    return checks, figures
