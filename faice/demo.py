"""`faice demo` / `make demo`: the embedded default end to end on this machine's CPU or GPU."""

from __future__ import annotations

import json
import time

from faice.config import load_config


def run_demo(overrides: list[str]) -> int:
    """Synthesise faces, train configs/demo.yaml (resuming an interrupted demo), print where outputs are."""
    from faice.train.loop import train

    cfg = load_config("demo.yaml", overrides)
    t0 = time.perf_counter()
    print(
        f"faice demo: {cfg.train.max_steps} steps of {cfg.model.name} at {cfg.data.resolution}px on synthetic faces"
    )
    run_dir = train(cfg, resume="auto").run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    minutes = (time.perf_counter() - t0) / 60
    print(
        f"\nfaice demo finished in {minutes:.1f} min (final loss {summary['metrics'].get('loss', float('nan')):.4f})\n"
        f"  sample grid:  {summary['grid']}\n"
        f"  samples:      {run_dir / 'samples' / 'final'}\n"
        f"  grids during training: {run_dir / 'samples'}\n"
        f"  loss curve:   {summary['loss_curve']}\n"
        f"  metrics:      {run_dir / 'metrics.jsonl'}, {run_dir / 'summary.json'}\n"
        f"  checkpoint:   {summary['checkpoint']}\n"
        f"  W&B (offline): {run_dir / 'wandb'}  (sync with `wandb sync`)"
    )
    return 0
