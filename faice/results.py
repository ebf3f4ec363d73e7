"""Results of a hyper-parameter search, read from its folder on disk (never from Ray).

A search folder holds `search.yaml`, `base_config.yaml`, `runs/<trial>/` run folders and optionally the
launcher's `trials.json`; this module turns it into a console table, results.csv, results.md and a plot.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faice.config import flatten, read_yaml
from faice.errors import ConfigError
from faice.figures import md_table, new_figure, save_figure

BOOKKEEPING = frozenset({"name", "train.run_name", "train.output_dir", "log.group"})
"""Config keys that differ between trials by construction; never part of a trial's diff."""

RAY_STATUS = {"ERROR": "error", "RUNNING": "running", "PENDING": "pending", "PAUSED": "paused"}
FINISHED, STOPPED, NO_METRICS = "finished", "stopped early", "no metrics"


@dataclass
class TrialRow:
    """One trial of a search; metric values are None until the trial has logged the metric."""

    trial_id: str
    status: str
    diff: dict[str, Any] = field(default_factory=dict)
    best: float | None = None
    best_std: float | None = None  # the uncertainty logged with the best value (fid_std[x], kid_std[x])
    best_step: int | None = None
    last: float | None = None
    last_step: int | None = None
    wall_s: float | None = None
    steps_per_s: float | None = None  # training speed: the median of the logged rates
    peak_mem_mb: float | None = None  # CUDA memory allocated on GPUs, process RSS on CPUs
    cpu_hours: float | None = None
    gpu_hours: float | None = None
    resumes: int = 0
    grid: str | None = None
    evals: dict[str, float] = field(default_factory=dict)  # metric[extractor] -> value at its last eval
    eval_failures: int = 0


# ---------------------------------------------------------------------------- reading files


def load_search(search_dir: str | Path) -> dict:
    """The resolved spec of `search_dir/search.yaml`; ConfigError when the folder is not a search."""
    path = Path(search_dir) / "search.yaml"
    if not path.is_file():
        raise ConfigError(f"{search_dir} is not a search folder: it has no search.yaml")
    spec = read_yaml(path)
    if spec.get("mode", "min") not in ("min", "max"):
        raise ConfigError(f"{path}: mode must be min or max, got {spec['mode']!r}")
    return spec


def _metric_mode(spec: dict) -> tuple[str, str]:
    return spec.get("metric") or "loss", spec.get("mode") or "min"


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a metrics.jsonl; lines that do not parse (a line still being written) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _read_yaml(path: Path) -> dict | None:
    """The mapping in `path`, None when it is missing, unreadable or not a mapping (a run still starting)."""
    try:
        data = read_yaml(path)
    except (OSError, ConfigError):
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def config_diff(base: dict, trial: dict) -> dict[str, Any]:
    """Dotted keys whose value in `trial` differs from `base` (bookkeeping keys excluded) -> trial value."""
    flat_base, flat_trial = flatten(base), flatten(trial)
    keys = [k for k in flat_trial if k not in BOOKKEEPING]
    return {k: flat_trial[k] for k in keys if k not in flat_base or flat_base[k] != flat_trial[k]}


