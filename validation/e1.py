"""Experiment E1: the patch model simulated against its linear theory (THEORY.md 5).

An ensemble of ``n`` probability-flow trajectories of the equivariant patch
denoiser (:class:`~diffcrit.numerics.patch_denoiser.PatchDenoiser`, built from the
standardized training images) runs on a periodic ``size^d`` lattice from ``s_max``
(well above the data scale) down to ``s_min``. At each observed noise level the
observers record, without storing trajectories:

* the **annealed Fourier-probe spectrum** ``kappa_hat(k, s)`` of every member at
  every wavevector of the lattice, by an exact shortcut for the patch model;
* the low-``k`` Fourier components of every member (``k = 0`` and the smallest
  shells), from which ``xi_2`` and the Ornstein–Zernike length are recomputed
  exactly with paired bootstrap replicates;
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

The ensemble and its measurement are :func:`~diffcrit.numerics.ensemble.simulate`
(whose docstring derives the exact ``kappa_hat`` shortcut and low-``k`` projection
used here); each level's comparison is :func:`~diffcrit.validation.compare.compare`.

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
from diffcrit.numerics.ensemble import load_images as _load_images
from diffcrit.numerics.ensemble import Ensemble
from diffcrit.numerics.local_jacobian import kappa_hat_from_jacobian_rows
from diffcrit.validation.compare import compare

__all__ = [
    "E1_THEORY_LEVELS",
    "E1Result",
    "run_e1",
    "write_e1",
    "section_e1",
    "plot_e1_stiffness",
    "plot_e1_correlation_length",
    "plot_e1_kappa_max",
    "plot_e1_critical_noise",
]

#: The three levels of linear theory of THEORY.md 3.3.
E1_THEORY_LEVELS = ("moment", "homogeneous", "marginal")


#: Reduced scale of the E1 section of the main report (digits, 3x3 window: about
#: 2.5 minutes on 2 free cores; sampling ~3.3 s per denoiser or Jacobian evaluation
#: under load, the marginal level's Monte Carlo ~60 s with 8 draws).
REPORT_E1_SCALE = {"window": 3, "n": 16, "size": 16, "n_levels": 16, "s_min": 0.08, "n_theory_samples": 8}


# ----------------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------------


def _json_float(value: Any) -> Any:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else ("-inf" if value < 0 else None))


@dataclass(frozen=True, eq=False)
class E1Result(Ensemble):
    """Outcome of :func:`run_e1` (all noise levels decreasing, VE-equivalent ``s``): the
    :class:`~diffcrit.numerics.ensemble.Ensemble` (its final samples cut to a few) with
    the theory and its comparisons.

    Attributes (beyond the :class:`~diffcrit.numerics.ensemble.Ensemble`'s):
        predictions: level -> :class:`~diffcrit.theory.patch.PatchTheoryResult`.
        comparisons: level -> :class:`~diffcrit.validation.compare.Comparison`.
        self_consistent: the annealed softening over the model's *own* samples:
            ``s``, ``kappa_max`` (``max_k`` of the mean ``kappa_hat`` at
            ``x + s eps`` with ``x`` the ensemble's final samples) and its RMS
            difference from the measured ``kappa_max`` (a diagnosis of the marginal
            level, which anneals over the training images instead).
    """

    predictions: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)
    self_consistent: dict | None = None

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
            "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()},
            "curves": self.curves(),
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
            lines.append(f"  {level}: {comp.verdict}")
        lines.append(")")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------


def _theory_gamma_kmin(pred: Any) -> np.ndarray:
    d = len(pred.lattice)
    values = []
    for a in range(d):
        index = tuple(1 if b == a else 0 for b in range(d))
        values.append(pred.kappa[(slice(None),) + index])
    return 1.0 - np.mean(values, axis=0)


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
        data, window, schedule, n, size, method, n_levels, s_max, s_min, progress,
            prune_margin, n_bootstrap, confidence, dtype, checkpoint, checkpoint_every:
            the ensemble, as in :func:`~diffcrit.numerics.ensemble.simulate`.
        rng: int seed or numpy Generator (sampler, bootstrap and the marginal
            level's Monte Carlo draw independent streams from it).
        levels: theory levels to compare (subset of ``E1_THEORY_LEVELS``).
        n_theory_samples: Monte Carlo draws of the marginal level.
        n_final_samples: final samples kept for the figure.
        n_self_consistent: final samples over which the self-consistent annealed
            softening is averaged (see :attr:`E1Result.self_consistent`).

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
    from diffcrit.numerics.ensemble import ensemble_seeds, simulate
    from diffcrit.theory.patch import patch_theory

    # ---- validation of what simulate does not check, cheap ------------------------------
    n_theory_samples = check_int("n_theory_samples", n_theory_samples, minimum=2)
    n_self_consistent = check_int("n_self_consistent", n_self_consistent, minimum=1)
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in E1_THEORY_LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {E1_THEORY_LEVELS}, got {levels!r}")

    # ---- the ensemble and its measured curves -------------------------------------------
    ensemble = simulate(data, window, schedule=schedule, n=n, size=size, method=method, n_levels=n_levels,
                        s_max=s_max, s_min=s_min, rng=rng, progress=progress, prune_margin=prune_margin,
                        n_bootstrap=n_bootstrap, confidence=confidence, dtype=dtype, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every)
    images, _ = _load_images(data)
    s_obs = ensemble.s
    lattice = tuple(ensemble.config["lattice"])
    theory_seed = ensemble_seeds(rng)[2]

    # ---- theory on the same lattice and grid --------------------------------------------
    predictions, comparisons, theory_seconds = {}, {}, {}
    for level in levels:
        t0 = time.perf_counter()
        predictions[level] = patch_theory(images, int(window), level=level, lattice=lattice, s_grid=s_obs,
                                          rng=theory_seed, s_start=float(s_obs[0]),
                                          n_samples=n_theory_samples)
        theory_seconds[level] = round(time.perf_counter() - t0, 3)
        comparisons[level] = compare(predictions[level], ensemble, confidence=confidence)

    # the marginal level anneals over training images; the model's samples need not look
    # like them, so the same average over the ensemble's own final samples says whether a
    # disagreement is the reference distribution's (cost: n_self / n of one pass per level)
    t0 = time.perf_counter()
    wavevectors = 2.0 * np.pi * ensemble.wavevector_indices / np.asarray(lattice)
    self_consistent = _self_consistent_softening(ensemble.denoiser, ensemble.samples, s_obs, wavevectors,
                                                 min(ensemble.config["n"], n_self_consistent), theory_seed,
                                                 ensemble.kappa_max.values, ensemble.min_gamma["s"])
    theory_seconds["self_consistent"] = round(time.perf_counter() - t0, 3)

    sim = ensemble.config
    config = {key: sim[key] for key in ("data", "window", "schedule", "n", "size", "lattice", "method", "n_levels",
                                        "s_max", "s_min", "seed", "prune_margin")}
    config.update(levels=list(levels), n_bootstrap=sim["n_bootstrap"], confidence=confidence,
                  n_theory_samples=n_theory_samples, dtype=sim["dtype"], data_std=sim["data_std"],
                  no_instability_bound=sim["no_instability_bound"])
    return E1Result(
        config=config,
        model=ensemble.model,
        s=s_obs,
        t=ensemble.t,
        wavevector_indices=ensemble.wavevector_indices,
        kappa_mean=ensemble.kappa_mean,
        stiffness=ensemble.stiffness,
        xi_2=ensemble.xi_2,
        xi_oz=ensemble.xi_oz,
        structure_factor=ensemble.structure_factor,
        kappa_max=ensemble.kappa_max,
        measured_kind=ensemble.measured_kind,
        estimates=ensemble.estimates,
        min_gamma=ensemble.min_gamma,
        predictions=predictions,
        comparisons=comparisons,
        samples=ensemble.samples[:n_final_samples],
        self_consistent=self_consistent,
        timings={**ensemble.timings, "theory_seconds": theory_seconds},
    )


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
                     "s_c interval (theory's Monte Carlo)": comp.predicted_s_c_interval,
                     f"t_c ({c['schedule']})": result.clock(pred.s_c), "k_c": list(pred.k_c),
                     "min stiffness": pred.min_stiffness,
                     "inside primary interval": comp.inside_primary_interval,
                     "gamma_min RMS diff": comp.gamma_min_rms_difference})
    document.table(rows)
    bullets = [f"{level}: {comp.verdict}" for level, comp in result.comparisons.items()]
    sc = result.self_consistent
    if sc is not None:
        marginal = result.comparisons.get("marginal")
        versus = ("" if marginal is None else
                  f" (the marginal level, annealed over training images: {marginal.gamma_min_rms_difference:.3g})")
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
