import math
from types import SimpleNamespace

import numpy as np
import pytest

from diffcrit.validation.compare import Comparison, compare, theory_s_c_interval

S = np.geomspace(4.0, 0.25, 9)  # 4, 2.83, 2, 1.41, 1, 0.707, ...: s = 1 is node 4


def _estimate(value, interval):
    return SimpleNamespace(value=value, interval=interval)


def _measurement(kind="pseudo-critical"):
    """A measurement whose numbers are set by hand: gamma_min = 0.5 everywhere, band +-0.2,
    susceptibility peak 1.5 [1.4, 1.6], xi_J peak 1.3 [1.2, 1.35], softest at s = 1."""
    values = np.full(S.size, 0.5)
    gamma_min = SimpleNamespace(s=S, values=values, interval=(values - 0.2, values + 0.2))
    estimates = {"zero_crossing": _estimate(None, None) if kind != "critical" else _estimate(1.5, [1.4, 1.6]),
                 "susceptibility_peak": _estimate(1.5, [1.4, 1.6]), "xi_J_peak": _estimate(1.3, [1.2, 1.35])}
    return SimpleNamespace(measured_kind=kind, estimates=estimates, stiffness=SimpleNamespace(gamma_min=gamma_min),
                           min_gamma={"value": 0.3, "s": 1.0, "interval": [0.25, 0.35]},
                           config={"confidence": 0.95})


def _prediction(s_c, kind="pseudo-critical", min_stiffness=0.31, kappa_stderr=None, s_grid=S):
    # theory = measured + 0.1 on the approach (s >= 1), + 0.3 below it
    gamma = np.where(S >= 1.0, 0.6, 0.8)
    kappa = (1.0 - gamma).reshape(-1, 1, 1)
    return SimpleNamespace(kind=kind, level="homogeneous", s_c=s_c, k_c=(0, 1), min_stiffness=min_stiffness,
                           gamma_min=gamma, s_grid=s_grid, kappa=kappa, kappa_stderr=kappa_stderr)


def test_compare_inside_the_primary_interval():
    c = compare(_prediction(1.45), _measurement())
    assert isinstance(c, Comparison) and c.level == "homogeneous"
    assert c.primary_estimator == "susceptibility_peak" and c.inside_primary_interval and c.agrees
    assert c.inside == {"zero_crossing": None, "susceptibility_peak": True, "xi_J_peak": False}
    assert c.kind_agrees and c.min_stiffness_inside and c.predicted_k_c == [0, 1]
    assert c.predicted_s_c_interval is None and c.theory_interval_overlaps_primary is None  # exact level
    # curves: a difference of 0.1 on the 5 approach levels, 0.3 on the other 4, band +-0.2
    assert c.gamma_min_rms_difference == pytest.approx(0.1, rel=1e-12)
    assert c.gamma_min_rms_difference_all_levels == pytest.approx(math.sqrt((5 * 0.01 + 4 * 0.09) / 9), rel=1e-12)
    assert c.gamma_min_fraction_in_band == pytest.approx(5 / 9)
    assert c.verdict.startswith("agrees: predicted pseudo-critical s_c = 1.45 lies inside")
    assert c.to_dict()["verdict"] == c.verdict and "Comparison(homogeneous" in repr(c)


def test_compare_outside_with_and_without_a_theory_interval():
    c = compare(_prediction(2.0), _measurement())
    assert c.inside_primary_interval is False and not c.agrees
    assert c.verdict.startswith("disagrees: the point lies above the measured susceptibility peak interval")
    # a Monte Carlo level: kappa_max = 0.4 (s >= 1) or 0.2 with stderr 0.2: its peak can sit
    # anywhere on the plateau s >= 1, which overlaps [1.4, 1.6]
    c = compare(_prediction(2.0, kappa_stderr=np.full((S.size, 1, 1), 0.2)), _measurement())
    low, high = c.predicted_s_c_interval
    assert low <= 1.6 and high >= 2.0 and c.theory_interval_overlaps_primary and c.agrees
    assert c.verdict.startswith("agrees within the theory's Monte Carlo error")


def test_compare_critical_measurement_uses_the_zero_crossing_and_reports_kinds():
    c = compare(_prediction(1.0, kind="pseudo-critical"), _measurement("critical"))
    assert c.primary_estimator == "zero_crossing" and not c.kind_agrees
    assert "the kinds differ (predicted pseudo-critical, measured critical" in c.verdict


def test_compare_refuses_other_noise_levels_and_other_objects():
    with pytest.raises(ValueError, match="s_grid=measurement.s"):
        compare(_prediction(1.45, s_grid=S[:-1]), _measurement())
    with pytest.raises(TypeError, match="measurement must have"):
        compare(_prediction(1.45), object())
    with pytest.raises(TypeError, match="prediction must be"):
        compare(object(), _measurement())


def test_compare_accepts_a_predict_prediction():
    from diffcrit.theory.predict import PatchModel, predict

    rng = np.random.default_rng(0)
    images = np.sign(rng.standard_normal((16, 8, 8)))
    pred = predict(images, PatchModel(window=3), level="homogeneous", lattice=8, s_grid=S)
    c = compare(pred, _measurement())
    assert c.predicted_s_c == pred.critical_noise and c.predicted_kind == pred.kind
    np.testing.assert_allclose(c.gamma_min_rms_difference_all_levels,
                               np.sqrt(np.mean((pred.gamma_min - 0.5) ** 2)), rtol=1e-12)


def _fake_prediction(kind, s, kappa_max, stderr, s_c):
    from types import SimpleNamespace

    n_s = len(s)
    kappa = np.stack([kappa_max, kappa_max - 0.3], axis=1).reshape(n_s, 2, 1)  # one softest mode
    se = np.stack([stderr, 10 * stderr], axis=1).reshape(n_s, 2, 1)  # the other mode's error must not matter
    return SimpleNamespace(kind=kind, s_grid=s, kappa=kappa, kappa_stderr=se, s_c=s_c)


def test_theory_interval_of_s_c_from_monte_carlo_error():
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    s = np.geomspace(10.0, 0.1, 4001)  # fine grid: linear interpolation error ~1e-6 in ln s
    u = np.log(s)
    # pseudo-critical: a parabolic peak 0.8 - u^2 at s = 1 with a constant error e; the
    # peak can sit where 0.8 - u^2 >= 0.8 - z sqrt(2) e, i.e. |u| <= sqrt(z sqrt(2) e)
    e = 0.01
    pred = _fake_prediction("pseudo-critical", s, 0.8 - u**2, np.full_like(s, e), 1.0)
    low, high = theory_s_c_interval(pred, 0.95)
    half = math.sqrt(z * math.sqrt(2) * e)
    assert math.log(high) == pytest.approx(half, abs=1e-4) and math.log(low) == pytest.approx(-half, abs=1e-4)
    # critical: kappa_max = 1 - a u crosses 1 at s = 1; the band +- z e crosses it at u = +- z e / a
    a = 0.5
    pred = _fake_prediction("critical", s, 1.0 - a * u, np.full_like(s, e), 1.0)
    low, high = theory_s_c_interval(pred, 0.95)
    assert math.log(high) == pytest.approx(z * e / a, abs=1e-4) and math.log(low) == pytest.approx(-z * e / a, abs=1e-4)
    # exact levels carry no Monte Carlo error
    pred = _fake_prediction("critical", s, 1.0 - a * u, np.full_like(s, e), 1.0)
    assert theory_s_c_interval(type("P", (), {**pred.__dict__, "kappa_stderr": None})(), 0.95) is None


