"""Search spaces: a YAML file saying which config keys a Ray Tune search varies, how, on what budget.

Format (only `base` and `space` are required; defaults in brackets)::

    # header comment: the question this search answers
    name: tiny-lr            # search name [file stem]; also the W&B group (log.group) of its trials
    base: demo.yaml          # base config: a path (cwd, then the space's folder) or a file name in configs/
    overrides:               # fixed dotted config overrides, applied to the base for every trial [{}]
      train.checkpoint_every: 100
    metric: loss             # metric the trials report ["loss"]; e.g. fid[faice-tiny] (ASHA on FID)
    mode: min                # min | max ["min"]
    budget:
      num_samples: 4         # trials; with grid params, repeats of the full grid [1]
      max_steps: 300         # train.max_steps of every trial [null = the base config's]
      time_budget_s: null    # time limit of the whole search in seconds [null = none]
    scheduler:
      name: asha             # fifo | asha ["fifo"]
      grace_period: 100      # asha: training steps before a trial may be stopped (time_attr `step`) [1]
      reduction_factor: 2    # asha: 1/reduction_factor of the trials go on at each rung [2]
    searcher:
      name: random           # random | grid | optuna ["random"]
      seed: 0                # [null = unseeded]
      max_concurrent: 0      # trials at once [0 = as many as fit]
    trial:                   # resources of ONE trial (a Ray Train run)
      num_workers: 1         # [1]
      cpus_per_worker: 1     # [1]
      gpus_per_worker: 0     # [0]
      resources_per_worker: {}  # custom resources, e.g. {train_slot: 1} [{}]
      max_failures: 3        # Ray Train worker-failure restarts per trial, -1 = unlimited [0]
    evaluation:              # the evaluation pool, used when the trials' eval.num_samples > 0
      resource: eval_slot    # custom resource only evaluation nodes advertise ["eval_slot"]
      cpus: 1                # CPUs per evaluation task [1]
      gpus: 0                # GPUs per evaluation task [0]
      max_attempts: 3        # a failed evaluation is retried [3]
      keep: latest           # latest | all: evals that fall behind keep only a trial's newest [latest]
      fallback_cpus: 0       # no eval nodes: >0 = evaluate on training nodes' CPUs, 0 = refuse [0]
      also_score_best: []    # extractors that also score the best trial at the end, e.g. [inception] [[]]
      also_score_overrides: []  # e.g. [eval.reference_images=256] for that scoring [[]]
    space:                   # dotted config key -> exactly one distribution
      train.lr: {loguniform: [1.0e-4, 3.0e-3]}   # float field, 0 < low < high
      train.ema_decay: {uniform: [0.99, 0.999]}  # float field, low < high
      train.seed: {randint: [0, 100]}            # int field, low <= x < high (Ray's exclusive upper bound)
      model.name: {choice: [unet-tiny, debug]}   # one value sampled per trial
      diffusion.beta_schedule: {grid: [linear, cosine]}  # every value, num_samples times each

Searchers: `random` and `grid` both run Ray's variant generator (grid params crossed, the others
sampled); `grid` also requires every param to be a grid, so the search is exhaustive. `optuna`
(`pip install optuna`) takes no grid params.

`load_space(path, overrides)` overrides set keys of the search file (`budget.num_samples=8`,
`scheduler.name=fifo`, `space.train.lr={choice: [1.0e-3]}`) or, with the prefix `config.`, add fixed
config overrides after the file's own (`config.train.batch_size=16`).

A trial's config is base + `log.group=<name>` + overrides + `train.max_steps=<budget.max_steps>` + its
params. All of it is checked against faice.config before Ray is imported: every choice/grid value and
both bounds of each range are applied to the base config, so a typo fails here, not in trial 7 of 9.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# faice.config's typed value conversion, reused so that configs and search spaces fail alike.
from faice.config import (
    Config,
    ConfigError,
    _coerce,
    _type_name,
    flatten,
    load_config,
    opt,
    parse_overrides,
    read_mapping,
)
from faice.profiles import (  # noqa: E402, F401  (re-exported for tune.search and the tests)
    PROFILES_DIR,
    TrialResources,
    as_mapping,
    check_keys,
    load_profile,
    parse_section,
    profile_names,
)

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
MAX_COMBINATIONS = 256  # above this many probe combinations only each param alone is checked


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
        return load_config(self.base, self.override_list(params))

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


# ---------------------------------------------------------------------------- parsing


def load_space(
    path: str | Path, overrides: Sequence[str] = (), profile: str | Path | None = None
) -> SearchSpec:
    """Read, override and validate a search-space YAML (a path, or a file name in tune/spaces/).

    The scale (`scale=tiny` among `overrides`, else the file's `scale:`) is merged in first, then a
    `profile` (configs/profiles/), then `overrides` from the command line, which win."""
    tree, path = read_mapping(path, "search space", SPACES_DIR)
    overrides = list(overrides)
    chosen = [value for key, value in parse_overrides(overrides) if key == "scale"]
    apply_scale(tree, str(chosen[-1]) if chosen else None)
    overrides = [o for o in overrides if o.partition("=")[0].strip() != "scale"]
    if profile:
        apply_profile(tree, load_profile(profile))
    _apply_overrides(tree, overrides)
    return from_dict(tree, default_name=path.stem, folder=path.resolve().parent)


SCALE_KEYS = ("extends", "base", "overrides", "metric", "mode", "budget", "scheduler", "searcher", "trial",
              "evaluation", "space", "variants", "seeds")  # fmt: skip
"""What a scale may set; sections are merged key by key into the file's own."""
SCALES_DIR = Path(__file__).resolve().parent / "scales"


def scale_names() -> list[str]:
    return sorted(p.stem for p in SCALES_DIR.glob("*.yaml"))


def apply_scale(tree: dict, scale: str | None) -> None:
    """Merge `scales.<scale>` (default: the file's `scale:`, else its first scale) into the search tree.

    One space, several sizes: `tiny` (synthetic faces on a CPU, minutes) and `paper` (the original's 128 px
    CelebA-HQ settings on GPUs) differ only in what their `scales:` entries set. An entry may `extend` a
    shared scale (tune/scales/NAME.yaml: base config, evaluation size, resources); precedence is that file,
    then the space's own top-level keys, then the entry's keys."""
    scales = tree.pop("scales", None)
    if scales is None:
        if scale is not None and tree.get("scale") != scale:
            raise ConfigError(f"scale: {scale!r} asked for, but this space has no `scales:` section")
        return
    scales = as_mapping(scales, "scales")
    if not scales:
        raise ConfigError("scales: empty; give at least one scale, e.g. `tiny: {extends: tiny}`")
    chosen = scale or tree.get("scale") or next(iter(scales))
    if chosen not in scales:
        raise ConfigError(f"scale: unknown scale {chosen!r}; valid choices: {', '.join(map(str, scales))}")
    entry = dict(as_mapping(scales[chosen], f"scales.{chosen}"))
    check_keys(entry, SCALE_KEYS, f"scales.{chosen}.")
    merged: dict = {}
    if "extends" in entry:
        name = _coerce(entry.pop("extends"), str, f"scales.{chosen}.extends")
        path = SCALES_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"scales.{chosen}.extends: no scale {name!r}; valid choices: {', '.join(scale_names())}"
            )
        shared, _ = read_mapping(path, "scale", SCALES_DIR)
        check_keys(shared, SCALE_KEYS[1:], f"{path.name}: ")
        _merge(merged, shared)
    _merge(merged, tree)
    _merge(merged, entry)
    tree.clear()
    tree.update(merged, scale=chosen)


