"""task=text2image: fine-tuning a local Stable Diffusion folder's UNet (LoRA adapters or full weights) on
the faces' captions; samples come from the SD pipeline with held-out captions as prompts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.errors import ConfigError
from faice.tasks import applies
from faice.tasks.base import TASKS, Task

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch


# diffusion.* keys the Stable Diffusion folder's scheduler/ config decides (its UNet was trained on them)
SD_SCHEDULER_KEYS = tuple(f"diffusion.{k}" for k in ("num_train_timesteps", "beta_schedule", "beta_start",
                          "beta_end", "prediction_type", "zero_terminal_snr", "timestep_spacing"))  # fmt: skip


class Text2ImageTask(Task):
    name = "text2image"
    ignored = (
        applies.Ignored(SD_SCHEDULER_KEYS, lambda c: True,
                        "the Stable Diffusion folder's scheduler/ config defines the forward process its UNet "
                        "was trained on; edit that config (text.pretrained) to change it"),
        applies.Ignored(("diffusion.loss", "diffusion.hybrid_l1_weight", "diffusion.lpips_weight"), lambda c: True,
                        "text2image runs train with SD's MSE objective (diffusion.min_snr_gamma weighs it)"),
        applies.Ignored(("model.conditioning", "model.pretrained", "model.dropout") + applies.UNET_KEYS
                        + applies.DIT_KEYS, lambda c: True,
                        "the UNet is text.pretrained's, conditioned on captions; set text.* instead"),
        applies.Ignored(("model.freeze",), lambda c: c.text.method == "lora",
                        "a LoRA run trains only its adapters; model.freeze applies to text.method=full"),
        applies.Ignored(("text.lora_rank", "text.lora_alpha", "text.lora_targets"),
                        lambda c: c.text.method == "full", "text.method=full trains the whole UNet, no adapters"),
        applies.Ignored(("train.label_dropout",), lambda c: True,
                        "captions, not labels, condition the UNet; text.caption_dropout drops them"),
        applies.ETA_RULE,
        applies.Ignored(("latent.autoencoder", "latent.posterior", "latent.cache_dir", "latent.encode_batch_size"),
                        lambda c: True, "Stable Diffusion encodes with its own vae/ (text.pretrained)"),
    )  # fmt: skip
    unread = (
        applies.Unread(("model",), "the UNet is text.pretrained's", except_keys=("model.freeze",)),
        applies.Unread(
            ("autoencoder", "consistency"), "they configure task=autoencoder and task=consistency"
        ),
    )

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        applies.check_karras(cfg)
        if cfg.train.ema_decay > 0:
            raise ConfigError("train.ema_decay: text2image runs keep no EMA of the UNet; set 0")
        if cfg.text.lora_rank < 1:
            raise ConfigError(f"text.lora_rank: must be >= 1, got {cfg.text.lora_rank}")

    def build_model(self, cfg: Config) -> torch.nn.Module:
        from faice.text2image import build_unet

        return build_unet(cfg)

    def build_loss(self, cfg: Config, device: torch.device, ema):
        from faice.text2image import Text2ImageLoss

        return Text2ImageLoss(cfg, device)

    def batch_labels(self, batch: dict, label_columns: list[int] | None, device: torch.device):
        return batch["caption"]  # the loss tokenizes them (after caption dropout)

    def load_model(self, ckpt: Path, cfg: Config, use_ema: bool) -> torch.nn.Module:
        """The SD folder's UNet with the run's adapters or weights (text2image runs keep no EMA)."""
        from faice.text2image import build_unet
        from faice.train.checkpoint import load_weights

        model = build_unet(cfg)
        load_weights(model, ckpt / "model")
        return model

    def generate(self, model, cfg: Config, n: int, seed: int, batch_size: int, labels, overrides: dict):
        """Images of the SD pipeline with the trained UNet, from held-out captions: sample.sampler (with
        sample.eta and sample.karras_sigmas) stepping the folder's own noise schedule, and classifier-free
        guidance sample.guidance_scale."""
        import torch

        from faice.data.heldout import heldout_prompts
        from faice.text2image import pipeline_for, sd_scheduler

        s = {k: getattr(cfg.sample, k) for k in ("sampler", "num_inference_steps", "eta", "guidance_scale",
                                                  "karras_sigmas")} | overrides  # fmt: skip
        pipe = pipeline_for(cfg, model).to(next(model.parameters()).device)
        pipe.scheduler = sd_scheduler(pipe.scheduler.config, s["sampler"], s["karras_sigmas"])
        generator = torch.Generator().manual_seed(seed)
        prompts, out = heldout_prompts(cfg, n), []
        was_training = model.training
        model.eval()
        for i in range(0, n, batch_size):
            images = pipe(prompts[i : i + batch_size], num_inference_steps=s["num_inference_steps"], eta=s["eta"],
                          guidance_scale=s["guidance_scale"], generator=generator, height=cfg.data.resolution,
                          width=cfg.data.resolution, output_type="pt").images  # fmt: skip
            out.append(images.float().cpu() * 2 - 1)
        model.train(was_training)
        return torch.cat(out)

    def evaluate(self, model, cfg: Config, extractor, ref):
        """FID/IS/KID of the samples, plus their text-image agreement when text.clip_path is set."""
        result = super().evaluate(model, cfg, extractor, ref)
        if cfg.text.clip_path:
            from faice.data.heldout import heldout_prompts
            from faice.metrics.clip import clip_score, load_clip
            from faice.scoring import metric_key

            clip, tokenizer = load_clip(cfg.text.clip_path)
            prompts = heldout_prompts(cfg, len(result.images))
            result.metrics[metric_key("clip_score", "clip")] = clip_score(
                clip, tokenizer, result.images, prompts
            )
        return result

    def export(self, model, cfg: Config, ckpt: Path, out: Path, sampler: str | None) -> Path:
        """A complete StableDiffusionPipeline folder: the SD folder with the fine-tuned UNet (a LoRA run's
        adapters fused into it; the adapters themselves also go to out/lora/ for load_lora_weights), whose
        scheduler is the run's sampler on the folder's noise schedule."""
        from faice.text2image import LORA_FILE, pipeline_for, sd_scheduler

        pipe = pipeline_for(cfg, ckpt)
        pipe.scheduler = sd_scheduler(
            pipe.scheduler.config, sampler or cfg.sample.sampler, cfg.sample.karras_sigmas
        )
        lora = ckpt / "model" / LORA_FILE
        if lora.exists():
            pipe.fuse_lora()
            pipe.unload_lora_weights()
        pipe.save_pretrained(out)
        if lora.exists():
            (out / "lora").mkdir(exist_ok=True)
            shutil.copyfile(lora, out / "lora" / LORA_FILE)
        return out


TASKS.register(Text2ImageTask.name)(Text2ImageTask())
