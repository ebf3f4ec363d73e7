"""The report's sampler sweep: the best trial's newest checkpoint sampled with every (sampler, steps) of
the plan, cached in sampling-steps.json while the checkpoint is unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faice.results import (
    _read_yaml,
    rank,
)
from faice.train.checkpoint import latest_checkpoint

SWEEP_FILE = "sampling-steps.json"


# ---------------------------------------------------------------------------- the sweep


def best_checkpoint(search_dir: Path, rows: list, mode: str) -> tuple[Any, Path] | None:
    """(best trial row, its newest checkpoint folder) among trials that have one."""
    for row in rank(rows, mode):
        ckpt = latest_checkpoint(search_dir / "runs" / row.trial_id)
        if row.best is not None and ckpt is not None:
            return row, ckpt
    return None


def sweep_best(
    search_dir: Path, rows: list, mode: str, out: Path, plan: dict | None, samples: int | None, log: Callable
) -> dict | None:
    """The sampling-steps sweep of the best checkpoint, computed once per (checkpoint, plan, samples) and
    kept in <out>/sampling-steps.json; None when `plan` is None or nothing can be swept."""
    if not plan:
        return None
    found = best_checkpoint(search_dir, rows, mode)
    if found is None:
        log("faice report: no checkpoint to sweep samplers on")
        return None
    row, ckpt = found
    config = _read_yaml(ckpt / "config.yaml") or {}
    if config.get("task", "diffusion") != "diffusion":
        log(f"faice report: sampler sweep skipped: task {config.get('task')} (diffusion samplers only)")
        return None
    samples = samples or (config.get("eval") or {}).get("num_samples") or 64
    key = {"checkpoint": str(ckpt.resolve()), "plan": plan, "samples": samples}
    cache = out / SWEEP_FILE
    if cache.is_file():
        old = json.loads(cache.read_text())
        if {k: old.get(k) for k in key} == key:
            return old
    from faice.sweep import sampler_sweep

    log(f"faice report: sweeping samplers on {row.trial_id}'s checkpoint {ckpt.name} ({samples} samples/row)")
    result = {**key, "trial_id": row.trial_id, "rows": sampler_sweep(ckpt, plan, samples, log=log)}
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result
