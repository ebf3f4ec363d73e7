"""Nothing lost on disk: torn records, truncated checkpoints, leftovers of dead writers, failing writes."""

import json
import os
import shutil
import socket

import pytest
import torch

from faice.durable import append_json_line, cut_torn_line, read_json_lines, temp_path, write_text_atomic
from faice.results import read_jsonl
from faice.train.checkpoint import EVAL_PENDING, list_checkpoints, load_tensors, save_checkpoint
from faice.train.loop import Hooks, make_accelerator, train
from faice.train.state import build_state, load_into


def test_a_torn_last_line_is_skipped_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "eval.jsonl"
    append_json_line(path, {"step": 1, "fid": 3.0})
    with path.open("a") as f:
        f.write('{"step": 2, "fi')  # the writer died here (a full disk, a dead NFS client)
    assert [r["step"] for r in read_jsonl(path)] == [1]
    append_json_line(path, {"step": 3, "fid": 2.0})
    assert [r["step"] for r in read_json_lines(path)] == [1, 3]  # the new line did not glue onto the torn one
    assert path.read_text().endswith("}\n") and cut_torn_line(path) == 0
    path.write_bytes(b'{"no newline at all')
    assert cut_torn_line(path) == 19 and path.read_bytes() == b""


def test_temp_names_are_unique_across_hosts_and_writers(tmp_path):
    names = {temp_path(tmp_path / "results.csv").name for _ in range(50)}
    assert len(names) == 50  # the same pid on two hosts (or twice on one) never shares a temp name
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    assert all(host in n and f"-{os.getpid()}-" in n and n.startswith(".tmp-results.csv-") for n in names)


