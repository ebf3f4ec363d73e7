"""Held-out data a model is judged on: the test split's faces and captions (the training split's when a
dataset has no test split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faice.config.schema import Config


def heldout_split(cfg: Config) -> str:
    """ "test" when the dataset has that split, else cfg.data.split."""
    from faice.data.shards import read_manifest

    return "test" if "test" in read_manifest(cfg.data.path)["splits"] else cfg.data.split


def heldout_images(cfg: Config, n: int) -> np.ndarray:
    """The first `n` uint8 images of the held-out split."""
    from faice.metrics.reference import real_images

    return real_images(cfg.data.path, heldout_split(cfg), cfg.data.resolution, n)


def heldout_prompts(cfg: Config, n: int) -> list[str]:
    """`n` prompts: text.prompts_file's lines, or the held-out split's captions, repeated."""
    from faice.data.shards import read_captions_column

    if cfg.text.prompts_file:
        lines = [ln.strip() for ln in Path(cfg.text.prompts_file).read_text().splitlines() if ln.strip()]
        return [lines[i % len(lines)] for i in range(n)]
    captions = [c for c in read_captions_column(cfg.data.path, heldout_split(cfg)) if c] or [
        "a photo of a face"
    ]
    return [captions[i % len(captions)] for i in range(n)]
