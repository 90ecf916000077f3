"""Synthetic fields: exact laws checked against independent formulas and simulation.

Statistical assertions use a fixed seed and a 5-sigma band per compared number;
with at most a few hundred compared numbers per test the chance that a correct
implementation fails is below 1e-3 (Bonferroni), so a failure means a wrong law.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffcrit.data import (
    BinaryFieldLaw,
    GaussianFieldLaw,
    GaussianKernelSpectrum,
    PowerLawSpectrum,
    RingSpectrum,
    arcsine_law,
    binary_texture,
    exact_covariance,
    exact_mean,
    exact_power_spectrum,
    field_law,
    gaussian_random_field,
    lattice_wavevectors,
    law_from_dict,
    stripe_texture,
    thresholded_covariance,
)

EPS = np.finfo(np.float64).eps
Z_MAX = 5.0  # per-number band; see the module docstring


# ---------------------------------------------------------------------- helpers
def _lattice_axes(fields: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, fields.ndim))


def _structure_factor(fields: np.ndarray) -> np.ndarray:
    """Unbiased connected S(k): ensemble-mean field removed, divided by n - 1."""
    axes = _lattice_axes(fields)
    transform = np.fft.fftn(fields - fields.mean(axis=0), axes=axes)
    sites = int(np.prod(fields.shape[1:]))
    return np.sum(np.abs(transform) ** 2, axis=0) / ((fields.shape[0] - 1) * sites)


def _self_conjugate(shape: tuple[int, ...]) -> np.ndarray:
    """Wavevectors with k = -k (mod 2 pi): FFT(y)(k) is real there."""
    grids = np.meshgrid(*[(2 * np.arange(side)) % side == 0 for side in shape], indexing="ij")
    return np.logical_and.reduce(grids)


def _gaussian_spectrum_z(fields: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """z-scores of the empirical S(k) of a Gaussian ensemble against the exact S(k).

    (n - 1) S_hat / S is Gamma(n - 1, 1) (relative variance 1/(n-1)) where FFT(y)(k)
    is complex, and chi^2_{n-1} (relative variance 2/(n-1)) where it is real.
    """
    n = fields.shape[0]
    variance = np.where(_self_conjugate(exact.shape), 2.0, 1.0) / (n - 1)
    return (_structure_factor(fields) / exact - 1.0) / np.sqrt(variance)


def _covariance_z(fields: np.ndarray, exact_cov: np.ndarray, mean: float) -> np.ndarray:
    """z-scores of the sample-averaged covariance, standard errors from the sample scatter.

    Each field gives an unbiased c_a(r) = mean_x (y(x) - mu)(y(x + r) - mu) with the
    exact mean mu; the fields are independent, so the standard error of the mean
    over fields is std_a(c_a)/sqrt(n). This needs no Gaussianity.
    """
    axes = _lattice_axes(fields)
    sites = int(np.prod(fields.shape[1:]))
    per_field = np.real(np.fft.ifftn(np.abs(np.fft.fftn(fields - mean, axes=axes)) ** 2, axes=axes)) / sites
    se = per_field.std(axis=0, ddof=1) / math.sqrt(fields.shape[0])
    diff = per_field.mean(axis=0) - exact_cov
    # Where every field gives the same number (C(0) of +-1 textures) the match must be exact.
    fixed = se == 0
    assert np.all(np.abs(diff[fixed]) < 1e-12)
    return np.where(fixed, 0.0, diff / np.where(fixed, 1.0, se))


def _periodized_gaussian(size: int, corr: float) -> np.ndarray:
    """g(r) = sum_n exp(-(r + n L)^2 / (2 corr^2)) by direct summation in real space."""
    r = np.arange(size)[:, None]
    n = np.arange(-60, 61)[None, :]
    return np.exp(-((r + n * size) ** 2) / (2.0 * corr**2)).sum(axis=1)


# ---------------------------------------------------------------------- exact spectra
@pytest.mark.parametrize("corr", [0.4, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("dim", [1, 2])
def test_gaussian_kernel_covariance_is_the_periodized_gaussian(corr, dim):
    size = 12
    law = GaussianFieldLaw(GaussianKernelSpectrum(corr), size, dim, variance=2.5)
    g = _periodized_gaussian(size, corr)
    expected = 2.5 * (g / g[0] if dim == 1 else np.outer(g, g) / g[0] ** 2)
    # Spectrum from the Poisson-dual sum, covariance by FFT: rounding of an N-point
    # FFT of O(1) numbers, far below 1e-12.
    np.testing.assert_allclose(law.covariance(), expected, rtol=0, atol=1e-12)


def test_gaussian_kernel_matches_exp_on_large_lattice():
    law = GaussianFieldLaw(GaussianKernelSpectrum(2.0), 64, 1)
    r = np.arange(10)
    # Images at distance >= 54 contribute exp(-54^2/8) ~ 1e-158: the infinite-lattice
    # form exp(-r^2/(2 corr^2)) holds to rounding.
    np.testing.assert_allclose(law.covariance()[:10], np.exp(-(r**2) / 8.0), rtol=0, atol=1e-13)


@pytest.mark.parametrize("size", [16, 17])
def test_power_law_exponent_two_in_1d_is_cosh(size):
    corr = 2.0
    law = GaussianFieldLaw(PowerLawSpectrum(corr, 2.0), size, 1, variance=1.0)
    mu = math.acosh(1.0 + 1.0 / (2.0 * corr**2))
    r = np.arange(size)
    expected = np.cosh(mu * (r - size / 2)) / math.cosh(mu * size / 2)
    # Periodic Green function of (-lap + m^2) on a ring; FFT rounding only.
    np.testing.assert_allclose(law.covariance(), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("corr", [1.5, 4.0])
def test_power_law_exponent_two_second_moment_length_is_corr(corr):
    size = 16
    spectrum = GaussianFieldLaw(PowerLawSpectrum(corr, 2.0), size, 2).power_spectrum()
    k_min = 2 * math.pi / size
    xi_x = math.sqrt(spectrum[0, 0] / spectrum[1, 0] - 1.0) / (2 * math.sin(k_min / 2))
    xi_y = math.sqrt(spectrum[0, 0] / spectrum[0, 1] - 1.0) / (2 * math.sin(k_min / 2))
    # Exact identity; a ratio of two computed spectra loses a few ulps.
    assert xi_x == pytest.approx(corr, rel=1e-12)
    assert xi_y == pytest.approx(corr, rel=1e-12)


@pytest.mark.parametrize("law", [
    GaussianFieldLaw(GaussianKernelSpectrum(3.0), 10, 2, variance=0.7),
    GaussianFieldLaw(PowerLawSpectrum(2.0, 3.0), 9, 2, variance=4.0),
    GaussianFieldLaw(RingSpectrum(4.0), 16, 2, variance=1.0),
    GaussianFieldLaw(RingSpectrum(5.0, 0.3), 33, 1, variance=2.0),
])
def test_gaussian_law_variance_symmetry_and_positivity(law):
    spectrum = law.power_spectrum()
    covariance = law.covariance()
    # C(0) = mean_k S(k) = variance by construction: rounding of a mean of N terms.
    assert covariance.flat[0] == pytest.approx(law.variance, rel=1e-13)
    assert np.all(spectrum >= 0)
    flipped = spectrum[np.ix_(*[(-np.arange(s)) % s for s in spectrum.shape])]
    # S(k) = S(-k) (a real field); sums over image terms may run in another order.
    np.testing.assert_allclose(spectrum, flipped, rtol=1e-14, atol=0)
    assert np.max(np.abs(np.fft.ifftn(spectrum).imag)) < 1e-14


def test_lattice_wavevectors_follow_fft_order():
    k = lattice_wavevectors(6, 2)
    assert k.shape == (6, 6, 2)
    np.testing.assert_array_equal(k[:, 0, 0], 2 * np.pi * np.fft.fftfreq(6))
    np.testing.assert_array_equal(k[0, :, 1], 2 * np.pi * np.fft.fftfreq(6))
    assert k.min() >= -np.pi and k.max() < np.pi


# ---------------------------------------------------------------------- threshold law
def test_thresholded_covariance_special_cases():
    for t in [0.0, 0.3, -0.8, 1.7, 3.0]:
        e = math.erf(abs(t) / math.sqrt(2))
        # rho = 1: Var(b) = 1 - (E b)^2; rho = -1: -(1 - erf(|t|/sqrt 2))^2 (derived by
        # counting the events). Quadrature of a smooth integrand with 96 nodes.
        assert float(thresholded_covariance(1.0, t)) == pytest.approx(1 - e**2, abs=1e-12)
        assert float(thresholded_covariance(-1.0, t)) == pytest.approx(-((1 - e) ** 2), abs=1e-12)
        assert float(thresholded_covariance(0.0, t)) == 0.0


def test_quadrature_path_reproduces_the_arcsine_law():
    rho = np.linspace(-0.999, 0.999, 41)
    # t = 1e-9 takes the quadrature branch; the t^2 correction is 1e-18.
    np.testing.assert_allclose(thresholded_covariance(rho, 1e-9), (2 / np.pi) * np.arcsin(rho),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(arcsine_law(rho), (2 / np.pi) * np.arcsin(rho), rtol=0, atol=0)


@pytest.mark.parametrize("t", [0.5, -1.2])
def test_thresholded_covariance_derivative_is_the_bivariate_density(t):
    rho = np.array([-0.9, -0.4, 0.0, 0.35, 0.8, 0.95])
    h = 1e-5
    numeric = (thresholded_covariance(rho + h, t) - thresholded_covariance(rho - h, t)) / (2 * h)
    # d/d rho of 4 P(y1 > t, y2 > t) = 4 phi_2(t, t; rho).
    density = (2 / np.pi) * np.exp(-t * t / (1 + rho)) / np.sqrt(1 - rho**2)
    # Central difference: relative truncation ~ h^2 f'''/f ~ 1e-9 here; absolute
    # rounding ~ eps |C| / h ~ 2e-11 (dominant where the density is ~1e-6).
    np.testing.assert_allclose(numeric, density, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("t", [0.0, 0.8, -1.3])
def test_threshold_law_by_pair_simulation(t):
    rng = np.random.default_rng(11)
    m = 200_000
    mean = -math.erf(t / math.sqrt(2))
    for rho in [-0.9, -0.5, 0.0, 0.3, 0.7, 0.95]:
        z1, z2 = rng.standard_normal((2, m))
        y2 = rho * z1 + math.sqrt(1 - rho**2) * z2
        b1, b2 = np.where(z1 > t, 1.0, -1.0), np.where(y2 > t, 1.0, -1.0)
        products = (b1 - mean) * (b2 - mean)
        z = (products.mean() - float(thresholded_covariance(rho, t))) / (products.std() / math.sqrt(m))
        assert abs(z) < Z_MAX, (rho, t, z)
        z_mean = (b1.mean() - mean) / (b1.std() / math.sqrt(m))
        assert abs(z_mean) < Z_MAX


def test_thresholded_covariance_rejects_bad_rho():
    with pytest.raises(ValueError, match="rho"):
        thresholded_covariance([0.2, 1.5])
    with pytest.raises(ValueError, match="rho"):
        thresholded_covariance([np.nan])
    with pytest.raises(ValueError, match="threshold"):
        thresholded_covariance(0.5, np.inf)


# ---------------------------------------------------------------------- ensembles vs exact laws
N_ENSEMBLE = 2000


@pytest.mark.parametrize("make", [
    lambda: gaussian_random_field(N_ENSEMBLE, 16, dim=2, corr=1.5, variance=2.0, rng=1),
    lambda: gaussian_random_field(N_ENSEMBLE, 64, dim=1, spectrum="power", corr=4.0, rng=2),
    lambda: gaussian_random_field(N_ENSEMBLE, 12, dim=2, spectrum="power", corr=2.0, exponent=3.0, rng=3),
    lambda: stripe_texture(N_ENSEMBLE, 16, dim=2, wavelength=4.0, rng=4),
], ids=["gaussian-2d", "power-1d", "power-2d", "stripes-2d"])
def test_gaussian_ensembles_match_exact_spectrum_and_covariance(make):
    dataset = make()
    fields = dataset.images
    exact_s = exact_power_spectrum(dataset)
    # Modes with S below 1e-10 of the peak are at the level of FFT rounding of the
    # other modes (relative 1e-16 in amplitude); they carry no statistical signal.
    usable = exact_s > 1e-10 * exact_s.max()
    z = _gaussian_spectrum_z(fields, exact_s)[usable]
    assert np.max(np.abs(z)) < Z_MAX
    # Covariance: C_hat = IFFT(S_hat); Var C_hat(r) = 2/(N^2 (n-1)) sum_k S(k)^2 cos^2(k.r)
    # (S_hat(k) = S_hat(-k), pairs independent).
    n, sites = fields.shape[0], exact_s.size
    k = lattice_wavevectors(dataset.shape[0], dataset.dim)
    r = np.stack(np.meshgrid(*[np.arange(s) for s in dataset.shape], indexing="ij"), axis=-1)
    phase = np.tensordot(r.reshape(-1, dataset.dim), k.reshape(-1, dataset.dim), axes=(1, 1))
    sigma = np.sqrt(2.0 / (sites**2 * (n - 1)) * (np.cos(phase) ** 2 @ exact_s.ravel() ** 2))
    covariance_hat = np.real(np.fft.ifftn(_structure_factor(fields)))
    z_cov = (covariance_hat.ravel() - exact_covariance(dataset).ravel()) / sigma
    assert np.max(np.abs(z_cov)) < Z_MAX
    # Pixel variance: the law's, in expectation.
    assert exact_covariance(dataset).flat[0] == pytest.approx(field_law(dataset).variance, rel=1e-13)


@pytest.mark.parametrize("make", [
    lambda: binary_texture(N_ENSEMBLE, 16, dim=2, corr=2.0, rng=5),
    lambda: binary_texture(N_ENSEMBLE, 16, dim=2, corr=2.0, threshold=0.8, rng=6),
    lambda: binary_texture(N_ENSEMBLE, 48, dim=1, corr=3.0, threshold=-0.5, spectrum="power",
                           exponent=2.0, rng=7),
    lambda: stripe_texture(N_ENSEMBLE, 16, dim=2, wavelength=5.0, binary=True, rng=8),
], ids=["binary-t0", "binary-t0.8", "binary-power-1d", "binary-stripes"])
def test_binary_ensembles_match_exact_covariance(make):
    dataset = make()
    fields = dataset.images
    assert set(np.unique(fields)) <= {-1.0, 1.0}
    mean = exact_mean(dataset)
    z = _covariance_z(fields, exact_covariance(dataset), mean)
    assert np.max(np.abs(z)) < Z_MAX
    pixel_means = fields.mean(axis=tuple(range(1, fields.ndim)))
    z_mean = (pixel_means.mean() - mean) / (pixel_means.std(ddof=1) / math.sqrt(len(pixel_means)))
    assert abs(z_mean) < Z_MAX


def test_binary_law_is_arcsine_of_the_latent_correlation():
    dataset = binary_texture(4, 12, corr=2.5, rng=0)
    law = field_law(dataset)
    assert isinstance(law, BinaryFieldLaw)
    np.testing.assert_allclose(exact_covariance(dataset),
                               (2 / np.pi) * np.arcsin(np.clip(law.latent.correlation(), -1, 1)),
                               rtol=0, atol=1e-15)
    assert exact_mean(dataset) == 0.0
    # Connected spectrum of the binary law = FFT of its covariance, and C(0) = 1.
    assert exact_covariance(dataset).flat[0] == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(np.real(np.fft.ifftn(exact_power_spectrum(dataset))),
                               exact_covariance(dataset), atol=1e-14)


def test_stripes_oscillate_and_windowed_spectrum_peaks_at_finite_k():
    law = field_law(stripe_texture(1, 32, wavelength=4.0, rng=0))
    covariance = law.covariance()
    k = lattice_wavevectors(32, 2)
    spectrum = law.power_spectrum()
    radius = np.linalg.norm(k, axis=-1)
    assert radius.flat[np.argmax(spectrum)] == pytest.approx(2 * np.pi / 4.0)
    assert covariance[2, 0] < 0 and covariance[0, 2] < 0  # half a wavelength: anti-correlated
    offsets = [(a, b) for a in range(-2, 3) for b in range(-2, 3)]  # 5x5 window
    windowed = sum(covariance[a % 32, b % 32] * np.cos(k[..., 0] * a + k[..., 1] * b) for a, b in offsets)
    peak = radius.flat[np.argmax(windowed)]
    assert peak == pytest.approx(2 * np.pi / 4.0)
    assert windowed.max() > windowed[0, 0]


# ---------------------------------------------------------------------- reproducibility and records
def test_reproducible_by_seed_and_generator():
    a = gaussian_random_field(5, 8, rng=42).images
    b = gaussian_random_field(5, 8, rng=42).images
    c = gaussian_random_field(5, 8, rng=43).images
    d = gaussian_random_field(5, 8, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d.images)
    assert not np.array_equal(a, c)
    assert d.provenance["seed"] is None and "rng" in d.provenance
    np.testing.assert_array_equal(binary_texture(3, 8, rng=1).images, binary_texture(3, 8, rng=1).images)
    np.testing.assert_array_equal(stripe_texture(3, 8, rng=1).images, stripe_texture(3, 8, rng=1).images)


def test_provenance_records_generator_params_seed_and_law():
    ds = gaussian_random_field(3, 8, dim=1, spectrum="power", corr=2.0, exponent=1.5, rng=9)
    prov = ds.provenance
    assert prov["generator"] == "gaussian_random_field" and prov["seed"] == 9
    assert prov["params"] == {"n": 3, "size": 8, "dim": 1, "spectrum": "power", "corr": 2.0,
                              "variance": 1.0, "exponent": 1.5}
    assert ds.images.shape == (3, 8) and ds.dim == 1 and ds.labels is None
    assert law_from_dict(prov["law"]) == field_law(ds)
    stripes = stripe_texture(2, 8, binary=True, rng=0)
    assert law_from_dict(stripes.provenance["law"]) == field_law(stripes)


def test_exact_statistics_follow_global_standardization():
    raw = gaussian_random_field(50, 8, corr=1.0, variance=3.0, rng=0)
    z = raw.standardize("global")
    rec = z.standardization
    np.testing.assert_allclose(exact_covariance(z), exact_covariance(raw) / rec.std**2, rtol=1e-15)
    np.testing.assert_allclose(exact_power_spectrum(z), exact_power_spectrum(raw) / rec.std**2, rtol=1e-15)
    assert exact_mean(z) == pytest.approx(-rec.mean / rec.std)
    with pytest.raises(ValueError, match="per pixel"):
        exact_covariance(raw.standardize("per-pixel"))


def test_field_law_refuses_non_synthetic_data():
    from diffcrit.data import Dataset

    with pytest.raises(ValueError, match="no exact law"):
        field_law(Dataset(np.ones((2, 3, 3)), name="plain"))
    with pytest.raises(TypeError):
        field_law(3.0)


@pytest.mark.parametrize("call, error, words", [
    (lambda: gaussian_random_field(2, 1), ValueError, "size"),
    (lambda: gaussian_random_field(2, 8, dim=3), ValueError, "dim"),
    (lambda: gaussian_random_field(2, 8.0), TypeError, "size"),
    (lambda: gaussian_random_field(0, 8), ValueError, "n must"),
    (lambda: gaussian_random_field(2, 8, corr=0.0), ValueError, "corr"),
    (lambda: gaussian_random_field(2, 8, corr=float("nan")), ValueError, "corr"),
    (lambda: gaussian_random_field(2, 8, spectrum="lorentz"), ValueError, "spectrum"),
    (lambda: gaussian_random_field(2, 8, spectrum="power", exponent=-1.0), ValueError, "exponent"),
    (lambda: gaussian_random_field(2, 8, variance=0.0), ValueError, "variance"),
    (lambda: gaussian_random_field(2, 8, rng="seed"), TypeError, "rng"),
    (lambda: gaussian_random_field(2, 8, rng=-1), ValueError, "rng"),
    (lambda: binary_texture(2, 8, threshold=float("inf")), ValueError, "threshold"),
    (lambda: stripe_texture(2, 8, wavelength=1.5), ValueError, "wavelength"),
    (lambda: stripe_texture(2, 8, width=-0.1), ValueError, "width"),
    (lambda: stripe_texture(2, 8, binary=True, variance=2.0), ValueError, "variance"),
    (lambda: stripe_texture(2, 8, binary="yes"), TypeError, "binary"),
    (lambda: BinaryFieldLaw(GaussianFieldLaw(GaussianKernelSpectrum(), 8, 2, 2.0)), ValueError, "variance"),
])
def test_generators_reject_bad_input(call, error, words):
    with pytest.raises(error, match=words):
        call()
