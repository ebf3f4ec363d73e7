"""The searched parameters: parsing `space:` distributions against the config's field types, and their
Ray Tune form (`to_param_space`, imported lazily so loading a space never imports Ray)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from faice.config import (
    Config,
    ConfigError,
    _coerce,
    _type_name,
)
from faice.profiles import (
    as_mapping,
)
from tune.space.spec import KINDS, Param, SearchSpec, render_value


def parse_space(data: Any, tree: dict | None = None) -> list[Param]:
    """The searched `Param`s of a `space:` mapping, each checked against the config field it sets."""
    data = as_mapping(data, "space")
    if not data and ((tree or {}).get("variants") or (tree or {}).get("seeds")):
        return []
    if not data:
        raise ConfigError("space: no params; add one, e.g. `train.lr: {loguniform: [1.0e-4, 1.0e-3]}`")
    return [_param(str(key), dist) for key, dist in data.items()]


def _param(key: str, dist: Any) -> Param:
    """Parse `{kind: args}` of `space.<key>`, typed by the config field `key` names."""
    where = f"space.{key}"
    if not isinstance(dist, dict) or len(dist) != 1:
        raise ConfigError(
            f"{where}: expected one distribution like {{choice: [a, b]}}; valid choices: {', '.join(KINDS)}"
        )
    ((kind, args),) = dist.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown distribution {kind!r}; valid choices: {', '.join(KINDS)}")
    hint = _config_field(key, where)
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: {kind} needs a non-empty list of values, got {args!r}")
        return Param(key, kind, tuple(_coerce(v, hint, where) for v in args))
    _check_range_field(where, kind, key, hint)
    return Param(key, kind, _bounds(where, kind, args))


def _config_field(key: str, where: str) -> Any:
    """The annotated type of dotted config field `key` (e.g. `int | None`), or ConfigError at `where`."""
    hint: Any = Config
    for i, part in enumerate(key.split(".")):
        if not dataclasses.is_dataclass(hint):
            section = ".".join(key.split(".")[:i])
            raise ConfigError(f"{where}: unknown config key {key!r}; {section!r} is a field, not a section")
        hints = typing.get_type_hints(hint)
        if part not in hints:
            raise ConfigError(f"{where}: unknown config key {key!r}; valid keys: {', '.join(hints)}")
        hint = hints[part]
    if dataclasses.is_dataclass(hint):
        valid = ", ".join(f"{key}.{name}" for name in typing.get_type_hints(hint))
        raise ConfigError(f"{where}: {key!r} is a section, not a field; valid keys: {valid}")
    return hint


def _check_range_field(where: str, kind: str, key: str, hint: Any) -> None:
    """uniform/loguniform need a float field, randint an int field."""
    scalar = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        scalar = next(a for a in typing.get_args(hint) if a is not type(None))
    want = int if kind == "randint" else float
    if scalar is not want:
        better = "uniform or loguniform" if scalar is float else "randint" if scalar is int else "choice"
        field_ = "an int" if want is int else "a float"
        raise ConfigError(
            f"{where}: {kind} needs {field_} field but {key} is {_type_name(hint)}; use {better}"
        )


def _bounds(where: str, kind: str, args: Any) -> tuple:
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs [low, high], got {args!r}")
    low, high = (_coerce(a, int if kind == "randint" else float, where) for a in args)
    if low >= high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs 0 < low, got {low}")
    return (low, high)


# ---------------------------------------------------------------------------- Ray and humans


def to_param_space(spec: SearchSpec) -> dict[str, Any]:
    """Ray Tune param space `{dotted_key: domain}`; randint's high stays exclusive, as in Ray."""
    from ray import tune

    def domain(param: Param) -> Any:
        if param.kind in ("choice", "grid"):
            return (tune.choice if param.kind == "choice" else tune.grid_search)(list(param.args))
        return getattr(tune, param.kind)(*param.args)  # tune.uniform, tune.loguniform, tune.randint

    return {p.key: domain(p) for p in spec.space}


def describe_space(spec: SearchSpec) -> str:
    """A few lines: trials, base, scheduler, searcher, resources, then one line per param."""
    sched = spec.scheduler
    asha = (
        f" (grace {sched.grace_period}, reduction {sched.reduction_factor:g})" if sched.name == "asha" else ""
    )
    res = spec.trial
    extra = "".join(f", {v:g} {k}" for k, v in res.resources_per_worker.items())
    lines = [
        f"{spec.name}: {spec.num_trials} trials of {spec.max_steps()} steps on {Path(spec.base).name}, "
        f"{spec.mode} {spec.metric}",
        f"  scheduler {sched.name}{asha}; searcher {spec.searcher.name} (seed {spec.searcher.seed}); "
        f"time budget {spec.budget.time_budget_s or 'none'}",
        f"  trial: {res.num_workers} worker(s) x ({res.cpus_per_worker:g} CPU, "
        f"{res.gpus_per_worker:g} GPU{extra}), max_failures {res.max_failures}",
    ]
    width = max(len(k) for k in spec.keys)
    lines += [f"  {p.key:<{width}}  {p.kind} {render_value(list(p.args))}" for p in spec.space]
    return "\n".join(lines)
