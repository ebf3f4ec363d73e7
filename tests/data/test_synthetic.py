"""Tests for the procedural synthetic faces dataset: determinism, attributes, captions, pixels."""

import numpy as np
import pytest
from PIL import Image

from faice.data.synthetic import (
    ATTRIBUTES,
    SyntheticFace,
    caption_for,
    draw_face,
    generate,
    sample_attributes,
    synthetic_face,
)

BASE = {"Male": 0, "Smiling": 0, "Eyeglasses": 0, "Blond_Hair": 0, "Black_Hair": 0, "Young": 1}


def _pixels(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255]."""
    return np.asarray(image, dtype=np.float32)


def _draw(resolution: int = 64, rng_seed: int = 0, **changes: int) -> np.ndarray:
    return _pixels(draw_face({**BASE, **changes}, np.random.default_rng(rng_seed), resolution))


def _region(pixels: np.ndarray, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    size = pixels.shape[0]
    return pixels[round(top * size) : round(bottom * size), round(left * size) : round(right * size)]


def test_same_seed_and_index_give_identical_bytes():
    a, b = synthetic_face(7, 32, seed=3), synthetic_face(7, 32, seed=3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.attributes == b.attributes
    assert a.caption == b.caption


def test_different_seed_or_index_give_different_images():
    base = synthetic_face(7, 32, seed=3).image.tobytes()
    assert synthetic_face(7, 32, seed=4).image.tobytes() != base
    assert synthetic_face(8, 32, seed=3).image.tobytes() != base


def test_generate_matches_synthetic_face_and_honours_start():
    faces = list(generate(3, resolution=32, seed=1, start=5))
    assert len(faces) == 3
    for offset, face in enumerate(faces):
        assert isinstance(face, SyntheticFace)
        assert face.image.tobytes() == synthetic_face(5 + offset, 32, seed=1).image.tobytes()


@pytest.mark.parametrize("resolution", [32, 128])
def test_size_and_mode(resolution):
    image = synthetic_face(0, resolution).image
    assert image.mode == "RGB"
    assert image.size == (resolution, resolution)


def test_same_face_at_two_resolutions():
    small = _pixels(synthetic_face(11, 32).image)
    large = _pixels(synthetic_face(11, 128).image.reduce(4))
    other = _pixels(synthetic_face(12, 32).image)
    assert np.abs(small - large).mean() < 3.0
    assert np.abs(small - other).mean() > 10.0


def test_attribute_names_and_values():
    assert ATTRIBUTES == ("Male", "Smiling", "Eyeglasses", "Blond_Hair", "Black_Hair", "Young")
    for face in generate(50, resolution=16):
        assert tuple(face.attributes) == ATTRIBUTES
        assert set(face.attributes.values()) <= {0, 1}
        assert not (face.attributes["Blond_Hair"] and face.attributes["Black_Hair"])


def test_marginals_over_2000_samples():
    samples = [sample_attributes(np.random.default_rng([0, i])) for i in range(2000)]
    expected = {
        "Male": 0.45,
        "Smiling": 0.5,
        "Eyeglasses": 0.2,
        "Blond_Hair": 0.2,
        "Black_Hair": 0.3,
        "Young": 0.75,
    }
    for name, p in expected.items():
        assert abs(np.mean([s[name] for s in samples]) - p) < 0.04, name


def test_captions_reflect_attributes():
    for face in generate(200, resolution=8):
        a, words = face.attributes, face.caption.split()
        assert face.caption == caption_for(a)
        assert ("glasses" in words) == bool(a["Eyeglasses"])
        assert ("man" in words) == bool(a["Male"])
        assert ("woman" in words) != bool(a["Male"])
        assert ("smiling" in words) == bool(a["Smiling"])
        assert ("neutral" in words) != bool(a["Smiling"])
        assert ("blond" in words) == bool(a["Blond_Hair"])
        assert ("black" in words) == bool(a["Black_Hair"])
        assert ("young" in words) == bool(a["Young"])


def test_caption_examples():
    smiling_blond = {**BASE, "Smiling": 1, "Eyeglasses": 1, "Blond_Hair": 1}
    assert caption_for(smiling_blond) == "a smiling young woman with blond hair and glasses"
    older_man = {**BASE, "Male": 1, "Black_Hair": 1, "Young": 0}
    assert caption_for(older_man) == "an older man with black hair and a neutral expression"


@pytest.mark.parametrize("rng_seed", range(5))
def test_eyeglasses_change_only_the_eye_band(rng_seed):
    without, with_ = _draw(rng_seed=rng_seed), _draw(rng_seed=rng_seed, Eyeglasses=1)
    eyes = np.abs(_region(with_, 0.3, 0.52, 0.2, 0.8) - _region(without, 0.3, 0.52, 0.2, 0.8))
    assert eyes.mean() > 5.0
    assert np.array_equal(_region(with_, 0.6, 1.0, 0.0, 1.0), _region(without, 0.6, 1.0, 0.0, 1.0))


@pytest.mark.parametrize("rng_seed", range(5))
def test_smiling_changes_the_mouth(rng_seed):
    neutral, smiling = _draw(rng_seed=rng_seed), _draw(rng_seed=rng_seed, Smiling=1)
    mouth = np.abs(_region(smiling, 0.62, 0.8, 0.35, 0.65) - _region(neutral, 0.62, 0.8, 0.35, 0.65))
    assert mouth.mean() > 10.0
    assert np.array_equal(_region(smiling, 0.0, 0.55, 0.0, 1.0), _region(neutral, 0.0, 0.55, 0.0, 1.0))


@pytest.mark.parametrize("male", [0, 1])
@pytest.mark.parametrize("rng_seed", range(5))
def test_blond_hair_is_lighter_than_black_hair(male, rng_seed):
    blond = _region(_draw(rng_seed=rng_seed, Male=male, Blond_Hair=1), 0.2, 0.26, 0.42, 0.58)
    black = _region(_draw(rng_seed=rng_seed, Male=male, Black_Hair=1), 0.2, 0.26, 0.42, 0.58)
    assert blond.mean() > black.mean() + 100.0
    assert black.mean() < 60.0


@pytest.mark.parametrize("rng_seed", range(5))
def test_women_have_hair_beside_the_neck_more_than_men(rng_seed):
    # Long hair or a bob fills the sides of the head below the ears; short male hair never does.
    woman = _draw(rng_seed=rng_seed, Black_Hair=1)
    man = _draw(rng_seed=rng_seed, Black_Hair=1, Male=1)
    band = (0.7, 0.78, 0.2, 0.28)
    assert _region(woman, *band).mean() < _region(man, *band).mean() - 20.0


@pytest.mark.parametrize("rng_seed", range(5))
def test_older_faces_get_lines_and_greyer_hair(rng_seed):
    young, older = _draw(rng_seed=rng_seed, Black_Hair=1), _draw(rng_seed=rng_seed, Black_Hair=1, Young=0)
    cheeks = np.abs(_region(older, 0.6, 0.75, 0.3, 0.7) - _region(young, 0.6, 0.75, 0.3, 0.7))
    assert cheeks.mean() > 1.0
    hair = (0.2, 0.26, 0.42, 0.58)
    assert _region(older, *hair).mean() > _region(young, *hair).mean() + 20.0


def test_dataset_is_diverse():
    stack = np.stack([_pixels(face.image) for face in generate(64, resolution=32)])
    assert len({image.tobytes() for image in stack}) == 64
    assert stack.std(axis=0).mean() > 35.0
