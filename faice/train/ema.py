"""Exponential moving average of model weights, updated after every optimizer step."""

from __future__ import annotations

import copy

import torch


def ema_decay_at(step: int, decay: float) -> float:
    """Warmed-up decay min(decay, (1 + step) / (10 + step)), so early weights are not frozen in."""
    return min(decay, (1 + step) / (10 + step))


class EMA:
    """A frozen copy of `model` tracking ema <- d * ema + (1 - d) * model.

    The update is one multi-tensor lerp over all parameters (torch._foreach_lerp_) rather than a Python
    loop of one kernel per tensor; the tensor lists are built once per source model, not every step.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._targets = (list(self.model.parameters()), list(self.model.buffers()))
        # (id of the source model, its parameters, its buffers, whether every dtype matches the copy's);
        # the lists keep that model alive, so its id cannot be reused by another while cached
        self._source: tuple[int, list, list, bool] | None = None

    def _sources(self, model: torch.nn.Module) -> tuple[list, list, bool]:
        if self._source is None or self._source[0] != id(model):
            params, buffers = list(model.parameters()), list(model.buffers())
            if len(params) != len(self._targets[0]) or len(buffers) != len(self._targets[1]):
                raise ValueError("EMA.update: the model's parameters do not match the EMA copy's")
            same = all(e.dtype == p.dtype for e, p in zip(self._targets[0], params, strict=True))
            self._source = (id(model), params, buffers, same)
        return self._source[1:]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = ema_decay_at(step, self.decay)
        params, buffers, same_dtype = self._sources(model)
        targets, target_buffers = self._targets
        if same_dtype:
            sources = [p.detach() for p in params]
        else:
            sources = [p.detach().to(e.dtype) for e, p in zip(targets, params, strict=True)]
        torch._foreach_lerp_(targets, sources, 1 - d)
        for e, b in zip(target_buffers, buffers, strict=True):
            e.copy_(b)
