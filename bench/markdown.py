"""Markdown and number formatting shared by the bench sections of docs/benchmarks.md."""

from __future__ import annotations

MIB = 1 << 20


def thousands(x: float) -> str:
    """``x`` rounded, with thousands separators: 12,345."""
    return f"{x:,.0f}"


def us_per(rate: float) -> str:
    """Microseconds per item at ``rate`` items per second."""
    return f"{1e6 / rate:,.1f}"


def nbytes(x: float) -> str:
    return f"{x:,.0f} B"


def mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


def ms_or_dash(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def verdict(ok: bool, missed: str = "") -> str:
    """**met**, or **missed** with the margin when given."""
    return "**met**" if ok else "**missed**" + (f" ({missed})" if missed else "")


def table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A markdown table; ``align`` is one of l/r/c per column (default: l then r's)."""
    align = align or "l" + "r" * (len(head) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return out


def figure(alt: str, path: str, note: str) -> list[str]:
    """The plot at ``path`` (relative to the document), else why it was skipped, else nothing."""
    if path:
        return [f"![{alt}]({path})", ""]
    if note:
        return [f"Plot skipped: {note}.", ""]
    return []
