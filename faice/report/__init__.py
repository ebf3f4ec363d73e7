"""`faice report` and `faice compare`: a search's results as a page a researcher can paste from.

Everything comes from the search folder on disk (search.yaml, base_config.yaml, runs/<trial>/
metrics.jsonl, eval.jsonl, config.yaml, samples/, checkpoints/), never from Ray or W&B:

    <out>/index.html   self-contained (images inlined), table sortable by clicking a header
    <out>/report.md    the markdown twin, linking the PNGs next to it
    <out>/*.png        metric-vs-step curves, FID vs sampling steps, quality vs compute, sample grids
    <out>/sampling-steps.json   the sweep of the best checkpoint (reused when the checkpoint is unchanged)
    <out>/wandb.json   W&B link (online runs) and panel config of the search's group

Every number names its trial (and run folder) and every metric its extractor (`fid[inception]`); the
table is results.csv's, cell for cell.
"""

from faice.report.build import TOP_GRIDS, build_report
from faice.report.compare import compare, compare_command
from faice.report.page import ReportParts, fid_name
from faice.report.plots import plot_pareto, plot_sweep
from faice.report.sweep import SWEEP_FILE, best_checkpoint, sweep_best
from faice.report.wandb_links import wandb_info

__all__ = [
    "ReportParts",
    "SWEEP_FILE",
    "TOP_GRIDS",
    "best_checkpoint",
    "build_report",
    "compare",
    "compare_command",
    "fid_name",
    "plot_pareto",
    "plot_sweep",
    "sweep_best",
    "wandb_info",
]
