"""Tests of the ensemble observables (structure factor, correlation lengths,
critical-noise estimators, clone divergence) on fields with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from diffcrit.numerics.observables import (
    BootstrapCurve,
    bootstrap_member_indices,
    clone_divergence,
    clone_divergence_curve,
    correlation_length_curve,
    critical_noise_estimates,
    lattice_q2,
    ornstein_zernike_correlation_length,
    radial_average,
    second_moment_correlation_length,
    second_moment_length_from_spectrum,
    structure_factor,
)

# ----------------------------------------------------------------------------
# inline generators of fields with known spectra
# ----------------------------------------------------------------------------


def gaussian_field(rng: np.random.Generator, n_members: int, spectrum: np.ndarray) -> np.ndarray:
    """Stationary Gaussian fields whose structure factor is exactly ``spectrum``.

    ``y = IFFT(sqrt(P) FFT(w))`` with white ``w``: the covariance is circulant with
    eigenvalues ``P(k)``, so ``E|FFT(y)(k)|^2 / N = P(k)``. ``P(k) = P(-k)`` keeps
    ``y`` real (the imaginary part is roundoff).
    """
    shape = spectrum.shape
    axes = tuple(range(1, len(shape) + 1))
    white = rng.standard_normal((n_members,) + shape)
    return np.fft.ifftn(np.sqrt(spectrum) * np.fft.fftn(white, axes=axes), axes=axes).real


def oz_spectrum(shape: tuple[int, ...], xi: float, amplitude: float = 1.0) -> np.ndarray:
    """Ornstein–Zernike lattice spectrum ``A / (1 + xi^2 q^2)``."""
    return amplitude / (1.0 + xi**2 * lattice_q2(shape))


def brute_force_structure_factor(fields: np.ndarray, subtract: str) -> np.ndarray:
    """Definition by an explicit DFT sum over sites (no FFT)."""
    n_members, shape = fields.shape[0], fields.shape[1:]
    sites = np.indices(shape).reshape(len(shape), -1).T  # (N, d)
    ks = 2 * np.pi * sites / np.array(shape)  # every lattice wavevector, FFT order
    phases = np.exp(-1j * ks @ sites.T)  # (N_k, N_sites)
    flat = fields.reshape(n_members, -1)
    if subtract == "ensemble":
        delta = flat - flat.mean(axis=0)
        norm_ = n_members - 1
    else:
        delta = flat - flat.mean(axis=1, keepdims=True)
        norm_ = n_members
    power = np.abs(delta @ phases.T) ** 2
    return (power.sum(axis=0) / (norm_ * flat.shape[1])).reshape(shape)


# ----------------------------------------------------------------------------
# structure factor and radial average
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (5, 6)])
@pytest.mark.parametrize("subtract", ["ensemble", "sample"])
def test_structure_factor_matches_explicit_dft(shape, subtract):
    rng = np.random.default_rng(0)
    fields = rng.standard_normal((5,) + shape) + 3.0
    got = structure_factor(fields, subtract=subtract)
    # same sums in a different order: agreement to a few ulps of the O(1) values
    np.testing.assert_allclose(got, brute_force_structure_factor(fields, subtract), rtol=1e-10, atol=1e-12)
    if subtract == "sample":
        assert got.flat[0] == pytest.approx(0.0, abs=1e-12)


def test_structure_factor_is_unbiased_for_a_known_spectrum():
    rng = np.random.default_rng(1)
    shape = (16, 16)
    spectrum = oz_spectrum(shape, xi=2.0, amplitude=3.0)
    fields = gaussian_field(rng, 400, spectrum)
    profile = radial_average(structure_factor(fields), by="q2")
    expected = radial_average(spectrum, by="q2")
    # each shell average is Gamma with shape nu = (B-1) * count / 2 (k = 0 and the
    # self-conjugate points: half that); relative sd 1/sqrt(nu). 4 sd per shell,
    # ~40 shells: a false alarm has probability ~ 40 * 6e-5.
    nu = (fields.shape[0] - 1) * expected.counts / 2.0
    nu[0] = (fields.shape[0] - 1) / 2.0
    rel_err = np.abs(profile.values / expected.values - 1.0)
    assert np.all(rel_err < 4.0 / np.sqrt(nu))


def test_radial_average_exact_shells_of_oz_spectrum():
    shape = (12, 12)
    spectrum = oz_spectrum(shape, xi=1.7, amplitude=2.0)
    profile = radial_average(spectrum, by="q2")
    assert profile.counts.sum() == spectrum.size
    assert profile.centres[0] == 0.0 and profile.counts[0] == 1
    # S is a function of q^2 only, so every exact shell holds one value
    np.testing.assert_allclose(profile.values, 2.0 / (1.0 + 1.7**2 * profile.centres), rtol=1e-13)
    # the first nonzero shell is the 4 minimal wavevectors (+-e_x, +-e_y)
    assert profile.counts[1] == 4
    assert profile.centres[1] == pytest.approx(4 * math.sin(math.pi / 12) ** 2, rel=1e-14)
    by_k = radial_average(spectrum, by="k")
    assert by_k.counts.sum() == spectrum.size
    assert np.all(np.diff(by_k.centres) > 0)


def test_radial_average_bins():
    shape = (10, 10)
    profile = radial_average(np.full(shape, 2.5), by="k", bins=7)
    assert profile.counts.sum() == 100
    np.testing.assert_allclose(profile.values, 2.5, rtol=1e-15)
    assert np.all(np.diff(profile.centres) > 0)


# ----------------------------------------------------------------------------
# second-moment correlation length
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16,), (9,), (12, 12), (8, 8)])
@pytest.mark.parametrize("xi", [0.5, 2.0, 6.0])
def test_second_moment_length_is_exact_for_oz_spectrum(shape, xi):
    # S(0)/S(k_min) - 1 = xi^2 * 4 sin^2(pi/L) exactly for the lattice OZ form
    value, clipped = second_moment_length_from_spectrum(oz_spectrum(shape, xi, amplitude=0.3))
    assert not clipped
    assert value == pytest.approx(xi, rel=1e-12)  # roundoff only


def test_second_moment_length_unequal_sides_is_exact_for_oz_spectrum():
    value, _ = second_moment_length_from_spectrum(oz_spectrum((8, 14), 2.5))
    assert value == pytest.approx(2.5, rel=1e-12)


def test_second_moment_length_clips_when_s0_below_skmin():
    spectrum = oz_spectrum((8, 8), 2.0)
    spectrum[0, 0] = 0.5 * spectrum[1, 0]
    assert second_moment_length_from_spectrum(spectrum) == (0.0, True)


def test_second_moment_estimator_recovers_xi_of_oz_fields():
    rng = np.random.default_rng(2)
    shape, xi, n_members = (16, 16), 2.0, 512
    fields = gaussian_field(rng, n_members, oz_spectrum(shape, xi))
    est = second_moment_correlation_length(fields, n_bootstrap=300, rng=3)
    # delta method: Var(ratio)/ratio^2 = 2/m + 1/(d m) (chi^2 statistics of S(0) and
    # S_bar(k_min)), xi = sqrt((ratio - 1)/q^2) => se(xi) = se(ratio) / (2 xi q^2).
    m, d = n_members - 1, 2
    q2 = 4 * math.sin(math.pi / 16) ** 2
    ratio = 1 + xi**2 * q2
    se = ratio * math.sqrt(2 / m + 1 / (d * m)) / (2 * xi * q2)
    assert abs(est.value - xi) < 4 * se  # 4 sigma
    # the bootstrap standard error estimates the same spread: within a factor 1.5
    # (it is itself a noisy, O(1/sqrt(B))-biased estimate)
    assert se / 1.5 < est.stderr < 1.5 * se
    assert abs(est.value - xi) < 4 * est.stderr  # and within 4 bootstrap errors
    assert est.interval[0] < est.value < est.interval[1]
    assert not est.clipped


@pytest.mark.parametrize("xi", [0.0, 1.0])
def test_second_moment_ratio_bias_matches_chi_square_formula(xi):
    # E[S0_hat/S_bar_hat] = (S0/S_kmin) * d m / (d m - 1) for Gaussian fields
    # (m = B - 1); small B makes the bias (1/(dm-1) = 0.11) large.
    rng = np.random.default_rng(4)
    shape, n_members, n_ensembles = (8, 8), 6, 1500
    spectrum = oz_spectrum(shape, xi) if xi > 0 else np.ones(shape)
    ratios = []
    for _ in range(n_ensembles):
        est = second_moment_correlation_length(gaussian_field(rng, n_members, spectrum), n_bootstrap=0)
        ratios.append(est.details["structure_factor_zero"] / np.mean(est.details["structure_factor_kmin"]))
    ratios = np.array(ratios)
    true_ratio = spectrum[0, 0] / spectrum[1, 0]
    m, d = n_members - 1, 2
    predicted = true_ratio * d * m / (d * m - 1)
    se = ratios.std(ddof=1) / math.sqrt(n_ensembles)
    assert abs(ratios.mean() - predicted) < 4 * se  # 4 sigma
    # and the bias is resolved: the unbiased value is excluded (predicted bias ~5 se)
    assert ratios.mean() - true_ratio > 2 * se


def test_second_moment_reads_zero_within_error_on_white_noise():
    # the percentile interval must contain 0 in about 95% of white-noise ensembles;
    # P(fewer than 30 of 40 | p = 0.95) ~ 2e-4 (binomial)
    rng = np.random.default_rng(5)
    contains = 0
    for _ in range(40):
        est = second_moment_correlation_length(rng.standard_normal((32, 12, 12)), n_bootstrap=200, rng=rng)
        contains += est.interval[0] == 0.0
    assert contains >= 30


def test_second_moment_zero_flag_and_replicate_reproducibility():
    rng = np.random.default_rng(6)
    fields = rng.standard_normal((20, 10, 10))
    fields -= fields.mean(axis=(1, 2), keepdims=True)  # every S(0) contribution removed
    est = second_moment_correlation_length(fields, n_bootstrap=50, rng=7)
    assert est.clipped and est.value == 0.0 and est.xi_squared < 0.0
    assert est.fraction_clipped == 1.0
    again = second_moment_correlation_length(fields, n_bootstrap=50, rng=7)
    np.testing.assert_array_equal(est.replicates, again.replicates)
    json.dumps(est.to_dict())
    assert "clipped" in repr(est)


def test_member_indices_pair_the_bootstrap():
    rng = np.random.default_rng(8)
    fields = gaussian_field(rng, 30, oz_spectrum((10, 10), 1.5))
    idx = bootstrap_member_indices(30, 40, rng=9)
    a = second_moment_correlation_length(fields, member_indices=idx)
    # replicate r by hand: the estimator on the resampled ensemble
    for r in (0, 17, 39):
        by_hand = second_moment_correlation_length(fields[idx[r]], n_bootstrap=0)
        assert a.replicates[r] == pytest.approx(by_hand.value, rel=1e-10)


# ----------------------------------------------------------------------------
# Ornstein–Zernike estimator
# ----------------------------------------------------------------------------


def _oz_fit_covariance(q2: np.ndarray, spectrum: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Covariance of (a, b) for WLS on 1/S with Var(1/S_hat) = 1/(S^2 (nu - 2))."""
    weights = (dof - 2.0) * spectrum**2
    design = np.stack([np.ones_like(q2), q2], axis=1)
    return np.linalg.inv(design.T @ (weights[:, None] * design))


