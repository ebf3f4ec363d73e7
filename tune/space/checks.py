"""Validation of a whole search before Ray starts: numbers, conflicting keys, the searcher, every probe
config against faice.config, and the ranking metric against the evaluation settings."""

from __future__ import annotations

import itertools

from faice.config import ConfigError
from faice.profiles import runs_in_trial_actor
from faice.tasks import load_checked
from tune.space.spec import SearchSpec, render_value

MAX_COMBINATIONS = 256  # above this many probe combinations only each param alone is checked


# ---------------------------------------------------------------------------- validation


def validate(spec: SearchSpec) -> None:
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
        ("evaluation.rung_wait_s", spec.evaluation.rung_wait_s, ">=", 0),
        ("trial.num_workers", t.num_workers, ">=", 1),
        ("trial.cpus_per_worker", t.cpus_per_worker, ">=", 0),
        ("trial.gpus_per_worker", t.gpus_per_worker, ">=", 0),
        ("trial.max_failures", t.max_failures, ">=", -1),
        *((f"trial.resources_per_worker.{k}", v, ">=", 0) for k, v in t.resources_per_worker.items()),
    ]
    for key, value, op, bound in rules:
        if value is not None and not (value > bound if op == ">" else value >= bound):
            raise ConfigError(f"{key}: must be {op} {bound}, got {value}")
    runs_in_trial_actor(t)  # trial.runner tune with several workers


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
        load_checked(spec.base)
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
    """`metric: kid[inception]` needs checkpoint evaluation on, with that extractor."""
    from faice.evaluate import is_eval_metric
    from faice.tasks import task_of

    if not is_eval_metric(spec.metric):
        return
    cfg = spec.probe_config()  # the space may switch evaluation on
    extractor = spec.metric[spec.metric.index("[") + 1 : -1]
    if not cfg.eval.num_samples:
        raise ConfigError(
            f"metric: {spec.metric} comes from checkpoint evaluation, which is off; set overrides.eval.num_samples"
        )
    if extractor == "pixels" and task_of(cfg).pixel_metrics:  # psnr[pixels], ssim[pixels]: no extractor
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
