"""Search spaces: every shipped space validates; bad spaces fail naming the key, before Ray is imported."""

import copy
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from faice.config import ConfigError, load_config, parse_overrides
from tune.space import (
    KINDS,
    Param,
    SearchSpec,
    describe_space,
    load_space,
    render_value,
    to_param_space,
)

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "tune" / "spaces").glob("*.yaml"))

# A valid space using every distribution kind; the invalid cases below each break one thing.
ALL_KINDS = {
    "base": "debug.yaml",
    "overrides": {"train.checkpoint_every": 2, "train.adam_betas": [0.8, 0.95]},
    "budget": {"num_samples": 2, "max_steps": 8},
    "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2},
    "searcher": {"name": "random", "seed": 0},
    "trial": {"resources_per_worker": {"train_slot": 1}, "max_failures": 1},
    "space": {
        "train.lr": {"loguniform": [1.0e-4, 3.0e-3]},
        "train.ema_decay": {"uniform": [0.9, 0.99]},
        "train.seed": {"randint": [0, 5]},
        "model.name": {"choice": ["debug", "unet-tiny"]},
        "diffusion.beta_schedule": {"grid": ["linear", "cosine"]},
    },
}


def write_space(tmp_path: Path, tree: dict, name: str = "search.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def with_change(dotted: str, value) -> dict:
    """ALL_KINDS with `dotted` (first part a top-level key, rest a key inside it) set; None deletes."""
    tree = copy.deepcopy(ALL_KINDS)
    head, _, rest = dotted.partition(".")
    node, key = (tree.setdefault(head, {}), rest) if rest else (tree, head)
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value
    return tree


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> SearchSpec:
    return load_space(write_space(tmp_path_factory.mktemp("space"), ALL_KINDS))


# ---------------------------------------------------------------------------- shipped spaces


@pytest.mark.parametrize("scale", ["tiny", "paper"])
@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_loads_and_round_trips_at_both_scales(path, scale, tmp_path):
    spec = load_space(path, [f"scale={scale}"])
    assert spec.scale == scale and spec.num_trials >= 1 and describe_space(spec).startswith(spec.name)
    spec.dump(tmp_path / "resolved.yaml")
    assert load_space(tmp_path / "resolved.yaml") == spec
    cfg = spec.config_for()
    if scale == "tiny":  # synthetic faces on a CPU, ranked by a metric validated against the reference
        # the demo's settings (text-lora's without the UNet and forward process its SD folder decides)
        assert (
            Path(spec.base).name in ("demo.yaml", "text-lora-tiny.yaml") and spec.trial.gpus_per_worker == 0
        )
        assert cfg.data.source == "synthetic"
        assert "faice-tiny" not in spec.metric and cfg.eval.extractor == "inception", spec.metric
    else:  # the original's 128 px CelebA-HQ settings on GPUs, real Inception FID, several seeds
        assert Path(spec.base).name.startswith("celeba-hq-") and spec.trial.gpus_per_worker >= 1
        assert cfg.data.source == "shards" and cfg.data.resolution >= 128
        assert spec.metric in ("fid[inception]", "psnr[pixels]") and cfg.eval.extractor == "inception"
        assert spec.trial.resources_per_worker == {"train_slot": 1}
        assert len(spec.seeds) >= 3 or spec.name == "demo-asha"  # demo-asha searches lr, not seeds


def test_every_space_says_its_question_and_the_originals_numbers():
    for path in SPACES:
        text = path.read_text()
        header = text[: text.index("\nname:")]
        assert header.startswith("# Question:"), path.name
        assert "Original" in header or "original" in header, path.name
        assert "paper:" in header and "tiny" in header, path.name
        tree = yaml.safe_load(text)
        assert set(tree["scales"]) == {"tiny", "paper"} and tree["scale"] == "tiny", path.name


def _spaces_searched_in(module: str) -> set[str]:
    """Space files a test module really runs: string literals passed to a search-running helper call
    (not names that merely appear in a comment, a docstring or another test's table)."""
    import ast

    tree = ast.parse((REPO / "tests" / "tune" / f"{module}.py").read_text())
    runners = {"run_tiny_search", "run_tiny_in_process", "run_in_process", "_run"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in runners:
            found |= {
                a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).endswith(".yaml")
            }
    return found


def test_every_space_has_a_tiny_search_test():
    from tests.tune.test_study_spaces import SMOKE

    own_tests = {  # spaces run by their own search tests
        "demo-asha.yaml": "test_demo_search", "consistency.yaml": "test_demo_search",
        "autoencoder.yaml": "test_latent_search", "latent-vs-pixel.yaml": "test_latent_search",
        "latent-unet-depth.yaml": "test_latent_search", "text-lora.yaml": "test_text_search",
    }  # fmt: skip
    for name, module in own_tests.items():
        assert name in _spaces_searched_in(module), (name, module)
    assert {p.name for p in SPACES} == set(SMOKE) | set(own_tests)


def test_shipped_spaces_exist_and_say_what_was_asked():
    demo = load_space("demo-asha.yaml")
    assert (demo.num_trials, demo.scheduler.name, demo.scheduler.grace_period, demo.max_steps()) == (
        4,
        "asha",
        100,
        300,
    )
    assert demo.config_for().eval.every == 0 and demo.config_for().train.checkpoint_every == 100
    # ASHA on the pool's KID: every checkpoint is scored with the FID Inception
    assert demo.metric == "kid[inception]" and demo.config_for().eval.num_samples == 64
    grid = load_space("beta-schedule.yaml", ["scale=paper"])
    assert grid.num_trials == 27 and grid.seeds == [0, 1, 2]  # 3 schedules x 3 samplers x 3 seeds
    ddpm = grid.config_for({"variant": "ddpm", "diffusion.beta_schedule": "cosine", "train.seed": 2})
    assert (ddpm.eval.sampler, ddpm.eval.num_inference_steps, ddpm.train.seed) == ("ddpm", 1000, 2)
    assert load_space("beta-schedule.yaml").config_for({"variant": "ddpm", "diffusion.beta_schedule": "linear"}
                                                       ).eval.num_inference_steps == 100  # fmt: skip


# ---------------------------------------------------------------------------- scales and seeds

SCALED = {
    "scale": "small",
    "scales": {
        "small": {"extends": "tiny", "budget": {"max_steps": 20}, "overrides": {"train.lr": 5.0e-4}},
        "big": {"extends": "paper", "variants": {"b": {"model.name": "unet-adm"}}},
    },
    "overrides": {"train.lr": 1.0e-3, "train.batch_size": 4},
    "variants": {"a": {}, "b": {"model.name": "unet-tiny"}},
}


def test_a_scale_merges_its_shared_file_then_the_space_then_its_own_entry(tmp_path):
    path = write_space(tmp_path, SCALED)
    small = load_space(path)
    assert small.scale == "small" and Path(small.base).name == "demo.yaml"  # from tune/scales/tiny.yaml
    assert small.metric == "kid[inception]" and small.budget.max_steps == 20  # entry over the file
    assert small.overrides["train.lr"] == 5.0e-4 and small.overrides["train.batch_size"] == 4
    assert small.overrides["eval.num_samples"] == 64  # from the shared file
    big = load_space(path, ["scale=big", "seeds=2"])
    assert big.seeds == [0, 1] and big.num_trials == 4  # 2 variants x 2 seeds (the command line wins)
    assert big.config_for({"variant": "b", "train.seed": 1}).model.name == "unet-adm"
    assert big.overrides["train.lr"] == 1.0e-3 and big.trial.gpus_per_worker == 1
    picked = load_space(path, ["space.variant={grid: [b]}"])
    assert picked.num_trials == 1 and list(picked.to_dict()["variants"]) == ["b"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scale": "huge"}, "scale: unknown scale 'huge'; valid choices: small, big"),
        ({"scales": {"small": {"extends": "medium"}}}, "scales.small.extends: no scale 'medium'; valid choices: paper, tiny"),
        ({"scales": {"small": {"budgett": {}}}}, "unknown search key 'scales.small.budgett'"),
        ({"seeds": 0}, "seeds: must be >= 1"),
        ({"seeds": [1, 1]}, "seeds: repeated seed"),
        ({"seeds": 2, "space": {"train.seed": {"grid": [3, 4]}}}, "seeds: conflicts with space.train.seed"),
        ({"space": {"variant": {"grid": ["a", "c"]}}}, "space.variant: unknown variant 'c'; valid choices: a, b"),
    ],
)  # fmt: skip
def test_bad_scales_and_seeds_name_the_key(tmp_path, change, message):
    tree = copy.deepcopy(SCALED)
    tree.update(change)
    if "scales" in change:
        tree["scale"] = "small"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space(write_space(tmp_path, tree))


