"""What a run leaves behind besides checkpoints: sample grids, final samples, loss curve, summary."""

from __future__ import annotations

import time
from pathlib import Path

from faice.config import Config
from faice.durable import write_json_atomic

# (torch, the models and the samplers are imported where a run's outputs are written: the W&B sync below
# runs in the search launcher, which should not pay seconds of imports for it)


def _sampling_model(state):
    return (
        state.ema.model
        if state.ema is not None and state.cfg.sample.use_ema
        else state.accelerator.unwrap_model(state.model)
    )


def write_sample_grid(cfg: Config, state, run_dir: Path, reporter) -> Path | None:
    """Sample cfg.eval.grid_images with a fixed seed; save samples/step-N.png and log it (rank 0 only)."""
    from faice.sampling import generate, images_stats, make_grid, to_pil, upscale

    acc = state.accelerator
    path = None
    if acc.is_main_process:
        images = generate(_sampling_model(state), cfg, cfg.eval.grid_images, seed=cfg.sample.seed)
        grid = upscale(make_grid(to_pil(images)), 256)
        path = Path(run_dir) / "samples" / f"step-{state.progress.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        if reporter is not None:
            reporter.log_image(state.progress.step, "samples", grid, caption=f"step {state.progress.step}")
            reporter.log_metrics(state.progress.step, images_stats(images))
    acc.wait_for_everyone()
    return path


def finish_run(cfg: Config, state, run_dir: Path, reporter, ckpt: Path) -> dict | None:
    """Final samples + grid, loss curve and summary.json (rank 0); returns the summary."""
    import torch

    from faice.models import count_parameters
    from faice.plots import loss_curve
    from faice.sampling import generate, images_stats, save_samples

    acc = state.accelerator
    summary = None
    if acc.is_main_process:
        run_dir = Path(run_dir)
        t0 = time.perf_counter()
        images = generate(_sampling_model(state), cfg, cfg.eval.grid_images, seed=cfg.sample.seed)
        _, grid = save_samples(images, run_dir / "samples" / "final")
        sample_s = time.perf_counter() - t0
        curve = loss_curve(run_dir / "metrics.jsonl", run_dir / "loss.png")
        stats = images_stats(images)
        if reporter is not None:
            reporter.log_image(state.progress.step, "samples", to_pil_grid(grid), caption="final")
            reporter.log_metrics(state.progress.step, stats)
        summary = {
            "run": cfg.run_name,
            "step": state.progress.step,
            "metrics": state.progress.metrics,
            "samples": stats,
            "sampler": f"{cfg.sample.sampler}-{cfg.sample.num_inference_steps}",
            "sample_seconds": round(sample_s, 2),
            "parameters": count_parameters(state.accelerator.unwrap_model(state.model)),
            "device": str(acc.device),
            "torch_threads": torch.get_num_threads(),
            "processes": acc.num_processes,
            "checkpoint": str(ckpt),
            "grid": str(grid),
            "loss_curve": str(curve) if curve else None,
        }
        write_json_atomic(run_dir / "summary.json", summary)
    acc.wait_for_everyone()
    return summary


