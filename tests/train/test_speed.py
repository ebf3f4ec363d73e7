"""The GPU speed switches reach what they control: channels-last weights and batches, the fused AdamW,
the TF32 flags, torch.compile of the denoiser (and a clear error where it cannot work)."""

import pytest
import torch

from faice.config import ConfigError
from faice.train import speed
from faice.train.loop import train


def _state(cfg):
    from accelerate import Accelerator

    from faice.train.state import build_state

    return build_state(cfg, Accelerator(cpu=True))


def _convs(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.timeout(300)
def test_channels_last_reaches_weights_batches_and_checkpoints(debug_cfg, tmp_path):
    state = _state(debug_cfg("train.channels_last=true"))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(state.model))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(state.ema.model))
    batch = torch.randn(2, 3, 8, 8)
    assert speed.to_memory_format(batch, True).is_contiguous(memory_format=torch.channels_last)
    assert speed.to_memory_format(batch, False) is batch
    plain = _state(debug_cfg())
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(plain.model))
    # a run with it trains, checkpoints and resumes like any other
    result = train(debug_cfg("train.channels_last=true", "train.max_steps=2"), run_dir=tmp_path / "run")
    assert result.step == 2 and (result.checkpoint / "model").is_dir()


def test_fused_optimizer_and_tf32_reach_adamw_and_the_backends(debug_cfg):
    assert _state(debug_cfg("train.fused_optimizer=true")).optimizer.defaults["fused"] is True
    assert not _state(debug_cfg()).optimizer.defaults.get("fused")
    _state(debug_cfg("train.allow_tf32=true"))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    _state(debug_cfg())  # the next run in this process does not inherit it
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_compile_wraps_the_denoisers_forward_in_place(debug_cfg):
    state = _state(debug_cfg("train.compile=default"))
    assert state.model._compiled_call_impl is not None  # nn.Module.compile: same module, same state_dict
    assert all(not k.startswith("_orig_mod") for k in state.model.state_dict())
    assert _state(debug_cfg()).model._compiled_call_impl is None


def test_compile_on_a_cpu_without_a_cxx_compiler_is_a_clear_error(debug_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, clang++ or c++ here
    with pytest.raises(ConfigError, match=r"train.compile: 'max-autotune' on CPU needs a C\+\+ compiler"):
        _state(debug_cfg("train.compile=max-autotune"))
    speed.check_compile("none", torch.device("cpu"))  # off: nothing to check
    with pytest.raises(
        ConfigError, match="train.compile: invalid choice .fast.; valid choices: none, default, max-autotune"
    ):
        debug_cfg("train.compile=fast")


def test_bf16_on_a_gpu_without_it_is_a_clear_error():
    with pytest.raises(ConfigError, match="train.mixed_precision: bf16 needs an Ampere-or-newer GPU.*V100"):
        speed.check_precision("bf16", cuda=True, bf16_supported=False, device_name="Tesla V100")
    speed.check_precision("bf16", cuda=False, bf16_supported=False)  # CPU autocast has bf16
    speed.check_precision("fp16", cuda=True, bf16_supported=False)
    speed.check_precision("bf16", cuda=True, bf16_supported=True)


# a subprocess: the setting is process-wide and not undone, and this test process may have trained already
REUSE = """
import resource, sys
import torch
from accelerate import Accelerator
from faice.config import load_config
from faice.train.state import build_state

def faults_of_big_tensors():  # minor page faults of five 64 MiB allocations after two warm-ups
    for _ in range(2):
        torch.ones(16 << 20).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.ones(16 << 20).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

for value in ("false", "true"):
    build_state(load_config("configs/debug.yaml", [f"data.path={sys.argv[1]}", f"train.cpu_reuse_memory={value}"]),
                Accelerator(cpu=True))
    print(value, faults_of_big_tensors())
"""


@pytest.mark.timeout(120)
def test_cpu_reuse_memory_stops_the_page_faults_of_every_step(debug_data):
    """glibc maps every allocation above 32 MiB afresh and unmaps it on free: 64 MiB = 16384 pages faulted
    in per allocation. train.cpu_reuse_memory=true (the default) keeps freed memory for the next one."""
    import subprocess
    import sys
    from pathlib import Path

    if speed.platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", REUSE, str(debug_data)], cwd=repo, capture_output=True,
                         text=True, timeout=100, check=True)  # fmt: skip
    faults = dict(line.split() for line in out.stdout.splitlines())
    assert int(faults["false"]) > 5 * 16384 * 0.9, faults  # off: every allocation faulted in
    assert int(faults["true"]) < 16384, faults  # on: reused (at most one allocation's worth)
    assert speed.reuse_cpu_memory(False, torch.device("cpu")) is False
    assert speed.reuse_cpu_memory(True, torch.device("cuda")) is False  # host memory of GPU runs untouched
