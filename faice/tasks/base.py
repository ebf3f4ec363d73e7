"""What a task is: the one object that knows how a `task=` trains, samples, scores and exports.

Dispatch on `cfg.task` happens only here, through `task_of(cfg)` (faice.tasks); callers never compare
task names. A task's methods take the run config so one instance serves every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from faice.config.schema import Config
from faice.errors import ConfigError
from faice.registry import Registry

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads without it
    import torch


class Task:
    """The base: a diffusion-like task that samples images; subclasses override what differs."""

    name: str = ""
    teaches = False  # may be a consistency teacher (consistency.teacher)
    multi_process = True  # trains under DDP with trial.num_workers > 1
    pixel_metrics = False  # scores psnr[pixels] / ssim[pixels] (reconstructions), besides the extractor's

    ignored: tuple = ()  # faice.tasks.applies.Ignored rules: keys this task's modes do not read
    unread: tuple = ()  # faice.tasks.applies.Unread: sections it never reads (a warning when set)

    def check(self, cfg: Config) -> None:
        """Raise ConfigError (naming the key) for settings this task cannot run or would ignore; warn
        about keys set in sections it never reads. Subclasses extend it (super().check first)."""
        from faice.tasks.applies import DATA_RULES, check_ignored, warn_unread

        check_ignored(cfg, DATA_RULES + self.ignored)
        warn_unread(cfg, self.name, self.unread)

    def prepare(self, cfg: Config) -> Config:
        """The config a run of this task actually trains (e.g. a student adopting its teacher's model)."""
        return cfg

    def check_processes(self, num_processes: int) -> None:
        """Refuse a process count the task cannot train with."""
        if num_processes > 1 and not self.multi_process:
            raise ConfigError(f"task={self.name} trains in one process; set trial.num_workers=1")

    def build_model(self, cfg: Config) -> torch.nn.Module:
        """The network a run trains (seeded by the caller)."""
        raise NotImplementedError

    def build_loss(self, cfg: Config, device: torch.device, ema):
        """The loss object: `loss(model, x0, generator, labels)` -> scalar."""
        raise NotImplementedError

    def batch_labels(self, batch: dict, label_columns: list[int] | None, device: torch.device):
        """The conditioning a loss receives for one batch (class labels, captions or None)."""
        return None

    def on_checkpoint(self, cfg: Config, model: torch.nn.Module, ckpt: Path) -> None:
        """Extra files a checkpoint of this task carries (written on the main process)."""

    def load_model(self, ckpt: Path, cfg: Config, use_ema: bool) -> torch.nn.Module:
        """The network saved in checkpoint folder `ckpt` (its EMA weights when asked for and present)."""
        from faice.models import load_model

        return load_model(ckpt / "ema" if use_ema and (ckpt / "ema").exists() else ckpt / "model")

    def generate(self, model, cfg: Config, n: int, seed: int, batch_size: int, labels, overrides: dict):
        """`n` images (n, C, H, W) in [-1, 1]: what this task's model produces."""
        raise NotImplementedError

    def evaluate(self, model, cfg: Config, extractor, ref):
        """An EvalResult of cfg.eval.num_samples outputs scored against `ref`."""
        from faice.images import to_uint8
        from faice.scoring import score

        sampler = cfg.eval.sampler or cfg.sample.sampler
        steps = cfg.eval.num_inference_steps or cfg.sample.num_inference_steps
        overrides = {"sampler": sampler, "num_inference_steps": steps}
        images = self.generate(
            model, cfg, cfg.eval.num_samples, cfg.eval.seed, cfg.eval.batch_size, None, overrides
        )
        result = score(to_uint8(images), ref, extractor, cfg)
        result.info.update(sampler=sampler, sampler_steps=steps)
        return result

    def export(self, model, cfg: Config, ckpt: Path, out: Path, sampler: str | None) -> Path:
        """Write a diffusers pipeline folder `out` that samples the checkpoint; returns `out`."""
        raise ConfigError(f"task={self.name}: a checkpoint of this task has no sampling pipeline to export")


TASKS: Registry[Task] = Registry("task")


def task_of(cfg: Config) -> Task:
    """The task object of cfg.task, after its checks of `cfg` (a ConfigError names the key)."""
    try:
        task = TASKS.get(cfg.task)
    except KeyError as e:
        raise ConfigError(f"task: {e.args[0]}") from None
    task.check(cfg)
    return task
