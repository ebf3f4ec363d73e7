"""Which cheap metric ranks tiny models the way the reference FID does?

A ladder of checkpoints of clearly different quality in the demo's setting (32 px synthetic faces, the
~1 M-parameter UNet): one width at several training lengths, a narrower width at two lengths, and a
deliberately poor sampler setting. Each checkpoint's samples are generated once (`--samples`, default
1000, the evaluation seed and sampler a trial uses) and reused by every metric.

- Reference ranking: fid[inception] of all samples against the whole reference split (the training
  split), with its bootstrap std.
- Candidates, each at the budgets a `tiny` trial can afford per checkpoint (`--budgets`, samples per
  evaluation) against the reference statistics the `tiny` scale uses (`--candidate-reference` images):
  fid/kid[inception], FID_inf[inception] (Chong & Forsyth 2020) and the offline stand-in
  fid/kid[faice-tiny]. Each is scored on `--repeats` random subsets of the samples; Spearman rho and
  top-1 agreement with the reference ranking are averaged over them.
- Cost: seconds per evaluation = budget x (sampling + feature seconds per image, measured here) plus
  the metric's own maths (measured).

    .venv/bin/python benchmarks/metric_agreement.py [--work runs/bench/metric-agreement]

Everything expensive (checkpoints, samples, features) is cached under --work, so a rerun only redoes
the statistics. Writes benchmarks/results/metric_agreement.{json,md}.
ratio = mean Spearman rho of the metric made the `tiny` default (target >= 0.9, and top-1 agreement).
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

TARGET = 0.9
DEFAULT = "kid[inception]@64"  # the `tiny` scale's ranking metric (tune/scales/tiny.yaml)
# (name, run, training steps, sampler, sampler steps): the checkpoint ladder
LADDER = [
    ("w32-50", "w32", 50, "ddim", 20),
    ("w32-100", "w32", 100, "ddim", 20),
    ("w32-200", "w32", 200, "ddim", 20),
    ("w32-400", "w32", 400, "ddim", 20),
    ("w32-800", "w32", 800, "ddim", 20),
    ("w16-150", "w16", 150, "ddim", 20),
    ("w16-400", "w16", 400, "ddim", 20),
    ("w32-800-ddim3", "w32", 800, "ddim", 3),
]
RUNS = {"w32": (["model.base_channels=32"], 800), "w16": (["model.base_channels=16"], 400)}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def base_overrides(work: Path) -> list[str]:
    return [
        "data.path=data/prepared/synthetic-32", "data.num_workers=0", f"train.output_dir={work / 'runs'}",
        "eval.every=0", "eval.num_samples=0", "log.wandb=disabled", "log.progress=false",
        f"eval.stats_dir={work / 'stats'}",
    ]  # fmt: skip


def train_runs(work: Path) -> dict[str, Path]:
    from faice.config import load_config
    from faice.train.loop import train

    out = {}
    for run, (overrides, steps) in RUNS.items():
        run_dir = work / "runs" / run
        out[run] = run_dir
        if (run_dir / "checkpoints" / f"step-{steps:07d}").is_dir():
            continue
        cfg = load_config(
            REPO / "configs" / "demo.yaml",
            base_overrides(work)
            + overrides
            + [f"train.max_steps={steps}", "train.checkpoint_every=50", "train.keep_checkpoints=100"],
        )
        t0 = time.perf_counter()
        train(cfg, run_dir=run_dir)
        print(f"trained {run} ({steps} steps) in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def rung_samples(work: Path, runs: dict[str, Path], rung: tuple, n: int) -> tuple[np.ndarray, float]:
    """uint8 samples of one ladder rung (cached) and the seconds per image it took to make them."""
    from faice.sampling import generate, load_checkpoint_model, to_uint8

    name, run, steps, sampler, sampler_steps = rung
    path = work / "samples" / f"{name}-{n}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], float(z["s_per_image"])
    model, cfg, _ = load_checkpoint_model(runs[run] / "checkpoints" / f"step-{steps:07d}")
    t0 = time.perf_counter()
    images = to_uint8(
        generate(model, cfg, n, cfg.eval.seed, 100, sampler=sampler, num_inference_steps=sampler_steps)
    )
    s_per_image = (time.perf_counter() - t0) / n
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, s_per_image=s_per_image)
    print(f"{name}: {n} samples at {s_per_image:.3f} s/image", flush=True)
    return images, s_per_image


def cached_features(work: Path, key: str, extractor, images: np.ndarray) -> tuple[np.ndarray, float]:
    """(features, seconds per image) of `images` with `extractor`, cached under work/features/."""
    path = work / "features" / f"{key}-{extractor.name}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["features"], float(z["s_per_image"])
    t0 = time.perf_counter()
    feats, _ = extractor.features(images)
    s_per_image = (time.perf_counter() - t0) / len(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=feats, s_per_image=s_per_image)
    print(f"features {key} [{extractor.name}]: {s_per_image:.3f} s/image", flush=True)
    return feats, s_per_image


def candidate_values(real: np.ndarray, ref, fake: np.ndarray, seed: int) -> dict[str, tuple[float, float]]:
    """{metric: (value, seconds of maths)} of one subset of generated features."""
    from faice.metrics.stats import fid_infinity, kernel_inception_distance

    out = {}
    t0 = time.perf_counter()
    out["fid"] = (ref.distance(fake), time.perf_counter() - t0)
    t0 = time.perf_counter()
    out["kid"] = (kernel_inception_distance(real, fake, 100, 1000, seed=seed)[0], time.perf_counter() - t0)
    t0 = time.perf_counter()
    out["fid_inf"] = (fid_infinity(ref, fake, seed=seed)[0], time.perf_counter() - t0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "bench" / "metric-agreement"))
    p.add_argument("--samples", type=int, default=1000, help="generated images per checkpoint")
    p.add_argument("--budgets", default="64,128,256", help="samples per evaluation of the candidates")
    p.add_argument("--candidate-reference", type=int, default=512, help="real images of the candidates")
    p.add_argument("--repeats", type=int, default=10, help="random sample subsets per candidate")
    args = p.parse_args()
    work = Path(args.work)
    budgets = [int(b) for b in args.budgets.split(",")]

    import torch

    from faice.config import load_config
    from faice.data.ensure import ensure_dataset
    from faice.metrics.features import build_extractor
    from faice.metrics.reference import real_images
    from faice.metrics.stats import FrechetReference, feature_stats, fid_bootstrap_std

    cfg = load_config(REPO / "configs" / "demo.yaml", base_overrides(work))
    ensure_dataset(cfg.data)
    runs = train_runs(work)
    extractors = {name: build_extractor(name) for name in ("inception", "faice-tiny")}
    reals = real_images(cfg.data.path, "train", 32)
    real = {e: cached_features(work, f"real-train-{len(reals)}", x, reals)[0] for e, x in extractors.items()}

    rows = []
    for rung in LADDER:
        images, sample_s = rung_samples(work, runs, rung, args.samples)
        feats = {
            e: cached_features(work, f"{rung[0]}-{args.samples}", x, images) for e, x in extractors.items()
        }
        rows.append({"rung": rung, "sample_s": sample_s, "features": feats})

    # reference: Inception FID of every sample against the whole split
    full_ref = FrechetReference(*feature_stats(real["inception"]))
    for r in rows:
        fake = r["features"]["inception"][0]
        r["reference_fid"] = full_ref.distance(fake)
        r["reference_fid_std"] = fid_bootstrap_std(full_ref, fake, 20)
    gold = [r["reference_fid"] for r in rows]
    gold_best = int(np.argmin(gold))

    # candidates
    ncand = args.candidate_reference
    cand_real = {e: f[:ncand] for e, f in real.items()}
    cand_ref = {e: FrechetReference(*feature_stats(f)) for e, f in cand_real.items()}
    rng = np.random.default_rng(0)
    values: dict[str, np.ndarray] = {}  # name -> (repeats, rungs)
    maths_s: dict[str, list[float]] = {}
    for budget in budgets:
        subsets = [rng.choice(args.samples, budget, replace=False) for _ in range(args.repeats)]
        for e in extractors:
            for i, r in enumerate(rows):
                fake = r["features"][e][0]
                for k, idx in enumerate(subsets):
                    for metric, (v, secs) in candidate_values(
                        cand_real[e], cand_ref[e], fake[idx], k
                    ).items():
                        if metric == "fid_inf" and e != "inception":
                            continue
                        name = f"{metric}[{e}]@{budget}"
                        values.setdefault(name, np.zeros((args.repeats, len(rows))))[k, i] = v
                        maths_s.setdefault(name, []).append(secs)
    results = {}
    for name, table in values.items():
        e, budget = name.split("[")[1].split("]")[0], int(name.split("@")[1])
        rhos = [spearman(gold, row) for row in table]
        top1 = [int(np.argmin(row)) == gold_best for row in table]
        per_image = np.mean([r["sample_s"] + r["features"][e][1] for r in rows])
        results[name] = {
            "spearman_rho_mean": round(float(np.mean(rhos)), 4),
            "spearman_rho_min": round(float(np.min(rhos)), 4),
            "top1_agreement": round(float(np.mean(top1)), 3),
            "seconds_per_evaluation": round(float(budget * per_image + np.mean(maths_s[name])), 2),
            "feature_seconds_per_image": round(float(np.mean([r["features"][e][1] for r in rows])), 4),
        }
    default = results[DEFAULT]
    ladder = [
        {
            "checkpoint": r["rung"][0],
            "training_steps": r["rung"][2],
            "sampler": f"{r['rung'][3]}-{r['rung'][4]}",
            "fid[inception]": round(r["reference_fid"], 2),
            "fid_std[inception]": round(r["reference_fid_std"], 2),
            **{name: round(float(values[name][:, i].mean()), 5) for name in values},
        }
        for i, r in enumerate(rows)
    ]
    out = {
        "name": "metric_agreement",
        "ratio": default["spearman_rho_mean"],
        "target": TARGET,
        "details": {
            "default_metric": DEFAULT,
            "default_top1_agreement": default["top1_agreement"],
            "reference": f"fid[inception], {args.samples} samples per checkpoint vs the whole training split "
            f"({len(reals)} images), bootstrap std over 20 resamples",
            "candidates_reference_images": ncand,
            "repeats": args.repeats,
            "metrics": results,
            "ladder": ladder,
            "sample_seconds_per_image": {r["rung"][0]: round(r["sample_s"], 4) for r in rows},
            "torch_threads": torch.get_num_threads(),
            "machine": machine(),
        },
    }
    write_result("metric_agreement", out, markdown(out, rows, results, budgets))
    return 0


def markdown(out: dict, rows: list, results: dict, budgets: list[int]) -> list[str]:
    d = out["details"]
    shown = [n for n in results if n.endswith(f"@{budgets[len(budgets) // 2]}")]
    md = [
        "# Metric agreement: which cheap metric ranks tiny models like the reference FID",
        "",
        f"Reference: {d['reference']}. Candidates: against the first {d['candidates_reference_images']} "
        f"training images, each on {d['repeats']} random subsets of the same samples; rho and top-1 are "
        "averaged over the subsets. Seconds per evaluation = budget x (sampling + features per image) + maths, "
        f"on this machine ({d['machine']}, {d['torch_threads']} threads).",
        "",
        "| metric | Spearman rho (mean) | rho (worst subset) | top-1 agreement | s / evaluation |",
        "|---|---|---|---|---|",
        *(
            f"| {'**' + n + '**' if n == d['default_metric'] else n} | {m['spearman_rho_mean']:.3f} | "
            f"{m['spearman_rho_min']:.3f} | {m['top1_agreement']:.2f} | {m['seconds_per_evaluation']:.1f} |"
            for n, m in sorted(results.items(), key=lambda kv: -kv[1]["spearman_rho_mean"])
        ),
        "",
        f"**ratio** = mean rho of the `tiny` default {d['default_metric']} = **{out['ratio']:.3f}** "
        f"(target >= {out['target']}), top-1 agreement {d['default_top1_agreement']:.2f}.",
        "",
        "## The ladder (candidate columns: mean over subsets)",
        "",
        "| checkpoint | steps | sampler | fid[inception] (ref) | " + " | ".join(shown) + " |",
        "|---|---|---|---|" + "---|" * len(shown),
        *(
            f"| {r['checkpoint']} | {r['training_steps']} | {r['sampler']} | "
            f"{r['fid[inception]']:.1f} ± {r['fid_std[inception]']:.1f} | "
            + " | ".join(f"{r[n]:.4g}" for n in shown)
            + " |"
            for r in d["ladder"]
        ),
        "",
    ]
    return md


if __name__ == "__main__":
    sys.exit(main())
