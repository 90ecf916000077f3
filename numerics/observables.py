"""Ensemble observables of fields on periodic lattices (THEORY.md section 4).

Fields are real arrays on a periodic lattice of any dimension ``d`` (tested for
1-D chains and 2-D ``L x L`` images); an *ensemble* has shape ``(B, *shape)``,
one member per row. Wavevectors are ``k_a = 2 pi n_a / L_a`` with the lattice
index ``n_a`` in numpy's FFT order, and the lattice momentum squared is
``q^2 = sum_a 4 sin^2(k_a / 2)`` (the eigenvalue of minus the nearest-neighbour
lattice Laplacian).

What is here:

- :func:`structure_factor`, :func:`radial_average`: the connected structure
  factor ``S(k) = <|FFT(delta y)(k)|^2> / N_sites`` and its shell average.
- :func:`second_moment_correlation_length` (the lattice standard
  ``xi_2 = sqrt(S(0)/S(k_min) - 1) / (2 sin(|k_min|/2))``) and
  :func:`ornstein_zernike_correlation_length` (a fit of
  ``S(k) = A / (1 + xi^2 q^2)`` over the smallest nonzero shells, avoiding ``k = 0``),
  each with a bootstrap over ensemble members and its finite-ensemble bias stated.
- :func:`correlation_length_curve`: either estimator along a noise grid, with paired
  bootstrap replicates (:class:`BootstrapCurve`).
- :func:`critical_noise_estimates`: the measured critical noise from the zero
  crossing of ``gamma_min``, the peak of ``xi_J`` (or of ``1/gamma_min``), and the
  steepest rise of ``xi_2``, each with a bootstrap interval.
- :func:`clone_divergence` and :func:`clone_divergence_curve`: split states into
  clones continued with fresh noise; correlation length of the disagreement field
  and the class-commitment (agreement) probability.

The Fourier-probe Jacobian observables (``kappa_hat``, leakage, Lanczos, stiffness
and ``xi_J``) are in :mod:`diffcrit.numerics.jacobian_probes`.

Bootstrap conventions: ensemble members are resampled with replacement; a matrix of
resampled member indices (:func:`bootstrap_member_indices`) can be shared between
calls so replicates are *paired* (the same resampled trajectories at every noise
level and for every observable). Intervals are percentile intervals at level
``confidence`` (default 0.95), computed with order statistics (no interpolation, so
infinite replicates are handled exactly).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from diffcrit.theory.statistics import lattice_wavevectors as theory_wavevectors

__all__ = [
    "DEFAULT_CONFIDENCE",
    "MIN_BOOTSTRAP_MEMBERS",
    "BootstrapCurve",
    "CloneDivergence",
    "CloneDivergenceCurve",
    "CorrelationLengthEstimate",
    "CriticalNoiseEstimate",
    "CriticalNoiseEstimates",
    "RadialProfile",
    "bootstrap_member_indices",
    "clone_divergence",
    "clone_divergence_curve",
    "critical_noise_estimates",
    "correlation_length_curve",
    "lattice_q2",
    "lattice_wavevectors",
    "ornstein_zernike_correlation_length",
    "radial_average",
    "second_moment_correlation_length",
    "second_moment_length_from_spectrum",
    "structure_factor",
]

#: Default level of the percentile bootstrap intervals.
DEFAULT_CONFIDENCE = 0.95

#: Fewest ensemble members for a bootstrap. With B members there are
#: C(2B-1, B) distinct resamples (6435 for B = 8); below that the percentile
#: interval is coarse and badly under-covers.
MIN_BOOTSTRAP_MEMBERS = 8

#: Lattice sides must be >= 3 for the correlation lengths: then the minimal
#: wavevector 2 pi / L is a complex Fourier mode (for L = 2 it is the real
#: Nyquist mode and the finite-ensemble statistics below change).
_MIN_SIDE = 3

_Subtract = Literal["ensemble", "sample"]


# ----------------------------------------------------------------------------
# input validation and randomness
# ----------------------------------------------------------------------------


def _as_generator(rng: Any, *, what: str) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``rng`` (a Generator or an int seed)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    if rng is None:
        raise TypeError(
            f"rng is required for {what}: pass a numpy.random.Generator or an int seed "
            "(results are reproducible only with an explicit seed)"
        )
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)):
        raise TypeError(f"confidence must be a float in (0, 1), got {confidence!r}")
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return confidence


def _as_real_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _as_ensemble(
    fields: Any, *, name: str = "fields", min_members: int = 1, min_side: int = 1
) -> np.ndarray:
    """Validate an ensemble ``(B, *shape)`` of finite real fields; return float64."""
    arr = _as_real_array(fields, name)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (B, *lattice_shape) with at least one lattice axis, "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < min_members:
        raise ValueError(
            f"{name} has {arr.shape[0]} ensemble members (shape {arr.shape}); "
            f"this estimate needs at least {min_members}"
        )
    for axis, side in enumerate(arr.shape[1:]):
        if side < min_side:
            raise ValueError(
                f"{name} has lattice side {side} along axis {axis} (shape {arr.shape}); "
                f"sides must be >= {min_side}"
            )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite values (NaN or inf) out of "
            f"{arr.size}; observables need finite fields"
        )
    return arr


def bootstrap_member_indices(n_members: int, n_bootstrap: int, rng: Any) -> np.ndarray:
    """Resampled member indices ``(n_bootstrap, n_members)``, drawn with replacement.

    Pass the same matrix to several estimators (``member_indices=``) to get paired
    replicates: replicate ``r`` then uses the same resampled members everywhere, so
    curves along ``s`` and different observables keep their correlations.

    Args:
        n_members: ensemble size ``B`` (>= :data:`MIN_BOOTSTRAP_MEMBERS`).
        n_bootstrap: number of replicates (>= 1).
        rng: numpy Generator or int seed.
    """
    n_members = _check_int(n_members, "n_members", MIN_BOOTSTRAP_MEMBERS)
    n_bootstrap = _check_int(n_bootstrap, "n_bootstrap", 1)
    gen = _as_generator(rng, what="the bootstrap")
    return gen.integers(0, n_members, size=(n_bootstrap, n_members))


def _resample_counts(
    n_members: int,
    n_bootstrap: int,
    rng: Any,
    member_indices: Any,
    *,
    what: str,
) -> np.ndarray:
    """Count matrix ``(R, B)``: how often each member enters each replicate.

    Returns an empty ``(0, B)`` matrix when no bootstrap is asked for.
    """
    if member_indices is not None:
        idx = np.asarray(member_indices)
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 2 or idx.shape[1] != n_members:
            raise ValueError(
                f"member_indices must be an integer array (n_bootstrap, {n_members}) for "
                f"{n_members} members, got dtype {idx.dtype} and shape {idx.shape}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= n_members):
            raise ValueError(f"member_indices must lie in [0, {n_members}), got [{idx.min()}, {idx.max()}]")
        if n_members < MIN_BOOTSTRAP_MEMBERS:
            raise ValueError(
                f"a bootstrap over {n_members} members is too coarse: {what} needs at least "
                f"{MIN_BOOTSTRAP_MEMBERS} members (or n_bootstrap=0)"
            )
    else:
        n_bootstrap = _check_int(n_bootstrap, "n_bootstrap", 0)
        if n_bootstrap == 0:
            return np.zeros((0, n_members))
        if n_members < MIN_BOOTSTRAP_MEMBERS:
            raise ValueError(
                f"a bootstrap over {n_members} members is too coarse: {what} needs at least "
                f"{MIN_BOOTSTRAP_MEMBERS} members (or n_bootstrap=0)"
            )
        idx = bootstrap_member_indices(n_members, n_bootstrap, rng)
    counts = np.zeros((idx.shape[0], n_members))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    return counts


def _percentile_interval(samples: np.ndarray, confidence: float, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Order-statistic percentile interval (no interpolation: exact with inf)."""
    # rounded so that e.g. (1 - 0.95)/2 is 0.025, not 0.025000000000000022 (which
    # would move the lower order statistic by one)
    lo = np.quantile(samples, round((1.0 - confidence) / 2.0, 12), axis=axis, method="inverted_cdf")
    hi = np.quantile(samples, round((1.0 + confidence) / 2.0, 12), axis=axis, method="inverted_cdf")
    return lo, hi


def _json_number(value: float) -> float | str:
    """Finite floats as floats; infinities as the strings 'inf' / '-inf'."""
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


# ----------------------------------------------------------------------------
# lattice geometry, structure factor, shells
# ----------------------------------------------------------------------------


def lattice_wavevectors(shape: Sequence[int]) -> np.ndarray:
    """Wavevector components ``k_a = 2 pi n_a / L_a`` in FFT order, in ``[-pi, pi)``.

    Returns:
        Array ``(d, *shape)``: component ``a`` of the wavevector at every FFT index
        (the components-first layout of :func:`diffcrit.theory.statistics.lattice_wavevectors`).
    """
    return np.moveaxis(theory_wavevectors(tuple(int(n) for n in shape)), -1, 0)


