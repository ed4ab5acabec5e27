"""The million-call bench's file (bench/million.py): every row a good, distinct call."""

from __future__ import annotations

from pathlib import Path

from bench.million import AGENT, write_csv
from callq.intake.csvread import read_rows
from callq.intake.phone import normalise_number
from callq.intake.request import CallRequest


def test_given_the_bench_file_when_read_then_every_row_is_a_distinct_call_in_mixed_formats(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.csv"
    write_csv(path, 400)
    raw_to = [line.split(",")[1] for line in path.read_text().splitlines()[1:]]
    with path.open("rb") as f:
        calls = list(read_rows(f))
    assert all(isinstance(c, CallRequest) for c in calls), calls[:3]
    good = [c for c in calls if isinstance(c, CallRequest)]
    assert len(good) == 400
    assert {c.from_ for c in good} == {normalise_number(AGENT, field="From")}  # one agent
    assert len({c.to for c in good}) == 400  # each customer once: nothing is a duplicate
    assert len({c.custom_field for c in good}) == 400
    assert len({to[:3] for to in raw_to}) >= 6  # the formats people type, not one shape
