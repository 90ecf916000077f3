"""Checks of the Gaussian-mixture (pitchfork) and memorizing-model results."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, optimize

from diffcrit.theory.bridge import to_numeric
from diffcrit.theory.mixture import (
    CriticalNoise,
    between_component_covariance,
    memorizing_critical_noise,
    memorizing_denoiser,
    memorizing_mean_trajectory,
    mixture_critical_noise,
    mixture_critical_noise_variance,
    mixture_denoiser,
    mixture_denoiser_symbolic,
    mixture_jacobian,
    mixture_jacobian_residual,
    mixture_kappa_max,
    mixture_mean_trajectory,
    mixture_responsibilities,
    mixture_tweedie_residual,
    ou_critical_time,
    ou_critical_time_numeric,
    symmetric_point_kappa,
    symmetric_point_stiffness,
    two_component_denoiser,
    two_component_fixed_point_map,
    two_component_normal_form,
    two_component_order_parameter,
    two_component_order_parameter_exponent,
    two_component_order_parameter_leading,
    two_component_susceptibility,
    two_component_susceptibility_leading,
)
from diffcrit.theory.schedules import OUSchedule
from diffcrit.theory.tweedie import finite_difference_jacobian

s, v, m, b = sp.symbols("s v m b", positive=True)
y = sp.Symbol("y", real=True)


# --- exact denoiser and Jacobian --------------------------------------------------


def test_symbolic_identities_hold():
    assert mixture_jacobian_residual(2, 3) == sp.zeros(2, 2)
    assert mixture_tweedie_residual(2, 2) == sp.zeros(2, 2)


def test_symbolic_denoiser_matches_numpy_and_quadrature():
    expr = mixture_denoiser_symbolic(1, 3)[0]
    names = ["y1", "m1_1", "m2_1", "m3_1"]
    args = [sp.Symbol(n, real=True) for n in names] + list(sp.symbols("p1:4", positive=True)) + [s, v]
    symbolic = to_numeric(expr, *args)
    means = np.array([-2.0, 0.5, 3.0])
    weights = np.array([0.5, 0.2, 0.3])
    var = 0.3
    for sv in (0.2, 1.0, 4.0):
        for yv in (-1.0, 0.7, 2.5):
            numpy_value = float(mixture_denoiser(np.array([yv]), sv, means[:, None], var, weights)[0])
            assert float(symbolic(yv, *means, *weights, sv, var)) == pytest.approx(numpy_value, rel=1e-12)

            # independent: posterior mean by quadrature of the prior density times the likelihood
            def prior(x):
                return sum(w * np.exp(-((x - mc) ** 2) / (2 * var)) for w, mc in zip(weights, means))

            def integrand(x, k):
                return x**k * prior(x) * np.exp(-((yv - x) ** 2) / (2 * sv**2))

            num = integrate.quad(integrand, -15, 15, args=(1,), points=list(means), limit=200, epsrel=1e-13)[0]
            den = integrate.quad(integrand, -15, 15, args=(0,), points=list(means), limit=200, epsrel=1e-13)[0]
            # quadrature at rtol 1e-13; tails beyond +-15 are below e^-50
            assert num / den == pytest.approx(numpy_value, rel=1e-9, abs=1e-11)


def test_denoiser_is_stable_over_the_noise_range():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(20, 5))
    points = rng.normal(size=(4, 5))
    for sv in (1e-4, 1e-2, 1.0, 1e2, 1e4):
        for var in (1e-6, 0.5):
            out = mixture_denoiser(points, sv, means, var)
            assert np.all(np.isfinite(out))
    # limits: nearest mean at tiny noise (v -> 0); prior mean at huge noise
    nearest = means[np.argmin(((points[:, None] - means) ** 2).sum(-1), axis=1)]
    np.testing.assert_allclose(memorizing_denoiser(points, 1e-4, means), nearest, atol=1e-12)
    # at s = 1e4 the softmax differs from uniform by O(|m||y|/s^2) ~ 1e-8
    np.testing.assert_allclose(memorizing_denoiser(points, 1e4, means), np.broadcast_to(means.mean(0), (4, 5)), atol=1e-7)


def test_jacobian_in_high_dimension_matches_finite_differences():
    rng = np.random.default_rng(1)
    d = 50
    means = rng.normal(size=(6, d))
    weights = rng.uniform(0.5, 1.5, size=6)
    var = 0.7
    point = 0.5 * rng.normal(size=d)
    for sv in (1.0, 3.0):
        fd = finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, var, weights), point, step=1e-5)
        exact = mixture_jacobian(point, sv, means, var, weights)
        # O(h^2) truncation and 1e-16/h round-off on O(1) entries
        np.testing.assert_allclose(fd, exact, atol=1e-7)
        top, vector = mixture_kappa_max(point, sv, means, var, weights)
        values, vectors = np.linalg.eigh((fd + fd.T) / 2)
        assert top == pytest.approx(values[-1], abs=1e-7)
        assert abs(vector @ vectors[:, -1]) == pytest.approx(1.0, abs=1e-6)


# --- symmetric point and critical noise ------------------------------------------------


def _symmetric_means(d, rng):
    a = rng.normal(size=d)
    b_vec = rng.normal(size=d)
    b_vec *= np.linalg.norm(a) / np.linalg.norm(b_vec)
    return np.array([a, -a, b_vec, -b_vec])


def test_symmetric_point_kappa_and_critical_variance_symbolic():
    assert symmetric_point_kappa() == b * s**2 / (v + s**2) ** 2 + v / (v + s**2)
    assert sp.simplify(mixture_critical_noise_variance() - (b - v)) == 0
    gamma = symmetric_point_stiffness()
    assert sp.simplify(gamma.subs(s, sp.sqrt(b - v))) == 0


def test_symmetric_point_jacobian_in_50_dimensions():
    rng = np.random.default_rng(2)
    d, var = 50, 0.8
    means = _symmetric_means(d, rng)
    between = between_component_covariance(means)
    np.testing.assert_allclose(between, means.T @ means / 4, atol=1e-12)  # 1/N normalization
    kappa = to_numeric(symmetric_point_kappa(), b, s, v)
    eigen_b = np.linalg.eigvalsh(between)
    for sv in (0.7, 2.0, 6.0):
        fd = finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, var), np.zeros(d), step=1e-5)
        formula = var / (var + sv**2) * np.eye(d) + sv**2 / (var + sv**2) ** 2 * between
        # O(h^2) truncation, round-off 1e-16/h
        np.testing.assert_allclose(fd, formula, atol=1e-8)
        np.testing.assert_allclose(np.linalg.eigvalsh((fd + fd.T) / 2), kappa(eigen_b, sv, var), atol=1e-8)
    result = mixture_critical_noise(means, var)
    assert result.kind == "critical" and result.method == "symmetric point (exact)"
    assert result.s_c**2 == pytest.approx(eigen_b[-1] - var, rel=1e-12)
    fd = finite_difference_jacobian(lambda z: mixture_denoiser(z, result.s_c, means, var), np.zeros(d), step=1e-5)
    assert np.linalg.eigvalsh((fd + fd.T) / 2)[-1] == pytest.approx(1.0, abs=1e-8)
    # the closed form agrees with the numerical mean-trajectory search
    numerical = mixture_critical_noise(means, var, method="trajectory", n_grid=60)
    # brentq on the dense ODE solution; the trajectory stays at the symmetric point to ~1e-12
    assert numerical.s_c == pytest.approx(result.s_c, rel=1e-8)


def test_two_component_critical_noise_in_one_dimension():
    for m_value, var in ((2.0, 1.0), (1.0, 0.3)):
        means = np.array([[m_value], [-m_value]])
        result = mixture_critical_noise(means, var)
        assert result.s_c**2 == pytest.approx(m_value**2 - var, rel=1e-12)

        def slope_at_origin(sv):
            return finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, var), np.zeros(1))[0, 0] - 1

        # independent: root of the finite-difference slope of D at y = 0
        root = optimize.brentq(slope_at_origin, 0.2 * result.s_c, 5 * result.s_c, xtol=1e-14)
        # FD slope error ~1e-10 over a slope derivative O(1): s_c to ~1e-9
        assert root == pytest.approx(result.s_c, rel=1e-7)


def test_no_transition_when_between_variance_is_small():
    means = np.array([[0.5, 0.0], [-0.5, 0.0]])
    result = mixture_critical_noise(means, 0.3)
    assert result.kind == "no transition" and result.s_c is None
    assert result.moment_level_s_c is None
    assert np.all(result.kappa_max < 1)
    assert isinstance(result.to_dict()["kappa_max"], list)
    assert "no transition" in repr(result)


def test_symmetric_formula_holds_at_origin_without_invariance():
    """Equal |m_c| but unequal weights: J(0) uses the pi-weighted B, yet y = 0 is not a fixed point."""
    means = np.array([[1.5], [-1.5]])
    weights = np.array([0.7, 0.3])
    var, sv = 0.4, 0.9
    between = between_component_covariance(means, weights)[0, 0]
    fd = finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, var, weights), np.zeros(1))[0, 0]
    assert fd == pytest.approx(sv**2 * between / (var + sv**2) ** 2 + var / (var + sv**2), abs=1e-9)
    assert abs(mixture_denoiser(np.zeros(1), sv, means, var, weights)[0]) > 0.1
    # so the closed form does not apply along the mean trajectory: auto uses numerics
    assert mixture_critical_noise(means, var, weights, n_grid=40).method == "mean trajectory (numerical)"
    with pytest.raises(ValueError, match="symmetric"):
        mixture_critical_noise(means, var, weights, method="symmetric")


# --- pitchfork normal form ---------------------------------------------------------------


def test_two_component_symbolic_forms():
    assert sp.simplify(two_component_denoiser() - (v * y + s**2 * m * sp.tanh(m * y / (v + s**2))) / (v + s**2)) == 0
    assert sp.simplify(two_component_fixed_point_map() - m * sp.tanh(m * y / (v + s**2))) == 0
    gamma, quartic = two_component_normal_form()
    assert sp.simplify(gamma - symmetric_point_stiffness().subs(b, m**2)) == 0
    assert quartic.is_positive
    assert two_component_order_parameter_exponent() == sp.Rational(1, 2)
    leading = two_component_order_parameter_leading()
    # at s^2 = s_c^2 - eps the leading order parameter tends to sqrt(3 eps)
    eps = sp.Symbol("epsilon", positive=True)
    near = leading.subs(s, sp.sqrt(m**2 - v - eps))
    assert sp.limit(near / sp.sqrt(3 * eps), eps, 0) == 1


def _fixed_point_by_denoiser(sv, m_value, var, dim=3, field=0.0, guess=None):
    """Stable positive fixed point of y = D(y e) . e from the d-dimensional mixture (no tanh)."""
    direction = np.ones(dim) / np.sqrt(dim)
    means = np.array([m_value * direction, -m_value * direction])
    weights = np.array([np.exp(field), np.exp(-field)])

    def residual(t):
        return mixture_denoiser(t * direction, sv, means, var, weights) @ direction - t

    lower = 1e-9 if guess is None else guess / 2
    return optimize.brentq(residual, lower, 2 * m_value, xtol=1e-15, rtol=1e-15)


def test_order_parameter_matches_an_independent_fixed_point_search():
    m_value, var = 1.3, 0.5
    s_c = np.sqrt(m_value**2 - var)
    for sv in (0.3 * s_c, 0.8 * s_c, 0.99 * s_c):
        assert float(two_component_order_parameter(sv, m_value, var)) == pytest.approx(
            _fixed_point_by_denoiser(sv, m_value, var), rel=1e-10
        )
    assert np.all(two_component_order_parameter(np.array([s_c * 1.01, 2 * s_c]), m_value, var) == 0)


def test_order_parameter_exponent_and_amplitude_from_log_log_fit():
    m_value, var = 1.3, 0.5
    sc2 = m_value**2 - var
    distance = np.geomspace(1e-7, 1e-4, 8) * sc2
    order = two_component_order_parameter(np.sqrt(sc2 - distance), m_value, var)
    slope = np.polyfit(np.log(distance), np.log(order), 1)[0]
    # corrections are relative O(distance/m^2) <= 1e-4: the fitted slope is 1/2 to ~1e-4
    assert slope == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_allclose(order / np.sqrt(3 * distance), 1.0, rtol=1e-3)
    leading = to_numeric(two_component_order_parameter_leading(), m, s, v)
    np.testing.assert_allclose(order, leading(m_value, np.sqrt(sc2 - distance), var), rtol=1e-3)


def test_susceptibility_exponent_amplitude_ratio_and_finite_field_response():
    m_value, var = 1.3, 0.5
    sc2 = m_value**2 - var
    distance = np.geomspace(1e-6, 1e-3, 6) * sc2
    above = two_component_susceptibility(np.sqrt(sc2 + distance), m_value, var)
    below = two_component_susceptibility(np.sqrt(sc2 - distance), m_value, var)
    slope_above = np.polyfit(np.log(distance), np.log(above), 1)[0]
    slope_below = np.polyfit(np.log(distance), np.log(below), 1)[0]
    # relative corrections O(distance) <= 1e-3
    assert slope_above == pytest.approx(-1.0, abs=2e-3)
    assert slope_below == pytest.approx(-1.0, abs=2e-3)
    np.testing.assert_allclose(above / below, 2.0, rtol=3e-3)
    chi_above, chi_below = two_component_susceptibility_leading()
    exact_above = to_numeric(chi_above, m, s, v)
    # 1 - m^2/(v + s^2) cancels: relative round-off ~ eps (v + s^2)/distance <= 3e-10
    np.testing.assert_allclose(above, exact_above(m_value, np.sqrt(sc2 + distance), var), rtol=1e-9)
    # independent: finite-field response of fixed points of the d-dimensional denoiser
    for sv in (0.6 * np.sqrt(sc2), 1.5 * np.sqrt(sc2)):
        h = 1e-6
        if sv**2 > sc2:
            # above s_c: the unique fixed point moves off 0 linearly in h
            plus = _fixed_point_by_denoiser(sv, m_value, var, field=h)
            minus = -_fixed_point_by_denoiser(sv, m_value, var, field=h)  # symmetry y(-h) = -y(h)
        else:
            start = float(two_component_order_parameter(sv, m_value, var))
            plus = _fixed_point_by_denoiser(sv, m_value, var, field=h, guess=start)
            minus = _fixed_point_by_denoiser(sv, m_value, var, field=-h, guess=start)
        # central difference in h: O(h^2) truncation, root tolerance 1e-15 / h = 1e-9
        assert (plus - minus) / (2 * h) == pytest.approx(float(two_component_susceptibility(sv, m_value, var)), rel=1e-6)


def test_stiffness_inverse_diverges_linearly():
    m_value, var = 1.0, 0.2
    sc2 = m_value**2 - var
    means = np.array([[m_value], [-m_value]])
    distance = np.geomspace(1e-4, 1e-2, 5) * sc2
    gammas = []
    for dist in distance:
        sv = np.sqrt(sc2 + dist)
        gammas.append(1 - finite_difference_jacobian(lambda z: mixture_denoiser(z, sv, means, var), np.zeros(1))[0, 0])
    slope = np.polyfit(np.log(distance), np.log(1 / np.array(gammas)), 1)[0]
    # gamma = s^2 (s^2 - s_c^2)/(v + s^2)^2: relative corrections O(distance) <= 1e-2, FD error 1e-10/1e-4
    assert slope == pytest.approx(-1.0, abs=1e-2)


# --- memorizing limit and the mean trajectory ----------------------------------------------


def test_memorizing_uniform_weight_level_is_the_1_over_n_covariance():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(9, 2, 2))
    result = memorizing_critical_noise(data, n_grid=60)
    flat = data.reshape(9, -1)
    top = np.linalg.eigvalsh(np.cov(flat, rowvar=False, bias=True))[-1]
    assert result.moment_level_s_c**2 == pytest.approx(top, rel=1e-12)
    assert result.mode.shape == (2, 2) and result.trajectory.shape == (60, 2, 2)


def test_memorizing_symmetric_data_exact_equals_uniform():
    rng = np.random.default_rng(4)
    means = _symmetric_means(6, rng)
    result = memorizing_critical_noise(means, n_grid=80)
    # the trajectory sits at the centre (uniform weights), so the exact s_c is lambda_max(C)
    assert result.kind == "critical"
    assert result.s_c == pytest.approx(result.moment_level_s_c, rel=1e-8)


def _rk4_mean_trajectory(data, log_grid):
    """Independent fixed-step RK4 in ln s for dy/d ln s = y - D(y)."""
    state = data.mean(axis=0)
    path = [state]
    for u0, u1 in zip(log_grid[:-1], log_grid[1:]):
        h = u1 - u0

        def f(u, z):
            return z - memorizing_denoiser(z, np.exp(u), data)

        k1 = f(u0, state)
        k2 = f(u0 + h / 2, state + h / 2 * k1)
        k3 = f(u0 + h / 2, state + h / 2 * k2)
        k4 = f(u1, state + h * k3)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        path.append(state)
    return np.array(path)


def test_memorizing_exact_critical_noise_against_brute_force():
    data = np.random.default_rng(0).normal(size=(7, 3))
    result = memorizing_critical_noise(data)
    assert result.kind == "critical"
    scale = np.sqrt(np.trace(np.cov(data, rowvar=False, bias=True)))
    log_grid = np.linspace(np.log(100 * scale), np.log(0.7 * result.s_c), 1500)
    path = _rk4_mean_trajectory(data, log_grid)
    # brute force: eigenvalues of finite-difference Jacobians along the RK4 trajectory
    kappas = np.array([
        np.linalg.eigvalsh(finite_difference_jacobian(lambda z: memorizing_denoiser(z, np.exp(u), data), p))[-1]
        for u, p in zip(log_grid[-400:], path[-400:])
    ])
    crossing = np.nonzero(kappas >= 1)[0][0]
    u0, u1 = log_grid[-400:][crossing - 1], log_grid[-400:][crossing]
    k0, k1 = kappas[crossing - 1], kappas[crossing]
    brute = np.exp(u0 + (1 - k0) * (u1 - u0) / (k1 - k0))
    # linear interpolation over d ln s = 4e-3: error O(d ln s^2 * kappa'') ~ 1e-5; RK4 error ~1e-9
    assert result.s_c == pytest.approx(brute, rel=1e-4)
    # the weights along the trajectory are not uniform: the exact s_c differs from the moment level
    assert abs(result.s_c - result.moment_level_s_c) > 1e-3 * result.s_c
    # and the trajectory itself agrees with the RK4 integration
    solved = memorizing_mean_trajectory(np.exp(log_grid[::100]), data)
    np.testing.assert_allclose(solved, path[::100], atol=1e-7)


def test_memorizing_pseudo_critical_when_trajectory_drifts_to_the_majority():
    # two points at 0, one at 1: the mean trajectory drifts into the majority (a field)
    result = memorizing_critical_noise(np.array([[0.0], [0.0], [1.0]]))
    assert result.kind == "none in range" and result.s_c is None
    assert 0 < result.kappa_peak < 1
    assert result.s_grid[-1] < result.s_peak < result.s_grid[0]


def test_memorizing_degenerate_and_bad_inputs():
    result = memorizing_critical_noise(np.ones((3, 4)))
    assert result.kind == "no transition"
    with pytest.raises(ValueError, match="data must be a non-empty"):
        memorizing_critical_noise(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="y must have shape"):
        memorizing_denoiser(np.zeros(2), 1.0, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="s must be positive"):
        memorizing_denoiser(np.zeros(4), 0.0, np.zeros((3, 4)))


# --- OU clock ----------------------------------------------------------------------------


def test_ou_speciation_time():
    critical = sp.Symbol("Lambda", positive=True)
    assert sp.simplify(ou_critical_time() - sp.log(1 + critical) / 2) == 0
    values = np.array([0.01, 1.0, 4.3, 250.0])
    times = ou_critical_time_numeric(values)
    alpha, sigma_sq = np.exp(-times), 1 - np.exp(-2 * times)
    np.testing.assert_allclose(sigma_sq / alpha**2, values, rtol=1e-12)
    # and through the package's OU schedule (independent derivation of s(t))
    np.testing.assert_allclose(OUSchedule(t_max=10.0).s(times) ** 2, values, rtol=1e-10)


# --- input validation ----------------------------------------------------------------------


def test_bad_inputs():
    means = np.array([[1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="v must be positive"):
        mixture_denoiser(np.zeros(2), 1.0, means, 0.0)
    with pytest.raises(ValueError, match="s must be positive"):
        mixture_denoiser(np.zeros(2), -1.0, means, 1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        mixture_denoiser(np.zeros(3), 1.0, means, 1.0)
    with pytest.raises(ValueError, match="means must be"):
        mixture_denoiser(np.zeros(2), 1.0, np.array([1.0, -1.0]), 1.0)
    with pytest.raises(ValueError, match="weights must have shape"):
        mixture_responsibilities(np.zeros(2), 1.0, means, 1.0, np.ones(3))
    with pytest.raises(ValueError, match="weights must be positive"):
        mixture_responsibilities(np.zeros(2), 1.0, means, 1.0, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="no transition"):
        two_component_order_parameter(1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="diverges"):
        two_component_susceptibility(2.0, 2.5, 2.25)  # s^2 = m^2 - v = 4 exactly
    with pytest.raises(ValueError, match="s_min must be < s_max"):
        mixture_critical_noise(means, 0.1, s_min=2.0, s_max=1.0)
    with pytest.raises(ValueError, match="method"):
        mixture_critical_noise(means, 0.1, method="magic")
    with pytest.raises(ValueError, match="strictly decreasing"):
        mixture_mean_trajectory(np.array([1.0, 2.0]), means, 0.1)
    with pytest.raises(ValueError, match="kind"):
        CriticalNoise("bogus", None, np.zeros(1), np.ones(3), np.zeros(3), 1.0, 0.0, None, "x", np.zeros((3, 1)))
    with pytest.raises(ValueError, match="critical_noise_variance"):
        ou_critical_time_numeric(-1.0)
