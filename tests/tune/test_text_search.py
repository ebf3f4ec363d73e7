"""A 2-trial LoRA-rank search on a tiny Stable Diffusion folder (built here, nothing downloaded) on a real
local Ray cluster, every checkpoint scored from held-out captions on the evaluation pool."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_sd import make_tiny_sd

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(900)
def test_lora_rank_search_runs_on_the_pool(ray_cluster, debug_data, tmp_path):
    sd = make_tiny_sd(tmp_path / "tiny-sd")
    cmd = [
        sys.executable, "-m", "tune.search", "--space", "text-lora.yaml", "--storage", str(tmp_path),
        "--address", ray_cluster.address, "--verbose", "0", f"config.data.path={debug_data}",
        f"config.text.pretrained={sd}", "config.data.resolution=16", "config.train.log_every=2",
        "config.train.checkpoint_every=3", "config.eval.num_samples=8", "config.eval.kid_subset_size=8",
        "config.eval.kid_subsets=4", "config.eval.num_inference_steps=2", "config.sample.num_inference_steps=2",
        "config.eval.grid_images=4", "config.data.num_workers=0", "config.log.wandb=disabled",
        "budget.max_steps=6",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=ray_cluster.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    with (tmp_path / "text-lora" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["text.lora_rank"]) for r in rows if r["text.lora_rank"]) in ([16], [4, 16])
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "finished" and float(row["best_fid[faice-tiny]"]) > 0
        run = tmp_path / "text-lora" / "runs" / row["trial_id"]
        assert '"where": "pool"' in (run / "eval.jsonl").read_text()
        assert list(run.glob("checkpoints/*/model/pytorch_lora_weights.safetensors"))
