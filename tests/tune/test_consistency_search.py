"""A 2-trial consistency search (l2 vs pseudo-Huber) at debug size on a real local Ray cluster, every
checkpoint scored with 2-step LCM sampling by the evaluation pool (on the training node's spare CPU)."""

import pytest

from tests.tune.tiny_search import run_tiny_search

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(900)
def test_consistency_search_distils_a_teacher_on_the_pool(ray_cluster, debug_data, tmp_path):
    from faice.config import load_config
    from faice.train.loop import train

    teacher = train(load_config("debug.yaml", [f"data.path={debug_data}", "train.max_steps=4"]),
                    run_dir=tmp_path / "teacher")  # fmt: skip
    stdout, rows = run_tiny_search(ray_cluster, tmp_path, "consistency.yaml", debug_data,
                                   f"config.consistency.teacher={teacher.run_dir}")  # fmt: skip
    assert "evaluation pool of 1 slot(s)" in stdout
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
