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


def train_demo_model(
    work: Path, train_steps: int, extractor: str = "faice-tiny", reference_images: int = 1024
):
    """(checkpoint folder, train seconds) of the demo UNet (32 px synthetic faces) trained at batch 32
    in `work`, with evaluation configured for `extractor` against `reference_images` training faces."""
    import time

    from faice.config import load_config
    from faice.train.loop import train

    repo = Path(__file__).resolve().parent.parent
    cfg = load_config(
        repo / "configs" / "demo.yaml",
        [
            f"data.path={work / 'data'}", "data.synthetic_count=1024", "data.num_workers=0",
            f"train.output_dir={work / 'runs'}", f"train.max_steps={train_steps}", "train.batch_size=32",
            "train.checkpoint_every=0", "eval.every=0", "eval.num_samples=0", "eval.grid_images=4",
            "sample.num_inference_steps=10", f"eval.extractor={extractor}",
            f"eval.reference_images={reference_images}", f"eval.stats_dir={work / 'stats'}",
            "log.wandb=disabled", "log.progress=false",
        ],
    )  # fmt: skip
    t0 = time.perf_counter()
    result = train(cfg, run_dir=work / "runs" / "model")
    return result.checkpoint, time.perf_counter() - t0
