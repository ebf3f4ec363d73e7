"""Checkpoints as plain folders, written durably (temp dir, fsync, rename), the last K kept.

step-000200/
  model/  ema/         diffusers save_pretrained layout (config.json + safetensors)
  optimizer.pt         optimizer state   (loaded with weights_only=True)
  scheduler.pt         lr scheduler state
  scaler.pt            fp16 loss-scaler state (only when a GradScaler is in use)
  config.yaml          the resolved run config
  state.json           step, epoch, position in the epoch, last metrics
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faice.durable import TEMP_PREFIX, fsync_dir, fsync_tree, temp_path

_STEP_DIR = re.compile(r"^step-(\d+)$")
EVAL_PENDING = ".eval-pending"
"""Marker file in a checkpoint an evaluator still has to read: pruning skips it until it is removed."""
REFERENCE = "faice-checkpoint.json"
"""A folder holding only this file stands for the checkpoint it names (what an orchestrator that keeps its
own copy of every checkpoint is given instead of a second copy of the weights)."""


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
    scaler=None,
    eval_pending: bool = False,
) -> Path:
    """Write checkpoint step-N durably and delete all but the newest `keep`; returns its path.

    The folder is written under a temp name, every file and folder fsynced, then renamed into place; an
    older step-N is moved aside (not deleted) until the new one is in place. Pruning comes after that, and
    skips checkpoints an evaluation still holds (`EVAL_PENDING`; `eval_pending` marks this one so before
    it is visible, so no pruner ever sees it unmarked)."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(progress.step)
    tmp = temp_path(final)
    tmp.mkdir()
    try:
        save_model(model, tmp / "model")
        if ema_model is not None:
            ema_model.save_pretrained(tmp / "ema")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        (tmp / "config.yaml").write_text(config_yaml)
        if eval_pending:
            (tmp / EVAL_PENDING).touch()
        (tmp / "state.json").write_text(json.dumps(progress.__dict__, indent=2))  # last: marks it complete
        fsync_tree(tmp)
        aside = None
        if final.exists():  # the same step again (a resumed run re-saving it): keep it until replaced
            aside = temp_path(final)
            os.rename(final, aside)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        if not (old / EVAL_PENDING).exists():
            shutil.rmtree(old, ignore_errors=True)
    return final


def sweep_temp(run_dir: str | Path) -> list[str]:
    """Delete the temp folders dead writers left in run_dir/checkpoints (a run has one writer: call this
    when it starts); returns their names."""
    root = Path(run_dir) / "checkpoints"
    swept = sorted(p.name for p in root.glob(f"{TEMP_PREFIX}*")) if root.is_dir() else []
    for name in swept:
        shutil.rmtree(root / name, ignore_errors=True)
    return swept


def resume_candidates(run_dir: str | Path, first: Path | None) -> list[Path]:
    """The checkpoints to try on resume, best first: `first` (the newest, or the one asked for), then the
    run's older ones, newest first, for when a newer one cannot be loaded."""
    if first is None:
        return []
    step = load_step(first)
    older = [
        c for c in reversed(list_checkpoints(run_dir)) if c != first and (step is None or load_step(c) < step)
    ]
    return [first, *older]


def load_step(ckpt: str | Path) -> int | None:
    """The step a checkpoint folder's name says, None when the name is not step-N."""
    m = _STEP_DIR.match(Path(ckpt).name)
    return int(m.group(1)) if m else None


def load_first_loadable(candidates: list[Path], load) -> Path | None:
    """Call `load(ckpt)` on each candidate until one works; each one that fails is named in a warning.
    Returns the checkpoint loaded, None when there were none; raises when every one fails."""
    errors = []
    for ckpt in candidates:
        try:
            load(ckpt)
            return ckpt
        except Exception as e:  # a truncated file, a missing one, bad JSON: try the one before
            errors.append(f"{ckpt}: {type(e).__name__}: {e}")
            nxt = candidates[len(errors)] if len(errors) < len(candidates) else None
            warnings.warn(
                f"checkpoint {ckpt} cannot be loaded ({type(e).__name__}: {str(e)[:200]}); "
                + (f"falling back to {nxt.name}" if nxt is not None else "no older checkpoint is left"),
                stacklevel=2,
            )
    if errors:
        raise RuntimeError("no checkpoint of the run can be loaded:\n  " + "\n  ".join(errors))
    return None


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


def write_checkpoint_reference(folder: str | Path, ckpt: str | Path) -> Path:
    """Make `folder` a reference to the checkpoint `ckpt` (a few bytes instead of the weights)."""
    ckpt = Path(ckpt).resolve()
    ref = Path(folder) / REFERENCE
    ref.write_text(json.dumps({"checkpoint": str(ckpt), "step": load_step(ckpt)}))
    return ref


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a reference to one (write_checkpoint_reference), a run folder (its
    latest checkpoint) or a checkpoints folder. A reference whose checkpoint is gone (pruned, or its
    storage remounted elsewhere) falls back to that run's latest checkpoint, with a warning."""
    path = Path(path)
    if (path / REFERENCE).is_file():
        target = Path(json.loads((path / REFERENCE).read_text())["checkpoint"])
        if (target / "state.json").exists():
            return target
        latest = latest_checkpoint(target.parent.parent)
        if latest is None:
            raise FileNotFoundError(
                f"{path / REFERENCE} names {target}, which is gone, and its run has no other"
            )
        warnings.warn(
            f"{path / REFERENCE} names {target}, which is gone; resuming from {latest}", stacklevel=2
        )
        return latest
    if (path / "state.json").exists():
        return path
    ckpt = latest_checkpoint(path) or latest_checkpoint(path.parent if path.name == "checkpoints" else path)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint found at {path} (expected a step-N folder or a run folder)")
    return ckpt


def resume_point(ray_checkpoint: str | Path | None, run_dir: str | Path) -> str | Path:
    """What a restarted run resumes from: Ray's latest checkpoint of it (a reference, usually), unless the
    run folder holds a newer one. Ray records a checkpoint a moment after faice has written it, so a
    launcher or cluster killed in between would otherwise cost one more interval. Without Ray's: "auto"
    (the run's latest, if any)."""
    if ray_checkpoint is None:
        return "auto"
    ours = latest_checkpoint(run_dir)  # (complete step-N folders only: its step is known)
    if ours is None:
        return ray_checkpoint
    try:
        theirs = load_step(resolve_checkpoint(ray_checkpoint))
    except FileNotFoundError:  # gone, with nothing left of its run
        return ours
    return ours if theirs is None or load_step(ours) > theirs else ray_checkpoint


def checkpoint_config(ckpt: str | Path, overrides: list[str] | None = None):
    """(the run Config saved with a checkpoint plus dotted `overrides`, the checkpoint folder)."""
    from faice.config import from_tree, read_yaml

    path = resolve_checkpoint(ckpt)
    return from_tree(read_yaml(path / "config.yaml", "checkpoint config"), overrides or []), path
