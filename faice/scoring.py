"""Scoring generated images against reference statistics: labelled FID/IS/KID with their uncertainty.

Metric names carry the extractor: `fid[faice-tiny]`, `is[inception]`, ... (see faice.metrics.features).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faice.config import Config
from faice.metrics.features import Extractor
from faice.metrics.reference import ReferenceStats, reference_stats
from faice.metrics.stats import (
    FrechetReference,
    fid_bootstrap_std,
    inception_score,
    kernel_inception_distance,
)


def metric_key(metric: str, extractor: str) -> str:
    """`fid`, `inception` -> `fid[inception]`: the extractor is part of every metric's name."""
    return f"{metric}[{extractor}]"


def is_eval_metric(name: str) -> bool:
    """True for a checkpoint-evaluation metric name such as fid[inception]."""
    return name.endswith("]") and "[" in name


def std_key(metric: str) -> str:
    """`fid[inception]` -> `fid_std[inception]`: where an evaluation metric's uncertainty is logged."""
    base, _, rest = metric.partition("[")
    return f"{base}_std[{rest}"


def is_std_metric(name: str) -> bool:
    """True for the uncertainty column of a metric, such as fid_std[inception]."""
    return "_std[" in name


@dataclass
class EvalResult:
    metrics: dict[str, float]
    info: dict = field(default_factory=dict)
    real: np.ndarray | None = None
    fake: np.ndarray | None = None
    images: np.ndarray | None = None  # uint8 (N, H, W, 3) that were scored

    def row(self, step: int | None) -> dict:
        """The eval.jsonl line: step, labelled metrics and where they came from."""
        return {"step": step, **self.metrics, **self.info}


def stats_dir_for(cfg: Config) -> Path:
    """The reference-statistics cache folder of `cfg` (eval.stats_dir, or <train.output_dir>/reference-stats)."""
    return Path(cfg.eval.stats_dir or Path(cfg.train.output_dir) / "reference-stats")


def reference_for(cfg: Config, extractor: Extractor, resolution: int | None = None) -> ReferenceStats:
    """The (cached) reference statistics of `cfg`'s evaluation data for `extractor`."""
    return reference_stats(
        cfg.data.path,
        cfg.eval.reference_split,
        resolution or cfg.data.resolution,
        extractor,
        stats_dir_for(cfg),
        cfg.eval.reference_images,
    )


_FRECHET: dict[str, FrechetReference] = {}


def frechet_reference(ref: ReferenceStats, keep: int = 4) -> FrechetReference:
    """The FrechetReference of `ref`, built once per process for each reference's contents: its S^(1/2) is
    an eigendecomposition of the D x D covariance (~3 s at D=2048 on one CPU core), the same at every
    evaluation of a run or a search's evaluation worker. At most `keep` references are kept."""
    digest = hashlib.sha1(np.ascontiguousarray(ref.mu).tobytes())
    digest.update(np.ascontiguousarray(ref.sigma).tobytes())
    key = digest.hexdigest()
    if key not in _FRECHET:
        while len(_FRECHET) >= keep:
            _FRECHET.pop(next(iter(_FRECHET)))
        _FRECHET[key] = FrechetReference(ref.mu, ref.sigma)
    return _FRECHET[key]


def score(images: np.ndarray, ref: ReferenceStats, extractor: Extractor, cfg: Config) -> EvalResult:
    """FID/KID (and IS when the extractor has logits) of uint8 `images` against `ref`."""
    fake, logits = extractor.features(images)
    name = extractor.name
    frechet = frechet_reference(ref)
    metrics = {metric_key("fid", name): frechet.distance(fake)}
    if cfg.eval.fid_bootstrap > 1:  # FID's uncertainty: its spread over resamples of the same images
        metrics[metric_key("fid_std", name)] = fid_bootstrap_std(
            frechet, fake, cfg.eval.fid_bootstrap, seed=cfg.eval.seed
        )
    if logits is not None:
        mean, std = inception_score(logits, cfg.eval.is_splits)
        metrics[metric_key("is", name)], metrics[metric_key("is_std", name)] = mean, std
    kid, kid_std = kernel_inception_distance(
        ref.features, fake, cfg.eval.kid_subsets, cfg.eval.kid_subset_size, seed=cfg.eval.seed
    )
    metrics[metric_key("kid", name)], metrics[metric_key("kid_std", name)] = kid, kid_std
    info = {
        "extractor": name,
        "extractor_fingerprint": extractor.fingerprint,
        "num_samples": len(images),
        "num_reference": len(ref.features),
        "reference": str(ref.path),
    }
    if extractor.note:
        info["extractor_note"] = extractor.note
    return EvalResult(metrics, info, ref.features, fake, images)
