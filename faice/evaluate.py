"""Evaluation of a model, a checkpoint or a folder of images: FID, IS and KID against cached real stats.

Metric names carry the extractor: `fid[faice-tiny]`, `is[inception]`, ... (see faice.metrics.features).
The same code runs inline in the training loop, on Ray evaluation workers and in `faice evaluate`.
One evaluation of a training run is one line of `<run_dir>/eval.jsonl` plus its sample grid
`<run_dir>/eval/step-NNNNNNN.png`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faice.config import Config
from faice.errors import ConfigError
from faice.metrics.features import Extractor, build_extractor
from faice.metrics.reference import ReferenceStats, reference_stats
from faice.metrics.stats import (
    FrechetReference,
    fid_bootstrap_std,
    inception_score,
    kernel_inception_distance,
)

EVAL_LOG = "eval.jsonl"
EVAL_DIR = "eval"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def metric_key(metric: str, extractor: str) -> str:
    """`fid`, `inception` -> `fid[inception]`: the extractor is part of every metric's name."""
    return f"{metric}[{extractor}]"


def is_eval_metric(name: str) -> bool:
    """True for a checkpoint-evaluation metric name such as fid[inception]."""
    return name.endswith("]") and "[" in name


def std_key(metric: str) -> str:
    """`fid[inception]` -> `fid_std[inception]`: where an evaluation metric's uncertainty is logged."""
    base, _, rest = metric.partition("[")
    return f"{base}_std[{rest}"


def is_std_metric(name: str) -> bool:
    """True for the uncertainty column of a metric, such as fid_std[inception]."""
    return "_std[" in name


@dataclass
class EvalResult:
    metrics: dict[str, float]
    info: dict = field(default_factory=dict)
    real: np.ndarray | None = None
    fake: np.ndarray | None = None
    images: np.ndarray | None = None  # uint8 (N, H, W, 3) that were scored

    def row(self, step: int | None) -> dict:
        """The eval.jsonl line: step, labelled metrics and where they came from."""
        return {"step": step, **self.metrics, **self.info}


def stats_dir_for(cfg: Config) -> Path:
    """The reference-statistics cache folder of `cfg` (eval.stats_dir, or <train.output_dir>/reference-stats)."""
    return Path(cfg.eval.stats_dir or Path(cfg.train.output_dir) / "reference-stats")


def reference_for(cfg: Config, extractor: Extractor, resolution: int | None = None) -> ReferenceStats:
    """The (cached) reference statistics of `cfg`'s evaluation data for `extractor`."""
    return reference_stats(
        cfg.data.path,
        cfg.eval.reference_split,
        resolution or cfg.data.resolution,
        extractor,
        stats_dir_for(cfg),
        cfg.eval.reference_images,
    )


def score(images: np.ndarray, ref: ReferenceStats, extractor: Extractor, cfg: Config) -> EvalResult:
    """FID/KID (and IS when the extractor has logits) of uint8 `images` against `ref`."""
    fake, logits = extractor.features(images)
    name = extractor.name
    frechet = FrechetReference(ref.mu, ref.sigma)
    metrics = {metric_key("fid", name): frechet.distance(fake)}
    if cfg.eval.fid_bootstrap > 1:  # FID's uncertainty: its spread over resamples of the same images
        metrics[metric_key("fid_std", name)] = fid_bootstrap_std(
            frechet, fake, cfg.eval.fid_bootstrap, seed=cfg.eval.seed
        )
    if logits is not None:
        mean, std = inception_score(logits, cfg.eval.is_splits)
        metrics[metric_key("is", name)], metrics[metric_key("is_std", name)] = mean, std
    kid, kid_std = kernel_inception_distance(
        ref.features, fake, cfg.eval.kid_subsets, cfg.eval.kid_subset_size, seed=cfg.eval.seed
    )
    metrics[metric_key("kid", name)], metrics[metric_key("kid_std", name)] = kid, kid_std
    info = {
        "extractor": name,
        "extractor_fingerprint": extractor.fingerprint,
        "num_samples": len(images),
        "num_reference": len(ref.features),
        "reference": str(ref.path),
    }
    if extractor.note:
        info["extractor_note"] = extractor.note
    return EvalResult(metrics, info, ref.features, fake, images)