@pytest.mark.parametrize("shape,xi,n_members", [((32, 32), 3.0, 128), ((64,), 5.0, 256)])
def test_oz_estimator_recovers_xi_of_oz_fields(shape, xi, n_members):
    rng = np.random.default_rng(10)
    amplitude = 2.0
    fields = gaussian_field(rng, n_members, oz_spectrum(shape, xi, amplitude))
    est = ornstein_zernike_correlation_length(fields, n_shells=3, n_bootstrap=300, rng=11)
    q2 = est.details["shell_q2"]
    cov = _oz_fit_covariance(q2, amplitude / (1 + xi**2 * q2), est.details["shell_dof"])
    a, b = 1 / amplitude, xi**2 / amplitude
    grad = np.array([-b / a**2, 1 / a])  # d(b/a)
    se_xi = math.sqrt(grad @ cov @ grad) / (2 * xi)
    assert abs(est.value - xi) < 4 * se_xi  # 4 sigma
    assert est.details["amplitude"] == pytest.approx(amplitude, rel=6 * math.sqrt(cov[0, 0]) / a)
    assert se_xi / 1.5 < est.stderr < 1.5 * se_xi  # bootstrap error ~ analytic error
    assert abs(est.value - xi) < 4 * est.stderr


def test_oz_estimator_white_noise_bias_matches_first_order_formula():
    # E[xi_hat^2] ~ sum W x / (sum W sum W x^2 - (sum W x)^2), W = nu - 2, on white noise
    rng = np.random.default_rng(12)
    n_ensembles = 1500
    values = []
    for _ in range(n_ensembles):
        est = ornstein_zernike_correlation_length(rng.standard_normal((64, 32)), n_bootstrap=0)
        values.append(est.xi_squared)
    values = np.array(values)
    w = est.details["shell_dof"] - 2.0
    x = est.details["shell_q2"]
    det = w.sum() * (w * x * x).sum() - (w * x).sum() ** 2
    predicted_bias = (w * x).sum() / det
    predicted_sd = math.sqrt(w.sum() / det)
    se = values.std(ddof=1) / math.sqrt(n_ensembles)
    # 4 sigma; the formula is first order in 1/nu (nu = 64: corrections ~ 2%)
    assert abs(values.mean() - predicted_bias) < 4 * se
    # the spread: first-order formula; measured 1-7% above it at nu = 64 over six
    # seeds (second-order terms, and a kurtosis ~1 makes the sample sd of 1500
    # draws fluctuate by ~2.5%): 15% is 4 sampling sd beyond the mean excess
    assert values.std(ddof=1) == pytest.approx(predicted_sd, rel=0.15)


