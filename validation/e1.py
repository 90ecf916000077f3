"""Experiment E1: the patch model simulated against its linear theory (THEORY.md 5).

An ensemble of ``n`` probability-flow trajectories of the equivariant patch
denoiser (:class:`~diffcrit.numerics.patch_denoiser.PatchDenoiser`, built from the
standardized training images) runs on a periodic ``size^d`` lattice from ``s_max``
(well above the data scale) down to ``s_min``. At each observed noise level the
observers record, without storing trajectories:

* the **annealed Fourier-probe spectrum** ``kappa_hat(k, s)`` of every member at
  every wavevector of the lattice, by an exact shortcut for the patch model (below);
* the low-``k`` Fourier components of every member (``k = 0`` and the smallest
  shells), from which ``xi_2`` and the Ornstein–Zernike length are recomputed
  exactly with paired bootstrap replicates (below);
* the ensemble structure factor ``S(k, s)``.

From these: ``gamma_min(s)``, ``gamma(k_min, s)``, ``xi_J(s)`` (all from the
member-mean ``kappa_hat``; :func:`~diffcrit.numerics.jacobian_probes.stiffness_curve`),
``xi_2(s)`` and ``xi_OZ(s)``, and the measured critical or pseudo-critical noise
from each estimator with bootstrap intervals
(:func:`~diffcrit.numerics.observables.critical_noise_estimates`). The theory at
each level (:func:`~diffcrit.theory.patch.patch_theory`) is evaluated on the same
lattice and noise grid and compared: is the predicted ``s_c`` inside the measured
interval, do the kinds (critical vs pseudo-critical) agree, how far apart are the
``gamma_min(s)`` curves.

**The kappa_hat shortcut.** For the patch model ``J_{i, i+r} = K_i(r)`` with
``K_i(r) = Cov_w(i)[phi(0), phi(r)]/s^2`` (``PatchDenoiser.jacobian_rows``) and no
other entry. For the unit complex plane wave ``e_k(x) = exp(i k.x)/sqrt(N)``,

    <e_k, J e_k> = (1/N) sum_i sum_r K_i(r) exp(-i k.i) exp(i k.(i + r))
                 = sum_r Kbar(r) exp(i k.r),    Kbar(r) = (1/N) sum_i K_i(r),

so ``kappa_hat(k) = Re <e_k, J e_k> = sum_r Kbar(r) cos(k.r)`` exactly, at any
state (not only homogeneous ones), for every ``k``. The probe of
:func:`~diffcrit.numerics.jacobian_probes.fourier_jacobian_spectrum` averages the
cosine and sine waves, ``(<c,Jc> + <s,Js>)/2``, which is that real part for a real
``J``; for a self-conjugate ``k`` (``2k = 0``; ``sin(k.x) = 0`` on the lattice) the
cosine probe alone gives ``(1/N) sum_i sum_r K_i(r) cos^2(k.i) cos(k.r)`` with
``cos^2(k.i) = 1``: the same sum. One ``jacobian_rows`` call per level therefore
replaces ``2 x (number of wavevectors)`` Jacobian-vector products. (The leakage,
which needs ``J e_k`` itself, is not measured by the shortcut.)

**Exact low-k projection.** ``xi_2`` uses only the Fourier components at ``k = 0``
and at the minimal wavevectors; the Ornstein–Zernike fit only those on its
``n_shells`` smallest nonzero shells (a per-sample mean removal changes ``k = 0``
only). Keeping the FFT of each member on those sets (closed under ``k -> -k``) and
transforming back gives real fields on which both estimators return exactly what
they return on the full fields, with the whole ``(n_s, B, *lattice)`` history never
stored.

Entry points: :func:`run_e1` -> :class:`E1Result`, :func:`write_e1` (run folder),
the figures ``plot_e1_*`` and :func:`section_e1` for the main report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffcrit._checks import check_int
from diffcrit.numerics.local_jacobian import kappa_hat_from_jacobian_rows

__all__ = [
    "E1_THEORY_LEVELS",
    "E1Result",
    "run_e1",
    "write_e1",
    "section_e1",
    "kappa_hat_from_jacobian_rows",
    "theory_s_c_interval",
    "low_k_mask",
    "project_low_k",
    "plot_e1_stiffness",
    "plot_e1_correlation_length",
    "plot_e1_kappa_max",
    "plot_e1_critical_noise",
]

#: The three levels of linear theory of THEORY.md 3.3.
E1_THEORY_LEVELS = ("moment", "homogeneous", "marginal")

#: Smallest nonzero shells kept per member for the Ornstein–Zernike fit.
_OZ_SHELLS = 3

#: Estimator keys, in report order.
_ESTIMATORS = ("zero_crossing", "susceptibility_peak", "xi_J_peak", "xi_2_steepest_rise")

#: Reduced scale of the E1 section of the main report (digits, 3x3 window: about
#: 2.5 minutes on 2 free cores; sampling ~3.3 s per denoiser or Jacobian evaluation
#: under load, the marginal level's Monte Carlo ~60 s with 8 draws).
REPORT_E1_SCALE = {"window": 3, "n": 16, "size": 16, "n_levels": 16, "s_min": 0.08, "n_theory_samples": 8}


# ----------------------------------------------------------------------------------
# exact shortcuts
# ----------------------------------------------------------------------------------


def low_k_mask(shape: tuple[int, ...], n_shells: int = _OZ_SHELLS) -> np.ndarray:
    """Boolean mask (FFT order) of ``k = 0`` and the ``n_shells`` smallest nonzero ``q^2`` shells.

    It contains the minimal wavevectors ``+-2 pi/L e_a`` (the first shell on a square
    lattice; every axis's minimal wavevector is added explicitly otherwise) and is
    closed under ``k -> -k`` (``q^2`` is even).
    """
    from diffcrit.numerics.observables import lattice_q2

    q2 = lattice_q2(shape)
    levels = np.unique(np.round(q2, 12))
    keep = np.round(q2, 12) <= levels[min(n_shells, levels.size - 1)]
    d = len(shape)
    for a, side in enumerate(shape):
        for n in (1, side - 1):
            index = tuple(n if b == a else 0 for b in range(d))
            keep[index] = True
    return keep


def project_low_k(fields: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Real fields whose FFT equals that of ``fields`` on ``mask`` and 0 elsewhere."""
    axes = tuple(range(1, fields.ndim))
    transform = np.fft.fftn(fields, axes=axes)
    return np.fft.ifftn(np.where(mask, transform, 0.0), axes=axes).real


# ----------------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------------


def _interval_contains(interval: Any, value: float | None) -> bool | None:
    if interval is None or value is None:
        return None
    return bool(interval[0] <= value <= interval[1])


def _json_float(value: Any) -> Any:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else ("-inf" if value < 0 else None))