def to_pil_grid(path: Path):
    """The RGB image at `path` (a saved sample grid), loaded into memory."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def evaluate_inline(cfg: Config, state, run_dir: Path) -> dict | None:
    """FID/IS/KID of the current weights (rank 0), appended to eval.jsonl; the line, or None elsewhere."""
    from faice.evaluate import evaluate_model, write_eval

    acc, row = state.accelerator, None
    if acc.is_main_process:
        result = evaluate_model(_sampling_model(state), cfg)
        result.info["where"] = "inline"
        row = write_eval(result, run_dir, state.progress.step, cfg.eval.grid_images)
    acc.wait_for_everyone()
    return row


def eval_report(row: dict) -> dict:
    """What a report carries of one evaluation: its labelled metrics and `eval_step`, the checkpoint they
    measure (ASHA's time axis on evaluation metrics)."""
    from faice.evaluate import eval_metrics

    return {**eval_metrics(row), "eval_step": row["step"]}


def deliver_evals(rows: list[dict], step: int, reporter) -> dict:
    """Log evaluation lines (inline or from the pool) at training step `step`; returns the newest metrics.

    W&B gets the labelled metrics, `eval_step` (the checkpoint they measure) and the scored sample grid.
    """
    from PIL import Image

    latest: dict = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        latest = eval_report(row)
        if reporter is None:
            continue
        reporter.log_metrics(step, latest)
        if row.get("grid") and Path(row["grid"]).is_file():
            with Image.open(row["grid"]) as grid:
                reporter.log_image(
                    step, "eval/samples", grid.copy(), caption=f"checkpoint step {row['step']}"
                )
    return latest


def _grid(path) -> object | None:
    from PIL import Image

    if not path or not Path(path).is_file():
        return None
    with Image.open(path) as im:
        return im.convert("RGB")


def replay_run(run_dir: str | Path, reporter, start: int = 0) -> int:
    """Log a run's local record into `reporter` step by step: metrics.jsonl (a step repeated after a resume
    keeps its newest values), eval.jsonl with the scored grids, and the sample grids. Steps below `start`
    are skipped. Returns the number of steps logged."""
    from faice.evaluate import eval_metrics
    from faice.results import read_jsonl

    run_dir = Path(run_dir)
    metrics: dict[int, dict] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        metrics.setdefault(int(row["step"]), {}).update({k: v for k, v in row.items() if k != "step"})
    evals: dict[int, list[dict]] = {}
    for row in read_jsonl(run_dir / "eval.jsonl"):
        if "eval_error" not in row:
            evals.setdefault(int(row["step"]), []).append(row)
            metrics.setdefault(int(row["step"]), {}).update({**eval_metrics(row), "eval_step": row["step"]})
    samples = {int(p.stem.removeprefix("step-")): p for p in (run_dir / "samples").glob("step-*.png")}
    steps = sorted(s for s in {*metrics, *samples} if s >= start)
    for step in steps:
        reporter.log_metrics(step, metrics.get(step, {}))
        for row in evals.get(step, []):
            if (grid := _grid(row.get("grid"))) is not None:
                reporter.log_image(step, "eval/samples", grid, caption=f"checkpoint step {step}")
        if (grid := _grid(samples.get(step))) is not None:
            reporter.log_image(step, "samples", grid, caption=f"step {step}")
    return len(steps)


def sync_wandb(cfg: Config, run_dir: str | Path, late_rows: list[dict]) -> str:
    """Bring a run's W&B record up to date after its process is gone; returns what was done.

    - 'replayed': the run never finished cleanly (killed, e.g. a trial stopped by ASHA), so W&B may have
      lost what it buffered: the whole local record is logged again into the resumed run;
    - 'late': a cleanly finished run gets only `late_rows` (evaluations that arrived after it ended);
    - 'none': W&B is disabled or there is nothing to add.
    """
    from faice.config import to_dict
    from faice.results import read_jsonl
    from faice.train.reporting import WandbReporter, wandb_closed_step

    run_dir = Path(run_dir)
    if cfg.log.wandb == "disabled":
        return "none"
    last_step = max((int(r["step"]) for r in read_jsonl(run_dir / "metrics.jsonl")), default=0)
    closed = wandb_closed_step(run_dir)
    complete = closed is not None and closed >= last_step
    late_rows = [r for r in late_rows if "eval_error" not in r]
    if complete and not late_rows:
        return "none"
    reporter = WandbReporter(cfg.log, cfg.run_name, run_dir, to_dict(cfg), later_segment=True)
    try:
        if complete:
            deliver_evals(late_rows, max(last_step, *(r["step"] for r in late_rows)), reporter)
            return "late"
        replay_run(run_dir, reporter, start=reporter.next_step)
        return "replayed"
    finally:
        reporter.close()


def sync_runs(runs_dir: str | Path, late_rows: dict[str, list[dict]] | None = None) -> dict[str, str]:
    """`sync_wandb` for every run folder under `runs_dir` (a search's trials, after they ended); late
    evaluation rows by run name. Returns what was done per run."""
    from faice.config import load_config

    late_rows = late_rows or {}
    done = {}
    for run_dir in sorted(Path(runs_dir).glob("*")):
        if (run_dir / "config.yaml").is_file():
            done[run_dir.name] = sync_wandb(
                load_config(run_dir / "config.yaml"), run_dir, late_rows.get(run_dir.name, [])
            )
    return done
