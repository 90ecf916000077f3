"""Samplers of the reverse dynamics in the VE-equivalent variables.

Every schedule is reduced to ``y = x / alpha`` and ``s = sigma / alpha``
(THEORY.md 1), in which ``y_s = x_0 + s eps`` and the dynamics read

- probability-flow ODE: ``dy/ds = (y - D(y; s)) / s``;
- reverse SDE: ``dy = 2 (y - D)/s ds + sqrt(2 s |ds|) xi``, integrated from large
  ``s`` to small (``ds < 0``).

The samplers take a strictly decreasing grid ``s_0 > s_1 > ... > s_n >= 0`` (build
one with :func:`geometric_s_grid` or, in a schedule's own clock, with
:func:`s_grid_from_schedule`) and one step maps ``(y, s) -> (y', s')``. Every
stepper first evaluates ``D = D(y; s)`` (the driver passes it in, so observers
get it for free); writing ``r = s'/s``:

- **Euler** (``ORDER = 1``): ``y' = y + (s' - s) (y - D)/s``.
- **DDIM, eta = 0** (``ORDER = 1``): ``y' = D + r (y - D)``. In the VP variables
  DDIM reads ``x' = alpha' x0_hat + sigma' eps_hat`` with
  ``eps_hat = (x - alpha x0_hat)/sigma``; dividing by ``alpha'`` and using
  ``x/alpha = y``, ``sigma/alpha = s`` gives ``y' = D + s' (y - D)/s``, which is
  algebraically the Euler step above: **DDIM(eta=0) is Euler in s**, for every
  schedule (the schedule only sets the grid).
- **DDIM, eta > 0** (``ORDER = 1``, weak; Song, Meng & Ermon 2021, eq. 12 and 16):
  derived from the DDPM posterior (Ho, Jain & Abbeel 2020, eq. 6-7). In
  ``y`` the forward chain has independent increments, ``y_s = y_{s'} + sqrt(s^2 - s'^2) xi``,
  whatever the schedule, so ``q(y_{s'} | y_s, x_0) = N(x_0 + r^2 (y_s - x_0), c_1^2)``
  with ``c_1 = r sqrt(s^2 - s'^2)``. DDIM's family keeps the marginals and uses the
  noise ``c = eta c_1``: ``y' = D + sqrt(s'^2 - c^2)/s (y - D) + c z``, i.e.
  ``y' = D + r sqrt(1 - eta^2 + eta^2 r^2) (y - D) + eta r sqrt(s^2 - s'^2) z``.
  This is the VP formula ``sigma_eta = eta sqrt((1-abar')/(1-abar)) sqrt(1 - abar/abar')``
  divided by ``alpha'`` (``abar = 1/(1+s^2)``). ``eta = 1`` is the ancestral DDPM
  step; for small steps DDIM(eta) is the SDE
  ``dy = (1 + eta^2) (y - D)/s ds + eta sqrt(2 s |ds|) xi``, which has the same
  marginals for every ``eta`` (``eta = 1``: the reverse SDE).
- **Heun** (``ORDER = 2``), EDM-style (Karras et al. 2022, Alg. 1, no churn):
  Euler predictor, trapezoidal corrector with ``D(y_euler; s')``; the step to
  ``s' = 0`` is the Euler step (it returns ``D(y; s)``).
- **Euler–Maruyama** for the reverse SDE (weak ``ORDER = 1``):
  ``y' = y + 2 (s' - s)(y - D)/s + sqrt(2 s (s - s')) z``. The noise does not
  depend on ``y`` (it is additive in these variables), so Euler–Maruyama coincides
  with Milstein and its strong order is 1 (``STRONG_ORDER``), not the 1/2 of
  generic multiplicative noise.

**Final zero.** A grid may end with ``s_n = 0`` for Euler, DDIM and Heun: their
step to ``0`` is ``y' = D(y; s_{n-1})``, the posterior mean (the last Heun step is
then Euler). Euler–Maruyama refuses a final zero (its step to ``0`` would be
``2 D - y`` plus noise of variance ``2 s^2``: not a consistent step); use DDIM with
``eta = 1`` (the ancestral sampler) for a stochastic run that ends at ``s = 0``.

**Initial state.** By default ``y = mu + s_0 eps`` with ``mu`` the data mean
(the denoiser's ``mean`` attribute if it has one, else 0, or ``mean=``). In the
VE-equivalent variables the exact marginal at ``s_0`` is ``x_0 + s_0 eps``; putting
the data mean in place of ``x_0`` is a good approximation when ``s_0`` is much
larger than the data scale (the error is the data covariance against ``s_0^2``).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from diffcrit.numerics.denoisers import check_denoiser

__all__ = [
    "Sampler",
    "EulerSampler",
    "HeunSampler",
    "DDIMSampler",
    "EulerMaruyamaSampler",
    "METHODS",
    "get_sampler",
    "SamplingResult",
    "sample",
    "validate_s_grid",
    "geometric_s_grid",
    "s_grid_from_schedule",
    "insert_noise_levels",
]

DenoiseFn = Callable[[np.ndarray, float], np.ndarray]


# ------------------------------------------------------------------------- steppers


class Sampler:
    """One step ``(y, s) -> (y', s')`` of a sampler in the VE-equivalent variables.

    Class attributes:
        name: the method name used by :func:`sample`.
        ORDER: declared convergence order: global order for deterministic methods,
            weak order for stochastic ones (``ORDER_KIND``).
        ORDER_KIND: ``"global"`` or ``"weak"``.
        STOCHASTIC: whether a step consumes a standard-normal ``noise`` array.
        ALLOWS_FINAL_ZERO: whether the grid may end at ``s = 0``.
        CALLS_PER_STEP: denoiser evaluations per step besides ``D(y; s)``.
    """

    name = "sampler"
    ORDER: float = 1.0
    ORDER_KIND = "global"
    STOCHASTIC = False
    ALLOWS_FINAL_ZERO = True
    CALLS_PER_STEP = 0

    def needs_noise(self, s: float, s_next: float) -> bool:
        """Whether the step from ``s`` to ``s_next`` draws a standard normal."""
        return False

    def step(self, denoise: DenoiseFn, y: np.ndarray, s: float, s_next: float,
             denoised: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Return ``y'`` at ``s_next`` from ``y`` at ``s`` with ``denoised = D(y; s)``.

        Args:
            denoise: the denoiser ``D(y, s)`` (for the extra stages).
            y: state at ``s``.
            s: current noise level (> 0).
            s_next: next noise level (``0 <= s_next < s``).
            denoised: ``D(y; s)``.
            noise: standard normal array shaped like ``y`` (stochastic steps only).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerSampler(Sampler):
    """Euler in ``s`` on the probability-flow ODE: ``y' = y + (s' - s)(y - D)/s``."""

    name = "euler"
    ORDER = 1.0

    def step(self, denoise, y, s, s_next, denoised, noise=None):
        return y + (s_next - s) * ((y - denoised) / s)


class HeunSampler(Sampler):
    """Heun (EDM, 2nd order) on the probability-flow ODE; the step to ``s' = 0`` is Euler."""

    name = "heun"
    ORDER = 2.0
    CALLS_PER_STEP = 1

    def step(self, denoise, y, s, s_next, denoised, noise=None):
        slope = (y - denoised) / s
        y_euler = y + (s_next - s) * slope
        if s_next == 0.0:
            return y_euler
        slope_next = (y_euler - denoise(y_euler, s_next)) / s_next
        return y + (s_next - s) * (0.5 * (slope + slope_next))


