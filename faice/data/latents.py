"""The latent cache: a dataset split encoded once by an autoencoder, streamed by latent diffusion runs.

A cache is a folder of parquet shards (`mean`, for KL autoencoders `std`, and with flips on the same of
the mirrored image, plus the attribute columns) and a manifest.json. Its name is a key over the
autoencoder's weights (content hash), the dataset's manifest hash, split, resolution and flip setting:
a second run with the same inputs reuses it, a changed autoencoder or dataset gets a new one.

Runs read latents multiplied by the autoencoder's scale factor (measured on the training data, stored
with the autoencoder as latent.json, or measured here for a foreign autoencoder folder).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from faice.data.shards import ATTR_PREFIX, manifest_hash, read_manifest
from faice.durable import temp_path

ROWS_PER_SHARD = 4096
CACHE_VERSION = 1


# ---------------------------------------------------------------------------- the autoencoder


def autoencoder_folder(path: str | Path) -> tuple[Path, Path | None]:
    """(the diffusers model folder of an autoencoder, its faice checkpoint or None) from a checkpoint, a run
    folder (latest checkpoint; EMA weights when saved) or a plain diffusers AutoencoderKL/VQModel folder."""
    from faice.errors import ConfigError
    from faice.train.checkpoint import resolve_checkpoint

    path = Path(path).expanduser()
    if (path / "config.json").is_file():
        return path, None
    try:
        ckpt = resolve_checkpoint(path)
    except FileNotFoundError as e:
        raise ConfigError(
            f"latent.autoencoder: {path} is neither an autoencoder checkpoint/run folder nor a diffusers "
            f"model folder ({e})"
        ) from None
    return (ckpt / "ema" if (ckpt / "ema").exists() else ckpt / "model"), ckpt


def autoencoder_config(path: str | Path) -> dict:
    """The config.json of the autoencoder at `path`; ConfigError when it is not a KL or VQ autoencoder."""
    folder, _ = autoencoder_folder(path)
    config = json.loads((folder / "config.json").read_text())
    if config.get("_class_name") not in ("AutoencoderKL", "VQModel"):
        from faice.errors import ConfigError

        raise ConfigError(
            f"latent.autoencoder: {folder} holds a {config.get('_class_name')}, not an autoencoder"
        )
    return config


def latent_shape(path: str | Path, resolution: int) -> tuple[int, int]:
    """(channels, side) of the latents of `resolution`-px images."""
    config = autoencoder_config(path)
    return config["latent_channels"], resolution // 2 ** (len(config["block_out_channels"]) - 1)


def autoencoder_hash(path: str | Path) -> str:
    """Content hash of the autoencoder's config and weights (what the latents depend on); computed once
    per process while the files are unchanged (an SD VAE is hundreds of MB)."""
    folder, _ = autoencoder_folder(path)
    files = tuple(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file()
    )
    return _content_hash(str(folder), files)


@functools.lru_cache(maxsize=16)
def _content_hash(folder: str, files: tuple) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(name.encode())
        with open(Path(folder) / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _load(folder: str, mtime: float) -> torch.nn.Module:
    from faice.models import load_model

    return load_model(folder).eval().requires_grad_(False)


def load_autoencoder(path: str | Path, device: torch.device | str | None = None) -> torch.nn.Module:
    """The autoencoder (eval mode, frozen), cached per folder while its files are unchanged."""
    folder, _ = autoencoder_folder(path)
    weights = max((f.stat().st_mtime for f in folder.iterdir()), default=0.0)
    model = _load(str(folder), weights)
    return model.to(device) if device is not None else model


def latent_scale(cfg) -> float:
    """The scale factor latent runs of cfg use: stored with the autoencoder, else its cache's."""
    from faice.models.autoencoder import read_scale

    _, ckpt = autoencoder_folder(cfg.latent.autoencoder)
    stored = read_scale(ckpt) if ckpt is not None else None
    if stored is not None:
        return stored
    return json.loads((cache_dir_for(cfg) / "manifest.json").read_text())["scale_factor"]


# ---------------------------------------------------------------------------- building the cache


