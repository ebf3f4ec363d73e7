"""Sampling from models and checkpoints, whatever their task: image tensors in [-1, 1], then PNGs and grids
(faice.images)."""

from __future__ import annotations

from pathlib import Path

import torch

from faice.config import Config, load_config
from faice.data.heldout import heldout_images, heldout_prompts
from faice.images import images_stats, make_grid, save_samples, to_pil, to_uint8, upscale
from faice.tasks import task_of
from faice.tasks.diffusion import condition_labels, decode_latents
from faice.train.checkpoint import resolve_checkpoint

__all__ = [
    "condition_labels",
    "decode_latents",
    "generate",
    "heldout_images",
    "heldout_prompts",
    "images_stats",
    "load_checkpoint_model",
    "make_grid",
    "save_samples",
    "to_pil",
    "to_uint8",
    "upscale",
]


def generate(
    model: torch.nn.Module,
    cfg: Config,
    n: int,
    seed: int,
    batch_size: int = 64,
    labels: torch.Tensor | None = None,
    **overrides,
) -> torch.Tensor:
    """`n` images (n, C, H, W) in [-1, 1] of cfg's task: samples with the sampler of cfg.sample (fields
    overridable by keyword), an autoencoder's reconstructions, or a text-to-image model's held-out prompts.

    A conditional model (cfg.model.conditioning) samples `labels` (n,), by default drawn by
    `condition_labels` (cfg.sample.attributes fixed, the other attributes as in the training data)."""
    return task_of(cfg).generate(model, cfg, n, seed, batch_size, labels, overrides)


def load_checkpoint_model(
    ckpt: str | Path, use_ema: bool | None = None
) -> tuple[torch.nn.Module, Config, Path]:
    """(model, its run config, checkpoint path); the EMA weights when present and asked for (use_ema; None =
    the run's sample.use_ema)."""
    ckpt = resolve_checkpoint(ckpt)
    cfg = load_config(ckpt / "config.yaml")
    use_ema = cfg.sample.use_ema if use_ema is None else use_ema
    return task_of(cfg).load_model(ckpt, cfg, use_ema), cfg, ckpt
