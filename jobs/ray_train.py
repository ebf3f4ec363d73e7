"""Ray glue: one faice training run as a Ray Train V2 TorchTrainer (alone or inside a Tune trial), or
inside the Tune trial actor itself (trial.runner tune).

Both run `faice.train.loop.train` itself through `run_loop`; Ray only sees references to its checkpoint
folders, and its metrics.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from faice.config import Config, from_dict, resolve, to_dict
from faice.profiles import TrialResources, runs_in_trial_actor
from faice.train.reporting import forget_wandb_service

REPO = Path(__file__).resolve().parent.parent


def scaling_config(res: TrialResources) -> ScalingConfig:
    """Ray Train workers x (CPU, GPU, custom resources such as train_slot) of one run."""
    per_worker = {"CPU": res.cpus_per_worker, **res.resources_per_worker}
    if res.gpus_per_worker:
        per_worker["GPU"] = res.gpus_per_worker
    return ScalingConfig(
        num_workers=res.num_workers, use_gpu=res.gpus_per_worker > 0, resources_per_worker=per_worker
    )


def run_bundle(res: TrialResources) -> dict[str, float]:
    """Resources of one whole run (all its workers), for sizing how many run at once."""
    total = {"CPU": res.cpus_per_worker * res.num_workers, "GPU": res.gpus_per_worker * res.num_workers}
    total.update({k: v * res.num_workers for k, v in res.resources_per_worker.items()})
    return {k: v for k, v in total.items() if v}


def connect(
    address: str | None, num_cpus: int | None, local_resources: dict | None = None, local_eval_cpus: float = 0
) -> None:
    """Join the given cluster, the one of a `ray job submit` job, or start a local one on 127.0.0.1.

    A local cluster gets `local_resources` (e.g. {"eval_slot": 1}) and `local_eval_cpus` CPUs on top of
    `num_cpus` (default: all cores) for them, so evaluations never take the training CPUs' place.
    """
    import ray

    env_vars = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):  # inside `ray job submit`: its working_dir applies
        ray.init(address=address or "auto")
    elif address or os.environ.get("RAY_ADDRESS"):
        ray.init(
            address=address,
            runtime_env={"working_dir": str(REPO)}
            if address and address.startswith("ray://")
            else {"env_vars": env_vars},
        )
    else:
        from jobs.local_ray import ensure_local_token

        ensure_local_token()  # a fresh token: no other user of this machine can reach its job API
        # the dashboard serves the state API that Ray Train uses to clean up after stopped trials
        cpus = (num_cpus or os.cpu_count() or 1) + math.ceil(local_eval_cpus)
        ray.init(
            address="local",  # a cluster of our own, even where another one runs on this machine
            num_cpus=cpus,
            resources=local_resources,
            include_dashboard=True,
            runtime_env={"env_vars": env_vars},
        )
        return
    for group in reclaim_orphan_placement_groups():
        print(
            f"faice: removed placement group {group['id']} ({group['resources']}) left behind by ended "
            f"job {group['job']}",
            flush=True,
        )


ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def reclaim_orphan_placement_groups() -> list[dict]:
    """Remove the placement groups that jobs which have ended still hold, and say which.

    When a launcher is killed while a trial is starting its workers, Ray can leave that trial's worker
    placement group in place after the job is gone (seen with Ray 2.60: CREATED, holding its CPUs, for
    as long as the cluster lives), and a resumed search then waits for those CPUs forever. A
    non-detached group whose job has ended has no owner left, so removing it is always safe. Needs the
    state API (the dashboard); without it, nothing is removed."""
    from ray.util import remove_placement_group
    from ray.util.placement_group import PlacementGroup
    from ray.util.state import list_jobs, list_placement_groups

    try:
        ended = {j.job_id for j in list_jobs(raise_on_missing_output=False) if j.job_id and j.status in ENDED}
        groups = list_placement_groups(
            filters=[("state", "!=", "REMOVED")], detail=True, raise_on_missing_output=False
        )
    except Exception as e:  # no dashboard on this cluster: leave everything as it is
        print(f"faice: warning: could not list placement groups ({type(e).__name__}: {e})", flush=True)
        return []
    removed = []
    for g in groups:
        if g.is_detached or g.creator_job_id not in ended:
            continue
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(g.placement_group_id))))
        resources = {k: v for b in g.bundles for k, v in b["unit_resources"].items()}
        removed.append({"id": g.placement_group_id, "job": g.creator_job_id, "resources": resources})
    return removed


class TrialProgress:
    """One progress line per trial on the search's console (Ray's driver-side tqdm), instead of a line
    per report from every worker."""

    def __init__(self, trial_id: str, total: int, initial: int):
        from ray.experimental.tqdm_ray import tqdm

        self.name = trial_id
        self.bar = tqdm(desc=trial_id, total=total, unit="step", flush_interval_s=2.0)
        self.bar.update(initial)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values) -> None:
        self.bar.set_description(f"{self.name} " + " ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        self.bar.close()


def quiet_report_logs() -> None:
    """Drop Ray Train's INFO line per `ray.train.report` ("Reporting training result N: ...") from the
    console. Its logger is named after its source file, so RunConfig's LoggingConfig (which filters
    `ray.train.*` names) does not reach it; the trial's progress line says the same. Likewise the line per
    checkpoint a Tune trial reports ("Checkpoint successfully created at: ...")."""
    import logging

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.endswith(
            ("train/v2/_internal/execution/context.py", "train\\v2\\_internal\\execution\\context.py")
        ):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_loop(loop_config: dict, *, report, resume_from, rank: int) -> None:
    """The faice loop of one trial or run, wherever it runs: a Ray Train worker or a Tune trial actor.

    `report(metrics, checkpoint_dir)` hands metrics (and a checkpoint folder, rank 0 only) to Ray;
    `resume_from` is Ray's latest checkpoint of this run, if any."""
    from faice.train.checkpoint import resume_point, write_checkpoint_reference
    from faice.train.loop import Hooks, train
    from jobs.eval_pool import get_dispatcher

    cfg = resolve(from_dict(loop_config["config"]))
    quiet_report_logs()
    forget_wandb_service()  # a token inherited through the cluster's environment is another process's
    run_dir, trial_id = loop_config["run_dir"], loop_config.get("trial_id") or cfg.run_name
    resume = resume_point(resume_from.path if resume_from is not None else None, run_dir)
    pool_name = loop_config.get("eval_pool")  # checkpoints are evaluated by the pool, not here
    pool = get_dispatcher(pool_name) if pool_name and rank == 0 else None

    def on_metrics(step: int, metrics: dict) -> None:
        report({**metrics, "step": step}, None)

    def on_checkpoint(path: Path, step: int, metrics: dict) -> None:
        if pool is not None:  # (born marked EVAL_PENDING: pruning keeps it until the pool has read it)
            pool.submit.remote(trial_id, run_dir, str(path), step, step >= cfg.train.max_steps)
        # Ray is given a reference to faice's checkpoint, not the folder itself, which it would copy into
        # its storage a second time (the weights twice on shared storage); a resumed run finds the
        # checkpoint through it (resolve_checkpoint)
        ref = None
        if rank == 0:
            ref = Path(tempfile.mkdtemp(prefix="faice-ref-"))
            write_checkpoint_reference(ref, path)
        report({**metrics, "step": step, "checkpoint_step": step}, ref)

    def poll_evals() -> list[dict]:
        return ray.get(pool.poll.remote(trial_id), timeout=60)

    hooks = Hooks(
        on_metrics=on_metrics,
        on_checkpoint=on_checkpoint,
        inline_eval=not pool_name,
        pool_evaluates_checkpoints=pool is not None,
        poll_evals=poll_evals if pool is not None else None,
        await_eval_steps=frozenset(loop_config.get("rungs") or ()),
        await_eval_timeout_s=loop_config.get("rung_wait_s", 600.0),
        progress_bar=lambda total, initial: TrialProgress(trial_id, total, initial),
    )
    try:
        train(cfg, run_dir=run_dir, resume=resume, hooks=hooks)
    finally:  # a reused trial actor runs the next trial with what this one leaves
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def worker_loop(loop_config: dict) -> None:
    """Body of every Ray Train worker: the faice loop, resuming from Ray Train's latest checkpoint if any."""

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        ray.train.report(
            metrics,
            checkpoint=Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None,
            delete_local_checkpoint_after_upload=checkpoint_dir is not None,  # the temp reference
        )

    rank = ray.train.get_context().get_world_rank()
    run_loop(loop_config, report=report, resume_from=ray.train.get_checkpoint(), rank=rank)


