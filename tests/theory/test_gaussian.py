"""Checks of the Gaussian-field (null model) results against independent numerics."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from diffcrit.numerics.observables import second_moment_length_from_spectrum
from diffcrit.theory.bridge import to_numeric
from diffcrit.theory.gaussian import (
    gaussian_denoiser,
    gaussian_field_correlation_length,
    gaussian_field_kappa,
    gaussian_field_structure_factor,
    gaussian_mode_crossover_noise_variance,
    gaussian_mode_flow,
    gaussian_mode_kappa,
    gaussian_mode_ode_flow,
    gaussian_mode_sde_mean,
    gaussian_mode_sde_variance,
    gaussian_mode_stiffness,
    stationary_flow_correlation_length,
    stationary_flow_structure_factor,
    stationary_gaussian_denoiser,
    wiener_filter_mode,
)
from diffcrit.theory.tweedie import finite_difference_jacobian

lam, s, s0 = sp.symbols("lambda s s0", positive=True)
y, y0, mu = sp.Symbol("y", real=True), sp.Symbol("y0", real=True), sp.Symbol("mu", real=True)


def _spectrum_1d(side, corr_length=1.5, amplitude=2.0):
    """Power spectrum of a periodic exponential covariance (positive, symmetric)."""
    r = np.minimum(np.arange(side), side - np.arange(side))
    covariance_row = amplitude * np.exp(-r / corr_length)
    return np.fft.fft(covariance_row).real, covariance_row


def _circulant(row):
    side = row.size
    return np.array([np.roll(row, i) for i in range(side)])


def _sample_stationary(spectrum, n, rng):
    """Exact samples of the zero-mean stationary Gaussian field with this spectrum."""
    shape = spectrum.shape
    white = rng.standard_normal((n, *shape))
    axes = tuple(range(1, 1 + len(shape)))
    return np.fft.ifftn(np.fft.fftn(white, axes=axes) * np.sqrt(spectrum), axes=axes).real


def _structure_factor(fields):
    """<|FFT(delta y)|^2>/N_sites with the ensemble mean removed (THEORY.md 4)."""
    axes = tuple(range(1, fields.ndim))
    delta = fields - fields.mean(axis=0)
    return (np.abs(np.fft.fftn(delta, axes=axes)) ** 2).mean(axis=0) / np.prod(fields.shape[1:])


# --- per-mode symbolic results -------------------------------------------------


def test_wiener_filter_and_kappa_formulas():
    assert sp.simplify(wiener_filter_mode() - (lam * y + s**2 * mu) / (lam + s**2)) == 0
    assert sp.simplify(gaussian_mode_kappa() - lam / (lam + s**2)) == 0
    stiffness = gaussian_mode_stiffness()
    # 1 - kappa > 0 for all positive lambda, s: sympy proves it from the assumptions
    assert stiffness.is_positive is True
    assert gaussian_mode_crossover_noise_variance() == lam


def test_dense_wiener_filter_against_conditional_gaussian_and_fft():
    rng = np.random.default_rng(0)
    spectrum, row = _spectrum_1d(8)
    covariance = _circulant(row)
    mean = 0.7
    fields = rng.normal(size=(3, 8))
    for sv in (0.3, 1.0, 3.0):
        # conditional mean of x0 given y from the joint Gaussian (x0, y), by a linear solve
        cross = covariance
        marginal = covariance + sv**2 * np.eye(8)
        direct = mean + np.linalg.solve(marginal, (fields - mean).T).T @ cross.T
        np.testing.assert_allclose(gaussian_denoiser(fields, sv, np.full(8, mean), covariance), direct, atol=1e-12)
        np.testing.assert_allclose(stationary_gaussian_denoiser(fields, sv, mean, spectrum), direct, atol=1e-12)
        # and the symbolic per-mode Wiener filter, mode by mode
        modes = np.fft.fft(fields - mean, axis=-1)
        wiener = to_numeric(wiener_filter_mode(), y, mu, lam, s)
        filtered = np.fft.ifft(wiener(modes.real, 0.0, spectrum, sv) + 1j * wiener(modes.imag, 0.0, spectrum, sv), axis=-1).real
        np.testing.assert_allclose(mean + filtered, direct, atol=1e-12)


@pytest.mark.parametrize("sv", [0.1, 0.8, 2.0, 10.0])
def test_kappa_equals_finite_difference_jacobian_eigenvalues(sv):
    spectrum, _ = _spectrum_1d(10)
    point = np.random.default_rng(1).normal(size=10)
    jac = finite_difference_jacobian(lambda z: stationary_gaussian_denoiser(z, sv, 0.0, spectrum), point)
    # D is linear; central differences are exact up to round-off ~1e-11
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh((jac + jac.T) / 2)), np.sort(gaussian_field_kappa(spectrum, sv)), atol=1e-9
    )
    assert np.all(gaussian_field_kappa(spectrum, sv) < 1)


def test_crossover_at_s_squared_equal_lambda():
    spectrum = np.array([0.01, 0.5, 3.0, 100.0])
    kappas = np.array([gaussian_field_kappa(spectrum, np.sqrt(l))[i] for i, l in enumerate(spectrum)])
    np.testing.assert_allclose(kappas, 0.5, rtol=1e-14)
    grid = gaussian_field_kappa(spectrum, np.geomspace(1e-3, 1e3, 7))
    assert grid.shape == (7, 4)
    assert np.all(grid < 1) and np.all(np.diff(grid, axis=0) < 0)  # softens smoothly as s decreases


# --- exact flows ------------------------------------------------------------------


def test_ode_flow_satisfies_the_ode_symbolically_and_numerically():
    flow = gaussian_mode_ode_flow()
    drift = (flow - wiener_filter_mode().subs(y, flow)) / s
    assert sp.simplify(sp.diff(flow, s) - drift) == 0
    assert sp.simplify(flow.subs(s, s0) - y0) == 0
    numeric_flow = to_numeric(flow, y0, mu, lam, s0, s)
    for lam_v in (0.05, 1.0, 20.0):
        sol = integrate.solve_ivp(
            lambda sv, yv: (yv - (lam_v * yv + sv**2 * 0.3) / (lam_v + sv**2)) / sv,
            (5.0, 0.01), [2.0], rtol=1e-11, atol=1e-13,
        )
        # integration at rtol 1e-11; compare at 1e-8
        assert sol.y[0, -1] == pytest.approx(float(numeric_flow(2.0, 0.3, lam_v, 5.0, 0.01)), rel=1e-8)


def test_sde_mean_solves_its_equation():
    mean = gaussian_mode_sde_mean()
    drift = 2 * (mean - wiener_filter_mode().subs(y, mean)) / s
    assert sp.simplify(sp.diff(mean, s) - drift) == 0


def test_field_flow_against_numerical_integration():
    rng = np.random.default_rng(2)
    spectrum, _ = _spectrum_1d(12)
    mean = -0.4
    s_hi, s_lo = 4.0, 0.05
    start = mean + _sample_stationary(spectrum, 16, rng) + s_hi * rng.standard_normal((16, 12))

    def rhs(log_s, state):
        fields = state.reshape(16, 12)
        return (fields - stationary_gaussian_denoiser(fields, np.exp(log_s), mean, spectrum)).ravel()

    sol = integrate.solve_ivp(rhs, (np.log(s_hi), np.log(s_lo)), start.ravel(), rtol=1e-10, atol=1e-12)
    # integration at rtol 1e-10 on O(1) fields
    np.testing.assert_allclose(
        sol.y[:, -1].reshape(16, 12), gaussian_mode_flow(start, s_hi, s_lo, mean, spectrum), atol=1e-7
    )


def test_structure_factor_formulas():
    ode, sde = stationary_flow_structure_factor()
    assert sp.simplify(ode - (lam + s**2)) == 0
    assert sp.simplify(sde - (lam + s**2)) == 0
    # the SDE variance solves dV/ds = 4 (1 - kappa) V/s - 2 s numerically too
    variance = to_numeric(gaussian_mode_sde_variance(), sp.Symbol("S0", positive=True), lam, s0, s)
    for lam_v, start in ((0.3, 0.1), (2.0, 9.0)):
        sol = integrate.solve_ivp(
            lambda sv, vv: 4 * sv / (lam_v + sv**2) * vv - 2 * sv, (3.0, 0.2), [start], rtol=1e-11, atol=1e-14
        )
        assert sol.y[0, -1] == pytest.approx(float(variance(start, lam_v, 3.0, 0.2)), rel=1e-8)


def test_structure_factor_of_an_integrated_ensemble():
    """Connected S of an ODE ensemble: exact transport of the empirical S, and lambda + s^2 in law."""
    rng = np.random.default_rng(3)
    side, n = 16, 3000
    spectrum, _ = _spectrum_1d(side)
    s_hi, s_lo = 3.0, 0.4
    start = 1.0 + _sample_stationary(spectrum, n, rng) + s_hi * rng.standard_normal((n, side))

    def rhs(log_s, state):
        fields = state.reshape(n, side)
        return (fields - stationary_gaussian_denoiser(fields, np.exp(log_s), 1.0, spectrum)).ravel()

    sol = integrate.solve_ivp(rhs, (np.log(s_hi), np.log(s_lo)), start.ravel(), rtol=1e-9, atol=1e-11)
    end = sol.y[:, -1].reshape(n, side)
    measured_start, measured_end = _structure_factor(start), _structure_factor(end)
    transported = gaussian_field_structure_factor(
        spectrum, s_lo, s0=s_hi, initial_structure_factor=measured_start
    )
    # deterministic: the flow is affine per mode, so the empirical S is transported exactly
    np.testing.assert_allclose(measured_end, transported, rtol=1e-6)
    # statistical: each S(k) averages n (k = 0, pi) or 2n (others) chi^2 terms -> rel std <= sqrt(1/n)
    # = 1.8%; 5 sigma = 9%
    np.testing.assert_allclose(measured_end, gaussian_field_structure_factor(spectrum, s_lo), rtol=0.09)


def test_sde_ensemble_structure_factor():
    """Euler-Maruyama ensemble of the reverse SDE with the Wiener filter, arbitrary initial S0."""
    rng = np.random.default_rng(4)
    side, n = 8, 6000
    spectrum, _ = _spectrum_1d(side)
    s_hi, s_lo = 2.0, 0.3
    start = 0.5 * rng.standard_normal((n, side))  # S0 = 0.25, far from lambda + s0^2
    grid = np.geomspace(s_hi, s_lo, 600)
    state = start.copy()
    for s_now, s_next in zip(grid[:-1], grid[1:]):
        ds = s_next - s_now
        drift = 2 * (state - stationary_gaussian_denoiser(state, s_now, 0.0, spectrum)) / s_now
        state = state + drift * ds + np.sqrt(2 * s_now * abs(ds)) * rng.standard_normal(state.shape)
    predicted = gaussian_field_structure_factor(
        spectrum, s_lo, s0=s_hi, initial_structure_factor=np.full(side, 0.25), dynamics="sde"
    )
    # chi^2 relative std <= sqrt(1/n) = 1.3% per mode; 5 sigma 6.5%; Euler bias O(d ln s = 3e-3)
    np.testing.assert_allclose(_structure_factor(state), predicted, rtol=0.07)


# --- correlation length --------------------------------------------------------------


def test_correlation_length_closed_form_matches_observable_convention():
    p0, p1, k = sp.symbols("P0 P1 k", positive=True)
    expression = stationary_flow_correlation_length()
    closed = to_numeric(expression, p0, p1, s, k)
    spectrum, _ = _spectrum_1d(16)
    grid = np.geomspace(5.0, 0.05, 9)
    lengths = gaussian_field_correlation_length(spectrum, grid)
    # the measured-observable estimator applied to S(k, s) = P + s^2 (independent code)
    reference = [second_moment_length_from_spectrum(spectrum + sv**2)[0] for sv in grid]
    np.testing.assert_allclose(lengths, reference, rtol=1e-12)
    np.testing.assert_allclose(lengths, closed(spectrum[0], spectrum[1], grid, 2 * np.pi / 16), rtol=1e-12)
    assert np.all(np.diff(lengths) > 0)  # grows smoothly as s decreases, no sharp rise


def test_correlation_length_2d_anisotropic_and_unequal_sides():
    rng = np.random.default_rng(5)
    for shape in ((8, 8), (8, 12)):
        kx = 2 * np.pi * np.fft.fftfreq(shape[0])[:, None]
        ky = 2 * np.pi * np.fft.fftfreq(shape[1])[None, :]
        spectrum = 3.0 / (1 + 4 * np.sin(kx / 2) ** 2 * 4.0 + 4 * np.sin(ky / 2) ** 2 * 1.0)
        for sv in (0.1, 1.0):
            reference = second_moment_length_from_spectrum(spectrum + sv**2)[0]
            assert float(gaussian_field_correlation_length(spectrum, sv)) == pytest.approx(reference, rel=1e-12)
        initial = spectrum * rng.uniform(0.5, 1.5, size=shape)
        initial = 0.5 * (initial + np.roll(np.flip(initial), 1, axis=(0, 1)))
        got = gaussian_field_correlation_length(spectrum, 0.5, s0=2.0, initial_structure_factor=initial)
        transported = initial * (spectrum + 0.25) / (spectrum + 4.0)
        assert float(got) == pytest.approx(second_moment_length_from_spectrum(transported)[0], rel=1e-12)


def test_correlation_length_of_a_simulated_ensemble():
    rng = np.random.default_rng(6)
    side, n = 16, 4000
    spectrum, _ = _spectrum_1d(side, corr_length=3.0)
    s_hi, s_lo = 3.0, 0.3
    start = _sample_stationary(spectrum, n, rng) + s_hi * rng.standard_normal((n, side))
    end = gaussian_mode_flow(start, s_hi, s_lo, 0.0, spectrum)
    measured = second_moment_length_from_spectrum(_structure_factor(end))[0]
    predicted = float(gaussian_field_correlation_length(spectrum, s_lo))
    # S(0) and S(k_min) each carry ~sqrt(1/n) = 1.6% relative noise; xi^2 ~ ratio - 1 with
    # ratio ~ 7 amplifies it by ~ratio/(ratio - 1) / 2 in xi: ~1.5% per sigma; 5 sigma 8%
    assert measured == pytest.approx(predicted, rel=0.08)


# --- input validation ------------------------------------------------------------------


def test_bad_inputs():
    spectrum = np.ones(4)
    with pytest.raises(ValueError, match="s must be positive"):
        gaussian_field_kappa(spectrum, 0.0)
    with pytest.raises(ValueError, match="s must be positive"):
        gaussian_field_kappa(spectrum, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="spectrum"):
        gaussian_field_kappa(np.array([1.0, -1.0]), 1.0)
    with pytest.raises(ValueError, match="P\\(k\\) = P\\(-k\\)"):
        stationary_gaussian_denoiser(np.zeros(4), 1.0, 0.0, np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="y must have shape"):
        stationary_gaussian_denoiser(np.zeros(5), 1.0, 0.0, spectrum)
    with pytest.raises(ValueError, match="mean must have shape"):
        gaussian_denoiser(np.zeros(2), 1.0, np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_denoiser(np.zeros(2), 1.0, np.zeros(2), -np.eye(2))
    with pytest.raises(ValueError, match="s0 is required"):
        gaussian_field_structure_factor(spectrum, 1.0, initial_structure_factor=spectrum)
    with pytest.raises(ValueError, match="dynamics"):
        gaussian_field_structure_factor(spectrum, 1.0, dynamics="langevin")
    with pytest.raises(ValueError, match="initial_structure_factor"):
        gaussian_field_structure_factor(spectrum, 1.0, s0=2.0, initial_structure_factor=np.ones(3))
    with pytest.raises(ValueError, match="mean must be a scalar or broadcastable"):
        stationary_gaussian_denoiser(np.zeros(4), 1.0, np.zeros(3), spectrum)
    with pytest.raises(ValueError, match="s0 must be positive"):
        gaussian_mode_flow(np.zeros(4), -1.0, 1.0, 0.0, spectrum)
    with pytest.raises(ValueError, match="lattice side"):
        gaussian_field_correlation_length(np.ones((4, 1)), 1.0)
