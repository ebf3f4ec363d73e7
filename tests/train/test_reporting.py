"""Reporting: real offline W&B runs, JSONL metrics, and no secret in anything a run writes."""

import json
import os
from pathlib import Path

import pytest

from faice.train.loop import train
from faice.train.reporting import redact, wait_for_exit_record, wandb_mode, wandb_record_types

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
@pytest.mark.wires("log.wandb", "log.project", "log.entity", "log.group", "log.tags")
def test_offline_wandb_run_logs_and_never_stores_the_key(debug_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = debug_cfg("log.wandb=offline", "eval.every=3", "train.run_name=secret-check", "log.project=proj-wired",
                    "log.entity=lab-wired", "log.group=group-wired", "log.tags=[tag-one, tag-two]")  # fmt: skip
    run = tmp_path / "run"
    train(cfg, run_dir=run)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "no offline W&B run was written"
    assert list(offline[0].glob("*.wandb")), "the W&B run has no data file"
    # closing the run waited until its file was whole (the service is kept for the next run): read at once
    run_file = next(offline[0].glob("*.wandb"))
    kinds = wandb_record_types(run_file)
    assert kinds[:2] == ["header", "run"] and kinds[-1] == "exit" and "history" in kinds, kinds
    torn = tmp_path / "torn.wandb"  # a file W&B is still writing: no exit record yet, the last one cut
    torn.write_bytes(run_file.read_bytes()[: run_file.stat().st_size - 3])
    assert wandb_record_types(torn)[-1] == "torn" and not wait_for_exit_record(torn, timeout_s=0.2)
    alien = tmp_path / "alien.wandb"  # not W&B's format: no wait for a record that will never parse
    alien.write_bytes(b"W&B\x00\x00\x00\x00" + b"\x00\x00\x00\x00\x05\x00\x01" + b"\xff" * 5)
    assert not wait_for_exit_record(alien, timeout_s=30)
    media = list(offline[0].rglob("*.png"))
    assert media, "sample grids were not logged to W&B"
    record = json.loads((run / "wandb" / "faice-run.json").read_text())  # what `faice report` links from
    assert record["id"] == "secret-check" and record["mode"] == "offline" and record["url"] is None
    assert record["project"] == "proj-wired" and record["group"] == "group-wired"
    data = b"".join(p.read_bytes() for p in offline[0].glob("*.wandb"))  # the run record W&B will sync
    for value in (b"proj-wired", b"lab-wired", b"group-wired", b"tag-one", b"tag-two"):
        assert value in data, value
    leaks = []
    for root, _, files in os.walk(tmp_path):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                if SECRET.encode() in f.read():
                    leaks.append(path)
    assert not leaks, f"the W&B key leaked into {leaks}"


_KILLED_RUN = """
import os, sys
from faice.config import load_config
from faice.train.loop import Hooks, train

cfg = load_config(sys.argv[1], sys.argv[3:])

def killed(path, step, metrics):  # Ray kills a stopped trial's workers right after a report
    if step == 4:
        os._exit(0)

train(cfg, run_dir=sys.argv[2], hooks=Hooks(on_checkpoint=killed))
"""


def _wandb_bytes(run) -> list[bytes]:
    return [p.read_bytes() for p in run.glob("wandb/offline-run-*/*.wandb")]


def _wandb_data(run, *needles: bytes, timeout: float = 60.0) -> bytes:
    """The runs' W&B record once it holds `needles`: a shared W&B service may close (and flush) a
    run's file a moment after `finish()` returned, so poll rather than read once."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        data = b"".join(_wandb_bytes(run))
        if all(n in data for n in needles) or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_runs_wandb_record_is_replayed_from_local_files(debug_data, tmp_path):
    """W&B loses what a killed process buffered (a trial stopped by ASHA); sync_wandb replays the run."""
    import subprocess
    import sys

    from faice.config import load_config
    from faice.results import read_jsonl
    from faice.train.outputs import sync_wandb
    from faice.train.reporting import wandb_closed_step

    repo = Path(__file__).resolve().parents[2]
    run = tmp_path / "run"
    overrides = [
        f"data.path={debug_data}", "log.wandb=offline", "train.run_name=killed", "train.max_steps=8",
        "train.checkpoint_every=2", "eval.num_samples=8", "eval.extractor=faice-tiny", "eval.reference_images=16",
        f"eval.stats_dir={tmp_path / 'stats'}", "eval.num_inference_steps=2", "eval.every=2",
    ]  # fmt: skip
    # its own W&B service, like a Ray worker (not this process's, which would keep the dead run in use)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(repo), WANDB_SILENT="true")
    cmd = [sys.executable, "-c", _KILLED_RUN, str(repo / "configs" / "debug.yaml"), str(run), *overrides]
    subprocess.run(cmd, env=env, check=True, timeout=240)
    cfg = load_config(run / "config.yaml")
    evals = read_jsonl(run / "eval.jsonl")
    assert [e["step"] for e in evals] == [2, 4] and "fid[faice-tiny]" in evals[0]
    assert wandb_closed_step(run) is None  # the killed run never finished (W&B lost what it buffered)
    assert len(list(run.glob("wandb/offline-run-*"))) == 1

    assert sync_wandb(cfg, run, []) == "replayed"
    segments = sorted(run.glob("wandb/offline-run-*"), key=lambda d: d.stat().st_mtime)
    assert len(segments) == 2  # the same run id, resumed
    # the installed packages are recorded by the run's first segment, not again by the replay
    assert [(d / "files" / "requirements.txt").is_file() for d in segments] == [True, False]
    assert wandb_closed_step(run) == 4
    data = _wandb_data(run, b"fid[faice-tiny]", b"loss", b"eval_step")
    assert b"fid[faice-tiny]" in data and b"loss" in data and b"eval_step" in data
    assert list(run.glob("wandb/offline-run-*/files/media/images/eval/*.png"))  # the scored grids
    assert sync_wandb(cfg, run, []) == "none"  # complete now: nothing is logged twice

    late = {**evals[-1], "step": 4, "fid[faice-tiny]": 1.5}
    before = len(list(run.glob("wandb/offline-run-*")))
    assert sync_wandb(cfg, run, [late]) == "late"  # a finished run only gets the late evaluations
    assert len(list(run.glob("wandb/offline-run-*"))) == before + 1


def test_processes_started_for_ray_never_inherit_a_wandb_service_token(monkeypatch):
    from faice.train.reporting import forget_wandb_service, without_wandb_service
    from jobs.local_ray import local_env

    monkeypatch.setenv("WANDB_SERVICE", "2-1-tcp-localhost-9")
    assert "WANDB_SERVICE" not in local_env() and local_env()["PATH"] == os.environ["PATH"]
    assert without_wandb_service({"WANDB_SERVICE": "x", "A": "1"}) == {"A": "1"}
    forget_wandb_service()
    assert "WANDB_SERVICE" not in os.environ
