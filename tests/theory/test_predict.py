"""Tests of the one entry point ``predict(data, model, schedule) -> Prediction``.

Every number is checked against an independent computation: brute-force patch
and local denoisers differentiated by finite differences, the pooled covariance
by FFT, exact closed forms (``s_c^2 = |m|^2 - v`` for two-point data built so),
the mixture module's own critical-noise search, and schedule round trips.
"""

import json
import math

import numpy as np
import pytest

from diffcrit.data import Dataset, load_dataset
from diffcrit.theory.mixture import memorizing_critical_noise, memorizing_denoiser, mixture_critical_noise
from diffcrit.theory.predict import (
    GaussianField,
    GaussianMixture,
    Memorizing,
    PatchModel,
    Prediction,
    model_from_spec,
    predict,
)
from diffcrit.theory.schedules import get_schedule, list_schedules

# Small noise grids keep each prediction well under a second or two.
GRID = np.geomspace(6.0, 0.3, 24)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits?n=200")


def shifted(images, offset):
    """``x[i + r]`` at every site ``i`` (periodic), written independently of the package."""
    axes = tuple(range(1, images.ndim))
    return np.roll(images, tuple(-o for o in offset), axis=axes)


def square_offsets(side, dim=2):
    """Offsets of a centred cube window, the centre first."""
    radius = side // 2
    cube = [tuple(int(v) - radius for v in o) for o in np.ndindex(*(side,) * dim)]
    return [(0,) * dim] + [o for o in cube if any(o)]


def brute_patch_denoiser(images, side, y, s):
    """Pooled patch denoiser by brute force: softmax over every patch of every image."""
    offsets = square_offsets(side, images.ndim - 1)
    patches = np.stack([shifted(images, o) for o in offsets], axis=-1).reshape(-1, len(offsets))
    local = np.stack([shifted(y[None], o)[0] for o in offsets], axis=-1).reshape(-1, len(offsets))
    sq = ((local[:, None, :] - patches[None, :, :]) ** 2).sum(axis=2)
    logits = -sq / (2 * s * s)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return (w @ patches[:, 0]).reshape(y.shape)


def fd_cosine_probe(denoise, y, k_index, shape, h=1e-4):
    """``<e, J e>/<e, e>`` for ``e = cos(k.j)`` by central differences (``J`` the Jacobian of ``denoise``)."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    phase = sum(2 * np.pi * n * g / L for n, g, L in zip(k_index, grids, shape))
    e = np.cos(phase)
    jvp = (denoise(y + h * e) - denoise(y - h * e)) / (2 * h)
    return float((e * jvp).sum() / (e * e).sum())


def fd_complex_probe(denoise, y, k_index, shape, h=1e-4):
    """``Re <e_k, J e_k>`` for the unit complex plane wave, ``J e_k = J cos + i J sin`` by central differences."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    phase = sum(2 * np.pi * n * g / L for n, g, L in zip(k_index, grids, shape))
    jvp = [(denoise(y + h * part) - denoise(y - h * part)) / (2 * h) for part in (np.cos(phase), np.sin(phase))]
    applied = jvp[0] + 1j * jvp[1]
    return float(np.real(np.sum(np.exp(-1j * phase) * applied)) / phase.size)


def fd_jacobian(denoise, y, h=1e-5):
    flat = y.ravel()
    cols = []
    for j in range(flat.size):
        step = np.zeros_like(flat)
        step[j] = h
        cols.append((denoise((flat + step).reshape(y.shape)) - denoise((flat - step).reshape(y.shape))).ravel()
                    / (2 * h))
    return np.stack(cols, axis=1)


def nearest(grid, value):
    return int(np.argmin(np.abs(np.log(grid) - math.log(value))))


# --------------------------------------------------------------------------- patch model on digits


