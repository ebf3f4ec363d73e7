"""Stable Diffusion fine-tuning on a tiny SD folder built in the test (nothing downloaded): LoRA adapters
are under 1% of the UNet and the only thing that learns, they reload into a diffusers pipeline with
load_lora_weights and change its output; a full fine-tune keeps model.freeze blocks; caption dropout
happens at the configured rate."""

from pathlib import Path

import numpy as np
import pytest
import torch

from faice.config import ConfigError
from faice.train.loop import train
from tests.tiny_sd import make_tiny_sd


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def _cfg(debug_cfg, sd_folder, *extra):
    return debug_cfg("task=text2image", f"text.pretrained={sd_folder}", "train.ema_decay=0", "train.max_steps=3",
                     "sample.num_inference_steps=2", "eval.grid_images=2", *extra)  # fmt: skip


@pytest.fixture(scope="module")
def lora_run(sd_folder, debug_data, tmp_path_factory):
    from faice.config import load_config

    out = tmp_path_factory.mktemp("lora")
    cfg = load_config("debug.yaml", [f"data.path={debug_data}", "task=text2image", f"text.pretrained={sd_folder}",
                                     "train.ema_decay=0", "train.max_steps=3", "train.lr=1e-2",
                                     "sample.num_inference_steps=2", "eval.grid_images=2"])  # fmt: skip
    return train(cfg, run_dir=out / "lora")


def test_lora_adapters_are_small_and_the_only_thing_that_learns(debug_cfg, sd_folder):
    from faice.text2image import Text2ImageLoss, build_unet

    cfg = _cfg(debug_cfg, sd_folder)
    unet = build_unet(cfg)
    lora = {n for n, p in unet.named_parameters() if "lora" in n}
    total = sum(p.numel() for n, p in unet.named_parameters() if n not in lora)
    share = sum(p.numel() for n, p in unet.named_parameters() if n in lora) / total
    assert lora and share < 0.01, share
    assert {n for n, p in unet.named_parameters() if p.requires_grad} == lora
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    Text2ImageLoss(cfg)(
        unet, images, torch.Generator().manual_seed(0), ["a smiling man", "a woman"]
    ).backward()
    assert {n for n, p in unet.named_parameters() if p.grad is not None} == lora


def test_a_lora_run_saves_adapters_that_diffusers_loads_and_that_change_the_output(lora_run, sd_folder):
    from diffusers import StableDiffusionPipeline

    model_dir = lora_run.checkpoint / "model"
    assert (model_dir / "pytorch_lora_weights.safetensors").exists() and not (
        model_dir / "config.json"
    ).exists()
    assert (lora_run.run_dir / "samples" / "final" / "grid.png").exists()

    def images(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe("a smiling young woman", num_inference_steps=2, height=16, width=16, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images  # fmt: skip

    base = StableDiffusionPipeline.from_pretrained(
        sd_folder, safety_checker=None, requires_safety_checker=False
    )
    before = images(base)
    base.load_lora_weights(model_dir)
    assert not np.allclose(before, images(base), atol=1e-6)


def test_resuming_a_lora_run_restores_its_adapters(lora_run, debug_data):
    from faice.evaluate import checkpoint_config
    from faice.sampling import load_checkpoint_model
    from faice.text2image import lora_state

    model, _, _ = load_checkpoint_model(lora_run.checkpoint)
    cfg, _ = checkpoint_config(lora_run.checkpoint, ["train.max_steps=4"])
    resumed = train(cfg, run_dir=lora_run.run_dir, resume=True)
    assert resumed.step == 4
    saved = lora_state(model)
    assert saved and all(torch.isfinite(v).all() for v in saved.values())


def test_full_fine_tuning_keeps_frozen_blocks(debug_cfg, sd_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    from faice.sampling import load_checkpoint_model

    result = train(
        _cfg(debug_cfg, sd_folder, "text.method=full", "model.freeze=[down_blocks.0]", "train.lr=1e-2")
    )
    base = UNet2DConditionModel.from_pretrained(sd_folder / "unet").state_dict()
    tuned, _, _ = load_checkpoint_model(result.checkpoint)
    state = tuned.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.items() if k.startswith("down_blocks.0."))
    assert any(not torch.equal(state[k], v) for k, v in base.items() if k.startswith("up_blocks."))


def test_caption_dropout_happens_at_the_configured_rate():
    from faice.text2image import drop_captions

    captions = [f"face {i}" for i in range(4000)]
    dropped = drop_captions(captions, 0.3, torch.Generator().manual_seed(0))
    rate = sum(c == "" for c in dropped) / len(captions)
    assert abs(rate - 0.3) < 0.03
    assert dropped == drop_captions(captions, 0.3, torch.Generator().manual_seed(0))
    assert drop_captions(captions, 0.0, torch.Generator()) == captions


def test_text2image_errors_name_the_key(debug_cfg, tmp_path):
    with pytest.raises(ConfigError, match="text.pretrained"):
        train(
            debug_cfg(
                "task=text2image", f"text.pretrained={tmp_path}", "train.ema_decay=0", "train.max_steps=1"
            )
        )
    with pytest.raises(ConfigError, match="train.ema_decay"):
        debug_cfg("task=text2image")
    with pytest.raises(ConfigError, match="text.caption_dropout"):
        debug_cfg("text.caption_dropout=1.5")
