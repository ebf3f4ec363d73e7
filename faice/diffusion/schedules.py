"""Beta schedules of the forward process, as pure float64 functions of (T, beta_start, beta_end)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from faice.registry import Registry

BETA_SCHEDULES: Registry[Callable[[int, float, float], torch.Tensor]] = Registry("beta schedule")


def betas_for_alpha_bar(T: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> torch.Tensor:
    """Discretise a continuous alpha_bar(t), t in [0, 1]: beta_i = 1 - abar((i+1)/T) / abar(i/T), clipped."""
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


@BETA_SCHEDULES.register("linear")
def linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Ho et al. 2020: betas linear from beta_start to beta_end."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


@BETA_SCHEDULES.register("scaled_linear")
def scaled_linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Latent-diffusion schedule: sqrt(beta) linear."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2


@BETA_SCHEDULES.register("cosine")
def cosine_betas(T: int, beta_start: float = 0.0, beta_end: float = 0.0) -> torch.Tensor:
    """Nichol & Dhariwal 2021 eq. 17 (diffusers' squaredcos_cap_v2): abar(t) = cos^2((t+s)/(1+s) pi/2), s=0.008."""
    return betas_for_alpha_bar(T, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)


@BETA_SCHEDULES.register("sigmoid")
def sigmoid_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """GeoDiff's sigmoid schedule: beta_start + (beta_end - beta_start) * sigmoid(linspace(-6, 6))."""
    return beta_start + (beta_end - beta_start) * torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64))


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: shift and scale sqrt(abar) so abar_T = 0 while abar_1 is kept."""
    sqrt_ab = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def make_betas(
    name: str, T: int, beta_start: float, beta_end: float, zero_terminal_snr: bool
) -> torch.Tensor:
    """The betas (T,) float64 of a named schedule, optionally rescaled to zero terminal SNR."""
    betas = BETA_SCHEDULES.get(name)(T, beta_start, beta_end)
    return rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s)."""
    return torch.cumprod(1 - betas, 0)


def betas_from_config(cfg) -> torch.Tensor:
    """Betas of a DiffusionConfig."""
    return make_betas(
        cfg.beta_schedule, cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.zero_terminal_snr
    )
