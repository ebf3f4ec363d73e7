"""Every study space of tune/spaces/ at `tiny` scale, in-process: the space resolves and validates, each of
two picked trials gets its config exactly as the launcher builds it (tune.search.prepare_search,
SearchSpec.trial_config), trains a few real steps at debug size with inline evaluation, and the search's
result tables are written from the run folders. The spaces differ only in config, not in the Ray code path,
which tests/jobs and tests/cluster run once each on real clusters. The spaces with their own tests (demo-asha,
consistency, autoencoder, latent-vs-pixel, latent-unet-depth, text-lora: linked searches, a tiny SD folder)
run in those; test_space checks that every space is covered.
"""

import pytest

from faice.config import read_yaml
from tests.tune.tiny_search import DEBUG_SIZE, fast_metric, run_in_process

pytestmark = [pytest.mark.slow]

# space -> (overrides picking 2 trials, config key that must differ between the two trials)
SMOKE = {
    "unet-architecture.yaml": (["space.variant={grid: [baseline, heads-4]}"], "model.attention_head_dim"),
    "training-length.yaml": (["budget.max_steps=null", "space.train.max_steps={grid: [4, 6]}"], "train.max_steps"),
    "augmentation.yaml": (["space.variant={grid: [blur, flip-crop]}"], "data.crop"),
    "beta-schedule.yaml": (["space.variant={grid: [ddim, pndm]}", "space.diffusion.beta_schedule={grid: [cosine]}",
                           "config.diffusion.num_train_timesteps=100"], "eval.sampler"),
    "ddim-eta.yaml": (["space.sample.eta={grid: [0.5]}", "seeds=[0, 1]"], "train.seed"),
    "prediction-type.yaml": (["space.variant={grid: [epsilon, v-zero-snr]}"], "diffusion.zero_terminal_snr"),
    "loss.yaml": (["space.variant={grid: [l1, l2-lpips]}"], "diffusion.lpips_weight"),
    "dit-vs-unet.yaml": (["space.variant={grid: [unet, dit-patch-4]}"], "model.name"),
    "attribute-guidance.yaml": (["space.variant={grid: [unconditional, male-g3]}"], "sample.guidance_scale"),
}  # fmt: skip


def _value(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


@pytest.mark.timeout(300)
@pytest.mark.parametrize("space", sorted(SMOKE))
def test_study_space_runs_at_tiny_scale(space, debug_data, lpips_dir, tmp_path):
    picks, differs = SMOKE[space]
    name, rows = run_in_process(space, tmp_path, "scale=tiny", f"config.data.path={debug_data}", *DEBUG_SIZE,
                                *fast_metric(space), "config.eval.where=inline", "config.eval.num_inference_steps=3",
                                f"config.diffusion.lpips_path={lpips_dir}", *picks)  # fmt: skip
    assert len(rows) == 2
    configs = []
    for row in rows:
        assert row.status == "finished", row
        assert row.best > 0 and row.evals.get("kid[faice-tiny]"), row
        configs.append(read_yaml(tmp_path / name / "runs" / row.trial_id / "config.yaml", "trial config"))
    values = [_value(c, differs) for c in configs]
    assert values[0] != values[1], f"{differs} is the same in both trials: {values}"
    assert read_yaml(tmp_path / name / "search.yaml", "search")["scale"] == "tiny"
    if space == "ddim-eta.yaml":  # two seeds of one configuration: reported as mean +- spread
        md = (tmp_path / name / "results.md").read_text()
        assert "## Across seeds" in md and "(n=2)" in md
