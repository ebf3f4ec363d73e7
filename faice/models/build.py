"""`build_model`: a model family from the registry, or a pretrained folder. Importing this module imports
every family (faice.models.unet, faice.models.dit), so each has registered its presets."""

from __future__ import annotations

import torch

import faice.models.unet  # noqa: F401  (registers the UNet presets)
from faice.models.dit import no_builtin_label_dropout
from faice.models.registry import MODELS, freeze, load_pretrained


def build_model(cfg, resolution: int, in_channels: int = 3) -> torch.nn.Module:
    """The model of `cfg` (ModelConfig, presets resolved) at `resolution` px: freshly initialised, or the
    weights of `cfg.pretrained`; parameters under `cfg.freeze` prefixes get requires_grad False."""
    if getattr(cfg, "pretrained", None):
        model = no_builtin_label_dropout(load_pretrained(cfg.pretrained, resolution, in_channels))
    else:
        model = MODELS.get(cfg.name)(cfg, resolution, in_channels)
    freeze(model, getattr(cfg, "freeze", []) or [])
    return model