class DDIMSampler(Sampler):
    """DDIM with ``eta`` in ``[0, 1]``, in the VE-equivalent form (module docstring).

    ``y' = D + r sqrt(1 - eta^2 + eta^2 r^2) (y - D) + eta r sqrt(s^2 - s'^2) z``,
    ``r = s'/s``. ``eta = 0``: deterministic, algebraically Euler in ``s``;
    ``eta = 1``: ancestral DDPM step. Order 1 (global for ``eta = 0``, weak else).
    """

    name = "ddim"
    ORDER = 1.0

    def __init__(self, eta: float = 0.0):
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta):
            raise TypeError(f"eta must be a real number in [0, 1], got {eta!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: ancestral DDPM), got {eta}")
        self.eta = float(eta)
        self.STOCHASTIC = self.eta > 0.0
        self.ORDER_KIND = "weak" if self.STOCHASTIC else "global"

    def needs_noise(self, s, s_next):
        return self.STOCHASTIC and s_next > 0.0

    def step(self, denoise, y, s, s_next, denoised, noise=None):
        ratio = s_next / s
        if not self.needs_noise(s, s_next):
            return denoised + ratio * (y - denoised)
        eta2 = self.eta * self.eta
        keep = ratio * math.sqrt(1.0 - eta2 + eta2 * ratio * ratio)
        noise_scale = self.eta * ratio * math.sqrt((s - s_next) * (s + s_next))
        return denoised + keep * (y - denoised) + noise_scale * noise

    def __repr__(self):
        return f"DDIMSampler(eta={self.eta})"