def test_oz_reads_zero_within_error_on_white_noise():
    rng = np.random.default_rng(13)
    contains = 0
    for _ in range(40):
        est = ornstein_zernike_correlation_length(rng.standard_normal((32, 16, 16)), n_bootstrap=200, rng=rng)
        contains += est.interval[0] == 0.0
    assert contains >= 30  # as for the second-moment estimator: 95% coverage expected


def test_oz_estimator_ignores_per_sample_means():
    rng = np.random.default_rng(14)
    fields = gaussian_field(rng, 40, oz_spectrum((16, 16), 2.0))
    shifted = fields + rng.normal(0, 5.0, size=(40, 1, 1))  # random k = 0 content
    a = ornstein_zernike_correlation_length(fields, n_bootstrap=0)
    b = ornstein_zernike_correlation_length(shifted, n_bootstrap=0)
    assert a.value == pytest.approx(b.value, rel=1e-9)  # k != 0 components are untouched


def test_oz_diverged_and_shell_errors():
    shape = (16, 16)
    rng = np.random.default_rng(15)
    # 1/S decreasing so steeply in q^2 that its extrapolation to q = 0 is negative
    q2 = lattice_q2(shape)
    spectrum = 1.0 / np.maximum(q2 - 0.02, 1e-3)
    spectrum[0, 0] = 1.0
    est = ornstein_zernike_correlation_length(gaussian_field(rng, 4000, spectrum), n_bootstrap=0)
    assert est.diverged and est.value == math.inf
    json.dumps(est.to_dict())
    with pytest.raises(ValueError, match="n_shells"):
        ornstein_zernike_correlation_length(rng.standard_normal((10, 3)), n_shells=3, n_bootstrap=0)


