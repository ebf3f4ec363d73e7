"""LPIPS from local weights (torchvision's and lpips' file layouts), checked against the formula, and the
perceptual loss term: it really changes the gradient, by exactly the gradient of the term."""

import pytest
import torch
import torch.nn.functional as F

from faice.config import ConfigError
from faice.diffusion.loss import DiffusionLoss
from faice.metrics.lpips import LPIPS, load_lpips

# LPIPS' published constants (Zhang et al. 2018, the lpips package's ScalingLayer and vgg16 taps), written
# out here rather than imported, so a wrong constant in faice/metrics/lpips.py fails the formula test
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16.features
CHANNELS = (64, 128, 256, 512, 512)


def reference_lpips(state: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The LPIPS formula written out with functional ops on the saved tensors."""
    shift, scale = torch.tensor(SHIFT).view(1, 3, 1, 1), torch.tensor(SCALE).view(1, 3, 1, 1)

    def feats(h):
        h, out, i = (h - shift) / scale, [], 0
        while i <= TAPS[-1]:
            if f"features.{i}.weight" in state:
                h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
                i += 2  # conv + relu
                if i - 1 in TAPS:
                    out.append(h)
            else:
                h = F.max_pool2d(h, 2)
                i += 1
        return out

    total = 0
    for layer, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = state[f"lin{layer}.model.1.weight"].view(1, -1, 1, 1)
        total = total + ((a - b) ** 2 * w).sum(1).mean((1, 2))
    return total


def test_lpips_matches_the_formula_on_the_saved_weights(lpips_dir):
    net = load_lpips(lpips_dir)
    state = {**torch.load(lpips_dir / "vgg16-397923af.pth"), **torch.load(lpips_dir / "vgg.pth")}
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1, torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    d = net(x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(d, reference_lpips(state, x, y), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d, net(y, x))
    assert net(x, x).abs().max() < 1e-6
    assert [getattr(net, f"lin{i}").model[1].weight.shape[1] for i in range(len(TAPS))] == list(CHANNELS)
    assert not any(p.requires_grad for p in net.parameters())


def test_missing_lpips_weights_give_a_clear_error(tmp_path, monkeypatch, lpips_dir):
    monkeypatch.delenv("FAICE_LPIPS_PATH", raising=False)
    with pytest.raises(ConfigError, match="diffusion.lpips_path: not set.*VGG16.*vgg.pth"):
        load_lpips("")
    with pytest.raises(ConfigError, match="does not exist"):
        load_lpips(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "vgg.pth").write_bytes((lpips_dir / "vgg.pth").read_bytes())
    with pytest.raises(ConfigError, match="lacks 26 of the 31 LPIPS tensors"):
        load_lpips(tmp_path / "half")
    monkeypatch.setenv("FAICE_LPIPS_PATH", str(lpips_dir))
    assert isinstance(load_lpips(None), LPIPS)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_lpips_term_changes_the_gradient_by_exactly_its_own(debug_cfg, lpips_dir, prediction_type):
    from faice.models import build_model

    def grads(weight: float, only_term: bool = False):
        cfg = debug_cfg(
            f"diffusion.prediction_type={prediction_type}",
            f"diffusion.lpips_weight={weight}",
            f"diffusion.lpips_path={lpips_dir}",
        )
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data.resolution)
        loss_fn = DiffusionLoss(cfg.diffusion)
        x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
        gen = torch.Generator().manual_seed(3)
        if only_term:  # the term alone, on the same t and noise the loss draws
            t = torch.randint(0, loss_fn.num_timesteps, (4,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            abar = loss_fn.abar[t]
            from faice.diffusion import param
            from faice.diffusion.loss import denoise

            xt = param.q_sample(x0, noise, abar)
            loss = (weight * loss_fn.perceptual(denoise(model, xt, t), xt, x0, abar)).mean()
        else:
            loss = loss_fn(model, x0, gen)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    base, with_term, term = grads(0.0), grads(0.5), grads(0.5, only_term=True)
    assert (with_term - base).abs().max() > 1e-4 * base.abs().max()
    torch.testing.assert_close(with_term - base, term, rtol=1e-3, atol=1e-6)


def test_a_run_trains_with_the_lpips_term(debug_cfg, lpips_dir):
    from faice.train.loop import train

    cfg = debug_cfg("train.max_steps=2", "diffusion.lpips_weight=0.2", f"diffusion.lpips_path={lpips_dir}")
    result = train(cfg)
    assert result.step == 2
    with pytest.raises(ConfigError, match="diffusion.lpips_weight"):
        debug_cfg("diffusion.lpips_weight=-1")
