import json

import numpy as np
import pytest

from diffcrit.numerics.ensemble import load_images, simulate
from diffcrit.numerics.patch_denoiser import PatchDenoiser
from diffcrit.validation.probe import Measurement, probe

TINY = "synthetic:binary?size=8&corr=1.5&n=32&seed=1"
SCALE = dict(n=16, n_levels=8, progress=False, n_bootstrap=40)


class PatchAsNetwork:
    """The patch model seen only through D(y, s) and its JVP, as a wrapped network is."""

    def __init__(self, images, window, lattice):
        self.model = PatchDenoiser(images, window)
        self.field_shape = lattice

    def __call__(self, y, s):
        return self.model(y, s)

    def jvp(self, y, s, v):
        return self.model.jvp(y, s, v)


@pytest.fixture(scope="module")
def patch_probe():
    images, _ = load_images(TINY)
    return probe(PatchAsNetwork(images, 3, (8, 8)), 3, data=TINY, n_jacobian=16, rng=0, **SCALE)


def test_probe_of_the_patch_model_measures_what_its_exact_rows_give(patch_probe):
    m = patch_probe
    assert isinstance(m, Measurement)
    # the same ensemble (same seeds, grid and start) with kappa from the analytic
    # Jacobian rows: the probe's coloured JVPs rebuild those rows up to rounding, and
    # the trajectories differ only by the rounding of D (a stable, pseudo-critical flow)
    e = simulate(TINY, window=3, size=8, rng=0, **SCALE)
    np.testing.assert_allclose(m.s, e.s, rtol=1e-15)
    np.testing.assert_allclose(m.kappa_mean, e.kappa_mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.stiffness.gamma_min.values, e.stiffness.gamma_min.values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.xi_2.values, e.xi_2.values, rtol=1e-9)
    assert m.measured_kind == e.measured_kind
    # the patch model's Jacobian lies inside its window: the residual is rounding
    assert np.max(m.locality_residual) < 1e-10
    assert m.kernel_mass.shape == (8, 9) and np.all(m.kernel_mass >= 0)
    assert 1 <= m.effective_window.side <= 3 and m.effective_windows.shape == (8,)


def test_measurement_reports_and_serializes(patch_probe):
    m = patch_probe
    data = json.loads(json.dumps(m.to_dict(), default=float))
    assert data["config"]["receptive_field"] == 3 and data["config"]["data"] == TINY
    assert set(data["measured"]) == set(m.estimates) and "gamma_min" in data["curves"]
    # colours: a spacing >= 3 that divides the side 8 is 4 per axis, so 4x4 JVPs, plus one residual probe
    assert data["timings"]["jvps_per_member_and_level"] == 4 * 4 + 1
    text = repr(m)
    assert text.startswith("Measurement(receptive field 3") and "susceptibility_peak" in text


def test_probe_without_data_needs_the_noise_range():
    images, _ = load_images(TINY)
    net = PatchAsNetwork(images, 3, (8, 8))
    with pytest.raises(ValueError, match="pass s_max and s_min"):
        probe(net, 3, n=16, n_jacobian=8, progress=False)
    m = probe(net, 3, s_max=8.0, s_min=0.1, n=16, n_jacobian=8, n_levels=5, n_bootstrap=20, progress=False)
    assert m.config["data"] is None and m.config["mean"] == 0.0
    assert m.s[0] == pytest.approx(8.0) and m.s[-1] == pytest.approx(0.1)


def test_probe_bad_input_raises_before_work():
    images, _ = load_images(TINY)
    net = PatchAsNetwork(images, 3, (8, 8))
    with pytest.raises(TypeError, match="jvp"):
        probe(lambda y, s: y, 3, data=TINY)
    with pytest.raises(ValueError, match="odd"):
        probe(net, 4, data=TINY)
    with pytest.raises(ValueError, match="exceeds the lattice side"):
        probe(net, 9, data=TINY)
    with pytest.raises(ValueError, match="n_jacobian must be <= n"):
        probe(net, 3, data=TINY, n=8, n_jacobian=16)
    with pytest.raises(ValueError, match="deterministic"):
        probe(net, 3, data=TINY, method="euler_maruyama")
    with pytest.raises(ValueError, match="fraction"):
        probe(net, 3, data=TINY, fraction=1.5)
