"""task=text2image: fine-tuning a local Stable Diffusion folder's UNet (LoRA adapters or full weights) on
the faces' captions; samples come from the SD pipeline with held-out captions as prompts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.errors import ConfigError
from faice.tasks.base import TASKS, Task

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch


class Text2ImageTask(Task):
    name = "text2image"

    def check(self, cfg: Config) -> None:
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
        """Images of the SD pipeline with the trained UNet, from held-out captions, with the folder's
        scheduler and classifier-free guidance sample.guidance_scale."""
        import torch

        from faice.data.heldout import heldout_prompts
        from faice.text2image import pipeline_for

        steps = overrides.get("num_inference_steps") or cfg.sample.num_inference_steps
        pipe = pipeline_for(cfg, model).to(next(model.parameters()).device)
        generator = torch.Generator().manual_seed(seed)
        prompts, out = heldout_prompts(cfg, n), []
        was_training = model.training
        model.eval()
        for i in range(0, n, batch_size):
            images = pipe(prompts[i : i + batch_size], num_inference_steps=steps,
                          guidance_scale=cfg.sample.guidance_scale, generator=generator, height=cfg.data.resolution,
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
        adapters fused into it; the adapters themselves also go to out/lora/ for load_lora_weights)."""
        from faice.text2image import LORA_FILE, pipeline_for

        pipe = pipeline_for(cfg, ckpt)
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
