"""Augmentations on real shards: each changes pixels exactly as documented, and only when switched on.

A crop takes a window of the *stored* image and then resizes; a centre crop after a square resize would
change nothing (the original project's bug), so the test pins the cropped pixels to the stored ones."""

import numpy as np
import pytest
import torch

from faice.config import ConfigError, load_config
from faice.data.augment import Augment, crop_offsets, gaussian_blur, gaussian_kernel1d
from faice.data.loader import ShardLoader, to_model_images
from faice.data.prepare import write_synthetic
from faice.data.shards import read_images


@pytest.fixture(scope="module")
def faces32(tmp_path_factory):
    path = tmp_path_factory.mktemp("aug") / "faces32"
    write_synthetic(path, 64, 32, seed=0, rows_per_group=64)
    return path


def first_batch(path, augment=None, resolution=16, hflip=False, batch_size=8, seed=0):
    loader = ShardLoader(path, batch_size=batch_size, resolution=resolution, hflip=hflip, shuffle=False,
                         seed=seed, augment=augment)  # fmt: skip
    return next(iter(loader.iter_epoch(0)))


def stored(path, n=8):
    images = read_images(path, "train", limit=n)  # uint8 (n, H, W, 3), in shard order
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def test_no_augmentation_is_the_plain_resize(faces32):
    batch = first_batch(faces32)
    torch.testing.assert_close(batch["image"], to_model_images(stored(faces32), 16))


def test_centre_crop_takes_the_middle_of_the_stored_image(faces32):
    # crop 16 of 32 px: exactly the centre 16x16 pixels, no resize left to do
    batch = first_batch(faces32, Augment(crop="center", crop_scale=0.5))
    centre = stored(faces32)[:, :, 8:24, 8:24]
    torch.testing.assert_close(batch["image"], to_model_images(centre, 16))
    assert not torch.allclose(batch["image"], first_batch(faces32)["image"])  # not a no-op


def test_centre_crop_then_resize(faces32):
    batch = first_batch(faces32, Augment(crop="center", crop_scale=0.75))  # 24 px window -> 16 px
    window = stored(faces32)[:, :, 4:28, 4:28]
    torch.testing.assert_close(batch["image"], to_model_images(window, 16))


def test_random_crop_moves_the_window_and_is_reproducible(faces32):
    aug = Augment(crop="random", crop_scale=0.5)
    a, b = first_batch(faces32, aug)["image"], first_batch(faces32, aug)["image"]
    torch.testing.assert_close(a, b)  # same seed and epoch: same windows (resume-safe)
    images = stored(faces32)
    for i in range(len(a)):  # every image is some 16x16 window of its stored image
        windows = [to_model_images(images[i : i + 1, :, y : y + 16, x : x + 16], 16)[0]
                   for y in range(17) for x in range(17)]  # fmt: skip
        assert min((a[i] - w).abs().max().item() for w in windows) < 1e-6
    offsets = crop_offsets(1000, 32, 16, "random", np.random.default_rng(0))
    assert offsets.min() == 0 and offsets.max() == 16 and len(np.unique(offsets[:, 0])) == 17
    assert not torch.allclose(a, first_batch(faces32, aug, seed=1)["image"])


def test_gaussian_kernel_matches_the_formula():
    k = gaussian_kernel1d(1.5)
    assert k.numel() == 2 * 5 + 1 and k.sum().item() == pytest.approx(1.0)
    x = torch.arange(-5, 6, dtype=torch.float64)
    expected = torch.exp(-(x**2) / (2 * 1.5**2))
    torch.testing.assert_close(k.double(), expected / expected.sum(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel1d(1.0, 4)


def test_blur_smooths_and_keeps_flat_images():
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    noise = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blurred = gaussian_blur(noise, 1.0)
    assert blurred.shape == noise.shape and blurred.std() < 0.5 * noise.std()


def test_blur_applies_to_the_configured_share(faces32):
    plain = first_batch(faces32, batch_size=48)["image"]
    every = first_batch(faces32, Augment(blur_sigma=1.0, blur_prob=1.0), batch_size=48)["image"]
    torch.testing.assert_close(every, gaussian_blur(plain, 1.0).clamp(-1, 1))
    half = first_batch(faces32, Augment(blur_sigma=1.0, blur_prob=0.5), batch_size=48)["image"]
    changed = [(half[i] - plain[i]).abs().max().item() > 1e-6 for i in range(len(plain))]
    assert 12 <= sum(changed) <= 36  # about half of 48
    for i, c in enumerate(changed):
        torch.testing.assert_close(half[i], every[i] if c else plain[i])


def test_training_config_reaches_the_loader(debug_cfg):
    from faice.train.state import build_state

    cfg = debug_cfg("data.crop=random", "data.crop_scale=0.5", "data.blur_sigma=0.8")
    from accelerate import Accelerator

    state = build_state(cfg, Accelerator(cpu=True))
    assert state.loader.augment == Augment("random", 0.5, 0.8, 0, 0.5)


@pytest.mark.parametrize(
    "override,message",
    [("data.crop=top", "valid choices: none, center, random"), ("data.crop_scale=1.5", "data.crop_scale"),
     ("data.blur_kernel=4", "data.blur_kernel: must be odd"), ("data.blur_prob=2", "blur_prob")],
)  # fmt: skip
def test_bad_augmentation_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("debug.yaml", [override])
