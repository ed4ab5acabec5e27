"""Campaign and request ids: a request id is ``{campaign}:{digest}``."""

from __future__ import annotations

import re

CAMPAIGN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def campaign_of(request_id: str) -> str:
    """A request id is ``{campaign}:{digest}``; campaign ids never hold ':'."""
    campaign, sep, _ = request_id.rpartition(":")
    if not sep or not CAMPAIGN_RE.fullmatch(campaign):
        raise ValueError(f"not a request id: {request_id!r}")
    return campaign