def test_a_scale_is_refused_for_a_space_without_scales(tmp_path):
    with pytest.raises(ConfigError, match="has no `scales:` section"):
        load_space("tests/tune/debug-asha.yaml", ["scale=paper"])


# ---------------------------------------------------------------------------- Ray param space


def test_to_param_space_has_the_right_domains_and_bounds(spec):
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer

    space = to_param_space(spec)
    assert set(space) == set(spec.keys)
    lr, ema, seed, name = (
        space["train.lr"],
        space["train.ema_decay"],
        space["train.seed"],
        space["model.name"],
    )
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 3e-3)
    assert type(lr.get_sampler()).__name__ == "_LogUniform"
    assert isinstance(ema, Float) and (ema.lower, ema.upper) == (0.9, 0.99)
    assert type(ema.get_sampler()).__name__ == "_Uniform"
    assert isinstance(seed, Integer) and (seed.lower, seed.upper) == (0, 5)
    assert set(seed.sample(size=300)) == {0, 1, 2, 3, 4}, "randint's high is exclusive, as in Ray"
    assert isinstance(name, Categorical) and name.categories == ["debug", "unet-tiny"]
    assert space["diffusion.beta_schedule"] == tune.grid_search(["linear", "cosine"])


# ---------------------------------------------------------------------------- trial configs


