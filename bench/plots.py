"""matplotlib, when installed (the ``bench`` extra): the bench goes on without it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

MISSING = "matplotlib is not installed (`.venv/bin/pip install -e '.[bench]'`): no plot"


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend, or None."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def save(plt: Any, fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bars(
    path: Path,
    labels: list[str],
    series: list[tuple[str, list[float]]],
    *,
    title: str,
    ylabel: str,
    goal: float | None = None,
    goal_label: str = "goal",
    log_scale: bool = False,
    annotations: list[list[str]] | None = None,
) -> str:
    """Grouped bars, one group per label, one bar per series; returns a note ("" when drawn).
    ``annotations[k]`` labels the bars of series ``k`` (default: their values)."""
    plt = pyplot()
    if plt is None:
        return MISSING
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    n = max(len(series), 1)
    width = 0.8 / n
    for k, (name, values) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        drawn = ax.bar(xs, values, width=width, label=name)
        texts = annotations[k] if annotations else [f"{v:,.0f}" for v in values]
        ax.bar_label(drawn, labels=texts, fontsize=7, padding=2)
    if goal is not None:
        ax.axhline(goal, color="black", linestyle="--", linewidth=1, label=goal_label)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    if log_scale:
        ticker: Any = importlib.import_module("matplotlib.ticker")
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    save(plt, fig, path)
    return ""