class EulerMaruyamaSampler(Sampler):
    """Euler–Maruyama on the reverse SDE ``dy = 2 (y - D)/s ds + sqrt(2 s |ds|) xi``.

    Weak order 1; strong order 1 as well, because the noise is additive in the
    VE-equivalent variables (Euler–Maruyama = Milstein). No final ``s = 0``.
    """

    name = "euler_maruyama"
    ORDER = 1.0
    ORDER_KIND = "weak"
    STRONG_ORDER = 1.0
    STOCHASTIC = True
    ALLOWS_FINAL_ZERO = False

    def needs_noise(self, s, s_next):
        return True

    def step(self, denoise, y, s, s_next, denoised, noise=None):
        drift = (2.0 * (s_next - s) / s) * (y - denoised)
        return y + drift + math.sqrt(2.0 * s * (s - s_next)) * noise


#: Method names accepted by :func:`sample` and :func:`get_sampler` (with aliases).
METHODS: dict[str, type[Sampler]] = {
    "euler": EulerSampler,
    "heun": HeunSampler,
    "ddim": DDIMSampler,
    "euler_maruyama": EulerMaruyamaSampler,
    "em": EulerMaruyamaSampler,
    "sde": EulerMaruyamaSampler,
}


def get_sampler(method: str | Sampler = "heun", eta: float | None = None) -> Sampler:
    """The stepper for a method name (``euler``, ``heun``, ``ddim``, ``euler_maruyama``/``em``/``sde``).

    Args:
        method: a name from :data:`METHODS` or a :class:`Sampler` instance.
        eta: DDIM's noise parameter in ``[0, 1]`` (default 0); only for ``ddim``.
    """
    if isinstance(method, Sampler):
        if eta is not None:
            raise ValueError("eta applies only to method='ddim' given by name; "
                             f"set it on the sampler instance instead (got method={method!r})")
        return method
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)} or a Sampler instance, got {method!r}")
    cls = METHODS[method.lower()]
    if cls is DDIMSampler:
        return DDIMSampler(0.0 if eta is None else eta)
    if eta is not None:
        raise ValueError(f"eta applies only to method='ddim', got eta={eta!r} with method={method!r}")
    return cls()


# --------------------------------------------------------------------------- grids