def test_config_for_applies_overrides_budget_and_params(spec):
    params = {"train.lr": 5e-4, "train.seed": np.int64(3), "model.name": "unet-tiny", "train.ema_decay": 0.95}
    cfg = spec.config_for(params)
    assert (cfg.train.lr, cfg.train.seed, cfg.model.name, cfg.train.ema_decay) == (5e-4, 3, "unet-tiny", 0.95)
    assert cfg.model.base_channels == 32, "the preset of the sampled model is resolved"
    assert cfg.train.max_steps == 8 and cfg.train.checkpoint_every == 2
    assert cfg.train.adam_betas == [0.8, 0.95] and cfg.log.group == "search"
    assert cfg.train.batch_size == load_config("debug.yaml").train.batch_size
    with pytest.raises(ConfigError, match="params: unknown search key 'train.lrr'"):
        spec.config_for({"train.lrr": 1e-3})


@pytest.mark.parametrize(
    "params",
    [
        {"train.lr": 1.2345678e-5, "model.name": "debug", "train.seed": 0},
        {"train.lr": np.float64(3e-3), "train.ema_decay": 0.9, "diffusion.beta_schedule": "cosine"},
    ],
)
def test_override_list_round_trips_through_load_config(spec, params):
    overrides = spec.override_list(params)
    parsed = dict(parse_overrides(overrides))
    for key, value in params.items():
        assert parsed[key] == value and type(parsed[key]) is type(
            value.item() if hasattr(value, "item") else value
        )
    assert parsed["train.adam_betas"] == [0.8, 0.95] and parsed["train.max_steps"] == 8
    assert load_config(spec.base, overrides) == spec.config_for(params)


@pytest.mark.parametrize("value", [True, False, [0.9, 0.999], None, 1e-20, "1e-4", "yes", "", "a: b"])
def test_render_value_is_read_back_unchanged(value):
    assert parse_overrides([f"k={render_value(value)}"]) == [("k", value)]


def test_load_space_overrides_set_search_and_config_keys(tmp_path):
    path = write_space(tmp_path, ALL_KINDS)
    spec = load_space(
        path,
        [
            "budget.num_samples=8",
            "scheduler.name=fifo",
            "config.train.batch_size=4",
            "space.train.lr={choice: [1.0e-3, 2.0e-3]}",
            "trial.resources_per_worker.train_slot=2",
        ],
    )
    assert spec.budget.num_samples == 8 and spec.scheduler.name == "fifo"
    assert spec.overrides["train.batch_size"] == 4 and spec.config_for().train.batch_size == 4
    assert spec.to_dict()["space"]["train.lr"] == {"choice": [1e-3, 2e-3]}
    assert spec.trial.resources_per_worker == {"train_slot": 2.0}
    assert spec.num_trials == 16