def _merge(dst: dict, src: dict) -> None:
    """Merge a search tree `src` into `dst`: overrides and each variant key by key (dotted), the other
    sections (budget, trial, space, ...) key by key, plain values replaced."""
    for key, value in src.items():
        if key == "overrides":
            dst[key] = {**flatten(as_mapping(dst.get(key), key)), **flatten(as_mapping(value, key))}
        elif key == "variants":
            own, new = as_mapping(dst.get(key), key), as_mapping(value, key)
            dst[key] = {n: {**flatten(as_mapping(own.get(n), f"variants.{n}")), **flatten(as_mapping(v, n))}
                        for n, v in {**own, **new}.items()}  # fmt: skip
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            dst[key] = {**dst[key], **value}
        else:
            dst[key] = value


def _parse_seeds(data: Any) -> list[int]:
    """`seeds: 3` -> [0, 1, 2]; `seeds: [0, 7]` as given; absent -> [] (the config's train.seed)."""
    if data is None:
        return []
    if isinstance(data, int) and not isinstance(data, bool):
        if data < 1:
            raise ConfigError(f"seeds: must be >= 1 (or a list of seeds), got {data}")
        return list(range(data))
    if not isinstance(data, list) or not data:
        raise ConfigError(f"seeds: expected a count or a non-empty list of ints, got {data!r}")
    seeds = [_coerce(v, int, "seeds") for v in data]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: repeated seed in {seeds}")
    return seeds