def cache_key(ae_hash: str, data_hash: str, split: str, resolution: int, flips: bool) -> str:
    """The 16-hex-digit key of a latent cache: autoencoder, data, split, resolution and flips."""
    text = json.dumps([CACHE_VERSION, ae_hash, data_hash, split, resolution, flips])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root(cfg) -> Path:
    """The folder holding latent caches: latent.cache_dir, or <data>/latents."""
    return Path(cfg.latent.cache_dir or Path(cfg.data.path) / "latents")


def cache_dir_for(cfg) -> Path:
    """The latent cache folder of `cfg`'s autoencoder, data split and resolution."""
    key = cache_key(
        autoencoder_hash(cfg.latent.autoencoder),
        manifest_hash(read_manifest(cfg.data.path)),
        cfg.data.split,
        cfg.data.resolution,
        cfg.data.hflip,
    )
    return cache_root(cfg) / key


def _array_column(a: np.ndarray) -> pa.Array:
    flat = pa.array(a.reshape(len(a), -1).astype(np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(a.shape[1:])))


def ensure_latents(cfg, device: torch.device | str = "cpu", log=print) -> Path:
    """The cache of cfg's autoencoder, dataset split, resolution and flips: reused when it exists,
    otherwise encoded now (atomically: a half-written cache is never used)."""
    out = cache_dir_for(cfg)
    if (out / "manifest.json").exists():
        return out
    return encode_dataset(
        cfg.latent.autoencoder,
        cfg.data.path,
        cfg.data.split,
        cfg.data.resolution,
        cfg.data.hflip,
        out,
        cfg.latent.encode_batch_size,
        device,
        log,
    )


