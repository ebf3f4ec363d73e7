"""Machine profiles (configs/profiles/): the same search on a 24 GB and an 80 GB GPU, one flag apart."""

import pytest

from faice.config import ConfigError, flatten, to_dict
from tune.space import PROFILES_DIR, load_profile, load_space, profile_names

SPACE = "unet-architecture.yaml"


def test_every_profile_applies_to_every_space():
    from tune.space import SPACES_DIR

    assert {"cpu", "gpu-24gb", "gpu-80gb"} <= set(profile_names())
    for name in profile_names():
        profile = load_profile(name)
        for space in sorted(SPACES_DIR.glob("*.yaml")):
            spec = load_space(space, profile=name)  # validates every trial config of the space
            cfg = flatten(to_dict(spec.config_for({})))
            for key, value in flatten(profile.get("config", {})).items():
                if key not in {p.key for p in spec.space}:
                    assert cfg[key] == value, (name, space.name, key)
            for key, value in profile.get("trial", {}).items():
                assert getattr(spec.trial, key) == value, (name, space.name, key)


def test_two_profiles_change_only_what_differs_between_machines():
    small, large = load_space(SPACE, profile="gpu-24gb"), load_space(SPACE, profile="gpu-80gb")
    a, b = flatten(to_dict(small.config_for({}))), flatten(to_dict(large.config_for({})))
    assert {k for k in a if a[k] != b[k]} == {"train.batch_size", "train.grad_accum", "eval.batch_size"}
    # both cards are Ampere or newer: bf16, and the GPU speed switches on
    for key, value in {
        "train.mixed_precision": "bf16", "train.channels_last": True, "train.fused_optimizer": True,
        "train.allow_tf32": True, "train.compile": "default",
    }.items():  # fmt: skip
        assert a[key] == b[key] == value, key
    # the same effective batch on both clusters
    assert (
        a["train.batch_size"] * a["train.grad_accum"] == b["train.batch_size"] * b["train.grad_accum"] == 64
    )
    assert small.space == large.space and small.budget == large.budget
    assert small.trial.resources_per_worker == {"train_slot": 1} and small.trial.gpus_per_worker == 1


def test_command_line_overrides_win_over_the_profile():
    spec = load_space(SPACE, ["config.train.batch_size=8", "trial.cpus_per_worker=2"], profile="gpu-24gb")
    assert spec.config_for({}).train.batch_size == 8 and spec.trial.cpus_per_worker == 2
    assert spec.config_for({}).train.grad_accum == 4  # the rest of the profile still holds


def test_profile_errors_name_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="valid profiles: .*gpu-24gb"):
        load_space(SPACE, profile="gpu-48gb")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trials: {num_workers: 2}\n")
    with pytest.raises(ConfigError, match="unknown key 'trials'; valid keys: config, trial, evaluation"):
        load_space(SPACE, profile=bad)
    bad.write_text("config: {train.batch_sise: 2}\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_space(SPACE, profile=bad)
    assert PROFILES_DIR.is_dir()


def test_the_trial_runner_decides_where_the_loop_runs_and_what_its_actor_reserves():
    """trial.runner: auto puts a one-worker trial's loop in its Tune actor, which then reserves the
    worker's resources and takes Tune's restarts; several workers (or ray-train) make a Ray Train run whose
    trial actor holds a sliver of the head and leaves restarts to Ray Train."""
    from tune.search import ON_HEAD, actor_failures, trial_actor_resources

    gpu = load_space(SPACE, profile="gpu-24gb")  # 1 worker x (GPU, train_slot), max_failures 3
    assert gpu.trial.runner == "auto"
    assert trial_actor_resources(gpu.trial) == {"CPU": gpu.trial.cpus_per_worker, "GPU": 1, "train_slot": 1}
    assert actor_failures(gpu.trial) == gpu.trial.max_failures > 0
    train = load_space(SPACE, ["trial.runner=ray-train"], profile="gpu-24gb")
    assert (
        set(trial_actor_resources(train.trial)) == {"memory", *ON_HEAD} and actor_failures(train.trial) == 0
    )
    multi = load_space(SPACE, profile="gpu-4x24gb")  # 4 workers: Ray Train under auto
    assert multi.trial.num_workers == 4 and set(trial_actor_resources(multi.trial)) == {"memory", *ON_HEAD}
    with pytest.raises(ConfigError, match="trial.runner: tune runs one worker.*num_workers is 4"):
        load_space(SPACE, ["trial.runner=tune"], profile="gpu-4x24gb")
    with pytest.raises(
        ConfigError, match="trial.runner: invalid choice 'ray'; valid choices: auto, ray-train, tune"
    ):
        load_space(SPACE, ["trial.runner=ray"])
