"""Samplers: diffusers schedulers fed our betas; every sampler runs and options take effect."""

import pytest
import torch

from faice.config import ConfigError, load_config
from faice.diffusion.samplers import SAMPLERS, build_scheduler, sample
from faice.diffusion.schedules import alphas_cumprod, betas_from_config
from faice.models import build_model


@pytest.fixture(scope="module")
def model():
    cfg = load_config("debug.yaml")
    torch.manual_seed(0)
    return build_model(cfg.model, 16).eval()


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_scheduler_uses_our_schedule(name, schedule):
    cfg = load_config("debug.yaml", [f"diffusion.beta_schedule={schedule}", f"sample.sampler={name}"])
    sched = build_scheduler(cfg.diffusion, name)
    ours = alphas_cumprod(betas_from_config(cfg.diffusion)).float()
    torch.testing.assert_close(sched.alphas_cumprod, ours, rtol=1e-5, atol=1e-6)
    assert type(sched).__name__.lower().startswith({"dpm-solver++": "dpmsolver"}.get(name, name))


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_produces_images(name, model):
    cfg = load_config("debug.yaml")
    x = sample(
        model, build_scheduler(cfg.diffusion, name), (2, 3, 16, 16), 8, torch.Generator().manual_seed(0)
    )
    assert x.shape == (2, 3, 16, 16) and torch.isfinite(x).all() and x.abs().max() <= 1


def test_same_seed_same_images_and_eta_changes_ddim(model):
    cfg = load_config("debug.yaml")
    run = lambda eta, seed=0: sample(  # noqa: E731
        model,
        build_scheduler(cfg.diffusion, "ddim"),
        (2, 3, 16, 16),
        8,
        torch.Generator().manual_seed(seed),
        eta,
    )
    torch.testing.assert_close(run(0.0), run(0.0))
    assert not torch.allclose(run(0.0), run(1.0))
    assert not torch.allclose(run(0.0), run(0.0, seed=1))


def test_zero_terminal_snr_uses_trailing_spacing():
    cfg = load_config(
        "debug.yaml", ["diffusion.zero_terminal_snr=true", "diffusion.prediction_type=v_prediction"]
    )
    sched = build_scheduler(cfg.diffusion, "ddim")
    sched.set_timesteps(10)
    assert sched.timesteps[0].item() == 999
    assert sched.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-7)
    plain = build_scheduler(load_config("debug.yaml").diffusion, "ddim")
    plain.set_timesteps(10)
    assert plain.timesteps[0].item() == 900


def test_pndm_refuses_x0_prediction():
    cfg = load_config("debug.yaml", ["diffusion.prediction_type=sample"])
    with pytest.raises(ConfigError, match="pndm"):
        build_scheduler(cfg.diffusion, "pndm")
