"""Beta schedules against their closed forms and against diffusers' own schedulers."""

import math

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr as diffusers_rescale

from faice.diffusion.schedules import BETA_SCHEDULES, alphas_cumprod, make_betas, rescale_zero_terminal_snr

DIFFUSERS_NAME = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}


@pytest.mark.parametrize("name", BETA_SCHEDULES.names())
def test_betas_match_diffusers(name):
    ours = make_betas(name, 1000, 1e-4, 0.02, zero_terminal_snr=False)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAME[name]).betas
    assert ours.shape == (1000,) and ours.dtype == torch.float64
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", BETA_SCHEDULES.names())
def test_zero_terminal_snr_matches_diffusers_and_hits_zero(name):
    base = make_betas(name, 1000, 1e-4, 0.02, zero_terminal_snr=False)
    ours = rescale_zero_terminal_snr(base)
    torch.testing.assert_close(ours.float(), diffusers_rescale(base.float()), rtol=1e-4, atol=1e-6)
    abar = alphas_cumprod(ours)
    assert abar[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert abar[0].item() == pytest.approx(alphas_cumprod(base)[0].item(), rel=1e-9)
    assert torch.all(abar[1:] <= abar[:-1])


def test_linear_closed_form():
    b = make_betas("linear", 11, 0.1, 0.2, False)
    assert b[5].item() == pytest.approx(0.15)


def test_cosine_alpha_bar_closed_form():
    T = 1000
    abar = alphas_cumprod(make_betas("cosine", T, 0, 0, False))
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900):
        # Nichol & Dhariwal eq. 17: abar_t = f(t) / f(0), t counted from 1 in our 0-based index
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-6)


def test_scaled_linear_is_square_of_linear_roots():
    b = make_betas("scaled_linear", 5, 0.0001, 0.0144, False)
    assert b[-1].item() == pytest.approx(0.0144) and b[0].item() == pytest.approx(0.0001)
    assert b[2].item() == pytest.approx(((0.01 + 0.12) / 2) ** 2)


def test_sigmoid_is_symmetric_around_midpoint():
    b = make_betas("sigmoid", 1000, 1e-4, 0.02, False)
    assert (b[0] + b[-1]).item() == pytest.approx(1e-4 + 0.02, rel=1e-9)
