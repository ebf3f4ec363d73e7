"""`faice data prepare|synth|encode`: datasets as parquet shards and latent caches."""

from __future__ import annotations

import argparse
from pathlib import Path

from faice.cli.common import FMT
from faice.errors import ConfigError


def add_data(sub) -> None:
    """`faice data ...`: prepare, synthesise or encode a dataset."""
    data = sub.add_parser("data", help="prepare datasets as parquet shards", formatter_class=FMT)
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser(
        "prepare", help="CelebA-HQ (original layout) or any image folder -> shards", formatter_class=FMT
    )
    p.add_argument("src", help="celeba_hq_split's parent (or itself), or any folder of images")
    p.add_argument("out", help="output folder for shards and manifest.json")
    p.add_argument("--layout", choices=["auto", "celeba", "folder"], default="auto", help="source layout")
    p.add_argument("--resolution", type=int, default=128, help="stored image size (px, square)")
    p.add_argument("--encoding", choices=["raw", "png"], default="raw", help="image bytes in the shards")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: CPU count)")
    p.set_defaults(fn=cmd_data_prepare)
    p = dsub.add_parser("synth", help="write the procedural synthetic faces as shards", formatter_class=FMT)
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
        formatter_class=FMT,
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


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """`faice data prepare`: shards from CelebA-HQ or an image folder; exit code."""
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
    """`faice data encode`: a latent cache of a dataset split; exit code."""
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
    """`faice data synth`: the synthetic faces as shards; exit code."""
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
