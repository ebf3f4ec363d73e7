"""The `faice` command line: data, train, sample, export, config, demo.

Bad input exits non-zero with one line naming the problem (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faice.config import ConfigError

EPILOG_OVERRIDES = "Overrides are dotted config keys: train.lr=2e-4 model.name=unet-adm data.resolution=64"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", help="YAML config (a path, or a file name under configs/); default: built-ins"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def cmd_train(args: argparse.Namespace) -> int:
    from faice.config import load_config
    from faice.train.loop import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, run_dir=args.run_dir, resume=args.resume)
    print(f"run folder: {result.run_dir}\ncheckpoint: {result.checkpoint}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from faice.sampling import generate, load_checkpoint_model, save_samples

    model, cfg, ckpt = load_checkpoint_model(args.checkpoint, use_ema=not args.no_ema)
    overrides = {
        k: v
        for k, v in dict(sampler=args.sampler, num_inference_steps=args.steps, eta=args.eta).items()
        if v is not None
    }
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


def cmd_export(args: argparse.Namespace) -> int:
    from faice.export import export_pipeline

    out = export_pipeline(args.checkpoint, args.out, sampler=args.sampler, use_ema=not args.no_ema)
    print(f"diffusers pipeline written to {out}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from faice.config import dump_yaml, load_config

    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    from faice.config import describe

    for key, tp, default, help_ in describe():
        print(f"{key} ({tp}, default {default})\n    {help_}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from faice.data.prepare import prepare_celeba, prepare_folder

    src = Path(args.src)
    if not src.exists():
        raise ConfigError(f"source folder {src} does not exist")
    layout = args.layout
    if layout == "auto":
        layout = "celeba" if (src / "celeba_hq_split").is_dir() or src.name == "celeba_hq_split" else "folder"
    fn = prepare_celeba if layout == "celeba" else prepare_folder
    manifest = fn(
        src, Path(args.out), resolution=args.resolution, encoding=args.encoding, workers=args.workers
    )
    _print_manifest(manifest, args.out)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from faice.data.prepare import write_synthetic

    manifest = write_synthetic(
        Path(args.out),
        args.n,
        args.resolution,
        seed=args.seed,
        test_fraction=args.test_fraction,
        encoding=args.encoding,
    )
    _print_manifest(manifest, args.out)
    return 0


def _print_manifest(manifest: dict, out) -> None:
    counts = ", ".join(f"{k}={v['count']}" for k, v in manifest["splits"].items())
    print(f"wrote {out}: {counts}; skipped {manifest.get('skipped_count', len(manifest.get('skipped', [])))}")
    for item in manifest.get("skipped", [])[:20]:
        print(f"  skipped {item['file']}: {item['reason']}")


def cmd_results(args: argparse.Namespace) -> int:
    from faice.results import results_command

    return results_command(args.search)


def cmd_demo(args: argparse.Namespace) -> int:
    from faice.demo import run_demo

    return run_demo(args.overrides)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="faice", description="Diffusion models of human faces.", formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model", epilog=EPILOG_OVERRIDES, formatter_class=fmt)
    _add_config_args(p)
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

    p = sub.add_parser("sample", help="sample images from a checkpoint", formatter_class=fmt)
    p.add_argument("checkpoint", help="a checkpoint folder (step-N) or a run folder (its latest checkpoint)")
    p.add_argument("--sampler", help="ddpm, ddim, pndm, dpm-solver++ (default: the run's)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the run's)")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument("--n", type=int, help="number of images (default: sample.num_images)")
    p.add_argument("--seed", type=int, help="noise seed (default: sample.seed)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--out", help="output folder (default: <checkpoint>/samples)")
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser(
        "export", help="write a diffusers pipeline folder from a checkpoint", formatter_class=fmt
    )
    p.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    p.add_argument("out", help="output folder, loadable by diffusers.DiffusionPipeline.from_pretrained")
    p.add_argument("--sampler", help="scheduler of the pipeline (default: the run's sample.sampler)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    p.set_defaults(fn=cmd_export)

    cfg = sub.add_parser("config", help="show or document configs", formatter_class=fmt)
    csub = cfg.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser(
        "show", help="print the resolved config", epilog=EPILOG_OVERRIDES, formatter_class=fmt
    )
    _add_config_args(p)
    p.set_defaults(fn=cmd_config_show)
    p = csub.add_parser("docs", help="list every config key with its type, default and meaning")
    p.set_defaults(fn=cmd_config_docs)

    data = sub.add_parser("data", help="prepare datasets as parquet shards", formatter_class=fmt)
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser(
        "prepare", help="CelebA-HQ (original layout) or any image folder -> shards", formatter_class=fmt
    )
    p.add_argument("src", help="celeba_hq_split's parent (or itself), or any folder of images")
    p.add_argument("out", help="output folder for shards and manifest.json")
    p.add_argument("--layout", choices=["auto", "celeba", "folder"], default="auto", help="source layout")
    p.add_argument("--resolution", type=int, default=128, help="stored image size (px, square)")
    p.add_argument("--encoding", choices=["raw", "png"], default="raw", help="image bytes in the shards")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: CPU count)")
    p.set_defaults(fn=cmd_data_prepare)
    p = dsub.add_parser("synth", help="write the procedural synthetic faces as shards", formatter_class=fmt)
    p.add_argument("out", help="output folder for shards and manifest.json")
    p.add_argument("--n", type=int, default=2048, help="number of faces")
    p.add_argument("--resolution", type=int, default=32, help="image size (px)")
    p.add_argument("--seed", type=int, default=0, help="seed of the faces")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of faces in the test split")
    p.add_argument("--encoding", choices=["raw", "png"], default="raw", help="image bytes in the shards")
    p.set_defaults(fn=cmd_data_synth)

    p = sub.add_parser(
        "results",
        help="print a search's results table and redraw its plots, from disk (no Ray)",
        formatter_class=fmt,
    )
    p.add_argument("search", help="a search folder: <storage>/<search name> (has search.yaml)")
    p.set_defaults(fn=cmd_results)

    p = sub.add_parser(
        "demo",
        help="synthesise faces, train a tiny UNet, write samples/grid/loss curve to runs/demo",
        epilog="Overrides apply on top of configs/demo.yaml, e.g. train.max_steps=200",
        formatter_class=fmt,
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"faice: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"faice: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faice: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as e:
        from faice.train.loop import TrainingDiverged

        if isinstance(e, TrainingDiverged):
            print(f"faice: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
