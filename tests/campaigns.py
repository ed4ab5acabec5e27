"""Helpers to build campaign CSVs and to check a finished campaign against the simulator."""

from __future__ import annotations

import io
from typing import Any

from callq.store.ledger import Ledger


def mobile(prefix: str, n: int) -> str:
    """A valid Indian mobile in E.164: +91 then 10 digits starting with 9 or 8."""
    return f"+91{prefix}{n:0{10 - len(prefix)}d}"


def campaign_csv(
    n: int,
    *,
    start: int = 0,
    flow_every: int = 0,
    extra_header: str = "",
    extra_rows: list[str] | None = None,
    time_limit: int = 600,
    time_out: int = 30,
) -> bytes:
    """``n`` good rows (From->To, and every ``flow_every``-th a From->flow Url)."""
    lines = ["From,To,CallerId,Url,CustomField,TimeLimit,TimeOut" + extra_header]
    for i in range(start, start + n):
        if flow_every and i % flow_every == 0:
            url = f"http://my.exotel.com/acct/exoml/start_voice/{1000 + i}"
            lines.append(f"{mobile('98', i)},,08030752400,{url},order-{i},,")
        else:
            lines.append(
                f"{mobile('98', i)},{mobile('97', i)},08030752400,,order-{i},{time_limit},{time_out}"
            )
    lines.extend(extra_rows or [])
    return ("\n".join(lines) + "\n").encode()


AGENT = "+918030752499"


def agent_csv(n: int, start: int = 0) -> bytes:
    """A click-to-call file as operators have it: the agent in From on every row."""
    rows = ["From,To,CallerId,CustomField"]
    rows += [f"{AGENT},{mobile('97', i)},08030752400,order-{i}" for i in range(start, start + n)]
    return ("\n".join(rows) + "\n").encode()


def as_stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def verdict(ledger: Ledger, campaign: str, truth: dict[str, Any]) -> dict[str, Any]:
    """Compare the ledger with the simulator's ground truth."""
    records = list(ledger.iter_records(campaign))
    by_cf: dict[str, int] = truth["by_custom_field"]
    sim_sid = {c["custom_field"]: c["sid"] for c in truth["calls"]}
    duplicates = [r["request_id"] for r in records if by_cf.get(r["request_id"], 0) > 1]
    wrong_sid = [
        r["request_id"]
        for r in records
        if r.get("state") == "originated" and sim_sid.get(r["request_id"]) != r.get("sid")
    ]
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {"records": records, "duplicates": duplicates, "wrong_sid": wrong_sid, "states": states}
