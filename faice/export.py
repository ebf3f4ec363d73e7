"""Export a checkpoint as a diffusers pipeline folder (model + scheduler + model_index.json).

An unconditional UNet with a sampler that a stock diffusers pipeline drives correctly exports to that
pipeline (DDPMPipeline, DDIMPipeline, PNDMPipeline). Everything else - class-conditional models, DiTs,
latent models (with their autoencoder) and samplers that step in sigma (euler, heun) - exports to `FaicePipeline`: faice/pipeline.py, copied
into the folder as pipeline.py, which runs faice's own sampling loop:

    DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from faice.diffusion.samplers import build_scheduler
from faice.sampling import load_checkpoint_model

# the stock diffusers pipeline whose __call__ drives each sampler correctly for an unconditional UNet
PIPELINES = {
    "ddpm": "DDPMPipeline",
    "ddim": "DDIMPipeline",
    "pndm": "PNDMPipeline",
    "dpm-solver++": "DDPMPipeline",
}
CUSTOM_FILE = "pipeline"  # the module file diffusers loads from the folder (model_index.json _class_name)


def needs_faice_pipeline(model, cfg, sampler: str) -> bool:
    """True when no stock diffusers pipeline samples this model with this sampler as faice does."""
    return (
        bool(cfg.model.conditioning)
        or bool(cfg.latent.autoencoder)
        or type(model).__name__ != "UNet2DModel"
        or sampler not in PIPELINES
    )


def export_pipeline(
    checkpoint: str | Path, out: str | Path, sampler: str | None = None, use_ema: bool = True
) -> Path:
    """Write `out` so that `diffusers.DiffusionPipeline.from_pretrained(out)` samples the checkpoint's
    model (with trust_remote_code=True for a FaicePipeline export)."""
    import diffusers

    import faice.pipeline

    model, cfg, ckpt = load_checkpoint_model(checkpoint, use_ema=use_ema)
    if cfg.task == "text2image":
        return export_text2image(cfg, ckpt, Path(out))
    sampler = sampler or cfg.sample.sampler
    latent = bool(cfg.latent.autoencoder)
    clip = cfg.sample.clip_sample and not latent
    scheduler = build_scheduler(cfg.diffusion, sampler, clip, cfg.sample.karras_sigmas)
    out = Path(out)
    vae = None
    if latent:
        from faice.data.latents import autoencoder_folder, latent_scale
        from faice.models import load_model

        vae = load_model(autoencoder_folder(cfg.latent.autoencoder)[0])  # a fresh copy: its config changes
        vae.register_to_config(scaling_factor=latent_scale(cfg))
    if not needs_faice_pipeline(model, cfg, sampler):
        getattr(diffusers, PIPELINES[sampler])(unet=model, scheduler=scheduler).save_pretrained(out)
        return out
    pipeline = faice.pipeline.FaicePipeline(
        model, scheduler, vae=vae, attributes=list(cfg.model.conditioning)
    )
    pipeline.save_pretrained(out)
    shutil.copyfile(faice.pipeline.__file__, out / f"{CUSTOM_FILE}.py")
    index = json.loads((out / "model_index.json").read_text())
    index["_class_name"] = [CUSTOM_FILE, "FaicePipeline"]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def export_text2image(cfg, ckpt: Path, out: Path) -> Path:
    """A complete StableDiffusionPipeline folder: the SD folder with the fine-tuned UNet (a LoRA run's
    adapters fused into it; the adapters themselves also go to out/lora/ for load_lora_weights)."""
    from faice.text2image import LORA_FILE, pipeline_for

    pipe = pipeline_for(cfg, ckpt)
    lora = ckpt / "model" / LORA_FILE
    if lora.exists():
        pipe.fuse_lora()
        pipe.unload_lora_weights()
    pipe.save_pretrained(out)
    if lora.exists():
        (out / "lora").mkdir(exist_ok=True)
        shutil.copyfile(lora, out / "lora" / LORA_FILE)
    return out
