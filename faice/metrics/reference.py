"""Reference statistics of real images, computed once and cached as `.npz`.

The cache key is (dataset content hash, split, resolution, image count, extractor fingerprint): a file is
reused by every trial and search that shares the key and a new one is made when the dataset (its shard
hashes), the split, the size or the extractor's weights change. Writes are atomic (temp file +
os.replace), so concurrent evaluators computing the same key never read half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faice.data.shards import manifest_hash, read_images, read_manifest
from faice.durable import temp_path
from faice.metrics.features import Extractor
from faice.metrics.stats import feature_stats


@dataclass
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray  # kept for KID
    path: Path
    computed: bool  # False when read from the cache


def reference_key(
    data_path: str | Path, split: str, resolution: int, limit: int, extractor: Extractor
) -> str:
    """File stem of the cache entry: every input that changes the statistics is in it."""
    digest = manifest_hash(read_manifest(data_path))[:16]
    count = f"n{limit}" if limit else "all"
    return f"{digest}-{split}-{resolution}px-{count}-{extractor.fingerprint}"


def real_images(data_path: str | Path, split: str, resolution: int, limit: int = 0) -> np.ndarray:
    """uint8 (N, resolution, resolution, 3) images of the split, resized like the training data."""
    images = read_images(data_path, split, limit or None)
    if images.shape[1] != resolution:
        from faice.metrics.features import resize_uint8

        images = resize_uint8(images, resolution)
    return images


def reference_stats(
    data_path: str | Path,
    split: str,
    resolution: int,
    extractor: Extractor,
    cache_dir: str | Path,
    limit: int = 0,
) -> ReferenceStats:
    """Cached mean/covariance/features of the real images; computed on first use."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{reference_key(data_path, split, resolution, limit, extractor)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return ReferenceStats(z["mu"], z["sigma"], z["features"], path, computed=False)
    features, _ = extractor.features(real_images(data_path, split, resolution, limit))
    mu, sigma = feature_stats(features)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_path(path).name + ".npz")  # np.savez wants the suffix
    np.savez(tmp, mu=mu, sigma=sigma, features=features, extractor=extractor.fingerprint, split=split)
    os.replace(tmp, path)
    return ReferenceStats(mu, sigma, features, path, computed=True)