def test_float_strings_are_numbers_and_nested_overrides_are_flattened(tmp_path):
    tree = with_change("space.train.lr", {"choice": ["1e-3", "2e-3"]})
    tree["overrides"] = {"train": {"checkpoint_every": 4}}
    spec = load_space(write_space(tmp_path, tree))
    assert spec.space[0] == Param("train.lr", "choice", (1e-3, 2e-3))
    assert spec.overrides == {"train.checkpoint_every": 4}


# ---------------------------------------------------------------------------- invalid spaces

INVALID = {
    "unknown distribution": (
        with_change("space.train.lr", {"logunif": [1e-4, 1e-3]}),
        "space.train.lr: unknown distribution 'logunif'; valid choices: " + ", ".join(KINDS),
    ),
    "unknown space key": (
        with_change("space.train.lrr", {"choice": [1e-3]}),
        "space.train.lrr: unknown config key",
    ),
    "invalid choice value": (
        with_change("space.model.name", {"choice": ["debug", "nope"]}),
        "space.model.name: invalid choice 'nope'; valid choices: debug,",
    ),
    "uniform on an int field": (
        with_change("space.train.batch_size", {"uniform": [4, 8]}),
        "space.train.batch_size: uniform needs a float field but train.batch_size is int; use randint",
    ),
    "randint on a float field": (
        with_change("space.train.lr", {"randint": [1, 3]}),
        "space.train.lr: randint needs an int field but train.lr is float; use uniform or loguniform",
    ),
    "loguniform low <= 0": (
        with_change("space.train.lr", {"loguniform": [0, 1e-3]}),
        "space.train.lr: loguniform needs 0 < low",
    ),
    "low >= high": (with_change("space.train.ema_decay", {"uniform": [0.99, 0.9]}), "space.train.ema_decay"),
    "bound outside the field's range": (
        with_change("space.train.ema_decay", {"uniform": [0.9, 1.5]}),
        "space.train.ema_decay: must be in [0, 1)",
    ),
    "bad scheduler name": (
        with_change("scheduler.name", "hyperband"),
        "scheduler.name: invalid choice 'hyperband'; valid choices: fifo, asha",
    ),
    "grace period beyond max steps": (with_change("scheduler.grace_period", 20), "scheduler.grace_period"),
    "reduction factor 1": (with_change("scheduler.reduction_factor", 1), "scheduler.reduction_factor"),
    "grid with optuna": (with_change("searcher.name", "optuna"), "searcher.name: optuna cannot search grid"),
    "grid searcher with sampled params": (with_change("searcher.name", "grid"), "searcher.name: grid needs"),
    "bad mode": (with_change("mode", "maximize"), "mode: invalid choice 'maximize'; valid choices: min, max"),
    "zero samples": (with_change("budget.num_samples", 0), "budget.num_samples"),
    "missing base config": (with_change("base", "nope.yaml"), "base: config file 'nope.yaml' not found"),
    "no base": (with_change("base", None), "base: missing"),
    "unknown top-level key": (
        with_change("schedular", {"name": "asha"}),
        "unknown search key 'schedular'; valid keys: name, scale, scales, seeds, base",
    ),
    "unknown section key": (with_change("budget.max_step", 8), "unknown search key 'budget.max_step'"),
    "bad override value": (
        with_change("overrides.train.checkpoint_every", "often"),
        "overrides.train.checkpoint_every: expected an integer",
    ),
    "param also fixed": (with_change("overrides.train.lr", 1e-3), "space.train.lr: also fixed in overrides"),
    "max_steps twice": (with_change("overrides.train.max_steps", 9), "budget.max_steps: conflicts"),
    "section as a key": (with_change("space.train", {"choice": [1]}), "space.train: 'train' is a section"),
    "incompatible combination": (
        with_change("space.sample.sampler", {"choice": ["ddim", "pndm"]})
        | {"overrides": {"diffusion.prediction_type": "sample"}},
        "space.sample.sampler: 'pndm' cannot sample",
    ),
    "empty space": (with_change("space", {}), "space: no params"),
}


