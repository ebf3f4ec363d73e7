"""Samplers: seconds per image and FID at each step count, every sampler on the same trained model.

Trains the demo UNet (32 px synthetic faces) once, then samples the same seeds with every registered
sampler at each step count and scores them with the configured extractor (fid[faice-tiny] by default:
comparable across samplers here, not with published numbers).

    .venv/bin/python benchmarks/samplers.py [--train-steps 400 --samples 128 --steps 10 25 50]

Writes benchmarks/results/samplers.{json,md}.
ratio = seconds per image of the fastest (sampler, steps) whose FID is within 10% of DDIM-50's
        / seconds per image of DDIM-50 (target <= 1: some sampler matches DDIM-50 for less).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, train_demo_model, write_result  # noqa: E402

TARGET, TOLERANCE = 1.0, 0.10


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--samples", type=int, default=128, help="images per (sampler, steps)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--extractor", default="faice-tiny")
    args = p.parse_args()

    import torch

    from faice.diffusion.samplers import SAMPLERS
    from faice.evaluate import reference_for, score
    from faice.metrics.features import build_extractor
    from faice.sampling import generate, load_checkpoint_model, to_uint8

    work = Path(tempfile.mkdtemp(prefix="faice-samplers-"))
    checkpoint, train_s = train_demo_model(work, args.train_steps, args.extractor)
    model, cfg, _ = load_checkpoint_model(checkpoint, use_ema=True)
    extractor = build_extractor(args.extractor, cfg.eval)
    ref = reference_for(cfg, extractor)
    metric = f"fid[{args.extractor}]"
    rows = []
    for name in SAMPLERS.names():
        for steps in args.steps:
            t = time.perf_counter()
            images = generate(model, cfg, args.samples, seed=1234, sampler=name, num_inference_steps=steps)
            seconds = time.perf_counter() - t
            fid = score(to_uint8(images), ref, extractor, cfg).metrics[metric]
            rows.append({"sampler": name, "steps": steps, "s_per_image": seconds / args.samples, metric: fid})
            print(
                f"{name:>13} {steps:>3} steps: {seconds / args.samples:.4f} s/image, {metric} {fid:.3f}",
                flush=True,
            )

    base = next(r for r in rows if r["sampler"] == "ddim" and r["steps"] == max(args.steps))
    close = [r for r in rows if r[metric] <= base[metric] * (1 + TOLERANCE)]
    best = min(close, key=lambda r: r["s_per_image"])
    ratio = best["s_per_image"] / base["s_per_image"]
    out = {
        "name": "samplers",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "details": {
            "metric": metric,
            "reference": f"DDIM-{base['steps']}: {base[metric]:.3f} at {base['s_per_image']:.4f} s/image",
            "fastest_within_10pct": best,
            "rows": rows,
            "model": f"unet-tiny 32 px, {args.train_steps} steps at batch 32 ({train_s:.0f} s), EMA weights",
            "samples_per_row": args.samples,
            "torch_threads": torch.get_num_threads(),
            "machine": machine(),
        },
    }
    md = [
        "# Samplers",
        "",
        f"One unet-tiny (32 px synthetic faces, {args.train_steps} steps, EMA), {args.samples} images per row with "
        f"the same seeds, {metric} against 1024 training images (not comparable to published FIDs).",
        "",
        f"| sampler | steps | s/image | {metric} |",
        "|---|---|---|---|",
        *(f"| {r['sampler']} | {r['steps']} | {r['s_per_image']:.4f} | {r[metric]:.3f} |" for r in rows),
        "",
        f"- **ratio**: {best['sampler']}-{best['steps']} ({best['s_per_image']:.4f} s/image, {metric} "
        f"{best[metric]:.3f}) / DDIM-{base['steps']} ({base['s_per_image']:.4f} s/image, {base[metric]:.3f}) = "
        f"**{ratio:.3f}** (target <= {TARGET}: within {TOLERANCE:.0%} of DDIM-{base['steps']}'s FID for less time)",
        "- Heun evaluates the model twice per step (2n-1 calls for n steps).",
        "- ddpm, ddim and dpm-solver++ clip (threshold) the predicted clean image at every step; euler and heun "
        "have no such option in diffusers.",
        "",
    ]
    write_result("samplers", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
