"""Checks of the Ginzburg–Landau theory against independent numerical computations."""

import itertools
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from diffcrit.theory import ginzburg_landau as glt
from diffcrit.theory.windows import square_window

mpmath.mp.dps = 40


# ---------------------------------------------------------------------------
# independent references (mpmath, high precision)
# ---------------------------------------------------------------------------


def posterior_mean_mp(atoms, prior, y, s_value, component=0):
    """E[x_component | y] for a discrete prior, Gaussian noise, in mpmath."""
    atoms = [[mpmath.mpf(v) for v in np.atleast_1d(a)] for a in atoms]
    y = [mpmath.mpf(v) for v in np.atleast_1d(y)]
    logw = [mpmath.log(p) - sum((yi - ai) ** 2 for yi, ai in zip(y, a)) / (2 * s_value**2)
            for p, a in zip(prior, atoms)]
    top = max(logw)
    w = [mpmath.e ** (lw - top) for lw in logw]
    return sum(wi * a[component] for wi, a in zip(w, atoms)) / sum(w)


def cgf_derivative_mp(values, log_weights, directions):
    """d^n/dt_1..dt_n log E_w[exp(sum_i t_i X_i)] at t = 0 (a joint cumulant), mpmath.

    values: (M, k) rows of the variables; directions: column index per derivative.
    """
    values = [[mpmath.mpf(float(v)) for v in row] for row in np.atleast_2d(values)]
    logw = [mpmath.mpf(float(v)) for v in log_weights]
    n = len(directions)

    def cgf(*t):
        return mpmath.log(sum(mpmath.e ** (lw + sum(t[j] * row[directions[j]] for j in range(n)))
                              for lw, row in zip(logw, values)))

    return mpmath.diff(cgf, [0] * n, [1] * n)


# ---------------------------------------------------------------------------
# 1. derivatives of the posterior mean are cumulants
# ---------------------------------------------------------------------------


def test_posterior_mean_derivative_is_the_declared_cumulant_ratio():
    for n in range(0, 5):
        kappa = sp.Symbol(f"kappa_{n + 1}", real=True)
        assert sp.simplify(glt.posterior_mean_derivative(n) - kappa / glt.s ** (2 * n)) == 0


@pytest.mark.parametrize("order", [1, 2, 3])
def test_posterior_mean_derivatives_match_finite_differences_on_a_discrete_prior(order):
    atoms = [-1.3, 0.2, 0.9, 2.5]
    prior = [0.1, 0.4, 0.3, 0.2]
    s_value, y0 = mpmath.mpf("0.8"), mpmath.mpf("0.35")
    derivative = mpmath.diff(lambda y: posterior_mean_mp([[a] for a in atoms], prior, y, s_value),
                             y0, order)
    # posterior weights in log space; its cumulant kappa_{n+1} by differentiating its CGF
    log_post = [float(mpmath.log(p) - (y0 - a) ** 2 / (2 * s_value**2)) for a, p in zip(atoms, prior)]
    cumulant = cgf_derivative_mp(np.array(atoms)[:, None], log_post, [0] * (order + 1))
    formula = sp.lambdify([sp.Symbol(f"kappa_{order + 1}", real=True), glt.s],
                          glt.posterior_mean_derivative(order), modules="mpmath")
    # 40-digit arithmetic; mpmath.diff's step error is far below 1e-20 here, while the
    # float64 log weights fed to the cumulant limit agreement to ~1e-15 relative.
    assert float(abs(formula(cumulant, s_value) - derivative)) < 1e-12 * max(1.0, float(abs(derivative)))


