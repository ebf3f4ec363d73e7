"""Shard writer, image codec and manifest: real parquet files written and read back."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from faice.data.shards import (
    MANIFEST_NAME,
    ShardWriter,
    decode_image,
    encode_image,
    manifest_hash,
    read_manifest,
    reset_output,
    write_manifest,
)

RES = 8
NAMES = ("Male", "Young")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, RES, RES, 3), dtype=np.uint8)


def _write(out, images, encoding="raw", names=NAMES, rows_per_group=4, rows_per_shard=8, split="train"):
    with ShardWriter(out, split, RES, encoding, names, rows_per_group, rows_per_shard) as writer:
        for i, image in enumerate(images):
            attrs = {name: (i + j) % 2 for j, name in enumerate(names)}
            writer.add(image, attrs, f"caption {i}", f"src/{i}.jpg", f"id-{i}")
    return writer.close()


def _manifest(out, splits, encoding="raw", names=NAMES):
    return write_manifest(
        out,
        resolution=RES,
        encoding=encoding,
        attribute_names=names,
        splits=splits,
        skipped=[{"file": "bad.jpg", "reason": "OSError: truncated"}],
        source={"kind": "test"},
    )


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_round_trip_pixels_rows_and_layout(tmp_path, encoding):
    images = _images(19)
    entry = _write(tmp_path, images, encoding)
    assert entry["count"] == 19
    assert [s["file"] for s in entry["shards"]] == [
        "train-00000.parquet",
        "train-00001.parquet",
        "train-00002.parquet",
    ]
    assert [s["row_groups"] for s in entry["shards"]] == [[4, 4], [4, 4], [3]]
    rows = []
    for shard in entry["shards"]:
        parquet = pq.ParquetFile(tmp_path / shard["file"])
        assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == shard[
            "row_groups"
        ]
        rows += parquet.read().to_pylist()
    assert [r["id"] for r in rows] == [f"id-{i}" for i in range(19)]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(decode_image(row["image"], encoding, RES), images[i])
        assert (row["attr_Male"], row["attr_Young"]) == (i % 2, (i + 1) % 2)
        assert (row["caption"], row["split"], row["source"]) == (f"caption {i}", "train", f"src/{i}.jpg")
    assert not list(tmp_path.glob("*.tmp"))


def test_png_is_smaller_than_raw_for_smooth_images():
    smooth = np.tile(np.arange(RES, dtype=np.uint8)[None, :, None] * 30, (RES, 1, 3))
    assert len(encode_image(smooth, "png")) < len(encode_image(smooth, "raw")) == RES * RES * 3


def test_missing_attribute_is_unknown_and_counted(tmp_path):
    with ShardWriter(tmp_path, "train", RES, "raw", NAMES) as writer:
        writer.add(_images(1)[0], {"Male": 1}, "", "a.jpg", "a")
        writer.add(_images(1)[0], {"Male": 0, "Young": 1}, "hi", "b.jpg", "b")
    entry = writer.close()
    table = pq.read_table(tmp_path / "train-00000.parquet")
    assert table.column("attr_Young").to_pylist() == [-1, 1]
    assert (entry["unknown_attributes"], entry["empty_captions"]) == (1, 1)


def test_no_attributes_is_allowed(tmp_path):
    _write(tmp_path, _images(3), names=())
    assert pq.read_table(tmp_path / "train-00000.parquet").column_names == [
        "image",
        "caption",
        "split",
        "source",
        "id",
    ]


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="valid choices: raw, png"):
        ShardWriter(tmp_path, "train", RES, "jpeg", NAMES)
    with pytest.raises(ValueError, match="multiple of rows_per_group"):
        ShardWriter(tmp_path, "train", RES, "raw", NAMES, rows_per_group=3, rows_per_shard=8)
    writer = ShardWriter(tmp_path, "train", RES, "raw", NAMES)
    with pytest.raises(ValueError, match="expected"):
        writer.add(np.zeros((RES + 1, RES, 3), np.uint8), {}, "", "a", "a")
    with pytest.raises(ValueError, match="unknown attributes"):
        writer.add(_images(1)[0], {"Smiling": 1}, "", "a", "a")
    with pytest.raises(ValueError, match="expected 192"):
        decode_image(b"\0" * 10, "raw", RES)


def test_manifest_written_atomically_and_hashed(tmp_path):
    splits = {"train": _write(tmp_path, _images(10)), "test": _write(tmp_path, _images(3, 1), split="test")}
    manifest = _manifest(tmp_path, splits)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert read_manifest(tmp_path) == read_manifest(tmp_path / MANIFEST_NAME) == manifest
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["content_hash"] == manifest_hash(tmp_path)
    assert manifest["splits"]["train"]["count"] == 10 and manifest["splits"]["test"]["count"] == 3
    assert manifest["skipped_count"] == 1 and manifest["attribute_names"] == list(NAMES)
    changed = _images(10)
    changed[4, 0, 0, 0] ^= 1
    other = _manifest(tmp_path, {"train": _write(tmp_path, changed), "test": splits["test"]})
    assert other["content_hash"] != manifest["content_hash"]
    assert _manifest(tmp_path, splits, encoding="png")["content_hash"] != manifest["content_hash"]


def test_read_manifest_missing_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"faice data prepare.*faice data synth"):
        read_manifest(tmp_path)


def test_read_manifest_rejects_other_format_version(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="prepare the dataset again"):
        read_manifest(tmp_path)


def test_reset_output_removes_previous_dataset_only(tmp_path):
    _manifest(tmp_path, {"train": _write(tmp_path, _images(10))})
    (tmp_path / "notes.txt").write_text("keep me")
    reset_output(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
