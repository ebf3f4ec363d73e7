"""What every benchmark writes: benchmarks/results/<name>.json (ratio, target, details) and its markdown twin."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


def write_result(name: str, result: dict, markdown: list[str]) -> None:
    """Write <name>.json and <name>.md under benchmarks/results/ and print the markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(markdown))
    print("\n".join(markdown))