# ---------------------------------------------------------------------------- one trial


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _metric_stats(lines: list[dict], metric: str, mode: str) -> dict:
    """best/best_step/last/last_step/wall_s/resumes from the parsed metrics lines."""
    points = [(r["step"], r[metric]) for r in lines if _finite(r.get(metric))]
    elapsed = [r["elapsed_s"] for r in lines if _finite(r.get("elapsed_s"))]
    stats: dict[str, Any] = {
        "last_step": max((r["step"] for r in lines), default=None),
        "wall_s": max(elapsed) if elapsed else None,
        "resumes": sum("resumed_from" in r for r in lines),
    }
    rates = sorted(r["steps_per_s"] for r in lines if _finite(r.get("steps_per_s")))
    if rates:
        stats["steps_per_s"] = rates[len(rates) // 2]
    memory = [r["peak_mem_mb"] for r in lines if _finite(r.get("peak_mem_mb"))]
    if memory:
        stats["peak_mem_mb"] = max(memory)
    if points:
        pick = min if mode == "min" else max
        stats["best_step"], stats["best"] = pick(points, key=lambda p: p[1])
        stats["last"] = points[-1][1]
    return stats


def _std_at(lines: list[dict], metric: str, step: int | None) -> float | None:
    """The uncertainty logged beside `metric` at `step` (an evaluation's fid_std[x]/kid_std[x])."""
    from faice.evaluate import is_eval_metric, std_key

    if not is_eval_metric(metric) or step is None:
        return None
    key = std_key(metric)
    found = [
        r[key] for r in lines if r.get("step") == step and _finite(r.get(key)) and _finite(r.get(metric))
    ]
    return found[-1] if found else None


def _grid(run_dir: Path, summary: dict | None) -> str | None:
    """The final grid of the summary (or its copy in this folder), else the latest samples/*.png."""
    candidates = [Path(summary["grid"])] if summary and summary.get("grid") else []
    candidates.append(run_dir / "samples" / "final" / "grid.png")
    for path in candidates:
        if path.is_file():
            return str(path)
    pngs = sorted((run_dir / "samples").glob("*.png"))
    return str(pngs[-1]) if pngs else None


def _status(ray_status: str | None, has_summary: bool, has_lines: bool) -> str:
    if ray_status == "TERMINATED" or (ray_status is None and has_lines):
        return FINISHED if has_summary else STOPPED
    if ray_status is None:
        return FINISHED if has_summary else NO_METRICS
    return RAY_STATUS.get(ray_status, ray_status.lower())


def _resources(spec: dict) -> tuple[float, float]:
    """(CPUs, GPUs) of one trial: num_workers x per-worker resources of search.yaml `trial`."""
    trial = spec.get("trial") or {}
    extra = trial.get("resources_per_worker") or {}
    workers = trial.get("num_workers") or 1
    cpus = trial.get("cpus_per_worker", extra.get("CPU", 1)) or 0
    gpus = trial.get("gpus_per_worker", extra.get("GPU", 0)) or 0
    return workers * cpus, workers * gpus


def metric_lines(run_dir: Path, metric: str) -> list[dict]:
    """The lines `metric` is read from: eval.jsonl (by checkpoint step) for fid[x] & co, else metrics.jsonl."""
    from faice.evaluate import EVAL_LOG, is_eval_metric

    return read_jsonl(run_dir / (EVAL_LOG if is_eval_metric(metric) else "metrics.jsonl"))


def final_evals(run_dir: Path) -> tuple[dict[str, float], int]:
    """({metric[extractor]: value of the newest evaluated checkpoint}, failed evaluations) of a run."""
    from faice.evaluate import EVAL_LOG, eval_metrics

    out: dict[str, float] = {}
    rows = read_jsonl(run_dir / EVAL_LOG)
    for row in sorted(rows, key=lambda r: r["step"]):
        out.update(eval_metrics(row))
    return out, sum("eval_error" in r for r in rows)


def trial_row(run_dir: Path, trial_id: str, spec: dict, base: dict, ray: dict | None) -> TrialRow:
    """The row of one trial from its run folder (which may not exist yet) and its trials.json entry."""
    from faice.evaluate import is_eval_metric

    metric, mode = _metric_mode(spec)
    lines = read_jsonl(run_dir / "metrics.jsonl")
    evals, failures = final_evals(run_dir)
    summary = _read_json(run_dir / "summary.json")
    summary = summary if isinstance(summary, dict) else None
    config = _read_yaml(run_dir / "config.yaml")
    if config is not None:
        diff = config_diff(base, config)
        if spec.get("seeds") and SEED_KEY not in diff:  # a searched seed is a column of every trial
            diff[SEED_KEY] = (config.get("train") or {}).get("seed")
    else:
        diff = {k: v for k, v in ((ray or {}).get("params") or {}).items() if k not in BOOKKEEPING}
    variant = ((ray or {}).get("params") or {}).get("variant")  # a `variants:` search's name for it
    if variant is not None:
        diff = {"variant": variant, **diff}
    status = _status((ray or {}).get("status"), summary is not None, bool(lines))
    stats = _metric_stats(lines, metric, mode)
    if is_eval_metric(metric):
        own_lines = metric_lines(run_dir, metric)
        own = _metric_stats(own_lines, metric, mode)
        stats.update({k: own[k] for k in ("best", "best_step", "last") if k in own})
        stats["best_std"] = _std_at(own_lines, metric, stats.get("best_step"))
    row = TrialRow(trial_id, status, diff, grid=_grid(run_dir, summary), evals=evals, **stats)
    row.eval_failures = failures
    if row.wall_s is not None:
        cpus, gpus = _resources(spec)
        row.cpu_hours, row.gpu_hours = row.wall_s / 3600 * cpus, row.wall_s / 3600 * gpus
    return row


# ---------------------------------------------------------------------------- the whole search


def collect(search_dir: str | Path) -> list[TrialRow]:
    """One TrialRow per trial (run folders and trials.json entries), sorted by trial id."""
    search_dir = Path(search_dir)
    spec = load_search(search_dir)
    base = _read_yaml(search_dir / "base_config.yaml") or {}
    ray = _read_json(search_dir / "trials.json")
    ray = ray if isinstance(ray, dict) else {}
    runs = search_dir / "runs"
    ids = {p.name for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()
    ids |= set(ray)
    return [trial_row(runs / t, t, spec, base, ray.get(t)) for t in sorted(ids)]


def rank(rows: list[TrialRow], mode: str) -> list[TrialRow]:
    """Rows best first; trials without the metric last, in id order."""
    sign = 1 if mode == "min" else -1
    return sorted(rows, key=lambda r: (r.best is None, sign * r.best if r.best is not None else 0.0))


def verdict(rows: list[TrialRow], metric: str, mode: str, z: float = 2.0) -> dict | None:
    """The best trial, and whether the runner-up is within noise of it: |a - b| < z sqrt(sa^2 + sb^2)
    with each value's logged uncertainty (no uncertainty: never a tie). None when no trial has the metric.
    Returns {best, runner_up, tie, text}."""
    ranked = [r for r in rank(rows, mode) if r.best is not None]
    if not ranked:
        return None
    best = ranked[0]
    if len(ranked) < 2:
        return {"best": best, "runner_up": None, "tie": False, "text": f"best: {_with_std(best, metric)}"}
    second = ranked[1]
    spread = math.hypot(best.best_std or 0.0, second.best_std or 0.0)
    tie = spread > 0 and abs(best.best - second.best) < z * spread
    if tie:
        text = (
            f"no clear winner: the best two trials, {_with_std(best, metric)} and {_with_std(second, metric)}, "
            f"are within noise of each other (difference {abs(best.best - second.best):.4g} < "
            f"{z:g} x {spread:.3g}); score them on more samples or seeds before choosing"
        )
    else:
        text = f"best: {_with_std(best, metric)} (runner-up {_with_std(second, metric)})"
    return {"best": best, "runner_up": second, "tie": tie, "text": text}


def _with_std(row: TrialRow, metric: str) -> str:
    std = f" ± {row.best_std:.2g}" if row.best_std is not None else ""
    return f"{row.trial_id} {metric}={row.best:.4g}{std} at step {row.best_step}"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short_diff(diff: dict[str, Any]) -> str:
    """`lr=0.002 batch_size=16`: last part of each dotted key, unless two keys share it."""
    tails = [k.rsplit(".", 1)[-1] for k in diff]
    names = [t if tails.count(t) == 1 else k for k, t in zip(diff, tails, strict=True)]
    return " ".join(f"{n}={_fmt(v)}" for n, v in zip(names, diff.values(), strict=True)) or "(base)"


def _diff_keys(rows: list[TrialRow]) -> list[str]:
    return sorted({k for r in rows for k in r.diff})


def eval_columns(rows: list[TrialRow], metric: str = "") -> list[str]:
    """Evaluation metrics any trial has but `metric` (it has its own best/last columns), grouped by
    extractor: fid[a], is[a], kid[a], fid[b], ..."""
    names = {k for r in rows for k in r.evals} - {metric}
    return sorted(names, key=lambda k: (k[k.index("[") :], k))


def _columns(row: TrialRow, metric: str, evals: list[str] = ()) -> dict[str, Any]:
    """The non-diff columns shared by results.csv and results.md."""
    from faice.evaluate import is_eval_metric, std_key

    uncertainty = {f"best_{std_key(metric)}": row.best_std} if is_eval_metric(metric) else {}
    return {
        **{name: row.evals.get(name) for name in evals},
        f"best_{metric}": row.best,
        **uncertainty,
        "best_step": row.best_step,
        f"last_{metric}": row.last,
        "last_step": row.last_step,
        "wall_s": row.wall_s,
        "steps_per_s": row.steps_per_s,
        "peak_mem_mb": row.peak_mem_mb,
        "cpu_hours": row.cpu_hours,
        "gpu_hours": row.gpu_hours,
        "resumes": row.resumes,
    }


def _counts(rows: list[TrialRow]) -> str:
    statuses = [r.status for r in rows]
    return ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys([FINISHED, STOPPED, *statuses]))


def table_cells(rows: list[TrialRow], spec: dict) -> tuple[list[TrialRow], list[dict]]:
    """(rows ranked best first, their results.csv cells without `grid`): the one table results.csv,
    results.md and `faice report` all show."""
    metric, mode = _metric_mode(spec)
    keys = _diff_keys(rows)
    evals = eval_columns(rows, metric)
    ranked = rank(rows, mode)
    empty = {
        "trial_id": None,
        "status": None,
        **dict.fromkeys(keys),
        **_columns(TrialRow("", ""), metric, evals),
    }
    table = [
        {**empty, "trial_id": r.trial_id, "status": r.status, **{k: r.diff.get(k) for k in keys},
         **_columns(r, metric, evals)}
        for r in ranked
    ]  # fmt: skip
    return ranked, table or [empty]


def write_tables(rows: list[TrialRow], search_dir: str | Path, spec: dict) -> tuple[Path, Path]:
    """Write results.csv (one row per trial) and results.md (ranked, best first); returns both paths."""
    search_dir = Path(search_dir)
    ranked, table = table_cells(rows, spec)
    header = [*table[0], "grid"]
    table = table[: len(ranked)]
    csv_path = search_dir / "results.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for r, cells in zip(ranked, table, strict=True):
            writer.writerow({k: "" if v is None else v for k, v in {**cells, "grid": r.grid}.items()})
    md_path = search_dir / "results.md"
    md_path.write_text(_markdown(ranked, table, search_dir, spec))
    return csv_path, md_path


def _relative(path: str | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def _markdown(ranked: list[TrialRow], table: list[dict], search_dir: Path, spec: dict) -> str:
    metric, mode = _metric_mode(spec)
    name = spec.get("name") or search_dir.name
    header = [*table[0], "grid"] if table else ["trial_id", "status", f"best_{metric}"]
    found = verdict(ranked, metric, mode)
    lines = [
        f"# Search `{name}`: {metric} ({mode}), {len(ranked)} trials: {_counts(ranked)}",
        "",
        *([f"**{found['text'][0].upper() + found['text'][1:]}.**", ""] if found else []),
    ]
    values = [
        [*(_fmt(v) for v in cells.values()), _relative(r.grid, search_dir)]
        for r, cells in zip(ranked, table, strict=True)
    ]
    lines += md_table(header, values)
    lines += seed_table(ranked, metric, mode)
    lines += _eval_notes(ranked)
    return "\n".join(lines) + "\n"


SEED_KEY = "train.seed"  # trials that differ only here are one configuration run with several seeds


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def by_configuration(rows: list[TrialRow], metric: str, mode: str) -> list[dict]:
    """Trials grouped by their config diff without train.seed, best mean first: {config, diff, trials,
    seeds, n, <col>: (mean, std, n)} for best_<metric> and every evaluation column."""
    groups: dict[str, list[TrialRow]] = {}
    for row in rows:
        diff = {k: v for k, v in row.diff.items() if k != SEED_KEY}
        groups.setdefault(json.dumps(diff, sort_keys=True, default=str), []).append(row)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = {"diff": json.loads(key), "config": short_diff(json.loads(key)),
                                 "trials": [r.trial_id for r in members], "n": len(members),
                                 "seeds": [r.diff.get(SEED_KEY, "base") for r in members]}  # fmt: skip
        columns = {f"best_{metric}": [r.best for r in members]}
        for name in eval_columns(members, metric):
            columns[name] = [r.evals.get(name) for r in members]
        for name, values in columns.items():
            values = [v for v in values if _finite(v)]
            entry[name] = (*mean_std(values), len(values)) if values else None
        out.append(entry)
    sign = 1 if mode == "min" else -1
    best = f"best_{metric}"
    return sorted(out, key=lambda e: (e[best] is None, sign * e[best][0] if e[best] else 0.0))


def format_mean_std(cell: tuple[float, float, int] | None) -> str:
    """`52.63 ± 1.2 (n=3)`; a single run shows its value alone."""
    if cell is None:
        return ""
    mean, std, n = cell
    return f"{mean:.4g}" if n < 2 else f"{mean:.4g} ± {std:.2g} (n={n})"


def seed_table(rows: list[TrialRow], metric: str, mode: str) -> list[str]:
    """Markdown lines of the across-seeds table (empty when no configuration ran with several seeds)."""
    groups = by_configuration(rows, metric, mode)
    if not any(g["n"] > 1 for g in groups):
        return []
    columns = [c for c in groups[0] if c.startswith("best_") or "[" in c]
    cells = [[g["config"], ", ".join(map(str, g["seeds"])), *(format_mean_std(g.get(c)) for c in columns)]
             for g in groups]  # fmt: skip
    title = ["", "## Across seeds: mean ± standard deviation over each configuration's seeds", ""]
    return title + md_table(["configuration", "seeds", *columns], cells)


def _eval_notes(rows: list[TrialRow]) -> list[str]:
    """What the evaluation columns mean; the stand-in extractor is flagged as not comparable."""
    columns = eval_columns(rows)
    if not columns:
        return []
    notes = [
        "",
        "Evaluation columns are the scores of each trial's newest evaluated checkpoint; `fid_std[x]` is the "
        "FID's bootstrap standard deviation, `kid_std[x]` KID's over its subsets.",
    ]
    if any("[faice-tiny]" in c for c in columns):
        notes.append(
            "`[faice-tiny]`: the offline stand-in feature network (a fixed random CNN) for fast tests; it does "
            "NOT rank models reliably (benchmarks/results/metric_agreement.md) and is not comparable to "
            "published FID/IS, which use `[inception]`."
        )
    failed = sum(r.eval_failures for r in rows)
    if failed:
        notes.append(f"{failed} evaluation(s) failed after all retries; see the trials' eval.jsonl.")
    return notes


def format_table(rows: list[TrialRow], metric: str, mode: str, max_width: int = 110) -> str:
    """A ranked plain-text table for the console; the diff column is cut to fit `max_width`."""
    from faice.evaluate import is_std_metric

    evals = [c for c in eval_columns(rows, metric) if not c.startswith("kid") and not is_std_metric(c)]
    head = ["trial", "status", f"best {metric}", "@step", *evals, "step", "wall s", "resumes", "diff"]
    best = lambda r: _fmt(r.best) + (f" ± {r.best_std:.2g}" if r.best_std is not None else "")  # noqa: E731
    body = [
        [r.trial_id, r.status, best(r), _fmt(r.best_step), *(_fmt(r.evals.get(c)) for c in evals)]
        + [_fmt(r.last_step), _fmt(r.wall_s), str(r.resumes), short_diff(r.diff)]
        for r in rank(rows, mode)
    ]
    widths = [max(len(c[i]) for c in [head, *body]) for i in range(len(head))]
    out = []
    for cells in [head, *body]:
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        out.append(line if len(line) <= max_width else line[: max_width - 3] + "...")
    return "\n".join(out)


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
