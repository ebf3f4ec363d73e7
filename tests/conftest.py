"""Shared fixtures: a tiny synthetic dataset prepared once per session, and debug configs pointing at it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.fixture(scope="session")
def debug_data(tmp_path_factory) -> Path:
    """96 synthetic faces at 16 px as shards (rows_per_group=16, so several readers get work)."""
    from faice.data.prepare import write_synthetic

    path = tmp_path_factory.mktemp("data") / "synthetic-debug"
    write_synthetic(path, 96, 16, seed=0, rows_per_group=16)
    return path


@pytest.fixture
def debug_cfg(debug_data, tmp_path):
    """A factory: configs/debug.yaml + overrides, on the session dataset, writing under tmp_path."""
    from faice.config import load_config

    def make(*overrides: str):
        base = [f"data.path={debug_data}", f"train.output_dir={tmp_path / 'runs'}"]
        return load_config(REPO / "configs" / "debug.yaml", base + list(overrides))

    return make
