"""Checkpoint evaluation inside a local training run: eval.jsonl, grids, reported metrics."""

import json

import pytest

from faice.results import read_jsonl
from faice.train.checkpoint import EVAL_PENDING, list_checkpoints
from faice.train.loop import Hooks, train


@pytest.mark.wires("eval.num_samples", "eval.extractor", "eval.stats_dir", "eval.num_inference_steps")
def test_local_training_evaluates_each_checkpoint_inline(debug_cfg, tmp_path):
    cfg = debug_cfg(
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "eval.num_samples=12",
        "eval.num_inference_steps=3",
        "eval.kid_subset_size=10",
        "log.wandb=disabled",
        f"eval.stats_dir={tmp_path / 'stats'}",
    )
    reported = []
    result = train(cfg, hooks=Hooks(on_checkpoint=lambda path, step, m: reported.append((step, m))))
    rows = read_jsonl(result.run_dir / "eval.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        assert row["fid[faice-tiny]"] > 0 and row["is[faice-tiny]"] >= 1 and "kid[faice-tiny]" in row
        assert row["num_samples"] == 12 and row["where"] == "inline" and row["sampler_steps"] == 3
        assert (result.run_dir / "eval" / f"step-{row['step']:07d}.png").is_file()
    # every checkpoint report carries the FID of that checkpoint, for Tune and ASHA
    assert [(s, m["eval_step"]) for s, m in reported] == [(2, 2), (4, 4)]
    assert reported[-1][1]["fid[faice-tiny]"] == rows[-1]["fid[faice-tiny]"]
    logged = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "fid[faice-tiny]" in r]
    assert [r["eval_step"] for r in logged] == [2, 4]
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1  # one reference, computed once


def test_checkpoints_pending_evaluation_survive_pruning(debug_cfg):
    cfg = debug_cfg(
        "train.max_steps=6", "train.checkpoint_every=1", "train.keep_checkpoints=2", "log.wandb=disabled"
    )
    marked = []

    def mark(path, step, metrics):
        if step == 2:
            (path / EVAL_PENDING).touch()
            marked.append(path)

    result = train(cfg, hooks=Hooks(on_checkpoint=mark))
    steps = [int(p.name.split("-")[1]) for p in list_checkpoints(result.run_dir)]
    assert steps == [2, 5, 6], steps
    (marked[0] / EVAL_PENDING).unlink()
    assert json.loads((marked[0] / "state.json").read_text())["step"] == 2


def test_cli_evaluate_checkpoint(debug_cfg, tmp_path, capsys):
    from faice.cli import main

    cfg = debug_cfg("train.max_steps=2", "train.checkpoint_every=0")
    run = train(cfg).run_dir
    args = ["evaluate", "--checkpoint", str(run), "--num-samples", "10", "--steps", "2"]
    args += ["--stats-dir", str(tmp_path / "stats"), "--out", str(tmp_path / "e.json")]
    assert main(args) == 0
    row = json.loads((tmp_path / "e.json").read_text())
    assert row["step"] == 2 and row["num_samples"] == 10 and row["sampler_steps"] == 2
    assert row["fid[faice-tiny]"] > 0 and row["checkpoint"].endswith("step-0000002")
    assert "fid[faice-tiny]:" in capsys.readouterr().out
    assert main([*args, "--extractor", "nope"]) == 2
    err = capsys.readouterr().err  # one line naming the valid choices (the extractor registry's)
    assert "--extractor: invalid choice: 'nope'" in err and "'faice-tiny', 'inception'" in err
