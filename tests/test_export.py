"""`faice export` of every kind of pixel model: the folder loads with diffusers' DiffusionPipeline and
samples the same images as faice does from the same seed (unconditional UNet, class-conditional UNet,
DiT with and without labels, sigma-stepping samplers)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from faice.cli import main
from faice.sampling import generate, load_checkpoint_model
from faice.train.loop import train

REPO = Path(__file__).resolve().parent.parent
KINDS = {
    "unet": [],
    "unet-cond": ["model.conditioning=[Male,Smiling]", "train.label_dropout=0.2", "sample.guidance_scale=3"],
    "dit": ["model.name=dit-debug"],
    "dit-cond": ["model.name=dit-debug", "model.conditioning=[Male]", "sample.guidance_scale=2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, debug_data):
    from faice.config import load_config

    out = tmp_path_factory.mktemp("export-runs")
    done = {}
    for kind, overrides in KINDS.items():
        cfg = load_config(
            REPO / "configs/debug.yaml", [f"data.path={debug_data}", "train.max_steps=2", *overrides]
        )
        done[kind] = train(cfg, run_dir=out / kind).checkpoint
    return done


def _faice_images(checkpoint, labels, sampler: str, steps: int, seed: int) -> np.ndarray:
    model, cfg, _ = load_checkpoint_model(checkpoint)
    images = generate(model, cfg, 4, seed=seed, labels=labels, sampler=sampler, num_inference_steps=steps)
    return (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    "kind,sampler",
    [
        ("unet", "euler"),
        ("unet-cond", "ddim"),
        ("unet-cond", "dpm-solver++"),
        ("dit", "ddim"),
        ("dit-cond", "heun"),
    ],
)
def test_export_samples_what_faice_samples(runs, tmp_path, kind, sampler):
    import diffusers

    out = tmp_path / "pipe"
    assert main(["export", str(runs[kind]), str(out), "--sampler", sampler]) == 0
    pipe = diffusers.DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    assert type(pipe).__name__ == "FaicePipeline"
    assert (
        type(pipe.scheduler).__name__
        == {
            "euler": "EulerDiscreteScheduler",
            "ddim": "DDIMScheduler",
            "dpm-solver++": "DPMSolverMultistepScheduler",
            "heun": "HeunDiscreteScheduler",
        }[sampler]
    )
    assert pipe.scheduler.config.timestep_spacing == "trailing"  # the resolved `auto`, recorded in the folder
    cond = any(o.startswith("model.conditioning") for o in KINDS[kind])
    labels = torch.tensor([0, 1, 2, 3]) % (2 ** len(pipe.config.attributes)) if cond else None
    _, cfg, _ = load_checkpoint_model(runs[kind])
    got = pipe(
        batch_size=4,
        class_labels=labels,
        guidance_scale=cfg.sample.guidance_scale,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images
    want = _faice_images(runs[kind], labels, sampler, 3, seed=7)
    assert got.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_guidance_scale_and_attributes_reach_the_exported_pipeline(runs, tmp_path):
    import diffusers

    out = tmp_path / "pipe"
    main(["export", str(runs["unet-cond"]), str(out)])
    pipe = diffusers.DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    assert pipe.config.attributes == ["Male", "Smiling"]

    def run(**kw):
        g = torch.Generator().manual_seed(1)
        return pipe(batch_size=4, num_inference_steps=3, generator=g, output_type="np", **kw).images

    labels = pipe.class_labels(64, {"Male": 1}, torch.Generator().manual_seed(0))
    assert ((labels & 1) == 1).all() and len(set(labels.tolist())) == 2  # Smiling drawn, Male fixed
    assert not np.allclose(
        run(class_labels=[1] * 4, guidance_scale=1.0), run(class_labels=[1] * 4, guidance_scale=4.0)
    )
    assert np.allclose(run(attributes={"Male": 1, "Smiling": 0}), run(class_labels=[1] * 4))
    with pytest.raises(ValueError, match="Smiling"):
        run(attributes={"Beard": 1})


def test_an_unconditional_unet_with_a_stock_sampler_exports_to_the_stock_pipeline(runs, tmp_path):
    import diffusers

    out = tmp_path / "pipe"
    main(["export", str(runs["unet"]), str(out), "--sampler", "ddim"])
    assert not (out / "pipeline.py").exists()
    assert type(diffusers.DiffusionPipeline.from_pretrained(out)).__name__ == "DDIMPipeline"