@pytest.mark.parametrize("window", [3, 5])
@pytest.mark.parametrize("level", ["moment", "homogeneous", "marginal"])
def test_patch_on_digits_every_level(digits, window, level):
    pred = predict(digits, PatchModel(window=window), "vp-linear", level=level, s_grid=GRID,
                   n_samples=4, pixels_per_sample=16, rng=1)
    assert pred.level == level and pred.kind in ("critical", "pseudo-critical")
    assert pred.kappa.shape == (len(pred.s_grid), 8, 8)
    # kappa_max is the maximum over the lattice and gamma_min its complement (exact bookkeeping)
    np.testing.assert_array_equal(pred.kappa_max, pred.kappa.reshape(len(pred.s_grid), -1).max(axis=1))
    np.testing.assert_array_equal(pred.gamma_min, 1.0 - pred.kappa_max)
    assert len(pred.critical_mode) == 2 and all(isinstance(v, int) for v in pred.critical_mode)
    if pred.kind == "critical":
        assert pred.min_stiffness == 0.0 and pred.kappa_at_critical == 1.0
    else:
        # the refined maximum is at least the best grid value (it is a refinement of it)
        assert pred.min_stiffness <= pred.gamma_min.min() + 1e-12
        assert 0 < pred.min_stiffness < 1
    assert pred.critical_time == get_schedule("vp-linear").t_of_s(pred.critical_noise)
    if level == "marginal":
        assert pred.kappa_stderr is not None and pred.kappa_stderr.shape == pred.kappa.shape


@pytest.mark.parametrize("window", [3, 5])
def test_moment_level_matches_fft_windowed_spectrum(digits, window):
    """s_c^2 = max_k S_W(k), S_W from the pooled covariance computed here by FFT."""
    x = digits.images - digits.images.mean()
    spectrum = np.mean(np.abs(np.fft.fft2(x)) ** 2, axis=0) / 64
    cov = np.real(np.fft.ifft2(spectrum))  # pooled C(r), r = 0 at index 0 (Wiener-Khinchin)
    k = 2 * np.pi * np.arange(8) / 8
    sw = np.zeros((8, 8))
    for ry, rx in square_offsets(window):
        sw += cov[ry % 8, rx % 8] * np.cos(k[:, None] * ry + k[None, :] * rx)
    pred = predict(digits, PatchModel(window=window), "ou", level="moment", s_grid=GRID)
    # both are sums of O(1) terms over ~10^4 patches: agreement to ~1e-12 relative
    assert pred.critical_noise**2 == pytest.approx(sw.max(), rel=1e-10)
    assert sw[tuple(n % 8 for n in pred.critical_mode)] == pytest.approx(sw.max(), rel=1e-10)


def test_homogeneous_curve_matches_brute_force_jacobian(digits):
    """kappa(k, s) along c(s) equals the finite-difference Jacobian of a brute-force patch denoiser."""
    pred = predict(digits, PatchModel(window=3), "vp-linear", level="homogeneous", s_grid=GRID)
    j = nearest(pred.s_grid, pred.critical_noise)
    s, c = float(pred.s_grid[j]), float(pred.trajectory[j])
    y = np.full((8, 8), c)
    for k_index in [pred.critical_mode, (0, 1), (2, 3)]:
        probe = fd_cosine_probe(lambda f: brute_patch_denoiser(digits.images, 3, f, s), y, k_index, (8, 8))
        # central differences with h = 1e-4 on a smooth denoiser: error ~ h^2 |D'''| ~ 1e-8
        assert probe == pytest.approx(pred.kappa[j][tuple(n % 8 for n in k_index)], abs=1e-6)


def test_marginal_is_reproducible_and_consistent_across_seeds(digits):
    args = dict(level="marginal", s_grid=np.geomspace(4.0, 0.5, 8), n_samples=6, pixels_per_sample=32)
    a = predict(digits, PatchModel(window=3), rng=3, **args)
    b = predict(digits, PatchModel(window=3), rng=3, **args)
    c = predict(digits, PatchModel(window=3), rng=4, **args)
    np.testing.assert_array_equal(a.kappa, b.kappa)  # same seed: bit-for-bit
    # different draws: the k = 0 curves agree within 5 combined standard errors (a 5-sigma band)
    band = 5 * np.hypot(a.kappa_stderr[:, 0, 0], c.kappa_stderr[:, 0, 0])
    assert np.all(np.abs(a.kappa[:, 0, 0] - c.kappa[:, 0, 0]) <= band)


