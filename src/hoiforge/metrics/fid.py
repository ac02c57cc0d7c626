"""Fréchet Inception Distance between two feature sets.

FID = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) over the 2048-d Inception features,
mean and covariance (unbiased, N - 1) per set, as TTUR / pytorch-fid / torch-fidelity compute
it. The matrix square root is scipy's ``sqrtm`` (the standard path), in float64; numerical care
as those implementations take it: if the product is too singular for a finite root (few
images, N < 2048, make the covariances rank-deficient) both covariances get ``eps`` on their
diagonal, and an imaginary part is dropped only when it is numerical noise (it is an error
otherwise, not a silent real part).

``method="eigh"`` computes the same trace without a general matrix root:
Tr (S_r S_f)^(1/2) = sum sqrt(eig(S_r^(1/2) S_f S_r^(1/2))), a symmetric PSD matrix, so two
symmetric eigendecompositions (negative round-off eigenvalues clipped to 0) replace the Schur
method. It agrees with ``sqrtm`` to ~1e-6 relative (tested) and is ~10x faster at 2048-d
(a 2048-d ``sqrtm`` took 64 s on one loaded CPU core here, ``eigh`` ~7 s). With fewer images
than feature dimensions ``fid(..., method="eigh")`` works on the data instead: for centred
feature matrices X_r, X_f the non-zero eigenvalues of S_r S_f are the squared singular values of
X_r X_f^T / sqrt((n_r - 1)(n_f - 1)), so the trace is that matrix's nuclear norm (an n_r x n_f SVD).
"""

from __future__ import annotations

import numpy as np

from hoiforge.errors import EvalError
from hoiforge.metrics.features import Features, check_same_settings

METHODS = ("sqrtm", "eigh")

MIN_IMAGES = 2  # a covariance needs two samples


def mean_cov(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6, method: str = "sqrtm"
) -> float:
    from scipy import linalg

    if method not in METHODS:
        raise ValueError(f"FID method must be one of {', '.join(METHODS)}, got {method!r}")

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise EvalError(f"feature statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * _trace_sqrt_product_eigh(sigma1, sigma2))
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise EvalError(f"FID: the covariance square root has an imaginary component {imag:.3g}; the features are degenerate")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(real: Features | np.ndarray, fake: Features | np.ndarray, method: str = "sqrtm") -> float:
    """FID of two feature sets (Features are checked to share their settings)."""
    if isinstance(real, Features) and isinstance(fake, Features):
        check_same_settings(real, fake)
    a = real.values if isinstance(real, Features) else np.asarray(real)
    b = fake.values if isinstance(fake, Features) else np.asarray(fake)
    for name, x in (("real", a), ("fake", b)):
        if x.shape[0] < MIN_IMAGES:
            raise EvalError(f"FID needs at least {MIN_IMAGES} {name} images, got {x.shape[0]}")
    if method == "eigh" and min(len(a), len(b)) < a.shape[1]:
        return _fid_from_data(a, b)
    return frechet_distance(*mean_cov(a), *mean_cov(b), method=method)


def _fid_from_data(a: np.ndarray, b: np.ndarray) -> float:
    """FID with Tr (S_a S_b)^(1/2) as the nuclear norm of the centred cross-Gram matrix (exact; cheap when n < d)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    diff = x.mean(0) - y.mean(0)
    scale = np.sqrt((len(x) - 1) * (len(y) - 1))
    trace_sqrt = np.linalg.svd(xc @ yc.T / scale, compute_uv=False).sum()
    tr_a, tr_b = (xc * xc).sum() / (len(x) - 1), (yc * yc).sum() / (len(y) - 1)
    return float(diff @ diff + tr_a + tr_b - 2.0 * trace_sqrt)
