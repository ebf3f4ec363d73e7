"""A 2-trial LoRA-rank search on a tiny Stable Diffusion folder (built here, nothing downloaded), in-process
as the launcher builds its trials, every checkpoint scored from held-out captions."""

import pytest

from faice.config import read_yaml
from tests.tiny_sd import make_tiny_sd
from tests.tune.tiny_search import run_tiny_in_process

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(600)
def test_lora_rank_search_trains_and_scores_each_rank(debug_data, tmp_path):
    sd = make_tiny_sd(tmp_path / "tiny-sd")
    rows = run_tiny_in_process(tmp_path, "text-lora.yaml", debug_data, f"config.text.pretrained={sd}",
                               "space.text.lora_rank={grid: [4, 16]}", "config.eval.num_inference_steps=2",
                               "config.sample.num_inference_steps=2")  # fmt: skip
    ranks = []
    for row in rows:
        assert row["status"] == "finished" and float(row["best_fid[faice-tiny]"]) > 0
        run = tmp_path / "text-lora" / "runs" / row["trial_id"]
        assert '"where": "inline"' in (run / "eval.jsonl").read_text()
        assert list(run.glob("checkpoints/*/model/pytorch_lora_weights.safetensors"))
        ranks.append(read_yaml(run / "config.yaml", "run config")["text"]["lora_rank"])
    assert sorted(ranks) == [4, 16]
