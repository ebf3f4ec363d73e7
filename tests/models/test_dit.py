"""Pixel-space DiT: presets build at their sizes, the output matches the input channels (no learned
sigma, no 6-vs-3 channel mismatch), it trains and samples through the same loop, and conditions."""

import pytest
import torch

from faice.config import ConfigError, load_config, resolve
from faice.diffusion.loss import DiffusionLoss, denoise
from faice.models import build_model, count_parameters
from faice.models.presets import DIT_PRESETS, DIT_SIZES


def dit(name="dit-debug", *overrides, resolution=16):
    cfg = load_config("debug.yaml", [f"model.name={name}", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model, resolution), cfg


def test_presets_follow_the_paper_sizes():
    assert len([n for n in DIT_PRESETS if n != "dit-debug"]) == 12
    cfg = resolve(load_config("debug.yaml", ["model.name=dit-s-4"]))
    assert (cfg.model.depth, cfg.model.width, cfg.model.heads, cfg.model.patch_size) == (12, 384, 6, 4)
    model = build_model(cfg.model, 32)
    assert model.config.num_layers == 12 and model.config.patch_size == 4
    assert 30e6 < count_parameters(model) < 40e6  # DiT-S: ~33 M parameters
    assert DIT_SIZES["xl"] == (28, 1152, 16)


@pytest.mark.parametrize("name", sorted(DIT_PRESETS))
def test_every_dit_preset_resolves_and_the_small_ones_build(name):
    from faice.models.dit import dit_kwargs

    cfg = resolve(load_config("debug.yaml", [f"model.name={name}"]))
    kw = dit_kwargs(cfg.model, 32)
    assert kw["num_layers"] * kw["num_attention_heads"] * kw["attention_head_dim"] > 0
    assert kw["out_channels"] == kw["in_channels"] == 3 and 32 % kw["patch_size"] == 0
    if name.startswith(("dit-s-", "dit-debug")):  # B/L/XL are 130-675 M parameters: resolved only
        model = build_model(cfg.model, 32)
        assert denoise(model, torch.randn(1, 3, 32, 32), torch.tensor([3])).shape == (1, 3, 32, 32)


def test_output_has_the_input_channels_and_the_loss_runs():
    model, cfg = dit()
    x = torch.randn(2, 3, 16, 16)
    out = denoise(model, x, torch.tensor([10, 900]))
    assert out.shape == x.shape  # learn_sigma = false: never 6 channels against a 3-channel target
    loss = DiffusionLoss(cfg.diffusion)(model, x.clamp(-1, 1), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_conditional_dit_uses_labels_and_has_no_hidden_label_dropout():
    model, _ = dit("dit-debug", "model.conditioning=[Male]")
    embed = [m for m in model.modules() if type(m).__name__ == "LabelEmbedding"]
    assert embed and all(m.dropout_prob == 0 for m in embed)  # train.label_dropout is the only dropout
    model.train()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    torch.manual_seed(1)
    a = denoise(model, x, t, torch.tensor([0, 0]))
    torch.manual_seed(2)
    a2 = denoise(model, x, t, torch.tensor([0, 0]))
    torch.testing.assert_close(a, a2)  # no random label drop inside the model
    with torch.no_grad():
        for m in embed:
            m.embedding_table.weight.normal_()  # zero-init adaLN makes fresh outputs label-blind
        for block in model.transformer_blocks:
            block.norm1.linear.weight.normal_(0, 0.02)
        assert not torch.allclose(
            denoise(model, x, t, torch.tensor([0, 0])), denoise(model, x, t, torch.tensor([1, 1]))
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dit_trains_checkpoints_and_samples(debug_cfg, tmp_path):
    from faice.sampling import generate, load_checkpoint_model
    from faice.train.loop import train

    cfg = debug_cfg("model.name=dit-debug", "train.max_steps=2")
    result = train(cfg, run_dir=tmp_path / "run")
    model, cfg, _ = load_checkpoint_model(result.checkpoint)
    assert type(model).__name__ == "DiTTransformer2DModel"
    images = generate(model, cfg, 2, seed=0, num_inference_steps=3)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()


def test_bad_dit_shapes_name_the_key():
    with pytest.raises(ConfigError, match="model.patch_size: 8 does not divide data.resolution=12"):
        dit("dit-debug", "model.patch_size=8", resolution=12)
    with pytest.raises(ConfigError, match="model.width: 30 is not a multiple of model.heads=4"):
        dit("dit-debug", "model.width=30", "model.heads=4")
