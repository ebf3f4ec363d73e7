"""A 2-trial consistency search (l2 vs pseudo-Huber) at debug size on a real local Ray cluster, every
checkpoint scored with 2-step LCM sampling by the evaluation pool (on the training node's spare CPU)."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(900)
def test_consistency_search_distils_a_teacher_on_the_pool(ray_cluster, debug_data, tmp_path):
    from faice.config import load_config
    from faice.train.loop import train

    teacher = train(load_config("debug.yaml", [f"data.path={debug_data}", "train.max_steps=4"]),
                    run_dir=tmp_path / "teacher")  # fmt: skip
    cmd = [
        sys.executable, "-m", "tune.search", "--space", "consistency.yaml", "--storage", str(tmp_path),
        "--address", ray_cluster.address, "--verbose", "0", f"config.data.path={debug_data}",
        f"config.consistency.teacher={teacher.run_dir}", "config.data.resolution=16",
        "config.train.batch_size=8", "config.train.log_every=2", "config.train.checkpoint_every=3",
        "config.eval.num_samples=8", "config.eval.kid_subset_size=8", "config.eval.kid_subsets=4",
        "config.eval.grid_images=4", "config.data.num_workers=0", "config.log.wandb=disabled",
        "budget.max_steps=6",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=ray_cluster.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "evaluation pool of 1 slot(s)" in out.stdout
    with (tmp_path / "consistency" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    from faice.config import read_yaml

    runs = tmp_path / "consistency" / "runs"
    assert sorted(
        read_yaml(runs / r["trial_id"] / "config.yaml", "c")["consistency"]["loss"] for r in rows
    ) == [
        "huber",
        "l2",
    ]
    for row in rows:
        assert row["status"] == "finished" and float(row["best_fid[faice-tiny]"]) > 0
        evals = (tmp_path / "consistency" / "runs" / row["trial_id"] / "eval.jsonl").read_text()
        assert '"sampler": "lcm"' in evals and '"sampler_steps": 2' in evals and '"where": "pool"' in evals