def test_precomputed_patch_statistics(digits):
    from diffcrit.theory.patch_stats import patch_statistics

    stats = patch_statistics(digits.images, 3)
    from_stats = predict(stats, PatchModel(window=3), level="homogeneous", s_grid=GRID)
    from_images = predict(digits, PatchModel(window=3), level="homogeneous", s_grid=GRID)
    assert from_stats.critical_noise == from_images.critical_noise  # the same computation
    np.testing.assert_array_equal(from_stats.kappa, from_images.kappa)
    assert from_stats.data["n"] == 200
    with pytest.raises(ValueError, match="marginal"):
        predict(stats, PatchModel(window=3), level="marginal")
    with pytest.raises(ValueError, match="window"):
        predict(stats, PatchModel(window=5))
    with pytest.raises(ValueError, match="equivariant"):
        predict(stats, Memorizing())


def test_class_conditional_uses_one_class(digits):
    pred = predict(digits, PatchModel(window=3, conditional_on=0), level="moment", s_grid=GRID)
    assert pred.data["n"] == int(np.sum(digits.labels == 0))
    assert pred.model["conditional_on"] == 0


# --------------------------------------------------------------------------- synthetic textures


def test_stripes_have_finite_wavelength_critical_mode():
    data = load_dataset("synthetic:stripes?size=12&n=24&wavelength=4&seed=1")
    for level in ("moment", "homogeneous"):
        pred = predict(data, PatchModel(window=5), "vp-cosine", level=level)
        assert pred.kind == "critical" and any(pred.critical_mode)
        # the stripes' ring |k| = 2 pi/4; a 5-site window resolves wavevectors only to ~2 pi/5,
        # so k_c lies within half of that (pi/4 here) of the ring
        k_norm = float(np.linalg.norm(pred.critical_wavevector))
        assert abs(k_norm - np.pi / 2) <= np.pi / 4


def test_symmetric_binary_texture_keeps_c_zero_until_critical():
    """For data symmetric under x -> -x the homogeneous trajectory is c = 0 (exact) above s_c."""
    base = load_dataset("synthetic:binary?size=16&n=16&corr=2&seed=2", standardize="none")
    images = np.concatenate([base.images, -base.images])
    pred = predict(images, PatchModel(window=3), "edm", level="homogeneous")
    assert pred.kind == "critical" and pred.critical_mode == (0, 0)
    above = pred.s_grid > 1.2 * pred.critical_noise
    # symmetric patch set: h(0, s) = 0 up to rounding (~1e-16 per patch, ~1e4 patches)
    assert np.max(np.abs(pred.trajectory[above])) < 1e-9
    assert pred.critical_time == get_schedule("edm").t_of_s(pred.critical_noise)


def test_gaussian_field_is_a_crossover():
    data = load_dataset("synthetic:grf?size=8&n=64&corr=2&seed=3")
    x = data.images - data.images.mean()
    spectrum = np.mean(np.abs(np.fft.fft2(x)) ** 2, axis=0) / 64
    pred = predict(data, GaussianField(), "ve", level="marginal")
    assert pred.kind == "crossover" and pred.level == "exact" and pred.requested_level == "marginal"
    # slowest mode: largest P(k), crossing kappa = 1/2 at s^2 = P_max
    assert pred.critical_noise**2 == pytest.approx(spectrum.max(), rel=1e-12)
    assert spectrum[tuple(n % 8 for n in pred.critical_mode)] == pytest.approx(spectrum.max(), rel=1e-12)
    assert pred.min_stiffness == 0.5
    expected = spectrum[None] / (spectrum[None] + pred.s_grid[:, None, None] ** 2)
    np.testing.assert_allclose(pred.kappa, expected, rtol=1e-12)
    assert np.all(pred.kappa_max < 1)
    assert pred.xi_2 is not None and np.all(np.isfinite(pred.xi_2))
    assert np.all(np.isfinite(pred.xi_J))  # gamma > 0 everywhere: always defined


# --------------------------------------------------------------------------- mixture and memorizing


