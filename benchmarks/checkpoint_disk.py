"""Disk per trial: faice's own checkpoint folder against everything a Ray Train run leaves on storage
(faice's run folder + Ray Train's `<storage>/train/...`), for the code at HEAD and, in the same run, for
the commit before Ray Train was handed references instead of checkpoint folders (a git worktree of it,
with this venv).

    .venv/bin/python benchmarks/checkpoint_disk.py [--before 3e0042e] [--steps 8]

The run: `python -m jobs.train` on its own local 127.0.0.1 cluster, the demo UNet (unet-tiny, 32 px
synthetic faces), a checkpoint every 2 steps, the last 3 kept (by faice and by Ray Train alike).
Writes benchmarks/results/checkpoint_disk.{json,md}. ratio = storage bytes per trial / faice checkpoint
bytes at HEAD (target <= 1.1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.1
BEFORE = "3e0042e"  # the last commit whose Ray Train reports copied each checkpoint folder


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(repo: Path, work: Path, steps: int) -> dict:
    """Train one run with `repo`'s code; the bytes of its checkpoints, its run folder and Ray's folder."""
    storage = work / "storage"
    cmd = [
        sys.executable, "-m", "jobs.train", "--config", "demo.yaml", "--storage", str(storage),
        "--name", "disk", "--num-cpus", "2",
        f"data.path={work / 'data'}", "data.synthetic_count=64", "data.num_workers=0",
        f"train.max_steps={steps}", "train.checkpoint_every=2", "train.keep_checkpoints=3",
        "train.batch_size=8", "eval.every=0", "eval.num_samples=0", "eval.grid_images=4",
        "sample.num_inference_steps=2", "log.wandb=disabled", "log.progress=false",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo), "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"training with {repo} failed:\n{out.stderr[-3000:]}")
    run, ray_dir = storage / "runs" / "disk", storage / "train"
    ckpts = folder_bytes(run / "checkpoints")
    return {
        "faice_checkpoints_bytes": ckpts,
        "faice_run_folder_bytes": folder_bytes(run),
        "ray_train_bytes": folder_bytes(ray_dir),
        "ray_checkpoints": sum(p.is_dir() for p in ray_dir.rglob("checkpoint_*")),
        "storage_bytes": folder_bytes(storage),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the commit measured as 'before' [%(default)s]")
    parser.add_argument("--steps", type=int, default=8, help="training steps (a checkpoint every 2)")
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="faice-disk-") as tmp:
        tmp = Path(tmp)
        old = tmp / "before-repo"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        try:
            before = measure(old, tmp / "before", args.steps)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
            shutil.rmtree(old, ignore_errors=True)
        after = measure(REPO, tmp / "after", args.steps)
    per_trial = {k: v["storage_bytes"] / v["faice_checkpoints_bytes"] for k, v in (("before", before),
                                                                                     ("after", after))}  # fmt: skip
    result = {
        "name": "checkpoint_disk",
        "ratio": round(per_trial["after"], 4),
        "target": TARGET,
        "details": {
            "machine": machine(),
            "commit": head.stdout.strip(),
            "before_commit": args.before,
            "steps": args.steps,
            "before": before,
            "after": after,
            "storage_per_faice_checkpoints": {k: round(v, 4) for k, v in per_trial.items()},
        },
    }
    mib = 2**20
    md = [
        "# Disk per trial: Ray Train's checkpoints as references, not copies",
        "",
        f"Machine: {machine()}. Commit {result['details']['commit']} (after) against {args.before} (before), "
        f"one `python -m jobs.train` run each of the demo UNet: {args.steps} steps, a checkpoint every 2, "
        "the last 3 kept.",
        "",
        "| | before | after |",
        "|---|---:|---:|",
        *(
            f"| {label} | {before[k] / mib:.2f} MiB | {after[k] / mib:.2f} MiB |"
            for label, k in (
                ("faice's checkpoints (runs/<trial>/checkpoints)", "faice_checkpoints_bytes"),
                ("faice's whole run folder", "faice_run_folder_bytes"),
                ("Ray Train's folder (<storage>/train)", "ray_train_bytes"),
                ("storage per trial, all of it", "storage_bytes"),
            )
        ),  # fmt: skip
        f"| Ray Train checkpoints kept | {before['ray_checkpoints']} | {after['ray_checkpoints']} |",
        f"| storage / faice's checkpoints | {per_trial['before']:.3f}x | {per_trial['after']:.3f}x |",
        "",
        f"**ratio = {result['ratio']:.3f}** (storage per trial / faice's own checkpoints; target <= {TARGET}).",
        "Before, each `ray.train.report` copied the checkpoint folder into `<storage>/train/<run>/checkpoint_*`",
        "(the weights twice). Now it is given a folder holding only `faice-checkpoint.json`, which names",
        "faice's checkpoint; a restarted worker resolves it (`faice.train.checkpoint.resolve_checkpoint`,",
        "falling back to the run's latest if that checkpoint was pruned). The rest of the storage per trial",
        "is the run folder's records and sample grids and Ray's own state files.",
        "Resume after a SIGKILLed worker through such a reference: `tests/jobs/test_ray_service.py::"
        "test_a_submitted_search_survives_a_killed_worker_and_copies_the_wandb_key_nowhere`.",
        "",
    ]
    write_result("checkpoint_disk", result, md)


if __name__ == "__main__":
    main()
