"""Training state and the one optimizer step shared by local runs, Ray workers and tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from faice.conditioning import attribute_columns
from faice.config import Config
from faice.data.augment import Augment
from faice.data.loader import ShardLoader
from faice.tasks import Task, task_of
from faice.train import speed
from faice.train.checkpoint import TrainProgress, load_state, load_tensors, load_weights
from faice.train.ema import EMA

LR_SCHEDULES = {"cosine": "cosine", "constant": "constant_with_warmup", "linear": "linear"}


@dataclass
class TrainState:
    cfg: Config
    accelerator: Accelerator
    model: torch.nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: object  # the task's loss: loss(model, x0, generator, labels) -> scalar
    loader: ShardLoader
    generator: torch.Generator
    task: Task | None = None  # task_of(cfg), set by build_state
    progress: TrainProgress = field(default_factory=TrainProgress)
    label_columns: list[int] | None = None  # the conditioning attributes' columns in a batch's "attrs"


def step_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """The RNG seed of one micro-batch: noise, timesteps and dropout depend only on where we are,
    so a resumed run draws exactly what an uninterrupted one would, on every rank."""
    return (seed * 1_000_003 + rank * 10_007 + step * 101 + micro) % (2**63 - 1)


def build_state(cfg: Config, accelerator: Accelerator) -> TrainState:
    """Model (seeded init), EMA twin, AdamW, warm-up + decay schedule, loss and data for `cfg`."""
    from diffusers.optimization import get_scheduler

    task = task_of(cfg)
    tc = cfg.train
    speed.check_compile(tc.compile, accelerator.device)  # before any work: a clear error, not a late crash
    speed.set_tf32(tc.allow_tf32)
    speed.reuse_cpu_memory(tc.cpu_reuse_memory, accelerator.device)
    torch.manual_seed(tc.seed)
    model = task.build_model(cfg).to(memory_format=speed.memory_format(tc.channels_last))
    ema = EMA(model, tc.ema_decay) if tc.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=tc.lr,
        betas=tuple(tc.adam_betas),
        weight_decay=tc.weight_decay,
        **speed.adamw_kwargs(tc.fused_optimizer),
    )
    lr_scheduler = get_scheduler(
        LR_SCHEDULES[tc.lr_schedule],
        optimizer,
        num_warmup_steps=tc.warmup_steps,
        num_training_steps=tc.max_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    speed.compile_in_place(accelerator.unwrap_model(model), tc.compile)
    if ema is not None:
        ema.model.to(accelerator.device)
    loader = (
        build_loader(cfg, accelerator)
        if cfg.latent.autoencoder
        else ShardLoader(
            cfg.data.path,
            split=cfg.data.split,
            batch_size=tc.batch_size,
            resolution=cfg.data.resolution,
            hflip=cfg.data.hflip,
            augment=Augment.from_config(cfg.data),
            seed=tc.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            num_workers=cfg.data.num_workers,
        )
    )
    cond = cfg.model.conditioning
    columns = attribute_columns(loader.manifest["attribute_names"], cond) if cond else None
    return TrainState(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        ema=ema,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        loss_fn=task.build_loss(cfg, accelerator.device, ema),
        loader=loader,
        generator=torch.Generator(device=accelerator.device),
        label_columns=columns,
        task=task,
    )


def build_task_model(cfg: Config) -> torch.nn.Module:
    """The network a run of cfg's task trains (unseeded: build_state seeds it)."""
    return task_of(cfg).build_model(cfg)


def build_loader(cfg: Config, accelerator: Accelerator):
    """Scaled latents from the cache of cfg's autoencoder (built by `train` before this is called)."""
    from faice.data.latents import LatentLoader, cache_dir_for

    return LatentLoader(
        cache_dir_for(cfg),
        cfg.train.batch_size,
        seed=cfg.train.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        posterior=cfg.latent.posterior,
    )


def load_into(state: TrainState, ckpt: str | Path) -> None:
    """Restore weights, EMA, optimizer, lr schedule, fp16 loss scale and progress from a checkpoint folder
    (everything, so that loading an older one after a newer one failed half-way leaves nothing mixed)."""
    ckpt = Path(ckpt)
    progress = load_state(ckpt)
    load_weights(state.accelerator.unwrap_model(state.model), ckpt / "model")  # adapters of a LoRA run
    if state.ema is not None:
        load_weights(state.ema.model, ckpt / "ema" if (ckpt / "ema").exists() else ckpt / "model")
    state.optimizer.load_state_dict(load_tensors(ckpt / "optimizer.pt"))
    state.lr_scheduler.load_state_dict(load_tensors(ckpt / "scheduler.pt"))
    scaler = state.accelerator.scaler
    if scaler is not None and (ckpt / "scaler.pt").exists():
        scaler.load_state_dict(load_tensors(ckpt / "scaler.pt"))
    state.progress = progress


def train_step(state: TrainState, batches: Iterator[dict]) -> float:
    """One optimizer step over `grad_accum` micro-batches; returns the mean loss (float)."""
    acc, tc, p = state.accelerator, state.cfg.train, state.progress
    total = 0.0
    for micro in range(tc.grad_accum):
        batch = next(batches)
        x0 = speed.to_memory_format(batch["image"].to(acc.device, non_blocking=True), tc.channels_last)
        labels = state.task.batch_labels(batch, state.label_columns, acc.device)
        seed = step_seed(tc.seed, acc.process_index, p.step, micro)
        state.generator.manual_seed(seed)
        torch.manual_seed(seed)
        with acc.accumulate(state.model):
            with acc.autocast():
                loss = state.loss_fn(state.model, x0, state.generator, labels)
            acc.backward(loss)
            if acc.sync_gradients and tc.grad_clip > 0:
                acc.clip_grad_norm_(state.model.parameters(), tc.grad_clip)
            state.optimizer.step()
            state.optimizer.zero_grad(set_to_none=True)
        total += loss.detach().float().item()
    state.lr_scheduler.step()
    p.step += 1
    if state.ema is not None:
        state.ema.update(acc.unwrap_model(state.model), p.step)
    return total / tc.grad_accum
