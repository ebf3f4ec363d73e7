"""Parquet shard format for prepared face datasets: writer, image codec and the atomic manifest.json."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from faice.durable import write_json_atomic

FORMAT_VERSION = 1
ENCODINGS = ("raw", "png")
MANIFEST_NAME = "manifest.json"
ATTR_PREFIX = "attr_"
"""Attributes are stored one int8 column per attribute, named `attr_<name>`, in attribute_names order.
Chosen over a fixed-size list because parquet cannot store a zero-length fixed-size list (datasets without
attributes) and per-column statistics let readers filter on one attribute. -1 means unknown."""
UNKNOWN = -1
SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet$")


def shard_schema(attribute_names: list[str] | tuple[str, ...]) -> pa.Schema:
    """The arrow schema of every shard: image bytes, one int8 column per attribute, then text columns."""
    attrs = [pa.field(ATTR_PREFIX + name, pa.int8()) for name in attribute_names]
    return pa.schema(
        [pa.field("image", pa.binary()), *attrs]
        + [pa.field(name, pa.string()) for name in ("caption", "split", "source", "id")]
    )


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown image encoding {encoding!r}; valid choices: {', '.join(ENCODINGS)}")


def encode_image(image: np.ndarray, encoding: str) -> bytes:
    """Encode a uint8 (H, W, 3) image as `raw` bytes (row-major HWC) or a lossless PNG."""
    _check_encoding(encoding)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if encoding == "raw":
        return np.ascontiguousarray(image).tobytes()
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_image(data: bytes, encoding: str, resolution: int) -> np.ndarray:
    """Decode one stored image; returns uint8 (resolution, resolution, 3)."""
    _check_encoding(encoding)
    if encoding == "raw":
        expected = resolution * resolution * 3
        if len(data) != expected:
            raise ValueError(f"raw image has {len(data)} bytes, expected {expected} for {resolution} px")
        return np.frombuffer(data, dtype=np.uint8).reshape(resolution, resolution, 3)
    with Image.open(io.BytesIO(data)) as img:
        array = np.asarray(img.convert("RGB"))
    if array.shape != (resolution, resolution, 3):
        raise ValueError(f"png image has shape {array.shape}, expected {(resolution, resolution, 3)}")
    return array


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Writes one split as `<split>-<NNNNN>.parquet` shards: `rows_per_shard` rows in groups of
    `rows_per_group`.

    Each shard is written to a temporary name and renamed when complete. `close()` returns the split's
    manifest entry: {count, shards: [{file, rows, row_groups, sha256}], unknown_attributes, empty_captions}.
    """

    def __init__(
        self,
        out_dir: Path | str,
        split: str,
        resolution: int,
        encoding: str,
        attribute_names: list[str] | tuple[str, ...],
        rows_per_group: int = 128,
        rows_per_shard: int = 2048,
    ):
        _check_encoding(encoding)
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):
            raise ValueError(f"split name {split!r} must be letters, digits or underscores")
        if rows_per_group < 1 or rows_per_shard < rows_per_group or rows_per_shard % rows_per_group:
            raise ValueError(
                f"rows_per_shard ({rows_per_shard}) must be a positive multiple of "
                f"rows_per_group ({rows_per_group})"
            )
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.split, self.resolution, self.encoding = split, resolution, encoding
        self.attribute_names = list(attribute_names)
        self.rows_per_group, self.rows_per_shard = rows_per_group, rows_per_shard
        self.schema = shard_schema(self.attribute_names)
        self._rows: dict[str, list] = {name: [] for name in self.schema.names}
        self._writer: pq.ParquetWriter | None = None
        self._shard: dict[str, Any] = {}
        self._shards: list[dict[str, Any]] = []
        self._unknown = self._empty_captions = 0
        self._closed = False

    def add(
        self,
        image_uint8_hwc: np.ndarray,
        attributes: dict[str, int],
        caption: str,
        source: str,
        image_id: str,
    ) -> None:
        """Append one image (uint8 (H, W, 3) at the shard resolution); missing attributes are stored as -1."""
        self.add_encoded(
            encode_image(image_uint8_hwc, self.encoding),
            attributes,
            caption,
            source,
            image_id,
            shape=image_uint8_hwc.shape,
        )

    def add_encoded(
        self,
        data: bytes,
        attributes: dict[str, int],
        caption: str,
        source: str,
        image_id: str,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        """Append an image already encoded with `encode_image(..., self.encoding)` (lets workers encode)."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        expected = (self.resolution, self.resolution, 3)
        if shape is not None and tuple(shape) != expected:
            raise ValueError(f"image {image_id!r} has shape {tuple(shape)}, expected {expected}")
        unknown_keys = set(attributes) - set(self.attribute_names)
        if unknown_keys:
            raise ValueError(f"unknown attributes {sorted(unknown_keys)}; valid: {self.attribute_names}")
        values = [int(attributes.get(name, UNKNOWN)) for name in self.attribute_names]
        self._unknown += UNKNOWN in values
        self._empty_captions += not caption
        self._rows["image"].append(data)
        for name, value in zip(self.attribute_names, values, strict=True):
            self._rows[ATTR_PREFIX + name].append(value)
        for key, value in (("caption", caption), ("split", self.split), ("source", source), ("id", image_id)):
            self._rows[key].append(value)
        if len(self._rows["id"]) == self.rows_per_group:
            self._flush_group()

    def _flush_group(self) -> None:
        n = len(self._rows["id"])
        if n == 0:
            return
        if self._writer is None:
            name = f"{self.split}-{len(self._shards):05d}.parquet"
            self._shard = {"file": name, "rows": 0, "row_groups": []}
            text_columns = [n for n in self.schema.names if n != "image"]
            self._writer = pq.ParquetWriter(
                self.out_dir / (name + ".tmp"),
                self.schema,
                compression="none",
                use_dictionary=["split", "source"],
                write_statistics=text_columns,
            )
        table = pa.Table.from_pydict(self._rows, schema=self.schema)
        self._writer.write_table(table, row_group_size=n)
        self._shard["rows"] += n
        self._shard["row_groups"].append(n)
        self._rows = {name: [] for name in self.schema.names}
        if self._shard["rows"] >= self.rows_per_shard:
            self._finish_shard()

    def _finish_shard(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        final = self.out_dir / self._shard["file"]
        os.replace(self.out_dir / (self._shard["file"] + ".tmp"), final)
        self._shard["sha256"] = file_sha256(final)
        self._shards.append(self._shard)

    def close(self) -> dict[str, Any]:
        """Flush the last row group and shard; returns this split's manifest entry."""
        if not self._closed:
            self._flush_group()
            if self._writer is not None:
                self._finish_shard()
            self._closed = True
        return {
            "count": sum(s["rows"] for s in self._shards),
            "shards": self._shards,
            "unknown_attributes": self._unknown,
            "empty_captions": self._empty_captions,
        }

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reset_output(out_dir: Path | str) -> Path:
    """Create `out_dir`, removing a previous manifest and shards so a failed run is never readable."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for path in out.iterdir():
        if SHARD_PATTERN.match(path.name.removesuffix(".tmp")):
            path.unlink()
    return out


def manifest_hash(manifest: dict[str, Any] | Path | str) -> str:
    """Content hash of a dataset (manifest dict or dataset path): sha256 over the sorted shard hashes,
    the resolution and the encoding."""
    if not isinstance(manifest, dict):
        manifest = read_manifest(manifest)
    hashes = sorted(s["sha256"] for split in manifest["splits"].values() for s in split["shards"])
    digest = hashlib.sha256()
    for part in [*hashes, str(manifest["resolution"]), manifest["encoding"]]:
        digest.update(part.encode() + b"\n")
    return digest.hexdigest()


def write_manifest(
    out_dir: Path | str,
    *,
    resolution: int,
    encoding: str,
    attribute_names: list[str] | tuple[str, ...],
    splits: dict[str, dict[str, Any]],
    skipped: list[dict[str, str]],
    source: dict[str, Any],
) -> dict[str, Any]:
    """Write `out_dir/manifest.json` atomically (temp file + os.replace) and return the manifest."""
    manifest: dict[str, Any] = {
        "format": "faice-shards",
        "format_version": FORMAT_VERSION,
        "resolution": resolution,
        "encoding": encoding,
        "attribute_names": list(attribute_names),
        "splits": splits,
        "skipped": skipped,
        "skipped_count": len(skipped),
        "source": source,
    }
    manifest["content_hash"] = manifest_hash(manifest)
    path = Path(out_dir) / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Load a manifest from a dataset directory or a manifest.json path; clear error if there is none."""
    path = Path(path)
    if path.is_dir() or path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no prepared dataset at {path.parent} (missing {MANIFEST_NAME}); "
            "run `faice data prepare` (CelebA-HQ or an image folder) or `faice data synth` first"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {manifest.get('format_version')!r}, "
            f"this faice reads {FORMAT_VERSION}; "
            "prepare the dataset again"
        )
    return manifest


