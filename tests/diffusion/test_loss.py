"""The loss: each option changes exactly what it claims to change."""

import pytest
import torch

from faice.config import load_config
from faice.diffusion import param
from faice.diffusion.loss import DiffusionLoss, denoise
from faice.models import build_model


def _setup(*overrides):
    cfg = load_config("debug.yaml", list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return cfg, model, x0


def _loss(cfg, model, x0, seed=0):
    return DiffusionLoss(cfg.diffusion)(model, x0, torch.Generator().manual_seed(seed))


def test_loss_is_a_function_of_the_generator():
    cfg, model, x0 = _setup()
    assert _loss(cfg, model, x0, 0).item() == _loss(cfg, model, x0, 0).item()
    assert _loss(cfg, model, x0, 0).item() != _loss(cfg, model, x0, 1).item()


def test_loss_equals_hand_computed_mse_for_each_prediction_type():
    for pt in ("epsilon", "v_prediction", "sample"):
        cfg, model, x0 = _setup(f"diffusion.prediction_type={pt}")
        g = torch.Generator().manual_seed(7)
        t = torch.randint(0, 1000, (4,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        abar = DiffusionLoss(cfg.diffusion).abar[t]
        xt = param.q_sample(x0, noise, abar)
        expected = ((denoise(model, xt, t) - param.target(pt, x0, noise, abar)) ** 2).mean()
        got = _loss(cfg, model, x0, 7)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5), pt


def test_options_change_the_loss():
    cfg, model, x0 = _setup()
    base = _loss(cfg, model, x0).item()
    for override in (
        "diffusion.loss=l1",
        "diffusion.prediction_type=v_prediction",
        "diffusion.min_snr_gamma=1.0",
    ):
        other, _, _ = _setup(override)
        assert _loss(other, model, x0).item() != pytest.approx(base, rel=1e-4), override


def test_loss_has_gradient_for_every_parameter():
    cfg, model, x0 = _setup()
    _loss(cfg, model, x0).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_hybrid_loss_is_the_weighted_sum_of_mse_and_l1():
    losses = {}
    for name, extra in (("mse", []), ("l1", []), ("hybrid", ["diffusion.hybrid_l1_weight=0.3"])):
        cfg, model, x0 = _setup(f"diffusion.loss={name}", *extra)
        losses[name] = _loss(cfg, model, x0, 5).item()
    assert losses["hybrid"] == pytest.approx(0.7 * losses["mse"] + 0.3 * losses["l1"], rel=1e-5)
    for w, same in ((0.0, "mse"), (1.0, "l1")):
        cfg, model, x0 = _setup("diffusion.loss=hybrid", f"diffusion.hybrid_l1_weight={w}")
        assert _loss(cfg, model, x0, 5).item() == pytest.approx(losses[same], rel=1e-5)
