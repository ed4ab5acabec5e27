"""The chaos campaign, short: real workers SIGKILLed every few seconds, Redis restarted once
(AOF kept), the callback receiver restarted once, and the simulator injecting 500s, 504s,
slow-but-placed replies, resets before and after origination, duplicate and late callbacks.
Every verdict line against the simulator's ground truth must pass (see chaos/verdict.py).

``make chaos`` is the full run (2,000 calls); this is ``make chaos-short`` through the Python
API, with its own Redis (an EmbeddedRedis under tmp_path, never the machine's 6379).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import ChaosConfig, run_chaos


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_given_a_short_chaos_campaign_when_it_runs_then_every_verdict_line_passes(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    report = run_chaos(ChaosConfig.short(workdir=tmp_path / "chaos"), out=lines.append)
    table = report.render()
    print("\n".join(lines[-10:]) + "\n" + table)  # shown by pytest when the test fails
    names = [c.name for c in report.checks]
    assert len(names) == 11, table  # every verdict line was computed
    failed = [
        f"{c.name}: {c.value} (promised {c.expected}) {list(c.examples)}" for c in report.failures
    ]
    assert not failed, table
    figures = report.figures
    # The chaos really happened.
    assert figures["workers_killed"] >= 5, table
    assert figures["redis_restarts"] == 1 and figures["receiver_restarts"] == 1, table
    faults = figures["faults_injected"]
    assert all(faults[k] > 0 for k in ("500", "504", "slow_placed", "reset_after")), table
    assert figures["callbacks"]["duplicates"] > 0, table
    assert figures["ever_in_doubt"] > 0, table
    assert figures["calls_accepted"] == 300, table
    # Issue 13's cases happened too: shared numbers, redials on busy, calls not ours listed.
    assert figures["requests_sharing_numbers"] > 0, table
    assert figures["redials"] > 0, table
    assert figures["calls_listed_not_ours"] > 0, table
    # A callback the simulator gave up on does not always leave a call for the backfill: the
    # same status may have come by a duplicate, or the call was redialled and the given-up
    # callback was its old Sid's (CI: 2 given up, 0 backfilled, every placed call with its
    # call_status). The verdict's "placed calls without their call_status" line is the
    # promise; the backfill itself is shown by tests/system/test_backfill_workers.py.