def read_images(root: Path | str, split: str, limit: int | None = None) -> np.ndarray:
    """The first `limit` (default all) images of `split`, in manifest order, as uint8 (N, H, W, 3)."""
    root = Path(root)
    manifest = read_manifest(root)
    if split not in manifest["splits"]:
        raise ValueError(f"{root} has no split {split!r}; splits: {', '.join(manifest['splits'])}")
    out: list[np.ndarray] = []
    for shard in manifest["splits"][split]["shards"]:
        column = pq.read_table(root / shard["file"], columns=["image"]).column("image").to_pylist()
        for data in column:
            out.append(decode_image(data, manifest["encoding"], manifest["resolution"]))
            if limit is not None and len(out) >= limit:
                return np.stack(out)
    if not out:
        raise ValueError(f"{root}: split {split!r} has no images")
    return np.stack(out)


def read_attributes(root: Path | str, split: str, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """The `names` attribute columns of every image of `split`, as int8 (N, len(names)) (-1 = unknown)."""
    root = Path(root)
    manifest = read_manifest(root)
    if split not in manifest["splits"]:
        raise ValueError(f"{root} has no split {split!r}; splits: {', '.join(manifest['splits'])}")
    columns = [ATTR_PREFIX + n for n in names]
    parts = []
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(root / shard["file"], columns=columns)
        parts.append(np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns], 1))
    return np.concatenate(parts).astype(np.int8) if parts else np.zeros((0, len(names)), np.int8)


def read_captions_column(root: Path | str, split: str) -> list[str]:
    """The caption of every image of `split`, in manifest order ("" where there is none)."""
    root = Path(root)
    manifest = read_manifest(root)
    if split not in manifest["splits"]:
        raise ValueError(f"{root} has no split {split!r}; splits: {', '.join(manifest['splits'])}")
    out: list[str] = []
    for shard in manifest["splits"][split]["shards"]:
        out += [
            c or ""
            for c in pq.read_table(root / shard["file"], columns=["caption"]).column("caption").to_pylist()
        ]
    return out
