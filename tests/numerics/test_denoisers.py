"""Exact denoisers: each checked against an independent computation.

Independent references used here: dense Gaussian conditioning by linear solves,
Tweedie's formula ``D = y + s^2 grad log p_s`` with the gradient taken by finite
differences of the marginal log density (scipy), numerical quadrature of the 1-D
posterior, numerical integration of the probability-flow ODE (solve_ivp), and the
closed forms of THEORY.md 3.2 for the symmetric two-component mixture.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from diffcrit.numerics.denoisers import (
    Denoiser,
    GaussianFieldDenoiser,
    GaussianMixtureDenoiser,
    GuidedDenoiser,
    MemorizingDenoiser,
    check_denoiser,
    guidance_window,
)


# ----------------------------------------------------------------------- helpers


def periodic_correlation(shape, length=2.0, variance=1.5):
    """``C(r) = variance * exp(-|r|/length)`` with periodic (minimum image) distances."""
    grids = np.meshgrid(*[np.minimum(np.arange(n), n - np.arange(n)) for n in shape], indexing="ij")
    dist = np.sqrt(sum(g.astype(float) ** 2 for g in grids))
    return variance * np.exp(-dist / length)


def circulant_covariance(corr):
    """Dense covariance ``Sigma[i, j] = C(j - i)`` of a stationary periodic field."""
    shape = corr.shape
    sites = np.array(list(np.ndindex(*shape)))
    diff = (sites[None, :, :] - sites[:, None, :]) % np.array(shape)
    return corr[tuple(diff[..., a] for a in range(len(shape)))]


def finite_difference_gradient(fun, y, h):
    """Central differences; error O(h^2 f''')."""
    grad = np.zeros_like(y)
    for i in range(y.size):
        e = np.zeros_like(y)
        e.flat[i] = h
        grad.flat[i] = (fun(y + e) - fun(y - e)) / (2 * h)
    return grad


def finite_difference_jacobian(denoiser, y, s, h=1e-5):
    """``dD/dy`` of one field by central differences, as an ``(n, n)`` matrix."""
    n = y.size
    jac = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        e = e.reshape(y.shape)
        jac[:, i] = ((denoiser(y + e, s) - denoiser(y - e, s)) / (2 * h)).ravel()
    return jac


# ----------------------------------------------------------------- Gaussian field


@pytest.mark.parametrize("shape", [(12,), (6, 5)])
@pytest.mark.parametrize("s", [0.1, 1.0, 7.0])
def test_wiener_filter_matches_dense_gaussian_conditioning(shape, s):
    rng = np.random.default_rng(1)
    corr = periodic_correlation(shape)
    cov = circulant_covariance(corr)
    mean = rng.normal(size=shape)  # a non-stationary mean is allowed
    y = rng.normal(scale=2.0, size=(3, *shape))
    n = cov.shape[0]
    flat = (y - mean).reshape(3, n)
    expected = mean + (cov @ np.linalg.solve(cov + s * s * np.eye(n), flat.T)).T.reshape(y.shape)
    fft_model = GaussianFieldDenoiser.from_correlation(corr, mean=mean)
    dense_model = GaussianFieldDenoiser(covariance=cov, mean=mean, field_shape=shape)
    # both are exact linear algebra; cond(Sigma + s^2) <= (lambda_max + s^2)/s^2 ~ 1e3
    # at s = 0.1, so agreement to 1e-10 leaves a wide margin over rounding.
    np.testing.assert_allclose(fft_model(y, s), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dense_model(y, s), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("s", [0.3, 2.0])
def test_gaussian_denoiser_obeys_tweedie_formula(s):
    # D = y + s^2 grad log N(y; mu, Sigma + s^2 I), gradient by central differences.
    shape = (7,)
    corr = periodic_correlation(shape, length=1.5)
    cov = circulant_covariance(corr)
    mean = 0.4
    model = GaussianFieldDenoiser.from_correlation(corr, mean=mean)
    marginal = stats.multivariate_normal(mean=np.full(7, mean), cov=cov + s * s * np.eye(7))
    y = np.random.default_rng(2).normal(size=7)
    grad = finite_difference_gradient(marginal.logpdf, y, h=1e-4)
    # central-difference error ~ h^2 |d^3 log p| = 0 for a quadratic log p; what is
    # left is rounding, eps*|log p|/h ~ 1e-11, amplified by s^2 <= 4.
    np.testing.assert_allclose(model(y, s), y + s * s * grad, rtol=0, atol=1e-7)


def test_gaussian_jacobian_eigenvalues_are_wiener_gains():
    shape = (4, 4)
    corr = periodic_correlation(shape)
    model = GaussianFieldDenoiser.from_correlation(corr)
    s = 0.8
    jac = finite_difference_jacobian(model, np.zeros(shape), s)
    lam = np.linalg.eigvalsh(circulant_covariance(corr))
    # D is affine, so central differences are exact up to rounding (~1e-11).
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(0.5 * (jac + jac.T))),
                               np.sort(lam / (lam + s * s)), atol=1e-8)
    np.testing.assert_allclose(np.sort(model.jacobian_eigenvalues(s).ravel()),
                               np.sort(lam / (lam + s * s)), atol=1e-12)


@pytest.mark.parametrize("kind", ["stationary", "dense"])
def test_exact_flow_solves_the_probability_flow_ode(kind):
    shape = (5, 4)
    corr = periodic_correlation(shape, length=1.2)
    if kind == "stationary":
        model = GaussianFieldDenoiser.from_correlation(corr, mean=0.7)
    else:
        model = GaussianFieldDenoiser(covariance=circulant_covariance(corr), mean=0.7, field_shape=shape)
    y0 = np.random.default_rng(3).normal(scale=4.0, size=shape)
    s0, s1 = 5.0, 0.2
    sol = integrate.solve_ivp(lambda s, y: (y - model(y.reshape(shape), s).ravel()) / s,
                              (s0, s1), y0.ravel(), method="DOP853", rtol=1e-11, atol=1e-12)
    # DOP853 at rtol 1e-11 over a smooth 1-D-in-s problem: global error well below 1e-8.
    np.testing.assert_allclose(model.exact_flow(y0, s0, s1), sol.y[:, -1].reshape(shape), atol=1e-8)
    # the flow is a flow: going back up returns the start (composition of ratios).
    back = model.exact_flow(model.exact_flow(y0, s0, s1), s1, s0)
    np.testing.assert_allclose(back, y0, atol=1e-12)


@pytest.mark.parametrize("kind", ["stationary", "dense"])
def test_sample_marginal_has_covariance_sigma_plus_s2(kind):
    shape = (6,)
    corr = periodic_correlation(shape, length=1.0, variance=1.0)
    cov = circulant_covariance(corr)
    if kind == "stationary":
        model = GaussianFieldDenoiser.from_correlation(corr, mean=-1.0)
    else:
        model = GaussianFieldDenoiser(covariance=cov, mean=-1.0)
    s = 0.5
    n = 40_000
    draws = model.sample_marginal(n, s, rng=4)
    target = cov + s * s * np.eye(6)
    emp = np.cov(draws.T)
    # entrywise sampling std of a covariance estimate: sqrt((S_ii S_jj + S_ij^2)/n)
    # <= sqrt(2/n) * max S_ii ~ 0.009; 5 sigma.
    assert np.max(np.abs(emp - target)) < 5 * math.sqrt(2 / n) * target.diagonal().max()
    # mean: std sqrt(S_ii/n) ~ 0.006; 5 sigma.
    assert np.max(np.abs(draws.mean(axis=0) + 1.0)) < 5 * math.sqrt(target.diagonal().max() / n)


def test_gaussian_denoiser_single_batch_dtype_and_extreme_noise():
    shape = (8, 8)
    corr = periodic_correlation(shape)
    lam = np.real(np.fft.fftn(corr))
    model = GaussianFieldDenoiser(spectrum=lam, mean=0.5)
    model32 = GaussianFieldDenoiser(spectrum=lam, mean=0.5, dtype=np.float32)
    y = np.random.default_rng(5).normal(size=(2, *shape))
    for s in (1e-4, 1.0, 1e4):
        batch = model(y, s)
        # one field or a batch: the same per-row FFT arithmetic, rounding at most
        np.testing.assert_allclose(model(y[1], s), batch[1], rtol=0, atol=1e-14)
        out32 = model32(y.astype(np.float32), s)
        assert out32.dtype == np.float32 and np.all(np.isfinite(out32))
        # float32 FFT round trip: relative error ~ 1e-7 * log2(64); 1e-5 of the field scale.
        np.testing.assert_allclose(out32, batch, atol=1e-5 * np.abs(y).max())
    # limits: |D - y| <= s^2/lambda_min |y - mu| at small s; |D - mu| <= lambda_max/s^2 |y - mu| at large s
    dev = np.abs(y - 0.5).max() * lam.size
    assert np.abs(model(y, 1e-4) - y).max() <= 1e-8 / lam.min() * dev
    assert np.abs(model(y, 1e4) - 0.5).max() <= lam.max() / 1e8 * dev


def test_gaussian_denoiser_rejects_bad_input():
    with pytest.raises(ValueError, match="exactly one"):
        GaussianFieldDenoiser()
    with pytest.raises(ValueError, match="lambda\\(k\\) = lambda\\(-k\\)"):
        GaussianFieldDenoiser(spectrum=np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match=">= 0"):
        GaussianFieldDenoiser(spectrum=np.array([1.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        GaussianFieldDenoiser(covariance=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianFieldDenoiser(covariance=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="mean"):
        GaussianFieldDenoiser(spectrum=np.ones(4), mean=np.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        GaussianFieldDenoiser(spectrum=np.ones(4), dtype=np.int64)
    model = GaussianFieldDenoiser(spectrum=np.ones(4))
    with pytest.raises(ValueError, match="noise level s"):
        model(np.zeros(4), 0.0)
    with pytest.raises(ValueError, match="noise level s"):
        model(np.zeros(4), float("nan"))
    with pytest.raises(TypeError, match="noise level s"):
        model(np.zeros(4), "1")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        model(np.zeros((2, 5)), 1.0)


# --------------------------------------------------------------- Gaussian mixture

MEANS_1D = np.array([[-2.0], [0.5], [3.0]])
VARS_1D = np.array([0.3, 0.1, 0.5])
WEIGHTS_1D = np.array([0.5, 0.3, 0.2])


def brute_force_posterior_mean_1d(ys, s):
    """``E[x | y]`` by quadrature of ``x p(x) N(y; x, s^2)`` over the line.

    Trapezoid rule on a uniform grid of spacing 1.2e-4 over [-12, 12]: the
    integrands are smooth and negligible (< 1e-30) at the ends, where the trapezoid
    rule converges faster than any power; every Gaussian factor has width >= 0.15,
    i.e. >= 1000 grid points.
    """
    x = np.linspace(-12.0, 12.0, 200_001)
    prior = sum(w * np.exp(-0.5 * (x - m[0]) ** 2 / v) / math.sqrt(2 * math.pi * v)
                for w, m, v in zip(WEIGHTS_1D, MEANS_1D, VARS_1D))
    like = np.exp(-0.5 * (ys[:, None] - x[None]) ** 2 / (s * s))
    num = np.trapezoid(x * prior * like, x, axis=1)
    den = np.trapezoid(prior * like, x, axis=1)
    return num / den


@pytest.mark.parametrize("s", [0.15, 0.7, 2.5, 20.0])
def test_mixture_denoiser_equals_quadrature_posterior_mean_1d(s):
    model = GaussianMixtureDenoiser(MEANS_1D, VARS_1D, WEIGHTS_1D)
    ys = np.array([-3.0, -0.8, 0.2, 1.7, 4.0])
    expected = brute_force_posterior_mean_1d(ys, s)
    # quadrature error is negligible (see the helper); what remains is rounding of
    # sums of 2e5 terms, ~1e-15 relative: 1e-12 absolute.
    np.testing.assert_allclose(model(ys[:, None], s)[:, 0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("s", [0.2, 1.0, 3.0])
def test_mixture_denoiser_obeys_tweedie_formula_3d(s):
    rng = np.random.default_rng(6)
    means = rng.normal(scale=1.5, size=(4, 3))
    variances = np.array([0.2, 0.5, 0.1, 1.0])
    weights = np.array([0.1, 0.4, 0.3, 0.2])
    model = GaussianMixtureDenoiser(means, variances, weights)

    def log_marginal(y):
        tv = variances + s * s
        comp = (np.log(weights) - 0.5 * np.sum((y - means) ** 2, axis=1) / tv - 1.5 * np.log(2 * np.pi * tv))
        return special.logsumexp(comp)

    for y in rng.normal(scale=2.0, size=(3, 3)):
        grad = finite_difference_gradient(log_marginal, y, h=1e-5)
        # central differences: O(h^2 |d^3 log p|) ~ 1e-10/s^3 plus rounding eps/h ~ 1e-11; times s^2.
        np.testing.assert_allclose(model(y, s), y + s * s * grad, rtol=0, atol=1e-7)


def test_symmetric_two_component_mixture_closed_form_and_critical_noise():
    # +-m with variance v: D(y) = r y + (1 - r) m tanh(m.y/(v + s^2)), r = v/(v+s^2).
    m = np.array([1.2, -0.5, 0.3])
    v = 0.25
    model = GaussianMixtureDenoiser(np.stack([m, -m]), v)
    y = np.array([0.3, 0.1, -0.4])
    for s in (0.3, 1.0, 4.0):
        r = v / (v + s * s)
        expected = r * y + (1 - r) * m * np.tanh(m @ y / (v + s * s))
        np.testing.assert_allclose(model(y, s), expected, rtol=1e-13, atol=1e-14)
    # THEORY.md 3.2: at y = 0, J = s^2 B/(v+s^2)^2 + v/(v+s^2) I with B = m m^T, and the
    # top eigenvalue crosses 1 at s_c^2 = |m|^2 - v.
    s_c = math.sqrt(m @ m - v)
    for s in (0.5 * s_c, s_c, 2.0 * s_c):
        jac = finite_difference_jacobian(model, np.zeros(3), s)
        expected = s * s * np.outer(m, m) / (v + s * s) ** 2 + v / (v + s * s) * np.eye(3)
        # central differences of a smooth function at h = 1e-5: error ~ h^2 |D'''| ~ 1e-9.
        np.testing.assert_allclose(jac, expected, atol=1e-7)
    top = np.linalg.eigvalsh(finite_difference_jacobian(model, np.zeros(3), s_c)).max()
    assert abs(top - 1.0) < 1e-7  # same finite-difference error as above


def test_mixture_posterior_and_extreme_noise_levels():
    model = GaussianMixtureDenoiser(MEANS_1D, 0.0, WEIGHTS_1D)
    model32 = GaussianMixtureDenoiser(MEANS_1D, 0.0, WEIGHTS_1D, dtype=np.float32)
    ys = np.array([[-2.2], [0.4], [2.0], [50.0]])
    post = model.component_posterior(ys, 1.0)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-14)
    # s -> 0 with v = 0: the nearest component mean exactly (others have weight e^{-1e7}).
    np.testing.assert_array_equal(model(ys, 1e-4)[:, 0], [-2.0, 0.5, 3.0, 3.0])
    # s -> infinity: the mixture mean, up to O(|y - m|^2/s^2) ~ 2.5e-5 for y = 50.
    big = model(ys, 1e4)
    np.testing.assert_allclose(big[:, 0], WEIGHTS_1D @ MEANS_1D[:, 0], atol=1e-4)
    for s in (1e-4, 1e4):
        out32 = model32(ys, s)
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, model(ys, s), rtol=1e-6)  # float32 rounding of the result


