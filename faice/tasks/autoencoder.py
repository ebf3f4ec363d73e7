"""task=autoencoder: a KL or VQ autoencoder trained on pixels, whose checkpoints latent diffusion runs
encode with (latent.autoencoder). Its "samples" are reconstructions of held-out faces, scored by PSNR,
SSIM and rFID/rKID."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.errors import ConfigError
from faice.tasks import applies
from faice.tasks.base import TASKS, Task

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch

RECONSTRUCTION_METRICS = {"fid": "rfid", "fid_std": "rfid_std", "kid": "rkid", "kid_std": "rkid_std"}


class AutoencoderTask(Task):
    name = "autoencoder"
    multi_process = False
    pixel_metrics = True
    ignored = (
        applies.Ignored(("autoencoder.kl_weight",), lambda c: c.autoencoder.kind == "vq",
                        "a VQ autoencoder has no KL term; autoencoder.commitment_weight weighs its quantizer"),
        applies.Ignored(("autoencoder.num_vq_embeddings", "autoencoder.commitment_weight"),
                        lambda c: c.autoencoder.kind == "kl",
                        "a KL autoencoder has no codebook; pick a vq-* preset or autoencoder.kind=vq"),
        applies.Ignored(("train.label_dropout",), lambda c: True,
                        "an autoencoder is not conditioned on labels"),
        applies.Ignored(("eval.sampler", "eval.num_inference_steps"), lambda c: True,
                        "an autoencoder's evaluation scores reconstructions, which are not sampled", warn=True),
        applies.Ignored(("latent.posterior", "latent.cache_dir", "latent.encode_batch_size"), lambda c: True,
                        "an autoencoder run trains in pixel space"),
    )  # fmt: skip
    unread = (
        applies.Unread(("model", "diffusion", "sample"), "an autoencoder run builds autoencoder.* and "
                       "reconstructs rather than samples", except_keys=("sample.num_images",)),
        applies.Unread(("text", "consistency"), "they configure task=text2image and task=consistency"),
    )  # fmt: skip

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        if cfg.latent.autoencoder:
            raise ConfigError(
                "latent.autoencoder: an autoencoder run (task=autoencoder) trains in pixel space; unset it"
            )

    def build_model(self, cfg: Config) -> torch.nn.Module:
        from faice.models.autoencoder import build_autoencoder

        return build_autoencoder(cfg.autoencoder, cfg.data.resolution)

    def build_loss(self, cfg: Config, device: torch.device, ema):
        from faice.models.autoencoder import AutoencoderLoss

        return AutoencoderLoss(cfg.autoencoder, device)

    def on_checkpoint(self, cfg: Config, model: torch.nn.Module, ckpt: Path) -> None:
        measure_latent_scale(cfg, model, ckpt)  # latent runs read it from every autoencoder checkpoint

    def generate(self, model, cfg: Config, n: int, seed: int, batch_size: int, labels, overrides: dict):
        return reconstructions(model, cfg, n, batch_size)

    def evaluate(self, model, cfg: Config, extractor, ref):
        """PSNR and SSIM of the reconstructions of cfg.eval.num_samples held-out faces against the faces,
        and rFID / rKID of the reconstructions against `ref` (labelled with the extractor)."""
        from faice.data.heldout import heldout_images
        from faice.images import to_uint8
        from faice.metrics.stats import psnr, ssim
        from faice.scoring import metric_key, score

        real = heldout_images(cfg, cfg.eval.num_samples)
        recon = to_uint8(reconstructions(model, cfg, len(real), cfg.eval.batch_size))
        result = score(recon, ref, extractor, cfg)
        metrics = {}
        for key, value in result.metrics.items():
            base = key.split("[")[0]
            if base in RECONSTRUCTION_METRICS:
                metrics[metric_key(RECONSTRUCTION_METRICS[base], extractor.name)] = value
        metrics[metric_key("psnr", "pixels")] = psnr(real, recon)
        metrics[metric_key("ssim", "pixels")] = ssim(real, recon)
        result.metrics = metrics
        result.info.update(num_samples=len(real), kind="reconstruction")
        return result


def reconstructions(model, cfg: Config, n: int, batch_size: int = 64) -> torch.Tensor:
    """The autoencoder's reconstructions (n, 3, H, W) in [-1, 1] of the first n held-out faces."""
    import torch

    from faice.data.heldout import heldout_images
    from faice.data.loader import to_model_images
    from faice.models.autoencoder import reconstruct

    device = next(model.parameters()).device
    images = heldout_images(cfg, n)
    was_training = model.training
    model.eval()
    out = [
        reconstruct(model, to_model_images(images[i : i + batch_size].transpose(0, 3, 1, 2), cfg.data.resolution).to(device)).cpu()
        for i in range(0, len(images), batch_size)
    ]  # fmt: skip
    model.train(was_training)
    return torch.cat(out)


def measure_latent_scale(cfg: Config, model: torch.nn.Module, ckpt: Path) -> dict:
    """1 / std of the latents of cfg.autoencoder.scale_images training images, written to ckpt/latent.json
    (with the weights latent runs will use: the EMA ones when the run keeps an EMA)."""
    import torch

    from faice.data.loader import to_model_images
    from faice.metrics.reference import real_images
    from faice.models.autoencoder import encode, write_scale

    images = real_images(cfg.data.path, cfg.data.split, cfg.data.resolution, cfg.autoencoder.scale_images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    latents = torch.cat([
        encode(model, to_model_images(images[i : i + 64].transpose(0, 3, 1, 2), cfg.data.resolution).to(device))[0].cpu()
        for i in range(0, len(images), 64)
    ])  # fmt: skip
    model.train(was_training)
    return write_scale(ckpt, latents, len(images))


TASKS.register(AutoencoderTask.name)(AutoencoderTask())
