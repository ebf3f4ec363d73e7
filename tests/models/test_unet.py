"""UNet presets: the layout each name promises is the layout built."""

import pytest
import torch

from faice.config import load_config
from faice.models import build_model, count_parameters
from faice.models.presets import MODEL_PRESETS
from faice.models.unet import unet_kwargs, unet_levels


@pytest.mark.parametrize("name", sorted(n for n in MODEL_PRESETS if not n.startswith("dit-")))
def test_every_preset_builds_and_denoises(name):
    cfg = load_config(None, [f"model.name={name}", "model.base_channels=16", "data.resolution=32"])
    model = build_model(cfg.model, 32)
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([1, 500])).sample
    assert out.shape == (2, 3, 32, 32)


def test_attention_and_resampling_follow_the_config():
    cfg = load_config(None, ["model.name=unet-adm", "model.base_channels=16"]).model
    kw = unet_kwargs(cfg, 64)
    # levels at 64, 32, 16, 8, 4 px; attention at 32/16/8
    assert kw["down_block_types"] == (
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    )
    assert kw["up_block_types"] == tuple(reversed([b.replace("Down", "Up") for b in kw["down_block_types"]]))
    assert kw["downsample_type"] == "resnet" and kw["resnet_time_scale_shift"] == "scale_shift"
    ddpm = unet_kwargs(load_config(None, ["model.base_channels=16"]).model, 128)
    assert (
        ddpm["down_block_types"].count("AttnDownBlock2D") == 1
        and ddpm["down_block_types"][3] == "AttnDownBlock2D"
    )
    assert ddpm["downsample_type"] == "conv"


def test_levels_below_the_smallest_size_are_dropped():
    assert unet_levels(128, [1, 1, 2, 2, 4, 4]) == [1, 1, 2, 2, 4, 4]
    assert unet_levels(32, [1, 1, 2, 2, 4, 4]) == [1, 1, 2, 2]  # 32, 16, 8, 4 px
    assert unet_levels(32, [1, 1, 2, 2, 4, 4], 1) == [1, 1, 2, 2, 4, 4]  # down to 1 px
    assert unet_levels(8, [1, 2, 3, 4, 5], 1) == [1, 2, 3, 4]
    assert unet_levels(2, [1, 2], 4) == [1]  # the first level is always kept


def test_the_latent_depth_study_builds_three_depths_on_the_originals_32px_latents():
    """The original's LDM study ran 4, 5 and 6 blocks on 32 px latents (6 blocks reach 1 px): each preset
    keeps every level there, and on the tiny scale's 8 px latents the three still build different networks."""
    from faice.config import resolve

    for size, depths in ((32, (4, 5, 6)), (8, (4, 4, 4))):
        built = []
        for blocks in (4, 5, 6):
            model = resolve(
                load_config(None, [f"model.name=unet-ldm-{blocks}", "model.base_channels=8"])
            ).model
            built.append(unet_kwargs(model, size, in_channels=4))
        assert tuple(len(b["block_out_channels"]) for b in built) == depths
        assert len({b["block_out_channels"] for b in built}) == 3
    net = build_model(resolve(load_config(None, ["model.name=unet-ldm-6", "model.base_channels=8"])).model, 32,
                      in_channels=4)  # fmt: skip
    assert net(torch.randn(1, 4, 32, 32), torch.tensor([3])).sample.shape == (1, 4, 32, 32)


def test_sizes_come_from_config():
    small = build_model(load_config(None, ["model.name=unet-tiny"]).model, 32)
    wide = build_model(load_config(None, ["model.name=unet-tiny", "model.base_channels=64"]).model, 32)
    assert count_parameters(wide) > 3 * count_parameters(small)
    assert 0.5e6 < count_parameters(small) < 3e6


def test_the_study_presets_have_the_originals_layouts():
    from faice.config import resolve

    base = resolve(load_config(None, ["model.name=unet-base"])).model
    assert (
        base.base_channels,
        base.layers_per_block,
        base.attention_resolutions,
        base.attention_head_dim,
    ) == (128, 2, [16], None)  # ch 128, 2 layers per block, one head, attention at 16 px
    adm = resolve(load_config(None, ["model.name=unet-adm"])).model
    assert (
        adm.attention_resolutions == [32, 16, 8] and adm.resample == "resnet" and adm.attention_head_dim == 64
    )
    assert adm.time_embedding_norm == "scale_shift"
