"""The one training loop: local runs, Ray Train workers and tests all call `train`.

Seams (`Hooks`) let an orchestrator stop the run, see checkpoints and metrics without a second loop.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from faice.config import Config, dump_yaml, save_config, to_dict
from faice.data.ensure import ensure_dataset
from faice.durable import read_json_lines, write_text_atomic
from faice.errors import ConfigError
from faice.tasks import task_of
from faice.train import speed
from faice.train.checkpoint import (
    TrainProgress,
    latest_checkpoint,
    load_first_loadable,
    resolve_checkpoint,
    resume_candidates,
    save_checkpoint,
    sweep_temp,
)
from faice.train.reporting import default_reporter, redact
from faice.train.state import TrainState, build_state, load_into, train_step


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class Hooks:
    """Optional callbacks; each receives plain values, never Ray objects."""

    should_stop: Callable[[int], bool] | None = None
    on_checkpoint: Callable[[Path, int, dict], None] | None = None
    on_metrics: Callable[[int, dict], None] | None = None
    on_step: Callable[[TrainState], None] | None = None
    on_batch: Callable[[dict], None] | None = None  # sees every (micro-)batch this process trains on
    # Checkpoint evaluation (cfg.eval.num_samples > 0): inline in this process, or elsewhere (a Ray
    # evaluation pool) whose finished results `poll_evals` returns as eval.jsonl lines.
    inline_eval: bool = True
    pool_evaluates_checkpoints: bool = False  # checkpoints are born marked EVAL_PENDING (pruning spares them)
    poll_evals: Callable[[], list[dict]] | None = None
    # Steps (ASHA's rungs on an evaluation metric) at whose first checkpoint the loop waits for the pool's
    # score before training on, so the scheduler decides on the rung's score rather than after the trial
    # has ended; and the longest wait per rung in seconds (a failed evaluation ends the wait too).
    await_eval_steps: frozenset = frozenset()
    await_eval_timeout_s: float = 600.0
    # The progress bar of the main process, (total, initial) -> an object with update(n), set_postfix(**kw)
    # and close(); None = tqdm on this console. Ray trials draw theirs on the search's console.
    progress_bar: Callable[[int, int], Any] | None = None


@dataclass
class RunResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    metrics: dict = field(default_factory=dict)
    eval_blocked_s: float = 0.0  # seconds the loop waited on checkpoint evaluation (inline or polling)


def _multi_process_cpu() -> bool:
    """True for several CPU-only processes (e.g. Ray Train workers): accelerate then uses gloo ranks.
    A single process stays undistributed even inside a process group (no DDP wrapper, no all-reduce)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
    return not torch.cuda.is_available() and world > 1


def make_accelerator(cfg: Config) -> Accelerator:
    """The Accelerator a run of `cfg` trains with: its precision (train.mixed_precision), gradient
    accumulation (train.grad_accum) and, for several CPU processes, gloo ranks."""
    # accelerate keeps one process-wide state; a second run in this process may use another precision
    AcceleratorState._reset_state(reset_partial_state=True)
    speed.check_device_precision(cfg.train.mixed_precision)
    GradientState._reset_state()
    return Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        cpu=_multi_process_cpu(),
    )


def run_dir_for(cfg: Config) -> Path:
    """The default run folder of `cfg`: <train.output_dir>/<run name>."""
    return Path(cfg.train.output_dir) / cfg.run_name


