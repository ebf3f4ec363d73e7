"""FID against sampling steps: one checkpoint, several samplers, several step counts, the same seeds.

Used by `faice report` (the "FID vs sampling steps" plot of a search's best checkpoint) and by
benchmarks/sampling_steps.py. Every row is scored against the same cached reference statistics with
the same extractor, so rows are comparable with each other (and, for `[faice-tiny]`, with nothing else).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

DEFAULT_PLAN = {"ddpm": [25, 100, 1000], "ddim": [10, 25, 50], "pndm": [10, 25, 50], "dpm-solver++": [10, 25]}
"""The report's default sweep: the original's samplers (DDPM, DDIM, PNDM) plus DPM-Solver++."""


def format_plan(plan: Mapping[str, Sequence[int]]) -> str:
    """{"ddpm": [25, 1000], "ddim": [10]} -> `ddpm:25,1000;ddim:10` (what parse_plan reads)."""
    return ";".join(f"{name}:{','.join(map(str, steps))}" for name, steps in plan.items())


def parse_plan(text: str) -> dict[str, list[int]]:
    """`ddpm:25,1000;ddim:10,50` -> {"ddpm": [25, 1000], "ddim": [10, 50]}; samplers are checked."""
    from faice.diffusion.samplers import SAMPLERS
    from faice.errors import ConfigError

    plan: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, steps = part.partition(":")
        if not sep or name not in SAMPLERS.names():
            raise ConfigError(
                f"--sweep: {part!r} is not SAMPLER:STEPS,...; valid samplers: {', '.join(SAMPLERS.names())}"
            )
        try:
            plan[name] = sorted({int(s) for s in steps.split(",") if s.strip()})
        except ValueError:
            raise ConfigError(f"--sweep: steps of {name} must be integers, got {steps!r}") from None
        if not plan[name] or min(plan[name]) < 1:
            raise ConfigError(f"--sweep: {name} needs step counts >= 1, got {steps!r}")
    return plan


def sampler_sweep(
    ckpt: str | Path,
    plan: Mapping[str, Sequence[int]],
    num_samples: int,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Rows {sampler, steps, s_per_image, fid[x], kid[x], num_samples} of `ckpt`'s model sampled with
    every (sampler, steps) of `plan`, each from the same noise seed (cfg.eval.seed), scored by the
    checkpoint config's extractor (plus `overrides`, e.g. eval.extractor=inception)."""
    from accelerate import PartialState

    from faice.evaluate import checkpoint_config, metric_key, reference_for, score
    from faice.metrics.features import build_extractor
    from faice.sampling import generate, load_checkpoint_model, to_uint8

    cfg, path = checkpoint_config(ckpt, list(overrides))
    model, _, _ = load_checkpoint_model(path, use_ema=cfg.sample.use_ema)
    model.to(PartialState().device)
    extractor = build_extractor(cfg.eval.extractor, cfg.eval)
    ref = reference_for(cfg, extractor)
    fid = metric_key("fid", extractor.name)
    rows = []
    for sampler, counts in plan.items():
        for steps in counts:
            t0 = time.perf_counter()
            images = generate(
                model, cfg, num_samples, cfg.eval.seed, cfg.eval.batch_size, sampler=sampler,
                num_inference_steps=steps,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
            metrics = score(to_uint8(images), ref, extractor, cfg).metrics
            row = {"sampler": sampler, "steps": steps, "s_per_image": seconds / num_samples,
                   **{k: v for k, v in metrics.items() if k.split("[")[0] in UNCERTAIN},
                   "num_samples": num_samples}  # fmt: skip
            rows.append(row)
            if log:
                log(f"{sampler:>13} {steps:>4} steps: {row['s_per_image']:.4f} s/image, {fid} {row[fid]:.3f}")
    return rows


UNCERTAIN = ("fid", "fid_std", "kid", "kid_std")  # the sweep's columns: each metric with its uncertainty


def fid_key(rows: Sequence[dict]) -> str:
    """The fid[extractor] column of sweep rows."""
    return next(k for k in rows[0] if k.startswith("fid["))


def steps_to_match(rows: Sequence[dict], reference: float, tolerance: float = 0.10) -> dict[str, int | None]:
    """Per sampler, the fewest steps whose FID is within `tolerance` (relative) of `reference`
    (None: no step count tried gets there)."""
    key = fid_key(rows)
    out: dict[str, int | None] = {}
    for row in rows:
        out.setdefault(row["sampler"], None)
        if row[key] <= reference * (1 + tolerance):
            best = out[row["sampler"]]
            out[row["sampler"]] = row["steps"] if best is None else min(best, row["steps"])
    return out
