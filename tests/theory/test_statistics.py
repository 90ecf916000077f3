import numpy as np
import pytest

from diffcrit.theory.statistics import (
    lattice_wavevectors,
    pooled_covariance,
    pooled_power_spectrum,
)


def brute_force_covariance(images):
    """Direct double sum over images, sites and periodic offsets."""
    m = images.mean()
    n, h, w = images.shape
    out = np.zeros((h, w))
    for dy in range(h):
        for dx in range(w):
            shifted = np.roll(images, (-dy, -dx), axis=(1, 2))
            out[dy, dx] = np.mean((images - m) * (shifted - m))
    return out


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 6, 6)])
def test_covariance_matches_brute_force(shape):
    rng = np.random.default_rng(1)
    images = rng.normal(size=shape) + 0.3
    # Both are exact sums of the same products; only rounding differs.
    np.testing.assert_allclose(pooled_covariance(images), brute_force_covariance(images), atol=1e-12)


def test_spectrum_is_fourier_transform_of_covariance_and_real_nonnegative():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(4, 8, 8))
    spectrum = pooled_power_spectrum(images)
    assert np.all(spectrum >= 0)
    direct = np.fft.fftn(brute_force_covariance(images)).real
    np.testing.assert_allclose(spectrum, direct, atol=1e-12)
    # Parseval: C(0) is the pooled variance.
    assert pooled_covariance(images)[0, 0] == pytest.approx(images.var(), rel=1e-12)


def test_wavevectors():
    k = lattice_wavevectors((4, 4))
    assert k.shape == (4, 4, 2)
    assert k[0, 1].tolist() == [0.0, np.pi / 2]
    assert k[2, 0].tolist() == [-np.pi, 0.0]  # components in [-pi, pi)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        pooled_power_spectrum(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        pooled_covariance(np.array([1.0, 2.0]))
