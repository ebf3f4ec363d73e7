"""The speed switches of a run: on GPUs `train.channels_last`, `train.fused_optimizer`, `train.allow_tf32`,
`train.compile` (all off by default; the GPU profiles switch them on), on CPUs `train.cpu_reuse_memory`
(on by default). Each is a small function build_state and train_step call, so every run (local, Ray
worker, test) applies them the same way.

None of them changes what is computed beyond floating-point rounding (TF32 rounds matmul inputs to a
10-bit mantissa), so they are not part of a checkpoint: a run may resume with them changed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil

import torch

from faice.errors import ConfigError

# train.compile -> torch.compile's mode (None = no compilation)
COMPILE_MODES: dict[str, str | None] = {"none": None, "default": "default", "max-autotune": "max-autotune"}


def set_tf32(allow: bool) -> None:
    """TF32 tensor cores for float32 matmuls and cuDNN convolutions (Ampere and newer); set both ways so a
    second run in the same process does not inherit the first's choice. No effect on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


# glibc mallopt parameters (malloc.h) and the values cpu_reuse_memory sets: allocations up to 1 GiB come
# from the heap, and the heap is never trimmed below 2 GiB of free memory at its top
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_BELOW, KEEP_FREE_TOP = 1 << 30, (1 << 31) - 1


def reuse_cpu_memory(enabled: bool, device: torch.device) -> bool:
    """True when glibc's malloc now keeps freed memory for reuse (train.cpu_reuse_memory on a CPU device).

    By default glibc serves each allocation above a (dynamic, at most 32 MiB) threshold with a fresh mmap
    and unmaps it on free, so every training step faults its activations in again, zero-filled by the
    kernel: ~20k minor page faults a step for the demo UNet at batch 32. Raising the mmap and trim
    thresholds keeps that memory in the heap for the next step. Process-wide and not undone (a process
    that trained once keeps its peak memory); a no-op on other devices and C libraries."""
    if not enabled or device.type != "cpu" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_BELOW)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_TOP)
    )


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An image batch (N, C, H, W) in the run's memory format; other shapes are left as they are."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def adamw_kwargs(fused: bool) -> dict:
    """AdamW's implementation: fused (one kernel for all parameters; CUDA, and CPU since PyTorch 2.4) or
    PyTorch's default choice (foreach on CUDA)."""
    return {"fused": True} if fused else {}


def cxx_compiler() -> str | None:
    """The C++ compiler TorchInductor would use for CPU kernels ($CXX, else g++ or clang++), or None."""
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def check_compile(mode: str, device: torch.device) -> None:
    """A clear error before training when torch.compile cannot work here (a CPU without a C++ compiler)."""
    if COMPILE_MODES[mode] is None:
        return
    if device.type == "cpu" and cxx_compiler() is None:
        raise ConfigError(
            f"train.compile: {mode!r} on CPU needs a C++ compiler for TorchInductor's kernels (g++, clang++ "
            "or $CXX) and none was found; install one (e.g. apt install g++) or set train.compile=none"
        )


def compile_in_place(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """torch.compile `model`'s forward in place (nn.Module.compile): the module, its parameters and its
    state_dict keys stay what they were, so checkpoints, EMA and DDP see the same object (check_compile
    first, before the run does any work)."""
    if COMPILE_MODES[mode] is not None:
        model.compile(mode=COMPILE_MODES[mode])
    return model


def check_precision(mode: str, cuda: bool, bf16_supported: bool, device_name: str = "GPU") -> None:
    """bf16 autocast on a GPU older than Ampere would fail inside accelerate: say so, naming the key."""
    if mode == "bf16" and cuda and not bf16_supported:
        raise ConfigError(
            f"train.mixed_precision: bf16 needs an Ampere-or-newer GPU and this {device_name} has no bf16; "
            "set train.mixed_precision=fp16 (or no)"
        )


def check_device_precision(mode: str) -> None:
    """check_precision on this process's CUDA device, if any."""
    cuda = torch.cuda.is_available()
    check_precision(
        mode, cuda, cuda and torch.cuda.is_bf16_supported(), torch.cuda.get_device_name() if cuda else "CPU"
    )
