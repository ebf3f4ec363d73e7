"""FID, IS and KID against their formulas, scipy and torchmetrics (same features, independent code)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from faice.metrics.features import build_extractor
from faice.metrics.stats import (
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
)


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The classic pytorch-fid computation: scipy.linalg.sqrtm of the covariance product."""
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """n samples of one fixed correlated Gaussian in d dims (the seed only changes the samples)."""
    mix = np.random.default_rng(100 + d).standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    return np.random.default_rng(seed).standard_normal((n, d)) @ mix + shift


def test_fid_matches_scipy_sqrtm_to_1e4():
    a, b = _features(600, 48, 0), _features(500, 48, 1, shift=0.3)
    ours = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert ours == pytest.approx(_scipy_fid(a, b), rel=1e-4)
    assert ours == pytest.approx(frechet_distance(*feature_stats(b), *feature_stats(a)), rel=1e-10)
    assert frechet_distance(*feature_stats(a), *feature_stats(a)) == pytest.approx(0.0, abs=1e-8)


def test_fid_with_fewer_samples_than_dimensions_matches_scipy():
    """Singular covariances (N < D), as with few samples of 2048-d Inception features."""
    a, b = _features(40, 64, 2), _features(40, 64, 3, shift=0.2)
    ours = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert np.isfinite(ours) and ours == pytest.approx(_scipy_fid(a, b), rel=1e-4)


def test_fid_of_diagonal_gaussians_has_a_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want, rel=1e-12)


def test_inception_score_limits_and_splits():
    assert inception_score(np.zeros((50, 10)), splits=5)[0] == pytest.approx(1.0)
    onehot = np.eye(8)[np.arange(80) % 8]
    assert inception_score(onehot, splits=1, from_logits=False)[0] == pytest.approx(8.0)
    logits = np.random.default_rng(0).standard_normal((100, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.split(probs, 5):  # a plain loop over the definition
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(p * (np.log(p) - np.log(py))) for p in part])))
    mean, std = inception_score(logits, splits=5)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(
        np.std(scores), rel=1e-8
    )


