"""The `faice` command: help, config show/docs, data synth, sample and export from a real run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from faice.cli import main
from faice.train.loop import train

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["train"],
        ["sample"],
        ["export"],
        ["config", "show"],
        ["config", "docs"],
        ["data", "prepare"],
        ["data", "synth"],
        ["demo"],
    ],
)
def test_help_of_every_command(argv, capsys):
    assert main([*argv, "--help"]) == 0
    assert "usage: faice" in capsys.readouterr().out


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", "--config", "debug.yaml", "train.lr=3e-4", "model.name=unet-adm"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["lr"] == 3e-4 and shown["model"]["resample"] == "resnet"


def test_config_docs_lists_keys(capsys):
    assert main(["config", "docs"]) == 0
    out = capsys.readouterr().out
    assert "train.lr (float, default 0.0001)" in out and "Choices: cosine, linear" in out


def test_data_synth_writes_shards(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "s"), "--n", "20", "--resolution", "16"]) == 0
    assert (tmp_path / "s" / "manifest.json").exists()
    assert "train=" in capsys.readouterr().out


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--config", "debug.yaml", f"data.path={tmp_path / 'none'}", "data.source=shards"])
    assert code == 2 and "faice data prepare" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, debug_data):
    from faice.config import load_config

    out = tmp_path_factory.mktemp("run")
    cfg = load_config(REPO / "configs/debug.yaml", [f"data.path={debug_data}", "train.max_steps=4"])
    return train(cfg, run_dir=out / "run")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "pndm", "dpm-solver++"])
def test_sample_command_writes_pngs_and_grid(trained_run, tmp_path, sampler):
    out = tmp_path / "samples"
    code = main(
        [
            "sample",
            str(trained_run.run_dir),
            "--sampler",
            sampler,
            "--steps",
            "4",
            "--n",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    pngs = sorted(out.glob("sample-*.png"))
    assert len(pngs) == 3 and (out / "grid.png").exists()
    assert Image.open(pngs[0]).size == (16, 16)


def test_sample_seed_controls_the_images(trained_run, tmp_path):
    def run(seed, name):
        main(
            [
                "sample",
                str(trained_run.checkpoint),
                "--n",
                "2",
                "--steps",
                "3",
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / name),
            ]
        )
        return np.asarray(Image.open(tmp_path / name / "sample-0000.png"))

    assert np.array_equal(run(1, "a"), run(1, "b"))
    assert not np.array_equal(run(1, "a"), run(2, "c"))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "pndm"])
def test_export_loads_in_diffusers(trained_run, tmp_path, sampler):
    import diffusers
    import torch

    out = tmp_path / "pipe"
    assert main(["export", str(trained_run.checkpoint), str(out), "--sampler", sampler]) == 0
    pipe = diffusers.DiffusionPipeline.from_pretrained(out)
    assert (
        type(pipe).__name__
        == {"ddim": "DDIMPipeline", "ddpm": "DDPMPipeline", "pndm": "PNDMPipeline"}[sampler]
    )
    images = pipe(
        batch_size=2, num_inference_steps=3, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images
    assert images.shape == (2, 16, 16, 3) and np.isfinite(images).all()
    from safetensors.torch import load_file

    exported = load_file(next((out / "unet").glob("*.safetensors")))
    ema = load_file(next((trained_run.checkpoint / "ema").glob("*.safetensors")))
    assert all(torch.equal(exported[k], ema[k]) for k in ema)


def test_python_dash_m_entrypoint():
    out = subprocess.run(
        [sys.executable, "-m", "faice", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "train" in out.stdout
