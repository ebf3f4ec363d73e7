"""FID, IS and KID from features: small float64 numpy functions, each the formula of its paper.

- Fréchet distance (Heusel et al. 2017): ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 over subsets.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (N - 1) of (N, D) features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature rows (N, D) for a covariance, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) of symmetric PSD matrices, without a general matrix square root.

    S1 S2 is not symmetric, but it is similar to M = S1^(1/2) S2 S1^(1/2), which is symmetric PSD, so
    tr((S1 S2)^(1/2)) = sum(sqrt(eig(M))). Two symmetric eigendecompositions are stable in float64 and
    exact for singular covariances (fewer samples than dimensions), where scipy's sqrtm may fail.
    """
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception features)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature shapes differ: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    scale = np.trace(sigma1) + np.trace(sigma2) + diff @ diff
    return float(max(value, 0.0)) if value > -1e-6 * max(scale, 1.0) else float(value)


class FrechetReference:
    """Reference statistics prepared once for many Fréchet distances: mean, S^(1/2) and tr(S)."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray):
        self.mu = np.asarray(mu, np.float64)
        sigma = np.asarray(sigma, np.float64)
        w, v = np.linalg.eigh((sigma + sigma.T) / 2)
        self.root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        self.trace = float(np.trace(sigma))

    def distance(self, features: np.ndarray) -> float:
        """FID of (N, D) features against the reference, from the features themselves: with X the centred
        features, S2 = X^T X / (N - 1) and S^(1/2) S2 S^(1/2) = Y^T Y / (N - 1) for Y = X S^(1/2), whose
        non-zero eigenvalues are those of the smaller of Y^T Y and Y Y^T. Equal to `frechet_distance`."""
        x = np.asarray(features, np.float64)
        n = len(x)
        if n < 2:
            raise ValueError(f"need at least 2 feature rows for a covariance, got {n}")
        mu = x.mean(axis=0)
        xc = x - mu
        y = xc @ self.root
        gram = (y @ y.T if n <= y.shape[1] else y.T @ y) / (n - 1)
        tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0, None)).sum())
        diff = mu - self.mu
        value = diff @ diff + self.trace + float((xc * xc).sum()) / (n - 1) - 2 * tr_sqrt
        return float(max(value, 0.0))


def fid_bootstrap_std(ref: FrechetReference, features: np.ndarray, draws: int = 50, seed: int = 0) -> float:
    """Sample std of the FID over `draws` bootstrap resamples (with replacement) of the generated
    features: the spread one would see re-drawing the same number of samples (reference held fixed)."""
    x = np.asarray(features, np.float64)
    rng = np.random.default_rng(seed)
    values = [ref.distance(x[rng.integers(0, len(x), len(x))]) for _ in range(draws)]
    return float(np.std(values, ddof=1)) if draws > 1 else 0.0


def fid_infinity(
    ref: FrechetReference, features: np.ndarray, points: int = 8, min_fraction: float = 0.25, seed: int = 0
) -> tuple[float, float]:
    """FID_inf (Chong & Forsyth 2020): FID at `points` sample counts N from min_fraction * len to len
    (random subsets), fitted linearly in 1/N and read at 1/N = 0. Returns (intercept, slope)."""
    x = np.asarray(features, np.float64)
    rng = np.random.default_rng(seed)
    counts = np.unique(np.linspace(max(2, int(min_fraction * len(x))), len(x), points).astype(int))
    fids = [ref.distance(x[rng.choice(len(x), n, replace=False)]) for n in counts]
    slope, intercept = np.polyfit(1.0 / counts, fids, 1)
    return float(intercept), float(slope)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def inception_score(
    logits_or_probs: np.ndarray, splits: int = 10, *, from_logits: bool = True
) -> tuple[float, float]:
    """(mean, std) over `splits` consecutive chunks of exp(E_x KL(p(y|x) || p(y)))."""
    x = np.asarray(logits_or_probs, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"need (N, classes) logits or probabilities, got shape {x.shape}")
    probs = _softmax(x) if from_logits else x
    scores = []
    for part in np.array_split(probs, max(1, min(splits, len(probs)))):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples x, y (m rows each): off-diagonal means of Kxx, Kyy minus 2 mean(Kxy)."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = m * (m - 1)
    return float((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of unbiased MMD^2 over `subsets` random subsets of min(subset_size, N) rows each."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 real and 2 generated samples, got {len(real)} and {len(fake)}"
        )
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _nchw(images: np.ndarray):
    import torch

    return torch.from_numpy(np.asarray(images, np.float64)).permute(0, 3, 1, 2)


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Mean over images of 10 log10(range^2 / MSE) for image batches (N, H, W, C) (torchmetrics' PSNR)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    value = peak_signal_noise_ratio(
        _nchw(y), _nchw(x), data_range=data_range, reduction="none", dim=(1, 2, 3)
    )
    return float(value.mean())


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) over images and
    channels of batches (N, H, W, C) (torchmetrics' SSIM)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(_nchw(y), _nchw(x), data_range=data_range))