def two_point_data(m, spread):
    """Two classes m +- spread e_j and -m +- spread e_j: class means +-m exactly and
    pooled within-class variance per pixel spread^2/d, by construction."""
    d = m.size
    basis = np.eye(d).reshape((d,) + m.shape)
    images, labels = [], []
    for label, centre in ((0, m), (1, -m)):
        for sign in (1.0, -1.0):
            images.extend(centre + sign * spread * basis)
            labels.extend([label] * d)
    return Dataset(np.array(images), labels=labels, name="two-point")


@pytest.fixture(scope="module")
def mean_field():
    return np.random.default_rng(5).normal(size=(4, 4))


@pytest.mark.parametrize("level", ["moment", "homogeneous"])
def test_mixture_two_point_critical_noise(mean_field, level):
    spread = 0.7
    data = two_point_data(mean_field, spread)
    expected = float(np.sum(mean_field**2)) - spread**2 / mean_field.size
    pred = predict(data, GaussianMixture(), "vp-linear", level=level)
    assert pred.kind == "critical"
    assert pred.model["variance"] == pytest.approx(spread**2 / 16, rel=1e-14)
    # closed form s_c^2 = |m|^2 - v: brentq to 1e-13 on an exactly invariant y = 0
    assert pred.critical_noise**2 == pytest.approx(expected, rel=1e-9)
    assert pred.level == ("moment" if level == "moment" else "mean-trajectory")
    # the unstable direction is m itself: its dominant Fourier component is that of m
    power = np.abs(np.fft.fft2(mean_field)) ** 2
    share = pred.critical_mode_weight * power.sum()
    assert power[tuple(n % 4 for n in pred.critical_mode)] <= share + 1e-9


def test_mixture_explicit_means_and_no_transition():
    m = np.zeros((4, 4))
    m[0, 0] = 2.0
    field = np.arange(16.0).reshape(1, 4, 4)  # only fixes the lattice
    pred = predict(field, GaussianMixture(means=[m, -m], variance=1.0), "ou")
    assert pred.critical_noise**2 == pytest.approx(3.0, rel=1e-9)  # |m|^2 - v = 4 - 1
    assert pred.critical_time == pytest.approx(0.5 * math.log(1 + 3.0), rel=1e-9)  # OU clock
    weak = predict(field, GaussianMixture(means=[m, -m], variance=5.0), "ou")
    assert weak.kind == "no transition" and weak.critical_noise is None
    assert weak.critical_time is None and weak.in_schedule_range is False
    assert weak.critical_mode is None and weak.min_stiffness is None
    assert np.all(weak.kappa_max < 1)


def test_symmetric_mixture_below_threshold_has_no_transition():
    """Four components at +-e1, +-e2: lambda_max(B) = 1/2 < v = 0.7 < |m_c|^2 = 1."""
    means = np.zeros((4, 2, 2))
    means[0, 0, 0], means[1, 0, 0], means[2, 0, 1], means[3, 0, 1] = 1.0, -1.0, 1.0, -1.0
    field = np.arange(4.0).reshape(1, 2, 2)
    pred = predict(field, GaussianMixture(means=means, variance=0.7), "ou")
    assert pred.kind == "no transition" and pred.critical_noise is None
    assert np.all(pred.kappa_max < 1)
    reference = mixture_critical_noise(means.reshape(4, 4), 0.7)
    assert reference.kind == "no transition"
    critical = predict(field, GaussianMixture(means=means, variance=0.3), "ou")
    assert critical.critical_noise**2 == pytest.approx(0.5 - 0.3, rel=1e-9)  # lambda_max(B) - v


def test_asymmetric_mixture_matches_mixture_module():
    means = np.random.default_rng(3).normal(size=(3, 9)) * 1.5  # a draw whose mean trajectory crosses
    weights = np.array([0.5, 0.3, 0.2])
    pred = predict(np.arange(9.0).reshape(1, 3, 3),
                   GaussianMixture(means=means.reshape(3, 3, 3), variance=0.4, weights=weights), "ve")
    reference = mixture_critical_noise(means, 0.4, weights, method="trajectory", n_grid=400)
    assert reference.kind == "critical" and pred.kind == "critical"
    # two integrations (rtol 1e-10) started at the mean at different high noise levels:
    # the start error decays like s/s0, so agreement to ~1e-6 relative
    assert pred.critical_noise == pytest.approx(reference.s_c, rel=1e-5)


