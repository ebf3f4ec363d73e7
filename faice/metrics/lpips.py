"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"),
VGG16 variant, in plain torch: no torchvision, no download.

d(x, y) = sum_l mean_hw || w_l * (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|) ||^2, where f_l are the VGG16
activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 (channel-normalised), and w_l the
learned non-negative channel weights of LPIPS v0.1. Inputs are images in [-1, 1].

Weights come from a local file or folder (`diffusion.lpips_path`, or $FAICE_LPIPS_PATH); every .pth,
.pt and .safetensors file in it is read and merged:
- VGG16 convolutions under `features.N.weight` / `features.N.bias` (torchvision's vgg16-397923af.pth)
- the LPIPS heads under `linL.model.1.weight` (the lpips package's weights/v0.1/vgg.pth).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# torchvision's vgg16 `features`: numbers are 3x3 conv widths (each followed by a ReLU), M = max-pool
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)
# LPIPS' input scaling layer: (x - shift) / scale maps [-1, 1] images to ImageNet-normalised ones
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
ENV = "FAICE_LPIPS_PATH"


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features` layout, untrained (LPIPS loads its weights)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """One 1x1 channel weighting, laid out as lpips saves it (`model.1.weight`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(channels, 1, 1, bias=False))


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each spatial position's feature vector scaled to unit length."""
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """The distance network; frozen (its weights never train), gradients flow to the inputs."""

    def __init__(self):
        super().__init__()
        self.features = vgg16_features()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", _Head(c))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:  # always in eval mode
        return super().train(False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distances (B,) between images x and y (B, 3, H, W) in [-1, 1]."""
        total = x.new_zeros(x.shape[0])
        for i, (fx, fy) in enumerate(zip(self.taps(x), self.taps(y), strict=True)):
            diff = (normalize_channels(fx) - normalize_channels(fy)).pow(2)
            total = total + getattr(self, f"lin{i}").model(diff).mean((1, 2, 3))
        return total


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".pth", ".pt", ".safetensors"))
        if path.is_dir()
        else [path]
    )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors.update(load_file(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            tensors.update(state.get("state_dict", state) if isinstance(state, dict) else {})
    return tensors


def load_lpips(path: str | Path | None = None) -> LPIPS:
    """The LPIPS network with the weights under `path` (default $FAICE_LPIPS_PATH); a ConfigError says
    what is missing and where to get it."""
    from faice.errors import ConfigError

    where = str(path or os.environ.get(ENV, ""))
    how = (
        "LPIPS needs local weights: torchvision's VGG16 (vgg16-397923af.pth) and the LPIPS v0.1 heads "
        "(weights/v0.1/vgg.pth of the `lpips` package) as files in one folder; set diffusion.lpips_path "
        f"or ${ENV} to it (faice downloads nothing at run time)"
    )
    if not where:
        raise ConfigError(f"diffusion.lpips_path: not set; {how}")
    if not Path(where).exists():
        raise ConfigError(f"diffusion.lpips_path: {where} does not exist; {how}")
    net = LPIPS()
    tensors = _read_tensors(Path(where))
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in tensors]
    if missing:
        raise ConfigError(
            f"diffusion.lpips_path: {where} lacks {len(missing)} of the {len(wanted)} LPIPS tensors "
            f"(e.g. {', '.join(missing[:3])}); {how}"
        )
    bad = [k for k in wanted if tensors[k].shape != wanted[k].shape]
    if bad:
        raise ConfigError(f"diffusion.lpips_path: {where}: wrong shapes for {', '.join(bad[:3])}; {how}")
    net.load_state_dict({k: tensors[k] for k in wanted})
    return net
