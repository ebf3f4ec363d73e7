"""Plots of a run from its files: the loss curve from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path


def loss_curve(metrics_jsonl: str | Path, out_png: str | Path, key: str = "loss") -> Path | None:
    """Plot `key` against step (raw and smoothed) to a PNG; None when there is nothing to plot."""
    from faice.figures import new_figure, save_figure
    from faice.results import read_jsonl

    rows = [r for r in read_jsonl(metrics_jsonl) if key in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    values = [r[key] for r in rows]
    smooth, acc = [], values[0]
    for v in values:
        acc = 0.9 * acc + 0.1 * v
        smooth.append(acc)
    plt, fig, ax = new_figure((6, 3.5), 120)
    ax.plot(steps, values, alpha=0.35, label=key)
    ax.plot(steps, smooth, label=f"{key} (EMA 0.9)")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(plt, fig, out_png)