def test_memorizing_matches_mixture_module_and_global_patch(digits):
    images = digits.images[:60]
    pred = predict(images, Memorizing(), "vp-linear")
    glob = predict(images, PatchModel(mode="global"), "vp-linear")
    reference = memorizing_critical_noise(images, n_grid=300)
    assert pred.kind == reference.kind == "critical"
    # independent integrations from different starting noise levels (see above)
    assert pred.critical_noise == pytest.approx(reference.s_c, rel=1e-5)
    assert glob.critical_noise == pred.critical_noise and glob.critical_mode == pred.critical_mode
    assert glob.model["window"] is None and pred.level == "mean-trajectory"
    # the kappa_max curve: top eigenvalue of the finite-difference Jacobian of the
    # mixture module's memorizing denoiser at the trajectory
    j = nearest(pred.s_grid, 1.3 * pred.critical_noise)
    y, s = pred.trajectory_field[j], float(pred.s_grid[j])
    jac = fd_jacobian(lambda f: memorizing_denoiser(f, s, images), y)
    # h = 1e-5 central differences of a smooth softmax: ~1e-8
    assert np.linalg.eigvalsh(0.5 * (jac + jac.T))[-1] == pytest.approx(pred.kappa_max[j], abs=1e-6)
    moment = predict(images, Memorizing(), "vp-linear", level="moment")
    cov = np.cov(images.reshape(60, -1).T, bias=True)
    assert moment.critical_noise**2 == pytest.approx(np.linalg.eigvalsh(cov)[-1], rel=1e-10)


def test_memorizing_marginal_runs_and_is_below_one_at_high_noise(digits):
    pred = predict(digits.images[:60], Memorizing(), level="marginal", s_grid=np.geomspace(8, 0.5, 10),
                   n_samples=8, rng=0)
    assert pred.level == "marginal" and pred.kappa_stderr.shape == pred.kappa.shape
    assert pred.kappa_max[0] < 1  # the top of the grid is far above every crossing


def local_denoiser(images, side, y, s):
    """Local (unpooled) patch denoiser by brute force: per pixel, a softmax over the images."""
    offsets = square_offsets(side, images.ndim - 1)
    diff = sum(shifted((images - y[None]) ** 2, o) for o in offsets)  # |y[i+W] - x_n[i+W]|^2
    logits = -diff / (2 * s * s)
    w = np.exp(logits - logits.max(axis=0))
    w /= w.sum(axis=0)
    return (w * images).sum(axis=0)