# ----------------------------------------------------------------------------
# curves and critical-noise estimators
# ----------------------------------------------------------------------------


def test_correlation_length_curve_is_paired_and_matches_single_calls():
    rng = np.random.default_rng(16)
    s_grid = np.array([2.0, 1.0, 0.5])
    fields = np.stack([gaussian_field(rng, 24, oz_spectrum((10, 10), xi)) for xi in (0.5, 1.0, 2.0)])
    idx = bootstrap_member_indices(24, 30, rng=17)
    curve = correlation_length_curve(fields, s_grid, member_indices=idx)
    for j in range(3):
        single = second_moment_correlation_length(fields[j], member_indices=idx)
        assert curve.values[j] == single.value
        np.testing.assert_array_equal(curve.replicates[j], single.replicates)
    oz = correlation_length_curve(fields, s_grid, method="ornstein_zernike", n_bootstrap=20, rng=1, n_shells=2)
    assert oz.name == "xi_oz" and oz.replicates.shape == (3, 20)
    json.dumps(curve.to_dict())


def test_zero_crossing_is_exact_for_curves_linear_in_ln_s():
    s_grid = np.geomspace(5.0, 0.5, 21)
    s_c = 1.7
    gamma = 0.8 * np.log(s_grid / s_c)  # linear in ln s: interpolation is exact
    res = critical_noise_estimates(s_grid, gamma_min_samples=gamma)
    assert res.zero_crossing.value == pytest.approx(s_c, rel=1e-12)
    assert res.zero_crossing.interval is None
    # grid order does not matter
    perm = np.random.default_rng(0).permutation(21)
    res2 = critical_noise_estimates(s_grid[perm], gamma_min_samples=gamma[perm])
    assert res2.zero_crossing.value == pytest.approx(s_c, rel=1e-12)


