"""Class conditioning on binary face attributes, with classifier-free guidance (Ho & Salimans 2022).

A model conditioned on k attributes (`model.conditioning`, e.g. [Male, Smiling]) has 2^k + 1 classes:
class sum_i a_i 2^i for attribute values a (a_i = 1 where attribute i is present), and one "null"
class, 2^k, that stands for "no label". Training replaces a `train.label_dropout` share of the labels with
the null class, so the same network also predicts unconditionally; sampling mixes the two predictions,
out = out_null + s * (out_label - out_null), with s = `sample.guidance_scale` (1 = plain conditional).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

MAX_ATTRIBUTES = 8  # 257 classes


def null_label(k: int) -> int:
    """The class index of 'no label' (classifier-free guidance's null class) for k attributes: 2**k."""
    return 2**k


def num_classes(k: int) -> int:
    """Embedding rows of a model conditioned on k attributes: every combination and the null class."""
    return 2**k + 1


def encode(values: torch.Tensor) -> torch.Tensor:
    """Attribute values (B, k) (1 = present; 0 or -1 = absent/unknown) -> class labels (B,)."""
    bits = (values == 1).long()
    return (bits << torch.arange(values.shape[1], device=values.device)).sum(1)


def decode(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Class labels (B,) -> 0/1 attribute values (B, k); the null class has no attributes to decode."""
    return (labels[:, None] >> torch.arange(k, device=labels.device)) & 1


def attribute_columns(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of the `wanted` attributes among the dataset's; a ConfigError names the valid ones."""
    from faice.errors import ConfigError

    missing = [a for a in wanted if a not in available]
    if missing:
        raise ConfigError(
            f"model.conditioning: the dataset has no attribute {', '.join(map(repr, missing))}; "
            f"valid choices: {', '.join(available)}"
        )
    return [list(available).index(a) for a in wanted]


def drop_labels(labels: torch.Tensor, p: float, k: int, generator: torch.Generator) -> torch.Tensor:
    """`labels` with each one replaced by the null class with probability p (label dropout)."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_label(k)), labels)


def parse_attributes(items: Sequence[str], conditioning: Sequence[str]) -> dict[str, int]:
    """["Male=1", "Smiling=0"] -> {"Male": 1, "Smiling": 0}, checked against the model's attributes."""
    from faice.errors import ConfigError

    fixed = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or value.strip() not in ("0", "1"):
            raise ConfigError(f"sample.attributes: {item!r} is not NAME=0 or NAME=1 (e.g. Male=1)")
        if name not in conditioning:
            raise ConfigError(
                f"sample.attributes: the model is not conditioned on {name!r}; its attributes: "
                f"{', '.join(conditioning) or 'none (an unconditional model)'}"
            )
        fixed[name] = int(value)
    return fixed


def sample_labels(
    conditioning: Sequence[str], fixed: dict[str, int], n: int, seed: int, table: np.ndarray | None = None
) -> torch.Tensor:
    """n class labels: attributes in `fixed` take their value, the others follow the training data's
    joint distribution (rows of `table`, (N, k) in `conditioning` order), or are fair coins without it."""
    k = len(conditioning)
    rng = np.random.default_rng(seed)
    if table is not None and len(table):
        values = (table[rng.integers(0, len(table), n)] == 1).astype(np.int64)
    else:
        values = rng.integers(0, 2, (n, k))
    for name, value in fixed.items():
        values[:, list(conditioning).index(name)] = value
    return encode(torch.from_numpy(values))
