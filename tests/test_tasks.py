"""The task registry: one object per `task=` value, the only place that knows task names."""

import typing

import pytest

from faice.config import Config, ConfigError, load_config
from faice.tasks import TASKS, Task, task_of


def test_the_registry_holds_exactly_the_configs_task_choices():
    choices = typing.get_args(typing.get_type_hints(Config)["task"])
    assert TASKS.names() == sorted(choices)
    for name in TASKS:
        task = TASKS.get(name)
        assert isinstance(task, Task) and task.name == name
        # every task trains and produces images: it overrides the base's abstract steps
        for method in ("build_model", "build_loss", "generate"):
            assert getattr(type(task), method) is not getattr(Task, method), (name, method)


def test_an_unknown_task_names_the_key_and_the_choices():
    cfg = load_config()
    cfg.task = "gan"
    with pytest.raises(
        ConfigError, match=r"task: unknown task 'gan'; valid choices: autoencoder, consistency"
    ):
        task_of(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=text2image", "train.ema_decay=0.9"], "train.ema_decay: text2image runs keep no EMA"),
        (["task=text2image", "train.ema_decay=0", "text.lora_rank=0"], "text.lora_rank: must be >= 1"),
        (["task=consistency", "sample.sampler=ddim"], "sample.sampler: a consistency model samples with lcm"),
        (["task=consistency", "sample.sampler=lcm", "train.ema_decay=0"], "train.ema_decay: consistency"),
        (["task=autoencoder", "latent.autoencoder=runs/ae"], "latent.autoencoder: an autoencoder run"),
    ],
)
def test_each_tasks_checks_refuse_what_it_cannot_run(overrides, message):
    from faice.tasks import load_checked

    cfg = load_config(None, overrides)  # the fields alone are valid...
    with pytest.raises(ConfigError, match=message):
        task_of(cfg)  # ...the task refuses them
    with pytest.raises(ConfigError, match=message):
        load_checked(None, overrides)  # and so does every entry point that reads a config


def test_what_differs_between_tasks_is_declared_on_the_task():
    diffusion, autoencoder = TASKS.get("diffusion"), TASKS.get("autoencoder")
    assert diffusion.teaches and not TASKS.get("consistency").teaches and not TASKS.get("text2image").teaches
    assert autoencoder.pixel_metrics and not diffusion.pixel_metrics
    autoencoder.check_processes(1)
    with pytest.raises(ConfigError, match="task=autoencoder trains in one process; set trial.num_workers=1"):
        autoencoder.check_processes(2)
    diffusion.check_processes(4)
    with pytest.raises(ConfigError, match="task=autoencoder: .* no sampling pipeline"):
        autoencoder.export(None, load_config(None, ["task=autoencoder"]), None, None, None)
