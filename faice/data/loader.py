"""Streaming training batches from parquet shards: row-group reads, deterministic, resumable, rank-partitioned."""

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
    """One decoded-on-demand row group: image storage, attrs (n, A) int64, captions and ids."""

    def __init__(self, table: Any, attribute_names: list[str], encoding: str, resolution: int):
        self.encoding, self.resolution = encoding, resolution
        column = table.column("image").combine_chunks()
        if encoding == "raw":
            self.images = _raw_images(column, resolution)
        else:
            self.images = column.to_pylist()
        n = table.num_rows
        attrs = [table.column(ATTR_PREFIX + name).to_numpy() for name in attribute_names]
        self.attrs = np.stack(attrs, axis=1).astype(np.int64) if attrs else np.zeros((n, 0), np.int64)
        self.captions = table.column("caption").to_pylist()
        self.ids = table.column("id").to_pylist()

    def image(self, row: int) -> np.ndarray:
        if self.encoding == "raw":
            return self.images[row]
        return decode_image(self.images[row], self.encoding, self.resolution)


def _raw_images(column: Any, resolution: int) -> np.ndarray:
    """Zero-copy (n, H, W, 3) uint8 view of a binary column whose values are all raw HWC images."""
    size = resolution * resolution * 3
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset : column.offset + len(column) + 1]
    if not (np.diff(offsets) == size).all():
        raise ValueError(f"raw shard images are not all {resolution} px RGB ({size} bytes)")
    data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(column), resolution, resolution, 3)


class _GroupCache:
    """Row groups read on demand with ParquetFile.read_row_group; keeps at most `capacity` in memory."""

    def __init__(self, root: Path, manifest: dict[str, Any], capacity: int):
        self.root, self.capacity = root, capacity
        self.attribute_names = list(manifest["attribute_names"])
        self.encoding, self.resolution = manifest["encoding"], manifest["resolution"]
        self.columns = ["image", *(ATTR_PREFIX + n for n in self.attribute_names), "caption", "id"]
        self._files: dict[str, pq.ParquetFile] = {}
        self._groups: OrderedDict[RowGroup, _Group] = OrderedDict()

    def get(self, unit: RowGroup) -> _Group:
        if unit in self._groups:
            self._groups.move_to_end(unit)
            return self._groups[unit]
        if unit.file not in self._files:
            self._files[unit.file] = pq.ParquetFile(self.root / unit.file)
        table = self._files[unit.file].read_row_group(unit.index, columns=self.columns)
        group = _Group(table, self.attribute_names, self.encoding, self.resolution)
        self._groups[unit] = group
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)
        return group


def to_model_images(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, resolution, resolution) in [-1, 1].

    Resized with antialiased bicubic interpolation only when H != resolution; stored images are square,
    so the resize is already the centre crop.
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if x.shape[-1] != resolution:
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False
        )
        x = x.clamp_(0.0, 255.0)
    return x.div_(127.5).sub_(1.0).contiguous()


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
    ):
        self.root, self.manifest, self.plan = root, manifest, plan
        self.resolution, self.hflip = resolution, hflip
        self.epoch, self.skip_batches = epoch, skip_batches

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
        cache = _GroupCache(self.root, self.manifest, capacity=2 * plan.window + 1)
        for k in range(start, plan.batches_per_reader):
            picked = slice(k * b, (k + 1) * b)
            yield self._batch(cache, [units[p] for p in positions[picked]], rows[picked], flips[picked])

    def _batch(self, cache: _GroupCache, units: list[RowGroup], rows: np.ndarray, flips: np.ndarray) -> dict:
        stored = self.manifest["resolution"]
        images = np.empty((len(rows), stored, stored, 3), np.uint8)
        attrs = np.empty((len(rows), len(cache.attribute_names)), np.int64)
        captions, ids = [], []
        for i, (unit, row, flip) in enumerate(zip(units, rows, flips, strict=True)):
            group = cache.get(unit)
            image = group.image(row)
            images[i] = image[:, ::-1] if flip else image
            attrs[i] = group.attrs[row]
            captions.append(group.captions[row])
            ids.append(group.ids[row])
        return {
            "image": to_model_images(images, self.resolution),
            "attrs": torch.from_numpy(attrs),
            "caption": captions,
            "id": ids,
        }


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
    ):
        if batch_size < 1 or window < 1 or seed < 0 or not 0 <= rank < world_size:
            raise ValueError(
                f"bad loader settings: {batch_size=}, {window=}, {seed=}, {rank=}, {world_size=}"
            )
        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        self.split, self.hflip = split, hflip
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
        """This rank's batches of `epoch`, starting after its first `skip_batches` (nothing skipped is read)."""
        if not 0 <= skip_batches <= self.batches_per_epoch:
            raise ValueError(f"skip_batches must be in [0, {self.batches_per_epoch}], got {skip_batches}")
        dataset = ShardDataset(
            self.root, self.manifest, self.plan, self.resolution, self.hflip, epoch, skip_batches
        )
        if self.num_workers == 0 or skip_batches == self.batches_per_epoch:
            return iter(dataset)
        loader = DataLoader(
            dataset, batch_size=None, num_workers=self.num_workers, in_order=True, worker_init_fn=_worker_init
        )
        return iter(loader)