def apply_profile(tree: dict, profile: dict) -> None:
    """Merge a profile into a search tree: its config keys over the space's fixed overrides, its trial and
    evaluation keys over the space's. The space's searched params still vary on top of it."""
    if profile.get("config"):
        overrides = flatten(as_mapping(tree.get("overrides"), "overrides"))
        tree["overrides"] = {**overrides, **flatten(as_mapping(profile["config"], "profile config"))}
    for key in ("trial", "evaluation"):
        if profile.get(key):
            tree[key] = {**as_mapping(tree.get(key), key), **as_mapping(profile[key], f"profile {key}")}


def _apply_overrides(tree: dict, overrides: Sequence[str]) -> None:
    """Set dotted search keys in `tree`; `config.X` goes to overrides, `space.`/`overrides.` keep dots."""
    for key, value in parse_overrides(overrides):
        head, _, rest = key.partition(".")
        head = "overrides" if head == "config" and rest else head
        parts = [head, rest] if head in ("overrides", "space") and rest else key.split(".")
        node = tree
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part!r} is not a section")
        node[parts[-1]] = value


_SECTIONS = {
    "budget": Budget,
    "scheduler": SchedulerSpec,
    "searcher": SearcherSpec,
    "trial": TrialResources,
    "evaluation": EvalPool,
}
TOP_KEYS = ("name", "scale", "scales", "seeds", "base", "overrides", "metric", "mode", *_SECTIONS, "variants",
            "space")  # fmt: skip
VARIANT = "variant"  # the search key of `variants:`: a grid over their names
SEED = "train.seed"  # the search key of `seeds:`: a grid over them
LINK = "best_of"  # `latent.autoencoder: {best_of: SEARCH}`: the best trial of another search
LINK_MARK = "best_of:"  # how an unresolved link reads in a config value until the launcher resolves it


def from_dict(tree: dict, default_name: str = "search", folder: str | Path | None = None) -> SearchSpec:
    """Parse and validate a search-space mapping; a relative `base` is also looked for in `folder`."""
    check_keys(tree, TOP_KEYS, "")
    if "scales" in tree:
        tree = dict(tree)
        apply_scale(tree, None)
    spec = SearchSpec(
        name=_coerce(tree.get("name", default_name), str, "name"),
        base=_find_base(tree.get("base"), folder),
        overrides=flatten(as_mapping(tree.get("overrides"), "overrides")),
        metric=_coerce(tree.get("metric", "loss"), str, "metric"),
        mode=_coerce(tree.get("mode", "min"), Literal["min", "max"], "mode"),
        variants=_parse_variants(tree.get("variants")),
        space=_parse_space({k: v for k, v in (tree.get("space") or {}).items() if k != VARIANT}, tree),
        scale=None if tree.get("scale") is None else _coerce(tree["scale"], str, "scale"),
        seeds=_parse_seeds(tree.get("seeds")),
        **{key: parse_section(cls, tree.get(key), key) for key, cls in _SECTIONS.items()},
    )
    spec.overrides = _mark_links(spec.overrides)
    if spec.variants:
        spec.space.append(
            Param(VARIANT, "grid", _variant_names(spec.variants, (tree.get("space") or {}).get(VARIANT)))
        )
    if spec.seeds:
        if SEED in spec.keys or SEED in spec.overrides:
            where = "space" if SEED in spec.keys else "overrides"
            raise ConfigError(f"seeds: conflicts with {where}.{SEED}; set the seeds in one place")
        spec.space.append(Param(SEED, "grid", tuple(spec.seeds)))
    _validate(spec)
    return spec


def _find_base(base: Any, folder: str | Path | None) -> str:
    """Absolute path of the base config: as given (cwd), in the space's `folder`, or in configs/."""
    from faice.config import CONFIG_DIR

    if base is None:
        raise ConfigError(
            "base: missing; the base config, a path or a file name in configs/ (e.g. demo.yaml)"
        )
    base = _coerce(base, str, "base")
    folders = [Path.cwd()] + ([Path(folder)] if folder is not None else []) + [CONFIG_DIR]
    for candidate in [folder_ / base for folder_ in folders]:
        if candidate.is_file():
            return str(candidate.resolve())
    raise ConfigError(f"base: config file {base!r} not found in {', '.join(map(str, folders))}")


