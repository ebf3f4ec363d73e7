"""task=consistency: latent-consistency distillation of a diffusion run (consistency.teacher) into a
student of the same architecture that samples in 1-4 LCM steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.errors import ConfigError
from faice.tasks import applies
from faice.tasks.base import TASKS
from faice.tasks.diffusion import DiffusionTask

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch


class ConsistencyTask(DiffusionTask):
    name = "consistency"
    teaches = False
    # what depends on the model, forward process and latent space is checked once the student has
    # adopted its teacher's (prepare)
    ignored = (
        applies.Ignored(("consistency.huber_c",), lambda c: c.consistency.loss != "huber",
                        "only consistency.loss=huber uses c; set consistency.loss=huber"),
    )  # fmt: skip
    unread = (
        applies.Unread(("autoencoder",), "autoencoder.* configures task=autoencoder runs"),
        applies.Unread(("text",), "text.* configures task=text2image"),
    )

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        applies.check_karras(cfg)
        if cfg.sample.sampler != "lcm":
            raise ConfigError(
                f"sample.sampler: a consistency model samples with lcm (1-4 steps), got {cfg.sample.sampler!r}"
            )
        if cfg.train.ema_decay <= 0:
            raise ConfigError(
                "train.ema_decay: consistency distillation's target network is the EMA; set e.g. 0.95"
            )

    def prepare(self, cfg: Config) -> Config:
        """cfg with the teacher's architecture, forward process, resolution and latent space (what the
        student must share with it), so the run's config.yaml says what ran."""
        from faice.consistency import LCM_STEPS

        teacher = teacher_config(cfg)
        replaced = [
            k for section in ("model", "diffusion", "latent") for k in applies.section_keys(cfg, section)
        ]
        replaced = [k for k in replaced + ["data.resolution"]
                    if applies.is_set(cfg, k) and applies.get_key(cfg, k) != applies.get_key(teacher, k)]  # fmt: skip
        if replaced:
            import warnings

            warnings.warn(
                "task=consistency: the student copies its teacher's model, forward process and latent space, "
                "so these values are replaced by the teacher's: "
                + ", ".join(f"{k}={applies.get_key(cfg, k)!r} -> {applies.get_key(teacher, k)!r}" for k in replaced),
                stacklevel=2,
            )  # fmt: skip
        cfg.model, cfg.diffusion, cfg.latent = teacher.model, teacher.diffusion, teacher.latent
        cfg.data.resolution = teacher.data.resolution
        applies.check_ignored(cfg, applies.DENOISER_RULES)  # now that model and latent space are known
        if cfg.diffusion.num_train_timesteps % LCM_STEPS:
            raise ConfigError(
                f"diffusion.num_train_timesteps: the teacher's {cfg.diffusion.num_train_timesteps} is not a "
                f"multiple of {LCM_STEPS}, the DDIM schedule consistency distillation walks"
            )
        return cfg

    def build_model(self, cfg: Config) -> torch.nn.Module:
        return teacher_model(cfg)  # the student starts as a copy of its teacher

    def build_loss(self, cfg: Config, device: torch.device, ema):
        from faice.conditioning import null_label
        from faice.consistency import ConsistencyLoss

        cond = cfg.model.conditioning
        loss = ConsistencyLoss(cfg, teacher_model(cfg), device, null_label(len(cond)) if cond else None)
        loss.target = ema.model  # the target network is the student's EMA
        return loss


def teacher_config(cfg: Config) -> Config:
    """The run config of consistency.teacher, which must be a diffusion run."""
    from faice.train.checkpoint import checkpoint_config

    if not cfg.consistency.teacher:
        raise ConfigError(
            "consistency.teacher: task=consistency needs the teacher's checkpoint or run folder"
        )
    try:
        teacher, _ = checkpoint_config(cfg.consistency.teacher)
    except FileNotFoundError as e:
        raise ConfigError(f"consistency.teacher: {e}") from None
    if not TASKS.get(teacher.task).teaches:
        raise ConfigError(
            f"consistency.teacher: {cfg.consistency.teacher} is a {teacher.task} run, not a diffusion model"
        )
    return teacher


def teacher_model(cfg: Config) -> torch.nn.Module:
    """The consistency teacher's EMA network, loaded from consistency.teacher."""
    from faice.train.checkpoint import checkpoint_config

    teacher, ckpt = checkpoint_config(cfg.consistency.teacher)
    return TASKS.get(teacher.task).load_model(ckpt, teacher, use_ema=True)


TASKS.register(ConsistencyTask.name)(ConsistencyTask())
