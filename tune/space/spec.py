"""The resolved search: `SearchSpec` and its sections (budget, scheduler, searcher, evaluation pool), the
searched `Param`s, and how a trial's config is built from them (base + overrides + params)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from faice.config import (
    Config,
    ConfigError,
    load_config,
    opt,
)
from faice.profiles import (
    TrialResources,
)
from faice.tasks import load_checked

KINDS = ("choice", "grid", "uniform", "loguniform", "randint")


@dataclass
class Budget:
    num_samples: int = opt(1, "Trials; with grid params, repeats of the full grid.")
    max_steps: int | None = opt(None, "train.max_steps of every trial (null = the base config's).")
    time_budget_s: float | None = opt(None, "Time limit of the whole search in seconds (null = none).")


@dataclass
class SchedulerSpec:
    name: Literal["fifo", "asha"] = opt(
        "fifo", "fifo runs every trial to the end; asha stops bad ones early."
    )
    grace_period: int = opt(1, "ASHA: training steps a trial runs before it may be stopped.")
    reduction_factor: float = opt(2.0, "ASHA: 1/reduction_factor of the trials go on at each rung.")


@dataclass
class SearcherSpec:
    name: Literal["random", "grid", "optuna"] = opt("random", "How trials' params are chosen.")
    seed: int | None = opt(None, "Seed of the searcher (null = unseeded).")
    max_concurrent: int = opt(0, "Trials running at once (0 = as many as the cluster fits).")


@dataclass
class EvalPool:
    resource: str = opt("eval_slot", "Custom resource only evaluation nodes advertise; each eval takes 1.")
    cpus: float = opt(1.0, "CPUs per evaluation task.")
    gpus: float = opt(0.0, "GPUs per evaluation task.")
    max_attempts: int = opt(3, "Attempts per evaluation (a failed task or a lost eval node is retried).")
    keep: Literal["latest", "all"] = opt(
        "latest",
        "When evals fall behind: latest = only a trial's newest pending checkpoint waits; all = every one.",
    )
    rung_wait_s: float = opt(
        600.0,
        "ASHA on an evaluation metric: seconds a trial waits at each rung's checkpoint for its score, so "
        "ASHA decides before the trial trains on (0 = never wait: a fast trial may end before its rungs "
        "are scored, and ASHA then cannot stop it).",
    )
    fallback_cpus: float = opt(
        0.0,
        "With no `resource` in the cluster: >0 runs evals on this many CPUs of training nodes, 0 refuses.",
    )
    also_score_best: list[str] = opt(
        [],
        "Extractors that also score the best trial's last checkpoint at the end, e.g. [inception]; "
        "skipped with a note where not installed.",
    )
    also_score_overrides: list[str] = opt(
        [],
        "Config overrides of that extra scoring, e.g. [eval.reference_images=256] (Inception is slow on CPU).",
    )


@dataclass(frozen=True)
class Param:
    """One searched config key: `kind` in KINDS; `args` the values (choice, grid) or (low, high)."""

    key: str
    kind: str
    args: tuple

    @property
    def probes(self) -> tuple:
        """Values checked against the config: every choice/grid value, or both ends of the range."""
        if self.kind == "randint":
            return (self.args[0], self.args[1] - 1)
        return self.args


@dataclass
class SearchSpec:
    name: str
    base: str
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str = "loss"
    mode: Literal["min", "max"] = "min"
    budget: Budget = field(default_factory=Budget)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    searcher: SearcherSpec = field(default_factory=SearcherSpec)
    trial: TrialResources = field(default_factory=TrialResources)
    evaluation: EvalPool = field(default_factory=EvalPool)
    space: list[Param] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: str | None = None  # which of the file's `scales:` this spec is (tiny | paper); a label only
    seeds: list[int] = field(default_factory=list)  # train.seed grid: every configuration once per seed

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.space]

    @property
    def num_trials(self) -> int:
        """Trials the search runs: num_samples times the size of the grid."""
        return self.budget.num_samples * math.prod(len(p.args) for p in self.space if p.kind == "grid")

    def max_steps(self) -> int:
        """Training steps of the longest trial (ASHA's max_t)."""
        searched = [p for p in self.space if p.key == "train.max_steps"]
        if searched:
            return max(searched[0].probes)
        return self.budget.max_steps or load_config(self.base, self.override_list()).train.max_steps

    def override_list(self, params: Mapping[str, Any] | None = None) -> list[str]:
        """Dotted `key=value` overrides of a trial with sampled `params` (dotted keys of the space)."""
        params = dict(params or {})
        unknown = [k for k in params if k not in self.keys]
        if unknown:
            raise ConfigError(
                f"params: unknown search key {unknown[0]!r}; valid keys: {', '.join(self.keys)}"
            )
        pairs = {"log.group": self.name, **self.overrides}
        if self.budget.max_steps is not None:
            pairs["train.max_steps"] = self.budget.max_steps
        if VARIANT in params:  # a variant's overrides, then the other params over them
            pairs.update(self.variants[params.pop(VARIANT)])
        pairs.update(params)
        return [f"{key}={render_value(value)}" for key, value in pairs.items()]

    def config_for(self, params: Mapping[str, Any] | None = None) -> Config:
        """The trial's resolved config: base + overrides + budget.max_steps + `params`."""
        return load_checked(self.base, self.override_list(params))

    def trial_config(
        self, base_tree: dict, fixed: list[str], params: Mapping[str, Any], trial_id: str
    ) -> Config:
        """A trial's config as every runner builds it: the search's base tree (tune.search.prepare_search),
        the space's overrides and sampled `params`, the search's fixed overrides and the trial's run name."""
        from faice.config import from_tree

        sampled = {k: params[k] for k in self.keys if k in params}
        return from_tree(
            base_tree, self.override_list(sampled) + list(fixed) + [f"train.run_name={trial_id}"]
        )

    def probe_config(self) -> Config:
        """The config of the space's first probe values: what the trials have in common beyond the base
        (a space may, say, switch checkpoint evaluation on)."""
        return self.config_for({p.key: p.probes[0] for p in self.space})

    def to_dict(self) -> dict:
        """The resolved spec in the YAML format above (base as an absolute path)."""
        out = dataclasses.asdict(self)
        own = {VARIANT, SEED} if self.seeds else {VARIANT}
        out["space"] = {p.key: {p.kind: list(p.args)} for p in self.space if p.key not in own}
        picked = next((p.args for p in self.space if p.key == VARIANT), ())
        out["variants"] = {name: out["variants"][name] for name in picked}  # only the variants it runs
        for key in ("scale", "seeds"):
            if not out[key]:
                del out[key]
        return _plain(out)

    def dump(self, path: str | Path) -> None:
        """Write the resolved spec to `path`; `load_space(path)` reads it back equal."""
        header = f"# Resolved search space {self.name!r} (tune.space); load with tune.space.load_space.\n"
        Path(path).write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------- values


def _plain(value: Any) -> Any:
    """Lists, dicts and Python scalars only (numpy scalars from searchers become floats/ints)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def render_value(value: Any) -> str:
    """`value` as YAML text that faice.config.parse_overrides reads back unchanged."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=2**31).strip()
    return text.removesuffix("\n...").strip()


VARIANT = "variant"  # the search key of `variants:`: a grid over their names
SEED = "train.seed"  # the search key of `seeds:`: a grid over them
LINK = "best_of"  # `latent.autoencoder: {best_of: SEARCH}`: the best trial of another search
LINK_MARK = "best_of:"  # how an unresolved link reads in a config value until the launcher resolves it
