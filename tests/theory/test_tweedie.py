"""Checks of Tweedie's identities and of the linearized reverse dynamics.

Each derived formula is compared with an independent computation: finite
differences, quadrature over a continuous prior, numerical ODE integration, or an
Euler-Maruyama ensemble.
"""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from diffcrit.theory.bridge import to_numeric
from diffcrit.theory.gaussian import gaussian_denoiser
from diffcrit.theory.mixture import mixture_denoiser, mixture_jacobian, mixture_posterior_covariance
from diffcrit.theory.tweedie import (
    discrete_prior_denoiser,
    discrete_prior_posterior_moments,
    discrete_prior_tweedie_residual,
    finite_difference_jacobian,
    gaussian_kernel_moment_derivative,
    ode_perturbation_rate,
    ode_perturbation_solution,
    probability_flow_drift,
    reverse_sde_drift,
    reverse_sde_noise_variance,
    sde_perturbation_mean_rate,
    sde_perturbation_variance_solution,
    stability_threshold,
    tweedie_denoiser_from_moments,
    tweedie_jacobian_from_moments,
)

y, x = sp.Symbol("y", real=True), sp.Symbol("x", real=True)
s, s0 = sp.Symbol("s", positive=True), sp.Symbol("s0", positive=True)
kappa = sp.Symbol("kappa", nonnegative=True)
D = sp.Symbol("D", real=True)


# --- Tweedie -----------------------------------------------------------------


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_kernel_identity_matches_finite_differences(order):
    factor = to_numeric(gaussian_kernel_moment_derivative(order), x, y, s)
    rng = np.random.default_rng(order)
    xv, yv, sv = rng.normal(size=5), rng.normal(size=5), rng.uniform(0.5, 2.0, size=5)

    def kernel(yy):
        return np.exp(-((yy - xv) ** 2) / (2 * sv**2)) / np.sqrt(2 * np.pi * sv**2)

    def integrand(yy):
        return (xv - yy) ** order * kernel(yy)

    h = 1e-5
    numeric = (integrand(yv + h) - integrand(yv - h)) / (2 * h)
    # central difference: truncation O(h^2) ~ 1e-10 relative, round-off ~ 1e-16/h ~ 1e-11
    np.testing.assert_allclose(numeric, factor(xv, yv, sv) * kernel(yv), rtol=1e-8, atol=1e-10)


def test_moment_form_of_tweedie():
    m0, m1, m2 = [sp.Function(f"M{k}")(y) for k in range(3)]
    assert sp.simplify(tweedie_denoiser_from_moments() - (y + m1 / m0)) == 0
    assert sp.simplify(tweedie_jacobian_from_moments() - (m2 / m0 - (m1 / m0) ** 2) / s**2) == 0


def _laplace_prior_moments(yv, sv):
    """Posterior mean and variance of x0 ~ Laplace(0, 1) given y = x0 + s eps (quadrature)."""
    def weight(xx, k):
        return xx**k * 0.5 * np.exp(-abs(xx)) * np.exp(-((yv - xx) ** 2) / (2 * sv**2))

    bounds = (yv - 12 * sv - 40, yv + 12 * sv + 40)
    moments = [
        integrate.quad(weight, *bounds, args=(k,), points=[0.0, yv], epsabs=0, epsrel=1e-13, limit=200)[0]
        for k in range(3)
    ]
    mean = moments[1] / moments[0]
    return mean, moments[2] / moments[0] - mean**2


@pytest.mark.parametrize("yv,sv", [(0.3, 0.7), (-1.5, 1.2), (2.5, 0.4)])
def test_tweedie_second_identity_on_a_continuous_prior(yv, sv):
    # The identity holds for any prior; the Laplace prior is continuous and non-Gaussian.
    h = 1e-4
    mean_plus, _ = _laplace_prior_moments(yv + h, sv)
    mean_minus, _ = _laplace_prior_moments(yv - h, sv)
    _, variance = _laplace_prior_moments(yv, sv)
    # quadrature at rtol 1e-13 over a 2h = 2e-4 difference gives ~1e-9; truncation O(h^2)
    assert (mean_plus - mean_minus) / (2 * h) == pytest.approx(variance / sv**2, rel=1e-6)


def test_discrete_prior_tweedie_is_exact_symbolically():
    assert discrete_prior_tweedie_residual(4) == 0