def test_posterior_mean_derivative_symbolic_on_two_point_prior():
    """Exact: differentiate D(y) of a symbolic two-atom prior and compare with its cumulants."""
    y, t = sp.symbols("y t", real=True)
    a, b = sp.Rational(-1, 2), sp.Rational(3, 2)
    p = sp.Rational(1, 3)
    q_a = p * sp.exp(-a**2 / (2 * glt.s**2))
    q_b = (1 - p) * sp.exp(-b**2 / (2 * glt.s**2))
    theta = y / glt.s**2
    mean = (a * q_a * sp.exp(a * theta) + b * q_b * sp.exp(b * theta)) / (
        q_a * sp.exp(a * theta) + q_b * sp.exp(b * theta))
    cgf = sp.log(q_a * sp.exp(a * (theta + t)) + q_b * sp.exp(b * (theta + t)))
    for order in (1, 2, 3):
        lhs = sp.diff(mean, y, order)
        kappa = sp.diff(cgf, t, order + 1).subs(t, 0)
        rhs = glt.posterior_mean_derivative(order).subs(
            sp.Symbol(f"kappa_{order + 1}", real=True), kappa)
        for y_val, s_val in [(sp.Rational(1, 3), sp.Rational(7, 5)), (-2, sp.Rational(1, 2))]:
            diff = (lhs - rhs).subs({y: y_val, glt.s: s_val}).evalf(40)
            assert abs(diff) < 1e-30  # exact expressions, evaluated at 40 digits


@pytest.mark.parametrize("i, js", [(0, (1,)), (0, (0, 1)), (1, (0, 0, 1)), (0, (1, 1, 1))])
def test_mixed_derivatives_match_finite_differences_in_two_dimensions(i, js):
    atoms = np.array([[0.0, 1.0], [1.2, -0.4], [-0.7, 0.3], [0.5, 0.9], [-1.1, -1.0]])
    prior = [0.15, 0.25, 0.2, 0.3, 0.1]
    s_value = mpmath.mpf("0.9")
    y0 = [mpmath.mpf("0.2"), mpmath.mpf("-0.1")]
    counts = [js.count(0), js.count(1)]

    def mean(y_a, y_b):
        return posterior_mean_mp(atoms, prior, [y_a, y_b], s_value, component=i)

    derivative = mpmath.diff(mean, y0, counts)
    log_post = [float(mpmath.log(p) - sum((yk - mpmath.mpf(float(ak))) ** 2 for yk, ak in zip(y0, a))
                      / (2 * s_value**2)) for a, p in zip(atoms, prior)]
    cumulant = cgf_derivative_mp(atoms, log_post, [i, *js])
    expr = glt.posterior_mean_mixed_derivative(i, js)
    (symbol,) = expr.free_symbols - {glt.s}
    value = sp.lambdify([symbol, glt.s], expr, modules="mpmath")(cumulant, s_value)
    # same error budget as the 1-D test (float64 log weights)
    assert float(abs(value - derivative)) < 1e-12 * max(1.0, float(abs(derivative)))


def test_joint_cumulants_of_a_gaussian_vanish_by_isserlis():
    """For jointly Gaussian variables every cumulant of order >= 3 is zero."""
    expr = glt.joint_cumulant_from_central_moments(4)
    mu = {frozenset(k): sp.Symbol(f"c_{''.join(map(str, k))}") for k in itertools.combinations(range(1, 5), 2)}
    isserlis = mu[frozenset((1, 2))] * mu[frozenset((3, 4))] + mu[frozenset((1, 3))] * mu[
        frozenset((2, 4))] + mu[frozenset((1, 4))] * mu[frozenset((2, 3))]
    subs = {sp.Symbol("mu_1234", real=True): isserlis}
    for pair, symbol in mu.items():
        subs[sp.Symbol("mu_" + "".join(map(str, sorted(pair))), real=True)] = symbol
    assert sp.expand(expr.xreplace(subs)) == 0
    # third-order central moments of a Gaussian vanish, and so does kappa_3
    assert glt.joint_cumulant_from_central_moments(3) == sp.Symbol("mu_123", real=True)