def lattice_q2(shape: Sequence[int]) -> np.ndarray:
    """Lattice momentum squared ``q^2 = sum_a 4 sin^2(k_a/2)`` at every FFT index."""
    k = lattice_wavevectors(shape)
    return (4.0 * np.sin(k / 2.0) ** 2).sum(axis=0)


def structure_factor(fields: Any, *, subtract: _Subtract = "ensemble") -> np.ndarray:
    """Connected structure factor ``S(k) = <|FFT(delta y)(k)|^2> / N_sites``.

    Args:
        fields: ensemble ``(B, *shape)`` of real fields.
        subtract: what ``delta y`` removes.

            - ``"ensemble"``: the ensemble-mean field (``B >= 2``). The average over
              members is normalized by ``B - 1`` (the unbiased sample variance of
              each Fourier component), so ``E[S_hat(k)] = S(k)`` for independent
              members.
            - ``"sample"``: each member's own spatial mean, and nothing else. This
              sets ``S(0) = 0`` and leaves every ``k != 0`` untouched (the FFT of a
              constant lives at ``k = 0`` only); normalized by ``B``. Use it for the
              Ornstein–Zernike fit, which never looks at ``k = 0``.

    Returns:
        ``S`` of shape ``shape`` in FFT order (``S[0, ..., 0]`` is ``k = 0``).
    """
    if subtract not in ("ensemble", "sample"):
        raise ValueError(f"subtract must be 'ensemble' or 'sample', got {subtract!r}")
    y = _as_ensemble(fields, min_members=2 if subtract == "ensemble" else 1)
    n_members = y.shape[0]
    axes = tuple(range(1, y.ndim))
    n_sites = math.prod(y.shape[1:])
    if subtract == "ensemble":
        delta = y - y.mean(axis=0, keepdims=True)
        norm = (n_members - 1) * n_sites
    else:
        delta = y - y.mean(axis=axes, keepdims=True)
        norm = n_members * n_sites
    transform = np.fft.fftn(delta, axes=axes)
    return (transform.real**2 + transform.imag**2).sum(axis=0) / norm


@dataclass(frozen=True)
class RadialProfile:
    """A shell average: ``values[j]`` is the mean of the input over shell ``j``.

    Attributes:
        centres: mean shell coordinate (``q^2`` or ``|k|``) of the lattice points in
            each shell (exact shells: the shell's common value).
        values: mean of the averaged quantity over the shell's lattice points.
        counts: number of lattice points (FFT indices, ``k`` and ``-k`` both
            counted) in each shell.
        by: the shell coordinate, ``"q2"`` or ``"k"``.
    """

    centres: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "centres": self.centres.tolist(),
            "values": self.values.tolist(),
            "counts": self.counts.tolist(),
        }

    def __repr__(self) -> str:
        return f"RadialProfile(by={self.by!r}, n_shells={self.centres.size})"


def _shell_coordinate(shape: tuple[int, ...], by: str) -> np.ndarray:
    if by == "q2":
        return lattice_q2(shape)
    if by == "k":
        return np.sqrt((lattice_wavevectors(shape) ** 2).sum(axis=0))
    raise ValueError(f"by must be 'q2' or 'k', got {by!r}")


