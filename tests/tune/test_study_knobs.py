"""Every parameter a study space varies changes its runs: two of the space's own values, from trial configs
built as the launcher builds them, a few real training steps each (tests/tune/knobs.py). This is the check
that would have caught the original project's silent no-ops (its PNDM ran as DDIM, its centre crop did
nothing, its LPIPS term had no gradient). text-lora's rank is checked in tests/models/test_text2image.py,
beside the tiny Stable Diffusion folder."""

from pathlib import Path

import pytest

from tests.tune.knobs import differs, knob_pairs
from tests.tune.tiny_search import DEBUG_SIZE, fast_metric, run_in_process

SPACES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "tune" / "spaces").glob("*.yaml"))
LINKED = {
    "consistency.teacher": ("consistency.yaml",),
    "latent.autoencoder": ("latent-unet-depth.yaml", "latent-vs-pixel.yaml"),
}
ELSEWHERE = {"text-lora.yaml": "tests/models/test_text2image.py::test_text_lora_rank_changes_the_adapters"}


@pytest.fixture(scope="module")
def links(debug_data, tmp_path_factory):
    """The runs linked spaces train on ({best_of: ...}): a diffusion teacher and an autoencoder."""
    from faice.config import load_config
    from faice.train.loop import train

    out = tmp_path_factory.mktemp("links")
    common = [f"data.path={debug_data}", "train.max_steps=2", f"train.output_dir={out}"]
    teacher = train(load_config("debug.yaml", common + ["train.run_name=teacher"]))
    ae = train(load_config("debug.yaml", common + ["task=autoencoder", "autoencoder.name=kl-debug",
                                                   "train.ema_decay=0", "train.run_name=ae",
                                                   "autoencoder.scale_images=16"]))  # fmt: skip
    return {"consistency.teacher": teacher.run_dir, "latent.autoencoder": ae.run_dir}


# A knob this test found doing nothing, kept visible until fixed (strict: the test fails once it works):
KNOWN_NO_OPS: dict[str, str] = {}  # space -> why its knob cannot change its runs (a strict xfail)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("space", [pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_NO_OPS[s], strict=True))
                                   if s in KNOWN_NO_OPS else s for s in SPACES if s not in ELSEWHERE])  # fmt: skip
def test_every_knob_of_the_space_changes_its_runs(space, debug_data, links, lpips_dir, tmp_path):
    extra = [f"config.data.path={debug_data}", f"config.diffusion.lpips_path={lpips_dir}"]  # the paths a
    # lab sets once for every search (LPIPS weights, linked runs); the spaces that use them read them
    extra += [f"config.{key}={path}" for key, path in links.items() if space in LINKED[key]]
    if space == "training-length.yaml":  # its knob is the step budget: two short ones
        extra += ["budget.max_steps=null", "space.train.max_steps={grid: [2, 3]}"]
    if space == "demo-asha.yaml":  # ASHA's first rung within the 2-step budget
        extra += ["scheduler.grace_period=1"]
    if space == "latent-vs-pixel.yaml":  # its variants link the autoencoder search's best trial
        run_in_process("autoencoder.yaml", tmp_path, f"config.data.path={debug_data}", *DEBUG_SIZE,
                       *fast_metric("autoencoder.yaml"), "config.eval.where=inline", "budget.max_steps=2")  # fmt: skip
    pairs = knob_pairs(space, tmp_path, *extra)
    assert pairs, f"{space} varies nothing"
    same = [key for key, a, b in pairs if not differs(key, a, b)]
    assert not same, f"{space}: runs at two values of {same} do not differ: the knob does nothing"