def test_critical_noise_intervals_cover_in_repeated_experiments():
    # synthetic per-member curves with known features at s_c; the percentile
    # intervals (95%) must cover the noise-free estimate in about 95% of repeated
    # experiments: P(fewer than 30 of 40 | p = 0.95) ~ 2e-4
    s_grid = np.geomspace(4.0, 0.4, 41)  # spacing 0.058 in ln s
    s_c, n_members = 1.3, 64
    ln = np.log(s_grid / s_c)
    gamma_clean = 0.5 * ln
    xi_j_clean = 1.0 / np.sqrt(ln**2 + 0.3**2)  # peak at s_c, width 0.3 in ln s
    xi_2_clean = np.exp(2.0 * np.tanh(-ln / 0.25))  # steepest rise at s_c
    clean = critical_noise_estimates(s_grid, gamma_clean, xi_j_clean, xi_2_clean)
    assert clean.zero_crossing.value == pytest.approx(s_c, rel=1e-12)  # linear in ln s: exact
    for est in (clean.response_peak, clean.steepest_rise):
        # parabolic vertex on a smooth symmetric peak: well inside one grid spacing
        assert abs(math.log(est.value / s_c)) < 0.02
    rng = np.random.default_rng(18)
    covered = np.zeros(3, dtype=int)
    for _ in range(40):
        gamma = gamma_clean[:, None] + rng.normal(0.0, 0.3, (1, n_members)) + rng.normal(0, 0.05, (41, n_members))
        xi_j = xi_j_clean[:, None] + rng.normal(0, 0.3, (41, n_members))
        xi_2 = xi_2_clean[:, None] * np.exp(rng.normal(0, 0.3, (41, n_members)))
        res = critical_noise_estimates(s_grid, gamma, xi_j, xi_2, rng=rng, n_bootstrap=200)
        for i, (est, ref) in enumerate(zip(
            (res.zero_crossing, res.response_peak, res.steepest_rise),
            (clean.zero_crossing, clean.response_peak, clean.steepest_rise),
        )):
            assert est.n_defined == est.n_replicates == 200
            covered[i] += est.interval[0] <= ref.value <= est.interval[1]
    assert np.all(covered >= 30), covered
    json.dumps(res.to_dict())
    assert "zero crossing" in repr(res)


def test_steepest_rise_and_peak_accuracy_on_smooth_curves():
    s_grid = np.geomspace(10.0, 0.1, 61)  # spacing h = 0.077 in ln s
    s_c = 0.8
    u = -np.log(s_grid / s_c)
    xi_2 = np.exp(1.5 * np.tanh(u / 0.4))
    xi_j = 1.0 / (1.0 + (u / 0.5) ** 2)
    res = critical_noise_estimates(s_grid, xi_J_samples=xi_j, xi_2_samples=xi_2)
    # a parabola through three samples of a smooth symmetric peak of width w places
    # the vertex within ~ h^2/w^2 * h of it; 0.01 in ln s is a safe bound here
    assert abs(math.log(res.steepest_rise.value / s_c)) < 0.01
    assert abs(math.log(res.response_peak.value / s_c)) < 0.01


