"""`faice report`: gather a search's table, figures, sampler sweep, sample grids and W&B links, and write
the page and its markdown twin."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from faice.report.page import ReportParts, _markdown, _page
from faice.report.plots import plot_pareto, plot_sweep
from faice.report.sweep import sweep_best
from faice.report.wandb_links import wandb_info
from faice.results import (
    _fmt,
    _metric_mode,
    by_configuration,
    load_search,
    short_diff,
    table_cells,
)
from faice.results import (
    report as write_results,
)

TOP_GRIDS = 3  # sample grids of the best trials shown


def build_report(
    search_dir: str | Path,
    out: str | Path | None = None,
    sweep: dict[str, list[int]] | None = None,
    sweep_samples: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Write the report of `search_dir` to `out` (default <search>/report); returns its paths and parts."""
    search_dir = Path(search_dir)
    spec = load_search(search_dir)
    metric, mode = _metric_mode(spec)
    out = Path(out) if out else search_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = write_results(search_dir)  # results.csv/md/png refreshed: the page shows the same cells
    rows = results["rows"]
    ranked, table = table_cells(rows, spec)
    table = table[: len(ranked)]
    name = spec.get("name") or search_dir.name

    curves = [
        (f"{metric} against training step, per trial (dashed = stopped early)", out / "curves-metric.png")
    ]
    from faice.results import plot_metric

    plot_metric(search_dir, metric, curves[0][1])
    if metric != "loss":
        plot_metric(search_dir, "loss", out / "curves-loss.png")
        curves.append(("training loss against step, per trial", out / "curves-loss.png"))
    pareto = plot_pareto(rows, metric, mode, out / "pareto.png")
    swept = sweep_best(search_dir, rows, mode, out, sweep, sweep_samples, log)
    sweep_png = None
    if swept:
        title = f"best checkpoint ({swept['trial_id']}), {swept['samples']} samples per point"
        sweep_png = plot_sweep(swept["rows"], out / "sampling-steps.png", title)
    grids = []
    for row in [r for r in ranked if r.grid][:TOP_GRIDS]:
        target = out / f"grid-{row.trial_id}.png"
        shutil.copyfile(row.grid, target)
        grids.append((f"{row.trial_id}: best {metric} {_fmt(row.best)}; {short_diff(row.diff)}", target))
    groups = by_configuration(rows, metric, mode)
    wandb = wandb_info(search_dir, spec)
    (out / "wandb.json").write_text(json.dumps(wandb, indent=2) + "\n")
    base_text = (
        (search_dir / "base_config.yaml").read_text() if (search_dir / "base_config.yaml").is_file() else ""
    )

    parts = ReportParts(
        name, spec, ranked, table, curves, pareto, swept, sweep_png, grids, groups, wandb, base_text
    )
    html_path = out / "index.html"
    html_path.write_text(_page(parts))
    md_path = out / "report.md"
    md_path.write_text(_markdown(parts))
    return {"html": html_path, "md": md_path, "rows": ranked, "sweep": swept, "wandb": wandb, "dir": out}
