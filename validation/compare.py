"""A prediction against a measurement: ``compare -> Comparison``.

The measurement is anything that measured the stiffness along ``s`` with bootstrap
bands and estimated the critical noise: a simulated
:class:`~diffcrit.numerics.ensemble.Ensemble`, a trained network's
:class:`~diffcrit.validation.e2.E2Result`, or any object with the attributes
``measured_kind``, ``estimates``, ``stiffness`` (its ``gamma_min`` curve) and
``min_gamma``. The prediction is a
:class:`~diffcrit.theory.patch.PatchTheoryResult` or a
:class:`~diffcrit.theory.predict.Prediction` evaluated on the measurement's noise
levels (``s_grid=measurement.s``).

What is compared:

* the **primary interval**: the zero crossing of ``gamma_min`` when the measurement
  is critical, the susceptibility peak otherwise; is the predicted ``s_c`` inside
  it, and inside each other estimator's interval;
* for a Monte Carlo level, the **theory's own interval** of ``s_c``
  (:func:`theory_s_c_interval`) and whether it overlaps the primary interval;
* the **kinds** (critical or pseudo-critical) and the minimum stiffness;
* the ``gamma_min(s)`` **curves**: RMS difference on the approach
  (``s >= `` the measured point of maximal softening) and everywhere, and the
  fraction of levels where the prediction lies inside the measured band.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Comparison", "compare", "theory_s_c_interval"]


def _interval_contains(interval: Any, value: float | None) -> bool | None:
    if interval is None or value is None:
        return None
    return bool(interval[0] <= value <= interval[1])


def _crossing(log_s: np.ndarray, f: np.ndarray, j: int) -> float:
    """``ln s`` where ``f`` crosses 0 between nodes ``j`` and ``j + 1`` (linear in ``ln s``)."""
    a, b = f[j], f[j + 1]
    w = 0.0 if a == b else a / (a - b)
    return float(log_s[j] + w * (log_s[j + 1] - log_s[j]))


def _predicted_s_c(pred: Any) -> float | None:
    value = getattr(pred, "s_c", None) if hasattr(pred, "s_c") else getattr(pred, "critical_noise", None)
    return None if value is None else float(value)


def _predicted_k_c(pred: Any) -> list[int] | None:
    value = getattr(pred, "k_c", None) if hasattr(pred, "k_c") else getattr(pred, "critical_mode", None)
    return None if value is None else [int(v) for v in value]


def theory_s_c_interval(pred: Any, confidence: float = 0.95) -> list[float] | None:
    """Interval of a level's ``s_c`` implied by its own Monte Carlo error (marginal level).

    ``kappa_stderr`` is the standard error of the Monte Carlo mean at every ``(s, k)``;
    at each ``s`` the relevant one is that of the maximal mode, ``se(s)``, and
    ``z`` the normal quantile of ``confidence``. Critical prediction: the noise
    levels where the band ``kappa_max(s) +- z se(s)`` contains 1, i.e. between the
    first crossings of 1 by ``kappa_max + z se`` and by ``kappa_max - z se``.
    Pseudo-critical prediction (a softening peak at ``s*``): the contiguous levels
    around ``s*`` where ``kappa_max(s)`` is within ``z sqrt(se(s)^2 + se(s*)^2)`` of
    the peak, i.e. where the peak could sit. Both ends are interpolated linearly
    in ``ln s``, and the interval always contains the level's refined ``s_c``.

    Returns:
        ``[low, high]`` in ``s``, or ``None`` for the exact levels (no
        ``kappa_stderr``) or when ``s_c`` is undefined.
    """
    from statistics import NormalDist

    s_c = _predicted_s_c(pred)
    if pred.kappa_stderr is None or s_c is None or not math.isfinite(s_c):
        return None
    s = np.asarray(pred.s_grid, dtype=np.float64)
    n_s = len(s)
    kap = np.asarray(pred.kappa, dtype=np.float64).reshape(n_s, -1)
    se = np.asarray(pred.kappa_stderr, dtype=np.float64).reshape(n_s, -1)
    j_max = kap.argmax(axis=1)
    k_max = kap[np.arange(n_s), j_max]
    se_max = se[np.arange(n_s), j_max]
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    log_s = np.log(s)
    ends: list[float] = []
    if pred.kind == "critical":
        for sign in (+1.0, -1.0):
            f = k_max + sign * z * se_max - 1.0  # s decreasing: f rises through 0
            above = np.flatnonzero(f >= 0)
            if above.size == 0:
                ends.append(float(log_s[-1]))  # this edge of the band never reaches 1 on the grid
            elif above[0] == 0:
                ends.append(float(log_s[0]))
            else:
                ends.append(_crossing(log_s, f, int(above[0]) - 1))
    else:
        peak = int(np.argmax(k_max))
        f = k_max - (k_max[peak] - z * np.sqrt(se_max**2 + se_max[peak] ** 2))
        lo = peak
        while lo > 0 and f[lo - 1] >= 0:
            lo -= 1
        hi = peak
        while hi < n_s - 1 and f[hi + 1] >= 0:
            hi += 1
        ends.append(float(log_s[0]) if lo == 0 else _crossing(log_s, f, lo - 1))
        ends.append(float(log_s[-1]) if hi == n_s - 1 else _crossing(log_s, f, hi))
    low = min(math.exp(min(ends)), s_c)
    high = max(math.exp(max(ends)), s_c)
    return [low, high]


@dataclass(frozen=True)
class Comparison:
    """One theory level against one measurement (see :func:`compare`).

    Attributes:
        level: the theory level (``moment``, ``homogeneous``, ``marginal``).
        predicted_kind, measured_kind: ``critical`` or ``pseudo-critical`` (or the
            other kinds of :data:`~diffcrit.theory.predict.KINDS`).
        kind_agrees: whether they are equal.
        predicted_s_c: predicted critical (or softest) noise.
        predicted_s_c_interval: the theory's own Monte Carlo interval, or ``None``.
        predicted_k_c: lattice index of the critical (or softest) mode.
        predicted_min_stiffness, measured_min_stiffness: ``min_s gamma_min``.
        measured_min_stiffness_interval: bootstrap interval of the measured minimum.
        min_stiffness_inside: the predicted minimum lies in that interval.
        primary_estimator: ``zero_crossing`` (critical) or ``susceptibility_peak``.
        inside_primary_interval: the predicted ``s_c`` lies in the primary interval.
        theory_interval_overlaps_primary: the theory's interval overlaps it.
        inside: estimator -> whether the predicted ``s_c`` lies in its interval.
        gamma_min_rms_difference: RMS of the ``gamma_min`` curves' difference on the
            approach (``s >=`` the measured point of maximal softening).
        gamma_min_rms_difference_all_levels: the same over every level.
        gamma_min_fraction_in_band: fraction of levels where the prediction lies in
            the measured band.
        verdict: the outcome in words.
    """

    level: str
    predicted_kind: str
    measured_kind: str
    kind_agrees: bool
    predicted_s_c: float | None
    predicted_s_c_interval: list[float] | None
    predicted_k_c: list[int] | None
    predicted_min_stiffness: float | None
    measured_min_stiffness: float
    measured_min_stiffness_interval: list[float] | None
    min_stiffness_inside: bool | None
    primary_estimator: str
    inside_primary_interval: bool | None
    theory_interval_overlaps_primary: bool | None
    inside: dict
    gamma_min_rms_difference: float
    gamma_min_rms_difference_all_levels: float
    gamma_min_fraction_in_band: float | None
    verdict: str

    @property
    def agrees(self) -> bool:
        """The predicted ``s_c`` lies in the primary interval, or the theory's own interval overlaps it."""
        return bool(self.inside_primary_interval or self.theory_interval_overlaps_primary)

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)

    def __repr__(self) -> str:
        return f"Comparison({self.level}: {self.verdict})"


