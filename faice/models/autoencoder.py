"""Autoencoders for latent diffusion: diffusers AutoencoderKL (VAE) and VQModel (VQ-VAE), their training
loss, and the maths of latents (encode, decode, the scale factor that gives unit-variance latents).

Latents are what the encoder gives before quantization (VQ) or the posterior (KL); the diffusion model
sees them multiplied by the scale factor s = 1 / std(latents), measured on the training data, and
sampling divides by s before decoding (Rombach et al. 2022).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

LATENT_FILE = "latent.json"  # the measured scale factor, stored with an autoencoder checkpoint


def autoencoder_kwargs(cfg, resolution: int) -> dict:
    """diffusers constructor arguments of a resolved AutoencoderConfig."""
    channels = [cfg.base_channels * m for m in cfg.channel_mult]
    n = len(channels)
    kw = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(32, cfg.base_channels),
        sample_size=resolution,
        scaling_factor=1.0,  # measured after training (LATENT_FILE)
    )
    if cfg.kind == "vq":
        kw["num_vq_embeddings"] = cfg.num_vq_embeddings
    return kw


def build_autoencoder(cfg, resolution: int) -> torch.nn.Module:
    """A fresh autoencoder of `cfg` (AutoencoderConfig, preset resolved), or the local `cfg.pretrained`."""
    from diffusers import AutoencoderKL, VQModel

    from faice.errors import ConfigError

    if cfg.pretrained:
        from faice.models.registry import load_model

        path = Path(cfg.pretrained).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"autoencoder.pretrained: {path} is not a diffusers model folder (no config.json); point it "
                "at the folder holding config.json and the weights, e.g. <pipeline>/vae"
            )
        model = load_model(path)
        if type(model).__name__ not in ("AutoencoderKL", "VQModel"):
            raise ConfigError(
                f"autoencoder.pretrained: {path} holds a {type(model).__name__}, not an autoencoder"
            )
    else:
        levels = len(cfg.channel_mult)
        if resolution % 2 ** (levels - 1):
            raise ConfigError(
                f"autoencoder.channel_mult: {levels} blocks downsample by {2 ** (levels - 1)}, which does "
                f"not divide data.resolution={resolution}"
            )
        cls = VQModel if cfg.kind == "vq" else AutoencoderKL
        model = cls(**autoencoder_kwargs(cfg, resolution))
    if type(model).__name__ == "VQModel":
        model.quantize.beta = cfg.commitment_weight
        model.quantize.legacy = False  # beta weighs the commitment term (van den Oord et al. 2017)
    return model


def is_vq(model) -> bool:
    """True when `model` (or the module it wraps) is a VQ-VAE rather than a KL autoencoder."""
    return type(getattr(model, "module", model)).__name__ == "VQModel"


class AutoencoderLoss:
    """recon(x_hat, x) + kl_weight * KL (KL) or + quantizer loss (VQ) + lpips_weight * LPIPS(x_hat, x).

    Same call as the diffusion loss: (model, images, generator, labels) -> scalar; labels are unused."""

    def __init__(self, cfg, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.recon = F.mse_loss if cfg.recon_loss == "mse" else F.l1_loss
        self.lpips = None
        if cfg.lpips_weight > 0:
            from faice.metrics.lpips import load_lpips

            self.lpips = load_lpips(cfg.lpips_path).to(device)

    def parts(self, model, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        core = getattr(model, "module", model)
        if is_vq(core):
            out = core(x)
            x_hat, reg = out.sample, out.commit_loss.mean()
        else:
            posterior = core.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(
                posterior.mean.shape, generator=generator, device=generator.device
            ).to(x.device)
            x_hat = core.decode(z).sample
            reg = self.cfg.kl_weight * posterior.kl().mean() / posterior.mean[0].numel()
        parts = {"recon": self.recon(x_hat.float(), x.float()), "reg": reg.float()}
        if self.lpips is not None:
            parts["lpips"] = self.cfg.lpips_weight * self.lpips(x_hat.float(), x.float()).mean()
        return parts

    def __call__(self, model, x: torch.Tensor, generator: torch.Generator, labels=None) -> torch.Tensor:
        return sum(self.parts(model, x, generator).values())


@torch.no_grad()
def encode(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean, std) of the latents of images in [-1, 1]; VQ: the pre-quantization latents and None."""
    if is_vq(model):
        return model.encode(images).latents, None
    posterior = model.encode(images).latent_dist
    return posterior.mean, posterior.std


@torch.no_grad()
def decode(model, latents: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] of (unscaled) latents; a VQ decoder quantizes them first."""
    return model.decode(latents).sample.clamp(-1, 1)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor) -> torch.Tensor:
    """The autoencoder's reconstructions of `images` (encode, then decode)."""
    return decode(model, encode(model, images)[0])


def scale_factor(latents: torch.Tensor) -> float:
    """1 / std of all latent elements: the factor that gives the diffusion model unit-variance inputs."""
    return float(1.0 / latents.float().std())


def read_scale(folder: str | Path) -> float | None:
    """The latent scale factor stored in an autoencoder folder, None when it has none."""
    path = Path(folder) / LATENT_FILE
    return json.loads(path.read_text())["scale_factor"] if path.exists() else None


def write_scale(folder: str | Path, latents: torch.Tensor, images: int) -> dict:
    """Measure the scale factor of `latents` and store it with the autoencoder in `folder`."""
    info = {
        "scale_factor": scale_factor(latents),
        "latent_std": float(latents.float().std()),
        "latent_mean": float(latents.float().mean()),
        "images": images,
        "latent_shape": list(latents.shape[1:]),
    }
    (Path(folder) / LATENT_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info
