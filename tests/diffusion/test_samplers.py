"""Samplers: diffusers schedulers fed our betas; every sampler runs and options take effect."""

import numpy as np
import pytest
import torch

from faice.config import ConfigError, load_config
from faice.diffusion.samplers import SAMPLERS, build_scheduler, sample
from faice.models import build_model


@pytest.fixture(scope="module")
def model():
    cfg = load_config("debug.yaml")
    torch.manual_seed(0)
    return build_model(cfg.model, 16).eval()


def _reference_alphas_cumprod(schedule: str, T: int, beta_start: float, beta_end: float) -> np.ndarray:
    """abar_t written out from the papers in numpy, independent of faice.diffusion.schedules."""
    if schedule == "linear":  # Ho et al. 2020
        return np.cumprod(1 - np.linspace(beta_start, beta_end, T))
    f = lambda t: np.cos((t / T + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731  Nichol & Dhariwal eq. 17
    betas = np.minimum(1 - f(np.arange(1, T + 1)) / f(np.arange(T)), 0.999)
    return np.cumprod(1 - betas)


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_scheduler_uses_the_configured_schedule(name, schedule):
    overrides = [f"diffusion.beta_schedule={schedule}", f"sample.sampler={name}", "diffusion.beta_end=0.03"]
    cfg = load_config("debug.yaml", overrides)
    sched = build_scheduler(cfg.diffusion, name)
    T = cfg.diffusion.num_train_timesteps
    ref = _reference_alphas_cumprod(schedule, T, cfg.diffusion.beta_start, 0.03)
    np.testing.assert_allclose(sched.alphas_cumprod.double().numpy(), ref, rtol=1e-4, atol=1e-7)
    assert type(sched).__name__.lower().startswith({"dpm-solver++": "dpmsolver"}.get(name, name))


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_produces_images(name, model):
    cfg = load_config("debug.yaml")
    x = sample(
        model, build_scheduler(cfg.diffusion, name), (2, 3, 16, 16), 8, torch.Generator().manual_seed(0)
    )
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert x.shape == (2, 3, 16, 16) and torch.isfinite(x).all()
    assert (x - noise).abs().mean() > 0.1 and x.std() > 0.01  # it denoised: neither the start nor a constant


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
    plain = build_scheduler(
        load_config("debug.yaml", ["diffusion.timestep_spacing=leading"]).diffusion, "ddim"
    )
    plain.set_timesteps(10)
    assert plain.timesteps[0].item() == 900


def test_pndm_refuses_x0_prediction():
    cfg = load_config("debug.yaml", ["diffusion.prediction_type=sample"])
    with pytest.raises(ConfigError, match="pndm"):
        build_scheduler(cfg.diffusion, "pndm")


@pytest.mark.parametrize(
    "name,cls",
    [("euler", "EulerDiscreteScheduler"), ("heun", "HeunDiscreteScheduler"), ("pndm", "PNDMScheduler")],
)
def test_the_sampler_used_is_the_one_named(name, cls):
    cfg = load_config("debug.yaml", [f"sample.sampler={name}"])
    assert type(build_scheduler(cfg.diffusion, cfg.sample.sampler)).__name__ == cls


@pytest.mark.parametrize("name", ["euler", "heun", "dpm-solver++"])
def test_karras_sigmas_change_the_sigmas_and_the_images(name, model):
    # leading: the plain schedule reaches t = 0, so both span the same sigma range
    cfg = load_config("debug.yaml", ["diffusion.timestep_spacing=leading"])
    plain, karras = (build_scheduler(cfg.diffusion, name, karras_sigmas=k) for k in (False, True))
    for s in (plain, karras):
        s.set_timesteps(8)
    assert not torch.allclose(plain.timesteps.float(), karras.timesteps.float())
    if name != "dpm-solver++":  # Karras et al.'s rho=7 spacing: sigmas bunch up near 0
        sig = karras.sigmas[karras.sigmas > 0]
        ratio = lambda s: (s[-1] / s[0]).item()  # noqa: E731
        assert ratio(sig) == pytest.approx(ratio(plain.sigmas[plain.sigmas > 0]), rel=1e-3)
        mid = len(sig) // 2
        assert sig[mid] < plain.sigmas[plain.sigmas > 0][mid]
    run = lambda s: sample(model, s, (2, 3, 16, 16), 8, torch.Generator().manual_seed(0))  # noqa: E731
    assert not torch.allclose(run(plain), run(karras))


def test_heun_evaluates_the_model_twice_per_step(model):
    cfg = load_config("debug.yaml")
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        sample(
            model, build_scheduler(cfg.diffusion, "heun"), (1, 3, 16, 16), 6, torch.Generator().manual_seed(0)
        )
    finally:
        hook.remove()
    assert len(calls) == 2 * 6 - 1


def test_unsupported_sampler_options_name_the_choices():
    cfg = load_config("debug.yaml")
    with pytest.raises(ConfigError, match="sample.karras_sigmas: 'ddim'.*dpm-solver\\+\\+, euler, heun"):
        build_scheduler(cfg.diffusion, "ddim", karras_sigmas=True)
    zsnr = load_config(
        "debug.yaml", ["diffusion.zero_terminal_snr=true", "diffusion.prediction_type=v_prediction"]
    )
    with pytest.raises(ConfigError, match="'euler' starts from sigma_max"):
        build_scheduler(zsnr.diffusion, "euler")


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("karras", [False, True])
def test_the_first_model_input_has_unit_variance(name, karras, model):
    """The starting noise is scaled for the sampler's first step, so the network sees what it was
    trained on (Euler/Heun start at sigma of their first timestep, not of t = T)."""
    from faice.diffusion.samplers import KARRAS

    if karras and name not in KARRAS:
        pytest.skip("no Karras sigmas")
    cfg = load_config("debug.yaml")
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].std().item()))
    try:
        sched = build_scheduler(cfg.diffusion, name, karras_sigmas=karras)
        sample(model, sched, (8, 3, 16, 16), 10, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert seen[0] == pytest.approx(1.0, abs=0.08), seen[:3]


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm-solver++", "euler"])
def test_timestep_spacing_option_reaches_every_sampler(name):
    """10 of 1000 steps start at 900 with leading spacing and at 999 with trailing spacing."""
    firsts = {}
    for spacing in ("leading", "trailing"):
        cfg = load_config("debug.yaml", [f"diffusion.timestep_spacing={spacing}"])
        sched = build_scheduler(cfg.diffusion, name)
        sched.set_timesteps(10)
        firsts[spacing] = round(float(sched.timesteps[0]))
    assert firsts == {"leading": 900, "trailing": 999}


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("spacing", ["auto", "trailing"])
def test_every_sampler_starts_from_pure_noise_at_any_step_count(name, spacing):
    """The first timestep is T - 1 for 1, 2, 10 and 50 steps (diffusers' leading spacing starts DDIM-1 at
    t = 0, DDIM-2 at 500 and DPM-Solver++-200 at 800: sampling from noise at a time that is not noise)."""
    cfg = load_config("debug.yaml", [f"diffusion.timestep_spacing={spacing}"])
    assert cfg.diffusion.timestep_spacing == "trailing"  # auto is resolved in the config a run saves
    sched = build_scheduler(cfg.diffusion, name)
    T = cfg.diffusion.num_train_timesteps
    for steps in (1, 2, 10, 50):
        sched.set_timesteps(steps)
        assert round(float(sched.timesteps[0])) == T - 1, (name, steps, sched.timesteps[:3])


def test_leading_spacing_still_replicates_the_original():
    cfg = load_config("debug.yaml", ["diffusion.timestep_spacing=leading"])
    sched = build_scheduler(cfg.diffusion, "ddim")
    firsts = []
    for steps in (1, 2):
        sched.set_timesteps(steps)
        firsts.append(round(float(sched.timesteps[0])))
    assert firsts == [0, 500]
