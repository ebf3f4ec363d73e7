"""Image tensors and arrays: [-1, 1] tensors -> uint8, PIL images, PNG files and grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


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
