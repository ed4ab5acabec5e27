"""Phone numbers are masked in log lines (callq.logs.mask_numbers)."""

from __future__ import annotations

from callq.logs import mask_numbers


def test_mask_numbers_keeps_the_last_four_digits_and_leaves_other_text_alone() -> None:
    line = (
        "to +919052161119 from 09052161119 at 2026-11-23 11:23:40 sid=ab12345678901234cd pid=4242"
    )
    assert mask_numbers(line) == (
        "to +********1119 from *******1119 at 2026-11-23 11:23:40 sid=ab12345678901234cd pid=4242"
    )
