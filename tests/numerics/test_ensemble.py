import json

import numpy as np
import pytest

from diffcrit.numerics.ensemble import Ensemble, low_k_mask, project_low_k, simulate
from diffcrit.numerics.jacobian_probes import fourier_jacobian_spectrum, representative_wavevector_indices
from diffcrit.numerics.local_jacobian import kappa_hat_from_jacobian_rows
from diffcrit.numerics.observables import (
    bootstrap_member_indices,
    ornstein_zernike_correlation_length,
    second_moment_correlation_length,
)
from diffcrit.numerics.patch_denoiser import PatchDenoiser

TINY = "synthetic:binary?size=8&corr=1.5&n=32&seed=1"
TINY_RUN = dict(window=3, n=16, size=8, n_levels=8, progress=False, n_bootstrap=40)


def _wavevectors(shape):
    idx = representative_wavevector_indices(shape)
    return 2.0 * np.pi * idx / np.asarray(shape)


@pytest.mark.parametrize("shape, window", [((8, 8), 3), ((7, 9), 3), ((12,), 5)])
def test_kappa_shortcut_equals_fourier_probe(shape, window):
    rng = np.random.default_rng(3)
    images = np.sign(rng.standard_normal((6,) + shape)) + 0.3 * rng.standard_normal((6,) + shape)
    model = PatchDenoiser(images, window)  # numba backend; its twin is tested in numerics
    states = rng.standard_normal((3,) + shape) * 1.2  # generic, non-homogeneous states
    s = 0.9
    shortcut = kappa_hat_from_jacobian_rows(model.jacobian_rows(states, s), model.offsets, _wavevectors(shape))
    probe = fourier_jacobian_spectrum(None, states, s, jvp=model.jvp)
    # both evaluate the same finite sums (cos/sin probes vs sum_r Kbar(r) cos(k.r)),
    # so they differ by rounding only: ~1e-15 relative to O(1) values
    np.testing.assert_allclose(shortcut, probe.kappa, rtol=0, atol=1e-12)
    # independent of jacobian_rows: central differences of D itself (step eps^(1/3):
    # truncation + rounding error ~1e-10 relative on O(1) curvature)
    fd = fourier_jacobian_spectrum(model, states, s)
    np.testing.assert_allclose(shortcut, fd.kappa, rtol=0, atol=1e-7)


def test_low_k_projection_gives_identical_estimators():
    rng = np.random.default_rng(5)
    shape = (10, 10)
    white = rng.standard_normal((24,) + shape)
    kernel = np.exp(-0.5 * (np.minimum(np.arange(10), 10 - np.arange(10)) / 1.5) ** 2)
    fields = np.fft.ifft2(np.fft.fft2(white) * np.fft.fft2(np.outer(kernel, kernel))).real + 0.3
    projected = project_low_k(fields, low_k_mask(shape))
    assert not np.allclose(projected, fields)  # the projection does remove information
    idx = bootstrap_member_indices(24, 50, 0)
    for estimator in (second_moment_correlation_length, ornstein_zernike_correlation_length):
        full = estimator(fields, n_bootstrap=0, member_indices=idx)
        proj = estimator(projected, n_bootstrap=0, member_indices=idx)
        # exact in exact arithmetic; FFT round trips leave ~1e-15 relative
        assert proj.value == pytest.approx(full.value, rel=1e-10)
        np.testing.assert_allclose(proj.replicates, full.replicates, rtol=1e-10)


def test_low_k_mask_is_symmetric_and_holds_minimal_wavevectors():
    mask = low_k_mask((8, 6))
    assert mask[0, 0] and mask[1, 0] and mask[7, 0] and mask[0, 1] and mask[0, 5]
    neg = mask[(-np.arange(8)) % 8][:, (-np.arange(6)) % 6]
    assert np.array_equal(mask, neg)


@pytest.fixture(scope="module")
def tiny_ensemble():
    return simulate(TINY, rng=0, **TINY_RUN)


def test_simulate_structure(tiny_ensemble):
    e = tiny_ensemble
    assert isinstance(e, Ensemble)
    n_s = TINY_RUN["n_levels"]
    assert e.s.shape == (n_s,) and np.all(np.diff(e.s) < 0)
    assert e.samples.shape == (16, 8, 8) and e.structure_factor.shape == (n_s, 8, 8)
    # gamma_min is 1 - max_k of the ensemble-mean kappa_hat, level by level
    np.testing.assert_allclose(e.stiffness.gamma_min.values, 1.0 - e.kappa_mean.max(axis=1), rtol=0, atol=1e-12)
    assert e.min_gamma["value"] == pytest.approx(e.stiffness.gamma_min.values.min())
    assert e.measured_kind == ("critical" if e.estimates["zero_crossing"].value is not None else "pseudo-critical")
    assert e.timings["moment_calls"] == n_s and e.denoiser.window_size == 9  # 3x3
    data = json.loads(json.dumps(e.to_dict(), default=float))
    assert data["config"]["n"] == 16 and len(data["s"]) == n_s
    assert "Ensemble(data=" in repr(e) and "susceptibility_peak" in repr(e)


def test_simulate_bad_input_raises_before_work():
    with pytest.raises(ValueError, match="window"):
        simulate(TINY, window=4, n=16, size=8)
    with pytest.raises(TypeError, match="window"):
        simulate(TINY, window=3.0, n=16, size=8)
    with pytest.raises(ValueError, match="n must be"):
        simulate(TINY, n=4, size=8)
    with pytest.raises(ValueError, match="deterministic"):
        simulate(TINY, n=16, size=8, method="euler_maruyama")
    with pytest.raises(ValueError, match="s_min < s_max"):
        simulate(TINY, n=16, size=8, s_max=1.0, s_min=2.0)
    with pytest.raises(TypeError, match="data must be"):
        simulate(np.zeros((4, 8, 8)), n=16, size=8)
