"""Config trees on disk and on the command line: YAML files, dotted overrides, flattening, and writing a
resolved config back out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from faice.config.schema import CONFIG_DIR, Config
from faice.errors import ConfigError


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for the dotted key 'a.b.c', creating levels as needed."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """`["train.lr=2e-4", "model.name=unet-adm"]` -> [(key, yaml value), ...]."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=2e-4)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed YAML of `path` ({} when empty); ConfigError when it is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        data = yaml.safe_load(path.read_text())
        return {} if data is None else data  # (an empty file; `0` or `false` is not a config)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {e.strerror or e}") from None


def read_mapping(path: str | Path, what: str, folder: Path) -> tuple[dict, Path]:
    """(YAML mapping, resolved path) of `path`, a bare name being looked up in `folder` too."""
    path = Path(path)
    if not path.exists() and (folder / path).exists():
        path = folder / path
    tree = read_yaml(path, what)
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {repr(tree)[:200]}")
    return tree, path


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_tree(path: str | Path) -> dict:
    """The raw (unresolved) YAML tree of a config file; a bare name is looked up under configs/."""
    tree, path = read_mapping(path, "config file", CONFIG_DIR)
    tree.setdefault("name", path.stem)
    return tree


def to_dict(cfg: Any) -> dict:
    """A config (or any dataclass) as nested plain dicts."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    """A config as YAML text, keys in schema order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write a config as YAML to `path`."""
    Path(path).write_text(dump_yaml(cfg))
