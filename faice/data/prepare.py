"""Turn CelebA-HQ (original layout), any image folder, or the synthetic faces into parquet shards."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from faice.data import synthetic
from faice.data.shards import ShardWriter, encode_image, reset_output, write_manifest
from faice.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_ATTRIBUTES = ("Male",)
CELEBA_SPLITS = ("train", "test")
_SERIAL_BELOW = 64
"""Fewer images than this are decoded in-process: starting a pool would cost more than it saves."""


@dataclass(frozen=True)
class Item:
    """One source image and the row it becomes; `source` is its path relative to the dataset root."""

    path: Path
    split: str
    source: str
    image_id: str
    attributes: dict[str, int] = field(default_factory=dict)
    caption: str = ""


@dataclass(frozen=True)
class ShardOptions:
    """How images are stored: training resolution in px, `raw` or `png`, and the row-group/shard sizes."""

    resolution: int
    encoding: str = "raw"
    rows_per_group: int = 128
    rows_per_shard: int = 2048

    def writer(self, out: Path, split: str, attribute_names: tuple[str, ...]) -> ShardWriter:
        return ShardWriter(
            out,
            split,
            self.resolution,
            self.encoding,
            attribute_names,
            self.rows_per_group,
            self.rows_per_shard,
        )


def resize_square(img: Image.Image, resolution: int) -> np.ndarray:
    """RGB, shorter side to `resolution` (PIL bicubic), centre crop; uint8 (resolution, resolution, 3)."""
    img = img.convert("RGB")
    w, h = img.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    return np.asarray(img, dtype=np.uint8)


def load_image(path: Path | str, resolution: int) -> np.ndarray:
    """Fully decode an image file (raises on truncated or non-image files) and `resize_square` it."""
    with Image.open(path) as img:
        img.load()
        return resize_square(ImageOps.exif_transpose(img), resolution)


def _encode_file(task: tuple[str, int, str]) -> tuple[bytes | None, str]:
    path, resolution, encoding = task
    try:
        return encode_image(load_image(path, resolution), encoding), ""
    # Any decoder failure (PIL raises OSError, ValueError, SyntaxError, ...) skips this one file only.
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _ordered_map(fn: Callable, tasks: list, workers: int) -> Iterator:
    """`map(fn, tasks)` in order, on a process pool when `workers` > 1 and there is enough work."""
    if workers <= 1 or len(tasks) < _SERIAL_BELOW:
        yield from map(fn, tasks)
        return
    # forkserver, not fork: a forked worker copies the caller's locks in whatever state its other threads
    # (Ray, W&B, torch) held them, and one was seen blocked for good on the pool's queue lock
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
    with multiprocessing.get_context(method).Pool(workers) as pool:
        yield from pool.imap(fn, tasks, chunksize=8)


def _progress(iterable: Iterable, total: int, desc: str) -> tqdm:
    return tqdm(iterable, total=total, desc=desc, unit="img", disable=not sys.stderr.isatty())


def _default_workers(workers: int | None) -> int:
    return min(8, os.cpu_count() or 1) if workers is None else workers


def write_items(
    out: Path | str,
    items: list[Item],
    options: ShardOptions,
    attribute_names: tuple[str, ...],
    splits: tuple[str, ...],
    source: dict[str, Any],
    workers: int | None = None,
) -> dict[str, Any]:
    """Decode, resize and encode `items` (in order, on `workers` processes) into shards; returns the manifest.

    Unreadable images are skipped and listed in the manifest as {file, reason}; the run never aborts on them.
    """
    out = reset_output(out)
    writers = {split: options.writer(out, split, attribute_names) for split in splits}
    tasks = [(str(item.path), options.resolution, options.encoding) for item in items]
    results = _ordered_map(_encode_file, tasks, _default_workers(workers))
    skipped = []
    for item, (data, reason) in zip(items, _progress(results, len(items), f"shards -> {out}"), strict=True):
        if data is None:
            skipped.append({"file": item.source, "reason": reason})
            continue
        writers[item.split].add_encoded(data, item.attributes, item.caption, item.source, item.image_id)
    return write_manifest(
        out,
        resolution=options.resolution,
        encoding=options.encoding,
        attribute_names=attribute_names,
        splits={split: writer.close() for split, writer in writers.items()},
        skipped=skipped,
        source=source,
    )


def is_test(key: str, test_fraction: float) -> bool:
    """True for about `test_fraction` of keys, by sha256 of the key: deterministic, stable as data grows."""
    value = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return value < test_fraction


def read_label_sheet(path: Path) -> dict[int, int]:
    """Read a CelebA-HQ sheet (columns `image` = int id, `label` = 1 male / 0 female) once; {id: label}."""
    import openpyxl

    if not path.is_file():
        raise FileNotFoundError(
            f"attribute sheet {path} is missing (expected beside the train/ and test/ folders)"
        )
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # not a zip, not a workbook, a truncated copy
        raise ConfigError(
            f"attribute sheet {path} cannot be read as .xlsx ({type(e).__name__}: {e})"
        ) from None
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(cell).strip().lower() if cell is not None else "" for cell in next(rows, ())]
        if "image" not in header or "label" not in header:
            raise ConfigError(
                f"attribute sheet {path}: needs the columns image,label in row 1, found {header}"
            )
        image_col, label_col = header.index("image"), header.index("label")
        labels = {}
        for number, row in enumerate(rows, start=2):
            cells = [row[i] if i < len(row) else None for i in (image_col, label_col)]
            if cells[0] is None or cells[1] is None:
                continue
            image, label = (_sheet_int(v) for v in cells)
            if image is None or label not in (0, 1):
                raise ConfigError(
                    f"attribute sheet {path}, row {number}: expected an integer image id and a label of "
                    f"0 or 1, got image={cells[0]!r}, label={cells[1]!r}"
                )
            labels[image] = label
        return labels
    finally:
        workbook.close()


def _sheet_int(value: Any) -> int | None:
    """A sheet cell as an int (12, 12.0, "12"), None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _caption_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("overall_caption", value.get("caption", ""))
    return str(value or "")


