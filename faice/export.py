"""Export a checkpoint as a diffusers pipeline folder (model + scheduler + model_index.json).

An unconditional UNet with a sampler that a stock diffusers pipeline drives correctly exports to that
pipeline (DDPMPipeline, DDIMPipeline, PNDMPipeline). Everything else - class-conditional models, DiTs,
latent models (with their autoencoder) and samplers that step in sigma (euler, heun) - exports to `FaicePipeline`: faice/pipeline.py, copied
into the folder as pipeline.py, which runs faice's own sampling loop:

    DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
"""

from __future__ import annotations

from pathlib import Path

from faice.sampling import load_checkpoint_model
from faice.tasks import task_of
from faice.tasks.diffusion import CUSTOM_FILE, PIPELINES, needs_faice_pipeline

__all__ = ["CUSTOM_FILE", "PIPELINES", "export_pipeline", "needs_faice_pipeline"]


def export_pipeline(
    checkpoint: str | Path, out: str | Path, sampler: str | None = None, use_ema: bool | None = None
) -> Path:
    """Write `out` so that `diffusers.DiffusionPipeline.from_pretrained(out)` samples the checkpoint's
    model (with trust_remote_code=True for a FaicePipeline export; its EMA weights per use_ema, None = the run's
    sample.use_ema); returns `out`."""
    model, cfg, ckpt = load_checkpoint_model(checkpoint, use_ema=use_ema)
    return task_of(cfg).export(model, cfg, ckpt, Path(out), sampler)
