"""Training augmentations beyond the flip: crop (before the resize) and Gaussian blur.

Order per image: stored uint8 image -> flip -> crop (a window of the *stored* image) -> resize to the
training resolution -> blur. Cropping before resizing is what makes a crop do anything: a centre crop
taken after resizing to a square of the same size is a no-op (the original project's bug).
Random choices come from numpy generators seeded by (seed, epoch, reader, stream), like the flips, so a
resumed epoch sees the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    crop: str = "none"  # none | center | random
    crop_scale: float = 0.875  # side of the crop window / side of the stored image
    blur_sigma: float = 0.0  # 0 = no blur
    blur_kernel: int = 0  # odd size; 0 = 2 * ceil(3 sigma) + 1
    blur_prob: float = 0.5  # share of images blurred

    @classmethod
    def from_config(cls, data_cfg) -> Augment:
        return cls(
            data_cfg.crop, data_cfg.crop_scale, data_cfg.blur_sigma, data_cfg.blur_kernel, data_cfg.blur_prob
        )

    @property
    def blurs(self) -> bool:
        return self.blur_sigma > 0 and self.blur_prob > 0


def crop_size(stored: int, scale: float) -> int:
    """The side of a crop of `scale` of a `stored`-px image, at least 1 and at most `stored`."""
    return max(1, min(stored, round(stored * scale)))


def crop_offsets(n: int, stored: int, size: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) top-left corners (y, x) of `size`-pixel windows in `stored`-pixel images."""
    if mode == "center":
        return np.full((n, 2), (stored - size) // 2, np.int64)
    if mode == "random":
        return rng.integers(0, stored - size + 1, size=(n, 2))
    raise ValueError(f"unknown crop mode {mode!r}")


def crop(images: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, C, H, W) -> (B, C, size, size), image i from its corner offsets[i]."""
    return np.stack([im[:, y : y + size, x : x + size] for im, (y, x) in zip(images, offsets, strict=True)])


def gaussian_kernel1d(sigma: float, size: int = 0) -> torch.Tensor:
    """Normalised exp(-x^2 / (2 sigma^2)) on x = -(size//2)..size//2; size 0 = 2 * ceil(3 sigma) + 1."""
    size = size or 2 * math.ceil(3 * sigma) + 1
    if size % 2 == 0:
        raise ValueError(f"blur kernel size must be odd, got {size}")
    x = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def gaussian_blur(images: torch.Tensor, sigma: float, size: int = 0) -> torch.Tensor:
    """Separable Gaussian blur of float (B, C, H, W) with reflected borders (a constant image stays)."""
    k = gaussian_kernel1d(sigma, size).to(images)
    c, r = images.shape[1], k.numel() // 2
    x = F.pad(images, (r, r, r, r), mode="reflect" if r < min(images.shape[-2:]) else "replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
