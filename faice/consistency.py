"""Consistency distillation (Song et al. 2023), latent-consistency style (Luo et al. 2023): a student
that maps any noisy image on a teacher's probability-flow trajectory to its clean end, sampled in 1-4
steps by diffusers' LCMScheduler (faice sampler `lcm`).

The student's prediction at timestep t is f(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat(x_t, t), with the
boundary scalings c_skip = s^2 / ((10 t)^2 + s^2), c_out = 10 t / sqrt((10 t)^2 + s^2), s = sigma_data = 0.5
(so f is the identity at t = 0), x0_hat the clean image its raw output implies (epsilon, v or sample
prediction). Each training step takes t from the 50-step DDIM schedule, moves x_t one DDIM step of the
frozen teacher to x_{t-k}, and regresses f(x_t, t) on the target network's f(x_{t-k}, t-k); the target
network is the student's EMA (train.ema_decay, e.g. 0.95). The student starts as a copy of the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from faice.diffusion import param
from faice.diffusion.schedules import alphas_cumprod, betas_from_config
from faice.pipeline import denoise, guide

LCM_STEPS = 50  # the DDIM schedule distilled on; LCMScheduler's original_inference_steps
TIMESTEP_SCALING = 10.0  # LCMScheduler's timestep_scaling
SIGMA_DATA = 0.5


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) at integer timesteps t, as LCMScheduler computes them."""
    scaled = t.double() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip.float(), c_out.float()


def ddim_timesteps(num_train_timesteps: int, steps: int = LCM_STEPS) -> torch.Tensor:
    """k-1, 2k-1, ..., T-1 with k = T / steps: the timesteps LCMScheduler chooses its steps from."""
    k = num_train_timesteps // steps
    return torch.arange(1, steps + 1) * k - 1


def _b(a: torch.Tensor) -> torch.Tensor:
    return a.view(-1, 1, 1, 1)


class ConsistencyLoss:
    """The distillation loss; same call as the other losses. `target` (the EMA network) is attached by
    the training state."""

    def __init__(self, cfg, teacher: torch.nn.Module, device: torch.device | str = "cpu", null_label=None):
        self.cfg = cfg.consistency
        self.prediction_type = cfg.diffusion.prediction_type
        self.abar = alphas_cumprod(betas_from_config(cfg.diffusion)).float().to(device)
        self.timesteps = ddim_timesteps(cfg.diffusion.num_train_timesteps).to(device)
        self.k = cfg.diffusion.num_train_timesteps // LCM_STEPS
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.target: torch.nn.Module | None = None
        self.null_label = null_label

    def _teacher(self, xt, t, labels):
        w = self.cfg.teacher_guidance_scale
        if labels is None or w == 1.0:
            return denoise(self.teacher, xt, t, labels)
        both = denoise(self.teacher, torch.cat([xt, xt]), torch.cat([t, t]),
                       torch.cat([labels, torch.full_like(labels, self.null_label)]))  # fmt: skip
        return guide(*both.chunk(2), w)

    def parts(self, model, x0: torch.Tensor, generator: torch.Generator, labels=None) -> dict:
        if self.target is None:
            raise RuntimeError("ConsistencyLoss.target (the EMA network) is not set")
        b = x0.shape[0]
        idx = torch.randint(0, LCM_STEPS, (b,), generator=generator, device=generator.device).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(
            x0.device
        )
        t = self.timesteps[idx]
        t_prev = (t - self.k).clamp(min=0)
        abar_t = self.abar[t]
        abar_prev = torch.where(idx > 0, self.abar[t_prev], self.abar[0])
        xt = param.q_sample(x0, noise, abar_t)
        c_skip, c_out = boundary_scalings(t)
        x0_student = param.predicted_x0(
            self.prediction_type, denoise(model, xt, t, labels).float(), xt, abar_t
        )
        pred = _b(c_skip) * xt + _b(c_out) * x0_student
        with torch.no_grad():
            x0_teacher = param.predicted_x0(
                self.prediction_type, self._teacher(xt, t, labels).float(), xt, abar_t
            )
            eps_teacher = param.eps_from_x0(xt, x0_teacher, abar_t)
            x_prev = _b(abar_prev.sqrt()) * x0_teacher + _b((1 - abar_prev).sqrt()) * eps_teacher
            out = denoise(self.target, x_prev, t_prev, labels).float()
            x0_target = param.predicted_x0(self.prediction_type, out, x_prev, abar_prev)
            c_skip_prev, c_out_prev = boundary_scalings(t_prev)
            target = _b(c_skip_prev) * x_prev + _b(c_out_prev) * x0_target
        if self.cfg.loss == "huber":
            c = self.cfg.huber_c
            loss = (torch.sqrt((pred - target) ** 2 + c**2) - c).mean()
        else:
            loss = F.mse_loss(pred, target)
        return {
            "loss": loss,
            "pred": pred.detach(),
            "target": target,
            "t": t,
            "t_prev": t_prev,
            "x_prev": x_prev,
        }

    def __call__(self, model, x0: torch.Tensor, generator: torch.Generator, labels=None) -> torch.Tensor:
        return self.parts(model, x0, generator, labels)["loss"]
