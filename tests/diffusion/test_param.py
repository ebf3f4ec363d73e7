"""Forward process, parameterization conversions and SNR maths vs closed forms and diffusers."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from faice.diffusion import param
from faice.diffusion.schedules import alphas_cumprod, make_betas


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    abar = alphas_cumprod(make_betas("linear", 1000, 1e-4, 0.02, False)).float()[t]
    return x0, noise, t, abar


def test_q_sample_matches_diffusers_add_noise(batch):
    x0, noise, t, abar = batch
    sched = DDPMScheduler(num_train_timesteps=1000)
    torch.testing.assert_close(param.q_sample(x0, noise, abar), sched.add_noise(x0, noise, t))


def test_velocity_matches_diffusers(batch):
    x0, noise, t, abar = batch
    sched = DDPMScheduler(num_train_timesteps=1000)
    torch.testing.assert_close(param.velocity(x0, noise, abar), sched.get_velocity(x0, noise, t))


def test_q_sample_closed_form_moments():
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    abar = torch.full((20000,), 0.36)
    xt = param.q_sample(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)), abar)
    assert xt.mean().item() == pytest.approx(0.6 * 0.5, abs=0.02)
    assert xt.var().item() == pytest.approx(0.64, rel=0.03)


def test_conversions_round_trip(batch):
    x0, noise, _, abar = batch
    abar = abar.double()
    x0, noise = x0.double(), noise.double()
    xt = param.q_sample(x0, noise, abar)
    v = param.velocity(x0, noise, abar)
    torch.testing.assert_close(param.x0_from_eps(xt, noise, abar), x0)
    torch.testing.assert_close(param.eps_from_x0(xt, x0, abar)[1:], noise[1:])  # t=0: sqrt(1-abar) tiny
    torch.testing.assert_close(param.x0_from_v(xt, v, abar), x0)
    torch.testing.assert_close(param.eps_from_v(xt, v, abar), noise)
    # v = sqrt(abar) eps - sqrt(1-abar) x0 has unit-variance weights: |v|^2 coefficients sum to 1
    torch.testing.assert_close(abar.sqrt() ** 2 + (1 - abar).sqrt() ** 2, torch.ones_like(abar))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predicted_x0_matches_ddim_step(prediction_type, batch):
    x0, noise, _, _ = batch
    sched = DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction_type, clip_sample=False)
    sched.set_timesteps(10)
    t = sched.timesteps[3]
    abar = sched.alphas_cumprod[t].expand(4)
    xt = param.q_sample(x0, noise, abar)
    out = param.target(prediction_type, x0, noise, abar)
    ref = sched.step(out, t, xt).pred_original_sample
    torch.testing.assert_close(param.predicted_x0(prediction_type, out, xt, abar), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ref, x0, rtol=1e-3, atol=1e-3)


def test_snr_and_min_snr_weights():
    abar = torch.tensor([0.5, 0.9, 0.01, 0.0])
    snr = param.snr(abar)
    torch.testing.assert_close(snr[:3], torch.tensor([1.0, 9.0, 0.01 / 0.99]))
    gamma = 5.0
    w_eps = param.min_snr_weight(abar, gamma, "epsilon")
    torch.testing.assert_close(w_eps, torch.tensor([1.0, 5 / 9, 1.0, 1.0]))
    w_v = param.min_snr_weight(abar[:3], gamma, "v_prediction")
    torch.testing.assert_close(w_v, torch.tensor([0.5, 5 / 10, (0.01 / 0.99) / (0.01 / 0.99 + 1)]))
    torch.testing.assert_close(
        param.min_snr_weight(abar[:3], gamma, "sample"), torch.tensor([1.0, 5.0, 0.01 / 0.99])
    )
