"""The report's figures: quality against compute with its Pareto front, and FID against sampling steps."""

from __future__ import annotations

from pathlib import Path

from faice.figures import new_figure, save_figure

# ---------------------------------------------------------------------------- figures


def _figure():
    return new_figure((7, 4), 110)


def _save(plt, fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, path)


def plot_pareto(rows: list, metric: str, mode: str, path: Path) -> Path | None:
    """`metric` (best per trial) against compute: GPU-hours when trials had GPUs, else training steps.
    The Pareto front (no other trial is both cheaper and better) is drawn as a line."""
    use_gpu = any((r.gpu_hours or 0) > 0 for r in rows)
    cost_name = "GPU-hours" if use_gpu else "training steps"
    points = [((r.gpu_hours if use_gpu else r.last_step), r.best, r.trial_id) for r in rows]
    points = [p for p in points if p[0] is not None and p[1] is not None]
    if not points:
        return None
    better = (lambda a, b: a <= b) if mode == "min" else (lambda a, b: a >= b)
    front = sorted(
        p for p in points if not any(q[0] <= p[0] and better(q[1], p[1]) and q[:2] != p[:2] for q in points)
    )
    plt, fig, ax = _figure()
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:gray", label="trials")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="tab:red", label="Pareto front")
    for x, y, trial in points:
        ax.annotate(trial, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=cost_name, ylabel=f"best {metric}", title=f"{metric} against compute ({mode} is better)")
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, path)


def plot_sweep(rows: list[dict], path: Path, title: str) -> Path | None:
    """FID against sampling steps, one line per sampler (log-scaled steps)."""
    if not rows:
        return None
    from faice.sweep import fid_key

    key = fid_key(rows)
    plt, fig, ax = _figure()
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r["steps"], r[key]) for r in rows if r["sampler"] == sampler)
        ax.plot([s for s, _ in mine], [v for _, v in mine], "o-", label=sampler)
    ax.set_xscale("log")
    ax.set(xlabel="sampling steps", ylabel=key, title=title)
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, path)
