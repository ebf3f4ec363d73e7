"""`faice train`, `faice sample`, `faice export` and `faice demo`: each subcommand's parser next to its
command."""

from __future__ import annotations

import argparse
from pathlib import Path

from faice.cli.common import EPILOG_OVERRIDES, FMT, add_config_args
from faice.diffusion.samplers import SAMPLERS


def add_train(sub) -> None:
    """`faice train`: train a model from a config and overrides."""
    p = sub.add_parser("train", help="train a model", epilog=EPILOG_OVERRIDES, formatter_class=FMT)
    add_config_args(p)
    p.add_argument("--run-dir", help="run folder (default: <train.output_dir>/<run name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue the run folder's latest checkpoint, or the given checkpoint",
    )
    p.set_defaults(fn=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """`faice train`: one training run; exit code."""
    from faice.tasks import load_checked
    from faice.train.loop import train

    cfg = load_checked(args.config, args.overrides)
    result = train(cfg, run_dir=args.run_dir, resume=args.resume)
    print(f"run folder: {result.run_dir}\ncheckpoint: {result.checkpoint}")
    return 0


def add_sample(sub) -> None:
    """`faice sample`: images from a checkpoint."""
    p = sub.add_parser("sample", help="sample images from a checkpoint", formatter_class=FMT)
    p.add_argument("checkpoint", help="a checkpoint folder (step-N) or a run folder (its latest checkpoint)")
    p.add_argument("--sampler", choices=SAMPLERS.names(), help="sampler (default: the run's)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the run's)")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument(
        "--attr",
        nargs="+",
        metavar="NAME=0|1",
        help="conditional models: attribute values of every sample, e.g. --attr Male=1 Smiling=0 "
        "(attributes not given follow the training data)",
    )
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the run's)")
    p.add_argument("--n", type=int, help="number of images (default: sample.num_images)")
    p.add_argument("--seed", type=int, help="noise seed (default: sample.seed)")
    p.add_argument(
        "--no-ema",
        action="store_true",
        help="use the raw weights instead of the EMA (default: the run's sample.use_ema)",
    )
    p.add_argument("--out", help="output folder (default: <checkpoint>/samples)")
    p.set_defaults(fn=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    """`faice sample`: images and a grid from a checkpoint; exit code."""
    from faice.sampling import generate, load_checkpoint_model, save_samples

    model, cfg, ckpt = load_checkpoint_model(args.checkpoint, use_ema=False if args.no_ema else None)
    overrides = {
        k: v
        for k, v in dict(
            sampler=args.sampler, num_inference_steps=args.steps, eta=args.eta, guidance_scale=args.guidance
        ).items()
        if v is not None
    }
    if args.attr or args.guidance is not None:
        from faice.conditioning import parse_attributes
        from faice.errors import ConfigError

        if not cfg.model.conditioning:
            raise ConfigError("--attr/--guidance: this model is unconditional (model.conditioning is empty)")
        if args.attr:
            parse_attributes(args.attr, cfg.model.conditioning)
            overrides["attributes"] = list(args.attr)
    if "sampler" in overrides:
        from faice.diffusion.samplers import check_sampler

        check_sampler(overrides["sampler"], cfg.diffusion.prediction_type)
    n = args.n or cfg.sample.num_images
    seed = cfg.sample.seed if args.seed is None else args.seed
    out = Path(args.out) if args.out else ckpt / "samples"
    images = generate(model, cfg, n, seed=seed, **overrides)
    paths, grid = save_samples(images, out)
    print(f"wrote {len(paths)} images and {grid}")
    return 0


def add_export(sub) -> None:
    """`faice export`: a diffusers pipeline folder from a checkpoint."""
    p = sub.add_parser(
        "export", help="write a diffusers pipeline folder from a checkpoint", formatter_class=FMT
    )
    p.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    p.add_argument("out", help="output folder, loadable by diffusers.DiffusionPipeline.from_pretrained")
    p.add_argument(
        "--sampler",
        choices=SAMPLERS.names(),
        help="scheduler of the pipeline (default: the run's sample.sampler)",
    )
    p.add_argument(
        "--no-ema",
        action="store_true",
        help="export the raw weights instead of the EMA (default: the run's sample.use_ema)",
    )
    p.set_defaults(fn=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """`faice export`: a diffusers pipeline folder; exit code."""
    from faice.export import export_pipeline

    out = export_pipeline(
        args.checkpoint, args.out, sampler=args.sampler, use_ema=False if args.no_ema else None
    )
    custom = (out / "pipeline.py").exists()
    load = (
        "DiffusionPipeline.from_pretrained(PATH, trust_remote_code=True)"
        if custom
        else ("DiffusionPipeline.from_pretrained(PATH)")
    )
    print(f"diffusers pipeline written to {out} (load with {load})")
    return 0


def add_demo(sub) -> None:
    """`faice demo`: the single-run demo on synthetic faces."""
    p = sub.add_parser(
        "demo",
        help="synthesise faces, train a tiny UNet, write samples/grid/loss curve to runs/demo",
        epilog="Overrides apply on top of configs/demo.yaml, e.g. train.max_steps=200",
        formatter_class=FMT,
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.set_defaults(fn=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """`faice demo`: the single-run demo; exit code."""
    from faice.demo import run_demo

    return run_demo(args.overrides)
