"""Running a shipped search space at debug size on the tests' Ray cluster (shared by the search tests)."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBUG_SIZE = [
    "config.data.resolution=16", "config.data.num_workers=0", "config.train.batch_size=8",
    "config.train.log_every=2", "config.train.checkpoint_every=3", "config.eval.num_samples=8",
    "config.eval.kid_subset_size=8", "config.eval.kid_subsets=4", "config.eval.grid_images=4",
    "config.log.wandb=disabled", "budget.max_steps=6",
]  # fmt: skip


def fast_metric(space: str) -> list[str]:
    """Overrides scoring with the fast stand-in extractor (ranking by fid[faice-tiny]) instead of the
    Inception: these searches test orchestration, not ranking; the demo search runs the real default."""
    from tune.space import load_space

    metric = load_space(space).metric
    swap = ["metric=fid[faice-tiny]"] if metric.endswith("[inception]") else []
    return ["config.eval.extractor=faice-tiny", *swap]


def run_tiny_search(
    cluster, storage: Path, space: str, data: Path, *extra: str, fast: bool = True
) -> tuple[str, list[dict]]:
    """(stdout, results.csv rows) of `python -m tune.search --space SPACE` at debug size; asserts success.
    `fast`: score with the stand-in extractor (fast_metric)."""
    speed = fast_metric(space) if fast else []
    cmd = [sys.executable, "-m", "tune.search", "--space", space, "--storage", str(storage), "--address",
           cluster.address, "--verbose", "0", f"config.data.path={data}", *DEBUG_SIZE, *speed, *extra]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    name = Path(space).stem
    with (Path(storage) / name / "results.csv").open() as f:
        return out.stdout, list(csv.DictReader(f))
