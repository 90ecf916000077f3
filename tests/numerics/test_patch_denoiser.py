"""Tests of the patch-model denoiser (THEORY.md 3.3) and its four implementations.

The numpy twin (backend="numpy") is the reference: pixel by pixel, literally
``D_i = sum_a w_a phi_a(0)`` with log-space softmax weights. Every other backend must
agree with it to 1e-10 in float64: they compute the same softmax, and the only
difference is rounding in the log weights, bounded by the "auto" choice of the
distance form at 1e-11 (absolute), which moves D by at most 2e-11 max|phi(0)|
(module docstring of patch_denoiser); max|phi(0)| <= 2 for the data used here.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from diffcrit.numerics import patch_denoiser as pd
from diffcrit.numerics.patch_denoiser import PatchDenoiser, prune_statistics
from diffcrit.theory.windows import square_window

AGREE = 1e-10  # float64 backends vs the twin (module docstring)
FAST_BACKENDS = ["numba", "numpy-fast", "torch"]
NOISE_LEVELS = [1e-4, 1e-2, 1.0, 1e2, 1e4]


def _torch_or_skip(backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch", reason="torch is not installed: the torch-CPU backend is optional")


def _ternary_images(shape, n, seed):
    """Images with values in {-1, 0, 1} (many identical patches, so merging matters)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1, 2, size=(n, *shape)).astype(np.float64)


# name -> (constructor kwargs, images, lattice of the test fields)
def _cases():
    images_1d = _ternary_images((14,), 5, 1)
    images_2d = _ternary_images((6, 6), 4, 2)
    labels_2d = np.array([0, 1, 0, 1])
    plus = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
    return {
        "1d-equivariant-w3": (dict(window=3), images_1d, (14,)),
        "1d-equivariant-w5-valid": (dict(window=5, boundary="valid"), images_1d, (14,)),
        "1d-local-w3": (dict(window=3, mode="local"), images_1d, (14,)),
        "1d-global": (dict(mode="global"), images_1d, (14,)),
        "2d-equivariant-w1": (dict(window=1), images_2d, (6, 6)),
        "2d-equivariant-w3": (dict(window=3), images_2d, (6, 6)),
        "2d-equivariant-w5-other-lattice": (dict(window=5), images_2d, (7, 5)),
        "2d-equivariant-plus-window": (dict(window=plus), images_2d, (6, 6)),
        "2d-local-w3": (dict(window=3, mode="local"), images_2d, (6, 6)),
        "2d-global": (dict(mode="global"), images_2d, (6, 6)),
        "2d-equivariant-w3-conditional": (dict(window=3, labels=labels_2d, conditional_on=1), images_2d, (6, 6)),
        "2d-equivariant-w3-unmerged": (dict(window=3, merge_duplicates=False), images_2d, (6, 6)),
        "2d-local-w3-unmerged": (dict(window=3, mode="local", merge_duplicates=False), images_2d, (6, 6)),
    }


CASES = _cases()


@functools.lru_cache(maxsize=None)
def _reference(case: str, s: float):
    """Twin output, moments, the model and the fields of a case (cached across tests)."""
    kwargs, images, lattice = CASES[case]
    model = PatchDenoiser(images, backend="numpy", **kwargs)
    fields = np.random.default_rng(hash(case) % 2**32).standard_normal((2, *lattice))
    return model, fields, model(fields, s), model.posterior_moments(fields, s)


@pytest.mark.parametrize("s", NOISE_LEVELS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_backends_agree_with_twin(backend, case, s):
    _torch_or_skip(backend)
    model, fields, expected, _ = _reference(case, s)
    result = model.with_backend(backend)(fields, s)
    assert result.shape == fields.shape and result.dtype == np.float64
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result, expected, rtol=0, atol=AGREE)


@pytest.mark.parametrize("s", [1e-2, 1.0, 1e2])
@pytest.mark.parametrize("case", ["1d-equivariant-w3", "2d-local-w3", "2d-global", "2d-equivariant-plus-window"])
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_posterior_moments_agree_with_twin(backend, case, s):
    _torch_or_skip(backend)
    model, fields, _, expected = _reference(case, s)
    result = model.with_backend(backend).posterior_moments(fields, s)
    np.testing.assert_allclose(result.mean, expected.mean, rtol=0, atol=AGREE)
    np.testing.assert_allclose(result.patch_mean, expected.patch_mean, rtol=0, atol=AGREE)
    # covariances of O(1) values: the same absolute tolerance as the means
    np.testing.assert_allclose(result.centre_covariance, expected.centre_covariance, rtol=0, atol=AGREE)


