"""Sampling from models and checkpoints: image tensors -> PNGs and grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faice.conditioning import null_label, parse_attributes, sample_labels
from faice.config import Config, load_config
from faice.diffusion.samplers import build_scheduler, sample
from faice.models import load_model
from faice.train.checkpoint import resolve_checkpoint


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded, not truncated."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB PIL images."""
    return [Image.fromarray(a) for a in to_uint8(images)]


def make_grid(images: list[Image.Image], nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile equally sized images into a grid with `nrow` columns (default: as square as possible)."""
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    w, h = images[0].size
    rows = math.ceil(len(images) / nrow)
    grid = Image.new("RGB", (nrow * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, (pad + (i % nrow) * (w + pad), pad + (i // nrow) * (h + pad)))
    return grid


def upscale(image: Image.Image, min_side: int = 512) -> Image.Image:
    """Nearest-neighbour upscale so tiny grids are viewable."""
    factor = max(1, math.ceil(min_side / min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def generate(
    model: torch.nn.Module,
    cfg: Config,
    n: int,
    seed: int,
    batch_size: int = 64,
    labels: torch.Tensor | None = None,
    **overrides,
) -> torch.Tensor:
    """`n` images (n, C, H, W) in [-1, 1] with the sampler of cfg.sample (fields overridable by keyword).

    A conditional model (cfg.model.conditioning) samples `labels` (n,), by default drawn by
    `condition_labels` (cfg.sample.attributes fixed, the other attributes as in the training data)."""
    if cfg.task == "autoencoder":  # an autoencoder's "samples": reconstructions of held-out faces
        return reconstructions(model, cfg, n, batch_size)
    if cfg.task == "text2image":  # prompts: the held-out faces' captions
        return text_samples(model, cfg, n, seed, batch_size, overrides.get("num_inference_steps"))
    s = {
        k: getattr(cfg.sample, k)
        for k in ("sampler", "num_inference_steps", "eta", "clip_sample", "karras_sigmas", "guidance_scale")
    } | overrides
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
        out.append(
            sample(
                model,
                scheduler,
                (b, ch, res, res),
                s["num_inference_steps"],
                generator,
                s["eta"],
                clip=not latent,
                **extra,
            ).cpu()  # fmt: skip
        )
    model.train(was_training)
    images = torch.cat(out)
    return decode_latents(cfg, images, batch_size) if latent else images


def decode_latents(cfg: Config, latents: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Images in [-1, 1] of sampled (scaled) latents, through cfg.latent.autoencoder."""
    from faice.data.latents import latent_scale, load_autoencoder
    from faice.models.autoencoder import decode

    device = latents.device if latents.device.type != "cpu" else None
    ae = load_autoencoder(cfg.latent.autoencoder, device)
    scale = latent_scale(cfg)
    dev = next(ae.parameters()).device
    return torch.cat([
        decode(ae, latents[i : i + batch_size].to(dev) / scale).cpu() for i in range(0, len(latents), batch_size)
    ])  # fmt: skip


def heldout_prompts(cfg: Config, n: int) -> list[str]:
    """`n` prompts: text.prompts_file's lines, or the captions of the test split (the training split when
    there is none), repeated."""
    from faice.data.shards import read_captions_column, read_manifest

    if cfg.text.prompts_file:
        lines = [ln.strip() for ln in Path(cfg.text.prompts_file).read_text().splitlines() if ln.strip()]
        return [lines[i % len(lines)] for i in range(n)]
    split = "test" if "test" in read_manifest(cfg.data.path)["splits"] else cfg.data.split
    captions = [c for c in read_captions_column(cfg.data.path, split) if c] or ["a photo of a face"]
    return [captions[i % len(captions)] for i in range(n)]


def text_samples(
    model, cfg: Config, n: int, seed: int, batch_size: int = 64, steps: int | None = None
) -> torch.Tensor:
    """Images (n, 3, H, W) in [-1, 1] of the SD pipeline with the trained UNet, from held-out captions,
    with the folder's scheduler and classifier-free guidance sample.guidance_scale."""
    from faice.text2image import pipeline_for

    pipe = pipeline_for(cfg, model).to(next(model.parameters()).device)
    generator = torch.Generator().manual_seed(seed)
    prompts, out = heldout_prompts(cfg, n), []
    was_training = model.training
    model.eval()
    for i in range(0, n, batch_size):
        images = pipe(prompts[i : i + batch_size], num_inference_steps=steps or cfg.sample.num_inference_steps,
                      guidance_scale=cfg.sample.guidance_scale, generator=generator, height=cfg.data.resolution,
                      width=cfg.data.resolution, output_type="pt").images  # fmt: skip
        out.append(images.float().cpu() * 2 - 1)
    model.train(was_training)
    return torch.cat(out)


def heldout_images(cfg: Config, n: int) -> np.ndarray:
    """The first `n` uint8 images of the test split (the training split when there is none)."""
    from faice.data.shards import read_manifest
    from faice.metrics.reference import real_images

    split = "test" if "test" in read_manifest(cfg.data.path)["splits"] else cfg.data.split
    return real_images(cfg.data.path, split, cfg.data.resolution, n)


def reconstructions(model, cfg: Config, n: int, batch_size: int = 64) -> torch.Tensor:
    """The autoencoder's reconstructions (n, 3, H, W) in [-1, 1] of the first n held-out faces."""
    from faice.data.loader import to_model_images
    from faice.models.autoencoder import reconstruct

    device = next(model.parameters()).device
    images = heldout_images(cfg, n)
    was_training = model.training
    model.eval()
    out = [
        reconstruct(model, to_model_images(images[i : i + batch_size].transpose(0, 3, 1, 2), cfg.data.resolution).to(device)).cpu()
        for i in range(0, len(images), batch_size)
    ]  # fmt: skip
    model.train(was_training)
    return torch.cat(out)


def condition_labels(cfg: Config, n: int, seed: int, attributes: list[str] | None = None) -> torch.Tensor:
    """Class labels of `n` conditional samples: `attributes` (["Male=1"]) fixed, the rest drawn from the
    training split's attribute table (fair coins, with a warning, when the data are not on this machine)."""
    import warnings

    from faice.data.shards import read_attributes

    cond = cfg.model.conditioning
    fixed = parse_attributes(attributes if attributes is not None else cfg.sample.attributes, cond)
    try:
        table = read_attributes(cfg.data.path, cfg.data.split, cond)
    except (FileNotFoundError, ValueError, KeyError) as e:
        warnings.warn(
            f"attributes not given are fair coins: the training data cannot be read ({e})", stacklevel=2
        )
        table = None
    return sample_labels(cond, fixed, n, seed, table)


def load_checkpoint_model(ckpt: str | Path, use_ema: bool = True) -> tuple[torch.nn.Module, Config, Path]:
    """(model, its run config, checkpoint path); the EMA weights when asked for and present."""
    ckpt = resolve_checkpoint(ckpt)
    cfg = load_config(ckpt / "config.yaml")
    if cfg.task == "text2image":  # the SD folder's UNet with the run's adapters or weights
        from faice.text2image import build_unet
        from faice.train.checkpoint import load_weights

        model = build_unet(cfg)
        load_weights(model, ckpt / "model")
        return model, cfg, ckpt
    folder = ckpt / "ema" if use_ema and (ckpt / "ema").exists() else ckpt / "model"
    return load_model(folder), cfg, ckpt


def save_samples(
    images: torch.Tensor, out_dir: str | Path, prefix: str = "sample"
) -> tuple[list[Path], Path]:
    """Write each image as PNG plus grid.png; returns (image paths, grid path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pils = to_pil(images)
    paths = []
    for i, im in enumerate(pils):
        paths.append(out_dir / f"{prefix}-{i:04d}.png")
        im.save(paths[-1])
    grid = out_dir / "grid.png"
    upscale(make_grid(pils)).save(grid)
    return paths, grid


def images_stats(images: torch.Tensor) -> dict[str, float]:
    """Cheap health numbers of a sample batch: pixel mean/std and the spread across samples."""
    x = images.float()
    return {
        "sample_mean": float(x.mean()),
        "sample_std": float(x.std()),
        "sample_diversity": float(x.std(0).mean()),
        "sample_nan": float(np.isnan(x.numpy()).any()),
    }
