"""Ray Train overhead: steady-state training steps/s of `faice train` vs the same run as one Ray Train
worker, plus the time from `ray job submit` to the first training step. One run each.

    .venv/bin/python benchmarks/ray_overhead.py [--steps 80]

Writes benchmarks/results/ray_overhead.{json,md}. ratio = plain steps/s / Ray Train steps/s (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faice.results import read_jsonl  # noqa: E402
from jobs.local_ray import apply_local_env, start_local_cluster, wait_for_job_agent  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TARGET = 1.05
WARMUP_STEPS = 10


def overrides(data: Path, steps: int, log_every: int) -> list[str]:
    return [
        f"data.path={data}",
        f"train.max_steps={steps}",
        f"train.log_every={log_every}",
        "train.checkpoint_every=0",
        "eval.every=0",
        "eval.grid_images=4",
        "log.wandb=disabled",
        "log.progress=false",
        "data.num_workers=1",
    ]


def read_metrics(path: Path) -> list[dict]:
    return [r for r in read_jsonl(path) if "loss" in r]


def steady_rate(rows: list[dict]) -> float:
    """Steps/s between the first log line after the warm-up and the last one (start-up excluded)."""
    after = [r for r in rows if r["step"] >= WARMUP_STEPS]
    first, last = after[0], after[-1]
    return (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])


def run_plain(work: Path, data: Path, steps: int) -> dict:
    run = work / "plain"
    cmd = [
        sys.executable,
        "-m",
        "faice",
        "train",
        "--config",
        "demo.yaml",
        "--run-dir",
        str(run),
        *overrides(data, steps, 5),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=3600)
    summary = json.loads((run / "summary.json").read_text())
    return {
        "steps_per_s": steady_rate(read_metrics(run / "metrics.jsonl")),
        "wall_s": time.perf_counter() - t0,
        "torch_threads": summary["torch_threads"],
    }


def run_ray(work: Path, data: Path, steps: int, cluster, env: dict) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "jobs.train",
        "--config",
        "demo.yaml",
        "--address",
        cluster.address,
        "--storage",
        str(work / "ray"),
        "--name",
        "bench",
        "--cpus-per-worker",
        "2",
        *overrides(data, steps, 5),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=3600)
    run = work / "ray" / "runs" / "bench"
    summary = json.loads((run / "summary.json").read_text())
    return {
        "steps_per_s": steady_rate(read_metrics(run / "metrics.jsonl")),
        "wall_s": time.perf_counter() - t0,
        "torch_threads": summary["torch_threads"],
    }


def submit_to_first_step(work: Path, data: Path, cluster, env: dict) -> float:
    storage = work / "job"
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "job",
        "submit",
        "--no-wait",
        "--address",
        cluster.dashboard_url,
        "--working-dir",
        str(REPO),
        "--",
        sys.executable,
        "-m",
        "jobs.train",
        "--config",
        "demo.yaml",
        "--storage",
        str(storage),
        "--name",
        "first-step",
        "--cpus-per-worker",
        "2",
        *overrides(data, 3, 1),
    ]
    metrics = storage / "runs" / "first-step" / "metrics.jsonl"
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    while not read_metrics(metrics):
        if time.perf_counter() - t0 > 600:
            raise TimeoutError("no training step within 600 s of ray job submit")
        time.sleep(0.1)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150, help="training steps per run")
    args = parser.parse_args()
    apply_local_env()
    from faice.config import load_config
    from faice.data.ensure import ensure_dataset

    work = Path(tempfile.mkdtemp(prefix="faice-bench-"))
    data = REPO / "data" / "prepared" / "synthetic-32"
    ensure_dataset(load_config("demo.yaml", [f"data.path={data}"]).data)
    plain = run_plain(work, data, args.steps)
    cluster = start_local_cluster(tempfile.mkdtemp(prefix="faice-ray-", dir="/tmp"), num_cpus=2)
    env = {**cluster.env, "PYTHONPATH": str(REPO), "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1"}
    try:
        wait_for_job_agent(cluster)
        ray = run_ray(work, data, args.steps, cluster, env)
        first_step_s = submit_to_first_step(work, data, cluster, env)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    ratio = plain["steps_per_s"] / ray["steps_per_s"]
    result = {
        "name": "ray_overhead",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "passed": ratio <= TARGET,
        "details": {
            "what": "steady-state steps/s (steps >= 10, start-up excluded) of configs/demo.yaml (unet-tiny, 32 px, "
            "batch 32): plain `faice train` process vs one Ray Train worker with 2 CPUs; one run each",
            "steps": args.steps,
            "plain": plain,
            "ray_train": ray,
            "submit_to_first_step_s": round(first_step_s, 2),
            "machine": {
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_1min": os.getloadavg()[0],
            },
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_overhead.json").write_text(json.dumps(result, indent=2))
    d = result["details"]
    (RESULTS / "ray_overhead.md").write_text(
        "# Ray Train overhead\n\n"
        f"ratio (plain steps/s / Ray Train steps/s) = **{ratio:.3f}** (target <= {TARGET}); "
        f"passed: {result['passed']}.\n\n"
        "| run | steady steps/s | wall s | torch threads |\n|---|---|---|---|\n"
        f"| plain `faice train` | {plain['steps_per_s']:.3f} | {plain['wall_s']:.1f} | {plain['torch_threads']} |\n"
        f"| one Ray Train worker (2 CPUs) | {ray['steps_per_s']:.3f} | {ray['wall_s']:.1f} | {ray['torch_threads']} |\n\n"
        f"`ray job submit` to the first training step: **{d['submit_to_first_step_s']} s** "
        "(upload of the working dir, job driver, Ray Train controller and worker start, data loader, first step).\n\n"
        f"{d['what']}. Machine: {d['machine']}.\n"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