def _verdict(pred_kind: str, s_c: float | None, measured_kind: str, primary_name: str, primary: Any,
             inside_primary: bool | None, theory_interval: list[float] | None, overlaps: bool | None,
             kind_agrees: bool, pred_min: float | None, measured_min: float) -> str:
    where = f"the measured {primary_name.replace('_', ' ')} interval"
    if s_c is None:
        verdict = f"undecided: the prediction ({pred_kind}) gives no s_c"
    elif inside_primary:
        verdict = (f"agrees: predicted {pred_kind} s_c = {s_c:.4g} lies inside {where} "
                   f"[{primary.interval[0]:.4g}, {primary.interval[1]:.4g}]")
    elif primary.interval is None:
        verdict = (f"undecided: predicted {pred_kind} s_c = {s_c:.4g}, but the measured "
                   f"{primary_name.replace('_', ' ')} has no interval")
    else:
        side = "above" if s_c > primary.interval[1] else "below"
        verdict = (f"lies {side} {where} [{primary.interval[0]:.4g}, {primary.interval[1]:.4g}]: "
                   f"predicted {pred_kind} s_c = {s_c:.4g}")
        if overlaps:
            verdict = ("agrees within the theory's Monte Carlo error: its interval "
                       f"[{theory_interval[0]:.4g}, {theory_interval[1]:.4g}] overlaps; the point " + verdict)
        elif theory_interval is not None:
            verdict = (f"disagrees beyond the theory's Monte Carlo error (its interval "
                       f"[{theory_interval[0]:.4g}, {theory_interval[1]:.4g}]): the point " + verdict)
        else:
            verdict = "disagrees: the point " + verdict
    if not kind_agrees:
        pred_text = "none" if pred_min is None else f"{pred_min:.3g}"
        verdict += (f"; the kinds differ (predicted {pred_kind}, measured {measured_kind}: "
                    f"predicted min stiffness {pred_text}, measured {measured_min:.3g})")
    return verdict