def test_discrete_prior_denoiser_numeric_and_jacobian():
    n = 3
    atoms = sp.symbols("a1:4", real=True)
    weights = sp.symbols("w1:4", positive=True)
    denoiser = to_numeric(discrete_prior_denoiser(n), y, s, *atoms, *weights)
    a = np.array([-1.3, 0.2, 2.0])
    w = np.array([0.5, 0.2, 0.3])
    for sv in (0.3, 1.0, 3.0):
        for yv in (-2.0, 0.1, 1.7):
            mean, variance = discrete_prior_posterior_moments(yv, sv, a, w)
            assert denoiser(yv, sv, *a, *w) == pytest.approx(float(mean), rel=1e-12, abs=1e-12)
            h = 1e-5 * sv
            slope = (denoiser(yv + h, sv, *a, *w) - denoiser(yv - h, sv, *a, *w)) / (2 * h)
            # central differences: O(h^2) truncation plus ~1e-16/h round-off, relative ~1e-9
            assert slope == pytest.approx(float(variance) / sv**2, rel=1e-6, abs=1e-9)


def test_gaussian_denoiser_jacobian_is_posterior_covariance():
    rng = np.random.default_rng(3)
    d = 6
    a = rng.normal(size=(d, d))
    sigma = a @ a.T + 0.1 * np.eye(d)
    mu = rng.normal(size=d)
    for sv in (0.2, 1.0, 4.0):
        jac = finite_difference_jacobian(lambda z: gaussian_denoiser(z, sv, mu, sigma), rng.normal(size=d))
        # posterior covariance of a Gaussian prior, computed from precisions (independent form)
        posterior = np.linalg.inv(np.linalg.inv(sigma) + np.eye(d) / sv**2)
        # D is linear: central differences are exact up to round-off ~1e-16 * |D| / h
        np.testing.assert_allclose(jac, posterior / sv**2, atol=1e-8)


@pytest.mark.parametrize("sv", [0.3, 1.0, 5.0])
def test_mixture_denoiser_jacobian_is_posterior_covariance(sv):
    rng = np.random.default_rng(4)
    means = rng.normal(size=(3, 4)) * 2
    weights = np.array([0.2, 0.5, 0.3])
    v = 0.4
    point = rng.normal(size=4)
    jac = finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, v, weights), point, step=1e-5)
    covariance = mixture_posterior_covariance(point, sv, means, v, weights)
    # O(h^2) truncation with curvature ~ |m|^3/(v+s^2)^2 and 1e-16/h round-off: ~1e-8 absolute
    np.testing.assert_allclose(jac, covariance / sv**2, atol=1e-7)
    np.testing.assert_allclose(jac, jac.T, atol=1e-7)
    assert np.linalg.eigvalsh(covariance).min() > 0


# --- reverse dynamics ---------------------------------------------------------


def test_reverse_dynamics_coefficients():
    assert sp.simplify(probability_flow_drift() - (y - D) / s) == 0
    assert sp.simplify(reverse_sde_drift() - 2 * (y - D) / s) == 0
    assert sp.simplify(reverse_sde_noise_variance() - 2 * s) == 0


def _euler_maruyama(start, grid, drift, rng):
    """Integrate dy = drift(y, s) ds + sqrt(2 s |ds|) xi down the decreasing grid."""
    state = start.copy()
    for s_now, s_next in zip(grid[:-1], grid[1:]):
        step = s_next - s_now
        noise = rng.standard_normal(state.shape)
        state = state + drift(state, s_now) * step + np.sqrt(2 * s_now * abs(step)) * noise
    return state


@pytest.mark.parametrize("prior_variance", [0.0, 1.5])
def test_reverse_sde_keeps_the_noisy_marginal(prior_variance):
    """With the derived coefficients the SDE maps N(0, lam + s0^2) to N(0, lam + s^2)."""
    rng = np.random.default_rng(5)
    n = 20_000
    drift_expr = reverse_sde_drift()
    drift = to_numeric(drift_expr, y, D, s)
    lam = prior_variance

    def field_drift(state, s_now):
        return drift(state, lam / (lam + s_now**2) * state, s_now)  # Wiener filter D

    s_start, s_end = 3.0, 0.3
    grid = np.geomspace(s_start, s_end, 1000)
    start = rng.normal(scale=np.sqrt(lam + s_start**2), size=n)
    end = _euler_maruyama(start, grid, field_drift, rng)
    expected = lam + s_end**2
    # sample variance: relative std sqrt(2/n) = 1%; 5 sigma = 5%; Euler bias O(d ln s) ~ 0.2%.
    # A factor 1 instead of 2 in the drift would give 2.1x the variance at lam = 0.
    assert end.var() == pytest.approx(expected, rel=0.05)
    assert abs(end.mean()) < 5 * np.sqrt(expected / n)