def test_mixture_rejects_bad_input():
    with pytest.raises(ValueError, match="means"):
        GaussianMixtureDenoiser(np.zeros(3))
    with pytest.raises(ValueError, match="variance"):
        GaussianMixtureDenoiser(np.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="variance"):
        GaussianMixtureDenoiser(np.zeros((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureDenoiser(np.zeros((2, 3)), 0.1, weights=[1.0, -1.0])
    model = GaussianMixtureDenoiser(np.zeros((2, 3)), 0.1)
    with pytest.raises(ValueError, match="shape"):
        model(np.zeros((2, 4)), 1.0)


# --------------------------------------------------------------- memorizing model


@pytest.fixture(scope="module")
def training_set():
    return np.random.default_rng(7).normal(size=(40, 4, 4))


def test_memorizing_equals_brute_force_softmax(training_set):
    model = MemorizingDenoiser(training_set)
    y = np.random.default_rng(8).normal(size=(3, 4, 4))
    for s in (0.5, 2.0):
        logits = -np.sum((y[:, None] - training_set[None]) ** 2, axis=(2, 3)) / (2 * s * s)
        expected = np.einsum("bn,nij->bij", special.softmax(logits, axis=1), training_set)
        np.testing.assert_allclose(model(y, s), expected, rtol=0, atol=1e-12)  # rounding only


def test_memorizing_is_the_zero_variance_mixture(training_set):
    memo = MemorizingDenoiser(training_set)
    y = np.random.default_rng(9).normal(scale=1.5, size=(5, 4, 4))
    for s in (0.3, 1.0, 5.0):
        exact = GaussianMixtureDenoiser(training_set, 0.0)(y, s)
        # different code paths (expanded products vs direct differences); logit
        # rounding ~ eps * 64 / s^2 < 1e-13: agreement to 1e-11.
        np.testing.assert_allclose(memo(y, s), exact, rtol=0, atol=1e-11)
        # v -> 0: the mixture approaches the memorizing model linearly in v.
        gaps = [np.abs(GaussianMixtureDenoiser(training_set, v)(y, s) - memo(y, s)).max() for v in (1e-4, 1e-6)]
        assert gaps[1] < 1e-4 * 5 / s**2  # |dD/dv| ~ (|y| + |x|)^2/s^4-ish; generous bound
        assert 50 < gaps[0] / gaps[1] < 200  # linear in v: ratio 100 up to O(v) terms


def test_memorizing_chunking_and_extreme_noise(training_set):
    y = np.random.default_rng(10).normal(size=(6, 4, 4))
    whole = MemorizingDenoiser(training_set)
    chunked = MemorizingDenoiser(training_set, chunk_size=7)
    for s in (1e-4, 0.4, 1e4):
        # the streamed log-sum-exp is exact: chunking only changes rounding.
        np.testing.assert_allclose(chunked(y, s), whole(y, s), rtol=0, atol=1e-12)
    near = training_set[[3, 17]] + 1e-3 * np.random.default_rng(11).normal(size=(2, 4, 4))
    # s = 1e-4: the nearest training point; the runner-up's weight is exp(-O(1)/2e-8) = 0.
    np.testing.assert_array_equal(whole(near, 1e-4), training_set[[3, 17]])
    far = 100.0 * np.ones((1, 4, 4))
    assert np.all(np.isfinite(whole(far, 1e-4)))
    # s = 1e4: the training mean up to O(|y|^2/s^2) shifts of the weights (~1e-8).
    np.testing.assert_allclose(whole(y, 1e4), np.broadcast_to(training_set.mean(0), y.shape), atol=1e-6)
    m32 = MemorizingDenoiser(training_set, dtype=np.float32)
    out = m32(y.astype(np.float32), 0.5)
    assert out.dtype == np.float32
    # float32 logits: error ~ 1e-7 * (|y|^2 + |x|^2)/s^2 ~ 1e-4 relative in the weights.
    np.testing.assert_allclose(out, whole(y, 0.5), atol=1e-3)


def test_memorizing_rejects_bad_input(training_set):
    with pytest.raises(ValueError, match="chunk_size"):
        MemorizingDenoiser(training_set, chunk_size=0)
    with pytest.raises(ValueError, match="data"):
        MemorizingDenoiser(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        MemorizingDenoiser(np.full((2, 3), np.nan))


# ------------------------------------------------------------------------ guidance


def test_guided_combination_algebra():
    corr = periodic_correlation((8,))
    mu_u, mu_c = 0.0, 1.5
    d_u = GaussianFieldDenoiser.from_correlation(corr, mean=mu_u)
    d_c = GaussianFieldDenoiser.from_correlation(corr, mean=mu_c)
    y = np.random.default_rng(12).normal(size=(3, 8))
    s = 0.9
    for w in (0.0, 1.0, 2.5, -0.5):
        guided = GuidedDenoiser(d_u, d_c, w)(y, s)
        # D is affine in mu, so guidance with a shared covariance is the Gaussian
        # denoiser with the extrapolated mean mu_u + w (mu_c - mu_u).
        expected = GaussianFieldDenoiser.from_correlation(corr, mean=mu_u + w * (mu_c - mu_u))(y, s)
        np.testing.assert_allclose(guided, expected, atol=1e-12)
        # the score is the same affine combination: (D_w - y)/s^2 = (1-w) score_u + w score_c
        score = (guided - y) / s**2
        np.testing.assert_allclose(score, (1 - w) * (d_u(y, s) - y) / s**2 + w * (d_c(y, s) - y) / s**2, atol=1e-11)


def test_guidance_window_calls_conditional_only_inside():
    calls = []

    def conditional(y, s):
        calls.append(s)
        return y + 1.0

    window = guidance_window(3.0, s_center=2.0, width_ln_s=0.5)
    assert math.isclose(math.log(window.s_high / window.s_low), 0.5, rel_tol=1e-14)
    assert math.isclose(math.sqrt(window.s_high * window.s_low), 2.0, rel_tol=1e-14)
    guided = GuidedDenoiser(lambda y, s: y, conditional, window)
    y = np.zeros(4)
    np.testing.assert_array_equal(guided(y, 2.0), np.full(4, 3.0))
    np.testing.assert_array_equal(guided(y, window.s_high), np.full(4, 3.0))  # edges included
    np.testing.assert_array_equal(guided(y, window.s_high * 1.001), y)
    np.testing.assert_array_equal(guided(y, window.s_low * 0.999), y)
    assert calls == [2.0, window.s_high]


def test_denoiser_protocol_and_guidance_errors():
    assert isinstance(lambda y, s: y, Denoiser)
    assert isinstance(MemorizingDenoiser(np.zeros((2, 3))), Denoiser)
    with pytest.raises(TypeError, match="denoiser"):
        check_denoiser(3.0)
    with pytest.raises(TypeError, match="conditional"):
        GuidedDenoiser(lambda y, s: y, None, 1.0)
    with pytest.raises(TypeError, match="weight"):
        GuidedDenoiser(lambda y, s: y, lambda y, s: y, "strong")
    with pytest.raises(ValueError, match="width_ln_s"):
        guidance_window(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="s_center"):
        guidance_window(1.0, -1.0, 1.0)
    guided = GuidedDenoiser(lambda y, s: y, lambda y, s: y[:2], 1.0)
    with pytest.raises(ValueError, match="shape"):
        guided(np.zeros(3), 1.0)