def test_uniform_mode_cumulants_match_the_cgf_of_centre_and_window_sum():
    rng = np.random.default_rng(3)
    patches = rng.choice([-1.0, 0.0, 1.5], size=(30, 3))
    log_w = rng.normal(size=30)
    phi0, window_sum = patches[:, 0], patches.sum(axis=1)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    d0, ds = phi0 - w @ phi0, window_sum - w @ window_sum
    moments = {"mu_0_2": w @ ds**2, "mu_1_1": w @ (d0 * ds), "mu_1_2": w @ (d0 * ds**2),
               "mu_1_3": w @ (d0 * ds**3)}
    pair = np.stack([phi0, window_sum], axis=1)
    for order in (2, 3, 4):
        expr = glt.uniform_mode_cumulant(order)
        value = float(expr.subs({sp.Symbol(k, real=True): v for k, v in moments.items()}))
        reference = float(cgf_derivative_mp(pair, log_w, [0] + [1] * (order - 1)))
        # float64 central moments of O(1) numbers: ~1e-14 relative
        assert value == pytest.approx(reference, rel=1e-10, abs=1e-12)


def test_tilted_cumulants_discrete_matches_cgf():
    values = np.array([-2.0, -0.5, 0.3, 1.1, 3.0])
    log_w = np.array([0.1, -0.3, 0.5, 0.0, -1.2])
    cumulants = glt.tilted_cumulants_discrete(values, log_w, 5)
    for n in range(1, 6):
        reference = float(cgf_derivative_mp(values[:, None], log_w, [0] * n))
        assert cumulants[n - 1] == pytest.approx(reference, rel=1e-10, abs=1e-12)  # float64 moments


# ---------------------------------------------------------------------------
# 2. GL coefficients
# ---------------------------------------------------------------------------


def test_uniform_mode_derivative_symbols():
    assert glt.uniform_mode_derivative(1) == sp.Symbol("kappa_phi0_S", real=True) / glt.s**2
    assert glt.uniform_mode_derivative(3) == sp.Symbol("kappa_phi0_SSS", real=True) / glt.s**6


def test_log_noise_time_drift_matches_numerical_integration():
    """dy/ds = (y - D)/s with D = k y integrated in s equals dy/dtau = D - y in tau = -ln s."""
    kappa = 0.6
    s0, s1, y0 = 3.0, 0.2, 1.7
    drift = sp.lambdify(sp.symbols("D y", real=True), glt.log_noise_time_drift())
    in_s = solve_ivp(lambda s, y: (y - kappa * y) / s, (s0, s1), [y0], rtol=1e-11, atol=1e-13)
    in_tau = solve_ivp(lambda tau, y: drift(kappa * y, y), (-np.log(s0), -np.log(s1)), [y0],
                       rtol=1e-11, atol=1e-13)
    # both integrators at rtol 1e-11; THEORY.md 2: y ~ s^(1 - kappa) exactly
    exact = y0 * (s1 / s0) ** (1 - kappa)
    assert in_s.y[0, -1] == pytest.approx(exact, rel=1e-8)
    assert in_tau.y[0, -1] == pytest.approx(exact, rel=1e-8)


def test_sde_temperature_keeps_the_exact_marginal_variance():
    """Gaussian data N(0, lam): the reverse SDE keeps Var y = lam + s^2 exactly.

    In tau' = 2 tau with drift D - y = -s^2/(lam + s^2) y and temperature T, the
    variance obeys dV/dtau' = -2 s^2/(lam + s^2) V + 2 T; with T = s^2/2 it must track
    lam + s^2 (a wrong factor in T or in the time rescaling breaks this).
    """
    out = glt.sde_gl_temperature()
    assert out["drift_factor"] == 2
    temperature = sp.lambdify(glt.s, out["temperature"])
    lam, s0, s1 = 0.7, 5.0, 0.05

    def rhs(tau_prime, v):
        s_value = np.exp(-tau_prime / 2)
        return -2 * s_value**2 / (lam + s_value**2) * v + 2 * temperature(s_value)

    sol = solve_ivp(rhs, (-2 * np.log(s0), -2 * np.log(s1)), [lam + s0**2], rtol=1e-10, atol=1e-12)
    assert sol.y[0, -1] == pytest.approx(lam + s1**2, rel=1e-7)  # integrator tolerance 1e-10