def test_ode_perturbation_rate_and_solution():
    assert sp.simplify(ode_perturbation_rate() - (1 - kappa)) == 0
    assert sp.simplify(sde_perturbation_mean_rate() - 2 * (1 - kappa)) == 0
    assert stability_threshold() == (1, 1)
    solution = ode_perturbation_solution()
    delta = to_numeric(solution, sp.Symbol("delta0", real=True), kappa, s, s0)
    for k in (0.2, 1.0, 1.7):
        numeric = integrate.solve_ivp(
            lambda sv, d: (1 - k) * d / sv, (2.0, 0.1), [1.0], rtol=1e-11, atol=1e-14
        ).y[0, -1]
        # rtol 1e-11 integration; compare at 1e-8
        assert numeric == pytest.approx(float(delta(1.0, k, 0.1, 2.0)), rel=1e-8)
    # Shrinks for kappa < 1 and grows for kappa > 1 as s decreases.
    assert float(delta(1.0, 0.5, 0.1, 2.0)) < 1 < float(delta(1.0, 1.5, 0.1, 2.0))


def test_linearization_along_a_mixture_trajectory():
    """Two nearby ODE trajectories separate like exp(int (1 - kappa) d ln s) with kappa = J(y_ref)."""
    means = np.array([[-1.5], [0.5], [2.0]])
    weights = np.array([0.3, 0.3, 0.4])
    v = 0.2

    def rhs(log_s, state):
        return state - mixture_denoiser(state.reshape(2, 1), np.exp(log_s), means, v, weights).ravel()

    eps = 1e-6
    s_hi, s_lo = 4.0, 0.3
    sol = integrate.solve_ivp(
        rhs, (np.log(s_hi), np.log(s_lo)), [0.4, 0.4 + eps], rtol=1e-12, atol=1e-15, dense_output=True
    )
    ratio = (sol.y[1, -1] - sol.y[0, -1]) / eps

    def kappa_along(log_s):
        return mixture_jacobian(sol.sol(log_s)[:1], np.exp(log_s), means, v, weights)[0, 0]

    exponent, _ = integrate.quad(lambda u: 1 - kappa_along(u), np.log(s_hi), np.log(s_lo), epsrel=1e-10)
    # linearization error O(eps) ~ 1e-6 relative, integration error ~1e-12/eps ~ 1e-6
    assert ratio == pytest.approx(np.exp(exponent), rel=2e-5)


@pytest.mark.parametrize("k", [0.3, 0.75, 1.4])
def test_sde_linearized_mean_and_variance(k):
    rng = np.random.default_rng(int(10 * k))
    n = 20_000
    s_start, s_end = 2.0, 0.5
    grid = np.geomspace(s_start, s_end, 800)
    start = rng.normal(loc=1.0, scale=0.5, size=n)

    end = _euler_maruyama(start, grid, lambda d, s_now: 2 * (1 - k) * d / s_now, rng)
    mean_expected = (s_end / s_start) ** (2 * (1 - k))
    variance = to_numeric(sde_perturbation_variance_solution(), sp.Symbol("V0", positive=True), kappa, s, s0)
    var_expected = float(variance(0.25, k, s_end, s_start))
    # statistical: mean std sqrt(var/n) <= 0.01 against a mean >= 0.4 (5 sigma: 12% at worst,
    # so compare absolutely at 5 sigma); variance relative std sqrt(2/n) = 1% (5 sigma 5%);
    # Euler bias O(d ln s = 1.7e-3)
    assert abs(end.mean() - mean_expected) < 5 * np.sqrt(var_expected / n) + 2e-3 * mean_expected
    assert end.var() == pytest.approx(var_expected, rel=0.05)
    # and the variance equation integrated numerically agrees with the closed form
    ode = integrate.solve_ivp(
        lambda sv, vv: 4 * (1 - k) * vv / sv - 2 * sv, (s_start, s_end), [0.25], rtol=1e-11, atol=1e-14
    )
    assert ode.y[0, -1] == pytest.approx(var_expected, rel=1e-8)


# --- input validation -----------------------------------------------------------


def test_bad_inputs():
    with pytest.raises(ValueError, match="step"):
        finite_difference_jacobian(lambda z: z, np.zeros(2), step=0.0)
    with pytest.raises(ValueError, match="point"):
        finite_difference_jacobian(lambda z: z, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="s must be positive"):
        discrete_prior_posterior_moments(0.0, -1.0, np.array([1.0]))
    with pytest.raises(TypeError, match="s must be a real number"):
        discrete_prior_posterior_moments(0.0, "a", np.array([1.0]))
    with pytest.raises(ValueError, match="weights"):
        discrete_prior_posterior_moments(0.0, 1.0, np.array([1.0, 2.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="atoms"):
        discrete_prior_posterior_moments(0.0, 1.0, np.array([]))
    with pytest.raises(ValueError, match="n_atoms"):
        discrete_prior_denoiser(0)
    with pytest.raises(ValueError, match="order"):
        gaussian_kernel_moment_derivative(-1)
