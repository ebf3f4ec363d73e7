"""Streaming training batches from parquet shards: row-group reads, deterministic, resumable, per rank."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from faice.data.augment import Augment, crop, crop_offsets, crop_size, gaussian_blur
from faice.data.shards import ATTR_PREFIX, decode_image, read_manifest


@dataclass(frozen=True)
class RowGroup:
    """The unit of work: one parquet row group (`index` within shard `file`) holding `rows` rows."""

    file: str
    index: int
    rows: int


@dataclass(frozen=True)
class Plan:
    """Where batches come from: every rank and worker derives the same plan from the manifest alone."""

    units: tuple[RowGroup, ...]
    batch_size: int
    seed: int
    rank: int
    workers: int
    readers: int
    window: int
    shuffle: bool
    batches_per_reader: int


def split_row_groups(manifest: dict[str, Any], split: str) -> list[RowGroup]:
    """All row groups of `split` in manifest order."""
    if split not in manifest["splits"]:
        raise KeyError(f"unknown split {split!r}; valid choices: {', '.join(manifest['splits'])}")
    return [
        RowGroup(shard["file"], index, rows)
        for shard in manifest["splits"][split]["shards"]
        for index, rows in enumerate(shard["row_groups"])
    ]


def reader_units(n_units: int, readers: int, epoch: int, seed: int, shuffle: bool) -> list[np.ndarray]:
    """Unit indices of each global reader for `epoch`: permute all units with rng([seed, epoch]),
    then unit k of the permutation goes to reader k % readers."""
    order = np.random.default_rng([seed, epoch]).permutation(n_units) if shuffle else np.arange(n_units)
    return [order[r::readers] for r in range(readers)]


def batches_per_reader(unit_rows: list[int], readers: int, batch_size: int) -> int:
    """Whole batches every reader yields in any epoch.

    Each reader gets at least floor(U / readers) units, holding at least the rows of the floor(U / readers)
    smallest units, so this count is the same in every epoch (a fixed epoch length for schedules and resume)
    and never exceeds min over readers of floor(rows_of_reader / batch_size).
    """
    per_reader = len(unit_rows) // readers
    return sum(sorted(unit_rows)[:per_reader]) // batch_size


def reader_rows(plan: Plan, epoch: int, reader: int) -> tuple[list[RowGroup], np.ndarray, np.ndarray]:
    """(units, unit position, row) of every row `reader` visits in `epoch`, in visiting order.

    The reader walks its units `window` at a time; rows inside a window are shuffled with
    rng([seed, epoch, reader, 0, window_index]). Computed from indices only, so skipping is free.
    """
    picks = reader_units(len(plan.units), plan.readers, epoch, plan.seed, plan.shuffle)[reader]
    units = [plan.units[i] for i in picks]
    positions, rows = [], []
    for w, start in enumerate(range(0, len(units), plan.window)):
        chunk = units[start : start + plan.window]
        pos = np.concatenate([np.full(u.rows, start + j) for j, u in enumerate(chunk)])
        row = np.concatenate([np.arange(u.rows) for u in chunk])
        if plan.shuffle:
            perm = np.random.default_rng([plan.seed, epoch, reader, 0, w]).permutation(len(pos))
            pos, row = pos[perm], row[perm]
        positions.append(pos)
        rows.append(row)
    if not units:
        return units, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return units, np.concatenate(positions), np.concatenate(rows)


def reader_flips(plan: Plan, epoch: int, reader: int, n_rows: int) -> np.ndarray:
    """Horizontal-flip decision per visiting position, from rng([seed, epoch, reader, 1]): bool (n_rows,)."""
    return np.random.default_rng([plan.seed, epoch, reader, 1]).random(n_rows) < 0.5


def skipped_by_slot(skip_batches: int, slot: int, workers: int) -> int:
    """How many of the first `skip_batches` rank batches came from reader slot `slot` (round-robin order)."""
    return max(0, -(-(skip_batches - slot) // workers))


class _Group:
    """One row group in memory: images (raw: zero-copy (n, H, W, 3) view; png: encoded), attrs (n, A) int64,
    captions and ids."""

    def __init__(self, table: Any, attribute_names: list[str], encoding: str, resolution: int):
        self.encoding, self.resolution = encoding, resolution
        column = table.column("image").combine_chunks()
        self.images = _raw_images(column, resolution) if encoding == "raw" else column.to_pylist()
        attrs = [_int8_values(table.column(ATTR_PREFIX + name)) for name in attribute_names]
        n = table.num_rows
        self.attrs = np.stack(attrs, axis=1).astype(np.int64) if attrs else np.zeros((n, 0), np.int64)
        self.captions = table.column("caption").to_pylist()
        self.ids = table.column("id").to_pylist()

    def images_at(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), H, W, 3), a copy."""
        if self.encoding == "raw":
            return self.images[rows]
        return np.stack([decode_image(self.images[r], self.encoding, self.resolution) for r in rows])


