"""Output helpers written once: a matplotlib figure on the headless Agg backend, and markdown tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float] = (7, 4), dpi: int = 110):
    """(pyplot, figure, axes) drawn off-screen (Agg: no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    return plt, fig, ax


def save_figure(plt, fig, path: str | Path) -> Path:
    """Lay out, write `fig` to `path` (PNG) and free it; returns the path."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def md_table(
    header: Sequence[Any], rows: Sequence[Sequence[Any]], fmt: Callable[[Any], str] = str
) -> list[str]:
    """Markdown lines of a table: `header`, a rule, then `rows` with each cell through `fmt`; pipes in
    cells are escaped so a value never splits a column."""

    def cell(value: Any) -> str:
        return fmt(value).replace("|", "\\|")

    lines = ["| " + " | ".join(str(h).replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
