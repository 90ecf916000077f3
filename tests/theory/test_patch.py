"""The three levels of the patch linear theory: critical points, modes, lengths, API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq

from diffcrit.theory.patch import (
    MarginalKernelEstimator,
    critical_mode_index,
    gradient_stiffness,
    high_noise_approximation_error,
    homogeneous_kernel,
    homogeneous_level,
    marginal_level,
    moment_level,
    patch_theory,
    response_correlation_length,
)
from diffcrit.theory.patch_stats import (
    homogeneous_trajectory,
    kernel_fourier_eigenvalues,
    kernel_fourier_kappa,
    patch_statistics,
    windowed_spectrum,
)
from tests.theory.test_patch_reference import (
    all_patches,
    binary_texture,
    fd_jacobian,
    gaussian_field,
    standardized_digits,
    stripe_images,
)


@pytest.fixture(scope="module")
def digits():
    return standardized_digits()


@pytest.fixture(scope="module")
def grf():
    """Positively correlated Gaussian fields, 16x16 periodic."""
    return gaussian_field(40, (16, 16), 1.5, rng=0)


# --------------------------------------------------------------------------- THEORY.md 2 on digits


@pytest.mark.parametrize("size,quoted_kappa", [(3, 0.72), (5, 0.75)])
def test_digits_small_windows_never_go_unstable(digits, size, quoted_kappa):
    """THEORY.md: windows 3 and 5 stay stable on the homogeneous trajectory, max kappa ~0.72, ~0.75 near s = 2."""
    st = patch_statistics(digits, size)
    grid = np.geomspace(3.0, 1.2, 12)
    res = homogeneous_level(st, s_grid=grid, fluctuations=False)
    assert res.kind == "pseudo-critical"
    assert 1.5 < res.s_c < 2.5
    # the refined maximum dominates every scanned value and sets the stiffness
    assert res.kappa_c >= res.kappa.reshape(len(grid), -1).max() - 1e-12
    assert res.min_stiffness == pytest.approx(1 - res.kappa_c, abs=1e-15)
    # THEORY.md quotes two digits ("about"); the dense maximum lies within 0.02
    assert abs(res.kappa_c - quoted_kappa) < 0.02


def test_digits_window_seven_goes_unstable_at_3_04(digits):
    st = patch_statistics(digits, 7)
    grid = np.geomspace(4.0, 2.5, 16)
    res = homogeneous_level(st, s_grid=grid, fluctuations=False)
    assert res.kind == "critical"
    assert res.k_c == (0, 1)  # k = (0, 2 pi / 8)
    # THEORY.md quotes 3.04 (three digits)
    assert abs(res.s_c - 3.04) < 0.005
    # brentq: max_k kappa = 1 at s_c; below 1 at every scanned s above it
    _, K = homogeneous_kernel(st, homogeneous_trajectory(st, 2.5), np.array([res.s_c]))
    assert kernel_fourier_kappa(K[0], st.offsets, (8, 8)).max() == pytest.approx(1.0, abs=1e-7)
    above = grid > res.s_c
    assert np.all(res.gamma_min[above] > 0)


def test_moment_level_is_the_windowed_spectrum(digits):
    st = patch_statistics(digits, 3)
    res = moment_level(st, s_grid=np.geomspace(4, 1, 5), fluctuations=False)
    SW = windowed_spectrum(st)
    assert res.s_c == pytest.approx(np.sqrt(SW.max()), rel=1e-14)
    np.testing.assert_allclose(res.kappa, SW[None] / res.s_grid[:, None, None] ** 2, rtol=1e-12)
    np.testing.assert_allclose(res.kappa_imag, 0.0, atol=1e-12)


# --------------------------------------------------------------------------- modes and windows


def test_stripes_give_a_finite_wavelength_instability():
    """Period-4 stripes: S_W peaks at k = (0, 2 pi/4) for window 5, and so does the tilted kernel."""
    images = stripe_images(30, 16, 4, rng=3)
    st = patch_statistics(images, 5)
    r1 = moment_level(st, fluctuations=False)
    r2 = homogeneous_level(st, fluctuations=False)
    assert r1.k_c == (0, 4) and r2.k_c == (0, 4)
    assert r2.kind == "critical"


def test_larger_windows_destabilize_earlier_for_positive_correlations(grf):
    s_c1, s_c2 = [], []
    for size in (3, 5, 7):
        st = patch_statistics(grf, size)
        s_c1.append(moment_level(st, fluctuations=False).s_c)
        r2 = homogeneous_level(st, s_grid=np.geomspace(noise_scan_top(st), 0.3, 40), fluctuations=False)
        assert r2.kind == "critical" and r2.k_c == (0, 0)
        s_c2.append(r2.s_c)
    assert np.all(np.diff(s_c1) > 0) and np.all(np.diff(s_c2) > 0)


def noise_scan_top(st):
    from diffcrit.theory.patch_stats import noise_scan_upper_bound

    return noise_scan_upper_bound(st)


def test_balanced_binary_data_make_levels_one_and_two_identical():
    """+-1 data with zero mean: c(s) = 0 and every patch has the same norm, so the tilt vanishes."""
    images = binary_texture(10, (16, 16), 1.5, rng=1, symmetric=True)
    st = patch_statistics(images, 3)
    grid = np.geomspace(noise_scan_top(st), 0.2, 30)
    r1 = moment_level(st, s_grid=grid, fluctuations=False)
    r2 = homogeneous_level(st, s_grid=grid, fluctuations=False)
    assert r2.s_c == pytest.approx(r1.s_c, rel=1e-10)
    # one-pass covariance rounding ~1e-16 relative to C(r)/s^2. Below s_c the
    # critical mode is k = 0: c = 0 turns unstable and rounding picks a branch.
    stable = grid >= r1.s_c
    np.testing.assert_allclose(r2.kernel[stable], r1.kernel[stable], rtol=1e-10)
    assert any("homogeneous trajectory itself" in note for note in r2.notes)


def test_critical_point_does_not_depend_on_the_scan_density(grf):
    st = patch_statistics(grf, 3)
    top = noise_scan_top(st)
    coarse = homogeneous_level(st, s_grid=np.geomspace(top, 0.3, 8), fluctuations=False)
    dense = homogeneous_level(st, s_grid=np.geomspace(top, 0.3, 120), fluctuations=False)
    # brentq to xtol 1e-14 on the same trajectory; dense outputs differ at ~1e-10
    assert coarse.s_c == pytest.approx(dense.s_c, rel=1e-8)


def test_critical_mode_tie_breaking():
    kappa = np.zeros((8, 8))
    kappa[0, 1] = kappa[0, 7] = kappa[1, 0] = kappa[7, 0] = 2.0
    assert critical_mode_index(kappa) == (1, 0)
    kappa[1, 0] = kappa[7, 0] = 1.0
    assert critical_mode_index(kappa) == (0, 1)


# --------------------------------------------------------------------------- small-k expansion, xi_J


def test_gradient_stiffness_is_the_small_k_curvature(digits):
    """b = (1/d) sum_a (1/2) d^2 gamma/dk_a^2 at k = 0, by finite differences in continuous k."""
    st = patch_statistics(digits, 5)
    _, K = homogeneous_kernel(st, homogeneous_trajectory(st, 1.5), np.array([1.5]))
    K = K[0]

    def gamma(k):
        return 1.0 - np.sum(K * np.cos(st.offsets @ k))

    eps = 1e-3
    curv = [(gamma(eps * e) - 2 * gamma(np.zeros(2)) + gamma(-eps * e)) / eps**2 for e in np.eye(2)]
    # FD truncation ~ eps^2 sum |r|^4 |K| / 12 <~ 1e-5 here; rounding ~1e-16/eps^2 = 1e-10
    assert np.mean(curv) / 2 == pytest.approx(float(gradient_stiffness(K, st.offsets)), abs=1e-5)


def test_response_length_diverges_with_exponent_one_half(grf):
    st = patch_statistics(grf, 3)
    traj = homogeneous_trajectory(st, 0.5)

    def kernel(s):
        return homogeneous_kernel(st, traj, np.array([s]))[1][0]

    s_c = brentq(lambda s: 1.0 - kernel(s).sum(), 0.7, 1.5, xtol=1e-15)
    res = homogeneous_level(st, s_grid=np.geomspace(noise_scan_top(st), 0.5, 40), fluctuations=False)
    # the level's own search finds the same crossing (k_c = 0 is the softest mode)
    assert res.k_c == (0, 0) and res.s_c == pytest.approx(s_c, rel=1e-8)
    delta = np.geomspace(1e-5, 1e-3, 5)
    xi = np.array([float(response_correlation_length(kernel(s_c * (1 + d)), st.offsets)) for d in delta])
    slope = np.polyfit(np.log(delta), np.log(xi), 1)[0]
    # gamma_0 = a (s - s_c)(1 + O(delta)): the local slope is -1/2 + O(1e-3)
    assert slope == pytest.approx(-0.5, abs=5e-3)


# --------------------------------------------------------------------------- level 1 vs level 2


def test_high_noise_error_decays_as_inverse_square():
    images = binary_texture(10, (8, 8), 1.3, rng=12, threshold=0.4)
    st = patch_statistics(images, 3)
    s = np.array([10.0, 20.0, 40.0]) * st.std
    err = high_noise_approximation_error(st, s)["relative_error"]
    slopes = np.diff(np.log(err)) / np.diff(np.log(s))
    # tilted weights are uniform up to O(1/s^2); the next order shifts the slope by O(1/s^2) ~ 1e-2
    np.testing.assert_allclose(slopes, -2.0, atol=0.05)


# --------------------------------------------------------------------------- level 3


@pytest.fixture(scope="module")
def small_texture():
    images = binary_texture(12, (8, 8), 1.2, rng=13, threshold=0.3)
    return images, patch_statistics(images, 3)


def test_marginal_kernel_is_the_plane_wave_probe_of_the_fd_jacobian(small_texture):
    images, st = small_texture
    est = MarginalKernelEstimator(st, images, n_samples=2, pixels_per_sample=None, rng=4)
    patches, offsets = all_patches(images, 3)
    sites = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(-1, 2)
    for s in (1.2, 0.5):
        field = est.fields(s)[0]
        J = fd_jacobian(field, patches, offsets, s, h=1e-4 * min(1.0, s * s))
        lam = kernel_fourier_eigenvalues(est.sample_kernels(s)[0], st.offsets, (8, 8))
        for n in ([0, 0], [0, 1], [2, 3], [4, 4]):
            e = np.exp(1j * sites @ (2 * np.pi * np.array(n) / 8)) / 8.0
            probe = np.conj(e) @ J @ e
            # FD error (~1e-7 per entry) summed over a 9-entry band per row
            assert abs(probe - lam[tuple(n)]) < 1e-5


def test_marginal_standard_error_is_calibrated(small_texture):
    images, st = small_texture
    means, errors = [], []
    for seed in range(8):
        est = MarginalKernelEstimator(st, images, n_samples=16, pixels_per_sample=None, rng=seed)
        mean, se = est.kappa(np.array([0.8]), (8, 8))
        means.append(mean[0, 0, 0])
        errors.append(se[0, 0, 0])
    ratio = np.std(means, ddof=1) / np.mean(errors)
    # 8 seeds: the sample std / sigma lies in [0.38, 1.70] with 99% probability
    # (chi^2_7); widened to [0.3, 2.0] for the ~18% noise of each 16-draw SE
    assert 0.3 < ratio < 2.0


def test_marginal_level_tends_to_the_moment_level_at_high_noise(small_texture):
    images, st = small_texture
    s = 30 * st.std
    est = MarginalKernelEstimator(st, images, n_samples=24, pixels_per_sample=None, rng=5)
    mean, se = est.kappa(np.array([s]), (8, 8))
    kappa1 = windowed_spectrum(st) / s**2
    # E kappa_bar = kappa_1 + O(1/s^2) (the O(1/s) term is odd in eps); 5 standard errors
    assert np.all(np.abs(mean[0] - kappa1) < 5 * se[0] + 1e-3 * np.abs(kappa1).max())


def test_marginal_level_result_and_lattice_change(small_texture):
    images, st = small_texture
    grid = np.geomspace(3.0, 0.3, 10)
    r8 = marginal_level(st, images, s_grid=grid, n_samples=6, rng=7, fluctuations=False)
    r16 = marginal_level(st, images, lattice=16, s_grid=grid, n_samples=6, rng=7, fluctuations=False)
    assert r8.kappa.shape == (10, 8, 8) and r16.kappa.shape == (10, 16, 16)
    assert r8.kappa_stderr.shape == r8.kappa.shape and np.all(r8.kappa_stderr >= 0)
    # the same annealed kernel: the 8-lattice wavevectors are the even 16-lattice ones
    np.testing.assert_allclose(r16.kappa[:, ::2, ::2], r8.kappa, atol=1e-12)
    if r8.kind == "critical":
        est = MarginalKernelEstimator(st, images, n_samples=6, rng=7)
        kappa_at_sc = kernel_fourier_kappa(est.kernel(np.array([r8.s_c]))[0][0], st.offsets, (8, 8))
        assert kappa_at_sc.max() == pytest.approx(1.0, abs=1e-7)
    else:
        assert r8.kappa_c >= r8.kappa.reshape(10, -1).max() - 1e-12


# --------------------------------------------------------------------------- API


def test_patch_theory_api_fields_and_serialisation():
    images = binary_texture(8, (8, 8), 1.3, rng=14, threshold=0.3)
    res = patch_theory(images, 3, level=2, s_grid=np.geomspace(3, 0.2, 25))
    assert res.level == "homogeneous" and res.kind in ("critical", "pseudo-critical")
    n = len(res.s_grid)
    assert res.kappa.shape == (n, 8, 8) and res.kernel.shape == (n, 9)
    assert res.gamma_min.shape == res.xi_J.shape == res.xi_2.shape == res.trajectory_c.shape == (n,)
    np.testing.assert_allclose(res.gamma_min, 1 - res.kappa.reshape(n, -1).max(axis=1))
    np.testing.assert_allclose(res.gamma_zero, 1 - res.kernel.sum(axis=1), atol=1e-12)
    json.dumps(res.to_dict())
    assert "homogeneous" in repr(res)
    res1 = patch_theory(images, 3, level="moment", lattice=(12, 12), s_grid=np.geomspace(3, 0.2, 25))
    assert res1.kappa.shape == (25, 12, 12)
    assert np.allclose(res1.k_c_wavevector, 2 * np.pi * np.array(res1.k_c) / 12)


def test_patch_theory_bad_input():
    images = binary_texture(4, (8, 8), 1.3, rng=15)
    with pytest.raises(ValueError, match="level"):
        patch_theory(images, 3, level="quenched")
    with pytest.raises(ValueError, match="odd"):
        patch_theory(images, 4)
    with pytest.raises(ValueError, match="exceeds the lattice side"):
        patch_theory(images, 9)
    with pytest.raises(ValueError, match="does not fit the lattice"):
        patch_theory(images, 5, level=1, lattice=4)
    with pytest.raises(ValueError, match="noise level"):
        patch_theory(images, 3, level=1, s_grid=[1.0, 0.0])
    with pytest.raises(ValueError, match="dynamics"):
        patch_theory(images, 3, dynamics="langevin")
    with pytest.raises(ValueError, match="constant"):
        patch_theory(np.zeros((3, 8, 8)), 3)
    with pytest.raises(ValueError, match="n_samples"):
        patch_theory(images, 3, level=3, n_samples=1)
    with pytest.raises(ValueError, match="s_start"):
        patch_theory(images, 3, level=3, s_grid=np.geomspace(2, 0.5, 5), s_start=5.0, n_samples=2)