def _batches(loader, progress: TrainProgress, on_batch=None) -> Iterator[dict]:
    """Endless batches from the saved position; advances progress.epoch / batch_in_epoch."""
    while True:
        for batch in loader.iter_epoch(progress.epoch, skip_batches=progress.batch_in_epoch):
            progress.batch_in_epoch += 1
            if on_batch:
                on_batch(batch)
            yield batch
        progress.epoch += 1
        progress.batch_in_epoch = 0


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines logged after the checkpoint we continue from (and a line torn by the
    writer that died), rewriting the file atomically."""
    if path.exists():
        keep = [r for r in read_json_lines(path) if isinstance(r.get("step"), int) and r["step"] <= step]
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))


def _start(cfg: Config, run_dir: Path, resume: bool | str | None) -> Path | None:
    """The checkpoint to resume from (or None), refusing to silently overwrite a run."""
    if resume is None or resume is False:
        if latest_checkpoint(run_dir) is not None:
            raise ConfigError(
                f"run folder {run_dir} already has checkpoints; pass --resume to continue it "
                "or set train.run_name to start another run"
            )
        return None
    if resume is True or resume == "auto":
        return latest_checkpoint(run_dir)
    return resolve_checkpoint(resume)


def train(
    cfg: Config,
    run_dir: str | Path | None = None,
    resume: bool | str | None = None,
    hooks: Hooks | None = None,
    reporter=None,
) -> RunResult:
    """Train `cfg` into `run_dir` (default runs/<run_name>); resume=True continues its latest checkpoint."""
    hooks = hooks or Hooks()
    task = task_of(cfg)
    cfg = task.prepare(cfg)  # e.g. a consistency student adopts its teacher's architecture
    run_dir = Path(run_dir) if run_dir else run_dir_for(cfg)
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    first = _start(cfg, run_dir, resume)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in sweep_temp(run_dir):
            print(f"faice: removed {name}, a checkpoint a dead writer left unfinished", flush=True)
        ensure_dataset(cfg.data)
        if cfg.latent.autoencoder:
            from faice.data.latents import ensure_latents

            cache = ensure_latents(cfg, accelerator.device)
            source = json.loads((cache / "manifest.json").read_text())
            record = {
                k: source[k] for k in ("autoencoder", "autoencoder_hash", "scale_factor", "latent_shape")
            }
            (run_dir / "latent-source.json").write_text(json.dumps({**record, "cache": str(cache)}, indent=2))
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    task.check_processes(accelerator.num_processes)

    if accelerator.device.type == "cuda":  # this run's peak, not an earlier run's in this process
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    state = build_state(cfg, accelerator)
    # the newest checkpoint, or the newest one before it that loads (a checkpoint truncated on disk)
    ckpt = load_first_loadable(resume_candidates(run_dir, first), lambda c: load_into(state, c))
    if main:
        _trim_metrics(run_dir / "metrics.jsonl", state.progress.step if ckpt is not None else 0)
    config_dict = redact(to_dict(cfg))
    reporter = (
        reporter if reporter is not None else (default_reporter(cfg, run_dir, config_dict) if main else None)
    )
    try:
        last = _loop(cfg, state, run_dir, hooks, reporter, ckpt)
    finally:
        if reporter is not None:
            reporter.close()
    return last


def _loop(
    cfg: Config, state: TrainState, run_dir: Path, hooks: Hooks, reporter, ckpt: Path | None
) -> RunResult:
    from tqdm.auto import tqdm

    from faice.evaluate import eval_metrics
    from faice.train.outputs import deliver_evals, eval_report, evaluate_inline, finish_run, write_sample_grid

    acc, p, tc = state.accelerator, state.progress, cfg.train
    main = acc.is_main_process
    if hooks.progress_bar is not None and main and cfg.log.progress:
        bar = hooks.progress_bar(tc.max_steps, p.step)
    else:
        bar = tqdm(
            total=tc.max_steps,
            initial=p.step,
            disable=not (main and cfg.log.progress),
            unit="step",
            smoothing=0.1,
        )
    batches = _batches(state.loader, p, hooks.on_batch)
    window: list[torch.Tensor] = []
    t0, steps0, elapsed0 = time.perf_counter(), p.step, p.elapsed_s
    latest_eval: dict = {}  # evaluation metrics sent along with every report
    unreported: deque = deque()  # pool evaluations that arrived but no report has carried yet
    inline = bool(cfg.eval.num_samples) and hooks.inline_eval
    blocked = [0.0]

    def evaluate_now() -> None:
        t = time.perf_counter()
        row = evaluate_inline(cfg, state, run_dir)
        if row is not None:
            latest_eval.update(deliver_evals([row], p.step, reporter))
        blocked[0] += time.perf_counter() - t

    def poll_pool() -> set[int]:
        """Log and queue the pool's new evaluations; returns the checkpoint steps they scored."""
        t = time.perf_counter()
        arrived = hooks.poll_evals()
        deliver_evals(arrived, p.step, reporter)
        unreported.extend(sorted((r for r in arrived if eval_metrics(r)), key=lambda r: r["step"]))
        blocked[0] += time.perf_counter() - t
        return {r["step"] for r in arrived}

    def await_rung(step: int) -> None:
        """Wait (bounded) for the pool's evaluation of the checkpoint at `step`; the next regular report
        carries it (no extra report: under Ray Train every rank must report equally often)."""
        deadline = time.perf_counter() + hooks.await_eval_timeout_s
        while step not in scored and time.perf_counter() < deadline:
            scored.update(poll_pool())
            if step not in scored:
                time.sleep(0.2)
                blocked[0] += 0.2
        rung = [r for r in unreported if r["step"] == step]  # first in line for the next report
        for r in rung:
            unreported.remove(r)
        unreported.extendleft(reversed(rung))

    scored: set[int] = set()  # checkpoint steps the pool has answered (a score or an error)
    rungs = sorted(r for r in hooks.await_eval_steps if r > p.step)  # those passed before a resume are done

    def save_and_report(finish: bool) -> Path:
        """Checkpoint, evaluate it inline if asked, write the final outputs if `finish`, then tell the
        orchestrator (outputs first: it may end the run once it hears of the last step)."""
        path = _checkpoint(cfg, state, run_dir, hooks.pool_evaluates_checkpoints)
        if inline:
            evaluate_now()
        if finish:
            finish_run(cfg, state, run_dir, reporter, path)
        if hooks.on_checkpoint:
            hooks.on_checkpoint(path, p.step, {**p.metrics, **latest_eval})
        return path

    if ckpt is not None and reporter is not None:
        reporter.log_metrics(p.step, {"resumed_from": p.step})
    while p.step < tc.max_steps and not (hooks.should_stop and hooks.should_stop(p.step)):
        loss = train_step(state, batches)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at step {p.step}; the last good checkpoint is {ckpt or 'none'}. "
                "Lower train.lr, keep train.grad_clip on, or check the data."
            )
        window.append(loss)
        if hooks.on_step:
            hooks.on_step(state)
        if p.step % tc.log_every == 0 or p.step == tc.max_steps:
            mean = acc.reduce(torch.tensor(sum(window) / len(window), device=acc.device), "mean").item()
            now = time.perf_counter() - t0
            rate, p.elapsed_s = (p.step - steps0) / now, elapsed0 + now
            p.metrics = {
                "loss": mean,
                "lr": state.lr_scheduler.get_last_lr()[0],
                "steps_per_s": rate,
                "epoch": p.epoch,
                "elapsed_s": p.elapsed_s,
                "peak_mem_mb": peak_memory_mb(acc.device),
            }
            window.clear()
            if hooks.poll_evals is not None:
                scored.update(poll_pool())
            if unreported:  # one evaluation per report, oldest first: every rung sees its own step's
                latest_eval.clear()
                latest_eval.update(eval_report(unreported.popleft()))
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{p.metrics['lr']:.2e}")
            if reporter is not None:
                reporter.log_metrics(p.step, p.metrics)
            if hooks.on_metrics and p.step < tc.max_steps:  # the last step is reported with its checkpoint
                hooks.on_metrics(p.step, {**p.metrics, **latest_eval})
        bar.update(1)
        if cfg.eval.every and p.step % cfg.eval.every == 0 and p.step < tc.max_steps:
            write_sample_grid(cfg, state, run_dir, reporter)
        if tc.checkpoint_every and p.step % tc.checkpoint_every == 0 and p.step < tc.max_steps:
            ckpt = save_and_report(finish=False)
            if hooks.poll_evals is not None and rungs and rungs[0] <= p.step:
                rungs = [r for r in rungs if r > p.step]
                await_rung(p.step)
    bar.close()
    if ckpt is None or ckpt.name != f"step-{p.step:07d}":
        ckpt = save_and_report(finish=p.step >= tc.max_steps)
    elif p.step >= tc.max_steps:
        finish_run(cfg, state, run_dir, reporter, ckpt)
    return RunResult(run_dir, p.step, ckpt, dict(p.metrics), eval_blocked_s=blocked[0])


def peak_memory_mb(device: torch.device) -> float:
    """Memory of this run at a log line (the results take the max over its lines): on a GPU, the peak CUDA
    memory allocated since the run started (`train` resets it); otherwise the process's resident memory
    now. (Not the process's peak RSS: a process that runs several trials, such as a reused Tune trial
    actor, would carry the earlier trials' peak into every later one.)"""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # no /proc (macOS): the process's peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS


def _checkpoint(cfg: Config, state: TrainState, run_dir: Path, eval_pending: bool = False) -> Path:
    acc = state.accelerator
    acc.wait_for_everyone()
    path = run_dir / "checkpoints" / f"step-{state.progress.step:07d}"
    if acc.is_main_process:
        path = save_checkpoint(
            run_dir,
            state.progress,
            acc.unwrap_model(state.model),
            state.ema.model if state.ema else None,
            state.optimizer,
            state.lr_scheduler,
            dump_yaml(cfg),
            keep=cfg.train.keep_checkpoints,
            scaler=acc.scaler,
            eval_pending=eval_pending,
        )
        state.task.on_checkpoint(cfg, state.ema.model if state.ema else acc.unwrap_model(state.model), path)
    acc.wait_for_everyone()
    return path
