"""Neutralising cells written to report CSVs (OWASP "CSV injection").

Campaign data (CustomField above all) comes from outside and is kept verbatim in the ledger;
only when a value is written to a CSV that a person may open in a spreadsheet is it made
inert. The rule:

* a value that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'`` so that
  spreadsheets show it as text instead of evaluating it;
* except a value that is exactly an E.164 number (``+`` then 2 to 15 ASCII digits, the first
  not 0, nothing else), which is left alone so that ``From``/``To`` columns stay readable and
  machine-comparable. Such a value cannot carry a formula: at worst a spreadsheet shows it as
  the number 919052161119.

Everything else is returned unchanged. The function is total and never raises.
"""

from __future__ import annotations

import re

__all__ = ["neutralise"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def neutralise(value: str) -> str:
    """``value`` made safe to put in a CSV cell that a spreadsheet may open."""
    if not value.startswith(_TRIGGERS):
        return value
    if _E164.fullmatch(value) is not None:
        return value
    return "'" + value
