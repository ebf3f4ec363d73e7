"""EMA: the update is the warmed-up average of the formula, and only the EMA copy moves with it."""

import pytest
import torch

from faice.train.ema import EMA, ema_decay_at


def test_decay_warms_up_then_caps():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay_at(100_000, 0.999) == 0.999


def test_update_is_the_exponential_average_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    ema = EMA(model, decay=0.9)
    start = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    trained = model.weight.clone()
    ema.update(model, step=50)
    d = ema_decay_at(50, 0.9)
    torch.testing.assert_close(ema.model.weight, d * start + (1 - d) * trained)
    assert torch.equal(model.weight, trained)  # averaging never writes into the trained weights
    assert not any(p.requires_grad for p in ema.model.parameters())
