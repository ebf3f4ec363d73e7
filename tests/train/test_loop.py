"""The training loop's promises: checkpoints, outputs, EMA, divergence handling, no silent overwrite."""

import json
import math

import pytest
import torch
import yaml

from faice.config import ConfigError
from faice.train.checkpoint import list_checkpoints, load_state
from faice.train.loop import Hooks, TrainingDiverged, train


@pytest.mark.timeout(300)
def test_run_writes_checkpoints_samples_curve_and_config(debug_cfg, tmp_path):
    cfg = debug_cfg(
        "train.max_steps=8", "train.checkpoint_every=2", "train.keep_checkpoints=2", "eval.every=4"
    )
    result = train(cfg, run_dir=tmp_path / "run")
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step-0000006", "step-0000008"]
    assert not list((run / "checkpoints").glob(".tmp*"))
    ckpt = result.checkpoint
    assert {p.name for p in ckpt.iterdir()} == {
        "model",
        "ema",
        "optimizer.pt",
        "scheduler.pt",
        "config.yaml",
        "state.json",
    }
    assert load_state(ckpt).step == 8
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 8
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [2, 4, 6, 8]
    assert (run / "samples" / "step-0000004.png").exists()
    assert len(list((run / "samples" / "final").glob("sample-*.png"))) == cfg.eval.grid_images
    assert (run / "samples" / "final" / "grid.png").exists() and (run / "loss.png").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 8 and summary["parameters"] > 0


@pytest.mark.timeout(300)
def test_ema_tracks_but_differs_from_weights(debug_cfg, tmp_path):
    from safetensors.torch import load_file

    cfg = debug_cfg("train.max_steps=6", "train.ema_decay=0.9")
    ckpt = train(cfg, run_dir=tmp_path / "run").checkpoint
    model = load_file(next((ckpt / "model").glob("*.safetensors")))
    ema = load_file(next((ckpt / "ema").glob("*.safetensors")))
    torch.manual_seed(cfg.train.seed)
    from faice.models import build_model

    init = build_model(cfg.model, cfg.data.resolution).state_dict()
    key = next(k for k in model if k.endswith("conv_in.weight"))
    assert not torch.equal(model[key], ema[key]), "EMA is a copy of the weights"
    assert not torch.equal(init[key], ema[key]), "EMA never moved from the initial weights"


@pytest.mark.timeout(300)
def test_nan_loss_stops_and_keeps_last_good_checkpoint(debug_cfg, tmp_path):
    cfg = debug_cfg("train.max_steps=10", "train.checkpoint_every=3")

    def poison(state):
        if state.progress.step == 4:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"at step 5.*step-0000003"):
        train(cfg, run_dir=tmp_path / "run", hooks=Hooks(on_step=poison))
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step-0000003"]
    from safetensors.torch import load_file

    weights = load_file(next((ckpts[0] / "model").glob("*.safetensors")))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_refuses_to_overwrite_a_run_without_resume(debug_cfg, tmp_path):
    cfg = debug_cfg("train.max_steps=2")
    train(cfg, run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, run_dir=tmp_path / "run")


def test_grad_accumulation_consumes_micro_batches(debug_cfg, tmp_path):
    cfg = debug_cfg("train.max_steps=3", "train.grad_accum=2")
    result = train(cfg, run_dir=tmp_path / "run")
    state = load_state(result.checkpoint)
    assert state.step == 3 and state.epoch * 10 + state.batch_in_epoch == 6


def test_mixed_precision_bf16_runs_on_any_device(debug_cfg, tmp_path):
    cfg = debug_cfg("train.max_steps=2", "train.mixed_precision=bf16")
    result = train(cfg, run_dir=tmp_path / "run")
    assert result.step == 2 and math.isfinite(result.metrics["loss"]) and result.metrics["loss"] > 0


def test_metrics_lines_after_the_checkpoint_are_dropped_on_resume(debug_cfg, tmp_path):
    cfg = debug_cfg("train.max_steps=8", "train.checkpoint_every=4", "train.log_every=1")
    run = tmp_path / "run"
    train(cfg, run_dir=run, hooks=Hooks(should_stop=lambda step: step >= 6))
    (run / "checkpoints" / "step-0000006").rename(run / "checkpoints" / "gone")  # as if killed before saving
    train(cfg, run_dir=run, resume=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 9))  # 5 and 6 once, not twice


@pytest.mark.timeout(300)
def test_a_rung_checkpoint_waits_for_its_pool_score_before_training_on(debug_cfg, tmp_path):
    """ASHA on a pool metric: at the first checkpoint at or past each rung (steps 3 -> checkpoint 4, and 6)
    the loop waits for that checkpoint's score and reports it before its next step; other checkpoints
    (2, 8) never wait. The pool here is a plain function that scores a checkpoint on its third poll."""
    cfg = debug_cfg(
        "train.max_steps=8", "train.checkpoint_every=2", "train.log_every=1", "eval.num_samples=4"
    )
    events: list[tuple] = []
    submitted: dict[int, int] = {}  # checkpoint step -> polls since it was saved

    def on_checkpoint(path, step, metrics):
        submitted[step] = 0
        events.append(("checkpoint", step))

    def poll_evals():
        rows = []
        for step in list(submitted):
            submitted[step] += 1
            if submitted[step] == 3:
                rows.append({"step": step, "fid[faice-tiny]": 100.0 - step})
                del submitted[step]
        return rows

    hooks = Hooks(
        on_checkpoint=on_checkpoint,
        on_metrics=lambda step, m: events.append(("report", step, m.get("eval_step"))),
        inline_eval=False,
        poll_evals=poll_evals,
        await_eval_steps=frozenset({3, 6}),
        await_eval_timeout_s=60,
    )
    result = train(cfg, run_dir=tmp_path / "run", hooks=hooks)
    assert result.step == 8
    # the rungs' scores are carried by the first report after their checkpoint (without the wait they would
    # arrive on the third poll, at step 7 and never for 6): ASHA hears them before the trial trains on
    assert ("report", 5, 4) in events and ("report", 7, 6) in events, events
    assert not any(e[0] == "report" and e[2] == 2 and e[1] < 4 for e in events), events  # 2 is no rung
    assert result.eval_blocked_s > 0


def test_peak_memory_is_this_runs_not_an_earlier_one_of_the_process():
    """A reused Tune trial actor runs trial after trial: each run's peak_mem_mb is its own (resident memory
    at its log lines on a CPU), not the process's all-time peak that an earlier, bigger trial set. In a
    fresh process: this test's own process may already have peaked higher than anything it allocates."""
    import subprocess
    import sys

    script = """
import json, resource, torch
from faice.train.loop import peak_memory_mb
big = torch.ones(2**27)  # 512 MiB, touched: "an earlier trial"
del big
with open("/proc/self/status") as f:
    rss = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
print(json.dumps({"now": peak_memory_mb(torch.device("cpu")), "rss": rss,
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["now"] == pytest.approx(got["rss"], rel=0.05)
    assert got["now"] < got["peak"] - 256, got