@pytest.mark.parametrize("form", ["expanded", "direct"])
def test_forced_distance_forms_agree_with_twin(form):
    # s = 3: the expanded form's rounding bound is ~1e-15 here, far below AGREE
    kwargs, images, lattice = CASES["2d-equivariant-w3"]
    fields = np.random.default_rng(5).standard_normal((2, *lattice))
    twin = PatchDenoiser(images, backend="numpy", **kwargs)(fields, 3.0)
    for backend in ("numba", "numpy-fast"):
        model = PatchDenoiser(images, backend=backend, distance_form=form, **kwargs)
        np.testing.assert_allclose(model(fields, 3.0), twin, rtol=0, atol=AGREE)


def test_single_field_and_batch_agree():
    kwargs, images, lattice = CASES["2d-equivariant-w3"]
    model = PatchDenoiser(images, **kwargs)
    fields = np.random.default_rng(3).standard_normal((3, *lattice))
    batch = model(fields, 0.7)
    for b in range(3):
        single = model(fields[b], 0.7)
        assert single.shape == lattice
        # same kernel, same arithmetic per pixel: bit-identical
        np.testing.assert_array_equal(single, batch[b])


def test_merging_duplicates_changes_nothing():
    images = _ternary_images((8, 8), 6, 4)
    merged = PatchDenoiser(images, 3)
    unmerged_twin = PatchDenoiser(images, 3, merge_duplicates=False, backend="numpy")
    assert merged.n_distinct_patches < unmerged_twin.n_distinct_patches  # there is something to merge
    assert merged.n_patches == unmerged_twin.n_patches == 6 * 64
    fields = np.random.default_rng(0).standard_normal((2, 8, 8))
    for s in (1e-3, 0.5, 50.0):
        np.testing.assert_allclose(merged(fields, s), unmerged_twin(fields, s), rtol=0, atol=AGREE)


def test_conditional_model_equals_model_of_that_class():
    images = _ternary_images((6, 6), 6, 7)
    labels = np.array(["a", "b", "a", "c", "b", "a"])
    conditional = PatchDenoiser(images, 3, labels=labels, conditional_on="a")
    direct = PatchDenoiser(images[labels == "a"], 3)
    assert conditional.n_images == 3
    np.testing.assert_array_equal(conditional.patches, direct.patches)
    fields = np.random.default_rng(1).standard_normal((6, 6))
    np.testing.assert_array_equal(conditional(fields, 0.5), direct(fields, 0.5))


# --------------------------------------------------------------------------------------
# analytic limits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["equivariant", "local", "global"])
def test_high_noise_limit_is_mean_of_centre_values(mode):
    images = _ternary_images((6, 6), 5, 8)
    model = PatchDenoiser(images, None if mode == "global" else 3, mode=mode)
    field = np.random.default_rng(2).standard_normal((6, 6))
    s = 1e6
    result = model(field, s)
    # uniform weights (with multiplicity): the mean of phi(0) over the patch set of each pixel
    if mode == "equivariant":
        expected = np.full(field.shape, np.mean(images))
    else:  # local and global: the mean training image
        expected = images.mean(axis=0)
    # D - mean = Cov_uniform(phi(0), l) + O(l^2) with |l| <= (|y||phi| + |phi|^2/2)/s^2 <= 1e-9
    # here (|y| <= 30, |phi| <= 6 over a whole 6x6 image), and |phi(0)| <= 1
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-8)


def test_extreme_noise_levels_do_not_underflow_or_overflow():
    images = _ternary_images((8, 8), 4, 9)
    model = PatchDenoiser(images, 3)
    field = 3.0 * np.random.default_rng(4).standard_normal((8, 8))
    # a naive softmax underflows to 0/0 at s = 1e-4: every exp(-d^2/2s^2) is 0
    patches = model.patches
    windows = model._queries(field[None])[0]
    d2 = np.sum((windows[:, None, :] - patches[None]) ** 2, axis=-1)
    with np.errstate(all="ignore"):
        naive = np.exp(-d2 / 2e-8) @ patches[:, 0] / np.exp(-d2 / 2e-8).sum(axis=1)
    assert np.all(np.isnan(naive))
    # s -> 0: D_i is the centre of the nearest patch (unique here: generic continuous y)
    nearest = patches[np.argmin(d2, axis=1), 0]
    # every other weight underflows to exactly 0
    np.testing.assert_array_equal(model(field, 1e-4).ravel(), nearest)
    # s = 1e4: every weight is within 1e-6 of the others; finite and within range
    result = model(field, 1e4)
    assert np.all(np.isfinite(result)) and np.all(np.abs(result) <= 1)


@pytest.mark.parametrize("mode", ["equivariant", "local", "global"])
def test_low_noise_on_a_training_image_returns_it(mode):
    images = _ternary_images((6, 6), 5, 10)
    model = PatchDenoiser(images, None if mode == "global" else 3, mode=mode)
    # every window of a training image is a training patch at distance 0; any other patch
    # is at distance >= 1 (integer values), so its weight is <= exp(-1/(2 s^2)) = 0 in float64
    for n in range(len(images)):
        np.testing.assert_array_equal(model(images[n], 1e-3), images[n])


