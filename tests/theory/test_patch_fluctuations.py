"""Linear fluctuation theory: structure factor along a reference trajectory, xi_2, saturation."""

from __future__ import annotations

import numpy as np
import pytest

from diffcrit.theory.patch import (
    linear_saturation_noise,
    linear_structure_factor,
    moment_level,
    second_moment_length,
)
from diffcrit.theory.patch_stats import patch_statistics, windowed_spectrum
from tests.theory.test_patch_reference import binary_texture


def test_ode_structure_factor_matches_the_moment_level_closed_form():
    """gamma = 1 - A/s^2 gives ln S = ln S0 + 2 ln(s/s0) + A (1/s^2 - 1/s0^2) exactly."""
    A = np.array([[0.5, 1.2], [2.0, -0.3]])
    s0 = 5.0
    s = np.geomspace(s0, 0.6, 12)
    logS = linear_structure_factor(lambda v: 1.0 - A / v**2, s, s0, initial=s0**2)
    exact = np.log(s0**2) + 2 * np.log(s / s0)[:, None, None] + A[None] * (1 / s**2 - 1 / s0**2)[:, None, None]
    # DOP853 at rtol = atol = 1e-8 on ln S over ~2 e-folds of s
    np.testing.assert_allclose(logS, exact, atol=1e-6)


@pytest.mark.parametrize("dynamics", ["ode", "sde"])
def test_gaussian_mode_is_exact(dynamics):
    """Gaussian null model (THEORY.md 3.1): gamma = s^2/(lam + s^2).

    ODE: S = S0 (lam + s^2)/(lam + s0^2). SDE started on the marginal (S0 = lam + s0^2): S = lam + s^2.
    """
    lam = np.array([0.1, 1.0, 4.0])
    s0 = 10.0
    s = np.geomspace(s0, 0.05, 15)
    gamma = lambda v: v**2 / (lam + v**2)  # noqa: E731
    init = lam + s0**2 if dynamics == "sde" else np.full(3, 2.0)
    logS = linear_structure_factor(gamma, s, s0, initial=init, dynamics=dynamics)
    if dynamics == "ode":
        exact = np.log(2.0 * (lam + s[:, None] ** 2) / (lam + s0**2))
    else:
        exact = np.log(lam + s[:, None] ** 2)
    # solver tolerance 1e-8 on ln S, accumulated over ~5 e-folds of s
    np.testing.assert_allclose(logS, exact, atol=1e-5)


def test_sde_variance_matches_a_direct_simulation_of_the_linear_sde():
    """Euler-Maruyama of d delta = 2 gamma delta ds/s + sqrt(2 s |ds|) xi with a softening gamma."""
    rng = np.random.default_rng(0)
    A = 2.0  # gamma = 1 - A/s^2 crosses zero at s = sqrt(2)
    s0, s_end = 4.0, 1.0
    n_paths, n_steps = 20000, 2000
    s_path = np.geomspace(s0, s_end, n_steps + 1)
    delta = s0 * rng.standard_normal(n_paths)  # S(s0) = s0^2
    checkpoints = {2.0: None, 1.4: None, 1.0: None}
    for a, b in zip(s_path[:-1], s_path[1:]):
        ds = b - a
        gamma = 1.0 - A / a**2
        delta = delta + 2 * gamma * delta * ds / a + np.sqrt(2 * a * abs(ds)) * rng.standard_normal(n_paths)
        for c in checkpoints:
            if checkpoints[c] is None and b <= c:
                checkpoints[c] = (b, np.var(delta))
    s_eval = np.array([v[0] for v in checkpoints.values()])
    var_sim = np.array([v[1] for v in checkpoints.values()])
    logS = linear_structure_factor(lambda v: np.array([1.0 - A / v**2]), s_eval, s0, initial=s0**2, dynamics="sde")
    # sample variance: relative SE sqrt(2/n) = 1%; Euler-Maruyama bias O(step in ln s)
    # ~ 7e-4 per unit ln s; 4 standard errors
    np.testing.assert_allclose(np.exp(logS[:, 0]), var_sim, rtol=0.04)
    # the noise injection matters: without it (ODE) the variance is far smaller
    logS_ode = linear_structure_factor(lambda v: np.array([1.0 - A / v**2]), s_eval, s0, initial=s0**2)
    assert np.all(np.exp(logS_ode[1:, 0]) < 0.85 * var_sim[1:])


def test_second_moment_length_estimator():
    L, xi = 16, 3.0
    k = 2 * np.pi * np.fft.fftfreq(L)
    q2 = (4 * np.sin(k[:, None] / 2) ** 2) + (4 * np.sin(k[None, :] / 2) ** 2)
    oz = np.log(1.0 / (1.0 + xi**2 * q2))
    # Ornstein-Zernike: the lattice second-moment estimator is exact
    assert float(second_moment_length(oz[None])[0]) == pytest.approx(xi, rel=1e-12)
    assert float(second_moment_length(np.zeros((1, L, L)))[0]) == 0.0  # white
    dip = np.zeros((1, L, L))
    dip[0, 0, 0] = -1.0  # S(0) < S(k_min): reads 0
    assert float(second_moment_length(dip)[0]) == 0.0
    huge = np.zeros((1, L, L))
    huge[0, 0, 0] = 1e4
    assert np.isinf(second_moment_length(huge)[0])


def test_saturation_noise():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    logS = np.log(np.array([1.0, 2.0, 30.0, 100.0]))[:, None] * np.ones((4, 8))
    # per-site variance mean_k S against var + s^2 with var = 1: 17, 5, 2, 1.25
    assert linear_saturation_noise(logS, s, 1.0) == 1.0
    assert linear_saturation_noise(np.zeros((4, 8)), s, 1.0) is None


def test_moment_level_xi2_follows_the_closed_form():
    images = binary_texture(10, (8, 8), 1.3, rng=3)
    st = patch_statistics(images, 3)
    grid = np.geomspace(3.0, 0.8, 20)
    res = moment_level(st, s_grid=grid)
    SW = windowed_spectrum(st)
    s0 = grid[0]
    logS = np.log(s0**2) + 2 * np.log(grid / s0)[:, None, None] + SW[None] * (1 / grid**2 - 1 / s0**2)[:, None, None]
    np.testing.assert_allclose(res.log_structure_factor, logS, atol=1e-6)
    # xi_2 from the closed form: ratio S(0)/S(k_min) = exp((S_W(0) - S_W(k_min)) (1/s^2 - 1/s0^2))
    dS = SW[0, 0] - 0.5 * (SW[0, 1] + SW[0, 7]), SW[0, 0] - 0.5 * (SW[1, 0] + SW[7, 0])
    xi = np.mean([np.sqrt(np.maximum(np.expm1(d * (1 / grid**2 - 1 / s0**2)), 0)) for d in dS], axis=0)
    np.testing.assert_allclose(res.xi_2, xi / (2 * np.sin(np.pi / 8)), rtol=1e-5)
    assert res.s_saturation is None or res.s_saturation < res.s_c


def test_fluctuation_input_errors():
    with pytest.raises(ValueError, match="dynamics"):
        linear_structure_factor(lambda s: np.ones(2), [1.0], 2.0, dynamics="ito")
    with pytest.raises(ValueError, match="s_start"):
        linear_structure_factor(lambda s: np.ones(2), [3.0], 2.0)
    with pytest.raises(ValueError, match="initial"):
        linear_structure_factor(lambda s: np.ones(2), [1.0], 2.0, initial=-1.0)
