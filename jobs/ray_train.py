"""Ray Train glue: one faice training run as a Ray Train V2 TorchTrainer, alone or inside a Tune trial.

The workers run `faice.train.loop.train` itself; Ray only sees its checkpoint folders and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from faice.config import Config, from_dict, resolve, to_dict


@dataclass
class TrialResources:
    """What one Ray Train run asks for: workers x (CPU, GPU, custom resources such as train_slot)."""

    num_workers: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    resources_per_worker: dict = field(default_factory=dict)
    max_failures: int = 3

    def scaling_config(self) -> ScalingConfig:
        per_worker = {"CPU": self.cpus_per_worker, **self.resources_per_worker}
        if self.gpus_per_worker:
            per_worker["GPU"] = self.gpus_per_worker
        return ScalingConfig(
            num_workers=self.num_workers, use_gpu=self.gpus_per_worker > 0, resources_per_worker=per_worker
        )

    def bundle(self) -> dict[str, float]:
        """Resources of the whole run (all workers), for sizing concurrency."""
        total = {
            "CPU": self.cpus_per_worker * self.num_workers,
            "GPU": self.gpus_per_worker * self.num_workers,
        }
        for key, value in self.resources_per_worker.items():
            total[key] = value * self.num_workers
        return {k: v for k, v in total.items() if v}


def worker_loop(loop_config: dict) -> None:
    """Body of every Ray Train worker: the faice loop, resuming from Ray's latest checkpoint if any."""
    from faice.train.loop import Hooks, train

    cfg = resolve(from_dict(loop_config["config"]))
    rank = ray.train.get_context().get_world_rank()
    checkpoint = ray.train.get_checkpoint()
    resume = checkpoint.path if checkpoint is not None else "auto"

    def on_metrics(step: int, metrics: dict) -> None:
        ray.train.report({**metrics, "step": step})

    def on_checkpoint(path: Path, step: int, metrics: dict) -> None:
        ckpt = Checkpoint.from_directory(str(path)) if rank == 0 else None
        ray.train.report({**metrics, "step": step, "checkpoint_step": step}, checkpoint=ckpt)

    train(
        cfg,
        run_dir=loop_config["run_dir"],
        resume=resume,
        hooks=Hooks(on_metrics=on_metrics, on_checkpoint=on_checkpoint),
    )


def make_trainer(
    cfg: Config,
    run_dir: str | Path,
    storage_path: str | Path,
    run_name: str,
    resources: TrialResources,
    callbacks: list | None = None,
) -> TorchTrainer:
    """A TorchTrainer for `cfg`; `run_name` must be stable (no timestamps) so a restarted run finds its state."""
    return TorchTrainer(
        worker_loop,
        train_loop_config={"config": to_dict(cfg), "run_dir": str(run_dir)},
        scaling_config=resources.scaling_config(),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            callbacks=callbacks or [],
        ),
    )
