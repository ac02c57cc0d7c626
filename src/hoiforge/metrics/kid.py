"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over subsets.

k(x, y) = (x . y / d + 1)^3 on the 2048-d features (d = 2048). Per subset, ``subset_size``
real and fake features are drawn without replacement, and the unbiased estimate is

    MMD^2 = [sum_{i!=j} k(r_i, r_j) + sum_{i!=j} k(f_i, f_j)] / (m (m - 1)) - 2 sum_{i,j} k(r_i, f_j) / m^2

(Binkowski et al. 2018, as torch-fidelity and torchmetrics compute it). KID is the mean over
``num_subsets`` subsets, reported with their standard deviation; tables print KID x 1000. The
defaults are theirs: 100 subsets of 1000. With fewer images than that in either set the subset
size becomes half the smaller set, with a warning (torchmetrics raises instead): subsets of the
whole set would all be the same draw and report a standard deviation of 0. The draw is seeded,
so the same features give the same KID.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hoiforge.errors import EvalError
from hoiforge.metrics.features import Features, check_same_settings

NUM_SUBSETS, SUBSET_SIZE = 100, 1000


@dataclass(frozen=True)
class KID:
    mean: float
    std: float
    subset_size: int
    num_subsets: int

    @property
    def x1000(self) -> float:
        return 1000.0 * self.mean


def polynomial_mmd2(r: np.ndarray, f: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between two equal-size samples with k(x, y) = (x.y / d + coef0)^degree."""
    m, d = r.shape
    k_rr = (r @ r.T / d + coef0) ** degree
    k_ff = (f @ f.T / d + coef0) ** degree
    k_rf = (r @ f.T / d + coef0) ** degree
    within = (k_rr.sum() - np.trace(k_rr) + k_ff.sum() - np.trace(k_ff)) / (m * (m - 1))
    return float(within - 2.0 * k_rf.sum() / (m * m))


def kid(
    real: Features | np.ndarray,
    fake: Features | np.ndarray,
    num_subsets: int = NUM_SUBSETS,
    subset_size: int = SUBSET_SIZE,
    seed: int = 0,
) -> KID:
    if isinstance(real, Features) and isinstance(fake, Features):
        check_same_settings(real, fake)
    r = np.asarray(real.values if isinstance(real, Features) else real, np.float64)
    f = np.asarray(fake.values if isinstance(fake, Features) else fake, np.float64)
    n = min(len(r), len(f))
    if n < 2:
        raise EvalError(f"KID needs at least 2 images in each set, got {len(r)} real and {len(f)} fake")
    if subset_size > n:
        adapted = max(2, n // 2)
        warnings.warn(
            f"KID subset size lowered from {subset_size} to {adapted} (half the smaller set, {n} images); "
            f"KID from small subsets is noisier than the papers' (subsets of {SUBSET_SIZE})",
            stacklevel=2,
        )
        subset_size = adapted
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            polynomial_mmd2(r[rng.choice(len(r), subset_size, replace=False)], f[rng.choice(len(f), subset_size, replace=False)])
            for _ in range(num_subsets)
        ]
    )
    return KID(float(values.mean()), float(values.std()), subset_size, num_subsets)