@torch.no_grad()
def encode_dataset(
    autoencoder: str | Path,
    data_path: str | Path,
    split: str,
    resolution: int,
    flips: bool,
    out: Path,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    log=print,
) -> Path:
    """Encode every image of `split` (and its mirror image when `flips`) into a cache folder `out`."""
    import shutil

    from faice.data.loader import to_model_images
    from faice.metrics.reference import real_images
    from faice.models.autoencoder import encode, read_scale, scale_factor

    t0 = time.perf_counter()
    model = load_autoencoder(autoencoder, device)
    manifest = read_manifest(data_path)
    names = list(manifest.get("attribute_names", []))
    images = real_images(data_path, split, resolution)
    from faice.data.shards import read_attributes

    attrs = read_attributes(data_path, split, names) if names else np.zeros((len(images), 0), np.int8)
    parts: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "mean_flip": [], "std_flip": []}
    for start in range(0, len(images), batch_size):
        x = to_model_images(images[start : start + batch_size].transpose(0, 3, 1, 2), resolution).to(device)
        for suffix, batch in (("", x), ("_flip", x.flip(-1))) if flips else (("", x),):
            mean, std = encode(model, batch)
            parts["mean" + suffix].append(mean.float().cpu().numpy())
            if std is not None:
                parts["std" + suffix].append(std.float().cpu().numpy())
    arrays = {k: np.concatenate(v) for k, v in parts.items() if v}
    _, ckpt = autoencoder_folder(autoencoder)
    stored = read_scale(ckpt) if ckpt is not None else None
    scale = stored if stored is not None else scale_factor(torch.from_numpy(arrays["mean"]))
    tmp = temp_path(out)  # trials starting together may both encode
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards = []
    for i, start in enumerate(range(0, len(images), ROWS_PER_SHARD)):
        rows = slice(start, start + ROWS_PER_SHARD)
        columns = {k: _array_column(v[rows]) for k, v in arrays.items()}
        columns |= {ATTR_PREFIX + n: pa.array(attrs[rows, j]) for j, n in enumerate(names)}
        name = f"latents-{i:05d}.parquet"
        pq.write_table(pa.table(columns), tmp / name)
        shards.append({"file": name, "rows": len(arrays["mean"][rows])})
    info = {
        "version": CACHE_VERSION,
        "autoencoder": str(autoencoder),
        "autoencoder_hash": autoencoder_hash(autoencoder),
        "autoencoder_class": type(model).__name__,
        "dataset": str(data_path),
        "dataset_hash": manifest_hash(manifest),
        "split": split,
        "resolution": resolution,
        "flips": flips,
        "count": len(images),
        "latent_shape": list(arrays["mean"].shape[1:]),
        "has_std": "std" in arrays,
        "scale_factor": scale,
        "scale_source": "autoencoder latent.json" if stored is not None else "measured on this split",
        "attribute_names": names,
        "shards": shards,
        "encode_seconds": round(time.perf_counter() - t0, 2),
    }
    (tmp / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    try:
        tmp.rename(out)  # atomic; fails when another process finished the same cache first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "manifest.json").exists():
            raise
        return out
    log(f"faice: encoded {len(images)} images{' and their mirror images' if flips else ''} into {out} "
        f"in {info['encode_seconds']} s (scale factor {scale:.4g})")  # fmt: skip
    return out


# ---------------------------------------------------------------------------- reading it


def read_cache(cache: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, arrays): every column of the cache as numpy, latents shaped (N, C, h, w)."""
    cache = Path(cache)
    info = json.loads((cache / "manifest.json").read_text())
    shape = tuple(info["latent_shape"])
    tables = [pq.read_table(cache / s["file"]) for s in info["shards"]]
    arrays: dict[str, np.ndarray] = {}
    for name in tables[0].column_names:
        chunks = []
        for t in tables:
            col = t.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                chunks.append(col.flatten().to_numpy().reshape(len(col), *shape))
            else:
                chunks.append(col.to_numpy(zero_copy_only=False))
        arrays[name] = np.concatenate(chunks)
    return info, arrays


class LatentLoader:
    """Batches of scaled latents for one rank: a seeded permutation per epoch (ranks take disjoint
    slices), a seeded mirror choice per image when the cache has flips, and for KL caches with
    posterior=sample a seeded draw mean + std * eps. Every draw depends only on (seed, epoch, rank,
    batch), so a resumed run reads exactly what an uninterrupted one would."""

    def __init__(
        self,
        cache: str | Path,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        posterior: str = "mean",
    ):
        self.manifest, self.arrays = read_cache(cache)
        self.manifest["attribute_names"] = self.manifest.get("attribute_names", [])
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world_size
        self.scale = float(self.manifest["scale_factor"])
        self.sample = posterior == "sample" and self.manifest["has_std"]
        self.flips = bool(self.manifest["flips"])
        self.count = len(self.arrays["mean"])
        self.attrs = np.stack(
            [self.arrays[ATTR_PREFIX + n] for n in self.manifest["attribute_names"]], 1
        ) if self.manifest["attribute_names"] else np.zeros((self.count, 0), np.int8)  # fmt: skip

    @property
    def batches_per_epoch(self) -> int:
        return (self.count // self.world) // self.batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _rows(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(self.count)
        return order[self.rank :: self.world][: self.batches_per_epoch * self.batch_size]

    def iter_epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[dict[str, Any]]:
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"latent cache of {self.count} images gives no full batch of {self.batch_size} per rank"
            )
        rows = self._rows(epoch)
        for b in range(skip_batches, self.batches_per_epoch):
            idx = rows[b * self.batch_size : (b + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, epoch, self.rank, b, 11])
            flip = rng.random(len(idx)) < 0.5 if self.flips else np.zeros(len(idx), bool)
            mean = np.where(flip[:, None, None, None], self.arrays.get("mean_flip", self.arrays["mean"])[idx],
                            self.arrays["mean"][idx])  # fmt: skip
            z = mean
            if self.sample:
                std = np.where(flip[:, None, None, None], self.arrays.get("std_flip", self.arrays["std"])[idx],
                               self.arrays["std"][idx])  # fmt: skip
                z = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
            yield {
                "image": torch.from_numpy(np.ascontiguousarray(z * self.scale, dtype=np.float32)),
                "attrs": torch.from_numpy(self.attrs[idx].astype(np.int8)),
                "index": torch.from_numpy(idx),
            }
