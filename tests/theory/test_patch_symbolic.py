"""Symbolic derivations of the patch linear theory, and their bridge to the numerics."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from diffcrit.theory.patch import gradient_stiffness
from diffcrit.theory.patch_stats import local_jacobian_kernel, patch_statistics, tilted_kernel
from diffcrit.theory.patch_symbolic import (
    homogeneous_flow,
    homogeneous_high_noise_expansion,
    high_noise_kernel_leading_term,
    jacobian_residual,
    ode_mode_variance_rate,
    plane_wave_eigenvalue,
    plane_wave_residual,
    sde_mode_variance_rate,
    small_k_stiffness,
    tilted_covariance_kernel,
)


@pytest.mark.parametrize("n_patches,n_offsets", [(2, 3), (3, 2)])
def test_softmax_jacobian_is_the_tilted_covariance(n_patches, n_offsets):
    assert all(jacobian_residual(n_patches, n_offsets))


def test_symbolic_kernel_evaluates_to_the_numeric_one_at_any_state():
    """Lambdify Cov_w/s^2 for the 3 distinct patches of a 3-site ring; compare with the numerics."""
    images = np.array([[0.0, 1.0, 3.0]])
    st = patch_statistics(images, 3)  # 3 distinct patches, offsets (0, -1, +1)
    K_sym = tilted_covariance_kernel(3, 3)
    symbols = sorted(K_sym.free_symbols, key=str)
    fn = sp.lambdify(symbols, K_sym, "numpy")
    patches = st.patches + st.mean
    rng = np.random.default_rng(0)
    for s in (0.3, 1.0, 4.0):
        local = rng.normal(1.0, 1.0, size=3)
        values = {f"phi{a}_{r}": patches[a, r] for a in range(3) for r in range(3)}
        values.update({f"y{r}": local[r] for r in range(3)})
        values["s"] = s
        got_sym = np.asarray(fn(*[values[str(v)] for v in symbols]), dtype=float).ravel()
        # the same state as a field on the 3-site ring: pixel 0 sees (y0, y[-1], y[+1])
        field = np.array([[local[0], local[2], local[1]]])
        got_num = local_jacobian_kernel(st, field, s)[0, 0]
        # float64 evaluation of the same closed form in two ways
        np.testing.assert_allclose(got_num, got_sym, rtol=1e-10, atol=1e-12)
        homogeneous = {**values, "y0": 0.7, "y1": 0.7, "y2": 0.7}
        got_hom = np.asarray(fn(*[homogeneous[str(v)] for v in symbols]), dtype=float).ravel()
        np.testing.assert_allclose(tilted_kernel(st, 0.7, s), got_hom, rtol=1e-10, atol=1e-12)


def test_homogeneous_fields_move_by_the_scalar_ode():
    v, c, s, h = homogeneous_flow(5, 1)
    assert all(sp.simplify(vi - (c - h) / s) == 0 for vi in v)


def test_plane_waves_diagonalise_every_periodic_convolution():
    assert plane_wave_residual(6, 2).applyfunc(sp.simplify) == sp.zeros(6, 6)
    lam, re, im, k, K = plane_wave_eigenvalue(2)
    # Im lambda = sum_{r>0} (K_r - K_{-r}) sin(k r): zero for even kernels only
    assert sp.simplify(im.subs({K[-1]: K[1], K[-2]: K[2]})) == 0
    assert sp.simplify(im - sum((K[r] - K[-r]) * sp.sin(k * r) for r in (1, 2))) == 0


def test_high_noise_kernel_is_the_uniform_covariance():
    assert high_noise_kernel_leading_term(3, 2).applyfunc(sp.simplify) == sp.zeros(1, 2)


def test_high_noise_trajectory_coefficient():
    beta = sp.Symbol("beta", real=True)
    assert sp.simplify(homogeneous_high_noise_expansion(1) - beta / 3) == 0
    assert sp.simplify(homogeneous_high_noise_expansion(2) - beta / 2) == 0


@pytest.mark.parametrize("dim,radius", [(1, 2), (2, 1), (2, 2), (3, 1)])
def test_small_k_coefficient_is_sum_r2_K_over_2d(dim, radius):
    gamma0, b, K = small_k_stiffness(dim, radius)
    expected = sum(sum(x * x for x in r) * v for r, v in K.items()) / (2 * dim)
    assert sp.simplify(b - expected) == 0
    assert sp.simplify(gamma0 - (1 - sum(K.values()))) == 0
    # bridge: the numeric gradient_stiffness evaluates the same expression
    rng = np.random.default_rng(dim + radius)
    orbit_values = {sym: rng.normal() for sym in set(K.values())}
    offsets = np.array(list(K.keys()))
    kernel = np.array([orbit_values[K[tuple(r)]] for r in offsets])
    # exact arithmetic vs float64 sum
    assert float(b.subs(orbit_values)) == pytest.approx(float(gradient_stiffness(kernel, offsets)), rel=1e-12)


def test_mode_variance_rates():
    rate, S, gamma = ode_mode_variance_rate()
    assert sp.simplify(rate - 2 * gamma * S) == 0
    rate, S, gamma, s = sde_mode_variance_rate()
    assert sp.simplify(rate - (4 * gamma * S - 2 * s**2)) == 0
    # Gaussian null model: gamma = s^2/(lam + s^2) keeps S = lam + s^2 (THEORY.md 3.1)
    lam = sp.Symbol("lambda", positive=True)
    assert sp.simplify(rate.subs({gamma: s**2 / (lam + s**2), S: lam + s**2}) - s * sp.diff(lam + s**2, s)) == 0


def test_symbolic_input_errors():
    with pytest.raises(ValueError, match="n_patches"):
        tilted_covariance_kernel(0, 2)
    with pytest.raises(ValueError, match="does not fit"):
        plane_wave_residual(3, 2)
    with pytest.raises(ValueError, match="factor"):
        homogeneous_high_noise_expansion(0)
