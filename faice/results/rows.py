"""A search's trials read from its folder: one `TrialRow` per run folder (status, best and last value of
the metric with its uncertainty, cost, evaluations), ranked, and the verdict that names a winner only
when the best two are apart beyond noise."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faice.config import flatten, read_yaml
from faice.durable import read_json_lines, write_json_atomic
from faice.errors import ConfigError

BOOKKEEPING = frozenset({"name", "train.run_name", "train.output_dir", "log.group"})

FINISHED, STOPPED, NO_METRICS = "finished", "stopped early", "no metrics"
SEED_KEY = "train.seed"  # trials that differ only here are one configuration run with several seeds
RAY_STATUS = {"ERROR": "error", "RUNNING": "running", "PENDING": "pending", "PAUSED": "paused"}


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
    return [r for r in read_json_lines(path) if "step" in r]


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


TRIALS_FILE = "trials.json"


def write_trials(search_dir: str | Path, trials: dict[str, dict]) -> Path:
    """The runner's record of each trial, {trial_id: {"status": Ray's (TERMINATED, ERROR, ...), "params":
    its sampled params}}, as search_dir/trials.json (what `collect` merges with the run folders)."""
    path = Path(search_dir) / TRIALS_FILE
    write_json_atomic(path, trials, default=str)
    return path


# what a trial's row is read from, besides its trials.json entry (samples: where its grids are)
ROW_SOURCES = ("metrics.jsonl", "eval.jsonl", "summary.json", "config.yaml", "samples", "samples/final")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def row_signature(run_dir: Path, ray: dict | None) -> tuple:
    """(mtime, size) of each file a trial's row is read from, and its trials.json entry: while this holds,
    so does the row."""
    return (*(_stamp(run_dir / name) for name in ROW_SOURCES), json.dumps(ray, sort_keys=True, default=str))


def collect(search_dir: str | Path, cache: dict | None = None) -> list[TrialRow]:
    """One TrialRow per trial (run folders and trials.json entries), sorted by trial id.

    `cache` (a dict kept by the caller between calls on one search) holds each row with its
    `row_signature`: only trials whose files changed are read again, so a launcher that rewrites the
    tables as each of N trials ends reads O(N) run folders in all, not O(N^2)."""
    search_dir = Path(search_dir)
    spec = load_search(search_dir)
    base = _read_yaml(search_dir / "base_config.yaml") or {}
    ray = _read_json(search_dir / TRIALS_FILE)
    ray = ray if isinstance(ray, dict) else {}
    runs = search_dir / "runs"
    ids = {p.name for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()
    ids |= set(ray)
    cache = {} if cache is None else cache  # (no cache: every row is read, as into an empty one)
    setting = (_stamp(search_dir / "search.yaml"), _stamp(search_dir / "base_config.yaml"))
    if cache.get("") != setting:  # the search's own files changed: every row is read again
        cache.clear()
        cache[""] = setting
    rows = []
    for t in sorted(ids):
        sig = row_signature(runs / t, ray.get(t))
        hit = cache.get(t)
        if hit is None or hit[0] != sig:
            hit = cache[t] = (sig, trial_row(runs / t, t, spec, base, ray.get(t)))
        rows.append(copy.copy(hit[1]))
    return rows


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
