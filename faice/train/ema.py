"""Exponential moving average of model weights, updated after every optimizer step."""

from __future__ import annotations

import copy

import torch


def ema_decay_at(step: int, decay: float) -> float:
    """Warmed-up decay min(decay, (1 + step) / (10 + step)), so early weights are not frozen in."""
    return min(decay, (1 + step) / (10 + step))


class EMA:
    """A frozen copy of `model` tracking ema <- d * ema + (1 - d) * model."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = ema_decay_at(step, self.decay)
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach().to(e.dtype), 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)
