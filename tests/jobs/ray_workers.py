"""Functions Ray Train workers import in tests (this package is on the cluster's PYTHONPATH)."""

import json
from pathlib import Path

import ray.train

from faice.config import from_dict, resolve
from faice.train.loop import Hooks, train


def record_ids_loop(loop_config: dict) -> None:
    """The real faice loop on this worker; writes the sample ids it trained on to ids-rank<r>.json."""
    cfg = resolve(from_dict(loop_config["config"]))
    rank = ray.train.get_context().get_world_rank()
    seen: list[str] = []
    result = train(cfg, run_dir=loop_config["run_dir"], hooks=Hooks(on_batch=lambda b: seen.extend(b["id"])))
    out = Path(loop_config["out"]) / f"ids-rank{rank}.json"
    out.write_text(
        json.dumps({"ids": seen, "world": ray.train.get_context().get_world_size(), "step": result.step})
    )
