"""The forward process and the eps / v / x0 parameterizations, as pure tensor functions.

`abar` is alpha-bar at each sample's timestep, shape (B,); images are (B, C, H, W).
"""

from __future__ import annotations

import torch


def _b(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample (B,) tensor over x's trailing dims, in x's dtype."""
    return a.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def q_sample(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps (Ho et al. 2020, eq. 4)."""
    return _b(abar.sqrt(), x0) * x0 + _b((1 - abar).sqrt(), x0) * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022, sec. 4)."""
    return _b(abar.sqrt(), x0) * noise - _b((1 - abar).sqrt(), x0) * x0


def x0_from_eps(xt: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x0 from x_t and the predicted noise: (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    return (xt - _b((1 - abar).sqrt(), xt) * eps) / _b(abar.sqrt(), xt)


def eps_from_x0(xt: torch.Tensor, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The noise from x_t and x0: (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
    return (xt - _b(abar.sqrt(), xt) * x0) / _b((1 - abar).sqrt(), xt)


def x0_from_v(xt: torch.Tensor, v: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
    return _b(abar.sqrt(), xt) * xt - _b((1 - abar).sqrt(), xt) * v


def eps_from_v(xt: torch.Tensor, v: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - abar) x_t + sqrt(abar) v."""
    return _b((1 - abar).sqrt(), xt) * xt + _b(abar.sqrt(), xt) * v


def target(prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """What a network of `prediction_type` is trained to output."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return velocity(x0, noise, abar)
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def predicted_x0(
    prediction_type: str, out: torch.Tensor, xt: torch.Tensor, abar: torch.Tensor
) -> torch.Tensor:
    """The clean image implied by a network output."""
    if prediction_type == "epsilon":
        return x0_from_eps(xt, out, abar)
    if prediction_type == "v_prediction":
        return x0_from_v(xt, out, abar)
    if prediction_type == "sample":
        return out
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def snr(abar: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar / (1 - abar)."""
    return abar / (1 - abar)


def min_snr_weight(abar: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weight (Hang et al. 2023), expressed for each prediction target.

    The paper weights the x0-loss by min(SNR, gamma); the same weighting of an eps-loss is
    min(SNR, gamma) / SNR and of a v-loss min(SNR, gamma) / (SNR + 1).
    """
    s = snr(abar)
    clipped = torch.clamp(s, max=gamma)
    if prediction_type == "epsilon":
        return torch.clamp(gamma / s, max=1.0)  # = min(SNR, gamma) / SNR, and 1 where SNR = 0
    if prediction_type == "v_prediction":
        return clipped / (s + 1)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"unknown prediction_type {prediction_type!r}")