def _raw_images(column: Any, resolution: int) -> np.ndarray:
    """Zero-copy (n, H, W, 3) uint8 view of a binary column whose values are all raw HWC images."""
    size = resolution * resolution * 3
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset : column.offset + len(column) + 1]
    if not (np.diff(offsets) == size).all():
        raise ValueError(f"raw shard images are not all {resolution} px RGB ({size} bytes)")
    data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(column), resolution, resolution, 3)


def _int8_values(column: Any) -> np.ndarray:
    """Values of a null-free int8 column, read from its buffer (arrow's to_numpy would import pandas)."""
    array = column.combine_chunks()
    return np.frombuffer(array.buffers()[1], np.int8)[array.offset : array.offset + len(array)]


class _GroupCache:
    """Row groups read on demand with ParquetFile.read_row_group; keeps at most `capacity` in memory.

    Files are reopened per read (with cached footers): an open ParquetFile keeps its last read buffers,
    which would grow memory with the number of shards.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], capacity: int):
        self.root, self.capacity = root, capacity
        self.attribute_names = list(manifest["attribute_names"])
        self.encoding, self.resolution = manifest["encoding"], manifest["resolution"]
        self.columns = ["image", *(ATTR_PREFIX + n for n in self.attribute_names), "caption", "id"]
        self._footers: dict[str, pq.FileMetaData] = {}
        self._groups: OrderedDict[RowGroup, _Group] = OrderedDict()

    def get(self, unit: RowGroup) -> _Group:
        if unit in self._groups:
            self._groups.move_to_end(unit)
            return self._groups[unit]
        with pq.ParquetFile(self.root / unit.file, metadata=self._footers.get(unit.file)) as parquet:
            self._footers[unit.file] = parquet.metadata
            table = parquet.read_row_group(unit.index, columns=self.columns)
        group = _Group(table, self.attribute_names, self.encoding, self.resolution)
        self._groups[unit] = group
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)
        return group


def to_model_images(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, resolution, resolution) in [-1, 1].

    Scaled in numpy (single-threaded: cheaper than torch's thread pool for a few MB); resized with
    antialiased bicubic interpolation only when H != resolution. Stored images are square, so the resize
    is already the centre crop.
    """
    x = images.astype(np.float32)
    np.divide(x, 127.5, out=x)
    np.subtract(x, 1.0, out=x)
    tensor = torch.from_numpy(x)
    if tensor.shape[-1] != resolution:
        size = (resolution, resolution)
        tensor = F.interpolate(tensor, size=size, mode="bicubic", antialias=True, align_corners=False)
        tensor = tensor.clamp_(-1.0, 1.0)
    return tensor


