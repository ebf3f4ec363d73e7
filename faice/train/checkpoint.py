"""Checkpoints as plain folders, written atomically (temp dir + rename), the last K kept.

step-000200/
  model/  ema/         diffusers save_pretrained layout (config.json + safetensors)
  optimizer.pt         optimizer state   (loaded with weights_only=True)
  scheduler.pt         lr scheduler state
  config.yaml          the resolved run config
  state.json           step, epoch, position in the epoch, last metrics
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

_STEP_DIR = re.compile(r"^step-(\d+)$")
EVAL_PENDING = ".eval-pending"
"""Marker file in a checkpoint an evaluator still has to read: pruning skips it until it is removed."""


@dataclass
class TrainProgress:
    """Where a run is: enough to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0  # training wall time summed over every leg of the run
    metrics: dict = field(default_factory=dict)


def checkpoint_name(step: int) -> str:
    """The folder name of step `step`'s checkpoint: step-0000123."""
    return f"step-{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints under run_dir/checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint folder of a run, None when it has none."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: str | Path,
    progress: TrainProgress,
    model: torch.nn.Module,
    ema_model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    config_yaml: str,
    keep: int,
) -> Path:
    """Write checkpoint step-N atomically and delete all but the newest `keep`; returns its path."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(progress.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, tmp / "model")
    if ema_model is not None:
        ema_model.save_pretrained(tmp / "ema")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "config.yaml").write_text(config_yaml)
    (tmp / "state.json").write_text(json.dumps(progress.__dict__, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        if not (old / EVAL_PENDING).exists():
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(ckpt: str | Path) -> TrainProgress:
    """The training progress (step, epoch, position in the epoch) saved in a checkpoint."""
    return TrainProgress(**json.loads((Path(ckpt) / "state.json").read_text()))


def load_tensors(path: str | Path) -> dict:
    """A .pt file of the checkpoint, loaded safely (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(model: torch.nn.Module, folder: Path) -> None:
    """save_pretrained, or for a model with LoRA adapters only the adapters (diffusers' LoRA layout)."""
    if getattr(model, "peft_config", None):
        from faice.text2image import save_lora

        peft = model.peft_config["default"]
        save_lora(model, folder, peft.r, peft.lora_alpha, sorted(peft.target_modules))
    else:
        model.save_pretrained(folder)


def load_weights(module: torch.nn.Module, folder: str | Path) -> None:
    """Copy weights saved with save_pretrained in `folder` into an existing module (or its adapters)."""
    from safetensors.torch import load_file

    if getattr(module, "peft_config", None):
        from faice.text2image import load_lora_into

        return load_lora_into(module, folder)

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    state = {}
    for f in files:
        state.update(load_file(f))
    module.load_state_dict(state)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder (its latest checkpoint) or a checkpoints folder."""
    path = Path(path)
    if (path / "state.json").exists():
        return path
    ckpt = latest_checkpoint(path) or latest_checkpoint(path.parent if path.name == "checkpoints" else path)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint found at {path} (expected a step-N folder or a run folder)")
    return ckpt


def checkpoint_config(ckpt: str | Path, overrides: list[str] | None = None):
    """(the run Config saved with a checkpoint plus dotted `overrides`, the checkpoint folder)."""
    from faice.config import from_tree, read_yaml

    path = resolve_checkpoint(ckpt)
    return from_tree(read_yaml(path / "config.yaml", "checkpoint config"), overrides or []), path
