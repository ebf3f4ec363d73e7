"""Did the demo search crown the right trial? Its trials' final checkpoints scored with the reference.

Reads a finished demo-asha search (default runs/searches/demo-asha), takes every trial's newest
checkpoint, samples `--samples` (1000) images with the trial's evaluation sampler and seed, and scores
them with fid[inception] against the whole training split (bootstrap std), the reference of
benchmarks/metric_agreement.py. The search's own verdict (best trial by its ranking metric,
kid[inception] on 64 samples at the tiny scale) is compared with the reference's best.

    .venv/bin/python benchmarks/demo_ranking.py [--search runs/searches/demo-asha]

Writes benchmarks/results/demo_ranking.{json,md}. ratio = 1 when the crowned trial is the reference's
best (or within its noise), else 0 (target 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, write_result  # noqa: E402
from benchmarks.metric_agreement import cached_features, spearman  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search", default=str(REPO / "runs" / "searches" / "demo-asha"))
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--work", default=str(REPO / "runs" / "bench" / "demo-ranking"))
    args = p.parse_args()
    search, work = Path(args.search), Path(args.work)

    from faice.metrics.features import build_extractor
    from faice.metrics.reference import real_images
    from faice.metrics.stats import FrechetReference, feature_stats, fid_bootstrap_std
    from faice.results import collect, load_search, verdict
    from faice.sampling import generate, load_checkpoint_model, to_uint8
    from faice.train.checkpoint import latest_checkpoint

    spec = load_search(search)
    metric, mode = spec["metric"], spec.get("mode", "min")
    rows = collect(search)
    crowned = verdict(rows, metric, mode)
    inception = build_extractor("inception")
    first = latest_checkpoint(search / "runs" / rows[0].trial_id)
    _, cfg0, _ = load_checkpoint_model(first)
    reals = real_images(cfg0.data.path, cfg0.eval.reference_split, cfg0.data.resolution)
    real, _ = cached_features(work, f"real-{cfg0.eval.reference_split}-{len(reals)}", inception, reals)
    ref = FrechetReference(*feature_stats(real))
    table = []
    for row in rows:
        ckpt = latest_checkpoint(search / "runs" / row.trial_id)
        if ckpt is None or row.best is None:
            continue
        model, cfg, _ = load_checkpoint_model(ckpt, use_ema=cfg0.sample.use_ema)
        t0 = time.perf_counter()
        images = to_uint8(
            generate(model, cfg, args.samples, cfg.eval.seed, 100, sampler=cfg.eval.sampler or cfg.sample.sampler,
                     num_inference_steps=cfg.eval.num_inference_steps or cfg.sample.num_inference_steps)
        )  # fmt: skip
        sample_s = time.perf_counter() - t0
        fake, _ = cached_features(
            work, f"{search.name}-{row.trial_id}-{ckpt.name}-{args.samples}", inception, images
        )
        table.append({
            "trial_id": row.trial_id, "status": row.status, "checkpoint_step": int(ckpt.name.split("-")[1]),
            "config": {k: v for k, v in row.diff.items()}, f"search best {metric}": row.best,
            f"search best {metric} std": row.best_std, "reference fid[inception]": ref.distance(fake),
            "reference fid_std[inception]": fid_bootstrap_std(ref, fake, 20), "sample_s": round(sample_s, 1),
        })  # fmt: skip
        print(table[-1], flush=True)
    by_ref = sorted(table, key=lambda r: r["reference fid[inception]"])
    ref_best, runner = by_ref[0], by_ref[1] if len(by_ref) > 1 else None
    chosen = crowned["best"].trial_id if crowned else None
    tied = (
        runner is not None
        and chosen == runner["trial_id"]
        and runner["reference fid[inception]"] - ref_best["reference fid[inception]"]
        < 2 * np.hypot(runner["reference fid_std[inception]"], ref_best["reference fid_std[inception]"])
    )
    agree = chosen == ref_best["trial_id"] or tied
    rho = spearman(
        [r["reference fid[inception]"] for r in table], [r[f"search best {metric}"] for r in table]
    )
    out = {
        "name": "demo_ranking",
        "ratio": 1.0 if agree else 0.0,
        "target": 1.0,
        "details": {
            "search": str(search),
            "search_metric": metric,
            "search_verdict": crowned["text"] if crowned else None,
            "reference": f"fid[inception] of {args.samples} samples of each trial's newest checkpoint vs the "
            f"whole {cfg0.eval.reference_split} split ({len(reals)} images), bootstrap std",
            "reference_best": ref_best["trial_id"],
            "spearman_rho_search_vs_reference": round(rho, 3),
            "trials": table,
            "machine": machine(),
        },
    }
    md = [
        "# Demo search: crowned trial against the reference",
        "",
        f"Search `{search.name}` ranked by {metric}; its verdict: {out['details']['search_verdict']}.",
        f"Reference: {out['details']['reference']}.",
        "",
        f"| trial | status | checkpoint | config | search best {metric} | reference fid[inception] |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['trial_id']} | {r['status']} | {r['checkpoint_step']} | "
            + " ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                       for k, v in r["config"].items())
            + f" | {r[f'search best {metric}']:.4f}"
            + (f" ± {r[f'search best {metric} std']:.4f}" if r[f"search best {metric} std"] is not None else "")
            + f" | {r['reference fid[inception]']:.1f} ± {r['reference fid_std[inception]']:.1f} |"
            for r in by_ref
        ),
        "",
        f"Reference best: **{ref_best['trial_id']}**; crowned by the search: **{chosen}**; "
        f"Spearman rho (search metric vs reference) {rho:.3f}. ratio = {out['ratio']:g} (target 1).",
        "",
    ]  # fmt: skip
    write_result("demo_ranking", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