def test_coarse_grained_convolution_is_exact_on_quadratic_fields():
    """For phi quadratic, sum_r K(r) phi(x + r) = kappa0 phi + b lap phi exactly (symmetric K)."""
    rng = np.random.default_rng(5)
    for dim in (1, 2):
        offsets = square_window(5, dim=dim)
        # a kernel invariant under the lattice point group (depends on sorted |r_a|)
        base = {}
        kernel = np.empty(len(offsets))
        for j, r in enumerate(offsets):
            key = tuple(sorted(np.abs(r)))
            base.setdefault(key, rng.normal())
            kernel[j] = base[key]
        hess = rng.normal(size=(dim, dim))
        hess = hess + hess.T
        grad = rng.normal(size=dim)
        x = rng.normal(size=dim)

        def phi(point):
            return 0.5 * point @ hess @ point + grad @ point + 0.3

        weight = sp.lambdify(sp.symbols(f"r_1:{dim + 1}", real=True),
                             glt.coarse_grained_convolution(dim)["per_offset_laplacian_weight"])
        b = sum(k * weight(*r) for k, r in zip(kernel, offsets))
        b_formula = (kernel @ np.sum(offsets**2, axis=1)) / (2 * dim)
        convolved = sum(k * phi(x + r) for k, r in zip(kernel, offsets))
        # exact identity up to float64 rounding of O(10) sums
        assert b == pytest.approx(b_formula, rel=1e-12)
        assert convolved == pytest.approx(kernel.sum() * phi(x) + b * np.trace(hess), rel=1e-10)
        assert glt.coarse_grained_convolution(dim)["first_order"] == 0


def test_gl_coefficients_symbolic_form():
    out = glt.gl_coefficients_symbolic()
    k0, k3, k4, b = (sp.Symbol(n, real=True) for n in ("kappa_0", "kappa_phi0_SS", "kappa_phi0_SSS", "b"))
    assert sp.simplify(out["r"] - (1 - k0)) == 0
    assert out["c"] == b
    assert sp.simplify(out["g"] + k3 / (2 * glt.s**4)) == 0
    assert sp.simplify(out["u"] + k4 / (6 * glt.s**6)) == 0


def _patch_set(rng, dim, size=3, n_images=6, side=6):
    """Patches of smooth random fields, symmetrized under the lattice point group."""
    shape = (side,) * dim
    white = rng.normal(size=(n_images,) + shape)
    smooth = white + sum(np.roll(white, sh, axis=ax) for ax in range(1, dim + 1) for sh in (1, -1))
    images = np.sign(smooth) * 0.8 + 0.3 * smooth  # asymmetric, non-Gaussian pixels
    offsets = square_window(size, dim=dim)
    patches = []
    for image in images:
        variants = [image]
        if dim == 2:
            variants = [np.rot90(image, k) for k in range(4)]
            variants += [v.T for v in variants]
        else:
            variants = [image, image[::-1]]
        for v in variants:
            for position in itertools.product(range(side), repeat=dim):
                patches.append([v[tuple((np.array(position) + r) % side)] for r in offsets])
    return np.array(patches), offsets


def _denoiser_centre_mp(patches, offsets, s_value, window_values):
    """Brute-force patch denoiser at one site: softmax over patches of the centre value."""
    logw = [-sum((mpmath.mpf(y) - mpmath.mpf(float(p))) ** 2 for y, p in zip(window_values, row))
            / (2 * s_value**2) for row in patches]
    top = max(logw)
    w = [mpmath.e ** (lw - top) for lw in logw]
    return sum(wi * mpmath.mpf(float(row[0])) for wi, row in zip(w, patches)) / sum(w)