def test_local_mode_against_brute_force():
    rng = np.random.default_rng(7)
    images = rng.normal(size=(12, 4, 4))
    moment = predict(images, PatchModel(window=3, mode="local"), level="moment")
    centred = images.reshape(12, -1) - images.reshape(12, -1).mean(axis=0)
    cov = centred.T @ centred / 12
    mask = np.zeros((16, 16))
    for i in range(16):
        for dy, dx in square_offsets(3):
            mask[i, ((i // 4 + dy) % 4) * 4 + (i % 4 + dx) % 4] = 1.0
    assert moment.critical_noise**2 == pytest.approx(np.linalg.eigvalsh(cov * mask)[-1], rel=1e-10)
    pred = predict(images, PatchModel(window=3, mode="local"), level="homogeneous")
    j = nearest(pred.s_grid, 1.5 * pred.critical_noise)
    s = float(pred.s_grid[j])
    jac = fd_jacobian(lambda f: local_denoiser(images, 3, f, s), pred.trajectory_field[j])
    # Re eigenvalues of a non-symmetric J; finite differences to ~1e-8
    assert np.max(np.linalg.eigvals(jac).real) == pytest.approx(pred.kappa_max[j], abs=1e-6)
    modes = [(0, 0), (0, 1), (1, 2), (3, 1)]
    probes = [fd_complex_probe(lambda f: local_denoiser(images, 3, f, s), pred.trajectory_field[j], k, (4, 4))
              for k in modes]
    # Fourier probes Re <e_k, J e_k> of the (non-equivariant) J, finite differences to ~1e-8
    np.testing.assert_allclose(probes, [pred.kappa[j][k] for k in modes], rtol=0, atol=1e-6)


@pytest.mark.parametrize("window", [None, 3])
def test_annealed_fast_paths_match_the_plain_average(window):
    """The marginal level's shortcuts (weights averaged first; probes from the pixel-mean kernel)
    equal the plain average of Jacobians and its Fourier probes."""
    from diffcrit.theory.predict import _fourier_basis, _probe_kappa, _WindowMemorizing
    from diffcrit.theory.windows import square_window

    rng = np.random.default_rng(8)
    images = rng.normal(size=(10, 4, 4))
    model = _WindowMemorizing(images, None if window is None else square_window(window, 2))
    states = images[:3] + 0.8 * rng.normal(size=(3, 4, 4))
    states = states.reshape(3, -1)
    basis = _fourier_basis((4, 4))
    mean_jac, probes = model.annealed(states, 0.8, basis)
    plain = np.stack([model.jacobian(y, 0.8) for y in states])
    # the same sums in another order: agreement to rounding
    np.testing.assert_allclose(mean_jac, plain.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(probes, _probe_kappa(plain, basis, (4, 4)), rtol=0, atol=1e-12)


def test_one_dimensional_chains():
    rng = np.random.default_rng(9)
    chains = np.cumsum(rng.normal(size=(20, 12)), axis=1)  # correlated 1-D fields
    gauss = predict(chains, GaussianField(), "ou")
    assert gauss.kind == "crossover" and len(gauss.critical_mode) == 1
    local = predict(chains, PatchModel(window=3, mode="local"), "ou")
    memo = predict(chains, Memorizing(), "ou", level="moment")
    centred = chains - chains.mean(axis=0)
    assert memo.critical_noise**2 == pytest.approx(np.linalg.eigvalsh(centred.T @ centred / 20)[-1], rel=1e-10)
    assert local.kind in ("critical", "pseudo-critical") and local.kappa.shape == (len(local.s_grid), 12)


# --------------------------------------------------------------------------- schedules and clocks


@pytest.mark.parametrize("name", list_schedules())
def test_critical_time_in_every_clock(digits, name):
    pred = predict(digits, PatchModel(window=3), name, level="moment", s_grid=GRID)
    schedule = get_schedule(name)
    assert pred.in_schedule_range
    assert pred.critical_time == schedule.t_of_s(pred.critical_noise)
    # the clock inverts back to s_c (round trip through the schedule's forward map)
    assert float(schedule.s(pred.critical_time)) == pytest.approx(pred.critical_noise, rel=1e-6)
    if name == "ddpm":
        assert pred.critical_step == pytest.approx(float(schedule.step_of_s(pred.critical_noise)), rel=1e-12)
    inside = (pred.s_grid >= schedule.s_min) & (pred.s_grid <= schedule.s_max)
    np.testing.assert_array_equal(np.isfinite(pred.t_grid), inside)


def test_out_of_range_is_reported_not_extrapolated(digits):
    pred = predict(digits, PatchModel(window=3), "ve:s_min=0.01,s_max=0.5", level="moment", s_grid=GRID)
    assert pred.critical_noise > 0.5
    assert pred.critical_time is None and pred.in_schedule_range is False
    assert "above the noise range" in pred.message
    out = pred.to_dict()
    assert out["critical_time"] is None and out["in_schedule_range"] is False
    assert out["curves"]["t"][0] is None  # s = 6 lies outside [0.01, 0.5]


# --------------------------------------------------------------------------- result object


def test_to_dict_json_and_repr(digits):
    pred = predict(digits, PatchModel(window=3), level="moment", s_grid=GRID)
    small = pred.to_dict()
    json.dumps(small, allow_nan=False)  # strict JSON: no NaN tokens
    assert "arrays" not in small
    for key in ("kind", "level", "critical_noise", "critical_time", "critical_mode", "min_stiffness",
                "schedule", "model"):
        assert key in small
    assert small["schedule"]["spec"] == get_schedule("vp-linear").spec
    full = pred.to_dict(arrays=True)
    assert np.asarray(full["arrays"]["kappa"]).shape == (len(GRID), 8, 8)
    assert "Prediction(kind='critical'" in repr(pred) and "k_c=[0, 0]" in repr(pred)
    with pytest.raises(Exception):
        pred.kind = "x"  # frozen
    with pytest.raises(ValueError):
        pred.kappa[0, 0, 0] = 1.0  # read-only arrays
    text = pred.latex()
    assert "$$" in text and "S_W" in text and r"\kappa_{c} = 1" in text
    assert f"{pred.critical_noise:.4f}"[:4] in text


def test_prediction_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        Prediction(kind="bogus", level="x", requested_level="x", model={"name": "x"}, schedule=get_schedule("ou"),
                   data={}, critical_noise=None, critical_time=None, critical_step=None, in_schedule_range=False,
                   message="", critical_mode=None, critical_wavevector=None, critical_mode_weight=None,
                   kappa_at_critical=None, min_stiffness=None, lattice=(2,), dynamics="ode", s_grid=[2.0, 1.0],
                   t_grid=[1.0, 0.5], kappa_max=[0.1, 0.2], gamma_min=[0.9, 0.8], xi_J=[0.0, 0.0], xi_2=None,
                   trajectory=None, kappa=[[0.1, 0.0], [0.2, 0.0]])


def test_model_from_spec():
    assert model_from_spec("patch", window=5, mode="local") == PatchModel(window=5, mode="local")
    assert model_from_spec("memorizing") == Memorizing()
    assert model_from_spec("Gaussian") == GaussianField()
    assert PatchModel(window=7, mode="global").window is None
    with pytest.raises(ValueError, match="unknown model"):
        model_from_spec("unet")
    with pytest.raises(ValueError, match="window"):
        model_from_spec("memorizing", window=3)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make, match", [
    (lambda: PatchModel(window=4), "odd"),
    (lambda: PatchModel(window=0), ">= 1"),
    (lambda: PatchModel(mode="pooled"), "mode"),
    (lambda: GaussianMixture(variance=1.0), "means"),
    (lambda: GaussianMixture(means=[[1.0, 0.0]]), "variance is required"),
    (lambda: GaussianMixture(means=[[1.0, 0.0]], variance=-1.0), "variance"),
    (lambda: GaussianMixture(means=[[1.0], [2.0]], variance=1.0, weights=[1.0]), "weights"),
])
def test_bad_models(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kwargs, match", [
    (dict(model=PatchModel(window=9)), "larger than the lattice"),
    (dict(model=PatchModel(window=5), lattice=4), "larger than the lattice"),
    (dict(model=PatchModel(window=3), level="quenched"), "level"),
    (dict(model=PatchModel(window=3), s_grid=[1.0, -2.0]), "s_grid"),
    (dict(model=PatchModel(window=3), s_grid=[1.0]), "s_grid"),
    (dict(model=PatchModel(window=3), schedule="ve:s_min=2,s_max=1"), "s_min"),
    (dict(model=GaussianField(), lattice=16), "lattice"),
    (dict(model=Memorizing(), lattice=(4, 4)), "lattice"),
    (dict(model=PatchModel(window=3), dynamics="langevin"), "dynamics"),
    (dict(model=PatchModel(window=3), n_samples=1), "n_samples"),
    (dict(model=PatchModel(window=3, conditional_on=11)), "not a class"),
])
def test_bad_predict_input(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict(digits, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="constant"):
        predict(np.ones((3, 4, 4)), PatchModel(window=3))
    with pytest.raises(ValueError, match="constant"):
        predict(np.ones((3, 4, 4)), GaussianField())
    with pytest.raises(ValueError, match="no labels"):
        predict(np.random.default_rng(0).normal(size=(5, 4, 4)), GaussianMixture())
    with pytest.raises(ValueError, match="labelled"):
        predict(np.random.default_rng(0).normal(size=(5, 4, 4)), PatchModel(window=3, conditional_on=0))
    with pytest.raises(TypeError, match="model"):
        predict(np.random.default_rng(0).normal(size=(5, 4, 4)), "patch")
    with pytest.raises(ValueError, match="N >= 1"):
        predict(np.zeros((0, 4, 4)), PatchModel(window=3))