class ShardDataset(IterableDataset):
    """One rank's batches of one epoch; inside a DataLoader each worker plays one reader slot."""

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        plan: Plan,
        resolution: int,
        hflip: bool,
        epoch: int,
        skip_batches: int,
        augment: Augment | None = None,
    ):
        self.root, self.manifest, self.plan = root, manifest, plan
        self.resolution, self.hflip = resolution, hflip
        self.epoch, self.skip_batches = epoch, skip_batches
        self.augment = augment or Augment()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        # Rotating slots by skip_batches makes DataLoader worker 0 serve the next batch after a resume.
        slot = (worker + self.skip_batches) % self.plan.workers
        reader = self.plan.rank * self.plan.workers + slot
        start = skipped_by_slot(self.skip_batches, slot, self.plan.workers)
        return self._reader_batches(reader, start)

    def _reader_batches(self, reader: int, start: int) -> Iterator[dict[str, Any]]:
        plan, b = self.plan, self.plan.batch_size
        units, positions, rows = reader_rows(plan, self.epoch, reader)
        flips = reader_flips(plan, self.epoch, reader, len(rows)) & self.hflip
        aug, stored, n = self.augment, self.manifest["resolution"], len(rows)
        size = crop_size(stored, aug.crop_scale) if aug.crop != "none" else stored
        offsets = None
        if aug.crop != "none":
            rng = np.random.default_rng([plan.seed, self.epoch, reader, 2])
            offsets = crop_offsets(n, stored, size, aug.crop, rng)
        blurred = np.zeros(n, bool)
        if aug.blurs:
            blurred = np.random.default_rng([plan.seed, self.epoch, reader, 3]).random(n) < aug.blur_prob
        cache = _GroupCache(self.root, self.manifest, capacity=2 * plan.window + 1)
        for k in range(start, plan.batches_per_reader):
            picked = slice(k * b, (k + 1) * b)
            batch = self._batch(cache, units, positions[picked], rows[picked], flips[picked])
            if offsets is not None or blurred[picked].any():
                batch["image"] = self._augment(batch["image"], offsets, size, blurred[picked], picked)
            yield batch

    def _augment(
        self, image: torch.Tensor, offsets, size: int, blurred: np.ndarray, picked: slice
    ) -> torch.Tensor:
        """Crop (a window of the stored image, then the resize) and blur a batch; float in [-1, 1] out."""
        aug = self.augment
        if offsets is not None:  # the batch is still the stored uint8 images here (see _batch)
            image = to_model_images(crop(image.numpy(), offsets[picked], size), self.resolution)
        elif image.dtype == torch.uint8:
            image = to_model_images(image.numpy(), self.resolution)
        if blurred.any():
            at = torch.from_numpy(np.flatnonzero(blurred))
            image[at] = gaussian_blur(image[at], aug.blur_sigma, aug.blur_kernel).clamp_(-1, 1)
        return image

    def _batch(
        self,
        cache: _GroupCache,
        units: list[RowGroup],
        positions: np.ndarray,
        rows: np.ndarray,
        flips: np.ndarray,
    ) -> dict[str, Any]:
        stored = self.manifest["resolution"]
        hwc = np.empty((len(rows), stored, stored, 3), np.uint8)
        attrs = np.empty((len(rows), len(cache.attribute_names)), np.int64)
        captions, ids = [""] * len(rows), [""] * len(rows)
        for position in np.unique(positions):
            at = np.flatnonzero(positions == position)
            group = cache.get(units[position])
            hwc[at] = group.images_at(rows[at])
            attrs[at] = group.attrs[rows[at]]
            for i, row in zip(at, rows[at], strict=True):
                captions[i], ids[i] = group.captions[row], group.ids[row]
        images = np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
        images[flips] = images[flips][..., ::-1]  # a contiguous-row flip; mirroring HWC is 5x slower
        # Same-size images cross to the main process as uint8 (4x less than float32) and are scaled there;
        # so do images still to be cropped (from the stored size, before any resize).
        same_size = stored == self.resolution or self.augment.crop != "none"
        image = torch.from_numpy(images) if same_size else to_model_images(images, self.resolution)
        return {"image": image, "attrs": torch.from_numpy(attrs), "caption": captions, "id": ids}


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def _fit_workers(unit_rows: list[int], world_size: int, workers: int, batch_size: int) -> int:
    """Largest reader count per rank <= `workers` that gives every reader a row group and a whole batch."""
    fitted = max(1, min(workers, len(unit_rows) // world_size))
    while fitted > 1 and batches_per_reader(unit_rows, world_size * fitted, batch_size) == 0:
        fitted -= 1
    return fitted


class ShardLoader:
    """Batches of one split for one rank: {"image": (B, 3, H, W) float32 in [-1, 1], "attrs": (B, A) int64
    (-1 = unknown), "caption": list[str], "id": list[str]}.

    Row groups are permuted per epoch and dealt round-robin to world_size * max(num_workers, 1) readers, so
    ranks and workers never share a sample within an epoch. Every reader yields `batches_per_reader` whole
    batches (remainders are dropped); a rank's batches interleave its workers round-robin, so the batch
    sequence depends only on (seed, epoch, world_size, num_workers) and `iter_epoch(e, skip_batches=k)` equals
    the full epoch without its first k batches. `batches_per_epoch` is per rank and the same every epoch.
    """

    def __init__(
        self,
        path: Path | str,
        split: str = "train",
        batch_size: int = 32,
        resolution: int | None = None,
        hflip: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle: bool = True,
        window: int = 4,
        augment: Augment | None = None,
    ):
        if batch_size < 1 or window < 1 or seed < 0 or not 0 <= rank < world_size:
            raise ValueError(
                f"bad loader settings: {batch_size=}, {window=}, {seed=}, {rank=}, {world_size=}"
            )
        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        self.split, self.hflip, self.augment = split, hflip, augment or Augment()
        self.resolution = resolution or self.manifest["resolution"]
        units = split_row_groups(self.manifest, split)
        unit_rows = [u.rows for u in units]
        workers = _fit_workers(unit_rows, world_size, max(num_workers, 1), batch_size)
        if num_workers > workers:
            warnings.warn(
                f"{split!r} has {len(units)} row groups for {world_size} rank(s): num_workers {num_workers} "
                f"clamped to {workers}",
                stacklevel=2,
            )
        self.num_workers = workers if num_workers > 0 else 0
        per_reader = batches_per_reader(unit_rows, world_size * workers, batch_size)
        if per_reader == 0:
            raise ValueError(
                f"split {split!r} has {sum(unit_rows)} rows in {len(units)} row groups: too few for "
                f"batch_size {batch_size} on {world_size} rank(s); use a smaller batch or more data"
            )
        self.plan = Plan(
            tuple(units), batch_size, seed, rank, workers, world_size * workers, window, shuffle, per_reader
        )

    @property
    def batches_per_epoch(self) -> int:
        """Batches this rank yields per epoch (identical on every rank and in every epoch)."""
        return self.plan.workers * self.plan.batches_per_reader

    def __len__(self) -> int:
        return self.batches_per_epoch

    def iter_epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[dict[str, Any]]:
        """This rank's batches of `epoch` after its first `skip_batches` (skipped rows are never read)."""
        if not 0 <= skip_batches <= self.batches_per_epoch:
            raise ValueError(f"skip_batches must be in [0, {self.batches_per_epoch}], got {skip_batches}")
        dataset = ShardDataset(
            self.root,
            self.manifest,
            self.plan,
            self.resolution,
            self.hflip,
            epoch,
            skip_batches,
            self.augment,
        )
        if self.num_workers == 0 or skip_batches == self.batches_per_epoch:
            return map(self._float_images, dataset)
        loader = DataLoader(
            dataset, batch_size=None, num_workers=self.num_workers, in_order=True, worker_init_fn=_worker_init
        )
        return map(self._float_images, loader)

    def _float_images(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["image"].dtype == torch.uint8:
            batch["image"] = to_model_images(batch["image"].numpy(), self.resolution)
        return batch
