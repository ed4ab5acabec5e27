"""Callee zones (``--window-zone callee``): each call's window is judged in its callee's zone.

A campaign whose window is judged per callee keeps the calls waiting for their own zone's
window in its parked set like any other parked call (so every script that settles, counts or
wakes parked calls keeps working, and a held call keeps its campaign's wake entry), but in a
*band* of scores above every created_at: the *ready* band ``[0, SPAN)`` holds the calls the
feed may take (score = created_at ms, oldest first), and zone band ``b`` holds
``[SPAN * (b + 1), SPAN * (b + 2))`` (score = band base + created_at). The feed reads only the
ready band; the campaign's judge moves calls between bands as zones open and close.

A band is a hash of the zone name (two zones may share one: the judge looks at each call's own
zone, so that only costs a look), and calls in the campaign's own zone (their number maps to
several zones or to none) have a band of their own, whatever the campaign's zone is now.
Pure: the judge and the dialer use it; nothing here touches Redis.
"""

from __future__ import annotations

import zlib

SPAN = 10**13  # ms: above any created_at until the year 2286
NAMED_BANDS = 512  # bands for named zones; band NAMED_BANDS is the campaign's own zone
CAMPAIGN_BAND = NAMED_BANDS
# The highest score, SPAN * (NAMED_BANDS + 2), is ~5.1e15: below 2**53, exact as a double.


def band(zone: str) -> int:
    """The band of a call whose recorded zone is ``zone`` ('' = the campaign's zone)."""
    if not zone:
        return CAMPAIGN_BAND
    return zlib.crc32(zone.encode()) % NAMED_BANDS


def band_base(b: int) -> int:
    """The score added to a call's created_at while it waits in band ``b``."""
    return SPAN * (b + 1)


def held_offset(zone: str) -> int:
    """The score offset of a call of ``zone`` held for its zone's window."""
    return band_base(band(zone))


def created_of(score: float) -> int:
    """The created_at (ms) of a parked call, whatever band its score is in."""
    return int(score) % SPAN
