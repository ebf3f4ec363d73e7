"""Every model preset, at debug size, builds, does one training step that changes its weights, and
samples. Debug size keeps each preset's layout (UNet levels, attention, resampling; DiT depth, heads and
patch) and shrinks only the width: UNet base_channels 16, DiT head dim 8."""

import pytest
import torch

from faice.config import resolve
from faice.diffusion.loss import DiffusionLoss
from faice.models import build_model
from faice.models.presets import MODEL_PRESETS
from faice.sampling import generate


def debug_size(name: str) -> list[str]:
    if name.startswith("dit-"):
        heads = MODEL_PRESETS[name]["heads"]
        return [f"model.width={heads * 8}"]
    return ["model.base_channels=16"]


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_every_preset_trains_a_step_and_samples(debug_cfg, name):
    cfg = resolve(debug_cfg(f"model.name={name}", *debug_size(name), "model.conditioning=[Male]"))
    preset = MODEL_PRESETS[name]
    if name.startswith("dit-"):  # the layout is the preset's; only the width shrank
        assert (cfg.model.depth, cfg.model.heads, cfg.model.patch_size) == tuple(
            preset[k] for k in ("depth", "heads", "patch_size")
        )
    else:
        assert (cfg.model.channel_mult, cfg.model.resample) == (preset["channel_mult"], preset["resample"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.resolution)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = DiffusionLoss(cfg.diffusion, label_dropout=0.5, num_attributes=1)(
        model, x0, torch.Generator().manual_seed(0), labels=torch.tensor([0, 1])
    )
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed > 0.5 * len(before), f"{changed} of {len(before)} tensors changed"
    images = generate(model, cfg, 2, seed=0, labels=torch.tensor([0, 1]), num_inference_steps=2)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
