"""task=diffusion: a denoiser on pixels or on an autoencoder's latents, unconditional or class-conditional
(classifier-free guidance), sampled with any registered sampler and exported as a diffusers pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.tasks import applies
from faice.tasks.base import TASKS, Task

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch

# the stock diffusers pipeline whose __call__ drives each sampler correctly for an unconditional UNet
PIPELINES = {
    "ddpm": "DDPMPipeline",
    "ddim": "DDIMPipeline",
    "pndm": "PNDMPipeline",
    "dpm-solver++": "DDPMPipeline",
}
CUSTOM_FILE = "pipeline"  # the module file diffusers loads from the folder (model_index.json _class_name)
SAMPLE_KEYS = ("sampler", "num_inference_steps", "eta", "clip_sample", "karras_sigmas", "guidance_scale")


class DiffusionTask(Task):
    name = "diffusion"
    teaches = True
    ignored = applies.DENOISER_RULES
    unread = (
        applies.Unread(("autoencoder",), "autoencoder.* configures task=autoencoder runs; a latent run reads "
                       "its autoencoder from latent.autoencoder's checkpoint"),
        applies.Unread(("text",), "text.* configures task=text2image"),
        applies.Unread(("consistency",), "consistency.* configures task=consistency"),
    )  # fmt: skip

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        applies.check_karras(cfg)

    def build_model(self, cfg: Config) -> torch.nn.Module:
        from faice.models import build_model

        if cfg.latent.autoencoder:
            from faice.data.latents import latent_shape

            channels, side = latent_shape(cfg.latent.autoencoder, cfg.data.resolution)
            return build_model(cfg.model, side, channels)
        return build_model(cfg.model, cfg.data.resolution)

    def build_loss(self, cfg: Config, device: torch.device, ema):
        from faice.diffusion.loss import DiffusionLoss

        cond = cfg.model.conditioning
        return DiffusionLoss(cfg.diffusion, device, cfg.train.label_dropout if cond else 0.0, len(cond))

    def batch_labels(self, batch: dict, label_columns: list[int] | None, device: torch.device):
        from faice.conditioning import encode

        if label_columns is None:
            return None
        return encode(batch["attrs"][:, label_columns]).to(device)

    def generate(self, model, cfg: Config, n: int, seed: int, batch_size: int, labels, overrides: dict):
        import torch

        from faice.conditioning import null_label
        from faice.diffusion.samplers import build_scheduler, sample

        s = {k: getattr(cfg.sample, k) for k in SAMPLE_KEYS} | overrides
        latent = bool(cfg.latent.autoencoder)  # latents are not bounded: never clip them
        scheduler = build_scheduler(
            cfg.diffusion, s["sampler"], s["clip_sample"] and not latent, s["karras_sigmas"]
        )
        generator = torch.Generator().manual_seed(seed)
        cond = cfg.model.conditioning
        if cond and labels is None:
            labels = condition_labels(cfg, n, seed, overrides.get("attributes", cfg.sample.attributes))
        res, ch = model.config.sample_size if latent else cfg.data.resolution, model.config.in_channels
        was_training = model.training
        model.eval()
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            extra = {}
            if cond:
                extra = dict(
                    labels=labels[start : start + b],
                    guidance_scale=s["guidance_scale"],
                    null_label=null_label(len(cond)),
                )
            shape = (b, ch, res, res)
            steps = s["num_inference_steps"]
            out.append(
                sample(model, scheduler, shape, steps, generator, s["eta"], clip=not latent, **extra).cpu()
            )
        model.train(was_training)
        images = torch.cat(out)
        return decode_latents(cfg, images, batch_size) if latent else images

    def export(self, model, cfg: Config, ckpt: Path, out: Path, sampler: str | None) -> Path:
        import diffusers

        import faice.pipeline
        from faice.diffusion.samplers import build_scheduler

        sampler = sampler or cfg.sample.sampler
        latent = bool(cfg.latent.autoencoder)
        clip = cfg.sample.clip_sample and not latent
        scheduler = build_scheduler(cfg.diffusion, sampler, clip, cfg.sample.karras_sigmas)
        vae = None
        if latent:
            from faice.data.latents import autoencoder_folder, latent_scale
            from faice.models import load_model

            vae = load_model(
                autoencoder_folder(cfg.latent.autoencoder)[0]
            )  # a fresh copy: its config changes
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


def needs_faice_pipeline(model, cfg: Config, sampler: str) -> bool:
    """True when no stock diffusers pipeline samples this model with this sampler as faice does."""
    return (
        bool(cfg.model.conditioning)
        or bool(cfg.latent.autoencoder)
        or type(model).__name__ != "UNet2DModel"
        or sampler not in PIPELINES
    )


def decode_latents(cfg: Config, latents: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Images in [-1, 1] of sampled (scaled) latents, through cfg.latent.autoencoder."""
    import torch

    from faice.data.latents import latent_scale, load_autoencoder
    from faice.models.autoencoder import decode

    device = latents.device if latents.device.type != "cpu" else None
    ae = load_autoencoder(cfg.latent.autoencoder, device)
    scale = latent_scale(cfg)
    dev = next(ae.parameters()).device
    return torch.cat([
        decode(ae, latents[i : i + batch_size].to(dev) / scale).cpu() for i in range(0, len(latents), batch_size)
    ])  # fmt: skip


def condition_labels(cfg: Config, n: int, seed: int, attributes: list[str] | None = None) -> torch.Tensor:
    """Class labels of `n` conditional samples: `attributes` (["Male=1"]) fixed, the rest drawn from the
    training split's attribute table (fair coins, with a warning, when the data are not on this machine)."""
    import warnings

    from faice.conditioning import parse_attributes, sample_labels
    from faice.data.shards import read_attributes

    cond = cfg.model.conditioning
    fixed = parse_attributes(attributes if attributes is not None else cfg.sample.attributes, cond)
    try:
        table = read_attributes(cfg.data.path, cfg.data.split, cond)
    except (FileNotFoundError, ValueError, KeyError) as e:
        warnings.warn(
            f"attributes not given are fair coins: the training data cannot be read ({e})", stacklevel=3
        )
        table = None
    return sample_labels(cond, fixed, n, seed, table)


TASKS.register(DiffusionTask.name)(DiffusionTask())