def test_homogeneous_fields_are_invariant():
    # THEORY.md 3.3: periodic pooled patches map y = c 1 to h(c) 1
    images = _ternary_images((8, 8), 5, 11)
    model = PatchDenoiser(images, 3)
    for c in (-0.4, 0.0, 0.9):
        result = model(np.full((8, 8), c), 0.8)
        # every pixel sees the same window: identical arithmetic, identical result
        assert np.ptp(result) == 0.0


def test_exp_polynomial_accuracy():
    kernels = pytest.importorskip("diffcrit.numerics._kernels.patch")
    x = -np.concatenate([np.linspace(0, 40, 20001), [1e-300, 0.0]])
    out = np.empty_like(x)
    kernels.exp_nonpositive_array(x, out)
    # degree-11 near-minimax on |r| <= ln2/2 (truncation < 1e-19): a few roundings of
    # 1.1e-16 in the polynomial, plus one that grows like |x| eps (x - n ln2, n ln2 rounded)
    np.testing.assert_array_less(np.abs(out / np.exp(x) - 1), 8e-16 + 1e-16 * np.abs(x))
    x32 = x.astype(np.float32)
    out32 = np.empty_like(x32)
    kernels.exp_nonpositive_array(x32, out32)
    # float32: degree 6 (truncation 2e-9) and a few float32 roundings (6e-8 each)
    relative = np.abs(out32.astype(np.float64) / np.exp(x32.astype(np.float64)) - 1)
    np.testing.assert_array_less(relative, 5e-7 + 6e-8 * np.abs(x32))
    # below the floor (-708): exactly 0, never a subnormal
    low = np.array([-708.5, -800.0, -1e6])
    kernels.exp_nonpositive_array(low, out[:3])
    np.testing.assert_array_equal(out[:3], 0.0)


# --------------------------------------------------------------------------------------
# Jacobian
# --------------------------------------------------------------------------------------


def _finite_difference_jacobian(model, field, s, h):
    """Dense ``dD/dy`` by central differences, one column per site."""
    flat = field.ravel()
    columns = []
    for j in range(flat.size):
        step = np.zeros_like(flat)
        step[j] = h
        plus = model((flat + step).reshape(field.shape), s).ravel()
        minus = model((flat - step).reshape(field.shape), s).ravel()
        columns.append((plus - minus) / (2 * h))
    return np.stack(columns, axis=1)


def _dense_from_rows(model, rows, lattice):
    index = pd._window_index(lattice, model.offsets)
    n_sites = index.shape[0]
    dense = np.zeros((n_sites, n_sites))
    for i in range(n_sites):
        dense[i, index[i]] = rows.reshape(n_sites, -1)[i]
    return dense


# (case, s): moderate s where D varies on the scale of the data
JACOBIAN_CASES = [("1d-equivariant-w3", 0.7), ("1d-global", 1.5), ("2d-local-w3", 0.8),
                  ("2d-equivariant-plus-window", 0.6)]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case,s", JACOBIAN_CASES)
def test_jacobian_rows_match_finite_differences(case, s, backend):
    kwargs, images, lattice = CASES[case]
    model = PatchDenoiser(images, backend=backend, **kwargs)
    field = np.random.default_rng(6).standard_normal(lattice)
    rows = model.jacobian_rows(field, s)
    assert rows.shape == (*lattice, model.window_size)
    dense = _dense_from_rows(model, rows, lattice)
    # central differences, h = 1e-5: truncation h^2/6 |D'''| <~ 2e-11 * (|phi| range/s^2)^3 ~ 1e-8,
    # rounding eps/h ~ 1e-11; entries are O(1): 1e-6 leaves a wide margin
    np.testing.assert_allclose(dense, _finite_difference_jacobian(model, field, s, 1e-5), rtol=0, atol=1e-6)


def test_jvp_and_vjp_match_finite_differences():
    kwargs, images, lattice = CASES["2d-equivariant-w3"]
    model = PatchDenoiser(images, **kwargs)
    rng = np.random.default_rng(7)
    field, v, u = rng.standard_normal((3, *lattice))
    s, h = 0.9, 1e-5
    directional = (model(field + h * v, s) - model(field - h * v, s)) / (2 * h)
    # same finite-difference error budget as the Jacobian rows
    np.testing.assert_allclose(model.jvp(field, s, v), directional, rtol=0, atol=1e-6)
    dense = _finite_difference_jacobian(model, field, s, h)
    np.testing.assert_allclose(model.vjp(field, s, u).ravel(), u.ravel() @ dense, rtol=0, atol=1e-6)
    # batched: one field per row
    batch_v = np.stack([v, u])
    batch = model.jvp(np.stack([field, field]), s, batch_v)
    np.testing.assert_allclose(batch[1], model.jvp(field, s, u), rtol=0, atol=1e-12)


