"""Resume equivalence: 2N steps == N steps, stop, resume, N steps (weights, EMA, optimizer)."""

import pytest
import torch
from safetensors.torch import load_file

from faice.train.checkpoint import list_checkpoints, load_tensors
from faice.train.loop import Hooks, train


def _weights(ckpt, sub):
    return load_file(next((ckpt / sub).glob("*.safetensors")))


def _assert_same_checkpoint(a, b):
    for sub in ("model", "ema"):
        wa, wb = _weights(a, sub), _weights(b, sub)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=f"{sub}/{k}")
    oa, ob = load_tensors(a / "optimizer.pt"), load_tensors(b / "optimizer.pt")
    for i, s in oa["state"].items():
        torch.testing.assert_close(s["exp_avg"], ob["state"][i]["exp_avg"], rtol=0, atol=1e-6)
    assert load_tensors(a / "scheduler.pt") == load_tensors(b / "scheduler.pt")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.timeout(300)
def test_resume_equals_uninterrupted(debug_cfg, tmp_path, workers):
    # 96 images / batch 8 with 2 readers -> 10 batches per epoch: 14 steps cross an epoch boundary
    overrides = [
        "train.max_steps=14",
        "train.checkpoint_every=7",
        f"data.num_workers={workers}",
        "model.dropout=0.1",
    ]
    cfg = debug_cfg(*overrides)
    full = train(cfg, run_dir=tmp_path / "full")

    stopped = train(cfg, run_dir=tmp_path / "resumed", hooks=Hooks(should_stop=lambda step: step >= 7))
    assert stopped.step == 7 and [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step-0000007"]
    resumed = train(cfg, run_dir=tmp_path / "resumed", resume=True)
    assert resumed.step == 14
    _assert_same_checkpoint(full.checkpoint, resumed.checkpoint)

    # and the comparison can fail: a different seed gives different weights
    other = train(debug_cfg(*overrides, "train.seed=1"), run_dir=tmp_path / "other")
    with pytest.raises(AssertionError):
        _assert_same_checkpoint(full.checkpoint, other.checkpoint)
