"""A campaign file as operators export it, through the CLI and real workers at the defaults.

Such a file has thousands of rows and Excel's "CSV UTF-8" (a BOM, CRLF line endings). The
agent's number is in From on every row, written several ways. The customers' numbers come in
every Indian format. There are flow rows with the customer in From, a few bad rows, and one
customer listed twice in two formats. Each good row must become exactly one call to the right
E.164 number. Each bad row is reported with its line and field, without sinking the others.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import verdict
from tests.conftest import Workers, wait_for

ROOT = Path(__file__).resolve().parents[2]
AGENT_FORMS = ["080-3075 2499", "08030752499", "+91 80 3075 2499", "(080) 30752499"]
AGENT = "+918030752499"
CONNECT_ROWS = 1800
FLOW_ROWS = 200


def national(prefix: str, i: int) -> str:
    return f"{prefix}{i:0{10 - len(prefix)}d}"


def indian_format(digits: str, i: int) -> str:
    """The ten national digits of a mobile, written one of eight ways people write them."""
    a, b = digits[:5], digits[5:]
    forms = [
        digits,
        f"0{digits}",
        f"+91 {a} {b}",
        f"91{digits}",
        f"0091 {digits}",
        f"(+91) {a}-{b}",
        f"+91-{a}-{b}",
        f"+91{digits}",
    ]
    return forms[i % len(forms)]


def operators_file() -> tuple[bytes, dict[str, int]]:
    """The file, and the line number of each bad or duplicate row by its name."""
    lines = ["From,To,CallerId,Url,CustomField"]
    for i in range(CONNECT_ROWS):
        agent = AGENT_FORMS[i % len(AGENT_FORMS)]
        lines.append(f"{agent},{indian_format(national('97', i), i)},080 3075 2400,,order-{i}")
    for i in range(FLOW_ROWS):
        url = f"http://my.exotel.com/acct/exoml/start_voice/{1000 + i}"
        lines.append(f"{indian_format(national('96', i), i + 3)},,08030752400,{url},survey-{i}")
    marks = {}
    for name, row in [
        ("short", f"{AGENT_FORMS[0]},+91 12345,08030752400,,short"),
        ("letters", f"{AGENT_FORMS[1]},98765abcde,08030752400,,letters"),
        ("neither", f"{AGENT_FORMS[2]},,08030752400,,neither"),
        # Row 5's customer again, written another way: a duplicate, not a second call.
        ("again", f"{AGENT_FORMS[3]},+91 {national('97', 5)},08030752400,,again"),
    ]:
        lines.append(row)
        marks[name] = len(lines)  # its line number in the file, the header being line 1
    return b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode(), marks


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    """A higher limit, so that 2,000 calls take seconds: this test is about the file."""
    return (1000, 5.0)


@pytest.mark.slow
def test_given_an_operators_file_in_every_indian_format_when_enqueued_and_dialled_then_each_good_row_is_one_call(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger, tmp_path: Path
) -> None:
    data, marks = operators_file()
    path = tmp_path / "campaign.csv"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-m", "producer", "enqueue", str(path), "--campaign", "ops"],
        check=False,
        cwd=ROOT,
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    good = CONNECT_ROWS + FLOW_ROWS
    assert done.returncode == 3, done.stdout + done.stderr  # 3: enqueued, some rows rejected
    assert f"accepted {good}, rejected 3, duplicates 1" in out, out
    rejected = {int(m.group(1)): m.group(0) for m in re.finditer(r"rejected: line (\d+).*", out)}
    assert sorted(rejected) == sorted([marks["short"], marks["letters"], marks["neither"]]), out
    assert "To" in rejected[marks["short"]] and "To" in rejected[marks["letters"]]
    duplicate = next(line for line in out.splitlines() if line.startswith("duplicate:"))
    assert f"line {marks['again']}" in duplicate and "line 7" in duplicate, duplicate
    assert f"+9197{5:08d}" in duplicate, duplicate

    workers.start(2)
    wait_for(
        lambda: ledger.status("ops").states["originated"] == good,
        timeout=120,
        message=lambda: f"{ledger.status('ops').states} {workers.output()[-2000:]}",
    )
    truth = sim.truth()
    v = verdict(ledger, "ops", truth)
    assert v["duplicates"] == [] and v["wrong_sid"] == [] and v["states"] == {"originated": good}
    assert truth["rate_limited"] == 0
    # Each customer was called once, at its E.164 number; the agent's number was the same on
    # every connect call, however the row wrote it.
    connect = {f"+9197{i:08d}" for i in range(CONNECT_ROWS)}
    flow = {f"+9196{i:08d}" for i in range(FLOW_ROWS)}
    assert {to: n for to, n in truth["by_to"].items() if to in connect} == dict.fromkeys(connect, 1)
    assert truth["by_from"][AGENT] == CONNECT_ROWS
    assert {f: n for f, n in truth["by_from"].items() if f in flow} == dict.fromkeys(flow, 1)
    # The row's own CustomField reaches the report beside the Sid Exotel gave the call.
    by_custom = {r["custom_field"]: r for r in v["records"]}
    assert by_custom["order-0"]["sid"] and by_custom["survey-0"]["sid"]
