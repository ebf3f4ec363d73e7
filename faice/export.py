"""Export a checkpoint as a diffusers pipeline folder (model + scheduler + model_index.json)."""

from __future__ import annotations

from pathlib import Path

from faice.diffusion.samplers import build_scheduler
from faice.sampling import load_checkpoint_model

# the diffusers pipeline whose __call__ drives each sampler correctly
PIPELINES = {
    "ddpm": "DDPMPipeline",
    "ddim": "DDIMPipeline",
    "pndm": "PNDMPipeline",
    "dpm-solver++": "DDPMPipeline",
}


def export_pipeline(
    checkpoint: str | Path, out: str | Path, sampler: str | None = None, use_ema: bool = True
) -> Path:
    """Write `out` so that `diffusers.DiffusionPipeline.from_pretrained(out)` samples the checkpoint's model."""
    import diffusers

    from faice.config import ConfigError

    model, cfg, _ = load_checkpoint_model(checkpoint, use_ema=use_ema)
    sampler = sampler or cfg.sample.sampler
    if cfg.model.conditioning:
        raise ConfigError(
            "export: diffusers has no pipeline that feeds class labels to a UNet2DModel; sample a "
            "class-conditional model with `faice sample RUN --attr NAME=1 --guidance S`"
        )
    if sampler not in PIPELINES:  # euler/heun: no unconditional pipeline scales their sigma inputs
        raise ConfigError(
            f"export --sampler {sampler}: no diffusers unconditional pipeline drives it correctly; "
            f"choose one of {', '.join(PIPELINES)}"
        )
    scheduler = build_scheduler(cfg.diffusion, sampler, cfg.sample.clip_sample, cfg.sample.karras_sigmas)
    pipeline = getattr(diffusers, PIPELINES[sampler])(unet=model, scheduler=scheduler)
    out = Path(out)
    pipeline.save_pretrained(out)
    return out
