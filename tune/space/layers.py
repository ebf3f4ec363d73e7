"""Reading a search file into a `SearchSpec`, layer by layer: the file, its scale (tune/scales/), a
machine profile (configs/profiles/), command-line overrides, its variants and seeds, then validation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from faice.config import (
    ConfigError,
    _coerce,
    flatten,
    parse_overrides,
    read_mapping,
)
from faice.profiles import (
    TrialResources,
    as_mapping,
    check_keys,
    load_profile,
    parse_section,
)
from tune.space.checks import validate
from tune.space.links import mark_links
from tune.space.params import parse_space
from tune.space.spec import SEED, VARIANT, Budget, EvalPool, Param, SchedulerSpec, SearcherSpec, SearchSpec

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"


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
SCALES_DIR = Path(__file__).resolve().parent.parent / "scales"


def scale_names() -> list[str]:
    """Names of the shipped scales (tune/scales/*.yaml)."""
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


def from_dict(tree: dict, default_name: str = "search", folder: str | Path | None = None) -> SearchSpec:
    """Parse and validate a search-space mapping; a relative `base` is also looked for in `folder`."""
    check_keys(tree, TOP_KEYS, "")
    if "scales" in tree:
        tree = dict(tree)
        apply_scale(tree, None)
    spec = SearchSpec(
        name=_search_name(tree.get("name", default_name)),
        base=_find_base(tree.get("base"), folder),
        overrides=flatten(as_mapping(tree.get("overrides"), "overrides")),
        metric=_coerce(tree.get("metric", "loss"), str, "metric"),
        mode=_coerce(tree.get("mode", "min"), Literal["min", "max"], "mode"),
        variants=_parse_variants(tree.get("variants")),
        space=parse_space(
            {k: v for k, v in as_mapping(tree.get("space"), "space").items() if k != VARIANT}, tree
        ),
        scale=None if tree.get("scale") is None else _coerce(tree["scale"], str, "scale"),
        seeds=_parse_seeds(tree.get("seeds")),
        **{key: parse_section(cls, tree.get(key), key) for key, cls in _SECTIONS.items()},
    )
    spec.overrides = mark_links(spec.overrides)
    if spec.variants:
        spec.space.append(
            Param(VARIANT, "grid", _variant_names(spec.variants, (tree.get("space") or {}).get(VARIANT)))
        )
    if spec.seeds:
        if SEED in spec.keys or SEED in spec.overrides:
            where = "space" if SEED in spec.keys else "overrides"
            raise ConfigError(f"seeds: conflicts with {where}.{SEED}; set the seeds in one place")
        spec.space.append(Param(SEED, "grid", tuple(spec.seeds)))
    validate(spec)
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
        out[str(name)] = mark_links(flatten(overrides))
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


def _search_name(value) -> str:
    """The search's name: its folder under --storage, so one folder name (never ../ or a path)."""
    from faice.config.checks import check_name

    name = _coerce(value, str, "name")
    check_name(name, "name")
    return name
