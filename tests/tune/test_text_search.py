"""A 2-trial LoRA-rank search on a tiny Stable Diffusion folder (built here, nothing downloaded) on a real
local Ray cluster, every checkpoint scored from held-out captions on the evaluation pool."""

import pytest

from tests.tiny_sd import make_tiny_sd
from tests.tune.tiny_search import run_tiny_search

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(900)
def test_lora_rank_search_runs_on_the_pool(ray_cluster, debug_data, tmp_path):
    sd = make_tiny_sd(tmp_path / "tiny-sd")
    _, rows = run_tiny_search(ray_cluster, tmp_path, "text-lora.yaml", debug_data, f"config.text.pretrained={sd}",
                              "config.eval.num_inference_steps=2", "config.sample.num_inference_steps=2")  # fmt: skip
    assert sorted(int(r["text.lora_rank"]) for r in rows if r["text.lora_rank"]) in ([16], [4, 16])
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "finished" and float(row["best_fid[faice-tiny]"]) > 0
        run = tmp_path / "text-lora" / "runs" / row["trial_id"]
        assert '"where": "pool"' in (run / "eval.jsonl").read_text()
        assert list(run.glob("checkpoints/*/model/pytorch_lora_weights.safetensors"))
