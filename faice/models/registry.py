"""The registry of model families; each family file registers its factories."""

from __future__ import annotations

from pathlib import Path

import torch

from faice.registry import Registry

MODELS: Registry = Registry("model")


def build_model(cfg, resolution: int, in_channels: int = 3) -> torch.nn.Module:
    """A freshly initialised model for `cfg` (ModelConfig, presets resolved) at `resolution` px."""
    import faice.models.unet  # noqa: F401  (registers the UNet presets)

    return MODELS.get(cfg.name)(cfg, resolution, in_channels)


def load_model(path: str | Path) -> torch.nn.Module:
    """Load a model folder written by `save_pretrained` (the class is read from its config.json)."""
    import json

    import diffusers

    class_name = json.loads((Path(path) / "config.json").read_text())["_class_name"]
    return getattr(diffusers, class_name).from_pretrained(path)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