def test_no_crossing_pseudo_critical_and_susceptibility_peak():
    s_grid = np.geomspace(4.0, 0.25, 33)
    u = np.log(s_grid / 1.0)
    gamma = 0.2 + u**2  # minimum 0.2 at s = 1: never crosses
    res = critical_noise_estimates(s_grid, gamma_min_samples=gamma, peak_of="susceptibility")
    assert res.zero_crossing.value is None and "no zero crossing" in res.zero_crossing.note
    assert res.response_peak.method == "susceptibility peak"
    # 1/(0.2 + u^2) is not a parabola: its vertex error is tiny vs the grid step 0.087
    assert abs(math.log(res.response_peak.value)) < 0.01
    assert res.to_dict()["zero_crossing"]["value"] == "none"
    starts = critical_noise_estimates(s_grid, gamma_min_samples=u - 5.0)
    assert starts.zero_crossing.value is None and "above the grid" in starts.zero_crossing.note


def test_critical_noise_accepts_bootstrap_curves_and_replicates():
    s_grid = np.geomspace(3.0, 0.3, 25)
    s_c = 1.1
    gamma = np.log(s_grid / s_c)
    shifts = np.random.default_rng(20).normal(0, 0.02, 200)
    replicates = gamma[:, None] + shifts[None, :]
    curve = BootstrapCurve("gamma_min", s_grid, gamma, replicates)
    a = critical_noise_estimates(s_grid, gamma_min_samples=curve)
    b = critical_noise_estimates(s_grid, gamma_min_samples=replicates, samples_are="replicates")
    assert a.zero_crossing.value == pytest.approx(s_c, rel=1e-12)
    # a shift delta of gamma moves the crossing of gamma = ln(s/s_c) to s_c e^{-delta}
    # percentile interval by order statistics of the 200 locations: the 5th and
    # 195th smallest; the smallest locations belong to the largest shifts
    ascending = np.sort(shifts)
    expected = s_c * np.exp(-ascending[[200 - 5, 200 - 195]])
    np.testing.assert_allclose(a.zero_crossing.interval, expected, rtol=1e-10)
    assert b.zero_crossing.interval == a.zero_crossing.interval
    # the column mean of the replicates is gamma shifted by mean(shifts)
    assert b.zero_crossing.value == pytest.approx(s_c * math.exp(-shifts.mean()), rel=1e-10)


def test_infinite_xi_j_counts_as_the_peak():
    s_grid = np.array([4.0, 3.0, 2.0, 1.0, 0.5])
    xi_j = np.array([1.0, 2.0, np.inf, np.inf, 3.0])
    res = critical_noise_estimates(s_grid, xi_J_samples=xi_j)
    assert res.response_peak.value == 2.0  # first divergence in decreasing s


# ----------------------------------------------------------------------------
# clone divergence
# ----------------------------------------------------------------------------


def test_clone_divergence_recovers_noise_correlation_and_class_agreement():
    shape, xi_noise = (8, 8), 1.5
    noise_spectrum = oz_spectrum(shape, xi_noise, amplitude=0.5)
    n_sites = 64
    rng = np.random.default_rng(21)
    n_parents = 400
    parents = rng.normal(0.0, 0.3, size=(n_parents, 1, 1)) + 0.1 * rng.standard_normal((n_parents,) + shape)

    def sampler(states, s, gen):
        # continue by adding fresh stationary Gaussian noise of known spectrum
        return states + gaussian_field(gen, states.shape[0], noise_spectrum)

    def classifier(fields):
        return (fields.mean(axis=(1, 2)) > 0).astype(int)

    res = clone_divergence(sampler, parents, 0.7, rng=22, n_clones=2, classifier=classifier, n_bootstrap=300)
    # the disagreement spectrum is the noise spectrum: its second-moment length is
    # xi_noise; delta-method error as for xi_2 with m = B (n_clones - 1) = 400 dof
    m, d = n_parents, 2
    q2 = 4 * math.sin(math.pi / 8) ** 2
    ratio = 1 + xi_noise**2 * q2
    se = ratio * math.sqrt(2 / m + 1 / (d * m)) / (2 * xi_noise * q2)
    assert abs(res.correlation_length.value - xi_noise) < 4 * se
    # disagreement variance: the site variance of the noise, mean_k P(k); sd of the
    # estimate from its replicates; 4 sigma
    var_true = noise_spectrum.mean()
    var_sd = (res.disagreement_interval[1] - res.disagreement_interval[0]) / (2 * 1.96)
    assert abs(res.disagreement_variance - var_true) < 4 * var_sd
    # class agreement: final spatial mean = parent mean + N(0, P(0)/N) independently
    # per clone, so P(same sign) = Phi(mu/sig)^2 + Phi(-mu/sig)^2
    mu = parents.mean(axis=(1, 2))
    sig = math.sqrt(noise_spectrum[0, 0] / n_sites)
    p = norm.cdf(mu / sig) ** 2 + norm.cdf(-mu / sig) ** 2
    sd = math.sqrt((p * (1 - p)).sum()) / n_parents  # Bernoulli per parent
    assert abs(res.class_agreement - p.mean()) < 4 * sd
    json.dumps(res.to_dict())
    assert "CloneDivergence" in repr(res)


