"""`faice compare`: several searches side by side (each one's best trial, its metric's uncertainty and
the verdict between them)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faice.report.page import _md_table
from faice.results import (
    _metric_mode,
    collect,
    load_search,
    short_diff,
    verdict,
)

# ---------------------------------------------------------------------------- compare


def compare(search_dirs: Sequence[str | Path]) -> tuple[list[str], list[list[Any]], list[str]]:
    """(header, one row per search, metric columns left out): each search's best trial with the metric
    columns every search has, their uncertainties (x_std[...]) and `verdict`: `tie` when that search's
    runner-up is within noise of its best (faice.results.verdict). A column is one metric of one extractor, so `fid[faice-tiny]` and
    `fid[inception]` never share one; columns some searches lack are returned as left out."""
    from faice.evaluate import std_key

    entries, seen = [], set()
    for folder in map(Path, search_dirs):
        spec = load_search(folder)
        metric, mode = _metric_mode(spec)
        rows = collect(folder)
        for row in rows:
            seen |= set(row.evals) | ({metric} if row.best is not None else set())
        found = verdict(rows, metric, mode)
        best = found["best"] if found else None
        values = {}
        if best is not None:
            values = {**best.evals, metric: best.best, "verdict": "tie" if found["tie"] else "clear"}
            if best.best_std is not None:
                values[std_key(metric)] = best.best_std
            if best.steps_per_s is not None:
                values["steps_per_s"] = best.steps_per_s
        entries.append((folder, spec, metric, best, values))
    shared = set.intersection(*(set(e[4]) for e in entries)) if entries else set()
    ordered = sorted(shared, key=lambda k: (k == "verdict", "[" not in k, k[k.find("[") :], k))
    header = ["search", "trial", "config", *ordered, "run"]
    table = []
    for folder, spec, metric, best, values in entries:
        name = spec.get("name") or folder.name
        if best is None:
            table.append([name, "", f"no trial has {metric} yet", *([None] * len(ordered)), ""])
            continue
        run = folder / "runs" / best.trial_id
        table.append([name, best.trial_id, short_diff(best.diff), *(values[k] for k in ordered), str(run)])
    return header, table, sorted(seen - set(header))


def compare_command(search_dirs: Sequence[str], out: str | None = None, stream=None) -> int:
    """Print the comparison as markdown (and write it, plus a csv twin, to `out` when given)."""
    import sys

    stream = stream or sys.stdout
    header, table, dropped = compare(search_dirs)
    lines = _md_table(header, table)
    if dropped:
        lines += ["", "Not shared by every search, so not compared: " + ", ".join(dropped)]
    text = "\n".join(lines) + "\n"
    print(text, end="", file=stream)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        with path.with_suffix(".csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([["" if v is None else v for v in row] for row in table])
        print(f"written: {path} and {path.with_suffix('.csv')}", file=stream)
    return 0
