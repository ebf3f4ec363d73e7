"""Typed values: a YAML or command-line value coerced to a field's type (errors name the dotted key and the
valid choices), dataclass sections built from dicts, and the field table of `faice config docs`."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any, Literal

import yaml

from faice.config.schema import Config
from faice.errors import ConfigError

# ---------------------------------------------------------------------------- building from dicts


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type `tp` or raise ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if isinstance(value, bool) and value not in args:  # YAML 1.1 reads no/off/yes/on as booleans
            spelled = [a for a in args if isinstance(a, str) and yaml.safe_load(a) is value]
            value = spelled[0] if len(spelled) == 1 else value
        if value not in args:
            raise ConfigError(f"{key}: invalid choice {value!r}; valid choices: {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):
            if value.startswith("["):
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ConfigError(
                        f"{key}: cannot read {value!r} as a list; write it as [a, b, c]"
                    ) from None
            else:
                value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):  # nan would reach the optimizer, inf a schedule
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def build_section(cls: type, data: dict, prefix: str) -> Any:
    """An instance of the dataclass `cls` from `data`, every value coerced; errors name `prefix.key`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}"[:300])
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}; valid keys: {', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_section(tp, {} if value is None else value, f"{dotted}.")  # `model:` is empty
            continue
        kwargs[key] = _coerce(value, tp, dotted)
        choices = fields[key].metadata.get("choices")
        if choices is not None and kwargs[key] is not None and kwargs[key] not in choices():
            raise ConfigError(
                f"{dotted}: invalid choice {kwargs[key]!r}; valid choices: {', '.join(choices())}"
            )
    return cls(**kwargs)


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows (key, type, default, help) of every field, for `faice config docs`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ += f" Choices: {', '.join(f.metadata['choices']())}."
        rows.append((f"{prefix}{f.name}", _type_name(tp), repr(default), help_))
    return rows
