"""Sampling-steps study: FID against steps for DDPM, DDIM, PNDM and DPM-Solver++ on the tiny model.

Trains the demo UNet (32 px synthetic faces) once, or takes `--checkpoint`, then samples the same seeds
with every (sampler, steps) of the plan through faice.sweep.sampler_sweep (what `faice report` runs on a
search's best checkpoint) and scores every row with the FID Inception (validated for ranking tiny models
in benchmarks/results/metric_agreement.md) against the same reference statistics, with the FID's
bootstrap std. Every sampler uses trailing timesteps (faice's `auto`).

"Within 10% of DDPM-1000" is decided beyond noise: with d = 1.1 FID(DDPM-1000) - FID(row) and
s = sqrt(std_row^2 + (1.1 std_ddpm1000)^2), a row is within when d > 2 s, not within when d < -2 s and
unresolved otherwise (more samples would tell).

    .venv/bin/python benchmarks/sampling_steps.py [--checkpoint CKPT --samples 128 --plan PLAN]

Writes benchmarks/results/sampling_steps.{json,md}.
ratio = seconds per image of DDPM-1000 / seconds per image of the fastest (sampler, steps) resolved as
        within 10% of DDPM-1000's FID (target >= 10: a fast sampler matches the full chain 10x cheaper).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, train_demo_model, write_result  # noqa: E402

TARGET, TOLERANCE = 10.0, 0.10
PLAN = "ddpm:100,1000;ddim:10,25,50,100;pndm:10,25,50;dpm-solver++:10,25,50"


def verdict(row: dict, base: dict, metric: str, std: str, z: float = 2.0) -> str:
    """within / not within / unresolved: is row's FID below 1.1 x DDPM-1000's beyond z sigma?"""
    d = (1 + TOLERANCE) * base[metric] - row[metric]
    s = (row[std] ** 2 + ((1 + TOLERANCE) * base[std]) ** 2) ** 0.5
    return "within" if d > z * s else "not within" if d < -z * s else "unresolved"


def retime(checkpoint: Path, rows: list[dict], n: int) -> None:
    """Seconds per image of every row measured again on `n` images, one row after the other in one
    process, so the speed ratio is not skewed by whatever else the machine did during the long sweep."""
    import time

    from faice.sampling import generate, load_checkpoint_model

    model, cfg, _ = load_checkpoint_model(checkpoint)
    for r in rows:
        t0 = time.perf_counter()
        generate(model, cfg, n, cfg.eval.seed, n, sampler=r["sampler"], num_inference_steps=r["steps"])
        r["sweep_s_per_image"], r["s_per_image"] = r["s_per_image"], (time.perf_counter() - t0) / n
        print(f"{r['sampler']:>13} {r['steps']:>4} steps: {r['s_per_image']:.4f} s/image", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-steps", type=int, default=600)
    p.add_argument("--samples", type=int, default=128, help="images per (sampler, steps), same seeds")
    p.add_argument("--plan", default=PLAN, help="SAMPLER:STEPS,...;... (ddpm:1000 must be in it)")
    p.add_argument("--extractor", default="inception")
    p.add_argument("--checkpoint", default=None, help="sweep this trained checkpoint instead of training one")
    p.add_argument(
        "--timing-samples",
        type=int,
        default=0,
        help="time every row again on this many images, back to back (0 = the sweep's own timings)",
    )
    p.add_argument("--rows", default=None, help="reuse the FIDs of a previous result JSON (then re-time)")
    args = p.parse_args()

    import torch

    from faice.evaluate import std_key
    from faice.sweep import fid_key, parse_plan, sampler_sweep

    plan = parse_plan(args.plan)
    if args.checkpoint:
        checkpoint, train_s = Path(args.checkpoint), None
    else:
        work = Path(tempfile.mkdtemp(prefix="faice-sampling-steps-"))
        checkpoint, train_s = train_demo_model(work, args.train_steps, args.extractor)
        print(f"trained {args.train_steps} steps in {train_s:.0f} s", flush=True)
    from faice.train.checkpoint import load_state

    steps = load_state(checkpoint).step
    scoring = [f"eval.extractor={args.extractor}", "eval.reference_images=1024", "eval.batch_size=128"]
    if args.rows:  # FIDs do not depend on timing: a run's rows can be re-timed without re-scoring
        rows = json.loads(Path(args.rows).read_text())["details"]["rows"]
        args.samples = rows[0]["num_samples"]
    else:
        rows = sampler_sweep(
            checkpoint, plan, args.samples, scoring, log=lambda line: print(line, flush=True)
        )
    if args.timing_samples:
        retime(checkpoint, rows, args.timing_samples)
    metric = fid_key(rows)
    std = std_key(metric)
    base = next(r for r in rows if r["sampler"] == "ddpm" and r["steps"] == 1000)
    for r in rows:
        r["within_10pct"] = verdict(r, base, metric, std)
    needed = {
        s: min(
            (r["steps"] for r in rows if r["sampler"] == s and r["within_10pct"] == "within"), default=None
        )
        for s in plan
    }
    close = [r for r in rows if r["within_10pct"] == "within"]
    best = min(close, key=lambda r: r["s_per_image"]) if close else base
    ratio = base["s_per_image"] / best["s_per_image"]
    out = {
        "name": "sampling_steps",
        "ratio": round(ratio, 3),
        "target": TARGET,
        "details": {
            "metric": metric,
            "uncertainty": f"{std}: bootstrap std of the FID over resamples of the {args.samples} images",
            "reference": f"DDPM-1000: {metric} {base[metric]:.2f} ± {base[std]:.2f} at "
            f"{base['s_per_image']:.4f} s/image",
            "fastest_within_10pct": best,
            "steps_within_10pct": needed,
            "rows": rows,
            "model": f"unet-tiny 32 px, {steps} steps at batch 32, EMA weights ({checkpoint})",
            "timestep_spacing": "trailing",
            "samples_per_row": args.samples,
            "timing": f"re-timed on {args.timing_samples} images per row, back to back"
            if args.timing_samples
            else "timed during the sweep",
            "torch_threads": torch.get_num_threads(),
            "machine": machine(),
        },
    }
    said = {
        s: f"{n} steps" if n else f"not resolved as within 10% at <= {max(plan[s])} steps"
        for s, n in needed.items()
    }
    md = [
        "# Sampling steps",
        "",
        f"One unet-tiny (32 px synthetic faces, {steps} training steps at batch 32, EMA weights), "
        f"{args.samples} images per row from the same seeds, trailing timesteps for every sampler, "
        f"{metric} ± its bootstrap std against the training split's reference statistics (32 px synthetic "
        "faces: comparable between rows, not with published FIDs).",
        "",
        f"| sampler | steps | s/image | {metric} | within 10% of DDPM-1000 (beyond 2 sigma) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['sampler']} | {r['steps']} | {r['s_per_image']:.4f} | {r[metric]:.2f} ± {r[std]:.2f} | "
            f"{r['within_10pct']} |"
            for r in rows
        ),
        "",
        "Fewest steps each sampler needs to come within 10% of DDPM-1000's FID beyond noise: "
        + "; ".join(f"**{s}** {text}" for s, text in said.items())
        + ".",
        "",
        f"- **ratio** = DDPM-1000 ({base['s_per_image']:.4f} s/image, {metric} {base[metric]:.2f}) / "
        f"{best['sampler']}-{best['steps']} ({best['s_per_image']:.4f} s/image, {best[metric]:.2f}) = "
        f"**{ratio:.1f}** (target >= {TARGET:g})",
        "- Earlier runs of this benchmark ranked rows with the random-CNN stand-in (fid[faice-tiny]), which "
        "benchmarks/results/metric_agreement.md showed does not rank models; they are superseded.",
        "",
    ]
    write_result("sampling_steps", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
