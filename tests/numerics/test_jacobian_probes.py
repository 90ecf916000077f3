"""Tests of the Fourier-probe Jacobian spectrum, Lanczos eigenpairs, stiffness and
response length, on denoisers with exactly known Jacobians."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffcrit.numerics.jacobian_probes import (
    central_difference_jvp,
    default_relative_step,
    fourier_jacobian_spectrum,
    fourier_plane_waves,
    jacobian_asymmetry,
    jacobian_top_eigenpairs,
    representative_wavevector_indices,
    response_correlation_length,
    smallest_shell_wavevector_indices,
    stiffness_curve,
)
from diffcrit.numerics.observables import critical_noise_estimates, lattice_q2

# ----------------------------------------------------------------------------
# inline denoisers with known Jacobians
# ----------------------------------------------------------------------------


def oz_power(shape, xi=2.0, amplitude=3.0):
    return amplitude / (1.0 + xi**2 * lattice_q2(shape))


def make_wiener(power, mean=0.0):
    """Exact denoiser of the Gaussian field N(mean, circulant(power)) (THEORY 3.1).

    ``D(y) = mean + IFFT(P/(P + s^2) FFT(y - mean))``; its Jacobian is the circulant
    with eigenvalues ``kappa_k = P_k/(P_k + s^2)``.
    """
    shape = power.shape
    axes = tuple(range(1, len(shape) + 1))

    def filt(v, s):
        return np.fft.ifftn(power / (power + s**2) * np.fft.fftn(v, axes=axes), axes=axes).real

    def denoiser(y, s):
        return mean + filt(y - mean, s)

    def jvp(y, s, v):
        return filt(v, s)

    return denoiser, jvp


def make_linear(matrix, shape):
    """Denoiser ``D(y) = A y`` (any matrix A): Jacobian A everywhere."""

    def denoiser(y, s):
        return (y.reshape(len(y), -1) @ matrix.T).reshape(y.shape)

    def jvp(y, s, v):
        return denoiser(v, s)

    def vjp(y, s, u):
        return (u.reshape(len(u), -1) @ matrix).reshape(u.shape)

    return denoiser, jvp, vjp


def make_two_point(m=1.0):
    """Per-site exact denoiser of iid pixels +-m: ``D = m tanh(m y / s^2)``.

    ``J = diag(m^2/s^2 sech^2(m y/s^2))``: state dependent and nonlinear.
    """

    def denoiser(y, s):
        return m * np.tanh(m * y / s**2)

    def jvp(y, s, v):
        return (m**2 / s**2) / np.cosh(m * y / s**2) ** 2 * v

    return denoiser, jvp


def complex_plane_wave(shape, index):
    sites = np.indices(shape).reshape(len(shape), -1).T
    phase = 2 * np.pi * (sites * (np.array(index) / np.array(shape))).sum(axis=1)
    return np.exp(1j * phase) / math.sqrt(sites.shape[0])


# ----------------------------------------------------------------------------
# wavevectors and waves
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8,), (7,), (6, 6), (4, 5)])
def test_probe_waves_form_an_orthonormal_basis(shape):
    cos, sin, selfc = fourier_plane_waves(shape)
    basis = np.concatenate([cos, sin[~selfc]]).reshape(-1, math.prod(shape))
    # one real wave per lattice point: the representatives cover the lattice
    assert basis.shape[0] == math.prod(shape)
    np.testing.assert_allclose(basis @ basis.T, np.eye(basis.shape[0]), atol=1e-12)  # roundoff


def test_representatives_and_shells():
    reps = representative_wavevector_indices((6, 6))
    # pairs {k, -k}: (36 + 4 self-conjugate) / 2 representatives
    assert reps.shape == (20, 2)
    chosen = smallest_shell_wavevector_indices((8, 8), 2)
    # k = 0, then (1,0), (0,1) [q^2 = 4 sin^2(pi/8)], then (1,1), (1,7) [twice that]
    assert [tuple(r) for r in chosen[:3]] == [(0, 0), (0, 1), (1, 0)]
    assert chosen.shape == (5, 2)
    q2 = lattice_q2((8, 8))[tuple(chosen.T)]
    np.testing.assert_allclose(q2[3:], 2 * q2[1], rtol=1e-14)


# ----------------------------------------------------------------------------
# exact spectra
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16,), (8, 8)])
@pytest.mark.parametrize("s", [0.3, 1.0, 4.0])
def test_wiener_filter_spectrum_is_exact_with_zero_leakage(shape, s):
    power = oz_power(shape)
    denoiser, jvp = make_wiener(power, mean=0.4)
    rng = np.random.default_rng(0)
    states = rng.normal(0.4, 1.0 + s, size=(3,) + shape)
    expected = (power / (power + s**2))[tuple(representative_wavevector_indices(shape).T)]
    fd = fourier_jacobian_spectrum(denoiser, states, s)
    exact = fourier_jacobian_spectrum(None, states, s, jvp=jvp)
    # jvp: the same filter, roundoff only
    np.testing.assert_allclose(exact.kappa, np.broadcast_to(expected, exact.kappa.shape), atol=1e-14)
    assert exact.leakage.max() < 1e-14
    # finite differences of a linear map: no truncation error; roundoff
    # eps |D| / h_site ~ 1e-16 * (|y| ~ 5) / (6e-6 * s) <= 3e-10
    np.testing.assert_allclose(fd.kappa, np.broadcast_to(expected, fd.kappa.shape), atol=1e-9)
    assert fd.leakage.max() < 1e-9
    assert fd.method == "finite_difference" and exact.method == "jvp"
    json.dumps(fd.to_dict())
    assert "FourierJacobianSpectrum" in repr(fd)


def test_non_equivariant_map_shows_leakage_and_diagonal_identities():
    shape = (4, 6)
    n = 24
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)) / 5
    denoiser, jvp, _ = make_linear(a, shape)
    spec = fourier_jacobian_spectrum(denoiser, rng.standard_normal((1,) + shape), 1.0)
    # kappa_hat(k) = Re <e_k, A e_k> with the complex unit plane wave
    for row, index in enumerate(spec.wavevector_indices):
        e = complex_plane_wave(shape, index)
        assert spec.kappa[0, row] == pytest.approx((e.conj() @ a @ e).real, abs=1e-9)
        # leakage by direct construction of the cosine wave (self-conjugate case)
        # or of both waves
        sites = np.indices(shape).reshape(2, -1).T
        phase = 2 * np.pi * (sites * (index / np.array(shape))).sum(axis=1)
        waves = [np.cos(phase), np.sin(phase)] if not spec.self_conjugate[row] else [np.cos(phase)]
        sq = [np.sum((a @ w / np.linalg.norm(w) - spec.kappa[0, row] * w / np.linalg.norm(w)) ** 2) for w in waves]
        assert spec.leakage[0, row] == pytest.approx(math.sqrt(np.mean(sq)), rel=1e-7, abs=1e-9)
    # summing over the whole lattice (pairs count twice) gives the trace
    multiplicity = np.where(spec.self_conjugate, 1, 2)
    assert (multiplicity * spec.kappa[0]).sum() == pytest.approx(np.trace(a), abs=1e-8)
    # a generic matrix leaks at O(|A|/sqrt(N)) per probe: far above the FD floor
    assert spec.leakage.min() > 1e-3


def test_antisymmetric_circulant_part_counts_as_leakage():
    # circulant with a complex multiplier mu(k): J c = Re mu c - Im mu s, so
    # kappa_hat = Re mu and the leakage is |Im mu| (rotation within the k subspace)
    shape = (9,)
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal(9)
    mu = np.fft.fft(kernel)  # D(y) = kernel (*) y (circular convolution)

    def denoiser(y, s):
        return np.fft.ifft(mu * np.fft.fft(y, axis=1), axis=1).real

    spec = fourier_jacobian_spectrum(denoiser, rng.standard_normal((1, 9)), 1.0)
    idx = spec.wavevector_indices[:, 0]
    np.testing.assert_allclose(spec.kappa[0], mu[idx].real, atol=1e-9)
    np.testing.assert_allclose(spec.leakage[0], np.abs(mu[idx].imag), atol=1e-9)


def test_finite_differences_match_analytic_jvp_on_a_nonlinear_denoiser():
    shape = (12, 12)
    denoiser, jvp = make_two_point(m=1.0)
    rng = np.random.default_rng(3)
    for s in (0.5, 1.0, 3.0):
        states = rng.choice([-1.0, 1.0], size=(2,) + shape) + s * rng.standard_normal((2,) + shape)
        fd = fourier_jacobian_spectrum(denoiser, states, s)
        exact = fourier_jacobian_spectrum(None, states, s, jvp=jvp)
        # default step: relative error ~ eps^(2/3)(|D|/(s|J|) + 1) + (rel |y|/s)^2 ~ 1e-9
        np.testing.assert_allclose(fd.kappa, exact.kappa, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(fd.leakage, exact.leakage, rtol=1e-6, atol=1e-8)
        # diagonal J: (c_i^2 + s_i^2)/2 = 1/N at every site, so kappa_hat(k) is the
        # site mean of J_ii for every k, exactly
        diag = (1.0 / s**2) / np.cosh(states / s**2) ** 2
        np.testing.assert_allclose(exact.kappa, np.broadcast_to(diag.mean(axis=(1, 2))[:, None], exact.kappa.shape), rtol=1e-12)


def test_central_difference_error_is_second_order():
    # declared order 2: doubling a step in the truncation-dominated range multiplies
    # the error by 4
    denoiser, jvp = make_two_point(m=1.0)
    rng = np.random.default_rng(4)
    y = 0.3 * rng.standard_normal((1, 32))
    v = rng.standard_normal((1, 32))
    exact = jvp(y, 1.0, v)
    errors = [np.linalg.norm(central_difference_jvp(denoiser, y, 1.0, v, fd_rel_step=h) - exact) for h in (2e-3, 4e-3, 8e-3)]
    ratios = np.array(errors[1:]) / np.array(errors[:-1])
    # next term is O(h^4): relative correction ~ (h sqrt(N))^2 ~ 0.07 at the largest step
    np.testing.assert_allclose(ratios, 4.0, rtol=0.1)
    # eps^(1/3): the float32/float64 ratio is (2^29)^(1/3)
    assert default_relative_step(np.float32) / default_relative_step(np.float64) == pytest.approx(2 ** (29 / 3), rel=1e-12)


# ----------------------------------------------------------------------------
# Lanczos
# ----------------------------------------------------------------------------


def test_lanczos_finds_top_eigenvalues_of_symmetric_non_equivariant_map():
    shape = (6, 6)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((36, 36))
    a = (a + a.T) / 12
    denoiser, jvp, _ = make_linear(a, shape)
    state = rng.standard_normal(shape)
    expected = np.linalg.eigvalsh(a)[::-1][:5]
    by_fd = jacobian_top_eigenpairs(denoiser, state, 0.8, rng=6, n_eigenvalues=5)
    by_jvp = jacobian_top_eigenpairs(None, state, 0.8, rng=6, n_eigenvalues=5, jvp=jvp)
    np.testing.assert_allclose(by_jvp.values, expected, rtol=1e-8)  # eigsh tol 1e-8
    np.testing.assert_allclose(by_fd.values, expected, rtol=1e-7)  # plus FD roundoff ~1e-10
    # eigenvectors: A v = lambda v
    vec = by_jvp.vectors.reshape(5, -1)
    np.testing.assert_allclose(vec @ a.T, by_jvp.values[:, None] * vec, atol=1e-6)
    assert by_fd.symmetry == "assumed" and "JacobianEigenpairs" in repr(by_fd)


def test_lanczos_on_the_symmetric_part_of_a_nonsymmetric_map():
    shape = (20,)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((20, 20)) / 4
    denoiser, jvp, vjp = make_linear(a, shape)
    res = jacobian_top_eigenpairs(denoiser, np.zeros(shape), 1.0, rng=8, n_eigenvalues=3, vjp=vjp, symmetrize=True)
    np.testing.assert_allclose(res.values, np.linalg.eigvalsh((a + a.T) / 2)[::-1][:3], rtol=1e-7)
    assert res.symmetry == "symmetrized"


def test_asymmetry_diagnostic():
    shape = (30,)
    rng = np.random.default_rng(9)
    sym = rng.standard_normal((30, 30))
    sym = sym + sym.T
    anti = rng.standard_normal((30, 30))
    anti = anti - anti.T
    state = rng.standard_normal(shape)
    sym_only = jacobian_asymmetry(make_linear(sym, shape)[0], state, 1.0, rng=10)
    assert sym_only < 1e-8  # FD roundoff only
    # P^T (S + eps K) P: antisymmetric part eps P^T K P, symmetric part P^T S P,
    # so with the same probes P the measure is exactly linear in eps
    small = jacobian_asymmetry(None, state, 1.0, rng=10, jvp=make_linear(sym + 0.05 * anti, shape)[1])
    large = jacobian_asymmetry(None, state, 1.0, rng=10, jvp=make_linear(sym + 0.1 * anti, shape)[1])
    assert large / small == pytest.approx(2.0, rel=1e-10)


# ----------------------------------------------------------------------------
# stiffness, response length, critical noise
# ----------------------------------------------------------------------------


def test_response_length_is_exact_for_quadratic_stiffness():
    # gamma(k) = g0 + b q^2 exactly on the lattice: chi(0)/chi(k_min) - 1 = b q^2/g0
    shape = (10, 10)
    idx = smallest_shell_wavevector_indices(shape, 3)
    q2 = lattice_q2(shape)[tuple(idx.T)]
    g0 = np.array([0.05, 0.2, 1.0])
    b = 0.7
    gamma = g0[:, None] + b * q2[None, :]
    np.testing.assert_allclose(response_correlation_length(gamma, idx, shape), np.sqrt(b / g0), rtol=1e-12)
    # conventions: unstable -> inf; chi peaked away from k = 0 -> 0
    assert response_correlation_length(gamma[0] - 0.1, idx, shape) == math.inf
    assert response_correlation_length(1.0 - 0.5 * q2, idx, shape) == 0.0


def test_stiffness_curve_of_wiener_filter():
    shape = (8, 8)
    amplitude, xi = 3.0, 2.0
    power = oz_power(shape, xi, amplitude)
    denoiser, jvp = make_wiener(power)
    rng = np.random.default_rng(11)
    states = rng.standard_normal((10,) + shape)
    s_grid = [2.0, 1.0, 0.5]
    idx = smallest_shell_wavevector_indices(shape, 2)
    spectra = [fourier_jacobian_spectrum(denoiser, states, s, wavevector_indices=idx) for s in s_grid]
    curve = stiffness_curve(spectra, n_bootstrap=50, rng=12)
    s = np.array(s_grid)
    q2 = 4 * math.sin(math.pi / 8) ** 2
    # gamma = s^2/(P + s^2), smallest at k = 0 where P is largest
    np.testing.assert_allclose(curve.gamma_min.values, s**2 / (amplitude + s**2), rtol=1e-9)
    p1 = amplitude / (1 + xi**2 * q2)
    np.testing.assert_allclose(curve.gamma_kmin.values, s**2 / (p1 + s**2), rtol=1e-9)
    # chi = 1 + P/s^2, so chi(0)/chi(k_min) - 1 = (A - P1)/(s^2 + P1), hence
    # xi_J^2 = A xi^2 / (A + s^2 (1 + xi^2 q^2)) (tends to xi as s -> 0)
    xi_j = np.sqrt(amplitude * xi**2 / (amplitude + s**2 * (1 + xi**2 * q2)))
    np.testing.assert_allclose(curve.xi_J.values, xi_j, rtol=1e-8)
    # a linear denoiser: every state has the same Jacobian, replicates equal values
    np.testing.assert_allclose(curve.xi_J.replicates, np.repeat(xi_j[:, None], 50, axis=1), rtol=1e-8)
    np.testing.assert_allclose(curve.susceptibility.values, 1 / curve.gamma_min.values, rtol=1e-14)
    assert [tuple(k) for k in curve.k_at_min] == [(0, 0)] * 3
    json.dumps(curve.to_dict())
    assert "StiffnessCurve" in repr(curve)


def test_measured_critical_noise_of_a_softening_linear_model():
    # moment-level model (THEORY 3.3, level 1): circulant J with kappa(k, s) = P(k)/s^2,
    # so gamma(0, s) = 1 - P(0)/s^2 crosses zero at s_c = sqrt(P(0))
    shape = (8,)
    power = oz_power(shape, xi=1.5, amplitude=2.0)

    def denoiser(y, s):
        return np.fft.ifft(power / s**2 * np.fft.fft(y, axis=1), axis=1).real

    s_grid = np.geomspace(3.0, 1.0, 41)  # ln-spacing h = 0.027
    states = np.zeros((1,) + shape)
    idx = smallest_shell_wavevector_indices(shape, 1)
    spectra = [fourier_jacobian_spectrum(denoiser, states, s, wavevector_indices=idx) for s in s_grid]
    curve = stiffness_curve(spectra, n_bootstrap=0)
    res = critical_noise_estimates(s_grid, gamma_min_samples=curve.gamma_min, xi_J_samples=curve.xi_J)
    s_c = math.sqrt(2.0)
    # gamma = 1 - P0 e^{-2 ln s} is convex in ln s; linear interpolation misplaces the
    # root by at most h^2 |gamma''| / (8 |gamma'|) = h^2/2 ~ 4e-4 in ln s
    assert abs(math.log(res.zero_crossing.value / s_c)) < 4e-4
    # xi_J diverges at the crossing: the first infinite value is the first grid
    # point below s_c
    below = s_grid[s_grid < s_c].max()
    assert res.response_peak.value == pytest.approx(below, rel=1e-12)
    assert curve.xi_J.values[s_grid < s_c].tolist() == [math.inf] * int((s_grid < s_c).sum())


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    shape = (6, 6)
    denoiser, jvp = make_wiener(oz_power(shape))
    states = np.zeros((2,) + shape)
    with pytest.raises(ValueError, match="s must be"):
        fourier_jacobian_spectrum(denoiser, states, 0.0)
    with pytest.raises(TypeError, match="denoiser or a jvp"):
        fourier_jacobian_spectrum(None, states, 1.0)
    with pytest.raises(TypeError, match="callable"):
        fourier_jacobian_spectrum("wiener", states, 1.0)
    with pytest.raises(ValueError, match="returned shape"):
        fourier_jacobian_spectrum(lambda y, s: y[:, :3], states, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        fourier_jacobian_spectrum(lambda y, s: np.full_like(y, np.nan), states, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        fourier_jacobian_spectrum(denoiser, np.full((1,) + shape, np.nan), 1.0)
    with pytest.raises(ValueError, match="wavevector_indices"):
        fourier_jacobian_spectrum(denoiser, states, 1.0, wavevector_indices=np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="fd_rel_step"):
        fourier_jacobian_spectrum(denoiser, states, 1.0, fd_rel_step=-1.0)
    with pytest.raises(ValueError, match="vjp"):
        jacobian_top_eigenpairs(denoiser, states[0], 1.0, rng=1, symmetrize=True)
    with pytest.raises(ValueError, match="n_eigenvalues"):
        jacobian_top_eigenpairs(denoiser, states[0], 1.0, rng=1, n_eigenvalues=36)
    with pytest.raises(TypeError, match="rng"):
        jacobian_top_eigenpairs(denoiser, states[0], 1.0, rng=None)
    a = fourier_jacobian_spectrum(denoiser, states, 1.0)
    b = fourier_jacobian_spectrum(denoiser, states[:1], 0.5)
    with pytest.raises(ValueError, match="same trajectories"):
        stiffness_curve([a, b], n_bootstrap=0)
    with pytest.raises(ValueError, match="at least 8"):
        stiffness_curve([a], n_bootstrap=10, rng=1)
    with pytest.raises(ValueError, match="k = 0"):
        response_correlation_length(np.ones(2), np.array([[1, 0], [0, 1]]), shape)