def actor_loop(loop_config: dict) -> None:
    """The faice loop inside a Tune trial actor (trial.runner tune): one worker, no Ray Train run; Tune
    restarts the trial from its latest checkpoint after a lost worker or machine."""
    import shutil

    from ray import tune

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        try:
            tune.report(metrics, checkpoint=ckpt)  # (Tune persists the reference before it returns)
        finally:
            if checkpoint_dir:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)

    run_loop(loop_config, report=report, resume_from=tune.get_checkpoint(), rank=0)


def loop_config(
    cfg: Config,
    run_dir: str | Path,
    trial_id: str | None = None,
    eval_pool: str | None = None,
    rungs: list[int] | None = None,
    rung_wait_s: float = 600.0,
) -> dict:
    """What `run_loop` is given: the run's config and folder, its trial and evaluation pool."""
    return {
        "config": to_dict(cfg),
        "run_dir": str(run_dir),
        "trial_id": trial_id,
        "eval_pool": eval_pool,
        "rungs": list(rungs or ()),  # with the pool: wait for these steps' scores (ASHA's rungs)
        "rung_wait_s": rung_wait_s,
    }


def make_trainer(
    cfg: Config,
    run_dir: str | Path,
    storage_path: str | Path,
    run_name: str,
    resources: TrialResources,
    callbacks: list | None = None,
    trial_id: str | None = None,
    eval_pool: str | None = None,
    rungs: list[int] | None = None,
    rung_wait_s: float = 600.0,
) -> TorchTrainer:
    """A TorchTrainer for `cfg`; `run_name` must be stable (no timestamps) so a restarted run finds its state."""
    return TorchTrainer(
        worker_loop,
        train_loop_config=loop_config(cfg, run_dir, trial_id, eval_pool, rungs, rung_wait_s),
        scaling_config=scaling_config(resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            callbacks=callbacks or [],
        ),
    )


def run_trial(
    params: dict,
    *,
    spec,
    base_tree: dict,
    search_dir: str,
    fixed: list[str],
    eval_pool: str | None = None,
    rungs: list[int] | None = None,
) -> None:
    """A Ray Tune function trainable: this trial's faice config, run in this trial actor (trial.runner
    tune, one worker) or as one Ray Train run.

    The Train run name is `<search>-<trial id>` and its faice run folder `runs/<trial id>`: both stable,
    so a restarted trial or a restored search finds its checkpoints.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    cfg = spec.trial_config(base_tree, fixed, params, trial_id)
    run_dir = Path(search_dir) / "runs" / trial_id
    if runs_in_trial_actor(spec.trial):
        actor_loop(loop_config(cfg, run_dir, trial_id, eval_pool, rungs, spec.evaluation.rung_wait_s))
        return
    trainer = make_trainer(
        cfg,
        run_dir=run_dir,
        storage_path=Path(search_dir) / "train",
        run_name=f"{spec.name}-{trial_id}",
        resources=spec.trial,
        callbacks=[TuneReportCallback()],
        trial_id=trial_id,
        eval_pool=eval_pool,
        rungs=rungs,
        rung_wait_s=spec.evaluation.rung_wait_s,
    )
    trainer.fit()
