"""Stable Diffusion fine-tuning on face captions (task=text2image): the UNet of a local diffusers SD
folder (`text.pretrained`: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; nothing is
downloaded) trained fully (with `model.freeze` prefixes fixed) or through LoRA adapters (peft).

The loss is the SD training objective: VAE latents (x scaling_factor) noised by the folder's own
scheduler, the CLIP text encoding of the caption (replaced by the empty prompt with probability
`text.caption_dropout`, for classifier-free guidance), and the scheduler's target (epsilon or v), with
optional min-SNR weighting. VAE and text encoder stay frozen.

A LoRA run's checkpoints hold only the adapters, as `pytorch_lora_weights.safetensors` in the layout
`StableDiffusionPipeline.load_lora_weights` reads; a full run's hold the whole UNet.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from faice.diffusion import param

LORA_FILE = "pytorch_lora_weights.safetensors"
ADAPTER_FILE = "faice_lora.json"


def _sd_folder(path: str | Path) -> Path:
    from faice.errors import ConfigError

    folder = Path(path or "").expanduser()
    missing = [p for p in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")
               if not (folder / p).exists()]  # fmt: skip
    if not path or missing:
        raise ConfigError(
            f"text.pretrained: {str(path) or '(not set)'} is not a local Stable Diffusion folder (missing "
            f"{', '.join(missing) if path else 'everything'}); save one with "
            "StableDiffusionPipeline.save_pretrained or download it beforehand (nothing is fetched at run time)"
        )
    return folder


def build_unet(cfg) -> torch.nn.Module:
    """The UNet to train: the folder's, with LoRA adapters (only they train) or whole (minus model.freeze)."""
    from diffusers import UNet2DConditionModel

    from faice.models.registry import freeze

    unet = UNet2DConditionModel.from_pretrained(_sd_folder(cfg.text.pretrained) / "unet")
    if cfg.text.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if cfg.text.method == "lora":
        unet.requires_grad_(False)
        unet.add_adapter(lora_config(cfg.text))
    else:
        freeze(unet, cfg.model.freeze)
    return unet


def lora_config(text_cfg):
    """The peft LoraConfig of a TextConfig (rank, alpha, target modules)."""
    from peft import LoraConfig

    return LoraConfig(
        r=text_cfg.lora_rank,
        lora_alpha=text_cfg.lora_alpha,
        init_lora_weights="gaussian",
        target_modules=list(text_cfg.lora_targets),
    )


def lora_state(unet) -> dict[str, torch.Tensor]:
    """The adapters in diffusers' LoRA layout (what load_lora_weights reads)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet, folder: str | Path, rank: int, alpha: float, targets: list[str]) -> None:
    """Write the UNet's LoRA adapters to `folder` in diffusers' LoRA file format."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=lora_state(unet), safe_serialization=True
    )
    (folder / ADAPTER_FILE).write_text(
        json.dumps({"rank": rank, "alpha": alpha, "targets": targets}, indent=2)
    )


def load_lora_into(unet, folder: str | Path) -> None:
    """Put saved adapters back into a UNet that has the same (fresh) adapters."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(Path(folder) / LORA_FILE)
    state = {k.removeprefix("unet."): v for k, v in state.items()}
    from diffusers.utils import convert_unet_state_dict_to_peft

    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(state), adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{folder}: adapters do not fit this UNet: {result.unexpected_keys[:3]}")


class TextEncoder:
    """Tokenizer + frozen CLIP text encoder of the SD folder; caption dropout draws from the loss's RNG."""

    def __init__(self, folder: Path, device):
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        self.model = (
            CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).eval().requires_grad_(False)
        )
        self.device = device

    def ids(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids  # fmt: skip

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids.to(self.device))[0]


def drop_captions(captions: list[str], p: float, generator: torch.Generator) -> list[str]:
    """Each caption replaced by the empty prompt with probability p (classifier-free guidance training)."""
    if p <= 0:
        return list(captions)
    drop = torch.rand(len(captions), generator=generator, device=generator.device).cpu() < p
    return ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]


class Text2ImageLoss:
    """The SD fine-tuning loss; called as (unet, images, generator, captions)."""

    def __init__(self, cfg, device: torch.device | str = "cpu"):
        from diffusers import AutoencoderKL, DDPMScheduler

        folder = _sd_folder(cfg.text.pretrained)
        self.cfg = cfg
        self.vae = AutoencoderKL.from_pretrained(folder / "vae").to(device).eval().requires_grad_(False)
        self.text = TextEncoder(folder, device)
        self.scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        self.abar = self.scheduler.alphas_cumprod.float().to(device)
        self.prediction_type = self.scheduler.config.prediction_type

    def __call__(self, unet, images: torch.Tensor, generator: torch.Generator, captions=None) -> torch.Tensor:
        captions = drop_captions(
            list(captions or [""] * len(images)), self.cfg.text.caption_dropout, generator
        )
        with torch.no_grad():
            posterior = self.vae.encode(images).latent_dist
            eps0 = torch.randn(posterior.mean.shape, generator=generator, device=generator.device).to(
                images.device
            )
            latents = (posterior.mean + posterior.std * eps0) * self.vae.config.scaling_factor
            context = self.text(self.text.ids(captions))
        b = latents.shape[0]
        t = torch.randint(0, len(self.abar), (b,), generator=generator, device=generator.device).to(
            latents.device
        )
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents.device)
        abar = self.abar[t]
        noisy = param.q_sample(latents, noise, abar)
        pred = unet(noisy, t, encoder_hidden_states=context).sample.float()
        target = param.target(self.prediction_type, latents, noise, abar).float()
        per_sample = F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
        if self.cfg.diffusion.min_snr_gamma is not None:
            per_sample = per_sample * param.min_snr_weight(
                abar, self.cfg.diffusion.min_snr_gamma, self.prediction_type
            )
        return per_sample.mean()


def sd_scheduler(config: dict, sampler: str, karras_sigmas: bool = False):
    """faice sampler `sampler` on a Stable Diffusion folder's noise schedule (its scheduler/ config: betas,
    prediction type, timestep spacing and offset); latents are never clipped."""
    from diffusers import DDPMScheduler

    from faice.diffusion.samplers import SAMPLERS, check_sampler

    check_sampler(sampler, config.get("prediction_type", "epsilon"))
    reference = DDPMScheduler.from_config(config)  # the betas of any beta_schedule diffusers knows
    common = dict(
        num_train_timesteps=reference.config.num_train_timesteps,
        trained_betas=reference.betas.tolist(),
        prediction_type=reference.config.prediction_type,
        timestep_spacing=reference.config.timestep_spacing,
        steps_offset=reference.config.steps_offset,
    )
    return SAMPLERS.get(sampler)(common, False, karras_sigmas)


def pipeline_for(cfg, unet_or_ckpt) -> object:
    """A StableDiffusionPipeline of the SD folder with the trained UNet (a module, or a checkpoint folder:
    LoRA adapters loaded with load_lora_weights, or a full UNet); a given UNet is not loaded twice."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    folder = _sd_folder(cfg.text.pretrained)
    unet, lora = unet_or_ckpt, None
    if not isinstance(unet_or_ckpt, torch.nn.Module):
        saved = Path(unet_or_ckpt) / "model"
        lora = saved if (saved / LORA_FILE).exists() else None
        unet = None if lora else UNet2DConditionModel.from_pretrained(saved)
    given = {"unet": unet} if unet is not None else {}
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, requires_safety_checker=False, **given
    )
    if lora is not None:
        pipe.load_lora_weights(lora)
    pipe.set_progress_bar_config(disable=True)
    return pipe
