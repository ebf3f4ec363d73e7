"""The task registry: each `task=` value is one object (a faice.tasks.base.Task) in one module here that
owns its checks, network, loss, batch conditioning, sampling, evaluation and export, and registers itself.

    task_of(cfg).generate(model, cfg, ...)

Nothing outside this package compares task names. A new task is one module, imported below (and its
name among Config.task's choices, which a test keeps equal to the registry).
"""

from faice.tasks import autoencoder, consistency, diffusion, text2image  # noqa: F401  (they register)
from faice.tasks.base import TASKS, Task, task_of

__all__ = ["TASKS", "Task", "load_checked", "task_of"]


def load_checked(path=None, overrides=()):
    """faice.config.load_config plus the checks of the config's task: what a run would refuse, refused
    when the config is read (a ConfigError names the key)."""
    from faice.config import load_config

    cfg = load_config(path, overrides)
    task_of(cfg)
    return cfg
