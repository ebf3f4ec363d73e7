"""Pixel-space UNets (diffusers UNet2DModel) built from a resolved ModelConfig."""

from __future__ import annotations

import math
import warnings

from diffusers import UNet2DModel

from faice.conditioning import num_classes
from faice.models.presets import MODEL_PRESETS
from faice.models.registry import MODELS


def unet_levels(resolution: int, channel_mult: list[int], min_size: int = 4) -> list[int]:
    """The multipliers kept at `resolution`: levels whose feature map would fall below `min_size` px are
    dropped (the first level is always kept)."""
    max_levels = int(math.log2(max(1, resolution // min_size))) + 1
    return list(channel_mult[:max_levels])


def unet_kwargs(cfg, resolution: int, in_channels: int = 3) -> dict:
    """UNet2DModel constructor arguments for `cfg`; attention goes to levels whose size is listed."""
    mult = unet_levels(resolution, cfg.channel_mult, cfg.min_level_size)
    if len(mult) < len(cfg.channel_mult):
        warnings.warn(
            f"model.channel_mult: {len(cfg.channel_mult)} levels at {resolution} px, the last "
            f"{len(cfg.channel_mult) - len(mult)} dropped (below model.min_level_size={cfg.min_level_size} px)",
            stacklevel=2,
        )
    channels = [cfg.base_channels * m for m in mult]
    sizes = [resolution // 2**i for i in range(len(mult))]
    attn = [s in cfg.attention_resolutions for s in sizes]
    down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    up = ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    head_dim = cfg.attention_head_dim
    if head_dim is not None:  # at least one head at the narrowest attention level
        head_dim = min([head_dim] + [c for c, a in zip(channels, attn, strict=True) if a])
    return dict(
        sample_size=resolution,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=head_dim,
        downsample_type=cfg.resample,
        upsample_type=cfg.resample,
        resnet_time_scale_shift=cfg.time_embedding_norm,
        dropout=cfg.dropout,
        norm_num_groups=math.gcd(32, *channels),
        # class labels: every attribute combination + the null class of classifier-free guidance
        num_class_embeds=num_classes(len(cfg.conditioning)) if getattr(cfg, "conditioning", None) else None,
    )


def _unet(cfg, resolution: int, in_channels: int = 3) -> UNet2DModel:
    return UNet2DModel(**unet_kwargs(cfg, resolution, in_channels))


for _name in MODEL_PRESETS:
    if not _name.startswith("dit-"):
        MODELS.register(_name)(_unet)
