"""Which config keys a mode ignores: nothing is silently ignored.

A task declares `Ignored` rules: keys that no code reads when `when(cfg)` holds (a latent run's crop, a
text-to-image run's beta schedule). `check_ignored` turns each such key set away from its default into a
one-line ConfigError saying why and what to use instead. A key's default is the schema's, or for the fields a
preset fills (model.*, autoencoder.*) the preset's value, so a preset's own values never count as set.

`Unread` rules cover whole sections a task never reads (model.* on an autoencoder run): shared base configs
carry them for the other tasks, so a key set there gets a one-line warning instead of an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields

from faice.config.schema import Config
from faice.errors import ConfigError


@dataclass(frozen=True)
class Ignored:
    """`keys` are not read when `when(cfg)`; setting one is an error: `why` says why and what to do."""

    keys: tuple[str, ...]
    when: Callable[[Config], bool]
    why: str
    warn: bool = False  # a one-line warning instead: settings of the machine a shared base config carries


@dataclass(frozen=True)
class Unread:
    """Sections (or keys) a task never reads; a value away from its default is warned about."""

    keys: tuple[str, ...]  # "model" = every model.* key; "model.freeze" = that key
    why: str
    except_keys: tuple[str, ...] = ()


def get_key(cfg: Config, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def default_of(cfg: Config, dotted: str):
    """The value `dotted` has when nobody sets it: the preset's for preset-filled fields, else the schema's."""
    from faice.models.presets import AUTOENCODER_PRESETS, MODEL_PRESETS

    section, _, name = dotted.rpartition(".")
    presets = {"model": MODEL_PRESETS, "autoencoder": AUTOENCODER_PRESETS}.get(section)
    if presets is not None:
        preset = presets.get(get_key(cfg, f"{section}.name"), {})
        if name in preset:
            return preset[name]
        if name in {k for p in presets.values() for k in p}:
            return None  # a field of another preset family: null unless set
    owner = get_key(cfg, section) if section else cfg
    field = next(f for f in fields(owner) if f.name == name)
    default = field.default_factory() if field.default is MISSING else field.default
    if dotted == "diffusion.timestep_spacing" and default == "auto":
        from faice.diffusion.samplers import AUTO_TIMESTEP_SPACING

        return AUTO_TIMESTEP_SPACING  # what config.resolve writes for auto
    return default


def section_keys(cfg: Config, section: str) -> list[str]:
    """The dotted keys of one section (`model` -> model.name, model.base_channels, ...)."""
    return [f"{section}.{f.name}" for f in fields(get_key(cfg, section))]


def is_set(cfg: Config, key: str) -> bool:
    return get_key(cfg, key) != default_of(cfg, key)


def check_ignored(cfg: Config, rules: Sequence[Ignored]) -> None:
    """Raise a ConfigError for the first key set away from its default that a rule says is ignored (a warning
    for rules marked warn)."""
    for rule in rules:
        if not rule.when(cfg):
            continue
        for key in rule.keys:
            if is_set(cfg, key):
                message = f"{key}={get_key(cfg, key)!r} is ignored: {rule.why}"
                if not rule.warn:
                    raise ConfigError(message)
                warnings.warn(message, stacklevel=3)


def warn_unread(cfg: Config, task: str, rules: Sequence[Unread]) -> list[str]:
    """One warning line naming the keys set in sections task `task` never reads; returns those keys."""
    unread = []
    for rule in rules:
        keys = [k for s in rule.keys for k in (section_keys(cfg, s) if "." not in s else [s])]
        unread += [(k, rule.why) for k in keys if k not in rule.except_keys and is_set(cfg, k)]
    if unread:
        names = ", ".join(f"{k}={get_key(cfg, k)!r}" for k, _ in unread)
        reasons = "; ".join(dict.fromkeys(why for _, why in unread))
        warnings.warn(f"task={task} does not read {names} ({reasons})", stacklevel=3)
    return [k for k, _ in unread]


# --- the conditions rules share -------------------------------------------------------------------------


def latent(cfg: Config) -> bool:
    return bool(cfg.latent.autoencoder)


def pixel(cfg: Config) -> bool:
    return not cfg.latent.autoencoder


def dit(cfg: Config) -> bool:
    from faice.models.presets import DIT_PRESETS

    return cfg.model.name in DIT_PRESETS and not cfg.model.pretrained


def unet(cfg: Config) -> bool:
    from faice.models.presets import DIT_PRESETS

    return cfg.model.name not in DIT_PRESETS and not cfg.model.pretrained


def unconditional(cfg: Config) -> bool:
    return not cfg.model.conditioning


def samplers_used(cfg: Config) -> set[str]:
    """The samplers a run samples with: its grids and `faice sample` (sample.*) and its evaluations."""
    return {cfg.sample.sampler, cfg.eval.sampler or cfg.sample.sampler}


UNET_KEYS = tuple(f"model.{k}" for k in ("base_channels", "channel_mult", "layers_per_block",
                                        "attention_resolutions", "attention_head_dim", "resample",
                                        "time_embedding_norm", "min_level_size"))  # fmt: skip
DIT_KEYS = tuple(f"model.{k}" for k in ("depth", "width", "heads", "patch_size"))
AUGMENT_KEYS = ("data.crop", "data.crop_scale", "data.blur_sigma", "data.blur_kernel", "data.blur_prob")

# every sampling task (diffusion, consistency, text2image): eta is a DDIM-only knob
ETA_RULE = Ignored(("sample.eta",), lambda c: "ddim" not in samplers_used(c),
                   "only the ddim sampler takes eta; set sample.sampler=ddim (or eval.sampler=ddim)")  # fmt: skip

# keys every image-training task reads the same way (diffusion, consistency, autoencoder, text2image)
DATA_RULES = (
    Ignored(("data.crop_scale",), lambda c: c.data.crop == "none",
            "data.crop is none; set data.crop=center or random to crop"),
    Ignored(("data.blur_kernel", "data.blur_prob"), lambda c: c.data.blur_sigma == 0,
            "data.blur_sigma is 0 (no blur); set it > 0 to blur"),
    Ignored(("data.synthetic_count", "data.synthetic_seed"), lambda c: c.data.source == "shards",
            "data.source=shards reads prepared shards; set data.source=synthetic to synthesise faces", warn=True),
)  # fmt: skip

# a denoiser on pixels or latents: diffusion and consistency runs
DENOISER_RULES = (
    Ignored(AUGMENT_KEYS, latent,
            "latent runs train on the cached latents of the unaugmented images (data.hflip is applied: "
            "flipped latents are cached); crop or blur in pixel space (latent.autoencoder empty)"),
    Ignored(("data.num_workers",), latent,
            "latent runs read their latents from an in-memory cache, with no loader workers", warn=True),
    Ignored(("diffusion.lpips_weight",), latent,
            "LPIPS compares images and a latent run predicts latents; train in pixel space for an LPIPS term"),
    Ignored(("diffusion.hybrid_l1_weight",), lambda c: c.diffusion.loss != "hybrid",
            "only diffusion.loss=hybrid mixes in L1; set diffusion.loss=hybrid"),
    Ignored(DIT_KEYS, unet, "they shape a DiT and model.name is a UNet preset; pick a dit-* preset"),
    Ignored(UNET_KEYS, dit, "they shape a UNet and model.name is a DiT preset; use model.depth/width/heads"),
    Ignored(UNET_KEYS + DIT_KEYS, lambda c: bool(c.model.pretrained),
            "model.pretrained's config.json fixes the architecture; unset model.pretrained to build one"),
    Ignored(("train.label_dropout", "sample.guidance_scale"), unconditional,
            "the model is unconditional (model.conditioning is []); condition it, e.g. model.conditioning=[Male]"),
    ETA_RULE,
    Ignored(("latent.posterior", "latent.cache_dir", "latent.encode_batch_size"), pixel,
            "the run is in pixel space (latent.autoencoder is empty); set latent.autoencoder for latents"),
)  # fmt: skip


def check_karras(cfg: Config) -> None:
    """sample.karras_sigmas needs every sampler the run uses to step in sigma."""
    from faice.diffusion.samplers import KARRAS

    if cfg.sample.karras_sigmas:
        steps_in_t = sorted(s for s in samplers_used(cfg) if s not in KARRAS)
        if steps_in_t:
            raise ConfigError(
                f"sample.karras_sigmas: {', '.join(steps_in_t)} step in timesteps, not sigmas; samplers "
                f"with Karras sigmas: {', '.join(KARRAS)}"
            )
