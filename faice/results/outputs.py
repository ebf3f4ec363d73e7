"""Everything `faice results` writes for a search: its tables, the metric-vs-step plot of every trial,
and the console summary with the verdict."""

from __future__ import annotations

import sys
from pathlib import Path

from faice.figures import new_figure, save_figure
from faice.results.rows import (
    STOPPED,
    TrialRow,
    _finite,
    _metric_mode,
    collect,
    load_search,
    metric_lines,
    verdict,
)
from faice.results.tables import format_table, short_diff, write_tables

# ---------------------------------------------------------------------------- plot and report


def _label(row: TrialRow, width: int = 48) -> str:
    text = f"{row.trial_id}: {short_diff(row.diff)}"
    return text if len(text) <= width else text[: width - 3] + "..."


def _y_scale(ax, values: list[float]) -> None:
    """Log scale for positive metrics, with plain tick labels when the range is under a decade."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if min(values) <= 0:
        return
    ax.set_yscale("log")
    if max(values) / min(values) < 10:
        plain = FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if max(values) / min(values) < 3 else NullFormatter())


def plot_metric(search_dir: str | Path, metric: str, out_png: str | Path) -> Path:
    """`metric` vs step of every trial in one PNG; stopped-early trials are dashed and end in an x."""
    search_dir = Path(search_dir)
    plt, fig, ax = new_figure((7, 4), 120)
    values = []
    for row in collect(search_dir):
        lines = metric_lines(search_dir / "runs" / row.trial_id, metric)
        points = [(r["step"], r[metric]) for r in lines if _finite(r.get(metric))]
        if not points:
            continue
        steps, ys = zip(*points, strict=True)
        values += ys
        stopped = row.status in (STOPPED, "error")
        (line,) = ax.plot(steps, ys, linestyle="--" if stopped else "-", label=_label(row))
        if stopped:
            ax.plot(steps[-1], ys[-1], marker="x", markersize=8, color=line.get_color())
    if values:
        _y_scale(ax, values)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no {metric} logged yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="step", ylabel=metric, title=f"{search_dir.name}: {metric} (dashed, x = stopped early)")
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, out_png)


def report(search_dir: str | Path) -> dict:
    """Rows, results.csv, results.md and results.png of a search; `best` is None until a trial logs."""
    search_dir = Path(search_dir)
    spec = load_search(search_dir)
    metric, mode = _metric_mode(spec)
    rows = collect(search_dir)
    csv_path, md_path = write_tables(rows, search_dir, spec)
    plot = plot_metric(search_dir, metric, search_dir / "results.png")
    found = verdict(rows, metric, mode)
    best = None
    if found:
        top = found["best"]
        best = {"trial_id": top.trial_id, "metric": top.best, "std": top.best_std, "step": top.best_step}
        best.update(grid=top.grid, tie=found["tie"], verdict=found["text"])
    return {"rows": rows, "csv": csv_path, "md": md_path, "plot": plot, "best": best}


def results_command(path: str, out=None) -> int:
    """`faice results <storage>/<search>`: print the ranked table, write csv/md/plot, name the best grid."""
    out = out or sys.stdout
    spec = load_search(path)
    metric, mode = _metric_mode(spec)
    result = report(path)
    print(format_table(result["rows"], metric, mode), file=out)
    for key in ("csv", "md", "plot"):
        print(f"{key}: {result[key]}", file=out)
    best = result["best"]
    if best is None:
        print(f"best: none yet (no trial has logged {metric})", file=out)
    else:
        print(best["verdict"], file=out)
        print(f"best grid: {best['grid'] or 'none yet'}", file=out)
    return 0