def test_a_failing_write_leaves_the_old_file_whole_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    write_text_atomic(path, "trial,fid\na,1.0\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, "trial,fid\na,1.0\nb,2.0\n")
    monkeypatch.undo()
    assert path.read_text() == "trial,fid\na,1.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


@pytest.mark.timeout(300)
@pytest.mark.wires("train.keep_checkpoints")
def test_resume_survives_a_truncated_checkpoint_a_torn_metrics_line_and_a_dead_writers_temp(
    debug_cfg, tmp_path
):
    """The newest checkpoint is truncated on disk, metrics.jsonl ends in half a line and a dead writer left
    a temp folder: the resume warns naming the broken checkpoint, continues from the one before it (one
    checkpoint period recomputed), sweeps the temp folder and ends with a clean, complete record."""
    cfg = debug_cfg(
        "train.max_steps=9", "train.checkpoint_every=3", "train.keep_checkpoints=2", "eval.every=0"
    )
    run = tmp_path / "run"
    train(cfg, run_dir=run, hooks=Hooks(should_stop=lambda step: step >= 6))
    assert [c.name for c in list_checkpoints(run)] == ["step-0000003", "step-0000006"]
    newest = list_checkpoints(run)[-1]
    weights = next((newest / "model").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a power cut mid-copy
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "lo')
    stale = run / "checkpoints" / ".tmp-step-0000009-otherhost-4242-deadbeef"
    (stale / "model").mkdir(parents=True)

    with pytest.warns(
        UserWarning, match=r"checkpoint .*step-0000006 cannot be loaded .*falling back to step-0000003"
    ):
        result = train(cfg, run_dir=run, resume=True)
    assert result.step == 9 and not stale.exists()
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert steps == [2, 4, 6, 8, 9], steps  # trimmed to the step resumed from: no step twice, none torn
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    assert [c.name for c in list_checkpoints(run)] == ["step-0000006", "step-0000009"]
    assert next((run / "checkpoints" / "step-0000006" / "model").glob("*.safetensors")).stat().st_size > 0
    load_tensors(run / "checkpoints" / "step-0000006" / "optimizer.pt")  # rewritten whole by the resumed leg


@pytest.mark.timeout(120)
def test_pending_checkpoints_are_never_pruned_and_the_fp16_loss_scale_is_restored(debug_cfg, tmp_path):
    cfg = debug_cfg()
    acc = make_accelerator(cfg)
    state = build_state(cfg, acc)
    scaler = torch.amp.GradScaler("cpu", init_scale=1234.0, growth_interval=7)  # what fp16 on a GPU uses
    args = (acc.unwrap_model(state.model), None, state.optimizer, state.lr_scheduler, "{}")
    for step in (1, 2, 3):
        state.progress.step = step
        save_checkpoint(tmp_path, state.progress, *args, keep=1, scaler=scaler, eval_pending=step == 1)
    names = [c.name for c in list_checkpoints(tmp_path)]
    assert names == ["step-0000001", "step-0000003"], names  # step 1 waits for its evaluation
    assert (tmp_path / "checkpoints" / "step-0000001" / EVAL_PENDING).exists()
    assert not (tmp_path / "checkpoints" / "step-0000003" / EVAL_PENDING).exists()
    state.progress.step = 3
    save_checkpoint(tmp_path, state.progress, *args, keep=1, scaler=scaler)  # step 3 again: replaced whole
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]

    fresh = build_state(cfg, acc)
    fresh.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    try:
        load_into(fresh, tmp_path / "checkpoints" / "step-0000003")
        assert fresh.accelerator.scaler.get_scale() == 1234.0
        assert fresh.accelerator.scaler.get_growth_interval() == 7
        assert fresh.progress.step == 3
    finally:
        fresh.accelerator.scaler = None


def test_a_checkpoint_reference_resolves_to_its_checkpoint_or_the_runs_latest(debug_cfg, tmp_path):
    """What Ray Train is given instead of a copy of the weights: a folder naming faice's checkpoint. It
    resolves to that checkpoint; if that one is gone (pruned), to the run's latest, with a warning."""
    from faice.train.checkpoint import REFERENCE, resolve_checkpoint, write_checkpoint_reference

    cfg = debug_cfg("train.max_steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=2")
    run = train(cfg, run_dir=tmp_path / "run")
    older, newest = list_checkpoints(run.run_dir)
    ref = tmp_path / "ref"
    ref.mkdir()
    write_checkpoint_reference(ref, older)
    assert [p.name for p in ref.iterdir()] == [REFERENCE] and (ref / REFERENCE).stat().st_size < 500
    assert resolve_checkpoint(ref) == older.resolve()
    shutil.rmtree(older)
    with pytest.warns(UserWarning, match="is gone; resuming from"):
        assert resolve_checkpoint(ref) == newest
    resumed = train(
        debug_cfg("train.max_steps=6", "train.checkpoint_every=2"), run_dir=run.run_dir, resume=str(ref)
    )
    assert resumed.step == 6


def test_a_restart_resumes_from_the_newer_of_rays_checkpoint_and_the_run_folders(debug_cfg, tmp_path):
    """Ray records a checkpoint a moment after faice wrote it: a launcher or cluster killed in between
    leaves Ray's latest one older than the run folder's, and the restart takes the run folder's newest.
    Ray's is kept when it is the newest (or the only one left); without Ray's, the run's latest."""
    from faice.train.checkpoint import resume_point, write_checkpoint_reference

    cfg = debug_cfg("train.max_steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=2")
    run = train(cfg, run_dir=tmp_path / "run")
    older, newest = list_checkpoints(run.run_dir)
    stale, fresh = tmp_path / "stale", tmp_path / "fresh"
    for ref, ckpt in ((stale, older), (fresh, newest)):
        ref.mkdir()
        write_checkpoint_reference(ref, ckpt)
    assert resume_point(stale, run.run_dir) == newest
    assert resume_point(fresh, run.run_dir) == fresh
    assert resume_point(None, run.run_dir) == "auto"
    assert resume_point(stale, tmp_path / "elsewhere") == stale  # no run folder checkpoints to prefer
    resumed = train(
        debug_cfg("train.max_steps=6", "train.checkpoint_every=2"),
        run_dir=run.run_dir,
        resume=str(resume_point(stale, run.run_dir)),
    )
    assert resumed.step == 6
    assert [m["resumed_from"] for m in read_jsonl(run.run_dir / "metrics.jsonl") if "resumed_from" in m] == [
        4
    ]
