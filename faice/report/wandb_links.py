"""Where a search lives in W&B: the group's link (online runs) and a panel config, from the trials'
local W&B records (never from the W&B API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faice.results import (
    _metric_mode,
)
from faice.train.reporting import WANDB_RUN

# ---------------------------------------------------------------------------- W&B


def wandb_info(search_dir: Path, spec: dict) -> dict:
    """Where the search lives in W&B: the group link when any trial ran online, and a panel config (the
    metrics to chart against `step`, one line per trial, filtered to the group) to build a workspace or
    report from. Offline the local report is the record."""
    metric, _ = _metric_mode(spec)
    runs = [json.loads(p.read_text()) for p in sorted(search_dir.glob(f"runs/*/{WANDB_RUN}"))]
    online = [r for r in runs if r.get("mode") == "online" and r.get("url")]
    group = spec.get("name") or search_dir.name
    info: dict[str, Any] = {"group": group, "runs": len(runs), "online": len(online), "link": None}
    if online:
        entity, project = online[0]["url"].split("/")[3:5]
        info["link"] = f"https://wandb.ai/{entity}/{project}/groups/{group}/workspace"
        info["runs_urls"] = {r["id"]: r["url"] for r in online}
    info["panels"] = {
        "filters": {"group": group},
        "x_axis": "step",
        "panels": [
            {"type": "line", "y": m, "group_by": "run", "title": m} for m in dict.fromkeys([metric, "loss"])
        ]  # fmt: skip
        + [{"type": "media", "key": "samples"}, {"type": "table", "columns": ["name", f"best {metric}"]}],
    }
    return info


def _wandb_lines(wandb: dict) -> list[str]:
    if wandb["link"]:
        return [f"Group {wandb['group']} in W&B: {wandb['link']} ({wandb['online']} online runs); panel "
                "config in wandb.json."]  # fmt: skip
    return [f"W&B was offline or off for this search ({wandb['runs']} local W&B runs): this report is the "
            "record. Upload with `wandb sync runs/*/wandb/offline-run-*`; wandb.json holds the panel config."]  # fmt: skip