def compare(prediction: Any, measurement: Any, *, level: str | None = None,
            confidence: float | None = None) -> Comparison:
    """Compare one theory level's prediction with a measurement on the same noise levels.

    Args:
        prediction: a :class:`~diffcrit.theory.patch.PatchTheoryResult` or a
            :class:`~diffcrit.theory.predict.Prediction`, evaluated on the
            measurement's noise levels (``s_grid=measurement.s``).
        measurement: an :class:`~diffcrit.numerics.ensemble.Ensemble`, an
            :class:`~diffcrit.validation.e2.E2Result`, or any object with
            ``measured_kind``, ``estimates``, ``stiffness`` and ``min_gamma``.
        level: the name to report; default ``prediction.level``.
        confidence: level of the theory's Monte Carlo interval; default the
            measurement's (``measurement.config["confidence"]``) or 0.95.

    Returns:
        :class:`Comparison`.

    Raises:
        TypeError: a measurement without the attributes above.
        ValueError: the prediction's noise levels are not the measurement's.
    """
    missing = [a for a in ("measured_kind", "estimates", "stiffness", "min_gamma") if not hasattr(measurement, a)]
    if missing:
        raise TypeError(f"measurement must have {', '.join(missing)} (an Ensemble or E2Result), "
                        f"got {type(measurement).__name__}")
    for attr in ("kind", "gamma_min", "s_grid", "kappa"):
        if not hasattr(prediction, attr):
            raise TypeError(f"prediction must be a PatchTheoryResult or a Prediction (no {attr!r}), "
                            f"got {type(prediction).__name__}")
    gamma_min = measurement.stiffness.gamma_min
    pred_s = np.asarray(prediction.s_grid, dtype=np.float64)
    if pred_s.shape != np.shape(gamma_min.s) or not np.allclose(pred_s, gamma_min.s, rtol=1e-12, atol=0.0):
        raise ValueError(f"the prediction's {pred_s.size} noise levels are not the measurement's "
                         f"{np.size(gamma_min.s)}: evaluate it with s_grid=measurement.s")
    if confidence is None:
        confidence = float(getattr(measurement, "config", {}).get("confidence", 0.95))
    level = str(getattr(prediction, "level", "prediction") if level is None else level)
    measured_kind, estimates, min_gamma = measurement.measured_kind, measurement.estimates, measurement.min_gamma
    s_c = _predicted_s_c(prediction)
    pred_min = None if prediction.min_stiffness is None else float(prediction.min_stiffness)

    primary_name = "zero_crossing" if measured_kind == "critical" else "susceptibility_peak"
    primary = estimates[primary_name]
    inside = {name: _interval_contains(est.interval, s_c) for name, est in estimates.items()}
    theory_curve = np.asarray(prediction.gamma_min, dtype=np.float64)
    band = gamma_min.interval
    fraction_in_band = None if band is None else float(np.mean((theory_curve >= band[0]) & (theory_curve <= band[1])))
    # the linear theories describe the approach to the transition: compare the curves
    # for s >= the measured point of maximal softening (below it the moment level's
    # S_W/s^2 diverges and would swamp any summary)
    approach = gamma_min.s >= min_gamma["s"]
    rms = float(np.sqrt(np.mean((theory_curve[approach] - gamma_min.values[approach]) ** 2)))
    rms_all = float(np.sqrt(np.mean((theory_curve - gamma_min.values) ** 2)))
    kind_agrees = prediction.kind == measured_kind
    inside_primary = inside[primary_name]
    theory_interval = theory_s_c_interval(prediction, confidence)
    overlaps = None
    if theory_interval is not None and primary.interval is not None:
        overlaps = bool(theory_interval[0] <= primary.interval[1] and primary.interval[0] <= theory_interval[1])
    return Comparison(
        level=level,
        predicted_kind=prediction.kind,
        measured_kind=measured_kind,
        kind_agrees=kind_agrees,
        predicted_s_c=s_c,
        predicted_s_c_interval=theory_interval,
        predicted_k_c=_predicted_k_c(prediction),
        predicted_min_stiffness=pred_min,
        measured_min_stiffness=min_gamma["value"],
        measured_min_stiffness_interval=min_gamma["interval"],
        min_stiffness_inside=_interval_contains(min_gamma["interval"], pred_min),
        primary_estimator=primary_name,
        inside_primary_interval=inside_primary,
        theory_interval_overlaps_primary=overlaps,
        inside=inside,
        gamma_min_rms_difference=rms,
        gamma_min_rms_difference_all_levels=rms_all,
        gamma_min_fraction_in_band=fraction_in_band,
        verdict=_verdict(prediction.kind, s_c, measured_kind, primary_name, primary, inside_primary,
                         theory_interval, overlaps, kind_agrees, pred_min, min_gamma["value"]),
    )