@pytest.mark.parametrize("dim", [1, 2])
def test_gl_coefficients_from_weights_match_brute_force_patch_denoiser(dim):
    rng = np.random.default_rng(7 + dim)
    patches, offsets = _patch_set(rng, dim)
    if dim == 2:
        patches = patches[rng.choice(len(patches), 120, replace=False)]  # keep mpmath cheap
    s_value, c = 1.1, 0.25
    log_w = -np.sum((c - patches) ** 2, axis=1) / (2 * s_value**2)
    coeffs = glt.gl_coefficients_from_weights(patches, log_w, offsets, s_value)
    n = len(offsets)
    s_mp = mpmath.mpf(s_value)

    def uniform(eps):
        return _denoiser_centre_mp(patches, offsets, s_mp, [mpmath.mpf(c) + eps] * n)

    d1, d2, d3 = (float(mpmath.diff(uniform, 0, k)) for k in (1, 2, 3))
    # coefficients of dphi/dtau = D(c + phi) - h(c) - phi; float64 moments limit to ~1e-12
    assert coeffs["r"] == pytest.approx(1 - d1, rel=1e-9, abs=1e-12)
    assert coeffs["g"] == pytest.approx(-d2 / 2, rel=1e-9, abs=1e-12)
    assert coeffs["u"] == pytest.approx(-d3 / 6, rel=1e-9, abs=1e-12)
    # kernel K(r) = dD_centre/dy_r
    for j in (0, 1, n - 1):
        def single(eps, j=j):
            values = [mpmath.mpf(c)] * n
            values[j] += eps
            return _denoiser_centre_mp(patches, offsets, s_mp, values)
        assert coeffs["kernel"][j] == pytest.approx(float(mpmath.diff(single, 0)), rel=1e-9, abs=1e-12)


def test_gradient_coefficient_is_the_small_k_curvature_of_the_response():
    """1-D, reflection-symmetric patches: kappa(k) = sum K cos(kr) = kappa0 - b k^2 + O(k^4)."""
    rng = np.random.default_rng(11)
    patches, offsets = _patch_set(rng, 1, size=5, n_images=10, side=16)
    s_value, c = 0.9, 0.1
    log_w = -np.sum((c - patches) ** 2, axis=1) / (2 * s_value**2)
    coeffs = glt.gl_coefficients_from_weights(patches, log_w, offsets, s_value)
    kernel, r = coeffs["kernel"], offsets[:, 0].astype(float)
    # reflection symmetry of the patch set makes K even: no drift
    assert abs(coeffs["drift"][0]) < 1e-12 * np.abs(kernel).sum()
    bound4 = np.sum(np.abs(kernel) * r**4) / 24  # Taylor remainder of cos
    for k in (0.05, 0.1, 0.2):
        response = kernel @ np.cos(k * r)
        # |kappa(k) - (kappa0 - b k^2)| <= k^4 sum |K| r^4 / 24 (+ rounding)
        assert abs(response - (coeffs["kappa_0"] - coeffs["c"] * k**2)) <= bound4 * k**4 + 1e-13


def test_gradient_tensor_isotropic_for_point_group_symmetric_patches():
    rng = np.random.default_rng(12)
    patches, offsets = _patch_set(rng, 2, n_images=3)
    log_w = -np.sum((0.2 - patches) ** 2, axis=1) / 2.0
    coeffs = glt.gl_coefficients_from_weights(patches, log_w, offsets, 1.0)
    scale = np.abs(coeffs["kernel"]).sum()
    # rotations and transposes of every image are in the set, so K is point-group invariant
    np.testing.assert_allclose(coeffs["gradient_tensor"], coeffs["c"] * np.eye(2), atol=1e-12 * scale)
    np.testing.assert_allclose(coeffs["drift"], 0.0, atol=1e-12 * scale)


