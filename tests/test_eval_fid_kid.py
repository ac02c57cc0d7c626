"""FID and KID math on synthetic features (fast); the real-Inception checks live in test_eval_inception.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hoiforge.errors import EvalError
from hoiforge.metrics.features import Features, FeatureSettings
from hoiforge.metrics.fid import fid, frechet_distance
from hoiforge.metrics.kid import kid, polynomial_mmd2

D = 64


def draw(rng, n: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, skewed, correlated features: shaped like Inception pool activations."""
    mix = np.random.default_rng(123).normal(0, 0.3, size=(D, D))
    return np.abs(rng.gamma(1.0, 0.3, size=(n, D)) @ (np.eye(D) + mix) + shift)


def test_fid_of_gaussians_matches_the_closed_form():
    # Diagonal covariances: FID = |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    for method in ("sqrtm", "eigh"):
        assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2), method=method) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [40, 300])  # 40 < D: rank-deficient covariances, the few-images case
def test_fid_of_a_set_with_itself_is_zero_and_rises_monotonically_with_noise(n):
    rng = np.random.default_rng(0)
    x = draw(rng, n)
    for method in ("sqrtm", "eigh"):
        assert abs(fid(x, x, method=method)) < 1e-6
        noise = rng.normal(size=x.shape)
        values = [fid(x, x + s * noise, method=method) for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
        assert all(b > a for a, b in itertools.pairwise(values)), values
        assert values[0] > 1e-4


def test_sqrtm_and_eigh_agree():
    rng = np.random.default_rng(1)
    for n in (30, 500):
        a, b = draw(rng, n), draw(rng, n, shift=0.1)
        assert fid(a, b, method="eigh") == pytest.approx(fid(a, b, method="sqrtm"), rel=1e-6, abs=1e-8)


def test_kid_is_zero_within_its_std_for_two_draws_of_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    a, b = draw(rng, 400), draw(rng, 400)
    same = kid(a, b, num_subsets=50, subset_size=100)
    assert abs(same.mean) <= 2 * same.std and same.std > 0
    shifted = kid(a, draw(rng, 400, shift=0.3), num_subsets=50, subset_size=100)
    assert shifted.mean > 5 * shifted.std > 0
    assert shifted.x1000 == pytest.approx(1000 * shifted.mean)


def test_unbiased_mmd_matches_a_direct_double_loop():
    rng = np.random.default_rng(3)
    r, f = draw(rng, 6), draw(rng, 6, 0.2)

    def k(x, y):
        return (x @ y / D + 1) ** 3

    m = 6
    within = sum(k(r[i], r[j]) + k(f[i], f[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(r[i], f[j]) for i in range(m) for j in range(m)) * 2 / (m * m)
    assert polynomial_mmd2(r, f) == pytest.approx(within - cross, rel=1e-10)


def test_kid_subset_size_adapts_to_few_images_with_a_warning():
    rng = np.random.default_rng(4)
    with pytest.warns(UserWarning, match="subset size lowered from 1000 to 15"):
        result = kid(draw(rng, 30), draw(rng, 40))
    assert result.subset_size == 15 and result.std > 0


def _features(values, resolution):
    return Features(values, [str(i) for i in range(len(values))], FeatureSettings("x", "tf1-bilinear", resolution), f"set@{resolution}")


def test_features_from_different_settings_or_too_few_images_are_refused():
    rng = np.random.default_rng(5)
    a, b = _features(draw(rng, 10), 512), _features(draw(rng, 10), 256)
    with pytest.raises(EvalError, match="different settings.*short side 512 px.*short side 256 px"):
        fid(a, b)
    with pytest.raises(EvalError, match="different settings"):
        kid(a, b)
    with pytest.raises(EvalError, match="at least 2 fake images, got 1"):
        fid(draw(rng, 5), draw(rng, 1))
    with pytest.raises(EvalError, match="at least 2 images"):
        kid(draw(rng, 1), draw(rng, 5))