def test_kid_is_unbiased_mmd_with_the_cubic_kernel():
    x, y = _features(30, 6, 4), _features(30, 6, 5, shift=0.5)
    k = lambda a, b: (a @ b.T / 6 + 1) ** 3  # noqa: E731
    m = 30
    want = sum(k(x[i : i + 1], x[j : j + 1])[0, 0] for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    want += sum(k(y[i : i + 1], y[j : j + 1])[0, 0] for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    want -= 2 * k(x, y).mean()
    assert mmd2_unbiased(x, y) == pytest.approx(want, rel=1e-10)
    same = kernel_inception_distance(_features(400, 6, 6), _features(400, 6, 7), subsets=20, subset_size=100)
    shifted = kernel_inception_distance(
        _features(400, 6, 6), _features(400, 6, 7, 1.0), subsets=20, subset_size=100
    )
    assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * abs(same[0])


# ---------------------------------------------------------------------------- torchmetrics


class _TinyFeatures(torch.nn.Module):
    """torchmetrics' custom-extractor hook around faice-tiny: uint8 (N, 3, H, W) -> features or logits."""

    def __init__(self, logits: bool = False):
        super().__init__()
        self.extractor, self.logits = build_extractor("faice-tiny"), logits
        self.num_features = 16 if logits else self.extractor.dims

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        feats, logits = self.extractor.features(imgs.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8))
        return torch.from_numpy(logits if self.logits else feats)


def _images(n: int, seed: int, blur: bool = False) -> np.ndarray:
    from faice.data.synthetic import generate

    images = np.stack([np.asarray(f.image) for f in generate(n, 32, seed=seed)])
    if blur:
        images = ((images[:, :-1].astype(np.int32) + images[:, 1:]) // 2).astype(np.uint8)
        images = np.concatenate([images, images[:, -1:]], axis=1)
    return images


def test_fid_kid_is_match_torchmetrics_with_the_same_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _images(120, 0), _images(100, 1, blur=True)
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    ext = build_extractor("faice-tiny")
    fr, _ = ext.features(real)
    ff, logits = ext.features(fake)

    fid = FrechetInceptionDistance(feature=_TinyFeatures())
    fid.update(to_t(real), real=True)
    fid.update(to_t(fake), real=False)
    ours = frechet_distance(*feature_stats(fr), *feature_stats(ff))
    assert ours == pytest.approx(float(fid.compute()), rel=1e-3)

    kid = KernelInceptionDistance(feature=_TinyFeatures(), subsets=1, subset_size=100)
    kid.update(to_t(real[:100]), real=True)
    kid.update(to_t(fake), real=False)
    assert mmd2_unbiased(fr[:100], ff) == pytest.approx(float(kid.compute()[0]), rel=1e-3)

    score = InceptionScore(feature=_TinyFeatures(logits=True), splits=1)
    score.update(to_t(fake))
    assert inception_score(logits, splits=1)[0] == pytest.approx(float(score.compute()[0]), rel=1e-4)


def test_psnr_and_ssim_match_their_formulas():
    """torchmetrics computes both; these pin its conventions (range 255, mean over images)."""
    from faice.metrics.stats import psnr, ssim

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    mse = ((x.astype(float) - y) ** 2).reshape(3, -1).mean(1)
    assert psnr(x, y) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    assert ssim(x, x) == pytest.approx(1.0)
    # flat images a and b: no variance, so SSIM = (2ab + c1) / (a^2 + b^2 + c1) with c1 = (0.01 * 255)^2
    a, b, c1 = 100.0, 140.0, (0.01 * 255) ** 2
    flat = lambda v: np.full((2, 24, 24, 3), v, np.uint8)  # noqa: E731
    assert ssim(flat(a), flat(b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)
    assert ssim(x, y) < ssim(x, np.clip(x + rng.normal(0, 5, x.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("n", [30, 200])  # fewer and more samples than the 64 dimensions
def test_fid_from_features_against_a_prepared_reference_matches_scipy(n):
    """FrechetReference.distance (the Gram-matrix route every evaluation and bootstrap draw takes)."""
    from faice.metrics.stats import FrechetReference

    real, fake = _features(300, 64, 4), _features(n, 64, 5, shift=0.25)
    ref = FrechetReference(*feature_stats(real))
    assert ref.distance(fake) == pytest.approx(_scipy_fid(real, fake), rel=1e-4)
    assert ref.distance(fake) == pytest.approx(frechet_distance(*feature_stats(real), *feature_stats(fake)))


def test_fid_bootstrap_std_is_the_spread_of_fids_of_resamples():
    from faice.metrics.stats import FrechetReference, fid_bootstrap_std

    real, fake = _features(400, 16, 6), _features(120, 16, 7, shift=0.3)
    ref = FrechetReference(*feature_stats(real))
    rng = np.random.default_rng(3)
    by_hand = [ref.distance(fake[rng.integers(0, 120, 120)]) for _ in range(30)]
    assert fid_bootstrap_std(ref, fake, 30, seed=3) == pytest.approx(np.std(by_hand, ddof=1))
    # and it is the right size: close to the spread of FIDs of fresh samples from the same model
    fresh = [ref.distance(_features(120, 16, 100 + k, shift=0.3)) for k in range(40)]
    assert 0.5 < fid_bootstrap_std(ref, fake, 200) / np.std(fresh, ddof=1) < 2.0


def test_fid_infinity_reads_a_linear_bias_back_at_zero():
    """FID_N = FID_inf + k / N (Chong & Forsyth 2020): the fit's intercept estimates FID_inf."""
    from faice.metrics.stats import FrechetReference, fid_infinity

    real = _features(4000, 8, 8)
    ref = FrechetReference(*feature_stats(real))
    fake = _features(4000, 8, 9, shift=0.5)
    intercept, slope = fid_infinity(ref, fake, points=10, min_fraction=0.05, seed=1)
    assert slope > 0  # fewer samples, larger FID
    assert intercept == pytest.approx(8 * 0.5**2, rel=0.15)  # ||mu1 - mu2||^2 of the shifted Gaussian


def test_a_references_frechet_statistics_are_built_once_per_content(tmp_path):
    """scoring.frechet_reference reuses S^(1/2) for a reference with the same contents (a run's every
    evaluation), never for another reference, and scores exactly as a fresh FrechetReference does."""
    from faice.metrics.reference import ReferenceStats
    from faice.metrics.stats import FrechetReference, feature_stats
    from faice.scoring import frechet_reference

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 8)), rng.normal(0.5, 1.2, size=(30, 8))
    mu, sigma = feature_stats(real)
    ref = ReferenceStats(mu, sigma, real, tmp_path / "a.npz", True)
    again = ReferenceStats(mu.copy(), sigma.copy(), real, tmp_path / "b.npz", False)
    other = ReferenceStats(mu + 1.0, sigma, real, tmp_path / "a.npz", False)  # same file name, new contents
    first = frechet_reference(ref)
    assert frechet_reference(again) is first
    assert frechet_reference(other) is not first
    assert frechet_reference(other).distance(fake) == pytest.approx(
        FrechetReference(mu + 1.0, sigma).distance(fake)
    )
    assert first.distance(fake) == pytest.approx(FrechetReference(mu, sigma).distance(fake), rel=1e-12)


def test_the_shipped_inception_is_checked_against_its_known_sha256_and_a_users_file_is_not(
    tmp_path, monkeypatch
):
    import hashlib

    from faice.errors import ConfigError
    from faice.metrics.features import (
        INCEPTION_ENV,
        SHIPPED_INCEPTION_SHA256,
        expected_inception_sha256,
        verify_sha256,
    )

    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    copy = tmp_path / "default_1.pt"
    copy.write_bytes(b"not the weights")  # a truncated download, a replaced file
    assert expected_inception_sha256(copy) == SHIPPED_INCEPTION_SHA256
    with pytest.raises(ConfigError, match=r"SHA-256 .* not the known .* corrupt or replaced"):
        verify_sha256(copy, expected_inception_sha256(copy))
    # a file the user names is theirs: hashed (for the fingerprint), not refused
    assert expected_inception_sha256(copy, configured=str(copy)) is None
    monkeypatch.setenv(INCEPTION_ENV, str(copy))
    assert expected_inception_sha256(copy) is None
    assert verify_sha256(copy, None) == hashlib.sha256(b"not the weights").hexdigest()