def test_global_jacobian_is_symmetric_positive_semidefinite():
    # the memorizing denoiser is an exact posterior mean: J = Cov[x | y] / s^2 (Tweedie)
    kwargs, images, lattice = CASES["2d-global"]
    model = PatchDenoiser(images, **kwargs)
    field = 0.5 * np.random.default_rng(8).standard_normal(lattice)
    dense = _dense_from_rows(model, model.jacobian_rows(field, 1.2), lattice)
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=1e-12)  # rounding of O(1) sums
    assert np.linalg.eigvalsh(dense).min() > -1e-12


def test_homogeneous_jacobian_is_a_convolution_with_fourier_eigenvectors():
    # THEORY.md 3.3: along y = c 1, J is a convolution with K(r) = Cov_w[phi(0), phi(r)]/s^2,
    # so (J e^{ik.x})_i = kappa(k) e^{ik.i} with kappa(k) = sum_r K(r) e^{ik.r}
    images = _ternary_images((8, 8), 5, 12)
    model = PatchDenoiser(images, 3)
    field, s = np.full((8, 8), 0.3), 0.9
    rows = model.jacobian_rows(field, s)
    kernel = rows[0, 0]
    np.testing.assert_allclose(rows, np.broadcast_to(kernel, rows.shape), rtol=0, atol=1e-13)
    sites = np.indices((8, 8)).reshape(2, -1).T
    for k in [(0.0, 0.0), (2 * np.pi / 8, 0.0), (2 * np.pi / 8, 3 * 2 * np.pi / 8)]:
        phase = sites @ np.asarray(k)
        kappa = np.sum(kernel * np.exp(1j * (model.offsets @ np.asarray(k))))
        for part, mode in (("cos", np.cos(phase)), ("sin", np.sin(phase))):
            response = model.jvp(field, s, mode.reshape(8, 8)).ravel()
            wave = kappa * np.exp(1j * phase)
            expected = wave.real if part == "cos" else wave.imag
            np.testing.assert_allclose(response, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------
# float32, pruning, parallel path
# --------------------------------------------------------------------------------------


def test_float32_agrees_with_float64_within_rounding_bound():
    images = _ternary_images((8, 8), 6, 13)
    model64 = PatchDenoiser(images, 3, backend="numpy")
    model32 = PatchDenoiser(images, 3, dtype=np.float32)
    field = np.random.default_rng(9).standard_normal((8, 8))
    unit = 2.0**-24
    k = model32.window_size
    for s in (0.3, 1.0, 10.0):
        result = model32(field, s)
        assert result.dtype == np.float32
        queries = model32._queries(field[None].astype(np.float32))[0].astype(np.float64)
        scale = 1 / s**2
        y_max = np.sqrt(np.max(np.sum(queries**2, axis=1)))
        p_max = model32._max_patch_norm
        if model32._use_direct_form(queries, scale):
            form = k * unit * scale * (y_max + p_max) ** 2 / 2  # rounding of |y - phi|^2
        else:
            form = model32.expanded_form_error_bound(queries, scale)
        inputs = unit * scale * (y_max + p_max) * y_max  # rounding y to float32 moves d^2 by this
        sums = pd._BLOCK_PATCHES * unit  # float32 block sums of positive terms (worst case)
        # each weight perturbed by a factor exp(+-e): D moves by <= 2 e max|phi(0)|, and
        # max|phi(0)| = 1 for ternary images; plus the rounding of D itself
        max_centre = np.abs(images).max()
        tolerance = 2 * (form + inputs + sums) * max_centre + 2 * unit
        np.testing.assert_allclose(result, model64(field, s), rtol=0, atol=tolerance)


@pytest.mark.parametrize("mode", ["equivariant", "local"])
def test_pruning_error_within_stated_bound(mode):
    rng = np.random.default_rng(14)
    images = np.round(rng.standard_normal((12, 8, 8)), 1)
    margin = 20.0
    pruned = PatchDenoiser(images, 3, mode=mode, prune_margin=margin)
    twin = PatchDenoiser(images, 3, mode=mode, backend="numpy")
    fields = images[:3] + 0.05 * rng.standard_normal((3, 8, 8))
    for s in (0.03, 0.3, 3.0):
        values, fraction = prune_statistics(pruned, fields, s)
        # stated bound: 2 M exp(-margin) max|phi(0)| (docstring of PatchDenoiser), plus the
        # float64 agreement of the unpruned kernels
        bound = 2 * pruned.n_distinct_patches * math.exp(-margin) * np.abs(images).max() + AGREE
        np.testing.assert_allclose(values, twin(fields, s), rtol=0, atol=bound)
        np.testing.assert_array_equal(pruned(fields, s), values)
        assert np.all((fraction > 0) & (fraction <= 1))
    if mode == "equivariant":
        # low noise near the data: most blocks are provably negligible
        assert np.mean(prune_statistics(pruned, fields, 0.03)[1]) < 0.5


def test_parallel_kernels_match_serial_bit_for_bit(monkeypatch):
    kwargs, images, lattice = CASES["2d-equivariant-w3"]
    model = PatchDenoiser(images, **kwargs)
    fields = np.random.default_rng(15).standard_normal((3, *lattice))
    serial = model(fields, 0.6)
    serial_moments = model.posterior_moments(fields, 0.6)
    monkeypatch.setattr(pd, "_parallel_min_work", lambda: 0)
    # tiles are independent and each is summed in a fixed order: identical bits
    np.testing.assert_array_equal(model(fields, 0.6), serial)
    np.testing.assert_array_equal(model.posterior_moments(fields, 0.6).centre_covariance,
                                  serial_moments.centre_covariance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_maximum_matches_numpy(dtype):
    numba = pytest.importorskip("numba")
    kernels = pytest.importorskip("diffcrit.numerics._kernels.patch")
    leading_max = numba.njit(lambda values, count: kernels._leading_max(values, count))
    values = np.random.default_rng(17).standard_normal(600).astype(dtype)
    for count in (1, 3, 4, 7, 8, 9, 16, 17, 513, 600):  # below, at and past vector widths
        assert leading_max(values, count) == values[:count].max()


def test_pruning_candidate_order_matches_numpy():
    kernels = pytest.importorskip("diffcrit.numerics._kernels.patch")
    rng = np.random.default_rng(16)
    for n in (1, 2, 7, 300):
        upper = rng.standard_normal(n + 3)  # entries past n must be ignored
        order = np.empty(n + 3, dtype=np.int64)
        count = kernels._candidates_by_bound(upper, n, 0.2, order)
        expected = np.nonzero(upper[:n] >= 0.2)[0]
        expected = expected[np.argsort(-upper[expected], kind="stable")]
        assert count == len(expected)
        np.testing.assert_array_equal(upper[order[:count]], upper[expected])


def test_empty_batch_and_shared_arrays_between_backends():
    kwargs, images, lattice = CASES["2d-local-w3"]
    model = PatchDenoiser(images, **kwargs)
    empty = np.zeros((0, *lattice))
    assert model(empty, 1.0).shape == empty.shape
    assert model.posterior_moments(empty, 1.0).centre_covariance.shape == (0, *lattice, model.window_size)
    other = model.with_backend("numpy")
    assert other.backend == "numpy" and model.backend == "numba" and other.patches is model.patches


# --------------------------------------------------------------------------------------
# posterior moments: the one-pass kernel (numba)
# --------------------------------------------------------------------------------------


def test_recentring_algebra_is_exact():
    # the stream keeps W = sum w, S = sum w d, R_r = sum w phi(r), Q_r = sum w d phi(r),
    # d = phi(0) - c*; check symbolically that moving c* and rescaling the weights is
    # exact, and that Q/W - (S/W)(R/W) is the covariance whatever c*
    import sympy as sp
    w = sp.symbols("w1:4", positive=True)
    centre = sp.symbols("c1:4", real=True)
    other = sp.symbols("p1:4", real=True)  # phi(r) of the three patches
    old, new, factor = sp.symbols("a b f", real=True)

    def state(weights, reference):
        return (sum(weights), sum(wj * (cj - reference) for wj, cj in zip(weights, centre)),
                sum(wj * pj for wj, pj in zip(weights, other)),
                sum(wj * (cj - reference) * pj for wj, cj, pj in zip(weights, centre, other)))

    total, shifted, raw, cross = state(w, old)
    expected = state([factor * wj for wj in w], new)
    moved = (factor * total, factor * shifted + (old - new) * factor * total, factor * raw,
             factor * cross + (old - new) * factor * raw)
    for a, b in zip(moved, expected):
        assert sp.expand(a - b) == 0
    mean_c = sum(wj * cj for wj, cj in zip(w, centre)) / total
    mean_p = raw / total
    covariance = sum(wj * (cj - mean_c) * (pj - mean_p) for wj, cj, pj in zip(w, centre, other)) / total
    assert sp.simplify(cross / total - (shifted / total) * (raw / total) - covariance) == 0


def test_recentre_kernel_matches_direct_sums():
    kernels = pytest.importorskip("diffcrit.numerics._kernels.patch")
    rng = np.random.default_rng(20)
    n_offsets = 5
    weights = rng.random(40)
    patches = rng.standard_normal((40, n_offsets))

    def state(w, reference):
        d = patches[:, 0] - reference
        return np.concatenate([[w.sum(), w @ d], w @ patches, (w * d) @ patches])

    old, new, factor = patches[3, 0], patches[17, 0], 0.37
    moved = state(weights, old)
    kernels._recentre_moments(moved, n_offsets, factor, old - new)
    # sums of 40 terms of O(1) products, recomputed in another order: a few 1e-15
    np.testing.assert_allclose(moved, state(factor * weights, new), rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("four", [True, False])
@pytest.mark.parametrize("n_offsets", [1, 2, 3, 4, 7])  # 3-offset groups and leftovers
def test_weighted_row_sums_match_exact_sums(dtype, four, n_offsets):
    from fractions import Fraction

    kernels = pytest.importorskip("diffcrit.numerics._kernels.patch")
    rng = np.random.default_rng(21)
    lanes = 32 // np.dtype(dtype).itemsize
    weights = rng.standard_normal((8, 64)).astype(dtype)
    patches_t = rng.standard_normal((n_offsets, 96)).astype(dtype)
    j0, n_vectors = 16, 5
    out = np.full((8, n_offsets), np.nan, dtype=dtype)
    kernels._weighted_row_sums(weights, four, patches_t, j0, n_vectors, out)
    n = n_vectors * lanes
    unit = np.finfo(dtype).eps / 2
    for a in (range(8) if four else (0, 4)):
        for k in range(n_offsets):
            w = weights[a, :n].astype(np.float64)
            p = patches_t[k, j0:j0 + n].astype(np.float64)
            exact = float(sum(Fraction(x) * Fraction(y) for x, y in zip(w, p)))
            # a dot product of n terms in any order: |error| <= gamma_n sum|w p|, gamma_n ~ n u
            assert abs(float(out[a, k]) - exact) <= (n + 2) * unit * np.sum(np.abs(w * p))
    if not four:  # rows of the other three queries are not touched
        assert np.all(np.isnan(out[[1, 2, 3, 5, 6, 7]]))


def _exact_moments(model, field, s):
    """Posterior moments of every pixel in 50-digit arithmetic from the float64 inputs.

    Returns the mean patch, ``Cov_w[phi(0), phi(r)]``, ``E_w|phi(0) - c*|`` (``c*``
    the centre of the heaviest patch) and the largest ``|log weight|`` of the patches
    that feed the covariance (weight > 1e-30, ``phi(0) != c*``; 0 if none), per pixel.
    """
    import mpmath

    index = pd._window_index(field.shape, model.offsets)
    flat = field.ravel()
    n_offsets = model.window_size
    mean = np.empty((len(flat), n_offsets))
    cov = np.empty_like(mean)
    spread = np.empty(len(flat))
    largest_logit = np.zeros(len(flat))
    with mpmath.workdps(50):
        patches = [[mpmath.mpf(float(v)) for v in row] for row in model.patches]
        log_m = [mpmath.log(int(m)) for m in model.multiplicity]
        two_s2 = 2 * mpmath.mpf(s) ** 2
        for i in range(len(flat)):
            query = [mpmath.mpf(float(flat[k])) for k in index[i]]
            logits = [lm - mpmath.fsum((q - p) ** 2 for q, p in zip(query, row)) / two_s2
                      for lm, row in zip(log_m, patches)]
            top = max(range(len(logits)), key=lambda j: logits[j])
            w = [mpmath.exp(lj - logits[top]) for lj in logits]
            total = mpmath.fsum(w)
            m = [mpmath.fsum(wj * row[k] for wj, row in zip(w, patches)) / total for k in range(n_offsets)]
            mean[i] = [float(v) for v in m]
            cov[i] = [float(mpmath.fsum(wj * (row[0] - m[0]) * (row[k] - m[k]) for wj, row in zip(w, patches)) / total)
                      for k in range(n_offsets)]
            spread[i] = float(mpmath.fsum(wj * abs(row[0] - patches[top][0]) for wj, row in zip(w, patches)) / total)
            feeding = [abs(lj) for lj, wj, row in zip(logits, w, patches)
                       if wj > mpmath.mpf("1e-30") and row[0] != patches[top][0]]
            largest_logit[i] = float(max(feeding, default=0))
    shape = (*field.shape, n_offsets)
    return mean.reshape(shape), cov.reshape(shape), spread.reshape(field.shape), largest_logit


@pytest.mark.parametrize("block", ["default", "one panel"])
@pytest.mark.parametrize("s", [1e-3, 1e-2, 0.05])
def test_moments_at_low_noise_match_exact_arithmetic(s, block, monkeypatch):
    # two training images A and B = A + s delta; A's values are 3 apart, so each window
    # of y = A + 0.1 s delta lies between the windows a, b of A and B at its position
    # and >= 2 away from all others (log weights < -800: exactly 0 in float64). delta
    # is 0 at even pixels, 5 .. 9 in size at odd ones. Windows centred at odd pixels:
    # the posterior sits on a, b has log weight -0.4 delta^2 ~ -10 .. -32, and
    # Cov ~ 1e-3 .. 1e-12 of s^2. Centred at even pixels: phi_a(0) = phi_b(0), Cov = 0.
    if block == "one panel":  # a block per 8 patches: many re-centrings and skipped blocks
        monkeypatch.setattr(pd, "_BLOCK_PATCHES", 8)
    rng = np.random.default_rng(22)
    image = 3.0 * rng.permutation(16) - 22.5
    delta = rng.choice([-1.0, 1.0], 16) * rng.uniform(5.0, 9.0, 16)
    delta[::2] = 0.0
    images = np.stack([image, image + s * delta])
    model = PatchDenoiser(images, 3)
    field = image + 0.1 * s * delta
    moments = model.posterior_moments(field, s)
    mean, cov, spread, largest_logit = _exact_moments(model, field, s)
    # concentrated, as intended (an even split of a and b would give Cov ~ 10 s^2)
    row_scale = np.abs(cov).max(axis=-1)
    assert np.all(row_scale < 1e-2 * s**2)
    assert np.any((row_scale > 0) & (row_scale < 1e-8 * s**2))
    phi_max = np.abs(model.patches).max()
    # error of the one-pass formula (kernel section comment), relative to
    # E_w|phi(0) - c*| max|phi|: the sums of n = 32 terms, (n + 3) u ~ 4e-15 each, and
    # the rounding of the log weights, (K + 3) u |l| <= 2.2e-14 of a weight for |l| <= 33,
    # moving Cov by <= 8 times that: < 2e-13 in all; 1e-12 leaves a margin of 5. Plus
    # the reference's own rounding at 50 digits (where a and b share phi(0), Cov = 0)
    assert np.all(largest_logit <= 33)
    bound = 1e-12 * spread * phi_max + 1e-45 * phi_max**2
    assert np.all(np.abs(moments.centre_covariance - cov) <= bound[..., None])
    # the bound has teeth: the uncentred one-pass formula E[phi(0) phi(r)] - E[phi(0)] E[phi(r)]
    # in float64, even from these exact weights, misses it by orders of magnitude
    windows = field[pd._window_index(field.shape, model.offsets)]
    patches = model.patches
    for i in np.nonzero(spread > 0)[0]:
        w = pd._twin_weights(windows[i], patches, model.multiplicity, s)
        uncentred = (w * patches[:, 0]) @ patches - (w @ patches[:, 0]) * (w @ patches)
        assert np.max(np.abs(uncentred - cov[i]) / bound[i]) > 100
    # the mean: the same sums and weights, relative to max|phi|
    np.testing.assert_allclose(moments.patch_mean, mean, rtol=0, atol=1e-12 * phi_max)


@pytest.mark.parametrize("case", ["1d-equivariant-w3", "2d-local-w3", "2d-equivariant-plus-window"])
@pytest.mark.parametrize("s", [1e-4, 1e-2, 1.0, 1e4])
def test_moments_with_one_panel_blocks_agree_with_twin(case, s, monkeypatch):
    # a block per panel: the running maximum rises, and the reference moves, many times
    monkeypatch.setattr(pd, "_BLOCK_PATCHES", 8)
    model, fields, _, expected = _reference(case, s)
    result = model.with_backend("numba").posterior_moments(fields, s)
    np.testing.assert_allclose(result.patch_mean, expected.patch_mean, rtol=0, atol=AGREE)
    np.testing.assert_allclose(result.centre_covariance, expected.centre_covariance, rtol=0, atol=AGREE)


def test_float32_moments_agree_with_float64_within_rounding_bound():
    images = _ternary_images((8, 8), 6, 23)  # values in {-1, 0, 1}: exact in float32
    model32 = PatchDenoiser(images, 3, dtype=np.float32)
    model64 = PatchDenoiser(images, 3, backend="numpy")
    field = np.random.default_rng(24).standard_normal((8, 8)).astype(np.float32)
    unit = 2.0**-24
    n_sums = model32.n_distinct_patches
    assert n_sums <= pd._BLOCK_PATCHES  # one block: each float32 sum has n_sums terms
    queries = model32._queries(field[None])[0].astype(np.float64)
    for s in (0.3, 1.0, 10.0):
        result = model32.posterior_moments(field, s)
        assert result.centre_covariance.dtype == np.float32
        expected = model64.posterior_moments(field.astype(np.float64), s)
        scale = 1 / s**2
        y_max = np.sqrt(np.max(np.sum(queries**2, axis=1)))
        p_max = model32._max_patch_norm
        if model32._use_direct_form(queries, scale):
            form = model32.window_size * unit * scale * (y_max + p_max) ** 2 / 2
        else:
            form = model32.expanded_form_error_bound(queries, scale)
        # float32 exp: 5e-7 + 6e-8 |x| relative (test_exp_polynomial_accuracy), |x| <= 87
        weights = form + 5e-7 + 6e-8 * 87
        # weights perturbed by a factor exp(+-e) move the normalized ones by <= 2e: the mean
        # by <= 2e range(phi) = 4e, Cov by <= 2e sum w |phi(0) - m0||phi(r) - m_r| <= 8e.
        # The float32 sums W, S, R_r, Q_r (n terms, each within n u of the sum of |terms|,
        # |phi(0) - c*| <= 2) give <= 10 n u in Cov, 2 n u in the mean; plus output roundings
        np.testing.assert_allclose(result.patch_mean, expected.patch_mean, rtol=0,
                                   atol=4 * weights + 2 * n_sums * unit + 2 * unit)
        np.testing.assert_allclose(result.centre_covariance, expected.centre_covariance, rtol=0,
                                   atol=8 * weights + 10 * n_sums * unit + 4 * unit)


# --------------------------------------------------------------------------------------
# description and bad input
# --------------------------------------------------------------------------------------


def test_description_is_json_serializable():
    images = _ternary_images((6, 6), 4, 16)
    model = PatchDenoiser(images, 3, labels=np.arange(4) % 2, conditional_on=np.int64(1))
    description = model.to_dict()
    assert json.loads(json.dumps(description)) == description
    assert description["n_images"] == 2 and description["window_size"] == 9
    assert description["n_patches"] == 2 * 36
    np.testing.assert_array_equal(model.offsets, square_window(3, 2))
    assert model.multiplicity.sum() == 72 and "PatchDenoiser(" in repr(model)


def _images():
    return _ternary_images((6, 6), 3, 17)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(mode="memorize"), ValueError, "mode"),
        (dict(backend="cuda"), ValueError, "backend"),
        (dict(boundary="reflect"), ValueError, "boundary"),
        (dict(distance_form="fast"), ValueError, "distance_form"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(window=7), ValueError, "window extent"),
        (dict(window=4), ValueError, "odd"),
        (dict(window=2.5), TypeError, "window"),
        (dict(window=np.array([[1, 0], [0, 0]])), ValueError, "centre"),
        (dict(window=np.array([[0, 0], [0, 0]])), ValueError, "distinct"),
        (dict(mode="global", window=3), ValueError, "window"),
        (dict(mode="local", boundary="valid"), ValueError, "boundary"),
        (dict(conditional_on=1), ValueError, "labels"),
        (dict(labels=[0, 1], conditional_on=1), ValueError, "labels"),
        (dict(labels=[0, 1, 1], conditional_on=5), ValueError, "conditional_on"),
        (dict(prune_margin=-1.0), ValueError, "prune_margin"),
        (dict(prune_margin=40.0, backend="numpy"), ValueError, "prune_margin"),
        (dict(prune_margin=40.0, mode="global"), ValueError, "prune_margin"),
        (dict(merge_duplicates="yes"), TypeError, "merge_duplicates"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PatchDenoiser(_images(), **kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match="images"):
        PatchDenoiser(np.zeros(5), 3)
    with pytest.raises(ValueError, match="images.*non-finite"):
        PatchDenoiser(np.full((2, 6, 6), np.nan), 3)
    with pytest.raises(TypeError, match="images"):
        PatchDenoiser(np.zeros((2, 6, 6), dtype=complex), 3)


@pytest.mark.parametrize(
    "s,error",
    [(0.0, ValueError), (-1.0, ValueError), (math.inf, ValueError), (math.nan, ValueError),
     ("1", TypeError), (True, TypeError), (np.array([1.0, 2.0]), TypeError), (1j, TypeError)],
)
def test_bad_noise_level(s, error):
    model = PatchDenoiser(_images(), 3)
    with pytest.raises(error, match="s "):
        model(np.zeros((6, 6)), s)


def test_bad_fields():
    model = PatchDenoiser(_images(), 3)
    local = PatchDenoiser(_images(), 3, mode="local")
    with pytest.raises(ValueError, match="y must have shape"):
        model(np.zeros(36), 1.0)
    with pytest.raises(ValueError, match="window extent"):
        model(np.zeros((2, 8)), 1.0)  # lattice 2 x 8 is too small for a 3x3 window
    with pytest.raises(ValueError, match="lattice"):
        local(np.zeros((8, 8)), 1.0)
    bad = np.zeros((6, 6))
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        model(bad, 1.0)
    with pytest.raises(TypeError, match="y must be a real"):
        model(np.zeros((6, 6), dtype=complex), 1.0)
    with pytest.raises(ValueError, match="v must have the shape"):
        model.jvp(np.zeros((6, 6)), 1.0, np.zeros((5, 6)))
    with pytest.raises(ValueError, match="too small"):
        PatchDenoiser(_images(), 3, dtype=np.float32)(np.ones((6, 6)), 1e-19)
    # accepted scalar forms of s
    assert model(np.zeros((6, 6)), np.float32(0.5)).shape == (6, 6)
    assert model(np.zeros((6, 6)), np.array(2)).shape == (6, 6)


def test_torch_backend_without_torch_raises_clear_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="backend='torch' needs PyTorch"):
        PatchDenoiser(_images(), 3, backend="torch")
