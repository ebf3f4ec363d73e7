"""Configs: every shipped YAML validates; bad keys, types and choices fail naming the key."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from faice.config import (
    Config,
    ConfigError,
    describe,
    dump_yaml,
    from_dict,
    load_config,
    parse_overrides,
    resolve,
)
from faice.models.presets import MODEL_PRESETS

REPO = Path(__file__).resolve().parent.parent
# machine profiles (configs/profiles/) are not configs; tests/tune/test_profiles.py loads each
SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "profiles")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert resolve(from_dict(yaml.safe_load(dump_yaml(cfg)))) == cfg


def test_shipped_configs_exist():
    assert {"debug.yaml", "demo.yaml"} <= {p.name for p in SHIPPED}


def test_dotted_overrides_are_typed():
    cfg = load_config(
        REPO / "configs/debug.yaml", ["train.lr=2e-4", "model.name=unet-adm", "train.adam_betas=[0.8,0.9]"]
    )
    assert cfg.train.lr == pytest.approx(2e-4) and isinstance(cfg.train.lr, float)
    assert cfg.model.name == "unet-adm"
    assert cfg.model.attention_resolutions == MODEL_PRESETS["unet-adm"]["attention_resolutions"]
    assert cfg.train.adam_betas == [0.8, 0.9]


def test_explicit_model_fields_beat_the_preset():
    cfg = load_config(None, ["model.name=unet-adm", "model.layers_per_block=1"])
    assert cfg.model.layers_per_block == 1
    assert cfg.model.resample == "resnet"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr=abc", "train.lr"),
        (
            "model.name=nope",
            "valid choices: debug, dit-b-2, dit-b-4, .*, unet-adm, unet-base, unet-ddpm, unet-ldm-4, unet-ldm-5, unet-ldm-6, unet-resnet, unet-tiny",
        ),
        ("train.lrr=1", "unknown config key 'train.lrr'; valid keys: batch_size"),
        ("diffusion.prediction_type=x", "valid choices: epsilon, v_prediction, sample"),
        ("diffusion.beta_schedule=cos", "valid choices: cosine, linear, scaled_linear, sigmoid"),
        ("sample.sampler=lms", "valid choices: ddim, ddpm, dpm-solver++, euler, heun, lcm, pndm"),
        ("data.hflip=maybe", "data.hflip: expected true or false"),
        ("train.batch_size=0", "train.batch_size: must be positive"),
        ("train.max_steps=1.5", "train.max_steps: expected an integer"),
        ("noequals", "key=value"),
    ],
)
def test_bad_values_name_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("+", r"\+")):
        load_config(REPO / "configs/debug.yaml", [override])


def test_sampler_must_support_prediction_type():
    with pytest.raises(ConfigError, match="'pndm' cannot sample"):
        load_config(None, ["sample.sampler=pndm", "diffusion.prediction_type=sample"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [("train.lr=abc", "train.lr"), ("model.name=nope", "valid choices: debug, dit-b-2")],
)
def test_cli_exits_non_zero_with_one_line(override, needle, capsys):
    from faice.cli import main  # the console script is sys.exit(main()): test_cli runs it for real

    assert main(["train", "--config", str(REPO / "configs/debug.yaml"), override]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_every_field_is_documented():
    rows = describe()
    assert len(rows) > 40
    assert all(help_.strip() for *_, help_ in rows), [r[0] for r in rows if not r[3].strip()]
    sections = {r[0].split(".")[0] for r in rows}
    assert sections == {f.name for f in dataclasses.fields(Config)}


def test_parse_overrides_yaml_values():
    assert parse_overrides(["a.b=1", "c=true", "d=[1, 2]", "e="]) == [
        ("a.b", 1),
        ("c", True),
        ("d", [1, 2]),
        ("e", ""),
    ]
