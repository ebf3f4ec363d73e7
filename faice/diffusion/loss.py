"""The denoising loss: owns timestep and noise sampling, the target and the weighting (the loop only calls it)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from faice.conditioning import drop_labels
from faice.diffusion import param
from faice.diffusion.schedules import alphas_cumprod, betas_from_config
from faice.pipeline import denoise  # noqa: F401  (the one network call, shared with sampling)
from faice.registry import Registry

ELEMENT_LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss")
ELEMENT_LOSSES.register("mse")(lambda pred, tgt: F.mse_loss(pred, tgt, reduction="none"))
ELEMENT_LOSSES.register("l1")(lambda pred, tgt: F.l1_loss(pred, tgt, reduction="none"))


@ELEMENT_LOSSES.register("hybrid")
def hybrid_loss(pred: torch.Tensor, tgt: torch.Tensor, l1_weight: float = 0.5) -> torch.Tensor:
    """(1 - w) * squared error + w * absolute error, w = diffusion.hybrid_l1_weight."""
    return (1 - l1_weight) * F.mse_loss(pred, tgt, reduction="none") + l1_weight * F.l1_loss(
        pred, tgt, reduction="none"
    )


class DiffusionLoss:
    """E_{t, eps} w(t) * loss(model(x_t, t), target) over a batch of clean images."""

    def __init__(
        self, cfg, device: torch.device | str = "cpu", label_dropout: float = 0.0, num_attributes: int = 0
    ):
        self.label_dropout, self.num_attributes = label_dropout, num_attributes
        self.prediction_type = cfg.prediction_type
        self.num_timesteps = cfg.num_train_timesteps
        self.abar = alphas_cumprod(betas_from_config(cfg)).float().to(device)
        self.element_loss = ELEMENT_LOSSES.get(cfg.loss)
        if cfg.loss == "hybrid":
            self.element_loss = functools.partial(hybrid_loss, l1_weight=cfg.hybrid_l1_weight)
        self.min_snr_gamma = cfg.min_snr_gamma
        self.lpips_weight, self.lpips = cfg.lpips_weight, None
        if self.lpips_weight > 0:
            from faice.metrics.lpips import load_lpips

            self.lpips = load_lpips(cfg.lpips_path).to(device)

    def __call__(
        self,
        model: torch.nn.Module,
        x0: torch.Tensor,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The scalar loss; x0: (B, C, H, W) in [-1, 1]; `labels` (B,) for conditional models (a
        `label_dropout` share of them becomes the null class, drawn after t and the noise)."""
        b = x0.shape[0]
        t = torch.randint(0, self.num_timesteps, (b,), generator=generator, device=generator.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype)
        t, noise = t.to(x0.device), noise.to(x0.device)
        abar = self.abar.to(x0.device)[t]
        xt = param.q_sample(x0, noise, abar)
        if labels is not None:
            labels = drop_labels(labels, self.label_dropout, self.num_attributes, generator)
        pred = denoise(model, xt, t, labels).float()
        tgt = param.target(self.prediction_type, x0, noise, abar).float()
        per_sample = self.element_loss(pred, tgt).flatten(1).mean(1)
        if self.min_snr_gamma is not None:
            per_sample = per_sample * param.min_snr_weight(abar, self.min_snr_gamma, self.prediction_type)
        if self.lpips is not None:
            per_sample = per_sample + self.lpips_weight * self.perceptual(pred, xt, x0, abar)
        return per_sample.mean()

    def perceptual(self, pred: torch.Tensor, xt: torch.Tensor, x0: torch.Tensor, abar: torch.Tensor):
        """alpha_bar(t) * LPIPS(x0_hat, x0) per sample: x0_hat is the clean image the output implies,
        near-pure-noise steps (whose x0_hat is meaningless) weigh little."""
        x0_hat = param.predicted_x0(self.prediction_type, pred, xt.float(), abar)
        return abar * self.lpips(x0_hat, x0.float())