def _exact_shell_labels(coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of exact shells (equal coordinate up to roundoff) and their values."""
    # Symmetric lattice points give the same q^2 up to the order of a floating sum;
    # 1e-10 relative is far above that roundoff and far below the shell spacing.
    scale = max(float(coord.max()), 1.0)
    keys = np.round(coord / scale, 10)
    unique, labels = np.unique(keys.ravel(), return_inverse=True)
    return labels.reshape(coord.shape), unique * scale


def radial_average(
    spectrum: Any, *, by: Literal["q2", "k"] = "q2", bins: int | None = None
) -> RadialProfile:
    """Average a lattice quantity (e.g. ``S(k)``) over shells of ``q^2`` or ``|k|``.

    Args:
        spectrum: array of shape ``shape`` in FFT order (as from
            :func:`structure_factor`).
        by: shell coordinate: ``"q2"`` (``sum 4 sin^2(k_a/2)``, exact shells of the
            Ornstein–Zernike form) or ``"k"`` (``|k|`` with ``k_a`` in ``[-pi, pi)``).
        bins: ``None`` for exact shells (lattice points with equal coordinate);
            an integer for that many equal-width bins on ``[0, max]`` (empty bins
            are dropped).

    Returns:
        :class:`RadialProfile` sorted by increasing coordinate; the first shell is
        ``k = 0``.
    """
    values = _as_real_array(spectrum, "spectrum")
    if values.ndim < 1 or values.size == 0:
        raise ValueError(f"spectrum must be a non-empty lattice array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("spectrum contains non-finite values (NaN or inf)")
    coord = _shell_coordinate(values.shape, by)
    if bins is None:
        labels, _ = _exact_shell_labels(coord)
    else:
        n_bins = _check_int(bins, "bins", 1)
        edges = np.linspace(0.0, float(coord.max()), n_bins + 1)
        labels = np.clip(np.digitize(coord, edges[1:-1], right=True), 0, n_bins - 1)
    labels = labels.ravel()
    counts = np.bincount(labels)
    keep = counts > 0
    centres = np.bincount(labels, weights=coord.ravel())[keep] / counts[keep]
    means = np.bincount(labels, weights=values.ravel())[keep] / counts[keep]
    return RadialProfile(centres=centres, values=means, counts=counts[keep], by=by)


# ----------------------------------------------------------------------------
# correlation-length estimators
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CorrelationLengthEstimate:
    """A correlation length with its bootstrap uncertainty.

    Attributes:
        value: the estimate on the full ensemble, in lattice spacings. ``0.0`` when
            the squared estimate is negative (``clipped``); ``inf`` when the
            estimator diverged (``diverged``; OZ fit with ``1/S(0) <= 0``).
        stderr: standard deviation of the finite bootstrap replicates (0 without
            bootstrap).
        interval: percentile interval ``(low, high)`` at level ``confidence``, or
            ``None`` without bootstrap.
        confidence: level of ``interval``.
        method: ``"second_moment"``, ``"ornstein_zernike"`` or
            ``"clone_disagreement"``.
        xi_squared: the unclipped squared estimate (may be negative).
        clipped: ``True`` when ``xi_squared < 0`` and ``value`` was set to 0 (for
            the second-moment estimator: ``S(0) < S(k_min)``).
        diverged: ``True`` when ``value`` is infinite.
        fraction_clipped: fraction of bootstrap replicates that were clipped to 0.
        n_members: ensemble size used.
        n_bootstrap: number of bootstrap replicates.
        replicates: the bootstrap replicates of ``value`` (not in the repr).
        details: estimator-specific numbers (structure-factor values, fit
            parameters, shells).
    """

    value: float
    stderr: float
    interval: tuple[float, float] | None
    confidence: float
    method: str
    xi_squared: float
    clipped: bool
    diverged: bool
    fraction_clipped: float
    n_members: int
    n_bootstrap: int
    replicates: np.ndarray = field(compare=False)
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _json_number(self.value),
            "stderr": _json_number(self.stderr),
            "interval": None if self.interval is None else [_json_number(v) for v in self.interval],
            "confidence": self.confidence,
            "method": self.method,
            "xi_squared": _json_number(self.xi_squared),
            "clipped": self.clipped,
            "diverged": self.diverged,
            "fraction_clipped": self.fraction_clipped,
            "n_members": self.n_members,
            "n_bootstrap": self.n_bootstrap,
            "details": {k: _to_jsonable(v) for k, v in self.details.items()},
        }

    def __repr__(self) -> str:
        flag = " (clipped: squared estimate < 0)" if self.clipped else ""
        flag += " (diverged)" if self.diverged else ""
        if self.interval is None:
            unc = "no bootstrap"
        else:
            unc = (
                f"{self.confidence:.0%} interval [{self.interval[0]:.4g}, {self.interval[1]:.4g}], "
                f"stderr {self.stderr:.3g}"
            )
        return (
            f"CorrelationLengthEstimate({self.method}: xi = {self.value:.4g}{flag}; {unc}; "
            f"B = {self.n_members})"
        )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_to_jsonable(v) for v in value.tolist()] if value.ndim else _to_jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _json_number(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _summarize(
    replicates: np.ndarray,
    confidence: float,
) -> tuple[float, tuple[float, float] | None]:
    """Bootstrap standard error (finite replicates) and percentile interval."""
    if replicates.size == 0:
        return 0.0, None
    finite = replicates[np.isfinite(replicates)]
    stderr = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    lo, hi = _percentile_interval(replicates, confidence)
    return stderr, (float(lo), float(hi))


def _minimal_wavevector_q2(shape: tuple[int, ...]) -> np.ndarray:
    """``q^2`` of the minimal wavevector ``2 pi / L_a`` along each axis."""
    return np.array([4.0 * math.sin(math.pi / n) ** 2 for n in shape])


def _second_moment_xi_squared(
    s_zero: np.ndarray, s_axes: np.ndarray, q2_axes: np.ndarray
) -> np.ndarray:
    """Squared second-moment length from ``S(0)`` and ``S(k_min, a)`` per axis.

    Equal sides (the lattice standard): ``S(k_min)`` is averaged over the ``d``
    minimal wavevectors first, ``xi^2 = (S(0)/S_bar(k_min) - 1) / q^2(k_min)``.
    Unequal sides: the per-axis squared lengths are averaged.
    Callers guarantee positive denominators.
    """
    if np.allclose(q2_axes, q2_axes[0], rtol=1e-14, atol=0.0):
        return (s_zero / s_axes.mean(axis=-1) - 1.0) / q2_axes[0]
    return ((s_zero[..., None] / s_axes - 1.0) / q2_axes).mean(axis=-1)


def second_moment_length_from_spectrum(spectrum: Any) -> tuple[float, bool]:
    """Second-moment correlation length of a given lattice spectrum (no sampling).

    ``xi_2 = sqrt(S(0)/S(k_min) - 1) / (2 sin(|k_min|/2))`` with ``S(k_min)``
    averaged over the ``d`` axes (equal sides; unequal sides average the per-axis
    squared lengths). For the Ornstein–Zernike lattice spectrum
    ``S = A / (1 + xi^2 q^2)`` this returns ``xi`` exactly, since
    ``S(0)/S(k_min) - 1 = xi^2 q^2(k_min)`` and ``q^2(k_min) = 4 sin^2(|k_min|/2)``.

    Args:
        spectrum: array of shape ``shape`` in FFT order, positive at ``k_min``.

    Returns:
        ``(xi, clipped)``: ``clipped`` is ``True`` (and ``xi = 0``) when
        ``S(0) < S(k_min)``.
    """
    values = _as_real_array(spectrum, "spectrum")
    if values.ndim < 1 or min(values.shape) < _MIN_SIDE:
        raise ValueError(f"spectrum must be a lattice array with sides >= {_MIN_SIDE}, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("spectrum contains non-finite values (NaN or inf)")
    shape = values.shape
    origin = (0,) * len(shape)
    s_axes = np.array([values[tuple(1 if b == a else 0 for b in range(len(shape)))] for a in range(len(shape))])
    if np.any(s_axes <= 0.0):
        raise ValueError(f"spectrum at the minimal wavevectors must be > 0, got {s_axes.tolist()}")
    xi2 = float(_second_moment_xi_squared(np.asarray(values[origin]), s_axes, _minimal_wavevector_q2(shape)))
    return (math.sqrt(xi2), False) if xi2 >= 0.0 else (0.0, True)


def _minimal_fourier_components(y: np.ndarray) -> np.ndarray:
    """Fourier components at ``k = 0`` and at ``2 pi / L_a`` per axis: ``(B, 1 + d)``.

    Computed from axis marginals (``O(N)`` per member) instead of a full FFT.
    Sign convention of ``numpy.fft`` (``exp(-i k.x)``).
    """
    n_members = y.shape[0]
    d = y.ndim - 1
    out = np.empty((n_members, 1 + d), dtype=np.complex128)
    out[:, 0] = y.reshape(n_members, -1).sum(axis=1)
    for a in range(d):
        other = tuple(ax for ax in range(1, d + 1) if ax != a + 1)
        marginal = y.sum(axis=other) if other else y
        side = y.shape[a + 1]
        phase = np.exp(-2j * np.pi * np.arange(side) / side)
        out[:, 1 + a] = marginal @ phase
    return out


def _connected_power(
    components: np.ndarray, weights: np.ndarray, n_sites: int, subtract: _Subtract
) -> np.ndarray:
    """``S`` at the given Fourier components for count-weighted resamples.

    Args:
        components: ``(B, K)`` complex Fourier components of the members.
        weights: ``(R, B)`` counts (each row sums to ``B``).

    Returns:
        ``(R, K)``: ``sum_b c_b |F_b - F_bar_c|^2 / ((B-1) N)`` for ``"ensemble"``
        (``F_bar_c`` the resample mean), ``sum_b c_b |F_b|^2 / (B N)`` for
        ``"sample"``.
    """
    n_members = components.shape[0]
    if subtract == "ensemble":
        # Centering on the full-sample mean first changes nothing algebraically but
        # avoids cancellation when the ensemble mean is large.
        centred = components - components.mean(axis=0, keepdims=True)
        power = centred.real**2 + centred.imag**2
        mean = weights @ centred / n_members
        total = weights @ power - n_members * (mean.real**2 + mean.imag**2)
        return np.maximum(total, 0.0) / ((n_members - 1) * n_sites)
    power = components.real**2 + components.imag**2
    return weights @ power / (n_members * n_sites)


def second_moment_correlation_length(
    fields: Any,
    *,
    n_bootstrap: int = 1000,
    rng: Any = None,
    confidence: float = DEFAULT_CONFIDENCE,
    member_indices: Any = None,
) -> CorrelationLengthEstimate:
    """Second-moment correlation length ``xi_2`` of an ensemble (lattice standard).

    ``xi_2 = sqrt(S(0)/S(k_min) - 1) / (2 sin(|k_min|/2))``, with ``S`` the connected
    structure factor (ensemble mean removed, :func:`structure_factor`), ``k_min``
    the smallest nonzero lattice wavevector ``2 pi / L`` and ``S(k_min)`` averaged
    over the ``d`` axes (for unequal sides the per-axis squared lengths are averaged
    instead). When ``S(0) < S(k_min)`` the squared length is negative: the estimate
    reads ``0`` and ``clipped`` is set (the reverse dynamics contract each sample's
    spatial mean separately, so this happens; see the Ornstein–Zernike estimator).

    Finite-ensemble bias (derived for Gaussian stationary fields, checked in the
    tests): with ``m = B - 1``, ``S_hat(0) ~ S(0) chi2_m / m`` (a real mode) and
    ``S_bar(k_min) ~ S(k_min) chi2_{2dm} / (2dm)`` (``d`` independent complex modes),
    independent of each other. Since ``E[1/chi2_n] = 1/(n - 2)``,

        ``E[S_hat(0) / S_bar(k_min)] = (S(0)/S(k_min)) * d m / (d m - 1)``,

    so the squared length is biased up by ``(1 + xi^2 q^2) / ((d m - 1) q^2)``
    (``q^2 = 4 sin^2(pi/L)``); on white noise ``E[xi_hat^2] = 1/((d m - 1) q^2) > 0``.
    The relative spread of the ratio is about ``sqrt(2/m + 1/(d m))``, much larger
    than the bias, so on white noise the interval contains 0. The reported
    ``xi = sqrt(max(xi^2, 0))`` is biased up further by the clipping. (Unequal
    sides: the per-axis ratio bias is ``m/(m-1)``.)

    Args:
        fields: ensemble ``(B, *shape)``, ``B >= 3``, every side ``>= 3``.
        n_bootstrap: bootstrap replicates (resample members, recompute ``S``); 0 for
            none. Needs ``B >= MIN_BOOTSTRAP_MEMBERS``.
        rng: numpy Generator or int seed (required for the bootstrap).
        confidence: level of the percentile interval.
        member_indices: optional ``(R, B)`` resampled indices (overrides
            ``n_bootstrap`` and ``rng``; see :func:`bootstrap_member_indices`).

    Returns:
        :class:`CorrelationLengthEstimate` with ``details`` holding ``S(0)``, the
        per-axis ``S(k_min)``, ``q^2(k_min)`` and the per-axis lengths.

    Raises:
        ValueError: wrong shape, too few members, non-finite fields, or fields with
            ``S(k_min) = 0`` (constant along an axis).
    """
    confidence = _check_confidence(confidence)
    y = _as_ensemble(fields, min_members=3, min_side=_MIN_SIDE)
    n_members, shape = y.shape[0], y.shape[1:]
    counts = _resample_counts(n_members, n_bootstrap, rng, member_indices, what="second_moment_correlation_length")
    components = _minimal_fourier_components(y)
    n_sites = math.prod(shape)
    q2_axes = _minimal_wavevector_q2(shape)

    point = _connected_power(components, np.ones((1, n_members)), n_sites, "ensemble")[0]
    if np.any(point[1:] <= 0.0):
        raise ValueError(
            f"structure factor at the minimal wavevectors is zero ({point[1:].tolist()}): "
            "the fields do not fluctuate along some axis; xi_2 is undefined"
        )
    xi2 = float(_second_moment_xi_squared(point[0], point[1:], q2_axes))
    value = math.sqrt(xi2) if xi2 >= 0.0 else 0.0
    per_axis = (point[0] / point[1:] - 1.0) / q2_axes

    if counts.shape[0]:
        rep = _connected_power(components, counts, n_sites, "ensemble")
        defined = np.all(rep[:, 1:] > 0.0, axis=1)
        denom = np.where(rep[:, 1:] > 0.0, rep[:, 1:], 1.0)
        rep_xi2 = _second_moment_xi_squared(rep[:, 0], denom, q2_axes)
        # A replicate whose resampled members are all identical has S(k_min) = 0:
        # its squared length is +inf (S(0) = 0 too, but it carries no information).
        rep_xi2 = np.where(defined, rep_xi2, np.inf)
        replicates = np.sqrt(np.maximum(rep_xi2, 0.0))
        fraction_clipped = float(np.mean(rep_xi2 < 0.0))
    else:
        replicates = np.zeros(0)
        fraction_clipped = 0.0
    stderr, interval = _summarize(replicates, confidence)
    return CorrelationLengthEstimate(
        value=value,
        stderr=stderr,
        interval=interval,
        confidence=confidence,
        method="second_moment",
        xi_squared=xi2,
        clipped=xi2 < 0.0,
        diverged=False,
        fraction_clipped=fraction_clipped,
        n_members=n_members,
        n_bootstrap=int(counts.shape[0]),
        replicates=replicates,
        details={
            "structure_factor_zero": float(point[0]),
            "structure_factor_kmin": point[1:].copy(),
            "q2_kmin": q2_axes,
            "per_axis_xi_squared": per_axis,
        },
    )


def _smallest_shells(shape: tuple[int, ...], n_shells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat FFT indices, shell labels and shell ``q^2`` of the smallest nonzero shells."""
    q2 = lattice_q2(shape)
    labels, shell_q2 = _exact_shell_labels(q2)
    # shell 0 is k = 0 (q^2 = 0 is the smallest value)
    available = shell_q2.size - 1
    if n_shells > available:
        raise ValueError(
            f"n_shells={n_shells} exceeds the {available} nonzero q^2 shells of a lattice {shape}"
        )
    flat_labels = labels.ravel()
    chosen = np.nonzero((flat_labels >= 1) & (flat_labels <= n_shells))[0]
    shell_of = flat_labels[chosen] - 1
    q2_exact = np.bincount(shell_of, weights=q2.ravel()[chosen]) / np.bincount(shell_of)
    return chosen, shell_of, q2_exact


def _weighted_line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares ``y = a + b x`` along the last axis (vectorized)."""
    sw = w.sum(-1)
    swx = (w * x).sum(-1)
    swy = (w * y).sum(-1)
    swxx = (w * x * x).sum(-1)
    swxy = (w * x * y).sum(-1)
    det = sw * swxx - swx * swx
    b = (sw * swxy - swx * swy) / det
    a = (swy - b * swx) / sw
    return a, b


def _fit_inverse_ornstein_zernike(
    q2: np.ndarray, s_shell: np.ndarray, dof: np.ndarray, n_iterations: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``1/S = a + b q^2`` by iteratively reweighted least squares.

    ``s_shell`` is ``(R, J)``; ``dof`` the Gamma shape ``nu_j`` of each shell
    estimate. The response ``(nu - 1)/(nu S_hat)`` is unbiased for ``1/S`` and has
    variance ``1/(S^2 (nu - 2))`` (Gaussian fields), so the weights are
    ``(nu - 2) S_model^2``; the first pass uses ``S_model = S_hat``.
    """
    response = (dof - 1.0) / dof / s_shell
    weights = (dof - 2.0) / response**2
    a, b = _weighted_line_fit(q2, response, weights)
    for _ in range(n_iterations):
        model = a[..., None] + b[..., None] * q2
        usable = np.all(model > 0.0, axis=-1, keepdims=True)
        weights = np.where(usable, (dof - 2.0) / np.where(model > 0.0, model, 1.0) ** 2, weights)
        a, b = _weighted_line_fit(q2, response, weights)
    return a, b


def ornstein_zernike_correlation_length(
    fields: Any,
    *,
    n_shells: int = 3,
    subtract: _Subtract = "sample",
    n_bootstrap: int = 1000,
    rng: Any = None,
    confidence: float = DEFAULT_CONFIDENCE,
    member_indices: Any = None,
) -> CorrelationLengthEstimate:
    """Correlation length from an Ornstein–Zernike fit that avoids ``k = 0``.

    Fits ``S(k) = A / (1 + xi^2 q^2)``, ``q^2 = sum_a 4 sin^2(k_a/2)``, to the shell
    averages of ``S`` over the ``n_shells`` smallest nonzero ``q^2`` shells. The fit
    is linear in ``q^2`` on the inverse: ``1/S = a + b q^2`` with ``a = 1/A`` and
    ``b = xi^2/A``, so ``xi^2 = b / a``. Choices (and why):

    - Response ``y_j = (nu_j - 1) / (nu_j S_hat_j)``: for Gaussian fields the shell
      average ``S_hat_j`` is Gamma-distributed with shape ``nu_j`` (``B`` members
      times half the ``n_j`` lattice points of the shell, since ``k`` and ``-k``
      carry the same mode; ``B - 1`` members for ``subtract="ensemble"``), and
      ``E[1/S_hat] = nu/((nu - 1) S)``, so ``y_j`` is unbiased for ``1/S_j``.
    - Weights ``(nu_j - 2) S_j^2`` = 1/variance of ``y_j``, with ``S_j`` from the
      current fit (two reweighting passes after a first pass with ``S_hat_j``).

    Finite-ensemble bias: with fixed weights the fitted ``a`` and ``b`` are
    unbiased; ``xi^2 = b/a`` then carries the ratio bias
    ``E[xi_hat^2] - xi^2 ~ xi^2 Var(a)/a^2 - Cov(a, b)/a^2`` (first order in
    ``1/nu``). On white noise (``b = 0``), with ``W_j = nu_j - 2`` and ``x_j = q_j^2``,

        ``E[xi_hat^2] ~ sum W x / (sum W * sum W x^2 - (sum W x)^2) > 0``,

    independent of the amplitude; the spread of ``xi_hat^2`` is
    ``sqrt(sum W / (sum W sum W x^2 - (sum W x)^2))``, larger by about
    ``sqrt(nu)``, so 0 lies within the interval. Both are checked in the tests.
    ``xi = sqrt(max(xi^2, 0))``; ``xi = inf`` (``diverged``) when the fitted
    ``1/S(0) = a <= 0``.

    Args:
        fields: ensemble ``(B, *shape)``; every side >= 3.
        n_shells: number of smallest nonzero ``q^2`` shells to fit (>= 2).
        subtract: ``"sample"`` (default; each member's spatial mean removed, ``k = 0``
            never used) or ``"ensemble"`` (ensemble mean removed, ``B - 1`` dof).
        n_bootstrap, rng, confidence, member_indices: as in
            :func:`second_moment_correlation_length`.

    Returns:
        :class:`CorrelationLengthEstimate`; ``details`` holds the shells' ``q^2``,
        ``S`` and ``nu``, and the fitted amplitude ``A``.
    """
    confidence = _check_confidence(confidence)
    n_shells = _check_int(n_shells, "n_shells", 2)
    if subtract not in ("ensemble", "sample"):
        raise ValueError(f"subtract must be 'ensemble' or 'sample', got {subtract!r}")
    min_members = 3 if subtract == "ensemble" else 2
    y = _as_ensemble(fields, min_members=min_members, min_side=_MIN_SIDE)
    n_members, shape = y.shape[0], y.shape[1:]
    chosen, shell_of, shell_q2 = _smallest_shells(shape, n_shells)
    counts = _resample_counts(n_members, n_bootstrap, rng, member_indices, what="ornstein_zernike_correlation_length")

    axes = tuple(range(1, y.ndim))
    components = np.fft.fftn(y, axes=axes).reshape(n_members, -1)[:, chosen]
    n_sites = math.prod(shape)
    membership = np.zeros((chosen.size, n_shells))
    membership[np.arange(chosen.size), shell_of] = 1.0
    points_per_shell = membership.sum(axis=0)
    effective_members = n_members - 1 if subtract == "ensemble" else n_members
    dof = effective_members * points_per_shell / 2.0

    def shell_spectrum(weights: np.ndarray) -> np.ndarray:
        return _connected_power(components, weights, n_sites, subtract) @ membership / points_per_shell

    point_shells = shell_spectrum(np.ones((1, n_members)))
    if np.any(point_shells <= 0.0):
        raise ValueError(
            f"structure factor vanishes on a fitted shell ({point_shells[0].tolist()}); "
            "the Ornstein–Zernike fit is undefined"
        )

    def lengths(s_shell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # a shell with S = 0 arises only in a degenerate resample (identical
        # members); such a replicate carries no information and is marked inf
        degenerate = np.any(s_shell <= 0.0, axis=-1)
        a, b = _fit_inverse_ornstein_zernike(shell_q2, np.where(s_shell > 0.0, s_shell, 1.0), dof)
        xi2 = np.where(a > 0.0, b / np.where(a > 0.0, a, 1.0), np.inf)
        return a, b, np.where(degenerate, np.inf, xi2)

    a0, b0, xi2_point = lengths(point_shells)
    a_point, b_point, xi2 = float(a0[0]), float(b0[0]), float(xi2_point[0])
    value = math.sqrt(xi2) if xi2 >= 0.0 else 0.0
    if counts.shape[0]:
        _, _, rep_xi2 = lengths(shell_spectrum(counts))
        replicates = np.sqrt(np.maximum(rep_xi2, 0.0))
        fraction_clipped = float(np.mean(rep_xi2 < 0.0))
    else:
        replicates = np.zeros(0)
        fraction_clipped = 0.0
    stderr, interval = _summarize(replicates, confidence)
    return CorrelationLengthEstimate(
        value=value,
        stderr=stderr,
        interval=interval,
        confidence=confidence,
        method="ornstein_zernike",
        xi_squared=xi2,
        clipped=xi2 < 0.0,
        diverged=math.isinf(value),
        fraction_clipped=fraction_clipped,
        n_members=n_members,
        n_bootstrap=int(counts.shape[0]),
        replicates=replicates,
        details={
            "shell_q2": shell_q2,
            "shell_structure_factor": point_shells[0],
            "shell_dof": dof,
            "amplitude": (1.0 / a_point) if a_point > 0.0 else math.inf,
            "fit_intercept": a_point,
            "fit_slope": b_point,
        },
    )


# ----------------------------------------------------------------------------
# curves along the noise grid
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class BootstrapCurve:
    """A curve along the noise grid with paired bootstrap replicates.

    Attributes:
        name: what the curve is (``"xi_2"``, ``"gamma_min"``, ...).
        s: noise levels ``(n_s,)``.
        values: the full-ensemble curve ``(n_s,)`` (may hold ``inf`` where the
            quantity diverged; never NaN).
        replicates: ``(n_s, R)`` bootstrap replicates; column ``r`` is one
            resampled ensemble followed along ``s``. ``R = 0`` without bootstrap.
        confidence: level of :attr:`interval`.
    """

    name: str
    s: np.ndarray
    values: np.ndarray
    replicates: np.ndarray
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        s = np.asarray(self.s, dtype=float)
        values = np.asarray(self.values, dtype=float)
        replicates = np.asarray(self.replicates, dtype=float)
        if s.ndim != 1 or values.shape != s.shape:
            raise ValueError(f"BootstrapCurve {self.name!r}: s and values must be 1-D of equal length, got {s.shape} and {values.shape}")
        if replicates.ndim != 2 or replicates.shape[0] != s.size:
            raise ValueError(
                f"BootstrapCurve {self.name!r}: replicates must have shape (n_s={s.size}, R), got {replicates.shape}"
            )
        if np.isnan(values).any() or np.isnan(replicates).any():
            raise ValueError(f"BootstrapCurve {self.name!r} contains NaN")
        object.__setattr__(self, "s", s)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "replicates", replicates)
        _check_confidence(self.confidence)

    @property
    def n_bootstrap(self) -> int:
        return int(self.replicates.shape[1])

    @property
    def interval(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise percentile interval ``(low, high)``, or ``None`` without bootstrap."""
        if self.n_bootstrap == 0:
            return None
        return _percentile_interval(self.replicates, self.confidence, axis=1)

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {
            "name": self.name,
            "s": self.s.tolist(),
            "values": _to_jsonable(self.values),
            "interval_low": None if interval is None else _to_jsonable(interval[0]),
            "interval_high": None if interval is None else _to_jsonable(interval[1]),
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
        }

    def __repr__(self) -> str:
        return (
            f"BootstrapCurve({self.name!r}, n_s={self.s.size}, s in [{self.s.min():.4g}, {self.s.max():.4g}], "
            f"n_bootstrap={self.n_bootstrap})"
        )


def _check_s_grid(s_grid: Any, name: str = "s_grid") -> np.ndarray:
    s = _as_real_array(s_grid, name)
    if s.ndim != 1 or s.size < 1:
        raise ValueError(f"{name} must be a 1-D array of noise levels, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0.0):
        raise ValueError(f"{name} must hold finite noise levels s > 0, got {s.tolist()}")
    if np.unique(s).size != s.size:
        raise ValueError(f"{name} has repeated noise levels: {s.tolist()}")
    return s


def correlation_length_curve(
    fields_over_s: Any,
    s_grid: Any,
    *,
    method: Literal["second_moment", "ornstein_zernike"] = "second_moment",
    n_bootstrap: int = 1000,
    rng: Any = None,
    member_indices: Any = None,
    confidence: float = DEFAULT_CONFIDENCE,
    **estimator_options: Any,
) -> BootstrapCurve:
    """Correlation length along a noise grid, with paired bootstrap replicates.

    Args:
        fields_over_s: ``(n_s, B, *shape)``: the same ``B`` trajectories observed at
            each noise level (member ``b`` is the same trajectory at every ``s``).
        s_grid: ``(n_s,)`` noise levels.
        method: ``"second_moment"`` or ``"ornstein_zernike"``.
        n_bootstrap, rng, member_indices, confidence: as in
            :func:`second_moment_correlation_length`; one index matrix is drawn and
            used at every ``s`` (paired replicates).
        **estimator_options: passed on (e.g. ``n_shells`` for the OZ fit).

    Returns:
        :class:`BootstrapCurve` named ``"xi_2"`` or ``"xi_oz"`` (clipped values are
        0, diverged values ``inf``).
    """
    s = _check_s_grid(s_grid)
    arr = _as_real_array(fields_over_s, "fields_over_s")
    if arr.ndim < 3 or arr.shape[0] != s.size:
        raise ValueError(
            f"fields_over_s must have shape (n_s={s.size}, B, *lattice_shape), got {arr.shape}"
        )
    estimators = {
        "second_moment": second_moment_correlation_length,
        "ornstein_zernike": ornstein_zernike_correlation_length,
    }
    if method not in estimators:
        raise ValueError(f"method must be one of {sorted(estimators)}, got {method!r}")
    if member_indices is None and n_bootstrap:
        member_indices = bootstrap_member_indices(arr.shape[1], n_bootstrap, rng)
    values, replicates = [], []
    for j in range(s.size):
        est = estimators[method](
            arr[j], n_bootstrap=0, member_indices=member_indices, confidence=confidence, **estimator_options
        )
        values.append(est.value)
        replicates.append(est.replicates)
    name = "xi_2" if method == "second_moment" else "xi_oz"
    return BootstrapCurve(
        name=name,
        s=s,
        values=np.array(values),
        replicates=np.array(replicates).reshape(s.size, -1),
        confidence=confidence,
    )


# ----------------------------------------------------------------------------
# measured critical noise
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CriticalNoiseEstimate:
    """One estimate of the critical noise level ``s_c``.

    Attributes:
        method: ``"gamma_min zero crossing"``, ``"xi_J peak"``,
            ``"susceptibility peak"`` or ``"xi_2 steepest rise"``.
        value: the estimate on the full-ensemble curve, or ``None`` when the curve
            has no such feature (e.g. no zero crossing: a pseudo-critical case).
        interval: percentile interval over the bootstrap replicates that have the
            feature, or ``None`` (no bootstrap, or no replicate has it).
        confidence: level of ``interval``.
        n_replicates: bootstrap replicates examined.
        n_defined: replicates in which the feature exists (the interval is
            conditional on it).
        note: what happened (edge of the grid, no crossing, ...).
    """

    method: str
    value: float | None
    interval: tuple[float, float] | None
    confidence: float
    n_replicates: int
    n_defined: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "value": self.value if self.value is not None else "none",
            "interval": list(self.interval) if self.interval is not None else None,
            "confidence": self.confidence,
            "n_replicates": self.n_replicates,
            "n_defined": self.n_defined,
            "note": self.note,
        }

    def __repr__(self) -> str:
        if self.value is None:
            body = "s_c = none"
        else:
            body = f"s_c = {self.value:.4g}"
        if self.interval is not None:
            body += f" [{self.interval[0]:.4g}, {self.interval[1]:.4g}] ({self.confidence:.0%})"
        if self.n_replicates:
            body += f", feature in {self.n_defined}/{self.n_replicates} replicates"
        if self.note:
            body += f"; {self.note}"
        return f"CriticalNoiseEstimate({self.method}: {body})"


@dataclass(frozen=True, repr=False)
class CriticalNoiseEstimates:
    """The measured critical noise by the three methods of THEORY.md section 4.

    Attributes:
        zero_crossing: from the zero crossing of ``gamma_min(s)`` (``None`` if no
            ``gamma_min`` input was given).
        response_peak: from the peak of ``xi_J(s)`` or of ``1/gamma_min(s)``.
        steepest_rise: from the maximum of ``-d ln xi_2 / d ln s``.
    """

    zero_crossing: CriticalNoiseEstimate | None
    response_peak: CriticalNoiseEstimate | None
    steepest_rise: CriticalNoiseEstimate | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "zero_crossing": None if self.zero_crossing is None else self.zero_crossing.to_dict(),
            "response_peak": None if self.response_peak is None else self.response_peak.to_dict(),
            "steepest_rise": None if self.steepest_rise is None else self.steepest_rise.to_dict(),
        }

    def __repr__(self) -> str:
        lines = ["CriticalNoiseEstimates("]
        for name in ("zero_crossing", "response_peak", "steepest_rise"):
            est = getattr(self, name)
            lines.append(f"  {name}: {est!r}" if est is not None else f"  {name}: not measured")
        lines.append(")")
        return "\n".join(lines)


def _zero_crossing_locations(ln_s: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First downward zero crossing as ``s`` decreases, per column.

    ``ln_s`` is sorted decreasing. Returns ``(ln_s_c, defined, starts_unstable)``;
    ``ln_s_c`` is linear interpolation in ``ln s`` between the bracketing points.
    """
    positive = curves > 0.0
    crossing = positive[:-1] & ~positive[1:]
    defined = crossing.any(axis=0)
    j = np.argmax(crossing, axis=0)
    cols = np.arange(curves.shape[1])
    g1, g2 = curves[j, cols], curves[j + 1, cols]
    x1, x2 = ln_s[j], ln_s[j + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(defined, g1 / np.where(defined, g1 - g2, 1.0), 0.0)
    location = x1 + frac * (x2 - x1)
    starts_unstable = ~positive[0]
    return location, defined & ~starts_unstable, starts_unstable


def _peak_locations(x: np.ndarray, curves: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Location of the maximum of each column, refined by a parabola in ``x``.

    ``x`` ``(n,)``, ``curves`` ``(n, R)`` (``inf`` counts as the maximum; ties go to
    the first point), ``valid`` ``(n, R)`` marks usable points. Returns
    ``(location, defined, at_edge)``; the parabola through the maximum and its two
    neighbours is used only when all three are finite and valid and it is concave.
    """
    masked = np.where(valid, curves, -np.inf)
    defined = valid.any(axis=0)
    j = np.argmax(masked, axis=0)
    cols = np.arange(curves.shape[1])
    location = x[j].astype(float)
    n = x.size
    interior = (j > 0) & (j < n - 1) & defined
    jm, jp = np.clip(j - 1, 0, n - 1), np.clip(j + 1, 0, n - 1)
    f0, f1, f2 = masked[jm, cols], masked[j, cols], masked[jp, cols]
    x0, x1, x2 = x[jm], x[j], x[jp]
    refinable = interior & np.isfinite(f0) & np.isfinite(f1) & np.isfinite(f2)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = (x1 - x0) ** 2 * (f1 - f2) - (x1 - x2) ** 2 * (f1 - f0)
        den = (x1 - x0) * (f1 - f2) - (x1 - x2) * (f1 - f0)
        # concave through the three points: the middle one is the largest and
        # the divided second difference is negative
        second = ((f2 - f1) / (x2 - x1) - (f1 - f0) / (x1 - x0)) / (x2 - x0)
        ok = refinable & (second < 0.0) & (den != 0.0)
        vertex = np.where(ok, x1 - 0.5 * num / np.where(ok, den, 1.0), location)
    location = np.where(ok, vertex, location)
    at_edge = defined & ~interior
    return location, defined, at_edge


def _resolve_curve(
    samples: Any,
    name: str,
    s_sorted_order: np.ndarray,
    n_s: int,
    samples_are: str,
    counts_for: Callable[[int], np.ndarray],
    allow_inf: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(central curve ``(n_s,)``, replicates ``(n_s, R)``), rows sorted by decreasing s."""
    if isinstance(samples, BootstrapCurve):
        if samples.s.size != n_s:
            raise ValueError(f"{name} is a BootstrapCurve on {samples.s.size} noise levels; s_grid has {n_s}")
        central, replicates = samples.values, samples.replicates
    else:
        arr = _as_real_array(samples, name)
        if arr.ndim == 1:
            arr = arr[:, None]
            if arr.shape[0] != n_s:
                raise ValueError(f"{name} must have n_s={n_s} rows, got shape {arr.shape[:1]}")
            central, replicates = arr[:, 0], np.zeros((n_s, 0))
        elif arr.ndim == 2:
            if arr.shape[0] != n_s:
                raise ValueError(f"{name} must have shape (n_s={n_s}, n), got {arr.shape}")
            if samples_are == "members":
                if np.isinf(arr).any():
                    raise ValueError(f"{name}: per-member samples must be finite (their mean is the curve)")
                counts = counts_for(arr.shape[1])
                central = arr.mean(axis=1)
                replicates = arr @ counts.T / arr.shape[1]
            else:
                central = arr.mean(axis=1) if not np.isinf(arr).any() else np.median(arr, axis=1)
                replicates = arr
        else:
            raise ValueError(f"{name} must be 1-D (n_s,), 2-D (n_s, n) or a BootstrapCurve, got shape {arr.shape}")
    if np.isnan(central).any() or np.isnan(replicates).any():
        raise ValueError(f"{name} contains NaN")
    if not allow_inf and (np.isinf(central).any() or np.isinf(replicates).any()):
        raise ValueError(f"{name} must be finite")
    return central[s_sorted_order], replicates[s_sorted_order]


def _estimate_from_locations(
    method: str,
    ln_loc: np.ndarray,
    defined: np.ndarray,
    confidence: float,
    note: str,
) -> CriticalNoiseEstimate:
    """Column 0 is the central curve, the rest are replicates."""
    value = float(np.exp(ln_loc[0])) if defined[0] else None
    rep_loc, rep_def = ln_loc[1:], defined[1:]
    interval = None
    if rep_def.any():
        lo, hi = _percentile_interval(np.exp(rep_loc[rep_def]), confidence)
        interval = (float(lo), float(hi))
    return CriticalNoiseEstimate(
        method=method,
        value=value,
        interval=interval,
        confidence=confidence,
        n_replicates=int(rep_loc.size),
        n_defined=int(rep_def.sum()),
        note=note,
    )


def critical_noise_estimates(
    s_grid: Any,
    gamma_min_samples: Any = None,
    xi_J_samples: Any = None,
    xi_2_samples: Any = None,
    rng: Any = None,
    *,
    samples_are: Literal["members", "replicates"] = "members",
    peak_of: Literal["xi_J", "susceptibility"] = "xi_J",
    n_bootstrap: int = 1000,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CriticalNoiseEstimates:
    """Measured critical noise level from three features of measured curves.

    (a) **Zero crossing of** ``gamma_min(s)``: following ``s`` downwards (the
    direction of generation), the first grid interval where ``gamma_min`` goes from
    ``> 0`` to ``<= 0``; ``s_c`` by linear interpolation of ``gamma_min`` in
    ``ln s``. ``None`` when there is no crossing (pseudo-critical: use (b) with
    ``peak_of="susceptibility"``) or when ``gamma_min <= 0`` already at the largest
    ``s`` (then the crossing lies above the grid; said in ``note``).

    (b) **Peak of** ``xi_J(s)`` (``peak_of="xi_J"``) or of the susceptibility
    ``1/gamma_min(s)`` (``peak_of="susceptibility"``, computed from
    ``gamma_min_samples``; ``inf`` where ``gamma_min <= 0``): the grid maximum,
    refined by the vertex of the parabola in ``ln s`` through it and its neighbours
    when those are finite. An infinite value counts as the maximum and the first one
    in decreasing ``s`` is taken (there the response has diverged). A maximum at the
    end of the grid is reported and flagged in ``note``.

    (c) **Steepest rise of** ``xi_2``: the maximum over grid intervals of the growth
    rate ``-d ln xi_2 / d ln s`` (positive when ``xi_2`` grows as ``s`` decreases),
    evaluated by finite differences at the interval midpoints in ``ln s`` and
    refined by a parabola. Intervals with ``xi_2 <= 0`` (clipped) or ``inf`` at an end
    are skipped.

    Inputs (each optional), for ``n_s`` noise levels:

    - a :class:`BootstrapCurve` (its ``values`` and paired ``replicates``; the
      preferred form, from :func:`correlation_length_curve` and
      :func:`diffcrit.numerics.jacobian_probes.stiffness_curve`);
    - a 2-D array ``(n_s, n)``: per-member values (``samples_are="members"``; the
      curve is the member mean and the bootstrap resamples members here, with the
      same resamples for every input with the same ``n``, i.e. paired), or bootstrap
      replicates (``samples_are="replicates"``; each column is one curve; the point
      estimate uses the column mean, the median if any replicate is infinite);
    - a 1-D array ``(n_s,)``: one curve without uncertainty.

    Note that ``gamma_min`` per member and then averaged is not ``min_k`` of the
    member-averaged ``gamma``: pass the :class:`BootstrapCurve` from
    ``stiffness_curve`` for the latter.

    The intervals are statistical (ensemble resampling) only. The grid adds a
    discretization error on top: exact for (a) when ``gamma_min`` is linear in
    ``ln s`` between grid points, otherwise ``~ h^2 |g''| / (8 |g'|)`` in ``ln s`` for
    grid spacing ``h``; for (b) and (c) the parabolic vertex of a smooth peak is
    typically within a small fraction of ``h`` (tested: < 0.02 at ``h = 0.06``).
    Use a grid fine enough that this is below the interval width.

    Args:
        s_grid: noise levels (any order; distinct, > 0).
        gamma_min_samples, xi_J_samples, xi_2_samples: see above.
        rng: numpy Generator or int seed (needed only for ``samples_are="members"``
            with 2-D arrays).
        samples_are: how 2-D arrays are read.
        peak_of: which response curve (b) uses.
        n_bootstrap: replicates for per-member inputs.
        confidence: level of the intervals.

    Returns:
        :class:`CriticalNoiseEstimates`; a method whose input is missing is ``None``.
    """
    confidence = _check_confidence(confidence)
    s = _check_s_grid(s_grid)
    if samples_are not in ("members", "replicates"):
        raise ValueError(f"samples_are must be 'members' or 'replicates', got {samples_are!r}")
    if peak_of not in ("xi_J", "susceptibility"):
        raise ValueError(f"peak_of must be 'xi_J' or 'susceptibility', got {peak_of!r}")
    if s.size < 2:
        raise ValueError(f"s_grid needs at least 2 noise levels, got {s.size}")
    order = np.argsort(-s)
    ln_s = np.log(s[order])
    cache: dict[int, np.ndarray] = {}

    def counts_for(n_members: int) -> np.ndarray:
        if n_members not in cache:
            if n_members < MIN_BOOTSTRAP_MEMBERS:
                raise ValueError(
                    f"per-member samples with {n_members} members are too few for a bootstrap "
                    f"(need >= {MIN_BOOTSTRAP_MEMBERS})"
                )
            cache[n_members] = _resample_counts(n_members, n_bootstrap, rng, None, what="critical_noise_estimates")
        return cache[n_members]

    def resolve(samples: Any, name: str, allow_inf: bool) -> np.ndarray:
        central, replicates = _resolve_curve(samples, name, order, s.size, samples_are, counts_for, allow_inf)
        return np.concatenate([central[:, None], replicates], axis=1)

    zero_crossing = response_peak = steepest_rise = None
    gamma = None
    if gamma_min_samples is not None:
        gamma = resolve(gamma_min_samples, "gamma_min_samples", allow_inf=False)
        loc, defined, starts = _zero_crossing_locations(ln_s, gamma)
        note = ""
        if starts[0]:
            note = "gamma_min <= 0 already at the largest s: the crossing lies above the grid"
        elif not defined[0]:
            note = "no zero crossing of gamma_min on the grid (pseudo-critical or stable)"
        zero_crossing = _estimate_from_locations("gamma_min zero crossing", loc, defined, confidence, note)

    if peak_of == "xi_J" and xi_J_samples is not None:
        curves = resolve(xi_J_samples, "xi_J_samples", allow_inf=True)
        method = "xi_J peak"
    elif peak_of == "susceptibility" and gamma is not None:
        with np.errstate(divide="ignore"):
            curves = np.where(gamma > 0.0, 1.0 / np.where(gamma > 0.0, gamma, 1.0), np.inf)
        method = "susceptibility peak"
    else:
        curves = None
        if peak_of == "susceptibility" and xi_J_samples is not None:
            raise ValueError("peak_of='susceptibility' needs gamma_min_samples")
    if curves is not None:
        loc, defined, at_edge = _peak_locations(ln_s, curves, np.ones(curves.shape, dtype=bool))
        note = "maximum at the edge of the s grid" if at_edge[0] else ""
        response_peak = _estimate_from_locations(method, loc, defined, confidence, note)

    if xi_2_samples is not None:
        xi2 = resolve(xi_2_samples, "xi_2_samples", allow_inf=True)
        if s.size < 3:
            raise ValueError("the steepest-rise estimate needs at least 3 noise levels")
        usable = (xi2 > 0.0) & np.isfinite(xi2)
        log_xi = np.log(np.where(usable, xi2, 1.0))
        rate = (log_xi[1:] - log_xi[:-1]) / (ln_s[:-1] - ln_s[1:])[:, None]
        mid = 0.5 * (ln_s[:-1] + ln_s[1:])
        valid = usable[1:] & usable[:-1]
        loc, defined, at_edge = _peak_locations(mid, np.where(valid, rate, -np.inf), valid)
        note = "steepest rise at the edge of the s grid" if at_edge[0] else ""
        if not defined[0]:
            note = "xi_2 is 0 or infinite on every grid interval"
        steepest_rise = _estimate_from_locations("xi_2 steepest rise", loc, defined, confidence, note)

    return CriticalNoiseEstimates(zero_crossing=zero_crossing, response_peak=response_peak, steepest_rise=steepest_rise)


# ----------------------------------------------------------------------------
# clone divergence
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CloneDivergence:
    """Result of splitting states at noise ``s`` into clones with fresh noise.

    Attributes:
        s: the split noise level.
        n_parents: number of parent states ``B``.
        n_clones: clones per parent.
        disagreement_variance: mean over sites of the within-parent variance of the
            clones' final fields (unbiased, ``n_clones - 1`` normalization).
        disagreement_interval: its bootstrap interval over parents (or ``None``).
        correlation_length: second-moment length of the disagreement field (its
            structure factor is that of the deviations of each clone from its
            parent's clone mean, ``n_clones/(n_clones - 1)`` corrected).
        class_agreement: probability that two clones of one parent end in the same
            class (``None`` without a classifier).
        class_agreement_interval: its bootstrap interval (or ``None``).
    """

    s: float
    n_parents: int
    n_clones: int
    disagreement_variance: float
    disagreement_interval: tuple[float, float] | None
    correlation_length: CorrelationLengthEstimate
    class_agreement: float | None
    class_agreement_interval: tuple[float, float] | None
    _replicates: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.s,
            "n_parents": self.n_parents,
            "n_clones": self.n_clones,
            "disagreement_variance": self.disagreement_variance,
            "disagreement_interval": None if self.disagreement_interval is None else list(self.disagreement_interval),
            "correlation_length": self.correlation_length.to_dict(),
            "class_agreement": self.class_agreement,
            "class_agreement_interval": None
            if self.class_agreement_interval is None
            else list(self.class_agreement_interval),
        }

    def __repr__(self) -> str:
        agree = "" if self.class_agreement is None else f", class agreement {self.class_agreement:.3f}"
        return (
            f"CloneDivergence(s={self.s:.4g}, {self.n_parents} parents x {self.n_clones} clones: "
            f"disagreement variance {self.disagreement_variance:.4g}, xi {self.correlation_length.value:.4g}{agree})"
        )


def _check_callable(obj: Any, name: str) -> None:
    if not callable(obj):
        raise TypeError(f"{name} must be callable, got {type(obj).__name__}")


def clone_divergence(
    sampler: Callable[[np.ndarray, float, np.random.Generator], np.ndarray],
    states: Any,
    s: float,
    rng: Any,
    *,
    n_clones: int = 2,
    classifier: Callable[[np.ndarray], np.ndarray] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CloneDivergence:
    """Split states at noise ``s`` into clones, continue each with fresh noise.

    Each parent state is copied ``n_clones`` times and every copy is continued to
    the end of the schedule by ``sampler`` with its own random stream. The
    *disagreement field* of clone ``c`` of parent ``b`` is its deviation from the
    clones' mean, ``d_bc = x_bc - mean_c x_bc``. Its structure factor
    ``S_d(k) = sum_{b,c} |FFT d_bc(k)|^2 / (B (n_clones - 1) N)`` is the
    within-parent spectrum (unbiased); the reported correlation length is its
    second-moment length (the formula of :func:`second_moment_correlation_length`,
    bootstrapped over parents). The class agreement is the fraction of ordered
    clone pairs ``(c != c')`` of a parent with equal labels, averaged over parents.

    Args:
        sampler: ``sampler(states, s, rng) -> final``: continues states
            ``(M, *shape)`` from noise ``s`` to the end of the schedule with the
            given Generator; returns ``(M, *shape)``. It must inject noise (an SDE
            or ancestral sampler), otherwise the clones agree exactly.
        states: parent states ``(B, *shape)`` at noise ``s``.
        s: the noise level of ``states``.
        rng: numpy Generator or int seed; clone ``c`` gets the ``c``-th child stream
            (``Generator.spawn``), the bootstrap the next.
        n_clones: clones per parent (>= 2).
        classifier: optional ``classifier(fields) -> labels`` (``(M,)`` integers).
        n_bootstrap: bootstrap replicates over parents (0 for none).
        confidence: interval level.

    Returns:
        :class:`CloneDivergence`.
    """
    _check_callable(sampler, "sampler")
    if classifier is not None:
        _check_callable(classifier, "classifier")
    confidence = _check_confidence(confidence)
    n_clones = _check_int(n_clones, "n_clones", 2)
    s = float(s)
    if not math.isfinite(s) or s <= 0.0:
        raise ValueError(f"s must be a finite noise level > 0, got {s}")
    y = _as_ensemble(states, name="states", min_members=3, min_side=_MIN_SIDE)
    n_parents, shape = y.shape[0], y.shape[1:]
    n_bootstrap = _check_int(n_bootstrap, "n_bootstrap", 0)
    gen = _as_generator(rng, what="clone_divergence")
    streams = gen.spawn(n_clones + 1)

    finals = []
    for c in range(n_clones):
        out = np.asarray(sampler(y.copy(), s, streams[c]))
        if out.shape != y.shape:
            raise ValueError(f"sampler returned shape {out.shape} for states of shape {y.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"sampler returned non-finite values for clone {c} continued from s = {s}")
        finals.append(out.astype(np.float64, copy=False))
    clones = np.stack(finals, axis=1)  # (B, C, *shape)
    deviation = clones - clones.mean(axis=1, keepdims=True)

    axes = tuple(range(2, clones.ndim))
    n_sites = math.prod(shape)
    # per-parent within-clone variance (site average), unbiased in n_clones
    per_parent_variance = (deviation**2).sum(axis=1).mean(axis=tuple(a - 1 for a in axes)) / (n_clones - 1)
    # Fourier components of the deviations at k = 0 and k_min per axis
    flat = deviation.reshape((n_parents * n_clones,) + shape)
    comps = _minimal_fourier_components(flat).reshape(n_parents, n_clones, -1)
    per_parent_power = (comps.real**2 + comps.imag**2).sum(axis=1) / ((n_clones - 1) * n_sites)  # (B, 1+d)
    q2_axes = _minimal_wavevector_q2(shape)

    counts = _resample_counts(n_parents, n_bootstrap, streams[-1], None, what="clone_divergence")
    weights = np.concatenate([np.ones((1, n_parents)), counts], axis=0)
    power = weights @ per_parent_power / n_parents
    if np.any(power[0, 1:] <= 0.0):
        raise ValueError("the clones agree exactly at the minimal wavevectors: does the sampler inject noise?")
    defined = np.all(power[:, 1:] > 0.0, axis=1)
    xi2 = _second_moment_xi_squared(power[:, 0], np.where(power[:, 1:] > 0.0, power[:, 1:], 1.0), q2_axes)
    xi2 = np.where(defined, xi2, np.inf)
    xi = np.sqrt(np.maximum(xi2, 0.0))
    rep = xi[1:]
    stderr, interval = _summarize(rep, confidence)
    length = CorrelationLengthEstimate(
        value=float(xi[0]),
        stderr=stderr,
        interval=interval,
        confidence=confidence,
        method="clone_disagreement",
        xi_squared=float(xi2[0]),
        clipped=bool(xi2[0] < 0.0),
        diverged=False,
        fraction_clipped=float(np.mean(xi2[1:] < 0.0)) if rep.size else 0.0,
        n_members=n_parents,
        n_bootstrap=int(rep.size),
        replicates=rep,
        details={"structure_factor_zero": float(power[0, 0]), "structure_factor_kmin": power[0, 1:]},
    )

    variance_rep = weights @ per_parent_variance / n_parents
    variance_interval = None
    if counts.shape[0]:
        lo, hi = _percentile_interval(variance_rep[1:], confidence)
        variance_interval = (float(lo), float(hi))

    agreement = agreement_interval = None
    replicates = {"disagreement_variance": variance_rep[1:]}
    if classifier is not None:
        labels = np.asarray(classifier(clones.reshape((n_parents * n_clones,) + shape)))
        if labels.shape != (n_parents * n_clones,):
            raise ValueError(
                f"classifier must return one label per field, shape ({n_parents * n_clones},); got {labels.shape}"
            )
        labels = labels.reshape(n_parents, n_clones)
        same = (labels[:, :, None] == labels[:, None, :]).sum(axis=(1, 2)) - n_clones
        per_parent_agreement = same / (n_clones * (n_clones - 1))
        agree_rep = weights @ per_parent_agreement / n_parents
        agreement = float(agree_rep[0])
        replicates["class_agreement"] = agree_rep[1:]
        if counts.shape[0]:
            lo, hi = _percentile_interval(agree_rep[1:], confidence)
            agreement_interval = (float(lo), float(hi))

    return CloneDivergence(
        s=s,
        n_parents=n_parents,
        n_clones=n_clones,
        disagreement_variance=float(variance_rep[0]),
        disagreement_interval=variance_interval,
        correlation_length=length,
        class_agreement=agreement,
        class_agreement_interval=agreement_interval,
        _replicates=replicates,
    )


@dataclass(frozen=True, repr=False)
class CloneDivergenceCurve:
    """Clone divergence along a noise grid.

    Attributes:
        results: one :class:`CloneDivergence` per split level.
        correlation_length: :class:`BootstrapCurve` of the disagreement length.
        disagreement_variance: :class:`BootstrapCurve` of the disagreement variance.
        class_agreement: :class:`BootstrapCurve` of the class agreement (the
            class-commitment curve), or ``None`` without a classifier.
    """

    results: tuple[CloneDivergence, ...]
    correlation_length: BootstrapCurve
    disagreement_variance: BootstrapCurve
    class_agreement: BootstrapCurve | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "correlation_length": self.correlation_length.to_dict(),
            "disagreement_variance": self.disagreement_variance.to_dict(),
            "class_agreement": None if self.class_agreement is None else self.class_agreement.to_dict(),
        }

    def __repr__(self) -> str:
        return f"CloneDivergenceCurve(n_s={len(self.results)}, classifier={'yes' if self.class_agreement else 'no'})"


def clone_divergence_curve(
    sampler: Callable[[np.ndarray, float, np.random.Generator], np.ndarray],
    states_over_s: Any,
    s_grid: Any,
    rng: Any,
    *,
    n_clones: int = 2,
    classifier: Callable[[np.ndarray], np.ndarray] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CloneDivergenceCurve:
    """:func:`clone_divergence` at each noise level of a grid.

    Args:
        sampler: as in :func:`clone_divergence`.
        states_over_s: ``(n_s, B, *shape)``: parent states at each split level.
        s_grid: ``(n_s,)`` split levels.
        rng: numpy Generator or int seed (one child stream per level).
        n_clones, classifier, n_bootstrap, confidence: as in :func:`clone_divergence`.

    Returns:
        :class:`CloneDivergenceCurve` (replicates are independent across levels).
    """
    s = _check_s_grid(s_grid)
    arr = _as_real_array(states_over_s, "states_over_s")
    if arr.ndim < 3 or arr.shape[0] != s.size:
        raise ValueError(f"states_over_s must have shape (n_s={s.size}, B, *lattice_shape), got {arr.shape}")
    gen = _as_generator(rng, what="clone_divergence_curve")
    streams = gen.spawn(s.size)
    results = tuple(
        clone_divergence(
            sampler,
            arr[j],
            float(s[j]),
            streams[j],
            n_clones=n_clones,
            classifier=classifier,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
        )
        for j in range(s.size)
    )

    def curve(name: str, values: list[float], reps: list[np.ndarray]) -> BootstrapCurve:
        return BootstrapCurve(name=name, s=s, values=np.array(values), replicates=np.array(reps).reshape(s.size, -1), confidence=confidence)

    xi_curve = curve(
        "xi_clone", [r.correlation_length.value for r in results], [r.correlation_length.replicates for r in results]
    )
    var_curve = curve(
        "disagreement_variance",
        [r.disagreement_variance for r in results],
        [r._replicates["disagreement_variance"] for r in results],
    )
    agree_curve = None
    if classifier is not None:
        agree_curve = curve(
            "class_agreement", [r.class_agreement for r in results], [r._replicates["class_agreement"] for r in results]
        )
    return CloneDivergenceCurve(
        results=results, correlation_length=xi_curve, disagreement_variance=var_curve, class_agreement=agree_curve
    )