@dataclass(frozen=True, eq=False)
class E1Result:
    """Outcome of :func:`run_e1` (all noise levels decreasing, VE-equivalent ``s``).

    Attributes:
        config: the run's parameters (data, window, schedule, n, size, method, ...).
        model: description of the patch denoiser.
        s: observed noise levels ``(n_s,)``.
        t: the same levels in the schedule's clock (``None`` outside its range).
        wavevector_indices: ``(M, d)`` probed wavevectors (one per ``{k, -k}`` pair).
        kappa_mean: ``(n_s, M)`` ensemble-mean ``kappa_hat(k, s)``.
        stiffness: :class:`~diffcrit.numerics.jacobian_probes.StiffnessCurve`
            (``gamma_min``, ``gamma(k_min)``, ``xi_J``, susceptibility, bootstrap).
        xi_2: :class:`~diffcrit.numerics.observables.BootstrapCurve` of ``xi_2(s)``.
        xi_oz: the Ornstein–Zernike length along ``s``.
        structure_factor: ``(n_s, *lattice)`` connected ``S(k, s)``.
        kappa_max: :class:`BootstrapCurve` of ``max_k`` of the member-mean ``kappa_hat``.
        self_consistent: the annealed softening over the model's *own* samples:
            ``s``, ``kappa_max`` (``max_k`` of the mean ``kappa_hat`` at
            ``x + s eps`` with ``x`` the ensemble's final samples) and its RMS
            difference from the measured ``kappa_max`` (a diagnosis of the marginal
            level, which anneals over the training images instead).
        measured_kind: ``"critical"`` (``gamma_min`` crosses 0) or ``"pseudo-critical"``.
        estimates: name -> :class:`~diffcrit.numerics.observables.CriticalNoiseEstimate`
            (``zero_crossing``, ``susceptibility_peak``, ``xi_J_peak``,
            ``xi_2_steepest_rise``).
        min_gamma: measured ``min_s gamma_min(s)`` and its bootstrap interval.
        predictions: level -> :class:`~diffcrit.theory.patch.PatchTheoryResult`.
        comparisons: level -> comparison dictionary (see :func:`run_e1`).
        samples: a few final samples ``(m, *lattice)``.
        timings: seconds spent (sampling, theory per level) and denoiser calls.
    """

    config: dict
    model: dict
    s: np.ndarray
    t: tuple
    wavevector_indices: np.ndarray
    kappa_mean: np.ndarray
    stiffness: Any
    xi_2: Any
    xi_oz: Any
    structure_factor: np.ndarray
    kappa_max: Any
    measured_kind: str
    estimates: dict
    min_gamma: dict
    predictions: dict
    comparisons: dict
    samples: np.ndarray
    timings: dict = field(default_factory=dict)
    self_consistent: dict | None = None

    # -- summaries --------------------------------------------------------------------
    def measured_summary(self) -> dict:
        """Measured estimates with intervals, in ``s`` and in the schedule's clock."""
        out = {}
        for name, est in self.estimates.items():
            entry = est.to_dict()
            entry["value"] = est.value
            entry["t"] = self.clock(est.value)
            entry["t_interval"] = None if est.interval is None else [self.clock(v) for v in est.interval]
            out[name] = entry
        return out

    def clock(self, s_value: float | None) -> float | None:
        """``t(s)`` in the run's schedule (``None`` outside its range or for ``None``)."""
        return _clock(self.config["schedule"], s_value)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the curves as lists)."""
        preds = {}
        for level, p in self.predictions.items():
            preds[level] = {
                "kind": p.kind,
                "s_c": p.s_c,
                "t_c": self.clock(p.s_c),
                "k_c": list(p.k_c),
                "kappa_c": p.kappa_c,
                "min_stiffness": p.min_stiffness,
                "gamma_min": p.gamma_min.tolist(),
                "xi_2": None if p.xi_2 is None else [_json_float(v) for v in p.xi_2],
                "s_saturation": p.s_saturation,
                "notes": list(p.notes),
            }
        curves = {
            "gamma_min": self.stiffness.gamma_min.to_dict(),
            "gamma_kmin": None if self.stiffness.gamma_kmin is None else self.stiffness.gamma_kmin.to_dict(),
            "xi_J": None if self.stiffness.xi_J is None else self.stiffness.xi_J.to_dict(),
            "kappa_max": self.kappa_max.to_dict(),
            "xi_2": self.xi_2.to_dict(),
            "xi_oz": self.xi_oz.to_dict(),
            "k_at_min": self.stiffness.k_at_min.tolist(),
        }
        return {
            "experiment": "E1",
            "config": dict(self.config),
            "model": dict(self.model),
            "s": self.s.tolist(),
            "t": list(self.t),
            "measured_kind": self.measured_kind,
            "measured": self.measured_summary(),
            "min_gamma": dict(self.min_gamma),
            "predictions": preds,
            "comparisons": {k: dict(v) for k, v in self.comparisons.items()},
            "curves": curves,
            "timings": dict(self.timings),
            "self_consistent": None if self.self_consistent is None else {
                "kappa_max": [float(v) for v in self.self_consistent["kappa_max"]],
                "n_samples": self.self_consistent["n_samples"],
                "rms_difference_from_measured": self.self_consistent["rms_difference_from_measured"],
            },
        }

    def __repr__(self) -> str:
        c = self.config
        lines = [f"E1Result(data={c['data']!r}, window={c['window']}, n={c['n']}, size={c['size']}, "
                 f"method={c['method']!r}, {len(self.s)} levels s={self.s[0]:.3g}->{self.s[-1]:.3g}, "
                 f"measured {self.measured_kind}"]
        for name, est in self.estimates.items():
            lines.append(f"  measured {name}: {est!r}")
        for level, comp in self.comparisons.items():
            lines.append(f"  {level}: {comp['verdict']}")
        lines.append(")")
        return "\n".join(lines)


def _clock(schedule_spec: Any, s_value: float | None) -> float | None:
    if s_value is None or not math.isfinite(float(s_value)):
        return None
    from diffcrit.theory.schedules import get_schedule

    sched = get_schedule(schedule_spec)
    if not sched.s_min <= float(s_value) <= sched.s_max:
        return None
    return float(sched.t_of_s(float(s_value)))


# ----------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------


def _load_images(data: Any) -> tuple[np.ndarray, str]:
    from diffcrit.data import Dataset, load_dataset

    if isinstance(data, str):
        dataset = load_dataset(data)
        name = data
    elif isinstance(data, Dataset):
        dataset, name = data, data.name
    else:
        raise TypeError(f"data must be a dataset spec (str) or a diffcrit Dataset, got {type(data).__name__}")
    images = np.asarray(dataset.images, dtype=np.float64)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"E1 is stated for one channel; data {name!r} has {images.shape[1]} channels")
        images = images[:, 0]
    return images, name


# ----------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------


def _bootstrap_min(curve: Any, confidence: float) -> dict:
    from diffcrit.numerics.observables import _percentile_interval

    j = int(np.argmin(curve.values))
    out = {"value": float(curve.values[j]), "s": float(curve.s[j]), "interval": None}
    if curve.n_bootstrap:
        lo, hi = _percentile_interval(curve.replicates.min(axis=0), confidence)
        out["interval"] = [float(lo), float(hi)]
    return out


def _theory_gamma_kmin(pred: Any) -> np.ndarray:
    d = len(pred.lattice)
    values = []
    for a in range(d):
        index = tuple(1 if b == a else 0 for b in range(d))
        values.append(pred.kappa[(slice(None),) + index])
    return 1.0 - np.mean(values, axis=0)


def _crossing(log_s: np.ndarray, f: np.ndarray, j: int) -> float:
    """``ln s`` where ``f`` crosses 0 between nodes ``j`` and ``j + 1`` (linear in ``ln s``)."""
    a, b = f[j], f[j + 1]
    w = 0.0 if a == b else a / (a - b)
    return float(log_s[j] + w * (log_s[j + 1] - log_s[j]))


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

    if pred.kappa_stderr is None or pred.s_c is None or not math.isfinite(pred.s_c):
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
    low = min(math.exp(min(ends)), float(pred.s_c))
    high = max(math.exp(max(ends)), float(pred.s_c))
    return [low, high]


def _compare(level: str, pred: Any, measured_kind: str, estimates: dict, gamma_min: Any,
             min_gamma: dict, confidence: float = 0.95) -> dict:
    """Prediction of one level against the measurement (see :func:`run_e1`)."""
    primary_name = "zero_crossing" if measured_kind == "critical" else "susceptibility_peak"
    primary = estimates[primary_name]
    inside = {name: _interval_contains(est.interval, pred.s_c) for name, est in estimates.items()}
    band = gamma_min.interval
    theory_curve = pred.gamma_min
    if band is not None:
        in_band = (theory_curve >= band[0]) & (theory_curve <= band[1])
        fraction_in_band = float(np.mean(in_band))
    else:
        fraction_in_band = None
    # the linear theories describe the approach to the transition: compare the curves
    # for s >= the measured point of maximal softening (below it the moment level's
    # S_W/s^2 diverges and would swamp any summary)
    approach = gamma_min.s >= min_gamma["s"]
    rms = float(np.sqrt(np.mean((theory_curve[approach] - gamma_min.values[approach]) ** 2)))
    rms_all = float(np.sqrt(np.mean((theory_curve - gamma_min.values) ** 2)))
    kind_agrees = pred.kind == measured_kind
    inside_primary = inside[primary_name]
    min_inside = _interval_contains(min_gamma["interval"], pred.min_stiffness)
    theory_interval = theory_s_c_interval(pred, confidence)
    overlaps = None
    if theory_interval is not None and primary.interval is not None:
        overlaps = bool(theory_interval[0] <= primary.interval[1] and primary.interval[0] <= theory_interval[1])
    where = f"the measured {primary_name.replace('_', ' ')} interval"
    if inside_primary:
        verdict = (f"agrees: predicted {pred.kind} s_c = {pred.s_c:.4g} lies inside {where} "
                   f"[{primary.interval[0]:.4g}, {primary.interval[1]:.4g}]")
    elif primary.interval is None:
        verdict = (f"undecided: predicted {pred.kind} s_c = {pred.s_c:.4g}, but the measured "
                   f"{primary_name.replace('_', ' ')} has no interval")
    else:
        side = "above" if pred.s_c > primary.interval[1] else "below"
        verdict = (f"lies {side} {where} [{primary.interval[0]:.4g}, {primary.interval[1]:.4g}]: "
                   f"predicted {pred.kind} s_c = {pred.s_c:.4g}")
        if overlaps:
            verdict = ("agrees within the theory's Monte Carlo error: its interval "
                       f"[{theory_interval[0]:.4g}, {theory_interval[1]:.4g}] overlaps; the point " + verdict)
        elif theory_interval is not None:
            verdict = (f"disagrees beyond the theory's Monte Carlo error (its interval "
                       f"[{theory_interval[0]:.4g}, {theory_interval[1]:.4g}]): the point " + verdict)
        else:
            verdict = "disagrees: the point " + verdict
    if not kind_agrees:
        verdict += (f"; the kinds differ (predicted {pred.kind}, measured {measured_kind}: "
                    f"predicted min stiffness {pred.min_stiffness:.3g}, measured {min_gamma['value']:.3g})")
    return {
        "level": level,
        "predicted_kind": pred.kind,
        "measured_kind": measured_kind,
        "kind_agrees": kind_agrees,
        "predicted_s_c": pred.s_c,
        "predicted_s_c_interval": theory_interval,
        "predicted_k_c": list(pred.k_c),
        "predicted_min_stiffness": pred.min_stiffness,
        "measured_min_stiffness": min_gamma["value"],
        "measured_min_stiffness_interval": min_gamma["interval"],
        "min_stiffness_inside": min_inside,
        "primary_estimator": primary_name,
        "inside_primary_interval": inside_primary,
        "theory_interval_overlaps_primary": overlaps,
        "inside": inside,
        "gamma_min_rms_difference": rms,
        "gamma_min_rms_difference_all_levels": rms_all,
        "gamma_min_fraction_in_band": fraction_in_band,
        "verdict": verdict,
    }


def _self_consistent_softening(model: Any, samples: np.ndarray, s_obs: np.ndarray, wavevectors: np.ndarray,
                               n_use: int, seed: int, measured: np.ndarray, s_softest: float) -> dict:
    """``max_k`` of the mean ``kappa_hat`` at ``x + s eps`` over the model's final samples ``x``.

    The RMS difference from the measured curve is taken, as for the theory levels, on
    the approach ``s >= s_softest`` (the measured point of maximal softening): below it
    the trajectories' states are no longer ``x + s eps`` with independent ``eps``.
    """
    gen = np.random.default_rng(seed + 1)
    states = samples[:n_use]
    values = np.empty(len(s_obs))
    for j, s in enumerate(s_obs):
        y = states + float(s) * gen.standard_normal(states.shape).astype(states.dtype)
        rows = model.jacobian_rows(y, float(s))
        values[j] = kappa_hat_from_jacobian_rows(rows, model.offsets, wavevectors).mean(axis=0).max()
    approach = np.asarray(s_obs) >= s_softest
    rms = float(np.sqrt(np.mean((values[approach] - measured[approach]) ** 2)))
    return {"s": np.asarray(s_obs, dtype=np.float64), "kappa_max": values, "n_samples": int(n_use),
            "rms_difference_from_measured": rms}


def measure_curves(s_obs: np.ndarray, kappa: np.ndarray, low_k: np.ndarray, lattice: tuple[int, ...],
                   wave_idx: np.ndarray, flat_mask: np.ndarray, member_indices: np.ndarray, *,
                   kappa_member_indices: np.ndarray | None = None, confidence: float = 0.95,
                   method: str = "jacobian rows") -> dict:
    """The measured curves and critical-noise estimates from an ensemble's observations.

    Args:
        s_obs: observed noise levels ``(n_s,)`` (decreasing).
        kappa: ``(n_s, B_k, M)`` ``kappa_hat`` of ``B_k`` members at the wavevectors ``wave_idx``.
        low_k: ``(n_s, B, len(flat_mask))`` Fourier components of all ``B`` members on
            the low-``k`` mask (:func:`low_k_mask`, flattened indices ``flat_mask``).
        lattice: lattice shape.
        wave_idx: ``(M, d)`` wavevector indices.
        member_indices: ``(R, B)`` bootstrap resamples of the ``B`` members (``xi``).
        kappa_member_indices: ``(R, B_k)`` resamples of the ``kappa`` members; default
            ``member_indices`` (then ``B_k = B`` and the replicates are paired).
        confidence: interval level.
        method: how ``kappa`` was measured (recorded in the spectra).

    Returns:
        ``stiffness``, ``kappa_max``, ``xi_2``, ``xi_oz``, ``estimates``,
        ``measured_kind`` and ``min_gamma``.
    """
    from diffcrit.numerics.jacobian_probes import FourierJacobianSpectrum, stiffness_curve
    from diffcrit.numerics.observables import (
        BootstrapCurve,
        critical_noise_estimates,
        ornstein_zernike_correlation_length,
        second_moment_correlation_length,
    )

    kappa_members = member_indices if kappa_member_indices is None else kappa_member_indices
    n_k_members = kappa.shape[1]
    if kappa_members.shape[1] != n_k_members:
        raise ValueError(f"kappa has {n_k_members} members but its resamples index {kappa_members.shape[1]}")
    n = low_k.shape[1]
    wavevectors = 2.0 * np.pi * wave_idx / np.asarray(lattice)
    k_table_q2 = (4.0 * np.sin(wavevectors / 2.0) ** 2).sum(axis=1)
    self_conj = np.all((2 * wave_idx) % np.asarray(lattice) == 0, axis=1)
    spectra = [
        FourierJacobianSpectrum(
            s=float(s), shape=lattice, wavevector_indices=wave_idx,
            wavevectors=np.where(wavevectors > np.pi, wavevectors - 2 * np.pi, wavevectors),
            q2=k_table_q2, self_conjugate=self_conj, kappa=kappa[j], kappa_cos=kappa[j], kappa_sin=kappa[j],
            leakage=np.full(kappa[j].shape, np.nan), method=method)
        for j, s in enumerate(s_obs)
    ]
    stiff = stiffness_curve(spectra, member_indices=kappa_members, confidence=confidence)

    weights = np.concatenate([np.ones((1, n_k_members)), _counts(kappa_members, n_k_members)])  # (1+R, B_k)
    kmax_all = (np.einsum("rm,smk->srk", weights, kappa) / n_k_members).max(axis=-1)  # (n_s, 1+R)
    kappa_max = BootstrapCurve("kappa_max", s_obs, kmax_all[:, 0], kmax_all[:, 1:], confidence)

    xi2_vals, xi2_reps, oz_vals, oz_reps = [], [], [], []
    for j in range(len(s_obs)):
        full = np.zeros((n, int(np.prod(lattice))), dtype=complex)
        full[:, flat_mask] = low_k[j]
        fields = np.fft.ifftn(full.reshape((n,) + tuple(lattice)), axes=tuple(range(1, len(lattice) + 1))).real
        e2 = second_moment_correlation_length(fields, n_bootstrap=0, member_indices=member_indices,
                                              confidence=confidence)
        eo = ornstein_zernike_correlation_length(fields, n_shells=_OZ_SHELLS, n_bootstrap=0,
                                                 member_indices=member_indices, confidence=confidence)
        xi2_vals.append(e2.value)
        xi2_reps.append(e2.replicates)
        oz_vals.append(eo.value)
        oz_reps.append(eo.replicates)
    xi_2 = BootstrapCurve("xi_2", s_obs, np.array(xi2_vals), np.array(xi2_reps), confidence)
    xi_oz = BootstrapCurve("xi_oz", s_obs, np.array(oz_vals), np.array(oz_reps), confidence)

    susc = critical_noise_estimates(s_obs, gamma_min_samples=stiff.gamma_min, xi_2_samples=xi_2,
                                    peak_of="susceptibility", confidence=confidence)
    estimates = {
        "zero_crossing": susc.zero_crossing,
        "susceptibility_peak": susc.response_peak,
        "xi_2_steepest_rise": susc.steepest_rise,
    }
    if stiff.xi_J is not None:
        xj = critical_noise_estimates(s_obs, xi_J_samples=stiff.xi_J, peak_of="xi_J", confidence=confidence)
        estimates["xi_J_peak"] = xj.response_peak
    estimates = {k: estimates[k] for k in _ESTIMATORS if k in estimates}
    measured_kind = "critical" if estimates["zero_crossing"].value is not None else "pseudo-critical"
    return {"stiffness": stiff, "kappa_max": kappa_max, "xi_2": xi_2, "xi_oz": xi_oz, "estimates": estimates,
            "measured_kind": measured_kind, "min_gamma": _bootstrap_min(stiff.gamma_min, confidence)}


def run_e1(
    data: Any,
    window: int = 3,
    schedule: Any = "vp-linear",
    n: int = 256,
    size: int = 32,
    method: str = "heun",
    n_levels: int = 40,
    s_max: float | None = None,
    s_min: float | None = None,
    rng: Any = 0,
    progress: bool = True,
    prune_margin: float | None = None,
    levels: tuple[str, ...] = E1_THEORY_LEVELS,
    n_bootstrap: int = 400,
    confidence: float = 0.95,
    n_theory_samples: int = 32,
    n_final_samples: int = 16,
    dtype: Any = "float64",
    n_self_consistent: int = 32,
    checkpoint: Any = None,
    checkpoint_every: float = 300.0,
) -> E1Result:
    """Run experiment E1: the patch model's ensemble against its theory at each level.

    Args:
        data: dataset spec (``"digits"``, ``"synthetic:binary?size=16&corr=1.5"``, ...)
            or a :class:`~diffcrit.data.Dataset`; spec strings are standardized
            globally (one scalar mean and std).
        window: odd window side ``P``.
        schedule: schedule spec whose clock the results are also read in.
        n: ensemble size (>= 8, for the bootstrap).
        size: lattice side of the simulated fields (the window must fit).
        method: deterministic sampler of the probability-flow ODE (``"heun"``,
            ``"euler"``, ``"ddim"``).
        n_levels: observed noise levels, log-spaced from ``s_max`` to ``s_min``; the
            sampler steps exactly onto them (``n_levels - 1`` steps).
        s_max: start of the trajectories; default ``max(4 s_b, 10 std)`` with
            ``s_b`` the bound above which no mode can be unstable
            (:func:`~diffcrit.theory.patch_stats.noise_scan_upper_bound`).
        s_min: end; default ``0.05 x std``.
        rng: int seed or numpy Generator (sampler, bootstrap and the marginal
            level's Monte Carlo draw independent streams from it).
        progress: show progress bars.
        prune_margin: passed to the denoiser (exact pruning at low noise).
        levels: theory levels to compare (subset of ``E1_THEORY_LEVELS``).
        n_bootstrap: bootstrap replicates (members resampled, paired across ``s``).
        confidence: level of every interval.
        n_theory_samples: Monte Carlo draws of the marginal level.
        n_final_samples: final samples kept for the figure.
        dtype: ``"float64"`` (default) or ``"float32"``: precision of the denoiser
            and the trajectories (observables are reduced in float64).
        n_self_consistent: final samples over which the self-consistent annealed
            softening is averaged (see :attr:`E1Result.self_consistent`).
        checkpoint: optional file for the ensemble's state; an interrupted run
            called again with the same file and arguments resumes where it stopped
            (bit for bit, same thread count).
        checkpoint_every: seconds between checkpoint writes.

    Returns:
        :class:`E1Result`. Each comparison holds the predicted kind and ``s_c``,
        whether ``s_c`` lies inside each measured interval (the *primary* one is the
        zero crossing when the measurement is critical, the susceptibility peak
        otherwise), the measured and predicted minimum stiffness, the RMS difference
        of the ``gamma_min(s)`` curves and the fraction of levels where the
        prediction lies inside the measured band, and a plain-language verdict.

    Raises:
        ValueError, TypeError: bad input, before any heavy work.
    """
    from diffcrit.numerics.patch_denoiser import PatchDenoiser
    from diffcrit.numerics.samplers import get_sampler
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.theory.windows import check_window_fits, square_window

    # ---- validation, cheap ------------------------------------------------------------
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an odd integer side >= 1, got {window!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer side >= 1 (3, 5, 7, ...), got {window}")
    n = check_int("n", n, minimum=8)
    size = check_int("size", size, minimum=3)
    n_levels = check_int("n_levels", n_levels, minimum=5)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    if str(dtype) not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dtype = np.dtype(str(dtype))
    n_theory_samples = check_int("n_theory_samples", n_theory_samples, minimum=2)
    n_self_consistent = check_int("n_self_consistent", n_self_consistent, minimum=1)
    stepper = get_sampler(method)
    if stepper.STOCHASTIC:
        raise ValueError(f"method must be a deterministic probability-flow sampler (heun, euler, ddim), got {method!r}")
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in E1_THEORY_LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {E1_THEORY_LEVELS}, got {levels!r}")
    sched = get_schedule(schedule)
    images, name = _load_images(data)
    dim = images.ndim - 1
    lattice = (size,) * dim
    check_window_fits(square_window(int(window), dim), lattice)

    from diffcrit.numerics.observables import MIN_BOOTSTRAP_MEMBERS
    from diffcrit.theory.patch_stats import noise_scan_upper_bound, patch_statistics

    if n < MIN_BOOTSTRAP_MEMBERS:  # pragma: no cover - guarded above by the same number
        raise ValueError(f"n must be >= {MIN_BOOTSTRAP_MEMBERS} for a bootstrap, got {n}")
    stats = patch_statistics(images, int(window))
    std = float(images.std())
    bound = noise_scan_upper_bound(stats)
    s_top = max(4.0 * bound, 10.0 * std) if s_max is None else float(s_max)
    s_bottom = 0.05 * std if s_min is None else float(s_min)
    if not (math.isfinite(s_top) and math.isfinite(s_bottom) and 0 < s_bottom < s_top):
        raise ValueError(f"need 0 < s_min < s_max, got s_min={s_bottom!r}, s_max={s_top!r}")

    seeds = np.random.SeedSequence(rng if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
                                   else np.random.default_rng(rng).integers(2**63))
    sampler_seed, boot_seed, theory_seed = (int(c.generate_state(1, dtype=np.uint64)[0] % 2**63)
                                            for c in seeds.spawn(3))

    # ---- the ensemble -----------------------------------------------------------------
    model = PatchDenoiser(images, int(window), mode="equivariant", backend="numba", prune_margin=prune_margin,
                          dtype=dtype)
    from diffcrit.numerics.jacobian_probes import representative_wavevector_indices
    from diffcrit.numerics.samplers import geometric_s_grid, sample

    wave_idx = representative_wavevector_indices(lattice)
    wavevectors = 2.0 * np.pi * wave_idx / np.asarray(lattice)
    mask = low_k_mask(lattice)
    flat_mask = np.flatnonzero(mask.ravel())
    grid = geometric_s_grid(s_top, s_bottom, n_levels - 1)

    # at an observed level one posterior-moments pass gives both D(y) (for the
    # sampler) and the Jacobian rows (for the kappa observer): no separate call
    last_rows: dict = {}

    def denoise_with_moments(y: np.ndarray, s: float) -> np.ndarray:
        posterior = model.posterior_moments(y, s)
        last_rows.clear()
        last_rows.update(state=y, s=s, rows=posterior.jacobian_rows(s))
        return posterior.mean

    def observe_kappa(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        if last_rows.get("state") is y and last_rows.get("s") == s:
            rows = last_rows["rows"]
        else:  # the first level after a resume: its D came from the checkpoint
            rows = model.jacobian_rows(y, s)
        return kappa_hat_from_jacobian_rows(rows, model.offsets, wavevectors)

    def observe_low_k(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        transform = np.fft.fftn(np.asarray(y, dtype=np.float64), axes=tuple(range(1, y.ndim)))
        return transform.reshape(y.shape[0], -1)[:, flat_mask]

    def observe_structure(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        from diffcrit.numerics.observables import structure_factor

        return structure_factor(np.asarray(y, dtype=np.float64))

    mean = float(images.mean())
    started = time.perf_counter()
    result = sample(model, (n,) + lattice, grid, method=method, rng=sampler_seed,
                    observers={"kappa": observe_kappa, "low_k": observe_low_k, "structure": observe_structure},
                    progress=bool(progress), mean=mean, desc=f"E1 {name} P={window}",
                    observed_denoiser=denoise_with_moments, dtype=dtype, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every,
                    checkpoint_key=f"E1 {name} window={window} prune={prune_margin} model={model!r}")
    seconds_sampling = time.perf_counter() - started
    s_obs = result.observed_s
    kappa = result.observations["kappa"]  # (n_s, B, M)

    # ---- measured curves ----------------------------------------------------------------
    from diffcrit.numerics.observables import bootstrap_member_indices

    member_indices = bootstrap_member_indices(n, n_bootstrap, boot_seed)
    measured = measure_curves(s_obs, kappa, result.observations["low_k"], lattice, wave_idx, flat_mask,
                              member_indices, confidence=confidence,
                              method="patch kernel average (leakage not measured)")
    stiff, kappa_max, xi_2, xi_oz = (measured[k] for k in ("stiffness", "kappa_max", "xi_2", "xi_oz"))
    estimates, measured_kind, min_gamma = (measured[k] for k in ("estimates", "measured_kind", "min_gamma"))

    # ---- theory on the same lattice and grid --------------------------------------------
    from diffcrit.theory.patch import patch_theory

    predictions, comparisons, theory_seconds = {}, {}, {}
    for level in levels:
        t0 = time.perf_counter()
        predictions[level] = patch_theory(images, int(window), level=level, lattice=lattice, s_grid=s_obs,
                                          rng=theory_seed, s_start=float(s_obs[0]),
                                          n_samples=n_theory_samples)
        theory_seconds[level] = round(time.perf_counter() - t0, 3)
        comparisons[level] = _compare(level, predictions[level], measured_kind, estimates,
                                      stiff.gamma_min, min_gamma, confidence)

    # the marginal level anneals over training images; the model's samples need not look
    # like them, so the same average over the ensemble's own final samples says whether a
    # disagreement is the reference distribution's (cost: n_self / n of one pass per level)
    t0 = time.perf_counter()
    self_consistent = _self_consistent_softening(model, np.asarray(result.samples), s_obs, wavevectors,
                                                 min(n, n_self_consistent), theory_seed, kappa_max.values,
                                                 min_gamma["s"])
    theory_seconds["self_consistent"] = round(time.perf_counter() - t0, 3)

    n_moment_calls = len(s_obs)  # the observed levels' evaluations carry the Jacobian
    n_plain_calls = int(result.n_denoiser_calls) - n_moment_calls
    config = {
        "data": name, "window": int(window), "schedule": sched.spec, "n": n, "size": size,
        "lattice": list(lattice), "method": stepper.name, "n_levels": n_levels, "s_max": s_top,
        "s_min": s_bottom, "seed": rng if isinstance(rng, (int, np.integer)) else None,
        "prune_margin": prune_margin, "levels": list(levels), "n_bootstrap": n_bootstrap,
        "confidence": confidence, "n_theory_samples": n_theory_samples, "dtype": dtype.name, "data_std": std,
        "no_instability_bound": bound,
    }
    return E1Result(
        config=config,
        model=model.to_dict(),
        s=s_obs,
        t=tuple(_clock(sched.spec, v) for v in s_obs),
        wavevector_indices=wave_idx,
        kappa_mean=kappa.mean(axis=1),
        stiffness=stiff,
        xi_2=xi_2,
        xi_oz=xi_oz,
        structure_factor=result.observations["structure"],
        kappa_max=kappa_max,
        measured_kind=measured_kind,
        estimates=estimates,
        min_gamma=min_gamma,
        predictions=predictions,
        comparisons=comparisons,
        samples=np.asarray(result.samples[:n_final_samples]),
        self_consistent=self_consistent,
        timings={
            "sampling_seconds": round(seconds_sampling, 3),
            "denoiser_calls": n_plain_calls,
            "moment_calls": n_moment_calls,
            "seconds_per_evaluation": round(seconds_sampling / int(result.n_denoiser_calls), 4),
            "resumed_from_step": int(result.resumed_from_step),
            "theory_seconds": theory_seconds,
        },
    )


def _counts(member_indices: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros((member_indices.shape[0], n))
    np.add.at(counts, (np.arange(member_indices.shape[0])[:, None], member_indices), 1.0)
    return counts


# ----------------------------------------------------------------------------------
# figures (plots.py conventions: ax=None, return the axes, lazy matplotlib)
# ----------------------------------------------------------------------------------

_LEVEL_STYLE = {"moment": ("C1", "--"), "homogeneous": ("C2", "-."), "marginal": ("C3", ":")}


def _axes(ax, figsize=(5.4, 3.8)):
    if ax is not None:
        return ax
    from diffcrit.validation.plots import _pyplot

    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def _band(ax, curve, color, label, finite_only=False):
    values = np.asarray(curve.values, dtype=float)
    ax.plot(curve.s, values, "o-", ms=2.5, color=color, label=label)
    interval = curve.interval
    if interval is not None:
        lo, hi = (np.asarray(v, dtype=float) for v in interval)
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(curve.s[ok], lo[ok], hi[ok], color=color, alpha=0.25, lw=0)


def plot_e1_stiffness(result: E1Result, ax=None, which: str = "gamma_min"):
    """Measured ``gamma_min(s)`` (or ``gamma(k_min, s)``) with its band; theory levels overlaid."""
    if which not in ("gamma_min", "gamma_kmin"):
        raise ValueError(f"which must be 'gamma_min' or 'gamma_kmin', got {which!r}")
    ax = _axes(ax)
    curve = result.stiffness.gamma_min if which == "gamma_min" else result.stiffness.gamma_kmin
    _band(ax, curve, "C0", f"measured (n={result.config['n']}, {result.config['confidence']:.0%} band)")
    for level, pred in result.predictions.items():
        color, style = _LEVEL_STYLE[level]
        theory = pred.gamma_min if which == "gamma_min" else _theory_gamma_kmin(pred)
        ax.plot(pred.s_grid, theory, style, color=color, label=f"theory: {level}")
    if which == "gamma_min" and result.self_consistent is not None:
        ax.plot(result.s, 1.0 - result.self_consistent["kappa_max"], "x", color="C5", ms=4,
                label="annealed over the model's own samples")
    ax.axhline(0.0, color="k", lw=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("noise level s")
    ax.set_ylabel(r"$\gamma_{\min}(s)$" if which == "gamma_min" else r"$\gamma(k_{\min}, s)$")
    lo = min(-0.2, float(np.min(curve.values)) - 0.1)
    ax.set_ylim(lo, 1.05)
    ax.legend(fontsize=7)
    ax.set_title(f"E1 {result.config['data']}, P={result.config['window']}", fontsize=9)
    return ax


def plot_e1_correlation_length(result: E1Result, ax=None):
    """Measured ``xi_2(s)`` and ``xi_OZ(s)`` against the linear theory at each level."""
    ax = _axes(ax)
    _band(ax, result.xi_2, "C0", r"measured $\xi_2$")
    _band(ax, result.xi_oz, "C4", r"measured $\xi_{OZ}$")
    top = float(np.nanmax(np.where(np.isfinite(result.xi_2.values), result.xi_2.values, np.nan)))
    for level, pred in result.predictions.items():
        if pred.xi_2 is None:
            continue
        color, style = _LEVEL_STYLE[level]
        ax.plot(pred.s_grid, np.where(np.isfinite(pred.xi_2), pred.xi_2, np.nan), style, color=color,
                label=f"linear theory: {level}")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.5)
    ax.set_ylim(0, max(4 * top, 2.0) if math.isfinite(top) else None)
    ax.set_xlabel("noise level s")
    ax.set_ylabel("correlation length (sites)")
    ax.legend(fontsize=7)
    return ax


def plot_e1_kappa_max(result: E1Result, ax=None):
    """``max_k`` of the ensemble-mean ``kappa_hat(k, s)`` with band; theory levels overlaid."""
    ax = _axes(ax)
    _band(ax, result.kappa_max, "C0", r"measured $\max_k \bar\kappa(k,s)$")
    for level, pred in result.predictions.items():
        color, style = _LEVEL_STYLE[level]
        ax.plot(pred.s_grid, 1.0 - pred.gamma_min, style, color=color, label=f"theory: {level}")
    if result.self_consistent is not None:
        ax.plot(result.s, result.self_consistent["kappa_max"], "x", color="C5", ms=4,
                label="annealed over the model's own samples")
    ax.axhline(1.0, color="k", lw=0.7)
    ax.set_xscale("log")
    ax.set_ylim(0, max(1.3, float(np.max(result.kappa_max.values)) + 0.1))
    ax.set_xlabel("noise level s")
    ax.set_ylabel(r"$\kappa_{\max}(s)$")
    ax.legend(fontsize=7)
    return ax


def plot_e1_critical_noise(result: E1Result, ax=None):
    """Measured critical-noise estimates with intervals against each level's prediction."""
    ax = _axes(ax, figsize=(5.4, 3.2))
    names = list(result.estimates)
    for i, name in enumerate(names):
        est = result.estimates[name]
        if est.value is not None:
            ax.plot(est.value, i, "o", color="C0")
        if est.interval is not None:
            ax.plot(est.interval, [i, i], "-", color="C0", lw=2)
    for level, pred in result.predictions.items():
        color, style = _LEVEL_STYLE[level]
        ax.axvline(pred.s_c, ls=style, color=color, label=f"{level}: {pred.kind} s_c={pred.s_c:.3g}")
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("noise level s")
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.legend(fontsize=7, loc="best")
    return ax


# ----------------------------------------------------------------------------------
# run folder and report section
# ----------------------------------------------------------------------------------


def _arrays(result: E1Result, prefix: str = "") -> dict:
    out = {
        "s": result.s,
        "wavevector_indices": result.wavevector_indices,
        "kappa_mean": result.kappa_mean,
        "gamma": result.stiffness.gamma,
        "gamma_min": result.stiffness.gamma_min.values,
        "gamma_min_replicates": result.stiffness.gamma_min.replicates,
        "xi_2": result.xi_2.values,
        "xi_oz": result.xi_oz.values,
        "kappa_max": result.kappa_max.values,
        "structure_factor": result.structure_factor,
        "final_samples": result.samples,
    }
    if result.stiffness.gamma_kmin is not None:
        out["gamma_kmin"] = result.stiffness.gamma_kmin.values
    if result.stiffness.xi_J is not None:
        out["xi_J"] = result.stiffness.xi_J.values
    if result.self_consistent is not None:
        out["self_consistent_kappa_max"] = result.self_consistent["kappa_max"]
    for level, pred in result.predictions.items():
        out[f"theory_{level}_kappa"] = pred.kappa
        out[f"theory_{level}_gamma_min"] = pred.gamma_min
        if pred.kappa_stderr is not None:
            out[f"theory_{level}_kappa_stderr"] = pred.kappa_stderr
        if pred.xi_2 is not None:
            out[f"theory_{level}_xi_2"] = pred.xi_2
    return {prefix + k: np.asarray(v) for k, v in out.items()}


def _figures(result: E1Result, save) -> None:
    """Call ``save(ax, name, caption)`` for every E1 figure."""
    from diffcrit.validation.plots import plot_samples

    c = result.config
    save(plot_e1_stiffness(result), "e1_gamma_min",
         f"Measured gamma_min(s) = min_k (1 - kappa_hat) of the ensemble-mean spectrum (n={c['n']}, "
         f"{c['size']}^d lattice, band: {c['confidence']:.0%} bootstrap) with the three theory levels.")
    if result.stiffness.gamma_kmin is not None:
        save(plot_e1_stiffness(result, which="gamma_kmin"), "e1_gamma_kmin",
             "Measured gamma(k_min, s) at the smallest nonzero wavevector, with the theory levels.")
    save(plot_e1_correlation_length(result), "e1_xi",
         "Measured xi_2(s) and Ornstein-Zernike length against the linear fluctuation theory of each level.")
    save(plot_e1_kappa_max(result), "e1_kappa_max",
         "max_k of the ensemble-mean kappa_hat(k, s); kappa = 1 is the instability threshold.")
    save(plot_e1_critical_noise(result), "e1_critical_noise",
         "Measured critical-noise estimates (points, bootstrap intervals) and each level's predicted s_c.")
    if result.samples.ndim == 3:
        save(plot_samples(result.samples, n=min(16, len(result.samples)), title="E1 final samples"),
             "e1_samples", "A few final samples of the ensemble.")


def _document_e1(result: E1Result, document: Any, reduced_note: str | None = None) -> None:
    c = result.config
    document.heading("E1: patch model against its linear theory")
    text = (f"Ensemble of {c['n']} probability-flow trajectories ({c['method']}) of the equivariant "
            f"patch model ({c['window']}x{c['window']} window, {result.model['n_distinct_patches']} distinct "
            f"patches) on a periodic {'x'.join(map(str, c['lattice']))} lattice, from s = {c['s_max']:.3g} "
            f"to {c['s_min']:.3g} over {c['n_levels']} observed levels. Measured: {result.measured_kind} "
            f"(min gamma_min = {result.min_gamma['value']:.3g} at s = {result.min_gamma['s']:.3g}).")
    if reduced_note:
        text += " " + reduced_note
    document.paragraph(text)
    rows = []
    for name, est in result.estimates.items():
        rows.append({"estimator": name.replace("_", " "), "s": est.value,
                     "interval": None if est.interval is None else list(est.interval),
                     f"t ({c['schedule']})": result.clock(est.value), "note": est.note or ""})
    document.table(rows)
    rows = []
    for level, comp in result.comparisons.items():
        pred = result.predictions[level]
        rows.append({"level": level, "kind": pred.kind, "s_c": pred.s_c,
                     "s_c interval (theory's Monte Carlo)": comp.get("predicted_s_c_interval"),
                     f"t_c ({c['schedule']})": result.clock(pred.s_c), "k_c": list(pred.k_c),
                     "min stiffness": pred.min_stiffness,
                     "inside primary interval": comp["inside_primary_interval"],
                     "gamma_min RMS diff": comp["gamma_min_rms_difference"]})
    document.table(rows)
    bullets = [f"{level}: {comp['verdict']}" for level, comp in result.comparisons.items()]
    sc = result.self_consistent
    if sc is not None:
        marginal = result.comparisons.get("marginal")
        versus = ("" if marginal is None else
                  f" (the marginal level, annealed over training images: {marginal['gamma_min_rms_difference']:.3g})")
        bullets.append(f"diagnosis: the same annealed average taken over {sc['n_samples']} of the model's own final "
                       f"samples differs from the measured softening by RMS {sc['rms_difference_from_measured']:.3g} "
                       "on the approach to the softest point"
                       f"{versus}; where it is much closer, the marginal level's gap comes from annealing over the "
                       "training images, which the model's samples do not resemble.")
    document.bullets(bullets)


def write_e1(out: str | Path, result: E1Result) -> dict:
    """Write the E1 run folder ``out`` (staged, atomic): results.json, arrays.npz,
    figures/ (PNG and PDF), report.md and report.html.

    Returns:
        A JSON-able summary: the folder, its files, measured estimates, predictions
        and verdicts.
    """
    from diffcrit.validation.runio import write_run_folder

    if not isinstance(result, E1Result):
        raise TypeError(f"result must be an E1Result, got {type(result).__name__}")
    files = write_run_folder(out, title=f"E1: {result.config['data']}, window {result.config['window']}",
                             results=result.to_dict(), arrays=_arrays(result),
                             document=lambda doc: _document_e1(result, doc),
                             figures=lambda save: _figures(result, save))
    return {"out": str(out), "files": files, **summary_e1(result)}


def summary_e1(result: E1Result) -> dict:
    """The headline numbers: measured estimates, predictions per level, verdicts."""
    full = result.to_dict()
    return {
        "config": full["config"],
        "measured_kind": result.measured_kind,
        "measured": full["measured"],
        "min_gamma": full["min_gamma"],
        "predictions": {lv: {k: v for k, v in p.items() if k not in ("gamma_min", "xi_2")}
                        for lv, p in full["predictions"].items()},
        "comparisons": full["comparisons"],
        "timings": full["timings"],
    }


def section_e1(ctx: Any) -> None:
    """E1 at a reduced scale: patch-model ensemble against the three theory levels."""
    scale = dict(REPORT_E1_SCALE)
    started = time.perf_counter()
    result = run_e1(ctx.dataset, window=scale["window"], schedule=ctx.schedule.spec, n=scale["n"],
                    size=scale["size"], n_levels=scale["n_levels"], s_min=scale["s_min"], rng=0,
                    progress=False, n_bootstrap=200, n_theory_samples=scale.get("n_theory_samples", 32),
                    prune_margin=40.0)
    seconds = time.perf_counter() - started
    note = (f"This is a reduced scale for the report (n = {scale['n']}, {scale['size']}^2 lattice, "
            f"{scale['n_levels']} levels; {seconds:.0f} s); the full experiment (n >= 256, 32^2) is "
            f"`diffcrit simulate --data SPEC --model patch --window P --n 256 --size 32 --json`.")
    _document_e1(result, ctx.document, reduced_note=note)
    _figures(result, ctx.save_figure)
    ctx.results["e1"] = {**summary_e1(result), "reduced_scale": scale, "seconds": round(seconds, 3)}
    ctx.arrays.update(_arrays(result, prefix="e1_"))
