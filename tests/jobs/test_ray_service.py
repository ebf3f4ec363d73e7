"""The Ray service on a real local cluster (127.0.0.1): ray job submit, worker loss, two workers' data
shares (the launcher's loss is in test_eval_service, with the lab's machines). Every test starts its processes with a timeout and the cluster is stopped by pid."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faice.results import read_jsonl

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def _metrics(path: Path) -> list[dict]:
    return read_jsonl(path)


def _listeners_are_loopback(cluster) -> None:
    pids = set(cluster.pids())
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line


def _worker_pids(cluster) -> list[int]:
    """The Ray Train workers of this test's cluster (its own processes, by pid), never another's."""
    pids = []
    for pid in cluster.pids():
        try:
            if b"RayTrainWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def _holding(cluster, needle: bytes) -> list[int]:
    """This cluster's processes whose environment contains `needle`."""
    found = []
    for pid in cluster.pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(600)
def test_a_submitted_job_survives_a_killed_worker_and_resumes_from_its_last_checkpoint(
    ray_cluster, debug_data, tmp_path
):
    """`ray job submit -- python -m jobs.train ...` as jobs/README.md shows it; SIGKILL the Ray Train worker
    mid-run: Ray Train restarts it, the faice loop resumes from the newest checkpoint (at most one
    checkpoint interval of steps is lost, none is run twice), and the job still succeeds."""
    every, steps = 6, 30
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [
        ray, "job", "submit", "--address", ray_cluster.dashboard_url, "--working-dir", str(REPO), "--",
        sys.executable, "-m", "jobs.train", "--config", "debug.yaml", "--storage", str(tmp_path),
        "--max-failures", "2", f"data.path={debug_data}", f"train.max_steps={steps}",
        f"train.checkpoint_every={every}", "train.log_every=1", "train.keep_checkpoints=3", "log.wandb=offline",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=ray_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run_dir = tmp_path / "runs" / "debug"
    metrics = run_dir / "metrics.jsonl"
    try:
        # killed 4 steps past the step-12 checkpoint, when Ray Train has registered it (killed 1 step past
        # it, Ray may not have yet, and the run resumes from the one before: one interval plus that lag)
        _wait_for(
            lambda: any(m.get("step", 0) >= 16 and "loss" in m for m in _metrics(metrics)), 300, "step 16"
        )
        pids = _worker_pids(ray_cluster)
        assert pids, "no RayTrainWorker process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        reached = max(m["step"] for m in _metrics(metrics) if "loss" in m)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = out.decode()
    assert proc.returncode == 0 and "succeeded" in out.lower(), out[-3000:]
    _listeners_are_loopback(ray_cluster)  # the head, its dashboard and the job's processes
    # the cluster was started while the test process held a W&B service token: no process of it has it
    # (else the workers would share one W&B service and a restarted worker find its run "in use")
    assert not _holding(ray_cluster, b"WANDB_SERVICE="), "a cluster process inherited the W&B service token"
    rows = _metrics(metrics)
    resumed = [m["resumed_from"] for m in rows if "resumed_from" in m]
    assert resumed, "the run did not resume from a checkpoint"
    assert reached - resumed[0] <= every, (reached, resumed)
    assert resumed[0] >= every
    losses = [m["step"] for m in rows if "loss" in m]
    assert losses[-1] == steps and losses == sorted(set(losses)), (
        "steps after the resume point were not re-run once"
    )
    assert (run_dir / "summary.json").exists()
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run in the run folder"


@pytest.mark.timeout(600)
def test_two_workers_read_disjoint_shares(ray_cluster, debug_data, tmp_path):
    """Two Ray Train workers running the faice loop for one epoch never see the same sample."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from faice.config import load_config, to_dict
    from faice.data.loader import ShardLoader

    per_rank = ShardLoader(debug_data, batch_size=4, rank=0, world_size=2).batches_per_epoch
    cfg = load_config(
        "debug.yaml",
        [
            f"data.path={debug_data}",
            "train.batch_size=4",
            f"train.max_steps={per_rank}",
            "train.checkpoint_every=0",
        ],
    )
    ray.init(address=ray_cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        from tests.jobs.ray_workers import record_ids_loop

        trainer = TorchTrainer(
            record_ids_loop,
            train_loop_config={
                "config": to_dict(cfg),
                "run_dir": str(tmp_path / "run"),
                "out": str(tmp_path),
            },
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="disjoint", storage_path=str(tmp_path / "ray")),
        )
        trainer.fit()
    finally:
        ray.shutdown()
    ranks = [json.loads((tmp_path / f"ids-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["step"] == per_rank for r in ranks)
    a, b = (set(r["ids"]) for r in ranks)
    assert len(a) == len(ranks[0]["ids"]) == per_rank * 4 and len(b) == per_rank * 4
    assert not a & b, f"{len(a & b)} samples seen by both workers in one epoch"