def test_clone_divergence_curve_and_deterministic_sampler_error():
    shape = (6, 6)
    rng = np.random.default_rng(23)
    states = rng.standard_normal((2, 10) + shape)

    def sampler(y, s, gen):
        return y + s * gen.standard_normal(y.shape)

    curve = clone_divergence_curve(sampler, states, [1.0, 0.5], rng=24, n_clones=3, n_bootstrap=50)
    assert curve.correlation_length.replicates.shape == (2, 50)
    # white noise of variance s^2: disagreement variance s^2 within sampling error
    # (360 / 180 independent squared deviations: relative sd ~ 0.06)
    np.testing.assert_allclose(curve.disagreement_variance.values, [1.0, 0.25], rtol=0.25)
    with pytest.raises(ValueError, match="inject noise"):
        clone_divergence(lambda y, s, g: y, states[0], 1.0, rng=1, n_bootstrap=0)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(25)
    good = rng.standard_normal((10, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        second_moment_correlation_length(np.ones(8), n_bootstrap=0)
    with pytest.raises(ValueError, match="sides must be >= 3"):
        second_moment_correlation_length(rng.standard_normal((10, 2, 8)), n_bootstrap=0)
    bad = good.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        second_moment_correlation_length(bad, n_bootstrap=0)
    with pytest.raises(ValueError, match="non-finite"):
        structure_factor(np.where(good > 2, np.inf, good))
    with pytest.raises(ValueError, match="at least 8"):
        second_moment_correlation_length(good[:5], n_bootstrap=100, rng=1)
    with pytest.raises(TypeError, match="rng is required"):
        second_moment_correlation_length(good, n_bootstrap=100)
    with pytest.raises(TypeError, match="real numeric"):
        structure_factor(good.astype(complex))
    with pytest.raises(ValueError, match="subtract"):
        structure_factor(good, subtract="mean")
    with pytest.raises(ValueError, match="confidence"):
        second_moment_correlation_length(good, n_bootstrap=0, confidence=1.5)
    with pytest.raises(ValueError, match="does not fluctuate|zero"):
        second_moment_correlation_length(np.ones((10, 8, 8)), n_bootstrap=0)
    with pytest.raises(ValueError, match="member_indices"):
        second_moment_correlation_length(good, member_indices=np.zeros((3, 9), dtype=int))
    with pytest.raises(ValueError, match="s_grid"):
        critical_noise_estimates([1.0, -1.0], gamma_min_samples=[0.1, 0.2])
    with pytest.raises(ValueError, match="n_s=3"):
        critical_noise_estimates([3.0, 2.0, 1.0], gamma_min_samples=np.ones((4, 10)), rng=1)
    with pytest.raises(ValueError, match="too few"):
        critical_noise_estimates([3.0, 2.0, 1.0], gamma_min_samples=np.ones((3, 4)), rng=1)
    with pytest.raises(ValueError, match="NaN"):
        critical_noise_estimates([3.0, 2.0, 1.0], xi_2_samples=[1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="n_s="):
        correlation_length_curve(good[None], [1.0, 2.0], n_bootstrap=0)
