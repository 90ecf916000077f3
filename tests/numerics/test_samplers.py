"""Samplers in the VE-equivalent variables.

References: the exact Gaussian-field flow (per mode
``y_k(s) = mu_k + (y_k(s0) - mu_k) sqrt((lambda_k + s^2)/(lambda_k + s0^2))``), the
exact Gaussian marginal ``N(mu, lambda + s^2)`` that the reverse SDE preserves, a
fine-grid Euler–Maruyama path driven by the same Brownian increments, the textbook
DDIM update written in VP variables, and the Fokker–Planck equation (sympy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from diffcrit.numerics.denoisers import GaussianFieldDenoiser, MemorizingDenoiser
from diffcrit.numerics.samplers import (
    DDIMSampler,
    EulerMaruyamaSampler,
    geometric_s_grid,
    get_sampler,
    insert_noise_levels,
    s_grid_from_schedule,
    sample,
    validate_s_grid,
)

# ----------------------------------------------------------------------- fixtures


def chain_spectrum(n_sites=32):
    """Smooth, positive, symmetric: lambda_k in [4/37, 4], so modes cross over inside the runs."""
    k = 2 * np.pi * np.fft.fftfreq(n_sites)
    return 4.0 / (1.0 + 36.0 * np.sin(k / 2) ** 2)


@pytest.fixture(scope="module")
def gaussian_chain():
    return GaussianFieldDenoiser(spectrum=chain_spectrum(), mean=0.3)


LAMBDA = 1.0  # one-mode Gaussian data N(0, LAMBDA) for the stochastic order tests


def scalar_gaussian_denoiser(y, s):
    """Wiener filter of N(0, LAMBDA), a plain callable (the minimal protocol)."""
    return (LAMBDA / (LAMBDA + s * s)) * y


CONFIGS = [
    ("euler", None),
    ("heun", None),
    ("ddim", 0.0),
    ("ddim", 0.5),
    ("ddim", 1.0),
    ("euler_maruyama", None),
]


# ------------------------------------------------------------------ declared order


def deterministic_errors(denoiser, method, eta, ns, s0=20.0, s1=0.05):
    """Max error at s1 against the exact Gaussian flow, for geometric grids of n steps."""
    y0 = denoiser.sample_marginal(8, s0, rng=0)
    exact = denoiser.exact_flow(y0, s0, s1)
    return np.array([
        np.abs(sample(denoiser, y0, geometric_s_grid(s0, s1, n), method, eta=eta, progress=False).samples
               - exact).max()
        for n in ns
    ])


def weak_variance_errors(method, eta, ns, s0=10.0, s1=0.1, m=2**15):
    """Relative error of Var[y(s1)] against the exact LAMBDA + s1^2, with a control variate.

    Each run starts from the exact marginal N(0, LAMBDA + s0^2). The control variate
    is the exact Gaussian transition of the small-step SDE limit
    ``dy = (1 + eta^2)(y - D)/s ds + eta sqrt(2 s |ds|) xi`` (eta = 1 for
    Euler–Maruyama), ``y' = A y + B z`` with ``A = ((LAMBDA + s'^2)/(LAMBDA + s^2))^((1+eta^2)/2)``
    and ``B^2 = LAMBDA + s'^2 - A^2 (LAMBDA + s^2)``, driven by the same normals ``z``
    as the sampler (reconstructed from the seed: :func:`sample` draws one
    ``standard_normal(state shape)`` per stochastic step, in step order). Its
    variance is exactly ``LAMBDA + s'^2`` whatever ``A`` is, so
    ``mean(y^2 - y_cv^2)`` estimates the bias without the O(1/sqrt(m)) noise of
    ``mean(y^2)`` alone: the relative standard error of each bias estimate is ~1%.
    """
    power = (1.0 + (1.0 if eta is None else eta) ** 2) / 2.0
    errors, std_errors = [], []
    for n in ns:
        grid = geometric_s_grid(s0, s1, n)
        start = np.random.default_rng(1000 + n).standard_normal(m) * math.sqrt(LAMBDA + s0 * s0)
        result = sample(scalar_gaussian_denoiser, start[None], grid, method, eta=eta, rng=n, progress=False)
        replay = np.random.default_rng(n)
        y_cv = start.copy()
        for s, s_next in zip(grid[:-1], grid[1:]):
            gain = ((LAMBDA + s_next**2) / (LAMBDA + s**2)) ** power
            y_cv = gain * y_cv + math.sqrt(LAMBDA + s_next**2 - gain**2 * (LAMBDA + s**2)) \
                * replay.standard_normal((1, m))[0]
        diff = (result.samples[0] ** 2 - y_cv**2) / (LAMBDA + s1 * s1)
        errors.append(diff.mean())
        std_errors.append(diff.std() / math.sqrt(m))
    return np.array(errors), np.array(std_errors)


@pytest.mark.parametrize("method, eta", CONFIGS)
def test_declared_order_is_measured(method, eta, gaussian_chain):
    """Global (ODE) or weak (SDE) order: slope of log error vs log step, declared +- 0.15.

    Band: the error is C h^p (1 + O(h)); over these step counts the O(h) term moves
    the fitted slope by <= 0.06 (fitted slopes measured: Euler and DDIM(0) 0.98,
    Heun 2.04, DDIM(0.5) 0.96, DDIM(1) 0.94, Euler–Maruyama 1.04), and the Monte
    Carlo error of the weak errors (~1% each) moves it by ~0.01. 0.15 covers both
    with margin and still separates order 1 from 1/2 and 2.
    """
    stepper = get_sampler(method, eta)
    if stepper.ORDER_KIND == "global":
        ns = np.array([16, 32, 64, 128])
        errors = deterministic_errors(gaussian_chain, method, eta, ns)
        assert errors[-1] > 1e-10  # far from rounding, or the slope is meaningless
    else:
        ns = np.array([16, 32, 64, 128, 256])
        errors, std_errors = weak_variance_errors(method, eta, ns)
        assert np.all(np.abs(errors) > 5 * std_errors)  # each bias resolved at > 5 sigma
    slope = np.polyfit(np.log(1.0 / ns), np.log(np.abs(errors)), 1)[0]
    assert abs(slope - stepper.ORDER) <= 0.15, (method, eta, errors, slope)


def test_euler_maruyama_strong_order_with_shared_brownian_paths():
    """Strong order 1 (additive noise): RMS path error against a 1024-step EM path.

    Coarse steps use the sums of the fine Brownian increments ``dW = sqrt(h) xi`` of
    the W(s) that drives ``sqrt(2 s) dW``. The reference has error ~ C/1024, which
    shifts the fitted slope by ~ +0.05 (errors ~ C (1/n - 1/1024)); band 0.15 as above.
    """
    stepper = EulerMaruyamaSampler()
    s0, s1, n_fine, m = 10.0, 0.1, 1024, 2048
    rng = np.random.default_rng(5)
    fine = geometric_s_grid(s0, s1, n_fine)
    d_w = np.sqrt(-np.diff(fine))[:, None] * rng.standard_normal((n_fine, m))
    y_start = math.sqrt(LAMBDA + s0 * s0) * rng.standard_normal(m)

    def run(n):
        k = n_fine // n
        grid = fine[::k]
        y = y_start.copy()
        for j, (s, s_next) in enumerate(zip(grid[:-1], grid[1:])):
            xi = d_w[j * k:(j + 1) * k].sum(axis=0) / math.sqrt(s - s_next)
            y = stepper.step(scalar_gaussian_denoiser, y, s, s_next, scalar_gaussian_denoiser(y, s), xi)
        return y

    reference = run(n_fine)
    ns = np.array([16, 32, 64, 128])
    errors = np.array([math.sqrt(np.mean((run(n) - reference) ** 2)) for n in ns])
    slope = np.polyfit(np.log(1.0 / ns), np.log(errors), 1)[0]
    assert abs(slope - stepper.STRONG_ORDER) <= 0.15, (errors, slope)


# ------------------------------------------------------------ exact flow, DDIM = Euler


def test_heun_reproduces_the_exact_gaussian_flow_at_observed_levels(gaussian_chain):
    s0, s1 = 20.0, 0.05
    levels = [7.0, 1.3, 0.37, 0.05]
    y0 = gaussian_chain.sample_marginal(4, s0, rng=1)
    res = sample(gaussian_chain, y0, geometric_s_grid(s0, s1, 256), "heun", progress=False,
                 observe_at=levels, record="observed")
    np.testing.assert_array_equal(res.recorded_s, levels)
    for s, state in zip(res.recorded_s, res.states):
        # Heun's global error ~ C h^2 with h = ln(400)/256 = 0.023 and C ~ 1 (the
        # order test measured 7.6e-4 at h = 0.047): 1e-3 bounds it everywhere.
        np.testing.assert_allclose(state, gaussian_chain.exact_flow(y0, s0, s), atol=1e-3)


def test_ddim_eta0_is_euler_in_s(gaussian_chain):
    y0 = gaussian_chain.sample_marginal(3, 30.0, rng=2)
    grid = geometric_s_grid(30.0, 0.01, 40, final_zero=True)
    euler = sample(gaussian_chain, y0, grid, "euler", progress=False).samples
    ddim = sample(gaussian_chain, y0, grid, "ddim", eta=0.0, progress=False).samples
    # identical steps written differently: only rounding (~1e-16 per step) differs.
    np.testing.assert_allclose(ddim, euler, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ddim_step_equals_textbook_vp_ddim(eta, gaussian_chain):
    """The VE-equivalent DDIM step against DDIM in VP variables (alpha_bar = 1/(1+s^2)).

    Textbook form: x' = sqrt(ab') x0_hat + sqrt(1 - ab' - c^2) eps_hat + c z with
    c = eta sqrt((1-ab')/(1-ab)) sqrt(1 - ab/ab') and eps_hat = (x - sqrt(ab) x0_hat)/sqrt(1-ab);
    x = sqrt(ab) y.
    """
    rng = np.random.default_rng(3)
    y = rng.normal(scale=2.0, size=(2, 32))
    z = rng.standard_normal(y.shape)
    stepper = DDIMSampler(eta)
    for s, s_next in [(5.0, 3.0), (1.0, 0.9), (0.4, 0.05)]:
        ab, ab_next = 1 / (1 + s * s), 1 / (1 + s_next * s_next)
        x = math.sqrt(ab) * y
        x0_hat = gaussian_chain(x / math.sqrt(ab), s)  # D(y; s)
        eps_hat = (x - math.sqrt(ab) * x0_hat) / math.sqrt(1 - ab)
        c = eta * math.sqrt((1 - ab_next) / (1 - ab)) * math.sqrt(1 - ab / ab_next)
        x_next = math.sqrt(ab_next) * x0_hat + math.sqrt(1 - ab_next - c * c) * eps_hat + c * z
        ours = stepper.step(gaussian_chain, y, s, s_next, gaussian_chain(y, s), z)
        np.testing.assert_allclose(ours, x_next / math.sqrt(ab_next), rtol=1e-12, atol=1e-12)


def test_step_to_zero_returns_the_posterior_mean(gaussian_chain):
    y = gaussian_chain.sample_marginal(2, 0.5, rng=4)
    denoised = gaussian_chain(y, 0.5)
    for method, eta in [("euler", None), ("heun", None), ("ddim", 0.0), ("ddim", 1.0)]:
        out = get_sampler(method, eta).step(gaussian_chain, y, 0.5, 0.0, denoised, None)
        np.testing.assert_allclose(out, denoised, rtol=0, atol=1e-14)  # y - s (y - D)/s: rounding
    res = sample(gaussian_chain, (3, 32), geometric_s_grid(10.0, 0.5, 5, final_zero=True), "heun",
                 rng=0, progress=False)
    assert res.n_denoiser_calls == 2 * 6 - 1  # two per step, the last (to s = 0) one
    with pytest.raises(ValueError, match="s = 0"):
        sample(gaussian_chain, (3, 32), [1.0, 0.5, 0.0], "euler_maruyama", rng=0, progress=False)


def test_reverse_sde_factor_by_fokker_planck():
    """dy = a (y - D)/s ds + sqrt(2 s |ds|) xi keeps p_s = N(0, lambda + s^2) iff a = 2.

    In u = -s the SDE is dy = -a (y - D)/s du + sqrt(2 s) dW_u; its Fokker–Planck
    equation dp/du = -d_y[-a (y - D)/s p] + s d_yy p must hold with dp/du = -dp/ds.
    """
    y, s, lam, a = sp.symbols("y s lambda a", positive=True)
    var = lam + s**2
    p = sp.exp(-y**2 / (2 * var)) / sp.sqrt(2 * sp.pi * var)
    denoised = lam / var * y
    residual = -sp.diff(p, s) - (-sp.diff(-a * (y - denoised) / s * p, y) + s * sp.diff(p, y, 2))
    assert sp.solve(sp.simplify(residual / p), a) == [2]


# --------------------------------------------------------------------- the driver


def test_observers_are_called_at_exactly_the_requested_levels(gaussian_chain):
    seen = []

    def mean_field(s, y, denoised):
        seen.append((s, y.copy(), denoised.copy()))
        return y.mean(axis=1)

    levels = [3.3, 0.77, 1.5, 10.0]  # unsorted on purpose; one equals the first node
    res = sample(gaussian_chain, (5, 32), geometric_s_grid(10.0, 0.1, 12), "heun", rng=3,
                 observers={"mean": mean_field, "var": lambda s, y, d: y.var()},
                 observe_at=levels, progress=False)
    np.testing.assert_array_equal(res.observed_s, sorted(levels, reverse=True))
    assert set(levels) <= set(res.s_grid.tolist())
    assert res.observations["mean"].shape == (4, 5)
    assert res.observations["var"].shape == (4,)
    for s, y, denoised in seen:
        np.testing.assert_array_equal(denoised, gaussian_chain(y, s))  # D(y; s) itself
    assert len(res.s_grid) == 13 + 3  # three levels inserted, 10.0 was already a node
    default = sample(gaussian_chain, (2, 32), [4.0, 2.0, 1.0, 0.0], "euler", rng=0,
                     observers=[mean_field], progress=False)
    np.testing.assert_array_equal(default.observed_s, [4.0, 2.0, 1.0])  # every positive node
    assert list(default.observations) == ["mean_field"]
    everything = sample(gaussian_chain, (2, 32), [4.0, 2.0, 1.0, 0.0], "euler", rng=0, record="all",
                        progress=False)
    assert everything.states.shape == (4, 2, 32)
    np.testing.assert_array_equal(everything.states[-1], everything.samples)
    assert "SamplingResult(method=euler" in repr(everything)


@pytest.mark.parametrize("method", ["heun", "euler"])
def test_observed_denoiser_serves_exactly_the_observed_states(method, gaussian_chain):
    # the hook is used for the evaluations whose state the observers see, and only those
    hooked = []

    def observed(y, s):
        hooked.append((s, y))
        return gaussian_chain(y, s)

    def observer(s, y, denoised):
        if hooking:
            assert hooked and hooked[-1][0] == s and hooked[-1][1] is y  # same state object
        return y.mean()

    grid = geometric_s_grid(8.0, 0.2, 9)
    levels = [8.0, 2.0, 0.2]  # first node, an inner node, the last node
    kwargs = dict(observers=[observer], observe_at=levels, progress=False, rng=5)
    hooking = False
    plain = sample(gaussian_chain, (3, 32), grid, method, **kwargs)
    hooking = True
    res = sample(gaussian_chain, (3, 32), grid, method, observed_denoiser=observed, **kwargs)
    assert [s for s, _ in hooked] == levels
    assert res.n_denoiser_calls == plain.n_denoiser_calls  # replaces calls, adds none
    np.testing.assert_array_equal(res.samples, plain.samples)
    with pytest.raises(TypeError, match="observed_denoiser"):
        sample(gaussian_chain, (3, 32), grid, method, observed_denoiser=3.0, progress=False)


def test_progress_bar_can_be_disabled(capsys, gaussian_chain):
    sample(gaussian_chain, (2, 32), geometric_s_grid(5.0, 0.5, 4), "euler", rng=0, progress=False)
    assert capsys.readouterr().err == ""
    sample(gaussian_chain, (2, 32), geometric_s_grid(5.0, 0.5, 4), "euler", rng=0, progress=True)
    err = capsys.readouterr().err
    assert "sample [euler]" in err and "/4" in err  # a tqdm bar over the 4 steps


def test_reproducible_bit_for_bit_and_documented_draw_order(gaussian_chain):
    grid = geometric_s_grid(8.0, 0.2, 10)
    a = sample(gaussian_chain, (4, 32), grid, "euler_maruyama", rng=11, progress=False)
    b = sample(gaussian_chain, (4, 32), grid, "euler_maruyama", rng=np.random.default_rng(11), progress=False)
    c = sample(gaussian_chain, (4, 32), grid, "euler_maruyama", rng=12, progress=False)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert a.seed == 11 and b.seed is None
    # the documented order: initial eps, then one normal per stochastic step
    gen = np.random.default_rng(11)
    y = gaussian_chain.mean + grid[0] * gen.standard_normal((4, 32))
    stepper = EulerMaruyamaSampler()
    for s, s_next in zip(grid[:-1], grid[1:]):
        y = stepper.step(gaussian_chain, y, s, s_next, gaussian_chain(y, s), gen.standard_normal((4, 32)))
    np.testing.assert_array_equal(a.samples, y)


def test_memorizing_ensemble_lands_on_training_points_from_extreme_noise():
    data = np.random.default_rng(6).normal(size=(10, 3, 3))
    model = MemorizingDenoiser(data)
    res = sample(model, (6, 3, 3), geometric_s_grid(1e4, 1e-4, 120), "heun", rng=7, progress=False)
    dist = np.sqrt(((res.samples[:, None] - data[None]) ** 2).sum(axis=(2, 3))).min(axis=1)
    # near s -> 0 the flow is y - x_n ~ s (distance shrinks linearly): at s = 1e-4 the
    # remaining distance is ~1e-4 times the distance at s ~ 1, i.e. < 1e-3.
    assert np.all(dist < 1e-3)
    assert np.isclose(res.s_grid[0], 1e4) and res.s_grid[-1] == 1e-4
    res32 = sample(model, (6, 3, 3), geometric_s_grid(1e4, 1e-4, 120), "heun", rng=7, dtype=np.float32,
                   progress=False)
    assert res32.samples.dtype == np.float32 and np.all(np.isfinite(res32.samples))


def test_non_finite_values_raise_with_the_noise_level(gaussian_chain):
    def breaks_below_one(y, s):
        return np.full_like(y, np.nan) if s < 1.0 else y

    # grid 4, 2.83, 2, 1.41, 1, 0.71, ...: the first call below s = 1 is at 0.707
    with pytest.raises(FloatingPointError, match=r"s=0\.707"):
        sample(breaks_below_one, (2, 5), geometric_s_grid(4.0, 0.25, 8), "euler", rng=0, progress=False)

    def overflows(y, s):
        # finite outputs, but y - D = 3e308 overflows in the second step
        return np.full_like(y, 1.5e308 if s > 3 else -1.5e308)

    with pytest.raises(FloatingPointError, match=r"step 2 of 4 .*from s=2 to s=1"):
        sample(overflows, (2, 5), [4.0, 2.0, 1.0, 0.5, 0.25], "euler_maruyama", rng=0, progress=False)


def test_bad_input_is_refused_before_any_work(gaussian_chain):
    calls = []

    def counting(y, s):
        calls.append(s)
        return y

    shape = (2, 32)
    bad_grids = {
        "strictly decreasing": [1.0, 2.0, 0.5],
        "> 0 except": [1.0, -0.5, -1.0],
        "at least 2": [1.0],
        "finite": [np.inf, 1.0],
    }
    for message, grid in bad_grids.items():
        with pytest.raises(ValueError, match=message):
            sample(counting, shape, grid, "heun", rng=0, progress=False)
    with pytest.raises(ValueError, match="strictly decreasing"):
        validate_s_grid([2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="> 0 except"):
        validate_s_grid([2.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="method must be one of"):
        sample(counting, shape, [2.0, 1.0], "rk4", rng=0, progress=False)
    with pytest.raises(ValueError, match="eta applies only"):
        sample(counting, shape, [2.0, 1.0], "heun", eta=0.5, rng=0, progress=False)
    with pytest.raises(ValueError, match="eta must be in"):
        sample(counting, shape, [2.0, 1.0], "ddim", eta=1.5, rng=0, progress=False)
    with pytest.raises(ValueError, match="field shape"):
        sample(gaussian_chain, (2, 31), [2.0, 1.0], "heun", rng=0, progress=False)
    with pytest.raises(ValueError, match="batch axis"):
        sample(counting, (32,), [2.0, 1.0], "heun", rng=0, progress=False)
    with pytest.raises(TypeError, match="init"):
        sample(counting, "32", [2.0, 1.0], "heun", rng=0, progress=False)
    with pytest.raises(ValueError, match="observe_at"):
        sample(counting, shape, [2.0, 1.0], "heun", rng=0, observe_at=[3.0], progress=False)
    with pytest.raises(ValueError, match="record"):
        sample(counting, shape, [2.0, 1.0], "heun", rng=0, record="everything", progress=False)
    with pytest.raises(TypeError, match="observer"):
        sample(counting, shape, [2.0, 1.0], "heun", rng=0, observers={"x": 3}, progress=False)
    with pytest.raises(TypeError, match="rng"):
        sample(counting, shape, [2.0, 1.0], "heun", rng="seed", progress=False)
    with pytest.raises(ValueError, match="dtype"):
        sample(counting, np.zeros(shape), [2.0, 1.0], "heun", rng=0, dtype=np.int32, progress=False)
    with pytest.raises(TypeError, match="denoiser"):
        sample(None, shape, [2.0, 1.0], "heun", rng=0, progress=False)
    assert calls == []  # nothing was evaluated
    with pytest.raises(ValueError, match="different shapes"):
        sample(counting, shape, [2.0, 1.0], "euler", rng=0, progress=False,
               observers=lambda s, y, d: np.zeros(int(s)))
    with pytest.raises(ValueError, match="denoiser returned shape"):
        sample(lambda y, s: y[:, :3], shape, [2.0, 1.0], "heun", rng=0, progress=False)


# ------------------------------------------------------------------------- grids


def test_grids_and_inserted_levels():
    grid = geometric_s_grid(80.0, 0.002, 30)
    assert grid[0] == 80.0 and grid[-1] == 0.002 and len(grid) == 31
    np.testing.assert_allclose(np.diff(np.log(grid)), math.log(0.002 / 80.0) / 30, rtol=1e-12)
    merged = insert_noise_levels(grid, [5.0, grid[4] * (1 + 1e-12)])
    assert 5.0 in merged and len(merged) == 32  # the near-duplicate replaced node 4
    assert np.all(np.diff(merged) < 0)
    with pytest.raises(ValueError, match="s_max must be > s_min"):
        geometric_s_grid(1.0, 2.0, 5)


def test_s_grid_from_a_schedule_object():
    class EDMLike:
        """alpha = 1, sigma = t on a Karras rho = 7 grid: s(t) = t."""

        def grid(self, n):
            ramp = np.linspace(0, 1, n)
            return (80.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7

        def s(self, t):
            return np.asarray(t)

    grid = s_grid_from_schedule(EDMLike(), 18)
    assert len(grid) == 18 and math.isclose(grid[0], 80.0) and math.isclose(grid[-1], 0.002)

    class VPLike:
        """alpha_bar(t) = 1 - t: s = sqrt(t/(1 - t)); grid from high noise to t = 0."""

        def grid(self, n):
            return np.linspace(0.99, 0.0, n)

        def s(self, t):
            return np.sqrt(t / (1 - t))

    with pytest.raises(TypeError, match="schedule"):
        s_grid_from_schedule(3.0, 10)
    grid = s_grid_from_schedule(VPLike(), 10)
    assert grid[-1] == 0.0 and math.isclose(grid[0], math.sqrt(99.0))
    # a grid ending at s = 0 is accepted by the ODE samplers
    g = GaussianFieldDenoiser(spectrum=np.ones(4))
    assert sample(g, (1, 4), grid, "heun", rng=0, progress=False).samples.shape == (1, 4)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("method, stop_after, saved", [("heun", 7, True), ("euler_maruyama", 5, True),
                                                       ("heun", 1, False)])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, gaussian_chain, method, stop_after, saved):
    grid = geometric_s_grid(8.0, 0.2, 10)
    observers = {"mean": lambda s, y, d: y.mean(axis=1), "d": lambda s, y, d: d[:, :3]}
    kwargs = dict(observers=observers, progress=False, rng=11, record="observed", mean=0.0)
    whole = sample(gaussian_chain, (4, 32), grid, method, **kwargs)

    calls = [0]

    def dying(y, s):
        calls[0] += 1
        if calls[0] > stop_after:
            raise _Interrupt
        return gaussian_chain(y, s)

    path = tmp_path / "run.ckpt"
    with pytest.raises(_Interrupt):
        sample(dying, (4, 32), grid, method, checkpoint=path, checkpoint_every=0, **kwargs)
    # written after each finished step (Heun's first step needs three calls)
    assert path.is_file() == saved
    resumed = sample(gaussian_chain, (4, 32), grid, method, checkpoint=path, checkpoint_every=0, **kwargs)
    np.testing.assert_array_equal(resumed.samples, whole.samples)
    np.testing.assert_array_equal(resumed.observed_s, whole.observed_s)
    np.testing.assert_array_equal(resumed.states, whole.states)
    for name in observers:
        np.testing.assert_array_equal(resumed.observations[name], whole.observations[name])
    assert resumed.n_denoiser_calls == whole.n_denoiser_calls
    # a finished checkpoint gives the same result again without any denoiser call
    again = sample(lambda y, s: pytest.fail("no call expected"), (4, 32), grid, method, checkpoint=path, **kwargs)
    np.testing.assert_array_equal(again.samples, whole.samples)
    np.testing.assert_array_equal(again.observations["mean"], whole.observations["mean"])


def test_a_checkpoint_of_another_run_is_refused(tmp_path, gaussian_chain):
    grid = geometric_s_grid(8.0, 0.2, 6)
    path = tmp_path / "run.ckpt"
    sample(gaussian_chain, (2, 32), grid, "heun", rng=1, progress=False, checkpoint=path, checkpoint_key="A")
    with pytest.raises(ValueError, match=r"another run \(differs in \['key'\]\)"):
        sample(gaussian_chain, (2, 32), grid, "heun", rng=1, progress=False, checkpoint=path, checkpoint_key="B")
    with pytest.raises(ValueError, match="seed"):
        sample(gaussian_chain, (2, 32), grid, "heun", rng=2, progress=False, checkpoint=path, checkpoint_key="A")
    with pytest.raises(ValueError, match="grid"):
        sample(gaussian_chain, (2, 32), grid[:-1], "heun", rng=1, progress=False, checkpoint=path,
               checkpoint_key="A")
    with pytest.raises(ValueError, match="initial_state"):
        sample(gaussian_chain, (2, 32), grid, "heun", rng=1, progress=False, checkpoint=path,
               checkpoint_key="A", mean=5.0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        sample(gaussian_chain, (2, 32), grid, "heun", rng=1, progress=False, checkpoint=tmp_path / "x",
               checkpoint_every=-1.0)
    (tmp_path / "junk").write_bytes(b"\x80\x04N.")  # a pickled None
    with pytest.raises(ValueError, match="not a sampler checkpoint"):
        sample(gaussian_chain, (2, 32), grid, "heun", rng=1, progress=False, checkpoint=tmp_path / "junk")