@pytest.mark.parametrize("tree, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_space_fails_naming_the_key(tmp_path, tree, message):
    with pytest.raises(ConfigError) as info:
        load_space(write_space(tmp_path, tree))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_combinations_are_checked_together(tmp_path):
    tree = with_change("space.diffusion.prediction_type", {"choice": ["epsilon", "sample"]})
    tree["space"]["sample.sampler"] = {"choice": ["ddim", "pndm"]}
    with pytest.raises(ConfigError, match=r"^space: .*prediction_type=sample, sample.sampler=pndm together"):
        load_space(write_space(tmp_path, tree))


def test_optuna_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    tree = with_change("searcher.name", "optuna")
    del tree["space"]["diffusion.beta_schedule"]
    with pytest.raises(ConfigError, match="searcher.name: optuna is not installed; pip install optuna"):
        load_space(write_space(tmp_path, tree))


# ---------------------------------------------------------------------------- no Ray


def test_loading_a_space_does_not_start_ray(spec):
    """(That it does not import Ray either is checked in a fresh interpreter: tests/test_boundaries.py.)"""
    import ray

    load_space("tests/tune/debug-asha.yaml").config_for({"train.lr": 1e-3})
    assert not ray.is_initialized()


def test_eval_metric_needs_evaluation_with_that_extractor():
    with pytest.raises(ConfigError, match="metric: fid\\[faice-tiny\\] comes from checkpoint evaluation"):
        load_space("tests/tune/debug-asha.yaml", ["metric=fid[faice-tiny]"])
    with pytest.raises(ConfigError, match="needs eval.extractor=inception"):
        load_space("tests/tune/debug-eval.yaml", ["metric=fid[inception]"])
    with pytest.raises(
        ConfigError, match="evaluation.keep: invalid choice 'some'; valid choices: latest, all"
    ):
        load_space("tests/tune/debug-eval.yaml", ["evaluation.keep=some"])


def test_variants_are_a_grid_of_whole_configurations_and_links_wait_for_the_launcher(tmp_path):
    from tune.space import links, load_space, resolve_links

    spec = load_space("latent-vs-pixel.yaml")
    assert [p.key for p in spec.space] == ["variant"] and spec.num_trials == 3
    pixel = spec.config_for({"variant": "pixel-unet"})
    dit = spec.config_for({"variant": "latent-dit"})
    assert (pixel.model.name, pixel.latent.autoencoder) == ("unet-tiny", "")
    assert (dit.model.name, dit.model.depth, dit.latent.autoencoder) == ("dit-s-2", 6, "best_of:autoencoder")
    assert links(spec) == [("latent.autoencoder", "autoencoder")]
    with pytest.raises(
        ConfigError, match=r"latent.autoencoder: \{best_of: autoencoder\}: no search.*run it first"
    ):
        resolve_links(spec, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: debug.yaml\nvariants:\n  a: {model.name: nope}\n")
    with pytest.raises(ConfigError, match="variant=a.*model.name"):
        load_space(bad)


def test_the_tiny_ranking_metric_is_the_one_the_agreement_benchmark_validated():
    """tune/scales/tiny.yaml ranks with the metric and sample count that benchmarks/metric_agreement.py
    found to agree with the 1000-sample Inception FID (rho >= 0.9 and the same best checkpoint)."""
    import json

    result = json.loads((REPO / "benchmarks" / "results" / "metric_agreement.json").read_text())
    metric, budget = result["details"]["default_metric"].split("@")
    tiny = load_space("demo-asha.yaml")
    assert tiny.metric == metric and tiny.config_for().eval.num_samples == int(budget)
    assert tiny.config_for().eval.reference_images == result["details"]["candidates_reference_images"]
    assert load_config("demo.yaml").eval.extractor == tiny.config_for().eval.extractor == "inception"
    assert result["ratio"] >= result["target"] >= 0.9 and result["details"]["default_top1_agreement"] == 1.0
