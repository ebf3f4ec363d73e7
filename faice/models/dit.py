"""Pixel-space DiT (diffusers DiTTransformer2DModel) built from a resolved ModelConfig.

The output has the input's channels (learn_sigma = false: the variance is the scheduler's fixed one),
so a DiT trains with the same losses as a UNet and never meets a channel mismatch. DiT's adaLN-Zero
needs a class label: an unconditional DiT has one class (always 0); a conditional one has faice's
2^k + 1 classes (faice.conditioning). diffusers' label embedding would also drop 10% of the labels on
its own in training; faice switches that off so `train.label_dropout` is the only label dropout.
"""

from __future__ import annotations

from diffusers import DiTTransformer2DModel

from faice.conditioning import num_classes
from faice.models.presets import DIT_PRESETS
from faice.models.registry import MODELS


def dit_kwargs(cfg, resolution: int, in_channels: int = 3) -> dict:
    """DiTTransformer2DModel keyword arguments of a DiT ModelConfig at `resolution`; ConfigError on a bad
    patch size."""
    from faice.errors import ConfigError

    if resolution % cfg.patch_size:
        raise ConfigError(f"model.patch_size: {cfg.patch_size} does not divide data.resolution={resolution}")
    if cfg.width % cfg.heads:
        raise ConfigError(f"model.width: {cfg.width} is not a multiple of model.heads={cfg.heads}")
    classes = num_classes(len(cfg.conditioning)) if cfg.conditioning else 1
    return dict(
        num_attention_heads=cfg.heads,
        attention_head_dim=cfg.width // cfg.heads,
        in_channels=in_channels,
        out_channels=in_channels,
        num_layers=cfg.depth,
        sample_size=resolution,
        patch_size=cfg.patch_size,
        num_embeds_ada_norm=classes,
        dropout=cfg.dropout,
    )


def no_builtin_label_dropout(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """`model` with diffusers' own label dropout switched off (faice drops labels in the loss); returns it."""
    for module in model.modules():
        if type(module).__name__ == "LabelEmbedding":
            module.dropout_prob = 0.0
    return model


def _dit(cfg, resolution: int, in_channels: int = 3) -> DiTTransformer2DModel:
    return no_builtin_label_dropout(DiTTransformer2DModel(**dit_kwargs(cfg, resolution, in_channels)))


for _name in DIT_PRESETS:
    MODELS.register(_name)(_dit)
