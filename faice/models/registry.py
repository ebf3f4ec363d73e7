"""The registry of model families (each family file registers its factories) and the helpers every family
shares: loading a diffusers folder, freezing parameters, counting them. It imports no family."""

from __future__ import annotations

from pathlib import Path

import torch

from faice.registry import Registry

MODELS: Registry = Registry("model")


def load_pretrained(path: str | Path, resolution: int, in_channels: int = 3) -> torch.nn.Module:
    """A diffusers model folder from local disk (no download), checked against the training data."""
    from faice.errors import ConfigError

    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model.pretrained: {path} is not a diffusers model folder (no config.json); point it at the "
            "folder holding config.json and the weights, e.g. <pipeline>/unet"
        )
    model = load_model(path)
    size, channels = model.config.get("sample_size"), model.config.get("in_channels")
    if channels != in_channels or (size is not None and size != resolution):
        raise ConfigError(
            f"model.pretrained: {path} is a {size} px, {channels}-channel model; the data are "
            f"{resolution} px, {in_channels}-channel (set data.resolution={size})"
        )
    return model


def _block(name: str) -> str:
    """'down_blocks.0.resnets.1.conv1.weight' -> 'down_blocks.0'; 'conv_in.weight' -> 'conv_in'."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


def freeze(model: torch.nn.Module, prefixes: list[str]) -> int:
    """Fix every parameter whose name starts with one of `prefixes`; returns how many tensors were fixed."""
    from faice.errors import ConfigError

    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            blocks = sorted({_block(n) for n in names})
            raise ConfigError(f"model.freeze: no parameters under {prefix!r}; blocks: {', '.join(blocks)}")
    fixed = 0
    for name, p in model.named_parameters():
        if any(name == pre or name.startswith(pre + ".") for pre in prefixes):
            p.requires_grad_(False)
            fixed += 1
    return fixed


def load_model(path: str | Path) -> torch.nn.Module:
    """Load a model folder written by `save_pretrained` (the class is read from its config.json)."""
    import json

    import diffusers

    class_name = json.loads((Path(path) / "config.json").read_text())["_class_name"]
    return getattr(diffusers, class_name).from_pretrained(path)


def count_parameters(model: torch.nn.Module) -> int:
    """The number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
