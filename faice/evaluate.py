"""Evaluation of a model, a checkpoint or a folder of images: FID, IS and KID against cached real stats.

Metric names carry the extractor: `fid[faice-tiny]`, `is[inception]`, ... (see faice.scoring).
The same code runs inline in the training loop, on Ray evaluation workers and in `faice evaluate`.
One evaluation of a training run is one line of `<run_dir>/eval.jsonl` plus its sample grid
`<run_dir>/eval/step-NNNNNNN.png`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faice.config import Config
from faice.durable import append_json_line
from faice.errors import ConfigError
from faice.metrics.features import Extractor, build_extractor
from faice.scoring import (
    EvalResult,
    is_eval_metric,
    is_std_metric,
    metric_key,
    reference_for,
    score,
    stats_dir_for,
    std_key,
)
from faice.tasks import task_of
from faice.train.checkpoint import checkpoint_config

__all__ = [
    "EvalResult",
    "checkpoint_config",
    "evaluate_checkpoint",
    "evaluate_model",
    "is_eval_metric",
    "is_std_metric",
    "metric_key",
    "reference_for",
    "score",
    "stats_dir_for",
    "std_key",
]

EVAL_LOG = "eval.jsonl"
EVAL_DIR = "eval"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def evaluate_model(model: torch.nn.Module, cfg: Config, extractor: Extractor | None = None) -> EvalResult:
    """Score cfg.eval.num_samples of the model's outputs (samples with the evaluation sampler, or an
    autoencoder's reconstructions) against the reference statistics."""
    if cfg.eval.num_samples < 2:
        raise ConfigError(
            f"eval.num_samples: needs at least 2 images to evaluate, got {cfg.eval.num_samples}"
        )
    t0 = time.perf_counter()
    task = task_of(cfg)
    extractor = extractor or build_extractor(cfg.eval.extractor, cfg.eval)
    result = task.evaluate(model, cfg, extractor, reference_for(cfg, extractor))
    result.info["eval_seconds"] = time.perf_counter() - t0
    return result


def evaluate_checkpoint(ckpt: str | Path, overrides: list[str] | None = None) -> tuple[EvalResult, int]:
    """(result, step) of a checkpoint folder, scored as its run config (plus `overrides`) says."""
    from accelerate import PartialState

    from faice.sampling import load_checkpoint_model

    cfg, path = checkpoint_config(ckpt, overrides)
    model, _, _ = load_checkpoint_model(path, use_ema=cfg.sample.use_ema)
    model.to(PartialState().device)
    step = json.loads((path / "state.json").read_text())["step"]
    result = evaluate_model(model, cfg)
    result.info["checkpoint"] = str(path)
    return result, step


def read_image_folder(folder: str | Path) -> np.ndarray:
    """All images of a folder (sorted by name) as uint8 (N, S, S, 3); they must share one square size."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise ConfigError(f"--images: {folder} holds {len(paths)} images; FID needs at least 2")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1 or arrays[0].shape[0] != arrays[0].shape[1]:
        raise ConfigError(f"--images: {folder} must hold square images of one size, found {sorted(sizes)}")
    return np.stack(arrays)


def save_grid(result: EvalResult, run_dir: str | Path, step: int, grid_images: int = 16) -> Path | None:
    """The scored samples' grid at run_dir/eval/step-NNNNNNN.png (what W&B shows next to the numbers)."""
    from faice.images import make_grid, upscale

    if result.images is None or not len(result.images):
        return None
    grid = Path(run_dir) / EVAL_DIR / f"step-{step:07d}.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    upscale(make_grid([Image.fromarray(a) for a in result.images[:grid_images]])).save(grid)
    return grid


def append_eval(run_dir: str | Path, row: dict) -> None:
    """One line of run_dir/eval.jsonl (each run has one writer: its trainer or the pool dispatcher)."""
    append_json_line(Path(run_dir) / EVAL_LOG, row)  # (a torn last line of a dead writer is cut first)


def write_eval(result: EvalResult, run_dir: str | Path, step: int, grid_images: int = 16) -> dict:
    """Save the grid and append the result to run_dir/eval.jsonl; returns the line written."""
    row = result.row(step)
    grid = save_grid(result, run_dir, step, grid_images)
    if grid is not None:
        row["grid"] = str(grid)
    append_eval(run_dir, row)
    return row


def dump_features(result: EvalResult, path: str | Path) -> None:
    """The features behind the numbers (`real`, `fake`), so anyone can recompute them."""
    np.savez(path, real=result.real, fake=result.fake)


def eval_metrics(row: dict) -> dict[str, float]:
    """The labelled metric values of an eval.jsonl line."""
    return {k: v for k, v in row.items() if is_eval_metric(k) and isinstance(v, int | float)}
