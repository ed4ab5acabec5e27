"""A daily calling window: ``HH:MM-HH:MM`` in a zone (it may cross midnight), or ``always``.

Pure, and used by the settings (``CALLING_WINDOW``) as well as the campaign controls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

ALWAYS = "always"
_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def _minutes(text: str, what: str) -> int:
    m = _HHMM.fullmatch(text.strip())
    if not m or (int(m.group(1)) == 24 and m.group(2) != "00"):
        raise ValueError(f"{what}: {text!r} is not a time of day HH:MM (00:00-24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """A daily calling window: open from ``start`` (inclusive) to ``end`` (exclusive), in
    minutes after local midnight. ``start == end`` is refused; ``always`` is open all day."""

    start: int = 0
    end: int = 24 * 60
    always: bool = True

    @classmethod
    def parse(cls, text: str) -> Window:
        text = text.strip()
        if text.lower() in (ALWAYS, "", "00:00-24:00"):
            return cls()
        start_s, sep, end_s = text.partition("-")
        if not sep:
            raise ValueError(f"window: {text!r} is not HH:MM-HH:MM (or 'always')")
        start, end = _minutes(start_s, "window start"), _minutes(end_s, "window end")
        if start in (end, 24 * 60):
            raise ValueError(f"window: {text!r} is empty")
        return cls(start, end, always=False)

    def __str__(self) -> str:
        if self.always:
            return ALWAYS
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    def is_open(self, minute: float) -> bool:
        if self.always:
            return True
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # crosses midnight

    def next_close(self, now: datetime) -> datetime:
        """The next closing after ``now`` (an aware datetime in the window's zone)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for day in range(3):
            base = midnight + timedelta(days=day)
            closing = (base + timedelta(minutes=self.end)).astimezone(now.tzinfo)
            if closing > now:
                return closing
        return now  # unreachable for a valid window

    def next_open(self, now: datetime) -> datetime:
        """The next opening at or after ``now`` (an aware datetime in the window's zone)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for day in range(3):
            base = midnight + timedelta(days=day)
            # Wall-clock arithmetic, then normalised: a DST gap moves the opening, never skips it.
            opening = (base + timedelta(minutes=self.start)).astimezone(now.tzinfo)
            if opening >= now:
                return opening
        return now  # unreachable for a valid window
