"""Machine profiles and the typed sections of a search file that the single-run job shares with the
search launcher: `TrialResources` (a Ray Train run's workers and resources), `parse_section`, and
`load_profile` (configs/profiles/NAME.yaml). Pure: no Ray, reachable from jobs/ and tune/ alike."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faice.config import CONFIG_DIR, _coerce, opt, read_mapping
from faice.errors import ConfigError


@dataclass
class TrialResources:
    num_workers: int = opt(1, "Ray Train workers (processes) of one trial.")
    cpus_per_worker: float = opt(1.0, "CPUs reserved per worker.")
    gpus_per_worker: float = opt(0.0, "GPUs reserved per worker.")
    resources_per_worker: dict[str, float] = opt({}, "Custom resources per worker, e.g. {train_slot: 1}.")
    max_failures: int = opt(
        0, "Restarts of a trial after a lost worker or machine, from its last checkpoint (-1 = unlimited)."
    )
    runner: Literal["auto", "ray-train", "tune"] = opt(
        "auto",
        "How a trial runs: ray-train = a Ray Train TorchTrainer (a controller and a worker group); tune = the "
        "faice loop inside the Tune trial actor itself (one worker; without Ray Train's ~7 helper processes "
        "per trial, see benchmarks/results/scale.md); auto = tune for one worker, ray-train for more.",
    )
    reuse_actors: bool = opt(
        True,
        "A trial actor that ended runs the next trial of the same resources: its imports (torch, diffusers, "
        "W&B), CUDA context and W&B service are kept, ~20 CPU-s per trial less (benchmarks/results/scale.md).",
    )


def runs_in_trial_actor(res: TrialResources) -> bool:
    """Whether a trial's faice loop runs in its Tune trial actor (one worker, no Ray Train run)."""
    if res.runner == "tune" and res.num_workers != 1:
        raise ConfigError(
            f"trial.runner: tune runs one worker inside the trial actor, but trial.num_workers is "
            f"{res.num_workers}; use runner ray-train (or auto)"
        )
    return res.runner == "tune" or (res.runner == "auto" and res.num_workers == 1)


def check_keys(data: Mapping, valid: Sequence[str], prefix: str) -> None:
    """Raise a ConfigError naming the first key of `data` not in `valid`, with the valid ones."""
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown search key {prefix + str(key)!r}; valid keys: {', '.join(valid)}")


def as_mapping(data: Any, key: str) -> dict:
    """`data` as a dict (None is empty); a ConfigError naming `key` otherwise."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping, got {data!r}")
    return data


def parse_section(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the dataclass `cls` from a mapping; unknown keys and wrong types name `prefix.key`."""
    data = as_mapping(data, prefix)
    hints = typing.get_type_hints(cls)
    check_keys(data, list(hints), f"{prefix}.")
    kwargs = {}
    for key, value in data.items():
        if typing.get_origin(hints[key]) is dict:
            items = as_mapping(value, f"{prefix}.{key}").items()
            kwargs[key] = {str(k): _coerce(v, float, f"{prefix}.{key}.{k}") for k, v in items}
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    return cls(**kwargs)


PROFILES_DIR = CONFIG_DIR / "profiles"
PROFILE_KEYS = ("config", "trial", "evaluation")


def profile_names() -> list[str]:
    """Names of the shipped machine profiles (configs/profiles/*.yaml)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str | Path) -> dict:
    """A machine profile: what differs between clusters (batch size, precision, workers and resources
    per trial, evaluation resources), by name (configs/profiles/NAME.yaml) or path."""
    path = Path(name)
    if not path.is_file():
        path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"--profile {name}: no such profile; valid profiles: {', '.join(profile_names())}")
    tree, _ = read_mapping(path, "profile", PROFILES_DIR)
    for key in tree:
        if key not in PROFILE_KEYS:
            raise ConfigError(
                f"profile {path.name}: unknown key {key!r}; valid keys: {', '.join(PROFILE_KEYS)}"
            )
    return tree
