"""The two numbers of a call as Exotel's Call Details shows them: how a call is matched.

Exotel may list ``+919052161119`` as ``09052161119``, so numbers are compared by their last
10 digits. A call's *parties* are ``{from}:{to}``: To is the second number of a
connect-two-numbers call, or, for a call connected to a flow (no To), the ExoPhone it went out
from (CallerId), which is what Call Details shows as its To.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def digits(number: Any) -> str:
    """The last 10 digits of ``number`` ('' for none)."""
    return "".join(ch for ch in str(number or "") if ch.isdigit())[-10:]


def parties(frm: Any, to: Any, caller_id: Any) -> str:
    """``{from}:{to}`` (last 10 digits each); To falls back to ``caller_id`` (a flow call)."""
    return f"{digits(frm)}:{digits(to) if to else digits(caller_id)}"


def record_parties(rec: Mapping[str, str], default_caller_id: str = "") -> str:
    """:func:`parties` of a call record, its CallerId defaulting as its request's did."""
    return parties(rec.get("from"), rec.get("to"), rec.get("caller_id") or default_caller_id)


def request_parties(params: list[tuple[str, str]]) -> str:
    """:func:`parties` of a Calls/connect request's form parameters."""
    form = dict(params)
    return parties(form.get("From"), form.get("To"), form.get("CallerId"))


def callee(frm: Any, to: Any, url: Any) -> str:
    """The person a call is for, whom the per-number cap counts: To for a
    connect-two-numbers call, From for a call connected to a flow (a Url)."""
    return str((frm if url else to) or "")
