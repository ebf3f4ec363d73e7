"""Every study space of tune/spaces/ runs at `tiny` scale as a real 2-trial search on the tests' local Ray
cluster (debug sizes: 16 px, 6 steps, 8 evaluation samples; each trial evaluates its checkpoints inline,
so both run at once). The spaces with their own search tests (demo-asha, consistency, autoencoder,
latent-vs-pixel, latent-unet-depth, text-lora) run in those; test_space checks that every space is covered.
"""

import pytest

from faice.config import read_yaml
from tests.tune.tiny_search import run_tiny_search

pytestmark = [pytest.mark.slow]

# space -> (overrides picking 2 trials, config key that must differ between the two trials)
SMOKE = {
    "unet-architecture.yaml": (["space.variant={grid: [baseline, adm]}"], "model.resample"),
    "training-length.yaml": (["budget.max_steps=null", "space.train.max_steps={grid: [4, 6]}"], "train.max_steps"),
    "augmentation.yaml": (["space.variant={grid: [blur, flip-crop]}"], "data.crop"),
    "beta-schedule.yaml": (["space.variant={grid: [ddpm, pndm]}", "space.diffusion.beta_schedule={grid: [cosine]}",
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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("space", sorted(SMOKE))
def test_study_space_runs_at_tiny_scale(space, ray_cluster, debug_data, lpips_dir, tmp_path):
    picks, differs = SMOKE[space]
    stdout, rows = run_tiny_search(ray_cluster, tmp_path, space, debug_data, "scale=tiny",
                                   "config.eval.where=inline", "config.eval.num_inference_steps=3",
                                   f"config.diffusion.lpips_path={lpips_dir}", *picks)  # fmt: skip
    assert len(rows) == 2, stdout[-2000:]
    name = space.removesuffix(".yaml")
    configs = []
    for row in rows:
        assert row["status"] == "finished", row
        assert float(row["best_fid[faice-tiny]"]) > 0 and row["kid[faice-tiny]"], row
        configs.append(read_yaml(tmp_path / name / "runs" / row["trial_id"] / "config.yaml", "trial config"))
    values = [_value(c, differs) for c in configs]
    assert values[0] != values[1], f"{differs} is the same in both trials: {values}"
    assert read_yaml(tmp_path / name / "search.yaml", "search")["scale"] == "tiny"
    if space == "ddim-eta.yaml":  # two seeds of one configuration: reported as mean +- spread
        md = (tmp_path / name / "results.md").read_text()
        assert "## Across seeds" in md and "(n=2)" in md