def evaluate_model(model: torch.nn.Module, cfg: Config, extractor: Extractor | None = None) -> EvalResult:
    """Generate cfg.eval.num_samples images with the evaluation sampler and score them."""
    from faice.sampling import generate, to_uint8

    if cfg.eval.num_samples < 2:
        raise ConfigError(
            f"eval.num_samples: needs at least 2 images to evaluate, got {cfg.eval.num_samples}"
        )
    t0 = time.perf_counter()
    extractor = extractor or build_extractor(cfg.eval.extractor, cfg.eval)
    ref = reference_for(cfg, extractor)
    if cfg.task == "autoencoder":
        return evaluate_reconstruction(model, cfg, extractor, ref, t0)
    sampler = cfg.eval.sampler or cfg.sample.sampler
    steps = cfg.eval.num_inference_steps or cfg.sample.num_inference_steps
    images = generate(
        model,
        cfg,
        cfg.eval.num_samples,
        cfg.eval.seed,
        cfg.eval.batch_size,
        sampler=sampler,
        num_inference_steps=steps,
    )
    result = score(to_uint8(images), ref, extractor, cfg)
    if cfg.task == "text2image" and cfg.text.clip_path:  # text-image agreement of the same samples
        from faice.metrics.clip import clip_score, load_clip
        from faice.sampling import heldout_prompts

        clip, tokenizer = load_clip(cfg.text.clip_path)
        prompts = heldout_prompts(cfg, len(result.images))
        result.metrics[metric_key("clip_score", "clip")] = clip_score(clip, tokenizer, result.images, prompts)
    result.info.update(sampler=sampler, sampler_steps=steps, eval_seconds=time.perf_counter() - t0)
    return result


def evaluate_reconstruction(
    model, cfg: Config, extractor: Extractor, ref: ReferenceStats, t0: float
) -> EvalResult:
    """PSNR and SSIM of the reconstructions of cfg.eval.num_samples held-out faces against the faces, and
    rFID / rKID of the reconstructions against the reference statistics (labelled with the extractor)."""
    from faice.metrics.stats import psnr, ssim
    from faice.sampling import heldout_images, reconstructions, to_uint8

    real = heldout_images(cfg, cfg.eval.num_samples)
    recon = to_uint8(reconstructions(model, cfg, len(real), cfg.eval.batch_size))
    result = score(recon, ref, extractor, cfg)
    renamed = {"fid": "rfid", "fid_std": "rfid_std", "kid": "rkid", "kid_std": "rkid_std"}
    metrics = {}
    for key, value in result.metrics.items():
        base = key.split("[")[0]
        if base in renamed:
            metrics[metric_key(renamed[base], extractor.name)] = value
    metrics[metric_key("psnr", "pixels")] = psnr(real, recon)
    metrics[metric_key("ssim", "pixels")] = ssim(real, recon)
    result.metrics = metrics
    result.info.update(num_samples=len(real), kind="reconstruction", eval_seconds=time.perf_counter() - t0)
    return result


def checkpoint_config(ckpt: str | Path, overrides: list[str] | None = None) -> tuple[Config, Path]:
    """(the run config saved with a checkpoint plus dotted `overrides`, the checkpoint folder)."""
    from faice.config import from_tree, read_yaml
    from faice.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(ckpt)
    return from_tree(read_yaml(path / "config.yaml", "checkpoint config"), overrides or []), path


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
    from faice.sampling import make_grid, upscale

    if result.images is None or not len(result.images):
        return None
    grid = Path(run_dir) / EVAL_DIR / f"step-{step:07d}.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    upscale(make_grid([Image.fromarray(a) for a in result.images[:grid_images]])).save(grid)
    return grid


def append_eval(run_dir: str | Path, row: dict) -> None:
    """One line of run_dir/eval.jsonl (each run has one writer: its trainer or the pool dispatcher)."""
    with (Path(run_dir) / EVAL_LOG).open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")


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
