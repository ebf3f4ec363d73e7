"""Links between searches: `key: {best_of: SEARCH}` takes the run folder of another search's best trial
(e.g. a latent-diffusion search on the best autoencoder), resolved when the search is launched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faice.config import (
    ConfigError,
)
from tune.space.spec import LINK, LINK_MARK, SearchSpec


def mark_links(overrides: dict[str, Any]) -> dict[str, Any]:
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
