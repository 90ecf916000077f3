"""One entry point for the linear theory: ``predict(data, model, schedule) -> Prediction``.

A :class:`Prediction` says where the reverse dynamics of a model lose stability
(THEORY.md 2): the kind of prediction, the critical (or pseudo-critical, or
crossover) noise ``s_c`` and, in the clock of the chosen schedule, the time
``t_c = t(s_c)``; the critical mode as integer lattice indices ``[k_y, k_x]``
(wavevector ``2 pi n / L``); the minimum stiffness; and the curves along a noise
grid: ``kappa_max(s)``, ``gamma_min(s) = 1 - kappa_max(s)``, ``xi_J(s)``,
linear-theory ``xi_2(s)`` where defined, the reference trajectory, and the full
``kappa(k, s)`` array.

Models (frozen dataclasses) and the theory used for each:

- :class:`GaussianField`: the stationary Gaussian field with the data's pooled
  power spectrum ``P(k)`` (one scalar mean). Exact theory
  (:mod:`diffcrit.theory.gaussian`): ``kappa_k = P(k)/(P(k) + s^2) < 1``, never
  unstable, so the kind is ``"crossover"`` and the reported noise is the crossover
  ``s_k = sqrt(P(k))`` of the slowest mode, the one with the largest ``P(k)``,
  which is the first to reach ``kappa = 1/2`` as ``s`` decreases. ``J`` is the
  same at every state, so the homogeneous and marginal levels are this exact
  theory; the reported level is ``"exact"`` whatever was asked (the moment level's
  ``P/s^2`` is only its high-noise limit).
- :class:`GaussianMixture`, :class:`Memorizing` and :class:`PatchModel` with
  ``mode="local"`` or ``"global"``: models that are not translation-equivariant.
  Their Jacobian ``J = Cov[x_0 | y]/s^2`` is a dense ``d x d`` matrix; the theory
  levels are

  * ``"moment"``: prior (uniform) weights, ``J = C_W/s^2`` (``C_W`` the data
    covariance restricted to the window; the whole covariance for the memorizing
    model) and ``s_c^2 = lambda_max(C_W)``; for the mixture
    ``J = v/(v + s^2) I + s^2 B/(v + s^2)^2`` and ``s_c^2 = lambda_max(B) - v``
    (exact for a symmetric mixture);
  * ``"homogeneous"`` is reported as ``"mean-trajectory"``: without translation
    invariance there is no homogeneous invariant set; its analog, and the closest
    statement, is the exact linear stability of the mean trajectory, the
    probability-flow solution started at the data mean at high noise (THEORY.md
    3.2), with ``kappa_max(s) = lambda_max(J(y(s), s))``;
  * ``"marginal"``: the annealed Jacobian ``E[J(x_0 + s eps)]`` by Monte Carlo
    (common random numbers across ``s``), ``x_0`` drawn from the model's own
    distribution (training images; mixture samples for the mixture), and
    ``kappa_max = lambda_max`` of it.

  The critical direction is an eigenvector, not a plane wave: ``critical_mode``
  is the lattice wavevector (``+-k`` merged) carrying the largest share of its
  power, and ``critical_mode_weight`` is that share. ``kappa(k, s)`` holds the
  Fourier probes ``Re <e_k, J e_k>`` (THEORY.md 4). ``xi_2`` is not computed
  (the linear fluctuation theory of THEORY.md 3.3 is stated for Fourier-diagonal
  ``J``). ``mode="global"`` takes the whole image as the window *without*
  pooling over positions, so it is the memorizing denoiser itself (pooling a
  whole-image window would memorize every translate of every image instead).
  For a mixture with ``v > 0``, ``kappa_max -> 1`` from below as ``s -> 0``
  (each component's own crossover at ``s^2 ~ v``): without a crossing the
  maximal softening sits at the bottom of the grid, and a note says so.
- :class:`PatchModel` with ``mode="equivariant"``: the pooled patch model of
  THEORY.md 3.3 at the requested level (``"moment"``, ``"homogeneous"``,
  ``"marginal"``), through :func:`diffcrit.theory.patch.patch_theory`. Its
  ``J`` is diagonal in Fourier space, ``critical_mode_weight`` is 1.

Kinds: ``"critical"`` (some mode reaches ``kappa = 1`` at ``s_c``, the first
crossing as ``s`` decreases), ``"pseudo-critical"`` (no mode does; ``s_c`` is the
point of maximal softening and ``min_stiffness > 0`` says how close the model
comes), ``"crossover"`` (Gaussian field), ``"no transition"`` (proved: no mode
can reach ``kappa = 1``; ``critical_noise`` is None).

``min_stiffness`` is ``gamma_min`` at the reported point: 0 for a critical point,
the minimum of ``gamma_min`` for a pseudo-critical one, ``1/2`` for the Gaussian
crossover (whose ``gamma_min`` only tends to 0 as ``s -> 0``), ``None`` for no
transition.

Clock: ``critical_time = schedule.t_of_s(s_c)`` when ``s_min <= s_c <= s_max`` of
the schedule; otherwise ``None``, ``in_schedule_range = False`` and ``message``
says so (never extrapolated). Curve times outside the range are NaN in the arrays
and ``null`` in :meth:`Prediction.to_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
from scipy import optimize
from scipy.integrate import solve_ivp

from diffcrit.theory.gaussian import gaussian_field_correlation_length, gaussian_field_kappa
from diffcrit.theory.mixture import between_component_covariance, mixture_denoiser, mixture_jacobian
from diffcrit.theory.patch import (
    critical_mode_index,
    homogeneous_level,
    moment_level,
    patch_theory,
    second_moment_length,
)
from diffcrit.theory.patch_stats import (
    PatchStatistics,
    _as_shape,
    kernel_fourier_eigenvalues,
    lattice_wavevectors,
)
from diffcrit.theory.schedules import Schedule, get_schedule
from diffcrit.theory.statistics import pooled_power_spectrum
from diffcrit.theory.windows import check_window_fits, square_window

__all__ = [
    "LEVELS",
    "KINDS",
    "PATCH_MODES",
    "GaussianField",
    "GaussianMixture",
    "Memorizing",
    "PatchModel",
    "model_from_spec",
    "Prediction",
    "predict",
]

LEVELS = ("moment", "homogeneous", "marginal")
KINDS = ("critical", "pseudo-critical", "crossover", "no transition")
PATCH_MODES = ("equivariant", "local", "global")
_DYNAMICS = ("ode", "sde")
# Grid density (points per decade of s) of the default noise grids; the marginal
# level uses fewer because every point is a Monte Carlo average.
_PER_DECADE = 40
_PER_DECADE_MARGINAL = 12
# Relative slack on the schedule's noise range: its ends come from exp/log
# round trips and may differ from an s_c computed at an end by a few ulp.
_RANGE_SLACK = 1e-12


# --------------------------------------------------------------------------- models


def _check_int(name: str, value: Any, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


@dataclass(frozen=True)
class GaussianField:
    """The Gaussian field (THEORY.md 3.1): stationary, with the data's pooled power spectrum.

    ``x_0 ~ N(m 1, Sigma)``, ``Sigma`` circulant with eigenvalues ``P(k)``
    (:func:`diffcrit.theory.statistics.pooled_power_spectrum`). The null model:
    no instability, only a crossover of each mode at ``s_k^2 = P(k)``.
    """

    name: ClassVar[str] = "gaussian"

    def to_dict(self) -> dict:
        """``{"name": "gaussian"}``."""
        return {"name": self.name}


@dataclass(frozen=True, eq=False, repr=False)
class GaussianMixture:
    """Gaussian mixture ``sum_c pi_c N(m_c, v I)`` (THEORY.md 3.2).

    With ``means=None`` the parameters are fitted from labelled data: ``m_c`` the
    class means, ``v`` the pooled within-class variance per pixel
    (``mean over images and pixels of (x - m_label)^2``), ``pi_c`` the class
    frequencies. With ``means`` given, ``variance`` is required and the data only
    fix the lattice.

    Args:
        means: ``(n_components, *lattice)`` or ``(n_components, d)``, or None.
        variance: component variance ``v > 0`` (required with ``means``).
        weights: positive component weights (normalized; uniform if None).
    """

    means: Any = None
    variance: float | None = None
    weights: Any = None

    name: ClassVar[str] = "mixture"

    def __post_init__(self) -> None:
        if self.means is None:
            if self.variance is not None or self.weights is not None:
                raise ValueError(
                    "GaussianMixture: variance and weights are fitted with the means; pass means too "
                    "(or none of them, to fit all three from labelled data)"
                )
            return
        if isinstance(self.means, (str, bytes)):
            raise TypeError(f"GaussianMixture: means must be an array, got {self.means!r}")
        means = np.array(self.means, dtype=np.float64)
        if means.ndim < 2 or means.shape[0] < 1 or means[0].size == 0:
            raise ValueError(f"GaussianMixture: means must have shape (n_components, *lattice), got {means.shape}")
        if not np.all(np.isfinite(means)):
            raise ValueError("GaussianMixture: means must be finite")
        if self.variance is None:
            raise ValueError("GaussianMixture: variance is required when means are given (v > 0)")
        if isinstance(self.variance, bool) or not isinstance(self.variance, (int, float, np.integer, np.floating)):
            raise TypeError(f"GaussianMixture: variance must be a number, got {self.variance!r}")
        variance = float(self.variance)
        if not (math.isfinite(variance) and variance > 0):
            raise ValueError(f"GaussianMixture: variance must be finite and > 0, got {self.variance!r}")
        weights = None
        if self.weights is not None:
            weights = np.array(self.weights, dtype=np.float64)
            if weights.shape != (means.shape[0],) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
                raise ValueError(
                    f"GaussianMixture: weights must be {means.shape[0]} positive finite numbers, got {self.weights!r}"
                )
            weights = weights / weights.sum()
            weights.setflags(write=False)
        means.setflags(write=False)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "variance", variance)
        object.__setattr__(self, "weights", weights)

    @property
    def fitted(self) -> bool:
        """True when the parameters are to be fitted from labelled data."""
        return self.means is None

    def to_dict(self) -> dict:
        """Name and parameters (means summarized by their number)."""
        if self.fitted:
            return {"name": self.name, "fitted": True}
        return {
            "name": self.name, "fitted": False, "n_components": int(self.means.shape[0]),
            "variance": self.variance,
            "weights": None if self.weights is None else self.weights.tolist(),
        }

    def __repr__(self) -> str:
        if self.fitted:
            return "GaussianMixture(fitted from labelled data)"
        return f"GaussianMixture(n_components={self.means.shape[0]}, variance={self.variance:.6g})"


@dataclass(frozen=True)
class Memorizing:
    """The memorizing (empirical) denoiser of the training set (THEORY.md 3.2, ``v -> 0``).

    ``D(y) = sum_a w_a x_a``, ``w_a ∝ exp(-|y - x_a|^2/2 s^2)``; identical to
    ``PatchModel(mode="global")``.
    """

    name: ClassVar[str] = "memorizing"

    def to_dict(self) -> dict:
        """``{"name": "memorizing"}``."""
        return {"name": self.name}


@dataclass(frozen=True)
class PatchModel:
    """The patch model (THEORY.md 3.3).

    Args:
        window: odd window side ``P = 2R + 1`` (ignored, and set to None, for
            ``mode="global"``, whose window is the whole image).
        mode: ``"equivariant"`` (patches pooled over positions: the main model),
            ``"local"`` (only patches from the same position) or ``"global"``
            (the whole image: the memorizing denoiser).
        conditional_on: a class label: use only the images of that class
            (needs labelled data), or None.
    """

    window: int | None = 3
    mode: str = "equivariant"
    conditional_on: int | None = None

    name: ClassVar[str] = "patch"

    def __post_init__(self) -> None:
        if self.mode not in PATCH_MODES:
            raise ValueError(f"PatchModel: mode must be one of {PATCH_MODES}, got {self.mode!r}")
        if self.mode == "global":
            object.__setattr__(self, "window", None)
        else:
            window = _check_int("PatchModel: window", self.window, 1)
            if window % 2 == 0:
                raise ValueError(f"PatchModel: window must be an odd side P = 2R+1 >= 1, got {window}")
            object.__setattr__(self, "window", window)
        if self.conditional_on is not None:
            object.__setattr__(self, "conditional_on", _check_int("PatchModel: conditional_on", self.conditional_on,
                                                                  None))

    def to_dict(self) -> dict:
        """Name, window, mode and class condition."""
        return {"name": self.name, "window": self.window, "mode": self.mode,
                "conditional_on": self.conditional_on}


_MODEL_NAMES = {"gaussian": GaussianField, "gaussian-field": GaussianField, "mixture": GaussianMixture,
                "memorizing": Memorizing, "patch": PatchModel}
_MODEL_OPTIONS = {GaussianField: (), GaussianMixture: ("means", "variance", "weights"), Memorizing: (),
                  PatchModel: ("window", "mode", "conditional_on")}


def model_from_spec(name: str, **options: Any):
    """A model from its name and options (options that are None are ignored).

    Names: ``"gaussian"`` (or ``"gaussian-field"``), ``"mixture"``,
    ``"memorizing"``, ``"patch"``. Options: ``window``, ``mode``,
    ``conditional_on`` (patch); ``means``, ``variance``, ``weights`` (mixture).

    >>> model_from_spec("patch", window=5, mode="equivariant")
    PatchModel(window=5, mode='equivariant', conditional_on=None)
    >>> model_from_spec("gaussian", window=None)
    GaussianField()
    """
    if not isinstance(name, str) or name.strip().lower() not in _MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; allowed: gaussian, mixture, memorizing, patch")
    cls = _MODEL_NAMES[name.strip().lower()]
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(_MODEL_OPTIONS[cls]))
    if unknown:
        allowed = list(_MODEL_OPTIONS[cls]) or "none"
        raise ValueError(f"model {name!r} takes no option(s) {unknown}; allowed: {allowed}")
    return cls(**given)


# --------------------------------------------------------------------------- result


def _frozen_array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.array(value, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


def _json_list(arr: np.ndarray | None) -> Any:
    """Nested lists with non-finite values as None (JSON has no NaN)."""
    if arr is None:
        return None
    obj = np.asarray(arr, dtype=np.float64)
    if obj.ndim == 0:
        value = float(obj)
        return value if math.isfinite(value) else None
    return [_json_list(row) for row in obj] if obj.ndim > 1 else [
        float(v) if math.isfinite(v) else None for v in obj.tolist()
    ]


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, eq=False, repr=False)
class Prediction:
    """The linear-theory prediction for one data set, model, level and schedule.

    Attributes:
        kind: ``"critical"``, ``"pseudo-critical"``, ``"crossover"`` or ``"no transition"``.
        level: level of theory used: ``"moment"``, ``"homogeneous"``,
            ``"marginal"`` (equivariant patch model), ``"exact"`` (Gaussian field),
            ``"moment"``, ``"mean-trajectory"``, ``"marginal"`` (models that are not
            translation-equivariant). See the module docstring.
        requested_level: the level asked for.
        model: the model's parameters (fitted ones included).
        schedule: the schedule (``spec``, parameters, noise and time range).
        data: name, number of images, lattice and standardization of the data.
        critical_noise: ``s_c`` (critical, pseudo-critical or crossover noise), or None.
        critical_time: ``t_c = t(s_c)`` in the schedule's clock, or None (see
            ``in_schedule_range`` and ``message``).
        critical_step: fractional step of ``s_c`` for discrete schedules, else None.
        in_schedule_range: whether ``s_c`` lies in ``[s_min, s_max]`` of the schedule.
        message: one sentence stating the result (and any range problem).
        critical_mode: signed integer lattice indices ``[k_y, k_x]``, or None.
        critical_wavevector: ``2 pi k_c / L`` in rad/site, or None.
        critical_mode_weight: share of the critical direction's power at ``+-k_c``
            (1 for translation-equivariant models).
        kappa_at_critical: ``kappa_max`` at ``s_c``.
        min_stiffness: ``gamma_min`` at the reported point (see the module docstring).
        lattice: lattice shape of the ``k`` grid.
        dynamics: ``"ode"`` or ``"sde"`` (fluctuation theory and reference trajectory).
        s_grid: noise levels of the curves, descending.
        t_grid: their times in the schedule's clock (NaN outside its range).
        kappa_max: ``max_k kappa(k, s)`` (largest Jacobian eigenvalue for dense models).
        gamma_min: ``1 - kappa_max``.
        xi_J: response correlation length (NaN where undefined): ``sqrt(b/gamma_0)``
            for the equivariant patch model (THEORY.md 3.3), else the second-moment
            length of ``chi(k) = 1/gamma(k)`` over ``kappa(k, s)`` where every
            ``gamma(k) > 0`` (THEORY.md 4).
        xi_2: linear-theory second-moment correlation length, or None where not defined.
        trajectory: spatial mean of the reference trajectory (homogeneous ``c(s)``,
            mean trajectory, or the invariant mean of the Gaussian field), or None.
        kappa: ``kappa(k, s)``, shape ``(len(s_grid), *lattice)``, ``numpy.fft`` order.
        kappa_stderr: Monte Carlo standard error of ``kappa`` (marginal level) or None.
        trajectory_field: the reference trajectory as fields ``(len(s_grid), *lattice)``
            (dense models at the mean-trajectory level) or None.
        notes: caveats found while computing.
    """

    kind: str
    level: str
    requested_level: str
    model: dict
    schedule: Schedule
    data: dict
    critical_noise: float | None
    critical_time: float | None
    critical_step: float | None
    in_schedule_range: bool
    message: str
    critical_mode: tuple[int, ...] | None
    critical_wavevector: tuple[float, ...] | None
    critical_mode_weight: float | None
    kappa_at_critical: float | None
    min_stiffness: float | None
    lattice: tuple[int, ...]
    dynamics: str
    s_grid: np.ndarray
    t_grid: np.ndarray
    kappa_max: np.ndarray
    gamma_min: np.ndarray
    xi_J: np.ndarray
    xi_2: np.ndarray | None
    trajectory: np.ndarray | None
    kappa: np.ndarray
    kappa_stderr: np.ndarray | None = None
    trajectory_field: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("s_grid", "t_grid", "kappa_max", "gamma_min", "xi_J", "xi_2", "trajectory", "kappa",
                     "kappa_stderr", "trajectory_field"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def critical_noise_variance(self) -> float | None:
        """``s_c^2`` or None."""
        return None if self.critical_noise is None else self.critical_noise**2

    def to_dict(self, arrays: bool = False) -> dict:
        """JSON-ready dictionary (non-finite numbers as None).

        Args:
            arrays: also include ``kappa(k, s)`` (and its standard error and the
                trajectory fields) under ``"arrays"``.
        """
        out = {
            "kind": self.kind,
            "level": self.level,
            "requested_level": self.requested_level,
            "model": dict(self.model),
            "schedule": self.schedule.to_dict(),
            "data": dict(self.data),
            "critical_noise": _json_float(self.critical_noise),
            "critical_noise_variance": _json_float(self.critical_noise_variance),
            "critical_time": _json_float(self.critical_time),
            "critical_step": _json_float(self.critical_step),
            "in_schedule_range": bool(self.in_schedule_range),
            "message": self.message,
            "critical_mode": None if self.critical_mode is None else [int(v) for v in self.critical_mode],
            "critical_wavevector": None if self.critical_wavevector is None
            else [float(v) for v in self.critical_wavevector],
            "critical_mode_weight": _json_float(self.critical_mode_weight),
            "kappa_at_critical": _json_float(self.kappa_at_critical),
            "min_stiffness": _json_float(self.min_stiffness),
            "lattice": [int(v) for v in self.lattice],
            "dynamics": self.dynamics,
            "curves": {
                "s": _json_list(self.s_grid),
                "t": _json_list(self.t_grid),
                "kappa_max": _json_list(self.kappa_max),
                "gamma_min": _json_list(self.gamma_min),
                "xi_J": _json_list(self.xi_J),
                "xi_2": _json_list(self.xi_2),
                "trajectory": _json_list(self.trajectory),
            },
            "notes": list(self.notes),
        }
        if arrays:
            out["arrays"] = {
                "kappa": _json_list(self.kappa),
                "kappa_stderr": _json_list(self.kappa_stderr),
                "trajectory_field": _json_list(self.trajectory_field),
            }
        return out

    def summary(self) -> dict:
        """The headline numbers only (no curves)."""
        full = self.to_dict()
        full.pop("curves")
        full["schedule"] = self.schedule.spec
        return full

    def __repr__(self) -> str:
        model = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}"
                          for k, v in self.model.items() if k != "name" and not isinstance(v, (list, dict)))
        s_c = "None" if self.critical_noise is None else f"{self.critical_noise:.6g}"
        t_c = "None" if self.critical_time is None else f"{self.critical_time:.6g}"
        mode = "None" if self.critical_mode is None else "[" + ", ".join(str(v) for v in self.critical_mode) + "]"
        gamma = "None" if self.min_stiffness is None else f"{self.min_stiffness:.4g}"
        return (
            f"Prediction(kind={self.kind!r}, level={self.level!r}, model={self.model['name']}({model}), "
            f"s_c={s_c}, t_c={t_c} [{self.schedule.name}], k_c={mode}, min_stiffness={gamma}, "
            f"lattice={self.lattice}, n_s={len(self.s_grid)})"
        )

    def latex(self) -> str:
        """The derivation chain behind this prediction (Markdown with ``$$...$$`` blocks) and its numbers."""
        from diffcrit.theory.derivations import prediction_markdown

        return prediction_markdown(self)


# --------------------------------------------------------------------------- input handling


def _as_data(data: Any) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Images ``(N, *lattice)`` (float64, one channel), labels or None, and a description."""
    from diffcrit.data import Dataset, load_dataset

    if isinstance(data, str):
        data = load_dataset(data)
    if isinstance(data, Dataset):
        images = np.asarray(data.images, dtype=np.float64)
        if data.has_channel_axis:
            if data.channels != 1:
                raise ValueError(
                    f"data: the theory is stated for one channel; dataset '{data.name}' has {data.channels}"
                )
            images = images[:, 0]
        record = data.standardization
        description = {"name": data.name, "n": data.n, "shape": list(data.shape),
                       "standardization": None if record is None else record.mode,
                       "spec": data.provenance.get("spec")}
        return images, None if data.labels is None else np.asarray(data.labels), description
    if data is None or isinstance(data, bytes):
        raise TypeError(f"data must be a Dataset, an array (N, *lattice) or a dataset spec string, got {data!r}")
    try:
        images = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"data must be a Dataset, an array (N, *lattice) or a dataset spec, got {type(data).__name__}"
        ) from exc
    if images.ndim < 2 or images.shape[0] < 1 or images[0].size == 0:
        raise ValueError(f"data must have shape (N, *lattice) with N >= 1, got {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("data contain NaN or inf")
    return images, None, {"name": "array", "n": int(images.shape[0]), "shape": list(images.shape[1:]),
                          "standardization": None, "spec": None}


def _require_variance(images: np.ndarray) -> None:
    spread = float(images.max() - images.min())
    if not spread > 0.0:
        raise ValueError(
            f"data are constant (every pixel = {float(images.flat[0])!r}): no variance, so no mode can "
            "soften; pass data with nonzero variance"
        )


def _check_level(level: Any) -> str:
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return level


def _check_grid(s_grid: Any) -> np.ndarray | None:
    if s_grid is None:
        return None
    if isinstance(s_grid, (str, bytes)):
        raise TypeError(f"s_grid must be an array of noise levels, got {s_grid!r}")
    grid = np.asarray(s_grid, dtype=np.float64).ravel()
    if grid.size < 2:
        raise ValueError(f"s_grid needs at least 2 noise levels, got {grid.size}")
    bad = ~(np.isfinite(grid) & (grid > 0))
    if np.any(bad):
        raise ValueError(f"s_grid (noise levels) must be finite and > 0, got {float(grid[bad][0])!r}")
    grid = np.sort(grid)[::-1]
    if np.any(np.diff(grid) == 0):
        raise ValueError("s_grid must not contain repeated noise levels")
    return grid


def _lattice_shape(lattice: Any, dim: int) -> tuple[int, ...] | None:
    """The patch statistics' lattice parser, with integer sides and >= 2 enforced."""
    if lattice is None:
        return None
    if not isinstance(lattice, (bool, int, np.integer)):
        try:
            lattice = tuple(_check_int("lattice side", v, 1) for v in lattice)
        except TypeError as exc:
            raise TypeError(f"lattice must be an int side or a shape tuple, got {lattice!r}") from exc
    shape = _as_shape(lattice, dim)
    if any(v < 2 for v in shape):
        raise ValueError(f"lattice sides must be >= 2 (a nonzero wavevector per axis), got {shape}")
    return shape


def _default_grid(top: float, bottom: float, per_decade: int) -> np.ndarray:
    n = max(2, int(math.ceil(per_decade * math.log10(top / bottom))) + 1)
    return np.geomspace(top, bottom, n)


# --------------------------------------------------------------------------- lattice helpers


def _signed(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(n if n <= L // 2 else n - L) for n, L in zip(index, shape))


def _negated_index(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int((-n) % L) for n, L in zip(index, shape))


def _dominant_fourier_mode(vector: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
    """Signed index of the wavevector (``+-k`` merged) with the largest share of ``|FFT(v)|^2``, and that share."""
    power = np.abs(np.fft.fftn(np.asarray(vector).reshape(shape))) ** 2
    total = float(power.sum())
    if not total > 0:
        raise ValueError("critical direction is the zero vector")
    mirrored = power
    for axis in range(len(shape)):
        mirrored = np.roll(np.flip(mirrored, axis=axis), 1, axis=axis)
    pair = power + mirrored
    k_c = critical_mode_index(pair)
    unsigned = tuple(int(n % L) for n, L in zip(k_c, shape))
    members = {unsigned, _negated_index(unsigned, shape)}
    return k_c, float(sum(power[m] for m in members) / total)


def _fourier_basis(shape: tuple[int, ...]) -> np.ndarray:
    """Unit complex plane waves ``e_k(j) = exp(i k.j)/sqrt(d)`` as columns, ``k`` in ``numpy.fft`` order."""
    positions = np.indices(shape).reshape(len(shape), -1).T.astype(np.float64)
    k = lattice_wavevectors(shape).reshape(-1, len(shape))
    return np.exp(1j * positions @ k.T) / math.sqrt(positions.shape[0])


def _probe_kappa(jacobians: np.ndarray, basis: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``Re <e_k, J e_k>`` for a stack ``(..., d, d)`` of Jacobians: ``(..., *shape)``."""
    applied = jacobians @ basis
    values = np.einsum("jk,...jk->...k", basis.conj(), applied).real
    return values.reshape(jacobians.shape[:-2] + shape)


def _response_length(gamma: np.ndarray) -> np.ndarray:
    """Second-moment length of ``chi = 1/gamma`` per row ``(n_s, *lattice)``; NaN where some ``gamma <= 0``."""
    flat = gamma.reshape(gamma.shape[0], -1)
    ok = np.all(flat > 0, axis=1)
    out = np.full(gamma.shape[0], np.nan)
    if np.any(ok):
        out[ok] = second_moment_length(-np.log(gamma[ok]))
    return out


# --------------------------------------------------------------------------- critical search


def _find_crossing(
    kappa_max: Callable[[float], float], scan_s: np.ndarray, scan_kmax: np.ndarray
) -> tuple[str, float, list[str]]:
    """First crossing of ``kappa_max = 1`` as ``s`` decreases (brentq), else the maximal softening."""
    notes: list[str] = []
    above = np.flatnonzero(scan_kmax >= 1.0)
    if above.size:
        j = int(above[0])
        if j == 0:
            raise RuntimeError("kappa_max >= 1 at the top of the scan, above the proven stability bound")
        lo, hi = float(scan_s[j]), float(scan_s[j - 1])
        f_lo, f_hi = kappa_max(lo) - 1.0, kappa_max(hi) - 1.0
        if f_lo < 0.0 or f_hi >= 0.0:
            notes.append("crossing within rounding of a scan point; s_c taken at that point")
            return "critical", lo if f_lo >= 0.0 else hi, notes
        root = optimize.brentq(lambda v: kappa_max(v) - 1.0, lo, hi, xtol=1e-14, rtol=1e-13)
        return "critical", float(root), notes
    j = int(np.argmax(scan_kmax))
    if j == len(scan_s) - 1:
        notes.append("maximal softening at the low end of the noise grid; extend s_grid downwards")
    lo = math.log(scan_s[min(j + 1, len(scan_s) - 1)])
    hi = math.log(scan_s[max(j - 1, 0)])
    best = float(scan_s[j])
    if hi > lo:
        res = optimize.minimize_scalar(lambda u: -kappa_max(math.exp(u)), bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-6})
        if -res.fun > scan_kmax[j]:
            best = float(math.exp(res.x))
    return "pseudo-critical", best, notes


# --------------------------------------------------------------------------- dense (non-equivariant) models


class _DenseModel:
    """A model with a dense Jacobian ``J(y, s) = Cov[x_0 | y]/s^2`` on a lattice of ``d`` sites."""

    shape: tuple[int, ...]
    d: int
    scale: float  # root-mean-square pixel spread (sets grids and tolerances)
    symmetric: bool  # J symmetric (eigvalsh) or not (eigvals, real parts)
    start: np.ndarray  # D at infinite noise: where the mean trajectory starts
    scan_top: float  # proven: kappa_max < 1 at every state for s > scan_top
    no_transition_proved: bool = False

    def denoise(self, y: np.ndarray, s: float) -> np.ndarray:
        raise NotImplementedError

    def jacobian(self, y: np.ndarray, s: float) -> np.ndarray:
        raise NotImplementedError

    def moment_jacobian(self, s: float) -> np.ndarray:
        raise NotImplementedError

    def draw_states(self, gen: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def annealed(self, states: np.ndarray, s: float, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean Jacobian over ``states`` ``(n, d)`` and each state's Fourier probes ``(n, *shape)``."""
        jacobians = np.stack([self.jacobian(y, s) for y in states])
        return jacobians.mean(axis=0), _probe_kappa(jacobians, basis, self.shape)

    def top_eigen(self, matrix: np.ndarray) -> tuple[float, np.ndarray]:
        """Largest (real part of an) eigenvalue and its eigenvector."""
        if self.symmetric:
            values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
            return float(values[-1]), vectors[:, -1]
        values, vectors = np.linalg.eig(matrix)
        j = int(np.argmax(values.real))
        return float(values[j].real), vectors[:, j]


class _WindowMemorizing(_DenseModel):
    """The training set seen through a window at each position, without pooling.

    ``D_i(y) = sum_n w_{n,i} x_n(i)``, ``w_{n,i} ∝ exp(-|y[i+W] - x_n[i+W]|^2/2 s^2)``;
    ``offsets=None`` is the whole image (the memorizing denoiser, one weight per
    image). ``J_{i,j} = Cov_{w(i)}[x(i), x(j)]/s^2`` for ``j - i`` in ``W``, else 0.
    """

    def __init__(self, images: np.ndarray, offsets: np.ndarray | None) -> None:
        self.shape = tuple(images.shape[1:])
        self.d = int(np.prod(self.shape))
        self.mean = float(images.mean())
        self.X = np.ascontiguousarray(images.reshape(images.shape[0], -1) - self.mean)  # centred: one-pass
        # covariances below then lose only ~1e-16 max|x|^2 absolutely
        self.scale = float(images.std())
        self.offsets = offsets
        self.start = self.X.mean(axis=0)
        spread = float(images.max() - images.min())
        radius = float(np.sqrt(np.max(np.sum((self.X - self.start) ** 2, axis=1))))
        if offsets is None:
            self.symmetric = True
            # lambda_max(Cov_w) <= max_n |x_n - x_bar|^2 and <= d (range/2)^2 (Popoviciu per pixel)
            self.scan_top = 1.05 * min(radius, math.sqrt(self.d) * spread / 2.0)
            self.index = None
        else:
            self.symmetric = False
            # |kappa| <= max row sum of |J| <= |W| (range/2)^2 / s^2
            self.scan_top = 1.05 * math.sqrt(len(offsets)) * spread / 2.0
            positions = np.indices(self.shape).reshape(len(self.shape), -1).T
            sizes = np.array(self.shape)
            neighbours = (positions[:, None, :] + offsets[None, :, :]) % sizes
            self.index = np.ravel_multi_index(tuple(neighbours.transpose(2, 0, 1)), self.shape)  # (d, |W|)
            self.mask = np.zeros((self.d, self.d))
            self.mask[np.repeat(np.arange(self.d), self.index.shape[1]), self.index.ravel()] = 1.0
            # |y[i+W] - x_n[i+W]|^2 = box(x_n^2) - 2 box(x_n y) + box(y^2); the last term is the
            # same for every n and cancels in the softmax over n, the first is fixed
            self.box_sq = (self.X**2) @ self.mask.T

    def _weights(self, y: np.ndarray, s: float) -> np.ndarray:
        centred = y - self.mean
        if self.index is None:
            logits = -((self.X - centred) ** 2).sum(axis=1) / (2 * s * s)
            w = np.exp(logits - logits.max())
            return (w / w.sum())[:, None]  # (N, 1): the same weights at every pixel
        cross = self.X @ (centred[:, None] * self.mask.T)  # box(x_n y) at every pixel: (N, d)
        logits = (2.0 * cross - self.box_sq) / (2 * s * s)
        w = np.exp(logits - logits.max(axis=0))
        return w / w.sum(axis=0)

    def denoise(self, y: np.ndarray, s: float) -> np.ndarray:
        w = self._weights(y, s)
        return (w * self.X).sum(axis=0) + self.mean

    def _local_kernel(self, y: np.ndarray, s: float) -> np.ndarray:
        """``J_{i, i+r}`` of the local model as ``(d, |W|)``."""
        w = self._weights(y, s)
        mu = (w * self.X).sum(axis=0)  # E_i[x(i)]
        window_values = self._window_values  # (N, d, |W|): x_n(i + r)
        second = np.einsum("ni,ni,nir->ir", w, self.X, window_values)
        first = np.einsum("ni,nir->ir", w, window_values)
        return (second - mu[:, None] * first) / (s * s)

    def _dense_from_kernel(self, kernel: np.ndarray) -> np.ndarray:
        jac = np.zeros((self.d, self.d))
        # a window that fits the lattice has distinct sites, so plain assignment is exact
        jac[np.repeat(np.arange(self.d), self.index.shape[1]), self.index.ravel()] = kernel.ravel()
        return jac

    @property
    def _window_values(self) -> np.ndarray:
        cached = self.__dict__.get("_window_cache")
        if cached is None:
            cached = self.__dict__["_window_cache"] = np.ascontiguousarray(self.X[:, self.index])
        return cached

    def jacobian(self, y: np.ndarray, s: float) -> np.ndarray:
        if self.index is None:
            w = self._weights(y, s)[:, 0]
            mu = w @ self.X
            return ((self.X.T * w) @ self.X - np.outer(mu, mu)) / (s * s)
        return self._dense_from_kernel(self._local_kernel(y, s))

    def annealed(self, states: np.ndarray, s: float, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            # J_a = (X^T diag(w_a) X - mu_a mu_a^T)/s^2 is linear in the weights, so the mean needs
            # one product; probes <e_k, J_a e_k> = (w_a . |x_n(k)|^2 - |mu_a(k)|^2)/s^2 (unitary FFT)
            weights = np.stack([self._weights(y, s)[:, 0] for y in states])  # (n, N)
            mu = weights @ self.X
            mean_jac = ((self.X.T * weights.mean(axis=0)) @ self.X - mu.T @ mu / len(states)) / (s * s)
            mu_power = np.abs(np.fft.fftn(mu.reshape((-1,) + self.shape), axes=self._axes)) ** 2 / self.d
            probes = (weights @ self._image_power - mu_power.reshape(len(states), -1)) / (s * s)
            return mean_jac, probes.reshape((len(states),) + self.shape)
        kernels = np.stack([self._local_kernel(y, s) for y in states])  # (n, d, |W|)
        # |e_k(i)|^2 = 1/d: <e_k, J e_k> = sum_r (mean_i J_{i,i+r}) e^{i k.r}
        probes = kernel_fourier_eigenvalues(kernels.mean(axis=1), self.offsets, self.shape).real
        return self._dense_from_kernel(kernels.mean(axis=0)), probes

    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.shape) + 1))

    @property
    def _image_power(self) -> np.ndarray:
        cached = self.__dict__.get("_power_cache")
        if cached is None:
            fields = self.X.reshape((-1,) + self.shape)
            power = np.abs(np.fft.fftn(fields, axes=self._axes)) ** 2 / self.d
            cached = self.__dict__["_power_cache"] = power.reshape(self.X.shape[0], -1)
        return cached

    def moment_jacobian(self, s: float) -> np.ndarray:
        centred = self.X - self.start
        cov = centred.T @ centred / self.X.shape[0]
        if self.index is not None:
            cov = cov * self.mask
        return cov / (s * s)

    def draw_states(self, gen: np.random.Generator, n: int) -> np.ndarray:
        pick = gen.choice(self.X.shape[0], size=n, replace=n > self.X.shape[0])
        return self.X[pick] + self.mean


class _Mixture(_DenseModel):
    """Gaussian mixture ``sum_c pi_c N(m_c, v I)`` through :mod:`diffcrit.theory.mixture`."""

    symmetric = True

    def __init__(self, means: np.ndarray, variance: float, weights: np.ndarray, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.d = int(np.prod(shape))
        self.means = means
        self.v = variance
        self.pi = weights
        self.between = between_component_covariance(means, weights)
        self.start = weights @ means
        self.scale = float(np.sqrt(variance + np.trace(self.between) / self.d))
        # lambda_max(B_r) <= max_c |m_c - m_bar|^2 =: b; kappa < 1 iff lambda(B_r) < v + s^2
        spread = float(np.max(np.sum((means - self.start) ** 2, axis=1)))
        self.scan_top = 1.05 * math.sqrt(spread + variance)
        self.no_transition_proved = spread <= variance
        self.top_between = float(max(np.linalg.eigvalsh(self.between)[-1], 0.0))
        # equal |m_c - m_bar| (to rounding): y = m_bar is invariant with r = pi on it, and along it
        # kappa_max = v/(v + s^2) + s^2 lambda_max(B)/(v + s^2)^2 < 1 for every s iff lambda_max(B) <= v
        distances = np.sqrt(np.sum((means - self.start) ** 2, axis=1))
        symmetric = np.ptp(distances) <= 1e-12 * max(float(distances.max()), float(np.abs(means).max()), 1e-300)
        self.stable_symmetric_point = bool(symmetric and self.top_between <= variance)

    def denoise(self, y: np.ndarray, s: float) -> np.ndarray:
        return mixture_denoiser(y, s, self.means, self.v, self.pi)

    def jacobian(self, y: np.ndarray, s: float) -> np.ndarray:
        return mixture_jacobian(y, s, self.means, self.v, self.pi)

    def moment_jacobian(self, s: float) -> np.ndarray:
        total = self.v + s * s
        return self.v / total * np.eye(self.d) + s * s / total**2 * self.between

    def draw_states(self, gen: np.random.Generator, n: int) -> np.ndarray:
        component = gen.choice(len(self.pi), size=n, p=self.pi)
        return self.means[component] + math.sqrt(self.v) * gen.standard_normal((n, self.d))


def _mean_trajectory(
    model: _DenseModel, s0: float, s_end: float, factor: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Dense solution of ``dy/d ln s = f (y - D(y; s))`` from ``y(s0) = D(., oo)`` (the data mean)."""

    def rhs(ell: float, y: np.ndarray) -> np.ndarray:
        return factor * (y - model.denoise(y, math.exp(ell)))

    sol = solve_ivp(rhs, (math.log(s0), math.log(s_end)), model.start.copy(), method="DOP853", rtol=1e-10,
                    atol=1e-12 * max(model.scale, 1e-300), dense_output=True)
    if not sol.success:
        raise RuntimeError(f"mean trajectory integration failed: {sol.message}")
    if not np.all(np.isfinite(sol.y)):
        raise RuntimeError("mean trajectory produced non-finite values")

    def at(s: np.ndarray) -> np.ndarray:
        log_s = np.clip(np.log(np.asarray(s, dtype=np.float64)), math.log(s_end), math.log(s0))
        return np.asarray(sol.sol(log_s)).T

    return at


def _dense_theory(model: _DenseModel, level: str, grid: np.ndarray, dynamics: str, n_samples: int,
                  rng: Any) -> dict:
    """Critical search and curves for a dense model at one level."""
    notes: list[str] = []
    basis = _fourier_basis(model.shape)
    top = model.scan_top
    trajectory_field = None
    stderr = None
    if level == "moment":
        report_level = "moment"

        def jac_at(s: float) -> np.ndarray:
            return model.moment_jacobian(s)

        jac_grid = np.stack([jac_at(float(s)) for s in grid])
    elif level == "homogeneous":
        report_level = "mean-trajectory"
        # starting at the mean instead of on the trajectory (mean + a/s0^2 + ...) leaves an error that
        # the flow shrinks like s/s0, so ~a s/s0^3 further down: s0 = 1000 std makes it negligible
        s0 = max(1000.0 * model.scale, 10.0 * top, float(grid[0]))
        path = _mean_trajectory(model, s0, float(grid[-1]), 2.0 if dynamics == "sde" else 1.0)
        notes.append(f"reference: the mean trajectory from the data mean at s0 = {s0:.4g} "
                     f"({'reverse-SDE drift' if dynamics == 'sde' else 'probability flow'})")

        def jac_at(s: float) -> np.ndarray:
            return model.jacobian(path(np.array([s]))[0], s)

        fields = path(grid)
        trajectory_field = fields
        jac_grid = np.stack([model.jacobian(y, float(s)) for y, s in zip(fields, grid)])
    else:
        report_level = "marginal"
        gen = np.random.default_rng(rng)
        x0 = model.draw_states(gen, n_samples)
        eps = gen.standard_normal(x0.shape)

        def jac_at(s: float) -> np.ndarray:
            return model.annealed(x0 + s * eps, s, basis)[0]

        pairs = [model.annealed(x0 + float(s) * eps, float(s), basis) for s in grid]
        jac_grid = np.stack([pair[0] for pair in pairs])
        probes = np.stack([pair[1] for pair in pairs])  # (n_s, n, *shape)
        stderr = probes.std(axis=1, ddof=1) / math.sqrt(n_samples)
        notes.append(f"annealed Jacobian E[J(x0 + s eps)] from {n_samples} draws (common random numbers)")

    def kappa_max(s: float) -> float:
        return model.top_eigen(jac_at(s))[0]

    kmax_grid = np.array([model.top_eigen(j)[0] for j in jac_grid])
    kappa = _probe_kappa(jac_grid, basis, model.shape)
    if level == "moment":
        extra = np.empty(0)
    else:
        n_extra = max(2, int(math.ceil(_PER_DECADE_MARGINAL * math.log10(top / grid[0]))) + 1) if top > grid[0] else 0
        extra = np.geomspace(top, grid[0], n_extra)[:-1] if n_extra else np.empty(0)
    scan_s = np.concatenate([extra, grid])
    scan_k = np.concatenate([[kappa_max(float(s)) for s in extra], kmax_grid])

    symmetric_stable = level == "homogeneous" and getattr(model, "stable_symmetric_point", False)
    proved = model.no_transition_proved or symmetric_stable
    if level == "moment":
        # kappa_max(s) is known in closed form: s_c^2 = lambda_max(C_W), or lambda_max(B) - v
        if isinstance(model, _Mixture):
            excess = model.top_between - model.v
            proved = excess <= 0
            s_c = math.sqrt(excess) if excess > 0 else None
        else:
            top_c = model.top_eigen(model.moment_jacobian(1.0))[0]
            s_c = math.sqrt(top_c)
        kind = "no transition" if proved else "critical"
    elif proved:
        kind, s_c = "no transition", None
    else:
        kind, s_c, found = _find_crossing(kappa_max, scan_s, scan_k)
        notes += found
    if proved:
        if level == "moment":
            notes.append("no transition: lambda_max(B) <= v")
        elif model.no_transition_proved:
            notes.append("no transition: kappa_max < 1 at every state and noise level (max_c |m_c - m_bar|^2 <= v)")
        else:
            notes.append("no transition along the mean trajectory: it is the symmetric point y = m_bar, "
                         "where kappa_max < 1 for every s because lambda_max(B) <= v")
    if s_c is not None:
        k_at, vector = model.top_eigen(jac_at(s_c))
        k_c, weight = _dominant_fourier_mode(vector, model.shape)
        min_stiffness = 0.0 if kind == "critical" else 1.0 - k_at
        if kind == "critical":
            k_at = 1.0
    else:
        k_c, weight, k_at, min_stiffness = None, None, None, None
    trajectory = None if trajectory_field is None else trajectory_field.mean(axis=1)
    notes.append("xi_2 not computed: the linear fluctuation theory is stated for translation-equivariant models")
    return {
        "kind": kind, "level": report_level, "s_c": s_c, "k_c": k_c, "weight": weight, "kappa_at": k_at,
        "min_stiffness": min_stiffness, "lattice": model.shape, "s_grid": grid, "kappa_max": kmax_grid,
        "xi_J": _response_length(1.0 - kappa), "xi_2": None, "trajectory": trajectory, "kappa": kappa,
        "kappa_stderr": stderr,
        "trajectory_field": None if trajectory_field is None else trajectory_field.reshape((-1,) + model.shape),
        "notes": notes,
    }


def _dense_grid(model: _DenseModel, s_grid: np.ndarray | None, level: str) -> np.ndarray:
    if s_grid is not None:
        return s_grid
    per_decade = _PER_DECADE_MARGINAL if level == "marginal" else _PER_DECADE
    return _default_grid(model.scan_top, 0.02 * model.scale, per_decade)


# --------------------------------------------------------------------------- per model


def _fit_mixture(images: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, float, np.ndarray]:
    if labels is None:
        raise ValueError(
            "GaussianMixture() fits class means from labelled data, but the data have no labels; "
            "pass labelled data or GaussianMixture(means=..., variance=...)"
        )
    flat = images.reshape(images.shape[0], -1)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    means = np.stack([flat[inverse == c].mean(axis=0) for c in range(len(classes))])
    variance = float(np.mean((flat - means[inverse]) ** 2))
    if not variance > 0:
        raise ValueError("GaussianMixture: the pooled within-class variance of the data is 0 (every image "
                         "equals its class mean); use Memorizing() for point masses")
    return means, variance, counts / counts.sum()


def _check_dense_lattice(lattice: tuple[int, ...] | None, shape: tuple[int, ...], what: str) -> None:
    if lattice is not None and tuple(lattice) != tuple(shape):
        raise ValueError(
            f"lattice {tuple(lattice)} is not allowed for {what}: it is defined on the data's lattice "
            f"{tuple(shape)} only (use the default, or --size {shape[0]})"
        )


def _predict_gaussian(images: np.ndarray, lattice, s_grid, dynamics: str, level: str) -> dict:
    shape = tuple(images.shape[1:])
    _check_dense_lattice(lattice, shape, "the Gaussian field")
    spectrum = pooled_power_spectrum(images)
    p_max = float(spectrum.max())
    if s_grid is None:
        s_grid = _default_grid(10.0 * math.sqrt(p_max), 0.02 * float(images.std()), _PER_DECADE)
    kappa = gaussian_field_kappa(spectrum, s_grid)
    s_start = float(s_grid[0])
    if min(shape) >= 2:
        white = np.full(spectrum.shape, s_start**2)
        xi_2 = gaussian_field_correlation_length(spectrum, s_grid, s0=s_start, initial_structure_factor=white,
                                                 dynamics=dynamics)
    else:
        xi_2 = None
    notes = ["exact: J = P/(P + s^2) at every state, never unstable (kappa < 1)"]
    if level == "moment":
        notes.append("moment level requested: its kappa = P/s^2 is the high-noise limit of the exact result")
    notes.append(f"xi_2 from white noise of variance s^2 = {s_start:.4g}^2 at the top of the grid ({dynamics})")
    return {
        "kind": "crossover", "level": "exact", "s_c": math.sqrt(p_max), "k_c": critical_mode_index(spectrum),
        "weight": 1.0, "kappa_at": 0.5, "min_stiffness": 0.5, "lattice": shape, "s_grid": s_grid,
        "kappa_max": kappa.reshape(len(s_grid), -1).max(axis=1), "xi_J": _response_length(1.0 - kappa),
        "xi_2": xi_2, "trajectory": np.full(len(s_grid), float(images.mean())), "kappa": kappa,
        "kappa_stderr": None, "trajectory_field": None, "notes": notes,
    }


def _predict_patch(images: Any, window: int, level: str, lattice, s_grid, rng, dynamics: str,
                   n_samples: int, pixels_per_sample: int | None) -> dict:
    if isinstance(images, PatchStatistics):
        level_function = moment_level if level == "moment" else homogeneous_level
        result = level_function(images, lattice, s_grid, dynamics=dynamics)
    else:
        result = patch_theory(images, window, level=level, lattice=lattice, s_grid=s_grid, rng=rng,
                              dynamics=dynamics, n_samples=n_samples, pixels_per_sample=pixels_per_sample)
    kmax = result.kappa.reshape(len(result.s_grid), -1).max(axis=1)
    notes = list(result.notes)
    if level == "marginal":
        notes.append(f"annealed kernel from {n_samples} draws of x0 + s eps "
                     f"({'all' if pixels_per_sample is None else pixels_per_sample} pixels each)")
    return {
        "kind": result.kind, "level": result.level, "s_c": float(result.s_c), "k_c": tuple(result.k_c),
        "weight": 1.0, "kappa_at": float(result.kappa_c), "min_stiffness": float(result.min_stiffness),
        "lattice": tuple(result.lattice), "s_grid": result.s_grid, "kappa_max": kmax, "xi_J": result.xi_J,
        "xi_2": result.xi_2, "trajectory": result.trajectory_c, "kappa": result.kappa,
        "kappa_stderr": result.kappa_stderr, "trajectory_field": None, "notes": notes,
    }


# --------------------------------------------------------------------------- entry point


def _predict_from_statistics(stats: PatchStatistics, model: Any, sched: Schedule, level: str, lattice: Any,
                             grid: np.ndarray | None, dynamics: str) -> Prediction:
    """Precomputed patch statistics: the equivariant patch model at the moment or homogeneous level."""
    if not (isinstance(model, PatchModel) and model.mode == "equivariant" and model.conditional_on is None):
        raise ValueError("precomputed PatchStatistics serve only PatchModel(mode='equivariant') without "
                         f"conditional_on; got {model!r} (pass the images instead)")
    if level == "marginal":
        raise ValueError("the marginal level draws training images; pass the images, not PatchStatistics")
    extent = stats.offsets.max(axis=0) - stats.offsets.min(axis=0) + 1
    if stats.n_offsets != model.window**stats.dim or np.any(extent != model.window):
        raise ValueError(f"the statistics were built for a window of extent {extent.tolist()}, "
                         f"not the model's window {model.window}")
    lattice_shape = _lattice_shape(lattice, stats.dim)
    if model.window > min(lattice_shape or stats.data_shape):
        raise ValueError(f"window {model.window} is larger than the lattice {lattice_shape}")
    out = _predict_patch(stats, model.window, level, lattice_shape, grid, 0, dynamics, 2, None)
    description = {"name": "patch statistics", "n": stats.n_images, "shape": list(stats.data_shape),
                   "standardization": None, "spec": None}
    return _assemble_prediction(out, model.to_dict(), sched, level, description, dynamics, model)


def _schedule_clock(schedule: Schedule, s_grid: np.ndarray, s_c: float | None,
                    kind: str) -> tuple[float | None, float | None, bool, np.ndarray, str | None]:
    lo, hi = schedule.s_min * (1 - _RANGE_SLACK), schedule.s_max * (1 + _RANGE_SLACK)
    inside = (s_grid >= lo) & (s_grid <= hi)
    t_grid = np.full(s_grid.shape, np.nan)
    if np.any(inside):
        t_grid[inside] = np.clip(schedule.t_of_s(np.clip(s_grid[inside], schedule.s_min, schedule.s_max)),
                                 schedule.t_min, schedule.t_max)
    if s_c is None:
        return None, None, False, t_grid, None
    if not (lo <= s_c <= hi):
        side = "above" if s_c > hi else "below"
        return None, None, False, t_grid, (
            f"s_c = {s_c:.6g} lies {side} the noise range [{schedule.s_min:.6g}, {schedule.s_max:.6g}] of "
            f"{schedule.spec}: no {kind} time in this clock (not extrapolated)"
        )
    s_in = min(max(s_c, schedule.s_min), schedule.s_max)
    t_c = float(schedule.t_of_s(s_in))
    step = float(schedule.step_of_s(s_in)) if hasattr(schedule, "step_of_s") else None
    return t_c, step, True, t_grid, None


def _describe(kind: str, s_c: float | None, t_c: float | None, k_c, schedule: Schedule, k_at,
              range_note: str | None) -> str:
    if kind == "no transition":
        return "no transition: no mode can reach kappa = 1 (no critical noise, no critical time)"
    what = {"critical": f"mode k = {list(k_c)} reaches kappa = 1 at s_c",
            "pseudo-critical": f"no instability; maximal softening (kappa = {k_at:.4g}) of mode k = {list(k_c)} at s",
            "crossover": f"no instability; the slowest mode k = {list(k_c)} crosses kappa = 1/2 at s"}[kind]
    text = f"{kind}: {what} = {s_c:.6g}"
    if t_c is not None:
        return text + f", t = {t_c:.6g} in the clock of {schedule.spec}"
    return text + "; " + str(range_note)


def predict(
    data: Any,
    model: Any,
    schedule: Any = "vp-linear",
    level: str = "homogeneous",
    lattice: Any = None,
    s_grid: Any = None,
    rng: Any = 0,
    *,
    n_samples: int = 32,
    pixels_per_sample: int | None = 64,
    dynamics: str = "ode",
) -> Prediction:
    """Predict where the reverse dynamics of ``model`` trained on ``data`` lose stability.

    Args:
        data: a :class:`~diffcrit.data.Dataset`, an array ``(N, *lattice)``, a
            dataset spec string (loaded with global standardization), or
            precomputed :class:`~diffcrit.theory.patch_stats.PatchStatistics`
            (equivariant patch model, moment and homogeneous levels).
        model: :class:`GaussianField`, :class:`GaussianMixture`,
            :class:`Memorizing` or :class:`PatchModel`.
        schedule: schedule spec, mapping or :class:`~diffcrit.theory.schedules.Schedule`
            whose clock the times are given in.
        level: ``"moment"``, ``"homogeneous"`` (default) or ``"marginal"`` (see
            the module docstring for what each means per model).
        lattice: lattice side or shape of the ``k`` grid (equivariant patch model
            only; other models live on the data's lattice). Default: the images'.
        s_grid: noise levels for the curves (default: from a proven no-instability
            bound down to ``0.02`` times the pixel std; 40 per decade, 12 at the
            marginal level). The critical search always scans from that bound.
        rng: seed or generator of the Monte Carlo draws (marginal level).
        n_samples: Monte Carlo draws at the marginal level (>= 2).
        pixels_per_sample: pixels per draw at the marginal level of the equivariant
            patch model (None: all).
        dynamics: ``"ode"`` (probability flow) or ``"sde"`` (reverse SDE) for the
            linear fluctuation theory and the reference trajectory.

    Returns:
        :class:`Prediction`.

    Raises:
        ValueError, TypeError: bad input (checked before any heavy work).

    >>> x = np.array([[1.0, -1.0, 1.0, 1.0, -1.0, -1.0]])
    >>> p = predict(x, PatchModel(window=3), "ou", level="moment", s_grid=np.geomspace(3, 0.1, 20))
    >>> p.kind, round(p.critical_noise**2, 12), p.critical_mode   # s_c^2 = max_k S_W(k), at k = pi
    ('critical', 1.666666666667, (3,))
    >>> math.isclose(p.critical_time, 0.5 * math.log1p(p.critical_noise**2), rel_tol=1e-12)  # OU clock
    True
    """
    if not isinstance(model, (GaussianField, GaussianMixture, Memorizing, PatchModel)):
        raise TypeError(
            f"model must be GaussianField(), GaussianMixture(...), Memorizing() or PatchModel(...), got {model!r}"
        )
    level = _check_level(level)
    if dynamics not in _DYNAMICS:
        raise ValueError(f"dynamics must be one of {_DYNAMICS}, got {dynamics!r}")
    n_samples = _check_int("n_samples", n_samples, 2)
    if pixels_per_sample is not None:
        pixels_per_sample = _check_int("pixels_per_sample", pixels_per_sample, 1)
    sched = get_schedule(schedule)
    grid = _check_grid(s_grid)
    if isinstance(data, PatchStatistics):
        return _predict_from_statistics(data, model, sched, level, lattice, grid, dynamics)
    images, labels, description = _as_data(data)
    shape = tuple(images.shape[1:])
    lattice_shape = _lattice_shape(lattice, len(shape))
    model_dict = model.to_dict()

    if isinstance(model, PatchModel) and model.conditional_on is not None:
        if labels is None:
            raise ValueError(f"PatchModel(conditional_on={model.conditional_on}) needs labelled data; the data "
                             "have no labels")
        keep = labels == model.conditional_on
        if not np.any(keep):
            raise ValueError(f"conditional_on={model.conditional_on} is not a class of the data; "
                             f"classes: {sorted(set(int(v) for v in labels))}")
        images, labels = images[keep], labels[keep]
        description["n"] = int(images.shape[0])
    if not (isinstance(model, GaussianMixture) and not model.fitted):
        _require_variance(images)

    if isinstance(model, GaussianField):
        out = _predict_gaussian(images, lattice_shape, grid, dynamics, level)
    elif isinstance(model, PatchModel) and model.mode == "equivariant":
        target = lattice_shape or shape
        if model.window > min(target):
            raise ValueError(f"window {model.window} is larger than the lattice {target}; "
                             f"allowed: an odd window <= {min(target)}")
        out = _predict_patch(images, model.window, level, lattice_shape, grid, rng, dynamics, n_samples,
                             pixels_per_sample)
    else:
        if isinstance(model, GaussianMixture):
            _check_dense_lattice(lattice_shape, shape, "the Gaussian mixture")
            if model.fitted:
                means, variance, weights = _fit_mixture(images, labels)
                model_dict.update({"n_components": int(means.shape[0]), "variance": variance,
                                   "weights": weights.tolist()})
            else:
                means = model.means.reshape(model.means.shape[0], -1)
                if means.shape[1] != int(np.prod(shape)):
                    raise ValueError(f"GaussianMixture: means have {means.shape[1]} pixels, the data lattice "
                                     f"{shape} has {int(np.prod(shape))}")
                variance = model.variance
                weights = (np.full(means.shape[0], 1.0 / means.shape[0]) if model.weights is None
                           else np.asarray(model.weights))
            dense: _DenseModel = _Mixture(means, variance, weights, shape)
        else:
            window = None if isinstance(model, Memorizing) else model.window
            what = "the memorizing model" if window is None else f"the local patch model (window {window})"
            _check_dense_lattice(lattice_shape, shape, what)
            offsets = None
            if window is not None:
                if window > min(shape):
                    raise ValueError(f"window {window} is larger than the lattice {shape}; "
                                     f"allowed: an odd window <= {min(shape)}")
                offsets = square_window(window, len(shape))
                check_window_fits(offsets, shape)
            dense = _WindowMemorizing(images, offsets)
        out = _dense_theory(dense, level, _dense_grid(dense, grid, level), dynamics, n_samples, rng)

    return _assemble_prediction(out, model_dict, sched, level, description, dynamics, model)


def _assemble_prediction(out: dict, model_dict: dict, sched: Schedule, level: str, description: dict,
                         dynamics: str, model: Any) -> Prediction:
    s_grid_out = np.asarray(out["s_grid"], dtype=np.float64)
    kind, s_c = out["kind"], out["s_c"]
    t_c, step, inside, t_grid, range_note = _schedule_clock(sched, s_grid_out, s_c, kind)
    notes = list(out["notes"])
    if range_note is not None:
        notes.append(range_note)
    k_c = out["k_c"]
    lattice_out = tuple(out["lattice"])
    wavevector = None if k_c is None else tuple(2.0 * math.pi * n / L for n, L in zip(k_c, lattice_out))
    for name in ("kappa_max", "kappa"):
        if not np.all(np.isfinite(out[name])):
            raise RuntimeError(f"non-finite {name} in the {out['level']} theory of {model!r}")
    return Prediction(
        kind=kind, level=out["level"], requested_level=level, model=model_dict, schedule=sched,
        data=description, critical_noise=None if s_c is None else float(s_c), critical_time=t_c,
        critical_step=step, in_schedule_range=inside,
        message=_describe(kind, s_c, t_c, k_c, sched, out["kappa_at"], range_note),
        critical_mode=None if k_c is None else tuple(int(v) for v in k_c), critical_wavevector=wavevector,
        critical_mode_weight=out["weight"], kappa_at_critical=out["kappa_at"], min_stiffness=out["min_stiffness"],
        lattice=lattice_out, dynamics=dynamics, s_grid=s_grid_out, t_grid=t_grid,
        kappa_max=out["kappa_max"], gamma_min=1.0 - np.asarray(out["kappa_max"]), xi_J=out["xi_J"],
        xi_2=out["xi_2"], trajectory=out["trajectory"], kappa=out["kappa"], kappa_stderr=out["kappa_stderr"],
        trajectory_field=out["trajectory_field"], notes=tuple(notes),
    )
