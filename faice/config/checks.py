"""Cross-field checks a single field's type cannot express, and resolution of what a run leaves open
(model presets, `auto` timestep spacing), so the saved config says what ran."""

from __future__ import annotations

from faice.config.schema import Config
from faice.errors import ConfigError


def check_name(value: str | None, key: str) -> None:
    """A name that becomes one folder (a run, a search, a trial): no separators, no `..`, not absolute;
    ConfigError naming `key` otherwise, so no name writes outside the folder it belongs in."""
    if value is None:
        return
    bad = (
        not value.strip()
        or value in (".", "..")
        or any(c in value for c in "/\\\0")
        or value.startswith("~")
        or value != value.strip()
    )
    if bad:
        raise ConfigError(
            f"{key}: {value!r} is not a valid name; use one folder name (letters, digits, - _ .), "
            "without / \\, .. or a leading ~"
        )


def validate(cfg: Config) -> None:
    """Cross-field checks that a single field's type cannot express."""
    check_name(cfg.name, "name")
    check_name(cfg.train.run_name, "train.run_name")
    positive = {
        "data.resolution": cfg.data.resolution,
        "train.batch_size": cfg.train.batch_size,
        "train.max_steps": cfg.train.max_steps,
        "train.grad_accum": cfg.train.grad_accum,
        "train.log_every": cfg.train.log_every,
        "train.keep_checkpoints": cfg.train.keep_checkpoints,
        "diffusion.num_train_timesteps": cfg.diffusion.num_train_timesteps,
        "sample.num_inference_steps": cfg.sample.num_inference_steps,
        "model.min_level_size": 1 if cfg.model.min_level_size is None else cfg.model.min_level_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if cfg.eval.num_samples < 0:
        raise ConfigError(f"eval.num_samples: must be >= 0, got {cfg.eval.num_samples}")
    if cfg.eval.num_samples == 1:
        raise ConfigError("eval.num_samples: FID needs at least 2 samples (0 = off)")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr: must be positive, got {cfg.train.lr}")
    from faice.conditioning import MAX_ATTRIBUTES, parse_attributes

    if len(cfg.model.conditioning) > MAX_ATTRIBUTES or len(set(cfg.model.conditioning)) != len(
        cfg.model.conditioning
    ):
        raise ConfigError(
            f"model.conditioning: up to {MAX_ATTRIBUTES} distinct attributes, got {cfg.model.conditioning}"
        )
    if not 0 <= cfg.train.label_dropout < 1:
        raise ConfigError(f"train.label_dropout: must be in [0, 1), got {cfg.train.label_dropout}")
    parse_attributes(cfg.sample.attributes, cfg.model.conditioning)
    ae = cfg.autoencoder
    for key in ("kl_weight", "commitment_weight", "lpips_weight"):
        if getattr(ae, key) < 0:
            raise ConfigError(f"autoencoder.{key}: must be >= 0, got {getattr(ae, key)}")
    if not 0 <= cfg.text.caption_dropout < 1:
        raise ConfigError(f"text.caption_dropout: must be in [0, 1), got {cfg.text.caption_dropout}")
    if cfg.diffusion.lpips_weight < 0:
        raise ConfigError(f"diffusion.lpips_weight: must be >= 0, got {cfg.diffusion.lpips_weight}")
    if not 0 <= cfg.diffusion.hybrid_l1_weight <= 1:
        raise ConfigError(
            f"diffusion.hybrid_l1_weight: must be in [0, 1], got {cfg.diffusion.hybrid_l1_weight}"
        )
    d = cfg.data
    if not 0 < d.crop_scale <= 1:
        raise ConfigError(f"data.crop_scale: must be in (0, 1], got {d.crop_scale}")
    if d.blur_sigma < 0 or not 0 <= d.blur_prob <= 1:
        raise ConfigError(
            f"data.blur_sigma/blur_prob: need sigma >= 0 and prob in [0, 1], got {d.blur_sigma}, {d.blur_prob}"
        )
    if d.blur_kernel < 0 or (d.blur_kernel and d.blur_kernel % 2 == 0):
        raise ConfigError(f"data.blur_kernel: must be odd (or 0 = from sigma), got {d.blur_kernel}")
    if not 0 <= cfg.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {cfg.train.ema_decay}")
    if len(cfg.train.adam_betas) != 2:
        raise ConfigError(f"train.adam_betas: expected two numbers, got {cfg.train.adam_betas}")
    if cfg.sample.num_inference_steps > cfg.diffusion.num_train_timesteps:
        raise ConfigError("sample.num_inference_steps: must not exceed diffusion.num_train_timesteps")
    from faice.diffusion.samplers import check_sampler

    check_sampler(cfg.sample.sampler, cfg.diffusion.prediction_type)


def resolve(cfg: Config) -> Config:
    """Fill model fields left null from the preset and resolve `auto` spacing, so the saved config says
    what ran."""
    from faice.diffusion.samplers import AUTO_TIMESTEP_SPACING

    if cfg.diffusion.timestep_spacing == "auto":
        cfg.diffusion.timestep_spacing = AUTO_TIMESTEP_SPACING
    from faice.models.presets import AUTOENCODER_PRESETS, MODEL_PRESETS

    for section, presets in ((cfg.model, MODEL_PRESETS), (cfg.autoencoder, AUTOENCODER_PRESETS)):
        for key, value in presets[section.name].items():
            if getattr(section, key) is None:
                setattr(section, key, value)
    return cfg