def _parse_variants(data: Any) -> dict[str, dict[str, Any]]:
    """`variants: {name: {dotted.key: value}}` -> {name: flat overrides}: whole configurations to compare
    (e.g. pixel UNet vs latent DiT), searched as a grid over the names."""
    variants = as_mapping(data, "variants")
    out = {}
    for name, overrides in variants.items():
        if not isinstance(overrides, dict):
            raise ConfigError(f"variants.{name}: expected a mapping of config overrides, got {overrides!r}")
        out[str(name)] = _mark_links(flatten(overrides))
    return out


def _variant_names(variants: dict, chosen: Any) -> tuple[str, ...]:
    """All variants, or the ones `space.variant: {grid: [a, b]}` picks (e.g. from the command line)."""
    if chosen is None:
        return tuple(variants)
    if not isinstance(chosen, dict) or list(chosen) != ["grid"] or not isinstance(chosen["grid"], list):
        raise ConfigError(f"space.variant: expected {{grid: [names]}} picking variants, got {chosen!r}")
    for name in chosen["grid"]:
        if name not in variants:
            raise ConfigError(
                f"space.variant: unknown variant {name!r}; valid choices: {', '.join(variants)}"
            )
    return tuple(chosen["grid"])


def _mark_links(overrides: dict[str, Any]) -> dict[str, Any]:
    """`key.best_of: S` (a flattened `key: {best_of: S}`) -> `key: "best_of:S"`, resolved at launch."""
    out = {}
    for key, value in overrides.items():
        if key.endswith("." + LINK):
            out[key.removesuffix("." + LINK)] = f"{LINK_MARK}{value}"
        else:
            out[key] = value
    return out


def links(spec: SearchSpec) -> list[tuple[str, str]]:
    """(config key, search name) of every `{best_of: SEARCH}` in the overrides and variants."""
    found = []
    for overrides in (spec.overrides, *spec.variants.values()):
        for key, value in overrides.items():
            if isinstance(value, str) and value.startswith(LINK_MARK):
                found.append((key, value.removeprefix(LINK_MARK)))
    return sorted(set(found))


def resolve_links(spec: SearchSpec, storage: str | Path) -> dict[str, dict]:
    """Replace every `{best_of: SEARCH}` by the run folder of SEARCH's best trial under `storage` (by its
    own metric and mode); returns what was chosen, per search, for the record (links.json)."""
    from faice.results import collect, load_search, rank

    chosen: dict[str, dict] = {}
    for key, name in links(spec):
        folder = Path(storage) / name
        if not (folder / "search.yaml").is_file():
            raise ConfigError(
                f"{key}: {{best_of: {name}}}: no search {name!r} under {storage}; run it first "
                f"(python -m tune.search --space {name}.yaml --storage {storage})"
            )
        other = load_search(folder)
        metric, mode = other.get("metric") or "loss", other.get("mode") or "min"
        ranked = [r for r in rank(collect(folder), mode) if r.best is not None]
        if not ranked:
            raise ConfigError(f"{key}: {{best_of: {name}}}: search {name} has no trial with {metric} yet")
        best = ranked[0]
        chosen[name] = {"key": key, "trial": best.trial_id, "run": str(folder / "runs" / best.trial_id),
                        "metric": metric, "value": best.best, "step": best.best_step}  # fmt: skip
    for overrides in (spec.overrides, *spec.variants.values()):
        for key, value in overrides.items():
            if isinstance(value, str) and value.startswith(LINK_MARK):
                overrides[key] = chosen[value.removeprefix(LINK_MARK)]["run"]
    return chosen


def _parse_space(data: Any, tree: dict | None = None) -> list[Param]:
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


# ---------------------------------------------------------------------------- validation


def _validate(spec: SearchSpec) -> None:
    """Ranges, searcher/space fit, conflicts, then every value against the config (no Ray)."""
    _check_numbers(spec)
    _check_conflicts(spec)
    _check_searcher(spec)
    _check_against_config(spec)
    _check_eval_metric(spec)
    grace, steps = spec.scheduler.grace_period, spec.max_steps()
    if spec.scheduler.name == "asha" and grace > steps:
        raise ConfigError(f"scheduler.grace_period: {grace} exceeds the trials' {steps} steps")


