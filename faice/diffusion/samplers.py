"""Samplers: diffusers schedulers behind a registry, all fed the betas of our own schedule."""

from __future__ import annotations

from collections.abc import Callable

from faice.diffusion.schedules import betas_from_config
from faice.registry import Registry

SAMPLERS: Registry[Callable[..., object]] = Registry("sampler")
# prediction types each sampler can turn into a step
_SUPPORTS = {
    "ddpm": ("epsilon", "v_prediction", "sample"),
    "ddim": ("epsilon", "v_prediction", "sample"),
    "pndm": ("epsilon", "v_prediction"),
    "dpm-solver++": ("epsilon", "v_prediction", "sample"),
    "euler": ("epsilon", "v_prediction", "sample"),
    "heun": ("epsilon", "v_prediction", "sample"),
    "lcm": ("epsilon", "v_prediction", "sample"),
}
# samplers that step in sigma and can space their sigmas as Karras et al. (2022) do
KARRAS = ("dpm-solver++", "euler", "heun")


@SAMPLERS.register("ddpm")
def _ddpm(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**common, clip_sample=clip_sample)


@SAMPLERS.register("ddim")
def _ddim(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**common, clip_sample=clip_sample)


@SAMPLERS.register("pndm")
def _pndm(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import PNDMScheduler

    # pseudo linear multi-step (PLMS) steps of PNDM (Liu et al. 2022), as diffusers' pipelines run it
    return PNDMScheduler(**common, skip_prk_steps=True)


@SAMPLERS.register("dpm-solver++")
def _dpmpp(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import DPMSolverMultistepScheduler

    # data-prediction solver: clip its x0 the way DDIM's clip_sample does (threshold fixed at 1)
    return DPMSolverMultistepScheduler(
        **common,
        algorithm_type="dpmsolver++",
        solver_order=2,
        thresholding=clip_sample,
        sample_max_value=1.0,
        use_karras_sigmas=karras,
    )


@SAMPLERS.register("euler")
def _euler(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**common, use_karras_sigmas=karras)


@SAMPLERS.register("heun")
def _heun(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import HeunDiscreteScheduler

    # second order: two model evaluations per step except the last
    return HeunDiscreteScheduler(**common, use_karras_sigmas=karras)


@SAMPLERS.register("lcm")
def _lcm(common: dict, clip_sample: bool, karras: bool = False):
    from diffusers import LCMScheduler

    # consistency models (task=consistency): 1-4 steps picked from the 50-step DDIM schedule they were
    # distilled on, with the boundary scalings of faice.consistency
    return LCMScheduler(**common, original_inference_steps=50, timestep_scaling=10.0, clip_sample=False)


def check_sampler(name: str, prediction_type: str) -> None:
    """Raise a ConfigError if sampler `name` cannot sample a `prediction_type` model."""
    from faice.errors import ConfigError

    supported = _SUPPORTS.get(name, ())
    if prediction_type not in supported:
        raise ConfigError(
            f"sample.sampler: {name!r} cannot sample diffusion.prediction_type={prediction_type!r}; "
            f"it supports: {', '.join(supported)}"
        )


# what diffusion.timestep_spacing=auto means, for every sampler (config.resolve writes it into each run)
AUTO_TIMESTEP_SPACING = "trailing"


def timestep_spacing(cfg, sampler: str | None = None) -> str:
    """The spacing of a DiffusionConfig's samplers; 'auto' is trailing for every sampler.

    Trailing starts every sampler at t = T - 1 (pure noise) at any step count (Lin et al. 2024, "Common
    Diffusion Noise Schedules and Sample Steps are Flawed"). diffusers' leading spacing, the original
    project's, starts DDIM-1 at t = 0, DDIM-2 at t = 500 and DPM-Solver++-200 at 800: few-step samples
    begin far below pure noise. Set `leading` only to replicate the original's numbers."""
    return AUTO_TIMESTEP_SPACING if cfg.timestep_spacing == "auto" else cfg.timestep_spacing


def build_scheduler(diffusion_cfg, sampler: str, clip_sample: bool = True, karras_sigmas: bool = False):
    """A diffusers scheduler for `sampler` whose betas are exactly our schedule's."""
    from faice.errors import ConfigError

    check_sampler(sampler, diffusion_cfg.prediction_type)
    if karras_sigmas and sampler not in KARRAS:
        raise ConfigError(
            f"sample.karras_sigmas: {sampler!r} steps in timesteps, not sigmas; samplers with Karras sigmas: "
            f"{', '.join(KARRAS)}"
        )
    if sampler in ("euler", "heun") and diffusion_cfg.zero_terminal_snr:
        raise ConfigError(
            f"sample.sampler: {sampler!r} starts from sigma_max, which is infinite with "
            "diffusion.zero_terminal_snr=true; use ddim, ddpm or dpm-solver++"
        )
    common = dict(
        num_train_timesteps=diffusion_cfg.num_train_timesteps,
        trained_betas=betas_from_config(diffusion_cfg).tolist(),
        prediction_type=diffusion_cfg.prediction_type,
        timestep_spacing=timestep_spacing(diffusion_cfg, sampler),
    )
    return SAMPLERS.get(sampler)(common, clip_sample, karras_sigmas)


def sample(*args, **kwargs):
    """The images of faice.pipeline.reverse_process, the one reverse-process loop (shipped verbatim with
    exported pipelines); imported on first use, so that naming the samplers (the CLI's choices, config
    checks) does not load diffusers."""
    from faice.pipeline import reverse_process

    return reverse_process(*args, **kwargs)
