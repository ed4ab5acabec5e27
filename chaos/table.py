"""Plain-text tables (Markdown pipe tables, readable in a terminal and pasteable in docs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.runner import ChaosReport

__all__ = ["render_report", "table"]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return " / ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_report(report: ChaosReport) -> str:
    cfg = report.config
    verdict = table(
        ["check", "measured", "promised", "result"],
        [(c.name, c.value, c.expected, "PASS" if c.ok else "FAIL") for c in report.checks],
    )
    parts = [
        f"Chaos run {report.started_at} (code {report.code}): {cfg.calls} calls, "
        f"{cfg.workers} workers (SIGKILL every ~{cfg.kill_every:g} s), "
        f"limit {cfg.rate_limit} per {cfg.period:g} s",
        "",
        verdict,
    ]
    for c in report.failures:
        for example in c.examples:
            parts.append(f"  FAIL {c.name}: {example}")
    if report.diagnostics:
        parts += ["", *report.diagnostics]
    if report.figures:
        parts += ["", table(["figure", "value"], [(k, _fmt(v)) for k, v in report.figures.items()])]
    parts += [
        "",
        table(["phase", "seconds"], [(k, f"{v:.1f}") for k, v in report.timings.items()]),
        "",
        "VERDICT: " + ("PASS" if report.ok else "FAIL"),
    ]
    if report.workdir:
        parts.append(f"logs and AOF kept in {report.workdir}")
    return "\n".join(parts)