def _check_numbers(spec: SearchSpec) -> None:
    if not spec.metric:
        raise ConfigError("metric: must not be empty")
    b, s, t = spec.budget, spec.scheduler, spec.trial
    rules = [  # key, value (None = not set), operator, bound
        ("budget.num_samples", b.num_samples, ">=", 1),
        ("budget.max_steps", b.max_steps, ">=", 1),
        ("budget.time_budget_s", b.time_budget_s, ">", 0),
        ("scheduler.grace_period", s.grace_period, ">=", 1),
        ("scheduler.reduction_factor", s.reduction_factor, ">", 1),
        ("searcher.max_concurrent", spec.searcher.max_concurrent, ">=", 0),
        ("trial.num_workers", t.num_workers, ">=", 1),
        ("trial.cpus_per_worker", t.cpus_per_worker, ">=", 0),
        ("trial.gpus_per_worker", t.gpus_per_worker, ">=", 0),
        ("trial.max_failures", t.max_failures, ">=", -1),
        *((f"trial.resources_per_worker.{k}", v, ">=", 0) for k, v in t.resources_per_worker.items()),
    ]
    for key, value, op, bound in rules:
        if value is not None and not (value > bound if op == ">" else value >= bound):
            raise ConfigError(f"{key}: must be {op} {bound}, got {value}")


def _check_conflicts(spec: SearchSpec) -> None:
    """A key is fixed in one place only: overrides, budget.max_steps or space."""
    for param in spec.space:
        if param.key in spec.overrides:
            raise ConfigError(f"space.{param.key}: also fixed in overrides; remove one")
    if spec.budget.max_steps is None:
        return
    for section, keys in (("overrides", spec.overrides), ("space", spec.keys)):
        if "train.max_steps" in keys:
            raise ConfigError(f"budget.max_steps: conflicts with {section}.train.max_steps; set one")


def _check_searcher(spec: SearchSpec) -> None:
    grids = [p.key for p in spec.space if p.kind == "grid"]
    others = [p.key for p in spec.space if p.kind != "grid"]
    if spec.searcher.name == "grid" and others:
        raise ConfigError(f"searcher.name: grid needs every param to be a grid; space.{others[0]} is not")
    if spec.searcher.name == "optuna":
        if grids:
            raise ConfigError(f"searcher.name: optuna cannot search grid param space.{grids[0]}; use choice")
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError(
                "searcher.name: optuna is not installed; pip install optuna (or use random)"
            ) from None


def _check_against_config(spec: SearchSpec) -> None:
    """Load the base, the fixed overrides, each probe value alone, then probe combinations together."""
    try:
        load_config(spec.base)
    except ConfigError as e:
        raise ConfigError(f"base: {spec.base} is invalid: {e}") from None
    try:
        spec.config_for()
    except ConfigError as e:
        raise _rewrap(e, "overrides", list(spec.overrides)) from None
    for param in spec.space:
        for value in param.probes:
            try:
                spec.config_for({param.key: value})
            except ConfigError as e:
                raise _rewrap(e, "space", [param.key], f"space.{param.key}={render_value(value)}") from None
    combos = list(itertools.product(*(p.probes for p in spec.space)))
    for combo in combos if len(combos) <= MAX_COMBINATIONS else combos[:1]:
        params = dict(zip(spec.keys, combo, strict=True))
        try:
            spec.config_for(params)
        except ConfigError as e:
            together = ", ".join(f"{k}={render_value(v)}" for k, v in params.items())
            raise ConfigError(f"space: {together} together are invalid: {e}") from None


def _check_eval_metric(spec: SearchSpec) -> None:
    """`metric: fid[faice-tiny]` needs checkpoint evaluation on, with that extractor."""
    from faice.evaluate import is_eval_metric

    if not is_eval_metric(spec.metric):
        return
    cfg = spec.probe_config()  # the space may switch evaluation on
    extractor = spec.metric[spec.metric.index("[") + 1 : -1]
    if not cfg.eval.num_samples:
        raise ConfigError(
            f"metric: {spec.metric} comes from checkpoint evaluation, which is off; set overrides.eval.num_samples"
        )
    if extractor == "pixels" and cfg.task == "autoencoder":  # psnr[pixels], ssim[pixels]: no extractor
        return
    if extractor != cfg.eval.extractor:
        raise ConfigError(
            f"metric: {spec.metric} needs eval.extractor={extractor}, but the trials use {cfg.eval.extractor}"
        )


def _rewrap(error: ConfigError, section: str, keys: list[str], fallback: str | None = None) -> ConfigError:
    """Say which search key an error of faice.config comes from: `model.name: x` -> `space.model.name: x`."""
    message = str(error)
    for key in keys:
        if message.startswith(f"{key}: "):
            return ConfigError(f"{section}.{message}")
        if repr(key) in message:
            return ConfigError(f"{section}.{key}: {message}")
    return ConfigError(f"{fallback or section}: {message}")


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