def read_captions(path: Path) -> dict[str, str]:
    """{file name or relative path: caption} from a json sidecar; values: text or {"overall_caption": ...}."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"captions {path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"captions {path}: not UTF-8 text (byte {e.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"captions {path}: expected an object {{file name: caption}}, got {type(data).__name__}"
        )
    return {str(key): _caption_text(value) for key, value in data.items()}


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return [p for p in pattern if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]


def _celeba_paths(src: Path) -> tuple[Path, Path]:
    """(celeba_hq_split dir, captions_hq.json path) for `src` = the datasets folder or celeba_hq_split."""
    if (src / "celeba_hq_split").is_dir():
        split_dir, root = src / "celeba_hq_split", src
    elif (src / "train").is_dir():
        split_dir, root = src, src.parent
    else:
        raise FileNotFoundError(
            f"{src} is not a CelebA-HQ folder: expected celeba_hq_split/{{train,test}}/*.jpg with "
            "celebaAHQ_{train,test}.xlsx, given either that folder or its parent"
        )
    return split_dir, root / "celeba_hq_stable_diffusion" / "captions_hq.json"


def _id_order(path: Path) -> tuple[bool, int, str]:
    return (not path.stem.isdigit(), int(path.stem) if path.stem.isdigit() else 0, path.name)


def _celeba_items(
    split_dir: Path, split: str, labels: dict[int, int], captions: dict[str, str]
) -> list[Item]:
    """Items of one split ordered by integer id; an id missing from the sheet gets Male = -1 (unknown)."""
    items = []
    for path in sorted(_image_files(split_dir / split, recursive=False), key=_id_order):
        stem = path.stem
        label = labels.get(int(stem)) if stem.isdigit() else None
        items.append(
            Item(
                path=path,
                split=split,
                source=f"{split}/{path.name}",
                image_id=stem,
                attributes={} if label is None else {"Male": label},
                caption=captions.get(f"{stem}.jpg", captions.get(path.name, "")),
            )
        )
    return items


def prepare_celeba(
    src: Path | str,
    out: Path | str,
    resolution: int,
    encoding: str = "raw",
    rows_per_group: int = 128,
    rows_per_shard: int = 2048,
    workers: int | None = None,
) -> dict[str, Any]:
    """CelebA-HQ in the original layout -> train/test shards with attribute `Male`; returns the manifest.

    Each xlsx sheet is read once. Images whose id is not in the sheet get Male = -1 (unknown), counted per
    split as `unknown_attributes`; sheet ids with no image file are counted in
    `source.sheet_ids_without_image`.
    Captions come from celeba_hq_stable_diffusion/captions_hq.json when it exists, else "".
    """
    split_dir, captions_path = _celeba_paths(Path(src))
    captions = read_captions(captions_path)
    items: list[Item] = []
    without_image = {}
    for split in CELEBA_SPLITS:
        labels = read_label_sheet(split_dir / f"celebaAHQ_{split}.xlsx")
        split_items = _celeba_items(split_dir, split, labels, captions)
        present = {int(item.image_id) for item in split_items if item.image_id.isdigit()}
        without_image[split] = len(set(labels) - present)
        items += split_items
    source = {
        "kind": "celeba_hq",
        "path": str(Path(src).resolve()),
        "captions": str(captions_path) if captions else None,
        "sheet_ids_without_image": without_image,
    }
    options = ShardOptions(resolution, encoding, rows_per_group, rows_per_shard)
    return write_items(out, items, options, CELEBA_ATTRIBUTES, CELEBA_SPLITS, source, workers)


def prepare_folder(
    src: Path | str,
    out: Path | str,
    resolution: int,
    encoding: str = "raw",
    test_fraction: float = 0.0,
    rows_per_group: int = 128,
    rows_per_shard: int = 2048,
    workers: int | None = None,
) -> dict[str, Any]:
    """Any folder of images (recursive) -> shards without attributes; returns the manifest.

    Split `train`, plus `test` for about `test_fraction` of files chosen by a hash of the relative path.
    Captions come from `src/captions.json` ({relative path or file name: caption}) when present, else "".
    """
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    captions = read_captions(root / "captions.json")
    items = []
    for path in sorted(_image_files(root, recursive=True), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        items.append(
            Item(
                path=path,
                split="test" if is_test(rel, test_fraction) else "train",
                source=rel,
                image_id=rel.rsplit(".", 1)[0],
                caption=captions.get(rel, captions.get(path.name, "")),
            )
        )
    splits = ("train", "test") if test_fraction > 0 else ("train",)
    source = {"kind": "folder", "path": str(root.resolve()), "test_fraction": test_fraction}
    options = ShardOptions(resolution, encoding, rows_per_group, rows_per_shard)
    return write_items(out, items, options, (), splits, source, workers)


def write_synthetic(
    out: Path | str,
    n: int,
    resolution: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    encoding: str = "raw",
    rows_per_group: int = 128,
    rows_per_shard: int = 2048,
) -> dict[str, Any]:
    """`n` synthetic faces (faice.data.synthetic) -> train/test shards with their attributes and captions.

    Face i goes to `test` by a hash of (seed, i), so a face keeps its split when `n` grows.
    """
    out = reset_output(out)
    names = tuple(synthetic.ATTRIBUTES)
    writers = {
        split: ShardWriter(out, split, resolution, encoding, names, rows_per_group, rows_per_shard)
        for split in ("train", "test")
    }
    faces = synthetic.generate(n, resolution=resolution, seed=seed)
    for i, face in enumerate(_progress(faces, n, f"synthetic -> {out}")):
        split = "test" if is_test(f"{seed}:{i}", test_fraction) else "train"
        image = resize_square(face.image, resolution)
        writers[split].add(image, face.attributes, face.caption, "synthetic", f"synthetic-{seed}-{i:06d}")
    source = {
        "kind": "synthetic",
        "generator": "faice.data.synthetic",
        "n": n,
        "seed": seed,
        "test_fraction": test_fraction,
    }
    return write_manifest(
        out,
        resolution=resolution,
        encoding=encoding,
        attribute_names=names,
        splits={split: writer.close() for split, writer in writers.items()},
        skipped=[],
        source=source,
    )
