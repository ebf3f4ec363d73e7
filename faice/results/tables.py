"""Result tables of a search: results.csv and results.md (with the across-seeds table and evaluation
notes), and the console table of `faice results`."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from faice.durable import write_text_atomic
from faice.figures import md_table
from faice.results.rows import (
    FINISHED,
    SEED_KEY,
    STOPPED,
    TrialRow,
    _finite,
    _metric_mode,
    rank,
    verdict,
)


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
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    for r, cells in zip(ranked, table, strict=True):
        writer.writerow({k: "" if v is None else v for k, v in {**cells, "grid": r.grid}.items()})
    write_text_atomic(csv_path, out.getvalue())  # rewritten as each trial ends: never half a table
    md_path = search_dir / "results.md"
    write_text_atomic(md_path, _markdown(ranked, table, search_dir, spec))
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
