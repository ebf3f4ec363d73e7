"""ShardLoader: shapes, determinism, resume, rank/worker partition and augmentation on real shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faice.data import loader as loader_module
from faice.data.loader import ShardLoader
from faice.data.shards import ShardWriter, write_manifest

RES = 16
ROWS = 203
NAMES = ("Male", "Young")
BATCH = 8


def _write_dataset(out, encoding="raw", rows=ROWS, names=NAMES, rows_per_group=16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (rows, RES, RES, 3), dtype=np.uint8)
    attrs = rng.integers(0, 2, (rows, len(names)))
    with ShardWriter(out, "train", RES, encoding, names, rows_per_group, rows_per_group * 4) as writer:
        for i in range(rows):
            writer.add(
                images[i], dict(zip(names, map(int, attrs[i]), strict=True)), f"cap {i}", "x", f"img-{i}"
            )
    write_manifest(
        out,
        resolution=RES,
        encoding=encoding,
        attribute_names=names,
        splits={"train": writer.close()},
        skipped=[],
        source={"kind": "test"},
    )
    return {f"img-{i}": (images[i], attrs[i]) for i in range(rows)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return root, _write_dataset(root)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)


def _flipped(batch, truth) -> list[bool]:
    """Which samples are mirrored; asserts each is exactly its stored image or its mirror."""
    flags = []
    for image, image_id in zip(batch["image"], batch["id"], strict=True):
        pixels, stored = _to_uint8(image), truth[image_id][0]
        flags.append(bool(np.array_equal(pixels, stored[:, ::-1])))
        assert flags[-1] or np.array_equal(pixels, stored)
    return flags


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["id"] == y["id"] and torch.equal(x["image"], y["image"]) and torch.equal(x["attrs"], y["attrs"])
        for x, y in zip(a, b, strict=True)
    )


def test_batch_contents_shapes_and_range(dataset):
    root, truth = dataset
    shards = ShardLoader(root, batch_size=BATCH, seed=1)
    batches = list(shards.iter_epoch(0))
    assert len(batches) == shards.batches_per_epoch == len(shards) == ROWS // BATCH
    for batch in batches:
        assert batch["image"].shape == (BATCH, 3, RES, RES) and batch["image"].dtype == torch.float32
        assert batch["image"].min() >= -1 and batch["image"].max() <= 1
        assert batch["attrs"].shape == (BATCH, 2) and batch["attrs"].dtype == torch.int64
        expected_attrs = np.stack([truth[i][1] for i in batch["id"]])
        np.testing.assert_array_equal(batch["attrs"].numpy(), expected_attrs)
        assert batch["caption"] == [f"cap {i.split('-')[1]}" for i in batch["id"]]
        _flipped(batch, truth)


def test_same_seed_same_batches_and_epochs_differ(dataset):
    root, _ = dataset
    first = list(ShardLoader(root, batch_size=BATCH, seed=5).iter_epoch(2))
    assert _same(first, list(ShardLoader(root, batch_size=BATCH, seed=5).iter_epoch(2)))
    other_epoch = list(ShardLoader(root, batch_size=BATCH, seed=5).iter_epoch(3))
    other_seed = list(ShardLoader(root, batch_size=BATCH, seed=6).iter_epoch(2))
    assert [b["id"] for b in first] != [b["id"] for b in other_epoch]
    assert [b["id"] for b in first] != [b["id"] for b in other_seed]


def test_resume_equals_tail_without_reading_skipped_groups(dataset, monkeypatch):
    root, _ = dataset
    shards = ShardLoader(root, batch_size=BATCH, seed=2)
    full = list(shards.iter_epoch(4))
    for skip in (0, 1, 7, len(full) - 1, len(full)):
        assert _same(list(shards.iter_epoch(4, skip_batches=skip)), full[skip:])
    reads = []
    original = loader_module._GroupCache.get
    monkeypatch.setattr(
        loader_module._GroupCache, "get", lambda self, unit: reads.append(unit) or original(self, unit)
    )
    list(shards.iter_epoch(4, skip_batches=len(full) - 1))
    assert len(set(reads)) <= 2 * shards.plan.window
    with pytest.raises(ValueError, match="skip_batches"):
        shards.iter_epoch(0, skip_batches=len(full) + 1)


@pytest.mark.timeout(120)
def test_resume_with_workers_equals_tail(dataset):
    root, _ = dataset
    shards = ShardLoader(root, batch_size=BATCH, seed=2, num_workers=2)
    full = list(shards.iter_epoch(1))
    assert len(full) == shards.batches_per_epoch
    assert _same(list(shards.iter_epoch(1, skip_batches=3)), full[3:])


@pytest.mark.timeout(120)
def test_ranks_and_workers_never_share_a_sample(dataset):
    root, truth = dataset
    seen: list[str] = []
    for rank in range(2):
        shards = ShardLoader(root, batch_size=BATCH, rank=rank, world_size=2, num_workers=2)
        batches = list(shards.iter_epoch(0))
        assert len(batches) == shards.batches_per_epoch
        seen += [i for batch in batches for i in batch["id"]]
    assert len(seen) == len(set(seen)) == 2 * shards.batches_per_epoch * BATCH
    readers, largest_group = 4, 16
    assert set(seen) <= set(truth) and ROWS - len(seen) < readers * (BATCH + largest_group)


def test_hflip_flips_some_images_and_only_when_enabled(dataset):
    root, truth = dataset
    flips = [f for b in ShardLoader(root, batch_size=BATCH).iter_epoch(0) for f in _flipped(b, truth)]
    assert 0.3 < np.mean(flips) < 0.7
    plain = [
        f for b in ShardLoader(root, batch_size=BATCH, hflip=False).iter_epoch(0) for f in _flipped(b, truth)
    ]
    assert not any(plain)


def test_resize_to_smaller_resolution(dataset):
    root, truth = dataset
    batch = next(ShardLoader(root, batch_size=BATCH, resolution=8, hflip=False).iter_epoch(0))
    assert batch["image"].shape == (BATCH, 3, 8, 8)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    stored = torch.stack([torch.from_numpy(truth[i][0]).permute(2, 0, 1).float() for i in batch["id"]])
    expected = torch.nn.functional.avg_pool2d(stored, 2) / 127.5 - 1
    assert (batch["image"] - expected).abs().mean() < 0.15


def test_png_shards_give_the_same_batches(dataset, tmp_path):
    root, _ = dataset
    _write_dataset(tmp_path, encoding="png")
    raw = list(ShardLoader(root, batch_size=BATCH, seed=9).iter_epoch(1))
    assert _same(raw, list(ShardLoader(tmp_path, batch_size=BATCH, seed=9).iter_epoch(1)))


def test_tiny_dataset_clamps_workers_and_allows_no_attributes(tmp_path):
    _write_dataset(tmp_path, rows=20, names=(), rows_per_group=8)
    with pytest.warns(UserWarning, match="clamped"):
        shards = ShardLoader(tmp_path, batch_size=4, num_workers=8)
    assert shards.num_workers == 3
    assert ShardLoader(tmp_path, batch_size=4, num_workers=0).num_workers == 0
    batch = next(ShardLoader(tmp_path, batch_size=4).iter_epoch(0))
    assert batch["attrs"].shape == (4, 0)
    with pytest.raises(ValueError, match="too few"):
        ShardLoader(tmp_path, batch_size=64)
    with pytest.raises(KeyError, match="valid choices: train"):
        ShardLoader(tmp_path, split="test", batch_size=4)