def validate_s_grid(s_grid: Any, *, allow_final_zero: bool = True, name: str = "s_grid") -> np.ndarray:
    """Return ``s_grid`` as a float64 array after checking it.

    A grid is 1-D, has at least two entries, is finite and strictly decreasing,
    with every entry > 0 except possibly the last, which may be 0 when
    ``allow_final_zero``.
    """
    try:
        grid = np.asarray(s_grid, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of noise levels, got {s_grid!r}") from exc
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError(f"{name} must be a 1-D array with at least 2 noise levels, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"{name} must be finite, got {grid}")
    steps = np.diff(grid)
    if np.any(steps >= 0):
        i = int(np.argmax(steps >= 0))
        raise ValueError(
            f"{name} must be strictly decreasing (high noise -> low); "
            f"entries {i} and {i + 1} are {float(grid[i])!r} and {float(grid[i + 1])!r}"
        )
    if np.any(grid[:-1] <= 0):
        raise ValueError(f"{name} must be > 0 except possibly its last entry, got minimum {float(grid[:-1].min())!r}")
    if grid[-1] < 0:
        raise ValueError(f"{name} must be >= 0, got last entry {float(grid[-1])!r}")
    if grid[-1] == 0 and not allow_final_zero:
        raise ValueError(
            f"{name} ends at s = 0, which this method does not allow (Euler–Maruyama's step "
            "to 0 is inconsistent); end at a small s > 0 or use method='ddim' with eta=1"
        )
    return grid


def geometric_s_grid(s_max: float, s_min: float, n_steps: int, *, final_zero: bool = False) -> np.ndarray:
    """``n_steps + 1`` noise levels equally spaced in ``ln s`` from ``s_max`` to ``s_min``.

    With ``final_zero`` a last level ``0`` is appended (one more step).

    >>> geometric_s_grid(100.0, 1.0, 2).round(12).tolist()
    [100.0, 10.0, 1.0]
    """
    for name, value in (("s_max", s_max), ("s_min", s_min)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not s_max > s_min:
        raise ValueError(f"s_max must be > s_min, got s_max={s_max}, s_min={s_min}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    grid = np.exp(np.linspace(math.log(s_max), math.log(s_min), int(n_steps) + 1))
    grid[0], grid[-1] = float(s_max), float(s_min)  # exact end points
    return np.append(grid, 0.0) if final_zero else grid


def s_grid_from_schedule(schedule: Any, n: int) -> np.ndarray:
    """The VE-equivalent grid ``s(t_i)`` of a schedule's own time grid.

    Args:
        schedule: an object with ``.grid(n)`` (times, high noise to low) and
            ``.s(t)``, e.g. from :func:`diffcrit.theory.schedules.get_schedule`; or a
            spec (``str``/``dict``) that is passed to ``get_schedule``.
        n: passed to ``schedule.grid(n)``.

    Returns:
        The strictly decreasing float64 array ``s(t)`` (it may end at 0).
    """
    if not (hasattr(schedule, "grid") and hasattr(schedule, "s")):
        if not isinstance(schedule, (str, Mapping)):
            raise TypeError(
                "schedule must have .grid(n) and .s(t) methods, or be a spec (str or dict) "
                f"for diffcrit.theory.schedules.get_schedule; got {schedule!r}"
            )
        from diffcrit.theory.schedules import get_schedule  # lazy: only when given a spec

        schedule = get_schedule(schedule)
    times = np.asarray(schedule.grid(n), dtype=np.float64)
    s_values = np.asarray(schedule.s(times), dtype=np.float64)
    return validate_s_grid(s_values, allow_final_zero=True, name=f"s grid of {schedule!r}")


def _insert_levels(grid: np.ndarray, levels: np.ndarray, rtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Merge ``levels`` into a decreasing ``grid``; return ``(new grid, index of each level)``.

    A level within ``rtol`` (relative) of an existing node replaces that node, so
    the returned grid contains every level exactly.
    """
    merged = grid.copy()
    replaced = np.zeros(len(grid), dtype=bool)
    extra = []
    for level in levels:
        close = np.isclose(merged, level, rtol=rtol, atol=0.0) & ~replaced
        if close.any():
            node = int(np.argmax(close))
            merged[node] = level
            replaced[node] = True
        else:
            extra.append(level)
    merged = np.sort(np.concatenate([merged, np.asarray(extra, dtype=np.float64)]))[::-1].copy()
    index = np.array([int(np.flatnonzero(merged == level)[0]) for level in levels], dtype=np.int64)
    return merged, index


def insert_noise_levels(s_grid: Any, s_values: Any) -> np.ndarray:
    """The grid ``s_grid`` with the noise levels ``s_values`` added (decreasing order).

    Use it to make a sampler step exactly onto given levels, e.g. the edges of a
    :func:`~diffcrit.numerics.denoisers.guidance_window`. A level within a relative
    ``1e-9`` of a grid node replaces that node. Levels must lie inside
    ``[s_grid[-1], s_grid[0]]`` and be > 0.
    """
    grid = validate_s_grid(s_grid)
    levels = _check_levels(s_values, grid, "s_values")
    return _insert_levels(grid, levels)[0]


def _check_levels(values: Any, grid: np.ndarray, name: str) -> np.ndarray:
    levels = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if levels.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array of noise levels, got shape {levels.shape}")
    bad = levels[~(np.isfinite(levels) & (levels > 0))]
    if bad.size:
        raise ValueError(f"{name} must be finite and > 0, got {bad.tolist()}")
    outside = levels[(levels > grid[0] * (1 + 1e-9)) | (levels < grid[-1] * (1 - 1e-9))]
    if outside.size:
        raise ValueError(
            f"{name} must lie inside the grid's range [{grid[-1]:.6g}, {grid[0]:.6g}], "
            f"got {outside.tolist()}"
        )
    return np.unique(levels)[::-1].copy()  # decreasing, the order of the run


# -------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class SamplingResult:
    """Outcome of :func:`sample`.

    Attributes:
        samples: final states ``(B, *shape)`` at ``s_grid[-1]``.
        s_grid: the grid that was integrated (observation levels included).
        method: the sampler's description.
        observed_s: noise levels at which observers were called (decreasing).
        observations: observer name -> array ``(len(observed_s), ...)`` of what it
            returned at each level.
        states: recorded states ``(len(recorded_s), B, *shape)`` or ``None``.
        recorded_s: noise levels of ``states`` or ``None``.
        n_denoiser_calls: number of denoiser evaluations (each on the whole batch).
        seed: the integer seed, when one was given.
        resumed_from_step: the step a checkpoint resumed from (0: a fresh run).
    """

    samples: np.ndarray
    s_grid: np.ndarray
    method: str
    observed_s: np.ndarray
    observations: dict[str, np.ndarray] = field(default_factory=dict)
    states: np.ndarray | None = None
    recorded_s: np.ndarray | None = None
    n_denoiser_calls: int = 0
    seed: int | None = None
    resumed_from_step: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (arrays kept as numpy arrays)."""
        return {
            "samples": self.samples,
            "s_grid": self.s_grid,
            "method": self.method,
            "observed_s": self.observed_s,
            "observations": dict(self.observations),
            "states": self.states,
            "recorded_s": self.recorded_s,
            "n_denoiser_calls": self.n_denoiser_calls,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        batch, *shape = self.samples.shape
        obs = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.observations.items()) or "none"
        rec = "none" if self.states is None else f"{len(self.states)} levels"
        return (
            f"SamplingResult(method={self.method}, batch={batch}, field_shape={tuple(shape)}, "
            f"steps={len(self.s_grid) - 1}, s={self.s_grid[0]:.4g}->{self.s_grid[-1]:.4g}, "
            f"denoiser_calls={self.n_denoiser_calls}, observed at {len(self.observed_s)} levels: {obs}; "
            f"recorded states: {rec})"
        )


def _normalize_observers(observers: Any) -> dict[str, Callable]:
    if observers is None:
        return {}
    if callable(observers):
        observers = [observers]
    if isinstance(observers, Mapping):
        items = list(observers.items())
        for key, _ in items:
            if not isinstance(key, str):
                raise TypeError(f"observers: names must be strings, got {key!r}")
    elif isinstance(observers, Sequence) and not isinstance(observers, (str, bytes)):
        items = []
        for i, obs in enumerate(observers):
            base = getattr(obs, "__name__", None) or type(obs).__name__
            name = base if base != "<lambda>" else f"observer_{i}"
            while name in dict(items):
                name = f"{name}_{i}"
            items.append((name, obs))
    else:
        raise TypeError(f"observers must be a callable, a sequence of callables or a mapping name -> callable, got {observers!r}")
    for name, obs in items:
        if not callable(obs):
            raise TypeError(f"observer {name!r} must be callable as observer(s, y_batch, denoised_batch), got {obs!r}")
    return dict(items)


def _resolve_rng(rng: Any) -> tuple[np.random.Generator, int | None]:
    if rng is None:
        return np.random.default_rng(), None
    if isinstance(rng, np.random.Generator):
        return rng, None
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"rng must be a numpy.random.Generator, an int seed >= 0 or None, got {rng!r}")
    if rng < 0:
        raise ValueError(f"rng seed must be >= 0, got {rng}")
    return np.random.default_rng(int(rng)), int(rng)


def _initial_state(denoiser: Any, init: Any, s0: float, mean: Any, dtype: Any,
                   gen: np.random.Generator) -> np.ndarray:
    field_shape = getattr(denoiser, "field_shape", None)
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype must be float64 or float32, got {dtype!r}") from exc
        if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if isinstance(init, np.ndarray):
        if dtype is None:
            dtype = init.dtype if init.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        y = np.array(init, dtype=dtype)  # a copy: the caller's array is never modified
        shape = y.shape
        if mean is not None:
            raise ValueError("mean is only used when init is a shape; an initial state was given")
    elif isinstance(init, (tuple, list)) and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in init):
        shape = tuple(int(a) for a in init)
        if any(a < 1 for a in shape):
            raise ValueError(f"init shape must have positive entries, got {shape}")
        y = None
    else:
        raise TypeError(f"init must be an initial state array (B, *shape) or a shape tuple (B, *shape), got {init!r}")
    if len(shape) < 2:
        raise ValueError(f"init must be (B, *field_shape) with a leading batch axis, got shape {shape}")
    if field_shape is not None and tuple(shape[1:]) != tuple(field_shape):
        raise ValueError(
            f"init has field shape {tuple(shape[1:])} but the denoiser expects {tuple(field_shape)} "
            f"(init must be (B, {', '.join(map(str, field_shape))}))"
        )
    if y is not None:
        if not np.all(np.isfinite(y)):
            raise ValueError("init (the initial state) must be finite")
        return y
    dtype = np.dtype(np.float64) if dtype is None else dtype
    if mean is None:
        mean = getattr(denoiser, "mean", 0.0)
    centre = np.asarray(mean, dtype=np.float64)
    try:
        centre = np.broadcast_to(centre, shape[1:])
    except ValueError as exc:
        raise ValueError(f"mean of shape {centre.shape} does not broadcast to the field shape {shape[1:]}") from exc
    eps = gen.standard_normal(shape)  # float64 whatever dtype: a float32 run starts from the same state, rounded
    return (centre + s0 * eps).astype(dtype, copy=False)


def _write_checkpoint(path: Any, payload: dict) -> None:
    """Pickle ``payload`` to ``path`` atomically (temporary sibling, then rename)."""
    import os
    import pickle
    import tempfile
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Any, fingerprint: dict) -> dict | None:
    """The saved run at ``path`` (``None`` if there is none); refuse one of another run."""
    import pickle
    from pathlib import Path

    source = Path(path)
    if not source.exists():
        return None
    with open(source, "rb") as handle:  # the package's own file, written by _write_checkpoint
        saved = pickle.load(handle)
    if not isinstance(saved, dict) or "fingerprint" not in saved:
        raise ValueError(f"checkpoint {str(source)!r} is not a sampler checkpoint; remove it or choose another path")
    differ = [k for k in fingerprint if saved["fingerprint"].get(k) != fingerprint[k]]
    if differ:
        raise ValueError(f"checkpoint {str(source)!r} belongs to another run (differs in {differ}); "
                         "remove it or choose another path")
    return saved


def sample(
    denoiser: Any,
    init: Any,
    s_grid: Any,
    method: str | Sampler = "heun",
    *,
    eta: float | None = None,
    rng: Any = None,
    observers: Any = None,
    observe_at: Any = None,
    progress: bool = True,
    record: str | None = None,
    mean: Any = None,
    dtype: Any = None,
    desc: str | None = None,
    observed_denoiser: Any = None,
    checkpoint: Any = None,
    checkpoint_every: float = 300.0,
    checkpoint_key: str = "",
) -> SamplingResult:
    """Integrate an ensemble of trajectories from ``s_grid[0]`` down to ``s_grid[-1]``.

    The whole batch ``(B, *shape)`` is advanced together (one denoiser call per
    stage). Observers are called at the requested noise levels, which are inserted
    into the grid so the sampler steps onto them exactly; what they return is
    stacked per level, so observables are tracked without storing trajectories.

    Args:
        denoiser: any callable ``D(y, s)`` (see :mod:`diffcrit.numerics.denoisers`).
        init: the initial state, an array ``(B, *shape)`` used as given (copied), or
            a shape tuple ``(B, *shape)``: then ``y = mean + s_grid[0] * eps``.
        s_grid: strictly decreasing noise levels (> 0; the last may be 0 except for
            Euler–Maruyama).
        method: ``"heun"`` (default), ``"euler"``, ``"ddim"``, ``"euler_maruyama"``
            (aliases ``"em"``, ``"sde"``) or a :class:`Sampler`.
        eta: DDIM's ``eta`` in ``[0, 1]`` (only with ``method="ddim"``).
        rng: numpy Generator or int seed; ``None``: fresh entropy. Draws, in this
            order: when ``init`` is a shape, the initial ``eps`` as one float64
            ``standard_normal((B, *shape))`` (also for a float32 state, which then
            starts from the float64 state rounded); then one ``standard_normal`` of the
            state's shape per stochastic step (none for deterministic steps nor for
            DDIM's step to ``s = 0``). A seed therefore gives bit-for-bit identical
            results.
        observers: a callable, a sequence of callables or a mapping name -> callable,
            each called as ``observer(s, y_batch, denoised_batch)`` with
            ``denoised_batch = D(y_batch; s)``, returning an array (or scalar).
        observe_at: noise levels (> 0, inside the grid's range) at which to call the
            observers; default: every positive node of ``s_grid``.
        progress: show a tqdm progress bar (on stderr).
        record: ``None`` (store nothing else), ``"observed"`` (store the states at
            the observation levels) or ``"all"`` (the state at every grid node).
        mean: centre of the default initial state (default: ``denoiser.mean`` if
            present, else 0).
        dtype: ``float64`` or ``float32`` state (default: the init array's, else
            ``float64``).
        desc: label of the progress bar.
        observed_denoiser: optional callable ``(y, s) -> D(y; s)`` used instead of
            ``denoiser`` for the evaluations at observation levels (exactly the
            states the observers see). It lets a model compute more in the same
            pass, e.g. the posterior moments a Jacobian observer reads, so the
            observation costs no separate denoiser call. It must return the
            denoiser's value.
        checkpoint: optional file path. The run's state (step, ensemble state,
            observations so far, random-generator state) is written there
            atomically every ``checkpoint_every`` seconds and at the end; if the
            file exists when ``sample`` is called, the run resumes from it, and the
            result is bit-for-bit that of an uninterrupted run (same thread count),
            provided the observers are functions of their arguments only.
        checkpoint_every: seconds of wall time between checkpoint writes (0: after
            every step).
        checkpoint_key: a string that identifies everything the checkpoint cannot
            see (the denoiser, the observers); a checkpoint written with another key,
            grid, method, initial state, dtype, seed or observer names is refused.

    Returns:
        A :class:`SamplingResult`.

    Raises:
        ValueError, TypeError: bad arguments, before any denoiser call.
        FloatingPointError: a NaN or inf appeared; the message names the step and
            the noise levels.
    """
    check_denoiser(denoiser)
    stepper = get_sampler(method, eta)
    grid = validate_s_grid(s_grid, allow_final_zero=stepper.ALLOWS_FINAL_ZERO)
    if record not in (None, "observed", "all"):
        raise ValueError(f"record must be None, 'observed' or 'all', got {record!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    named_observers = _normalize_observers(observers)
    if observed_denoiser is not None and not callable(observed_denoiser):
        raise TypeError(f"observed_denoiser must be a callable (y, s) -> D(y; s) or None, got {observed_denoiser!r}")
    if observe_at is None:
        levels = grid[grid > 0]
    else:
        levels = _check_levels(observe_at, grid, "observe_at")
    grid, level_index = _insert_levels(grid, levels)
    observe_nodes = set(level_index.tolist()) if (named_observers or record == "observed") else set()
    gen, seed = _resolve_rng(rng)
    y = _initial_state(denoiser, init, float(grid[0]), mean, dtype, gen)

    n_steps = len(grid) - 1
    calls = 0
    step_label = [0]  # the step in progress, for error messages
    label = stepper.name if not isinstance(stepper, DDIMSampler) else f"ddim(eta={stepper.eta:g})"

    def denoise(state: np.ndarray, s: float, observed: bool = False) -> np.ndarray:
        nonlocal calls
        calls += 1
        use = observed_denoiser if (observed and observed_denoiser is not None) else denoiser
        out = np.asarray(use(state, s))
        if out.shape != state.shape:
            raise ValueError(
                f"denoiser returned shape {out.shape} for a state of shape {state.shape} at s={s:.6g}; "
                "a denoiser must return an array shaped like its input"
            )
        if not np.all(np.isfinite(out)):
            kind = "nan" if np.isnan(out).any() else "inf"
            raise FloatingPointError(
                f"denoiser returned non-finite values ({kind}) at noise level s={s:.6g} "
                f"(step {step_label[0]} of {n_steps}, method {label})"
            )
        return out.astype(state.dtype, copy=False)

    observations: dict[str, list] = {name: [] for name in named_observers}
    observed_s: list[float] = []
    states: list[np.ndarray] = []
    recorded_s: list[float] = []
    fingerprint = None
    start_step, resumed_denoised = 0, None
    if checkpoint is not None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, numbers.Real) \
                or not checkpoint_every >= 0:
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
        if not isinstance(checkpoint_key, str):
            raise TypeError(f"checkpoint_key must be a string, got {checkpoint_key!r}")
        import hashlib

        fingerprint = {"grid": grid.tolist(), "method": label, "shape": list(y.shape), "dtype": y.dtype.name,
                       "seed": seed, "observers": sorted(named_observers), "record": record, "key": checkpoint_key,
                       "initial_state": hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()}
        saved = _load_checkpoint(checkpoint, fingerprint)
        if saved is not None:
            start_step, y, resumed_denoised, calls = saved["step"], saved["y"], saved["denoised"], saved["calls"]
            gen.bit_generator.state = saved["rng_state"]
            observations = saved["observations"]
            observed_s, states, recorded_s = saved["observed_s"], saved["states"], saved["recorded_s"]
    last_save = time.perf_counter()

    def save(step: int, state: np.ndarray, denoised_now: np.ndarray | None) -> None:
        _write_checkpoint(checkpoint, {
            "fingerprint": fingerprint, "step": step, "y": state, "denoised": denoised_now, "calls": calls,
            "rng_state": gen.bit_generator.state, "observations": observations, "observed_s": observed_s,
            "states": states, "recorded_s": recorded_s})

    def visit(node: int, state: np.ndarray, denoised: np.ndarray | None) -> None:
        s = float(grid[node])
        if node in observe_nodes:
            if denoised is None:
                denoised = denoise(state, s, observed=True)
            observed_s.append(s)
            for name, obs in named_observers.items():
                observations[name].append(np.asarray(obs(s, state, denoised)))
            if record == "observed":
                states.append(state.copy())
                recorded_s.append(s)
        if record == "all":
            states.append(state.copy())
            recorded_s.append(s)

    bar = tqdm(total=n_steps, initial=start_step, disable=not progress, desc=desc or f"sample [{label}]",
               unit="step", leave=False)
    try:
        if start_step == 0:
            denoised = denoise(y, float(grid[0]), observed=0 in observe_nodes)
        else:
            denoised = resumed_denoised
        for i in range(start_step, n_steps):
            s, s_next = float(grid[i]), float(grid[i + 1])
            step_label[0] = i + 1
            visit(i, y, denoised)
            noise = gen.standard_normal(y.shape, dtype=y.dtype) if stepper.needs_noise(s, s_next) else None
            # overflow is reported below with the step and noise levels, not as a warning
            with np.errstate(over="ignore", invalid="ignore"):
                y = np.asarray(stepper.step(denoise, y, s, s_next, denoised, noise), dtype=y.dtype)
            if not np.all(np.isfinite(y)):
                kind = "nan" if np.isnan(y).any() else "inf"
                raise FloatingPointError(
                    f"non-finite values ({kind}) in the state after step {i + 1} of {n_steps} "
                    f"(method {label}, from s={s:.6g} to s={s_next:.6g})"
                )
            more = i + 1 < n_steps
            denoised = denoise(y, s_next, observed=(i + 1) in observe_nodes) if (more and s_next > 0) else None
            bar.update(1)
            if checkpoint is not None and (more and time.perf_counter() - last_save >= checkpoint_every):
                save(i + 1, y, denoised)
                last_save = time.perf_counter()
        step_label[0] = n_steps
        if start_step < n_steps:  # a finished checkpoint already holds the last node's observations
            visit(n_steps, y, denoised)
        if checkpoint is not None:
            save(n_steps, y, None)
    finally:
        bar.close()

    stacked = {}
    for name, values in observations.items():
        try:
            stacked[name] = np.stack(values) if values else np.empty((0,))
        except ValueError as exc:
            shapes = sorted({v.shape for v in values})
            raise ValueError(f"observer {name!r} returned arrays of different shapes {shapes}; "
                             "it must return the same shape at every noise level") from exc
    return SamplingResult(
        samples=y,
        s_grid=grid,
        method=label,
        observed_s=np.asarray(observed_s, dtype=np.float64),
        observations=stacked,
        states=np.stack(states) if states else None,
        recorded_s=np.asarray(recorded_s, dtype=np.float64) if states else None,
        n_denoiser_calls=calls,
        seed=seed,
        resumed_from_step=start_step,
    )
