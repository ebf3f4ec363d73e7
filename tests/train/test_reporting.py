"""Reporting: real offline W&B runs, JSONL metrics, and no secret in anything a run writes."""

import os

import pytest

from faice.train.loop import train
from faice.train.reporting import redact, wandb_mode

SECRET = "faicetest0123456789abcdef0123456789abcdef"


def test_wandb_mode_follows_the_api_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"


def test_redact_hides_secret_looking_keys():
    tree = {"log": {"wandb_api_key": SECRET, "project": "p"}, "list": [{"token": "x"}], "lr": 1}
    assert redact(tree) == {
        "log": {"wandb_api_key": "***", "project": "p"},
        "list": [{"token": "***"}],
        "lr": 1,
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_offline_wandb_run_logs_and_never_stores_the_key(debug_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = debug_cfg("log.wandb=offline", "eval.every=3", "train.run_name=secret-check")
    run = tmp_path / "run"
    train(cfg, run_dir=run)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "no offline W&B run was written"
    assert list(offline[0].glob("*.wandb")), "the W&B run has no data file"
    media = list(offline[0].rglob("*.png"))
    assert media, "sample grids were not logged to W&B"
    leaks = []
    for root, _, files in os.walk(tmp_path):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                if SECRET.encode() in f.read():
                    leaks.append(path)
    assert not leaks, f"the W&B key leaked into {leaks}"
