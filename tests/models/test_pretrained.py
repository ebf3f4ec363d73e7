"""Starting from a diffusers model folder on local disk, and freezing blocks by name: a tiny UNet saved
by the test stands in for a downloaded CelebA-HQ DDPM."""

import pytest
import torch

from faice.config import ConfigError
from faice.models import build_model
from faice.train.loop import train
from faice.train.state import build_state


@pytest.fixture
def saved_unet(debug_cfg, tmp_path):
    cfg = debug_cfg()
    torch.manual_seed(123)
    model = build_model(cfg.model, 16)
    path = tmp_path / "downloaded" / "unet"
    model.save_pretrained(path)
    return path, model.state_dict()


def test_training_starts_from_the_pretrained_weights(debug_cfg, saved_unet):
    from accelerate import Accelerator

    path, weights = saved_unet
    state = build_state(debug_cfg(f"model.pretrained={path}"), Accelerator(cpu=True))
    got = state.accelerator.unwrap_model(state.model).state_dict()
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    fresh = build_state(debug_cfg(), Accelerator(cpu=True)).model.state_dict()
    assert not all(torch.equal(fresh[k], weights[k]) for k in weights)  # not the seeded fresh init


@pytest.mark.slow
def test_frozen_blocks_stay_fixed_and_the_rest_trains(debug_cfg, saved_unet, tmp_path):
    from faice.models import load_model

    path, weights = saved_unet
    cfg = debug_cfg(
        f"model.pretrained={path}", "model.freeze=[conv_in, down_blocks.0]", "train.max_steps=3",
        "train.ema_decay=0", "train.weight_decay=0.1", "train.warmup_steps=0",
    )  # fmt: skip
    result = train(cfg, run_dir=tmp_path / "run")
    trained = load_model(result.checkpoint / "model").state_dict()
    frozen = [k for k in weights if k.startswith(("conv_in.", "down_blocks.0."))]
    free = [k for k in weights if k not in frozen]
    assert frozen and all(torch.equal(trained[k], weights[k]) for k in frozen)
    assert sum(not torch.equal(trained[k], weights[k]) for k in free) > 0.9 * len(free)


def test_pretrained_and_freeze_errors_say_what_to_do(debug_cfg, saved_unet, tmp_path):
    from accelerate import Accelerator

    path, _ = saved_unet
    with pytest.raises(ConfigError, match="not a diffusers model folder.*config.json"):
        build_state(debug_cfg(f"model.pretrained={tmp_path / 'nothing'}"), Accelerator(cpu=True))
    with pytest.raises(ConfigError, match="is a 16 px, 3-channel model.*data.resolution=16"):
        build_state(debug_cfg(f"model.pretrained={path}", "data.resolution=32"), Accelerator(cpu=True))
    with pytest.raises(ConfigError, match="no parameters under 'down_block.0'; blocks: .*down_blocks.0"):
        build_state(debug_cfg("model.freeze=[down_block.0]"), Accelerator(cpu=True))
