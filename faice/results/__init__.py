"""Results of a hyper-parameter search, read from its folder on disk (never from Ray).

A search folder holds `search.yaml`, `base_config.yaml`, `runs/<trial>/` run folders and optionally the
launcher's `trials.json`; this module turns it into a console table, results.csv, results.md and a plot.
"""

from faice.results.outputs import plot_metric, report, results_command
from faice.results.rows import (
    BOOKKEEPING,
    RAY_STATUS,
    SEED_KEY,
    TrialRow,
    _metric_mode,
    _read_yaml,
    collect,
    config_diff,
    final_evals,
    load_search,
    metric_lines,
    rank,
    read_jsonl,
    trial_row,
    verdict,
    write_trials,
)
from faice.results.tables import (
    _fmt,
    by_configuration,
    eval_columns,
    format_mean_std,
    format_table,
    mean_std,
    seed_table,
    short_diff,
    table_cells,
    write_tables,
)

__all__ = [
    "BOOKKEEPING",
    "RAY_STATUS",
    "SEED_KEY",
    "TrialRow",
    "_fmt",
    "_metric_mode",
    "_read_yaml",
    "by_configuration",
    "collect",
    "config_diff",
    "eval_columns",
    "final_evals",
    "format_mean_std",
    "format_table",
    "load_search",
    "mean_std",
    "metric_lines",
    "plot_metric",
    "rank",
    "read_jsonl",
    "report",
    "results_command",
    "seed_table",
    "short_diff",
    "table_cells",
    "trial_row",
    "verdict",
    "write_tables",
    "write_trials",
]
