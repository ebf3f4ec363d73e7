"""Make sure a config's dataset exists: synthesise the embedded default on first use."""

from __future__ import annotations

from pathlib import Path

from faice.errors import ConfigError


def ensure_dataset(data_cfg) -> Path:
    """The shard folder of `data_cfg`, writing synthetic faces there when source=synthetic and it is missing."""
    path = Path(data_cfg.path)
    if (path / "manifest.json").exists():
        return path
    if data_cfg.source != "synthetic":
        raise ConfigError(
            f"data.path: no prepared dataset at {path} (manifest.json missing); run `faice data prepare SRC {path}` "
            "or set data.source=synthetic"
        )
    from faice.data.prepare import write_synthetic

    # small row groups for small sets, so several ranks x loader workers each get whole row groups
    rows_per_group = min(128, max(8, data_cfg.synthetic_count // 32))
    write_synthetic(
        path,
        data_cfg.synthetic_count,
        data_cfg.resolution,
        seed=data_cfg.synthetic_seed,
        rows_per_group=rows_per_group,
    )
    return path
