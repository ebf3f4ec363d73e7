"""Evaluation offload: how long the training loop waits on checkpoint evaluation, inline vs on the pool.

The same trial (demo UNet, 32 px, one core for the trainer: torch threads = 1, in-process data) runs
three times in one go: without evaluation, evaluating each checkpoint inline, and handing each
checkpoint to the evaluation pool (a real local Ray cluster with one `eval_slot`, whose task also uses
one core), standing in for a training machine and an evaluation machine.

    .venv/bin/python benchmarks/eval_offload.py [--steps 160 --every 40 --samples 48]

Writes benchmarks/results/eval_offload.{json,md}.
ratio = seconds the loop was blocked on evaluation when offloaded / the same when inline (target <= 0.05).
wall_ratio = offloaded wall time, the last evaluation included / no-eval wall time (target <= 1.1).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, write_result  # noqa: E402
from jobs.local_ray import apply_local_env  # noqa: E402

TARGET, WALL_TARGET = 0.05, 1.1


def config(work: Path, kind: str, args):
    from faice.config import load_config

    return load_config(
        REPO / "configs" / "demo.yaml",
        [
            f"data.path={work / 'data'}",
            "data.synthetic_count=1024",
            "data.num_workers=0",
            f"train.output_dir={work / 'runs'}",
            f"train.run_name={kind}",
            f"train.max_steps={args.steps}",
            f"train.checkpoint_every={args.every}",
            f"train.keep_checkpoints={args.steps // args.every + 1}",
            "train.batch_size=16",
            "train.log_every=5",
            "eval.every=0",
            "eval.grid_images=8",  # the run's final sample grid stays cheap next to training
            "sample.num_inference_steps=10",
            f"eval.num_samples={args.samples if kind in ('inline', 'offloaded') else 0}",
            f"eval.num_inference_steps={args.sampler_steps}",
            "eval.reference_images=512",
            f"eval.stats_dir={work / 'stats'}",
            "log.wandb=disabled",
            "log.progress=false",
        ],
    )


def run(work: Path, kind: str, args, pool=None) -> dict:
    """One training run; for `offloaded` its checkpoints go to `pool`, and the wall time ends when the
    pool has scored the last one."""
    import ray

    from faice.evaluate import EVAL_LOG
    from faice.results import read_jsonl
    from faice.train.checkpoint import EVAL_PENDING
    from faice.train.loop import Hooks, train

    cfg = config(work, kind, args)
    run_dir = work / "runs" / kind
    submit_s = [0.0]
    hooks = Hooks()
    if kind == "offloaded":

        def on_checkpoint(path: Path, step: int, metrics: dict) -> None:
            t = time.perf_counter()
            (path / EVAL_PENDING).touch()
            pool.submit.remote(kind, str(run_dir), str(path), step, step >= cfg.train.max_steps)
            submit_s[0] += time.perf_counter() - t

        hooks = Hooks(
            on_checkpoint=on_checkpoint,
            inline_eval=False,
            poll_evals=lambda: ray.get(pool.poll.remote(kind)),
        )
    t0 = time.perf_counter()
    result = train(cfg, run_dir=run_dir, hooks=hooks)
    train_wall = time.perf_counter() - t0
    if pool is not None:
        ray.get(pool.drain.remote(600))
    wall = time.perf_counter() - t0
    evals = [r for r in read_jsonl(run_dir / EVAL_LOG) if "eval_error" not in r]
    return {
        "wall_s": wall,
        "train_wall_s": train_wall,
        "blocked_s": result.eval_blocked_s + submit_s[0],
        "evaluations": len(evals),
        "eval_seconds_each": [round(r["eval_seconds"], 2) for r in evals],
        "fid": [round(r["fid[faice-tiny]"], 2) for r in evals],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--every", type=int, default=40, help="checkpoint (and evaluation) every N steps")
    p.add_argument("--samples", type=int, default=48, help="images generated per evaluation")
    p.add_argument("--sampler-steps", type=int, default=10)
    args = p.parse_args()

    apply_local_env()
    import ray
    import torch

    torch.set_num_threads(1)  # the trainer's one core; the eval task gets the other (OMP_NUM_THREADS=1)
    from faice.data.ensure import ensure_dataset
    from faice.evaluate import reference_for
    from faice.metrics.features import build_extractor
    from jobs.eval_pool import eval_task_options, start_dispatcher

    work = Path(tempfile.mkdtemp(prefix="faice-bench-eval-"))
    try:
        cfg = config(work, "inline", args)
        ensure_dataset(cfg.data)
        reference_for(cfg, build_extractor("faice-tiny"))  # shared by both runs, as in a search
        ray.init(num_cpus=1, resources={"eval_slot": 1}, include_dashboard=False)
        pool = start_dispatcher("bench", eval_task_options("eval_slot", 1, 0), 1, "all", 3)

        @ray.remote(num_cpus=1, resources={"eval_slot": 1})
        def warm() -> None:  # the pool's worker is long-lived in a search: import torch/diffusers once
            import faice.evaluate  # noqa: F401

        ray.get(warm.remote())
        warm_args = argparse.Namespace(**{**vars(args), "steps": 10, "every": 10})
        run(work, "warm-up", warm_args)  # first-run costs (imports, allocator) out of the timed runs
        runs = {
            kind: run(work, kind, args, pool if kind == "offloaded" else None)
            for kind in ("no-eval", "inline", "offloaded")
        }
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    inline, off, none = runs["inline"], runs["offloaded"], runs["no-eval"]
    if inline["evaluations"] != off["evaluations"]:
        raise SystemExit(f"unequal evaluation counts: {inline['evaluations']} vs {off['evaluations']}")
    ratio = off["blocked_s"] / inline["blocked_s"]
    wall_ratio = off["wall_s"] / none["wall_s"]
    result = {
        "name": "eval_offload",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "meets_target": ratio <= TARGET,
        "wall_ratio": round(wall_ratio, 3),
        "wall_target": WALL_TARGET,
        "meets_wall_target": wall_ratio <= WALL_TARGET,
        "details": {
            "runs": {
                k: {kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                for k, v in runs.items()
            },
            "inline_wall_ratio": round(inline["wall_s"] / none["wall_s"], 3),
            "setup": {
                "steps": args.steps,
                "checkpoint_every": args.every,
                "samples_per_eval": args.samples,
                "sampler": f"ddim-{args.sampler_steps}",
                "model": "unet-tiny 32 px, batch 16",
                "threads": "trainer torch threads 1; eval task 1 CPU",
            },
            "machine": machine(),
        },
    }
    d = result["details"]["runs"]
    md = [
        "# Evaluation offload",
        "",
        f"Same trial ({args.steps} steps, checkpoint + evaluation every {args.every}: {inline['evaluations']} "
        f"evaluations of {args.samples} samples, DDIM-{args.sampler_steps}, fid[faice-tiny]); trainer and "
        "eval worker on one core each.",
        "",
        "| run | wall s | training loop s | blocked on eval s | evaluations |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {v['wall_s']:.1f} | {v['train_wall_s']:.1f} | {v['blocked_s']:.3f} | {v['evaluations']} |"
            for k, v in d.items()
        ),
        "",
        f"- **ratio** (blocked offloaded / blocked inline): **{ratio:.4f}** (target <= {TARGET})",
        f"- **wall ratio** (offloaded, last evaluation included / no-eval): **{wall_ratio:.3f}** "
        f"(target <= {WALL_TARGET}); inline / no-eval: {result['details']['inline_wall_ratio']}",
        "",
    ]
    write_result("eval_offload", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