def test_symmetric_pm_matches_tanh_taylor_symbolically():
    m, s_sym = sp.symbols("m s", positive=True)
    y, eps = sp.symbols("y epsilon", real=True)
    for n_sites in (1, 3):
        coeffs = glt.gl_coefficients_symmetric_pm(m, s_sym, y, n_sites=n_sites)
        denoiser = m * sp.tanh(n_sites * m * (y + eps) / s_sym**2)
        series = sp.series(denoiser, eps, 0, 4).removeO()
        # dphi/dtau = D(y + phi) - D(y) - phi; the exact expressions are compared at
        # 40 digits on a grid of (m, s, y) (cheaper than simplify with hyperbolics)
        differences = (coeffs["r"] - (1 - series.coeff(eps, 1)), coeffs["g"] + series.coeff(eps, 2),
                       coeffs["u"] + series.coeff(eps, 3))
        for point in itertools.product((sp.Rational(1, 2), sp.Rational(7, 3)), (sp.Rational(3, 4), 2),
                                       (sp.Rational(-1, 3), 0, sp.Rational(5, 4))):
            values = dict(zip((m, s_sym, y), point))
            for difference in differences:
                assert abs(difference.subs(values).evalf(40)) < 1e-30
    at_zero = glt.gl_coefficients_symmetric_pm(m, s_sym)
    assert at_zero["g"] == 0
    assert sp.simplify(at_zero["u"] - m**4 / (3 * s_sym**6)) == 0


@pytest.mark.parametrize("y_value, n_sites", [(0.0, 1), (0.4, 1), (-0.3, 3)])
def test_symmetric_pm_numerically_against_weights_and_finite_differences(y_value, n_sites):
    m, s_value = 1.3, 1.1
    coeffs = {k: float(v) for k, v in glt.gl_coefficients_symmetric_pm(m, s_value, y_value, n_sites).items()}
    patches = np.array([[m] * n_sites, [-m] * n_sites])
    offsets = np.arange(n_sites).reshape(-1, 1) - n_sites // 2
    offsets = np.concatenate([offsets[offsets[:, 0] == 0], offsets[offsets[:, 0] != 0]])
    log_w = -np.sum((y_value - patches) ** 2, axis=1) / (2 * s_value**2)
    from_weights = glt.gl_coefficients_from_weights(patches, log_w, offsets, s_value)

    def denoiser(yv):
        return m * mpmath.tanh(n_sites * m * yv / mpmath.mpf(s_value) ** 2)

    fd = [float(mpmath.diff(denoiser, mpmath.mpf(y_value), k)) for k in (1, 2, 3)]
    for key, reference in (("r", 1 - fd[0]), ("g", -fd[1] / 2), ("u", -fd[2] / 6)):
        # sympy -> float and float64 moments: agreement to ~1e-13
        assert coeffs[key] == pytest.approx(reference, rel=1e-10, abs=1e-12)
        assert from_weights[key] == pytest.approx(reference, rel=1e-10, abs=1e-12)


# ---------------------------------------------------------------------------
# 3. exponents and Kibble–Zurek
# ---------------------------------------------------------------------------


def test_mean_field_exponents_from_numerical_rates():
    exps = glt.mean_field_exponents()
    c = 2.0
    rs = np.logspace(-4, -1, 7)
    # xi from rate(1/xi) = 2 rate(0) solved numerically; tau_rel = 1/rate(0)
    xi = np.array([brentq(lambda x, r=r: r + c / x**2 - 2 * r, 1e-6, 1e6) for r in rs])
    tau = 1 / rs
    nu = -np.polyfit(np.log(rs), np.log(xi), 1)[0]
    z = np.polyfit(np.log(xi), np.log(tau), 1)[0]
    assert nu == pytest.approx(float(exps["nu"]), abs=1e-9)  # exact power laws
    assert z == pytest.approx(float(exps["z"]), abs=1e-9)


