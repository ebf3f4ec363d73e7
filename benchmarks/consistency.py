"""Consistency distillation pays off at few steps: FID and seconds per image of a tiny teacher's DDIM at
1/2/4/50 steps vs its distilled consistency model (LCM sampling) at 1/2/4 steps, in one run.

    .venv/bin/python -m benchmarks.consistency        # writes benchmarks/results/consistency.json

ratio = teacher DDIM FID at 2 steps / consistency FID at 2 steps (target > 1). FIDs use the configured
extractor (faice-tiny here: an offline stand-in, not comparable to published numbers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, write_result
from faice.config import load_config
from faice.evaluate import checkpoint_config, evaluate_model
from faice.sampling import load_checkpoint_model
from faice.train.loop import train


def _score(checkpoint, cfg_overrides: list[str], sampler: str, steps: int, n: int) -> tuple[float, float]:
    model, _, _ = load_checkpoint_model(checkpoint)
    cfg, _ = checkpoint_config(checkpoint, [*cfg_overrides, f"eval.num_samples={n}", f"eval.sampler={sampler}",
                                            f"eval.num_inference_steps={steps}"])  # fmt: skip
    t0 = time.perf_counter()
    result = evaluate_model(model, cfg)
    seconds = time.perf_counter() - t0
    return result.metrics[f"fid[{cfg.eval.extractor}]"], seconds / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-steps", type=int, default=500)
    p.add_argument("--student-steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=256)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = [f"data.path={tmp / 'data'}", "data.synthetic_count=1024", "data.num_workers=0"]
        common = [*data, "log.wandb=disabled", "log.progress=false", "eval.num_samples=0", "eval.every=0",
                  "train.checkpoint_every=0", f"train.output_dir={tmp}", "eval.reference_images=512"]  # fmt: skip
        t0 = time.perf_counter()
        teacher = train(load_config("demo.yaml", [*common, f"train.max_steps={args.teacher_steps}",
                                                  "train.batch_size=16", "train.run_name=teacher"]))  # fmt: skip
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        student = train(load_config("demo.yaml", [
            *common, "task=consistency", f"consistency.teacher={teacher.run_dir}", "sample.sampler=lcm",
            "sample.num_inference_steps=2", "train.ema_decay=0.95", "train.lr=2.0e-4", "train.warmup_steps=20",
            f"train.max_steps={args.student_steps}", "train.batch_size=16", "train.run_name=student",
        ]))  # fmt: skip
        student_s = time.perf_counter() - t0
        rows = []
        for steps in (1, 2, 4, 50):
            fid, spi = _score(teacher.checkpoint, data, "ddim", steps, args.samples)
            rows.append(
                {"model": "teacher", "sampler": "ddim", "steps": steps, "fid": fid, "s_per_image": spi}
            )
        for steps in (1, 2, 4):
            fid, spi = _score(student.checkpoint, data, "lcm", steps, args.samples)
            rows.append(
                {"model": "consistency", "sampler": "lcm", "steps": steps, "fid": fid, "s_per_image": spi}
            )
    fid = {(r["model"], r["steps"]): r["fid"] for r in rows}
    ratio = fid[("teacher", 2)] / fid[("consistency", 2)]
    result = {
        "name": "consistency",
        "ratio": round(ratio, 3),
        "target": "> 1 (teacher DDIM FID at 2 steps / consistency FID at 2 steps)",
        "details": {
            "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
            "beats_teacher_at": [s for s in (1, 2, 4) if fid[("consistency", s)] < fid[("teacher", s)]],
            "teacher": f"unet-tiny, 32 px synthetic faces, {args.teacher_steps} steps ({teacher_s:.0f} s)",
            "student": f"distilled {args.student_steps} steps ({student_s:.0f} s), pseudo-Huber, EMA 0.95",
            "samples": args.samples,
            "extractor": "faice-tiny (offline stand-in; not comparable to published FIDs)",
            "machine": machine(),
        },
    }
    md = ["# Consistency distillation: FID and speed at few steps", "",
          f"Machine: {machine()}. {result['details']['teacher']}; {result['details']['student']}. "
          f"{args.samples} samples per FID (faice-tiny).", "",
          "| model | sampler | steps | FID | s/image |", "|---|---|---|---|---|"]  # fmt: skip
    md += [
        f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['fid']:.1f} | {r['s_per_image']:.4f} |"
        for r in rows
    ]
    md += ["", f"**ratio {result['ratio']}** (target > 1). The consistency model beats the teacher at "
           f"{result['details']['beats_teacher_at']} steps.", ""]  # fmt: skip
    write_result("consistency", result, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
