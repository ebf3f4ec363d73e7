"""Loading a config: a file (or the defaults) plus dotted overrides, validated and resolved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faice.config.checks import resolve, validate
from faice.config.files import parse_overrides, read_tree, set_dotted
from faice.config.schema import Config
from faice.config.values import build_section


def from_dict(data: dict) -> Config:
    """Validate a nested dict into a Config (raises ConfigError naming the key)."""
    cfg = build_section(Config, data, "")
    validate(cfg)
    return cfg


def from_tree(tree: dict, overrides: Sequence[str] = ()) -> Config:
    """Apply dotted `overrides` to a raw tree (a copy), validate and resolve presets."""
    import copy

    tree = copy.deepcopy(tree)
    for key, value in parse_overrides(overrides):
        set_dotted(tree, key, value)
    return resolve(from_dict(tree))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load YAML `path` (or the defaults), apply dotted `overrides`, validate, resolve presets."""
    return from_tree(read_tree(path) if path is not None else {}, overrides)