@pytest.mark.parametrize("nu, z", [(0.5, 2.0), (1.0, 2.17), (0.63, 2.02)])
def test_kibble_zurek_exponents_from_numerical_freeze_out(nu, z):
    tau_qs = np.logspace(1, 4, 6)
    t_hat = np.array([brentq(lambda t, q=q: (t / q) ** (-z * nu) - t, 1e-9, 1e9) for q in tau_qs])
    xi_hat = (t_hat / tau_qs) ** (-nu)
    exps = glt.kibble_zurek_exponents(sp.nsimplify(nu), sp.nsimplify(z))
    # brentq to ~1e-12 relative, exact power laws
    assert np.polyfit(np.log(tau_qs), np.log(t_hat), 1)[0] == pytest.approx(float(exps["delay"]), abs=1e-8)
    assert np.polyfit(np.log(tau_qs), np.log(xi_hat), 1)[0] == pytest.approx(float(exps["length"]), abs=1e-8)


def test_declared_constants_are_derived_values():
    assert glt.KZ_LENGTH_EXPONENT == pytest.approx(
        glt.MEAN_FIELD_NU / (1 + glt.MEAN_FIELD_Z * glt.MEAN_FIELD_NU), abs=1e-15)
    assert glt.KZ_DELAY_EXPONENT == pytest.approx(
        glt.MEAN_FIELD_Z * glt.MEAN_FIELD_NU / (1 + glt.MEAN_FIELD_Z * glt.MEAN_FIELD_NU), abs=1e-15)
    assert (glt.MEAN_FIELD_NU, glt.MEAN_FIELD_Z) == (0.5, 2.0)
    assert (glt.KZ_LENGTH_EXPONENT, glt.KZ_DELAY_EXPONENT) == (0.25, 0.5)
    with pytest.raises(AttributeError):
        glt.NOT_A_CONSTANT  # noqa: B018


def test_quench_time_matches_finite_difference():
    m = sp.Symbol("m", positive=True)
    gamma0 = 1 - m**2 / glt.s**2
    m_value = 1.7
    tau_q = float(glt.quench_time_at_critical_point(gamma0, m).subs(m, m_value))
    r_of_tau = sp.lambdify(sp.Symbol("tau"), gamma0.subs({glt.s: sp.exp(-sp.Symbol("tau")), m: m_value}))
    tau_c, h = -np.log(m_value), 1e-5
    slope = (r_of_tau(tau_c + h) - r_of_tau(tau_c - h)) / (2 * h)
    assert tau_q == pytest.approx(-1 / slope, rel=1e-8)  # central difference error ~h^2


def test_input_validation():
    with pytest.raises(TypeError, match="order"):
        glt.posterior_mean_derivative(1.5)
    with pytest.raises(ValueError, match="order"):
        glt.posterior_mean_derivative(-1)
    with pytest.raises(ValueError, match="log_weights"):
        glt.gl_coefficients_from_weights(np.zeros((3, 1)), np.zeros(2), np.zeros((1, 1), int), 1.0)
    with pytest.raises(ValueError, match="zero offset"):
        glt.gl_coefficients_from_weights(np.zeros((3, 1)), np.zeros(3), np.ones((1, 1), int), 1.0)
    with pytest.raises(ValueError, match="s_value"):
        glt.gl_coefficients_from_weights(np.zeros((3, 1)), np.zeros(3), np.zeros((1, 1), int), -1.0)
    with pytest.raises(ValueError, match="nu and z"):
        glt.kibble_zurek_freeze_out(-1, 2)
    with pytest.raises(ValueError, match="s_value"):
        glt.gl_coefficients_symmetric_pm(1.0, -2.0)


def test_theory_module_does_not_import_numba():
    code = ("import sys, diffcrit.theory.ginzburg_landau as g; g.KZ_LENGTH_EXPONENT;"
            "print(','.join(m for m in ('numba', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
