"""Preparing CelebA-HQ (original layout), image folders and synthetic faces into shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openpyxl
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faice.data import prepare
from faice.data.prepare import load_image, prepare_celeba, prepare_folder, resize_square, write_synthetic
from faice.data.shards import decode_image
from faice.data.synthetic import ATTRIBUTES, generate

TRAIN_IDS = list(range(8))
TEST_IDS = [8, 9, 10, 11]
NOT_IN_SHEET = 7
NO_CAPTION = 3


def _face(i: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 3 + i * 20, y * 3, (x + y) + i * 7], axis=-1)
    return Image.fromarray(((base + rng.integers(0, 40, base.shape)) % 256).astype(np.uint8))


def _sheet(path: Path, labels: dict[int, int]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["image", "label"])
    for image_id, label in labels.items():
        sheet.append([image_id, label])
    workbook.save(path)


def make_celeba_tree(root: Path) -> dict[str, dict]:
    """datasets/ in the original layout with 12 good JPEGs and 3 bad files; returns labels and captions."""
    split_dir = root / "celeba_hq_split"
    labels = {i: i % 2 for i in [*TRAIN_IDS, *TEST_IDS, 100, 101]}
    for split, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        (split_dir / split).mkdir(parents=True)
        for i in ids:
            _face(i, (80, 64) if i == 5 else (64, 64)).save(split_dir / split / f"{i}.jpg", quality=95)
    good = (split_dir / "train" / "0.jpg").read_bytes()
    (split_dir / "train" / "100.jpg").write_bytes(good[: len(good) // 2])
    (split_dir / "train" / "101.jpg").write_bytes(b"")
    (split_dir / "test" / "102.jpg").write_text("not an image")
    _sheet(
        split_dir / "celebaAHQ_train.xlsx",
        {i: labels[i] for i in [*TRAIN_IDS, 100, 101] if i != NOT_IN_SHEET},
    )
    _sheet(split_dir / "celebaAHQ_test.xlsx", {**{i: labels[i] for i in TEST_IDS}, 999: 1})
    captions = {i: f"a face number {i}" for i in TRAIN_IDS + TEST_IDS if i != NO_CAPTION}
    (root / "celeba_hq_stable_diffusion").mkdir()
    payload = {f"{i}.jpg": {"overall_caption": text, "other": "x"} for i, text in captions.items()}
    (root / "celeba_hq_stable_diffusion" / "captions_hq.json").write_text(json.dumps(payload))
    return {"labels": labels, "captions": captions}


def _rows(out: Path, manifest: dict, split: str) -> list[dict]:
    return [
        row
        for shard in manifest["splits"][split]["shards"]
        for row in pq.read_table(out / shard["file"]).to_pylist()
    ]


@pytest.fixture
def celeba(tmp_path) -> tuple[Path, dict]:
    src = tmp_path / "datasets"
    return src, make_celeba_tree(src)


def test_celeba_counts_skips_attributes_and_captions(celeba, tmp_path):
    src, truth = celeba
    out = tmp_path / "shards"
    manifest = prepare_celeba(src, out, resolution=32, workers=0)
    assert manifest["attribute_names"] == ["Male"]
    assert (manifest["splits"]["train"]["count"], manifest["splits"]["test"]["count"]) == (8, 4)
    reasons = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert (
        sorted(reasons) == ["test/102.jpg", "train/100.jpg", "train/101.jpg"]
        and manifest["skipped_count"] == 3
    )
    assert "truncated" in reasons["train/100.jpg"] and "cannot identify" in reasons["train/101.jpg"]
    assert manifest["splits"]["train"]["unknown_attributes"] == 1
    assert manifest["source"]["sheet_ids_without_image"] == {"train": 0, "test": 1}
    for split, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        rows = _rows(out, manifest, split)
        assert [r["id"] for r in rows] == [str(i) for i in ids]
        for row, i in zip(rows, ids, strict=True):
            assert row["attr_Male"] == (-1 if i == NOT_IN_SHEET else truth["labels"][i])
            assert row["caption"] == truth["captions"].get(i, "")
            assert (row["source"], row["split"]) == (f"{split}/{i}.jpg", split)


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_celeba_pixels_round_trip(celeba, tmp_path, encoding):
    src, _ = celeba
    for resolution in (64, 32):
        out = tmp_path / f"{encoding}-{resolution}"
        manifest = prepare_celeba(src, out, resolution=resolution, encoding=encoding, workers=0)
        for row in _rows(out, manifest, "train"):
            stored = decode_image(row["image"], encoding, resolution)
            expected = load_image(src / "celeba_hq_split" / row["source"], resolution)
            np.testing.assert_array_equal(stored, expected)
            if resolution == 64 and row["id"] != "5":
                original = Image.open(src / "celeba_hq_split" / row["source"]).convert("RGB")
                np.testing.assert_array_equal(stored, np.asarray(original))


def test_celeba_content_hash_is_stable_and_tracks_images(celeba, tmp_path):
    src, _ = celeba
    first = prepare_celeba(src, tmp_path / "a", resolution=32, workers=0)
    from_split_dir = prepare_celeba(src / "celeba_hq_split", tmp_path / "b", resolution=32, workers=0)
    assert from_split_dir["content_hash"] == first["content_hash"]
    _face(99).save(src / "celeba_hq_split" / "test" / "9.jpg", quality=95)
    changed = prepare_celeba(src, tmp_path / "a", resolution=32, workers=0)
    assert changed["content_hash"] != first["content_hash"]
    assert (
        prepare_celeba(src, tmp_path / "a", resolution=32, workers=0)["content_hash"]
        == changed["content_hash"]
    )


def test_celeba_pool_matches_serial(celeba, tmp_path, monkeypatch):
    src, _ = celeba
    serial = prepare_celeba(src, tmp_path / "serial", resolution=32, workers=0)
    monkeypatch.setattr(prepare, "_SERIAL_BELOW", 0)
    pooled = prepare_celeba(
        src, tmp_path / "pool", resolution=32, workers=2, rows_per_group=2, rows_per_shard=4
    )
    assert [s["rows"] for s in pooled["splits"]["train"]["shards"]] == [4, 4]
    rows = {
        r["id"]: r["image"] for split in ("train", "test") for r in _rows(tmp_path / "pool", pooled, split)
    }
    expected = {
        r["id"]: r["image"] for split in ("train", "test") for r in _rows(tmp_path / "serial", serial, split)
    }
    assert rows == expected and pooled["skipped"] == serial["skipped"]


def test_celeba_wrong_layout_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="celeba_hq_split"):
        prepare_celeba(tmp_path, tmp_path / "out", resolution=32)


def test_resize_square_scales_shorter_side_then_centre_crops():
    wide = np.zeros((64, 192, 3), np.uint8)
    wide[:, :64, 0] = wide[:, 64:128, 1] = wide[:, 128:, 2] = 255
    out = resize_square(Image.fromarray(wide), 32)
    assert out.shape == (32, 32, 3)
    centre = out[:, 4:28].astype(int)
    assert (centre[..., 1] > 240).all() and (centre[..., 0] < 15).all() and (centre[..., 2] < 15).all()


def test_prepare_folder_recursive_with_captions_and_split(tmp_path):
    src = tmp_path / "faces"
    (src / "a" / "b").mkdir(parents=True)
    names = ["x.jpg", "a/y.png", "a/b/z.webp", "a/b/w.bmp", "a/v.JPEG"]
    for i, name in enumerate(names):
        _face(i).save(src / name)
    (src / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    (src / "notes.txt").write_text("ignored")
    (src / "captions.json").write_text(json.dumps({"a/y.png": "why", "x.jpg": {"overall_caption": "ex"}}))
    manifest = prepare_folder(src, tmp_path / "out", resolution=16, test_fraction=0.5, workers=0)
    rows = _rows(tmp_path / "out", manifest, "train") + _rows(tmp_path / "out", manifest, "test")
    assert sorted(r["source"] for r in rows) == sorted(names)
    assert manifest["attribute_names"] == [] and [s["file"] for s in manifest["skipped"]] == ["a/broken.png"]
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["test"]["count"] == 5
    assert {r["source"]: r["caption"] for r in rows}["a/y.png"] == "why"
    assert {r["source"]: r["caption"] for r in rows}["x.jpg"] == "ex"
    assert {r["id"] for r in rows} >= {"a/b/z", "x"}


def test_write_synthetic_attributes_captions_and_split(tmp_path):
    manifest = write_synthetic(tmp_path / "s", n=40, resolution=32, seed=3, test_fraction=0.25)
    assert manifest["attribute_names"] == list(ATTRIBUTES)
    rows = _rows(tmp_path / "s", manifest, "train") + _rows(tmp_path / "s", manifest, "test")
    assert len(rows) == 40 and 0 < manifest["splits"]["test"]["count"] < 40
    by_id = {r["id"]: r for r in rows}
    for i, face in enumerate(generate(40, resolution=32, seed=3)):
        row = by_id[f"synthetic-3-{i:06d}"]
        assert {name: row[f"attr_{name}"] for name in ATTRIBUTES} == face.attributes
        assert row["caption"] == face.caption
        np.testing.assert_array_equal(
            decode_image(row["image"], "raw", 32), np.asarray(face.image.convert("RGB"))
        )
    again = write_synthetic(tmp_path / "s2", n=40, resolution=32, seed=3, test_fraction=0.25)
    assert again["content_hash"] == manifest["content_hash"]


def test_cli_prepare_on_the_original_layout(celeba, tmp_path, capsys):
    """`faice data prepare` (the acceptance command): counts match, bad files listed, exit 0."""
    from faice.cli import main

    src, _ = celeba
    out = tmp_path / "shards"
    assert main(["data", "prepare", str(src), str(out), "--resolution", "32", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == len(TRAIN_IDS)
    assert manifest["splits"]["test"]["count"] == len(TEST_IDS)
    assert sorted(Path(s["file"]).name for s in manifest["skipped"]) == ["100.jpg", "101.jpg", "102.jpg"]
    printed = capsys.readouterr().out
    assert "train=8" in printed and "skipped 3" in printed and "100.jpg" in printed


def test_a_bad_sheet_or_captions_file_is_a_one_line_error_naming_the_file_and_row(tmp_path):
    from faice.data.prepare import read_captions, read_label_sheet
    from faice.errors import ConfigError

    header = tmp_path / "header.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(["id", "male"])
    workbook.save(header)
    with pytest.raises(ConfigError, match=r"header.xlsx: needs the columns image,label in row 1"):
        read_label_sheet(header)
    ids = tmp_path / "ids.xlsx"
    workbook = openpyxl.Workbook()
    for row in (["image", "label"], [1, 0], ["seven", 1]):
        workbook.active.append(row)
    workbook.save(ids)
    with pytest.raises(ConfigError, match=r"ids.xlsx, row 3: expected an integer image id .*'seven'"):
        read_label_sheet(ids)
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"not a workbook")
    with pytest.raises(ConfigError, match="cannot be read as .xlsx"):
        read_label_sheet(junk)
    for text, message in (
        ('{"1.jpg": "a man",', "not valid JSON at line 1"),
        ('["a"]', "expected an object"),
    ):
        (tmp_path / "captions_hq.json").write_text(text)
        with pytest.raises(ConfigError, match=message):
            read_captions(tmp_path / "captions_hq.json")
