"""Noise schedules, reduced to the VE-equivalent noise level ``s`` (THEORY.md 1).

Forward process ``x_t = alpha(t) x_0 + sigma(t) eps``. Every schedule acts on
``y = x/alpha`` as ``y = x_0 + s eps`` with the **VE-equivalent noise level**

    s(t) = sigma(t) / alpha(t),   log-SNR  lambda = -2 ln s,   alpha_bar = 1 / (1 + s^2),

so a critical noise level ``s_c`` reads ``t_c = s^{-1}(s_c)`` in any schedule's own
clock. Each family is written once symbolically (sympy, in the positive symbol
:data:`TIME` and positive parameter symbols); ``s``, log-SNR, ``alpha_bar`` and the
inverse ``t(s)`` are *derived* from ``alpha`` and ``sigma`` by sympy, and the numeric
methods are generated from those same expressions by
:func:`diffcrit.theory.bridge.to_numeric`.

Families (``get_schedule(name)``; defaults in brackets):

- ``"ve"``: ``alpha = 1``, ``s = s_min (s_max/s_min)^t``, ``t in [0, 1]``
  [``s_min=0.002, s_max=80``]. Song et al. (2021), "Score-based generative
  modeling through SDEs", VE SDE.
- ``"edm"``: ``alpha = 1``, ``sigma = t``, ``t in [s_min, s_max]``, Karras
  rho-grid [``s_min=0.002, s_max=80, rho=7``]. Karras et al. (2022), "Elucidating
  the design space", eq. 5.
- ``"vp-linear"``: ``beta(t) = beta_min + t (beta_max - beta_min)``,
  ``alpha = exp(-1/2 int_0^t beta)``, ``sigma = sqrt(1 - alpha^2)``, ``t in [t_min, 1]``
  [``beta_min=0.1, beta_max=20, t_min=0.001``]. Song et al. (2021), VP SDE.
  ``t_min = 1e-3`` is the sampling cut-off of that paper, and equals ``1/T`` for
  the DDPM discretization with ``T = 1000``, whose first step ``i = 0`` sits at
  ``t = 1/T`` in the convention below: the two schedules then start at the same
  ``s`` (about 0.0105) up to the discretization error.
- ``"ddpm"``: discrete VP, ``betas = linspace(beta_start, beta_end, T)``,
  ``alpha_bar_i = prod_{j<=i} (1 - beta_j)``, steps ``i = 0 .. T-1`` (``T-1``
  noisiest) [``T=1000, beta_start=1e-4, beta_end=0.02``]. Ho et al. (2020).
  Clock convention: ``t = (i + 1)/T`` (step ``i`` has applied ``i + 1`` noising
  steps, so ``t`` is the fraction of the forward chain done and ``t = 1`` is the
  noisiest step). Between steps, ``log s`` is interpolated linearly in the
  (fractional) step, which is monotone and exact on the grid.
  Its continuous counterpart is ``"vp-linear"`` with ``beta_min = T beta_start``,
  ``beta_max = T beta_end`` (:meth:`DDPMSchedule.continuous_counterpart`).
- ``"vp-cosine"``: ``alpha_bar = f(t)/f(0)``, ``f(t) = cos^2(((t + offset)/(1 +
  offset)) pi/2)``, ``t in [t_min, t_max]`` [``offset=0.008, t_min=0.001,
  t_max=0.9946``]. Nichol & Dhariwal (2021), eq. 17. ``s`` diverges like
  ``1/(1 - t)`` at ``t = 1``, so the domain stops short of it instead of clipping
  ``alpha_bar`` (clipping would make ``s(t)`` flat, hence not invertible).
  ``t_max = 0.9946`` gives ``s_max`` about 119 (log-SNR about -9.6), inside the
  range the other defaults span (80 for VE/EDM, about 152 for vp-linear, about
  157 for ddpm), while ``d ln s / dt`` stays below 200 so the clock is well
  conditioned. ``t_min = 0.001`` as for vp-linear (``s(0) = 0``).
- ``"ou"``: ``alpha = e^{-t}``, ``sigma^2 = 1 - e^{-2t}``, so ``s = sqrt(e^{2t} - 1)``,
  ``t(s) = 1/2 ln(1 + s^2)``, ``t in [t_min, t_max]`` [``t_min=1e-4, t_max=5``].
  ``t_min = 1e-4`` gives ``s_min`` about 0.014, the low end of the VP defaults;
  ``t_max = 5`` gives ``s_max`` about 148, the high end.

Numerics: ``s``, log-SNR and ``alpha_bar`` keep full relative precision down to
``t_min`` (``expm1``/``log1p`` rewrites in the bridge, and for the cosine family a
sum-to-product form of ``f(0) - f(t)`` derived with sympy's ``fu`` rules).
Inverses use the closed form ``t(s)`` that sympy's ``solve`` derives (the real branch
inside the domain is picked by high-precision evaluation), refined by two Newton
steps on ``ln s(t)``, so their accuracy is that of the forward map. Where no closed
form exists the vectorised bracketed root finder :func:`invert_monotone` is used.
Inverse inputs within a relative ``1e-12`` of the ends of their range (rounding of
the forward map) are accepted and clipped into it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy as sp
from sympy.simplify.fu import TR8, TR9

from diffcrit.theory.bridge import to_numeric

__all__ = [
    "TIME",
    "NOISE",
    "Schedule",
    "VESchedule",
    "EDMSchedule",
    "VPLinearSchedule",
    "DDPMSchedule",
    "VPCosineSchedule",
    "OUSchedule",
    "SCHEDULES",
    "get_schedule",
    "list_schedules",
    "schedule_table",
    "invert_monotone",
]

#: The time symbol of every schedule expression (positive: simplification may use it;
#: the VE domain includes ``t = 0``, where all its expressions are continuous).
TIME = sp.Symbol("t", positive=True)
#: The VE-equivalent noise level symbol.
NOISE = sp.Symbol("s", positive=True)

_EPS = float(np.finfo(np.float64).eps)
# Relative slack for inverse inputs at the ends of their range: the forward map
# rounds (a few ulp), so s(t_max) may exceed the stored s_max by ~1e-16 relative.
_RANGE_SLACK = 1e-12
# Number of Newton refinements of a closed-form inverse; one suffices when the
# closed form is accurate to ~1e-8 (quadratic convergence), the second is a margin.
_NEWTON_STEPS = 2

_SYMBOLIC: dict[tuple[type, str], Any] = {}
_NUMERIC: dict[tuple[type, str], Callable[..., Any]] = {}
_BRANCH: dict[tuple[type, tuple[Any, ...]], Any] = {}
_TABLES: dict[tuple[int, float, float], dict[str, np.ndarray]] = {}


# --------------------------------------------------------------------------- helpers


def _exact(value: float | int) -> sp.Rational:
    """Exact sympy number for a parameter: integers stay integers, floats become the
    rational of their shortest decimal repr (``0.008 -> 1/125``)."""
    if isinstance(value, (int, np.integer)):
        return sp.Integer(int(value))
    return sp.Rational(repr(float(value)))


def _format_value(value: float | int) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _as_array(name: str, value: Any) -> np.ndarray:
    """float64 array of ``value``; TypeError if not numeric, ValueError on NaN."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from err
    if np.isnan(arr).any():
        where = np.argwhere(np.isnan(arr))[0].tolist() if arr.ndim else []
        raise ValueError(f"{name} contains NaN (first at index {where}); NaN is not allowed")
    return arr


def _out(arr: np.ndarray) -> Any:
    arr = np.asarray(arr, dtype=np.float64)
    return arr[()] if arr.ndim == 0 else arr


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> float:
    return float(arr[bad].ravel()[0]) if arr.ndim else float(arr)


def invert_monotone(
    func: Callable[[np.ndarray], np.ndarray],
    target: Any,
    lo: float,
    hi: float,
    *,
    increasing: bool = True,
    max_iter: int = 2200,
) -> Any:
    """Solve ``func(x) = target`` for ``x in [lo, hi]``, vectorised over ``target``.

    Bracketed bisection on a monotone ``func``: every element keeps a bracket
    ``[a, b]`` that contains its root and halves it until ``b - a <= 4 eps
    max(|a|, |b|)`` (relative accuracy about ``2 eps`` in ``x``, limited only by the
    rounding of ``func`` itself) or the bracket stops shrinking. Targets outside
    ``[func(lo), func(hi)]`` return the nearer end.

    Args:
        func: vectorised monotone function of ``x``.
        target: value(s) to invert.
        lo: lower end of the bracket.
        hi: upper end of the bracket (``> lo``).
        increasing: whether ``func`` increases with ``x``.
        max_iter: safety bound on the number of halvings (a float64 bracket cannot
            be halved more than about 2100 times).

    Returns:
        ``x`` with the shape of ``target`` (numpy scalar for scalar input).

    >>> x = invert_monotone(np.exp, np.array([1.0, np.e]), 0.0, 5.0)
    >>> np.allclose(x, [0.0, 1.0], rtol=0, atol=1e-15)
    True
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bracket must satisfy finite lo < hi, got lo={lo!r}, hi={hi!r}")
    y = _as_array("target", target)
    a = np.full(y.shape, float(lo))
    b = np.full(y.shape, float(hi))
    sign = 1.0 if increasing else -1.0
    active = np.ones(y.shape, dtype=bool)
    for _ in range(max_iter):
        width = b - a
        active &= width > 4 * _EPS * np.maximum(np.abs(a), np.abs(b))
        if not active.any():
            break
        mid = a + 0.5 * width
        stuck = (mid <= a) | (mid >= b)
        active &= ~stuck
        below = sign * (np.asarray(func(mid), dtype=np.float64) - y) < 0
        a = np.where(active & below, mid, a)
        b = np.where(active & ~below, mid, b)
    return _out(a + 0.5 * (b - a))


def _compensated_cumsum(terms: np.ndarray) -> np.ndarray:
    """Running sums with Neumaier compensation: error ~1 ulp of each partial sum
    instead of ~n ulp for ``np.cumsum`` (matters after ``exp``: ``alpha_bar =
    exp(-L)`` turns an absolute error in ``L ~ 10`` into a relative one)."""
    out = np.empty(len(terms))
    total, carry = 0.0, 0.0
    for i, term in enumerate(terms.tolist()):
        new = total + term
        if abs(total) >= abs(term):
            carry += (total - new) + term
        else:
            carry += (term - new) + total
        total = new
        out[i] = total + carry
    return out


# --------------------------------------------------------------------------- base


@dataclass(frozen=True, repr=False)
class Schedule:
    """A noise schedule ``t -> (alpha, sigma)``, reduced to ``s = sigma/alpha``.

    Subclasses are frozen dataclasses whose fields are the family's parameters.
    Attributes common to all: ``name``, ``params``, ``t_min``, ``t_max``,
    ``discrete``, ``spec``, ``s_min``, ``s_max``.
    """

    name: ClassVar[str] = ""
    discrete: ClassVar[bool] = False
    #: parameters that must be integers
    _int_params: ClassVar[tuple[str, ...]] = ()
    #: parameters that appear in the formulas (the rest only set the domain)
    _formula_params: ClassVar[tuple[str, ...]] = ()

    # ---- construction and validation

    def __post_init__(self) -> None:
        if type(self) is Schedule:
            raise TypeError(f"Schedule is abstract; use one of {list(SCHEDULES)} (get_schedule)")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            numeric = isinstance(value, (int, float, np.integer, np.floating))
            if isinstance(value, bool) or not numeric:
                raise TypeError(
                    f"{self.name}: parameter {f.name} must be a number, got {value!r}"
                )
            if f.name in self._int_params:
                if float(value) != int(value):
                    raise ValueError(
                        f"{self.name}: parameter {f.name}={value!r} must be an integer"
                    )
                value = int(value)
            else:
                value = float(value)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"{self.name}: parameter {f.name}={value!r} is not allowed; "
                    f"it must be finite and > 0"
                )
            object.__setattr__(self, f.name, value)
        self._validate()
        s_lo, s_hi = self.s_min, self.s_max
        if not (math.isfinite(s_lo) and math.isfinite(s_hi) and 0 < s_lo < s_hi):
            raise ValueError(
                f"{self.name}: parameters {self.params} give the noise range "
                f"s in [{s_lo!r}, {s_hi!r}], which is not a finite positive interval; "
                f"choose a smaller time domain"
            )

    def _validate(self) -> None:
        """Family-specific parameter checks (raise ValueError)."""

    def _require_less(self, low: str, high: str) -> None:
        lv, hv = getattr(self, low), getattr(self, high)
        if not lv < hv:
            raise ValueError(
                f"{self.name}: {low}={lv!r} must be < {high}={hv!r} "
                f"(allowed: 0 < {low} < {high})"
            )

    # ---- descriptive properties

    @property
    def params(self) -> dict[str, float | int]:
        """The family's parameters, in canonical order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def spec(self) -> str:
        """Canonical string, e.g. ``"vp-linear:beta_min=0.1,beta_max=20,t_min=0.001"``;
        ``get_schedule(sched.spec) == sched``."""
        body = ",".join(f"{k}={_format_value(v)}" for k, v in self.params.items())
        return f"{self.name}:{body}" if body else self.name

    @property
    def t_min(self) -> float:
        """Lower end of the time domain (lowest noise)."""
        raise NotImplementedError

    @property
    def t_max(self) -> float:
        """Upper end of the time domain (highest noise)."""
        raise NotImplementedError

    @functools.cached_property
    def s_min(self) -> float:
        """Smallest VE-equivalent noise level on the domain, ``s(t_min)``."""
        return float(self._eval("s", np.asarray(self.t_min)))

    @functools.cached_property
    def s_max(self) -> float:
        """Largest VE-equivalent noise level on the domain, ``s(t_max)``."""
        return float(self._eval("s", np.asarray(self.t_max)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.spec!r}; t in [{self.t_min:.6g}, {self.t_max:.6g}], "
            f"s in [{self.s_min:.6g}, {self.s_max:.6g}])"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (name, spec, params, domain, noise range)."""
        out: dict[str, Any] = {
            "name": self.name,
            "spec": self.spec,
            "params": self.params,
            "discrete": self.discrete,
            "t_min": float(self.t_min),
            "t_max": float(self.t_max),
            "s_min": self.s_min,
            "s_max": self.s_max,
        }
        return out

    # ---- symbolic layer (class-level, parameters as positive symbols)

    @classmethod
    def _param_symbol(cls, name: str) -> sp.Symbol:
        if name in cls._int_params:
            return sp.Symbol(name, integer=True, positive=True)
        return sp.Symbol(name, positive=True)

    @classmethod
    def _param_symbols(cls) -> tuple[sp.Symbol, ...]:
        return tuple(cls._param_symbol(n) for n in cls._formula_params)

    @classmethod
    def _sym(cls, quantity: str) -> Any:
        """Derived generic expression (parameters symbolic), cached per class."""
        key = (cls, quantity)
        if key not in _SYMBOLIC:
            _SYMBOLIC[key] = getattr(cls, "_derive_" + quantity)()
        return _SYMBOLIC[key]

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        raise NotImplementedError

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        raise NotImplementedError

    @classmethod
    def _derive_s2(cls) -> sp.Expr:
        # s^2 = sigma^2/alpha^2 (both positive), the form used for inversion
        return sp.powsimp(sp.expand(cls._sym("sigma") ** 2 / cls._sym("alpha") ** 2))

    @classmethod
    def _derive_s2_stable(cls) -> sp.Expr:
        # the form evaluated numerically; families with cancellation override it
        return cls._sym("s2")

    @classmethod
    def _derive_s(cls) -> sp.Expr:
        return sp.sqrt(cls._sym("s2_stable"))

    @classmethod
    def _derive_log_snr(cls) -> sp.Expr:
        return sp.expand_log(-sp.log(cls._sym("s2_stable")), force=False)

    @classmethod
    def _derive_alpha_bar(cls) -> sp.Expr:
        # alpha_bar = 1/(1 + s^2) = alpha^2/(alpha^2 + sigma^2)
        alpha, sigma = cls._sym("alpha"), cls._sym("sigma")
        return sp.powsimp(alpha**2 / (alpha**2 + sigma**2))

    @classmethod
    def _derive_sigma_numeric(cls) -> sp.Expr:
        # sigma = alpha s: free of the cancellation in sqrt(1 - alpha^2) at small t
        return cls._sym("alpha") * cls._sym("s")

    @classmethod
    def _derive_dlogs_dt(cls) -> sp.Expr:
        return sp.diff(sp.log(cls._sym("s2_stable")), TIME) / 2

    @classmethod
    def _derive_inverse_candidates(cls) -> list[sp.Expr]:
        """All solutions ``t(s)`` of ``s(t)^2 = s^2`` that sympy finds (any branch)."""
        x, y = sp.Dummy("x"), sp.Dummy("y")
        equation = cls._sym("s2").subs(TIME, x) - y
        try:
            # simplify=False/check=False: the default post-processing can run for
            # minutes on exp-of-polynomial equations; branches are checked below.
            roots = sp.solve(equation, x, check=False, simplify=False)
        except (NotImplementedError, ValueError):
            return []
        # expand_log: log(sqrt(1 + s^2)) -> log(1 + s^2)/2, which the bridge turns
        # into log1p
        return [sp.expand_log(r.subs(y, NOISE**2), force=False) for r in roots if not r.has(sp.I)]

    # ---- instance symbolic API

    def _subs(self, expr: sp.Expr) -> sp.Expr:
        return expr.xreplace(
            {self._param_symbol(n): _exact(getattr(self, n)) for n in self._formula_params}
        )

    def alpha_expr(self) -> sp.Expr:
        """Signal scale ``alpha(t)`` (sympy, in :data:`TIME`).

        >>> get_schedule("ou").alpha_expr()
        exp(-t)
        """
        return self._subs(self._sym("alpha"))

    def sigma_expr(self) -> sp.Expr:
        """Noise scale ``sigma(t)`` (sympy, in :data:`TIME`).

        >>> get_schedule("ou").sigma_expr()
        sqrt(1 - exp(-2*t))
        """
        return self._subs(self._sym("sigma"))

    def s_expr(self) -> sp.Expr:
        """VE-equivalent noise ``s(t) = sigma/alpha``, derived by sympy.

        >>> get_schedule("ou").s_expr()
        sqrt(exp(2*t) - 1)
        """
        return self._subs(self._sym("s"))

    def log_snr_expr(self) -> sp.Expr:
        """Log-SNR ``lambda(t) = -2 ln s(t)``.

        >>> get_schedule("ou").log_snr_expr()
        -log(exp(2*t) - 1)
        """
        return self._subs(self._sym("log_snr"))

    def alpha_bar_expr(self) -> sp.Expr:
        """``alpha_bar(t) = 1/(1 + s^2)`` (``= alpha^2`` for VP families).

        >>> get_schedule("ou").alpha_bar_expr()
        exp(-2*t)
        """
        return self._subs(self._sym("alpha_bar"))

    def inverse_expr(self) -> sp.Expr | None:
        """``t`` as a sympy expression of :data:`NOISE` (``s``), or None.

        Derived with :func:`sympy.solve` from ``s(t)^2 = s^2``; of the branches it
        returns, the one real and equal to ``t`` at three interior points of the
        domain (30-digit evaluation) is kept.

        >>> get_schedule("ou").inverse_expr()
        log(s**2 + 1)/2
        """
        generic = self._inverse_generic()
        return None if generic is None else self._subs(generic)

    def _param_key(self) -> tuple[Any, ...]:
        return tuple(self.params.values())

    def _inverse_generic(self) -> sp.Expr | None:
        return self._inverse_branch()[0]

    def _inverse_branch(self) -> tuple[sp.Expr | None, Callable[..., Any] | None]:
        """The valid closed-form branch (generic expression) and its bridge callable."""
        key = (type(self), self._param_key())
        if key in _BRANCH:
            return _BRANCH[key]
        chosen = None
        s_expr = self.s_expr()
        probes = [self.t_min + q * (self.t_max - self.t_min) for q in (0.05, 0.5, 0.95)]
        for cand in self._sym("inverse_candidates"):
            concrete = self._subs(cand)
            ok = True
            for tp in probes:
                t_exact = _exact(tp)
                s_val = s_expr.subs(TIME, t_exact).evalf(40)
                val = sp.N(concrete.subs(NOISE, s_val), 30)
                re, im = val.as_real_imag()
                real = re.is_number and im.is_number and abs(im) <= 1e-25
                if not real or abs(re - t_exact) > 1e-20 * (1 + abs(tp)):
                    ok = False
                    break
            if ok:
                chosen = cand
                break
        func = None if chosen is None else to_numeric(chosen, NOISE, *self._param_symbols())
        _BRANCH[key] = (chosen, func)
        return _BRANCH[key]

    # ---- numeric layer

    def _pv(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, n)) for n in self._formula_params)

    @classmethod
    def _numeric(cls, quantity: str) -> Callable[..., Any]:
        """Bridge callable of a derived quantity, arguments ``(t, *formula params)``."""
        key = (cls, quantity)
        if key not in _NUMERIC:
            _NUMERIC[key] = to_numeric(cls._sym(quantity), TIME, *cls._param_symbols())
        return _NUMERIC[key]

    def _eval(self, quantity: str, t: np.ndarray) -> Any:
        """Numeric value of a derived quantity at (already checked) ``t``."""
        return self._numeric(quantity)(t, *self._pv())

    def _check_t(self, t: Any) -> np.ndarray:
        arr = _as_array("t", t)
        bad = (arr < self.t_min) | (arr > self.t_max)
        if bad.any():
            raise ValueError(
                f"t={_first_bad(arr, bad)!r} is outside the domain of {self.spec}: "
                f"allowed {self.t_min!r} <= t <= {self.t_max!r}"
            )
        return arr

    @staticmethod
    def _check_range(name: str, arr: np.ndarray, lo: float, hi: float, what: str) -> np.ndarray:
        slack_lo = _RANGE_SLACK * max(abs(lo), 1e-300)
        slack_hi = _RANGE_SLACK * max(abs(hi), 1e-300)
        bad = (arr < lo - slack_lo) | (arr > hi + slack_hi)
        if bad.any():
            raise ValueError(
                f"{name}={_first_bad(arr, bad)!r} is outside the range of {what}: "
                f"allowed {lo!r} <= {name} <= {hi!r}"
            )
        return np.clip(arr, lo, hi)

    def alpha(self, t: Any) -> Any:
        """Signal scale ``alpha(t)`` (vectorised)."""
        return self._finite("alpha", self._eval("alpha", self._check_t(t)))

    def sigma(self, t: Any) -> Any:
        """Noise scale ``sigma(t) = alpha(t) s(t)`` (vectorised)."""
        return self._finite("sigma", self._eval("sigma_numeric", self._check_t(t)))

    def s(self, t: Any) -> Any:
        """VE-equivalent noise level ``s(t)`` (vectorised, strictly increasing)."""
        return self._finite("s", self._eval("s", self._check_t(t)))

    def log_snr(self, t: Any) -> Any:
        """Log-SNR ``-2 ln s(t)`` (vectorised)."""
        return self._finite("log_snr", self._eval("log_snr", self._check_t(t)))

    def alpha_bar(self, t: Any) -> Any:
        """``alpha_bar(t) = 1/(1 + s(t)^2)`` (vectorised)."""
        return self._finite("alpha_bar", self._eval("alpha_bar", self._check_t(t)))

    def _finite(self, name: str, values: Any) -> Any:
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"{self.spec}: {name} evaluated to a non-finite value")
        return values

    def t_of_s(self, s: Any) -> Any:
        """Time at which the VE-equivalent noise level is ``s`` (vectorised).

        Raises:
            ValueError: ``s`` outside ``[s_min, s_max]``.
        """
        arr = self._check_range("s", _as_array("s", s), self.s_min, self.s_max, self.spec)
        return self._t_of_s(arr)

    def t_of_log_snr(self, lam: Any) -> Any:
        """Time at which the log-SNR is ``lam`` (vectorised)."""
        lo, hi = -2.0 * math.log(self.s_max), -2.0 * math.log(self.s_min)
        arr = _as_array("log_snr", lam)
        slack = _RANGE_SLACK * max(1.0, abs(lo), abs(hi))
        bad = (arr < lo - slack) | (arr > hi + slack)
        if bad.any():
            raise ValueError(
                f"log_snr={_first_bad(arr, bad)!r} is outside the range of {self.spec}: "
                f"allowed {lo!r} <= log_snr <= {hi!r}"
            )
        s = np.clip(np.exp(-0.5 * arr), self.s_min, self.s_max)
        return self._t_of_s(s)

    def t_of_alpha_bar(self, alpha_bar: Any) -> Any:
        """Time at which ``alpha_bar = 1/(1+s^2)`` takes the given value (vectorised)."""
        lo, hi = 1.0 / (1.0 + self.s_max**2), 1.0 / (1.0 + self.s_min**2)
        arr = self._check_range(
            "alpha_bar", _as_array("alpha_bar", alpha_bar), lo, min(hi, 1.0), self.spec
        )
        with np.errstate(divide="ignore"):
            s = np.sqrt((1.0 - arr) / arr)
        return self._t_of_s(np.clip(s, self.s_min, self.s_max))

    def _t_of_s(self, s: np.ndarray) -> Any:
        """Inverse on already range-checked, clipped ``s``."""
        lo, hi = float(self.t_min), float(self.t_max)
        _, closed = self._inverse_branch()
        if closed is None:
            t = invert_monotone(lambda x: self._eval("s", x), s, lo, hi)
            return self._finite("t", _out(np.clip(t, lo, hi)))
        t = np.clip(np.asarray(closed(s, *self._pv()), dtype=np.float64), lo, hi)
        log_target = np.log(s)
        for _ in range(_NEWTON_STEPS):
            residual = np.log(self._eval("s", t)) - log_target
            t = np.clip(t - residual / self._eval("dlogs_dt", t), lo, hi)
        return self._finite("t", _out(t))

    def grid(self, n: int) -> np.ndarray:
        """The family's standard discretization: ``n`` times from high noise to low."""
        n = self._check_n(n)
        return np.linspace(self.t_max, self.t_min, n)

    @staticmethod
    def _check_n(n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an integer number of noise levels, got {n!r}")
        if n < 2:
            raise ValueError(f"n={n!r} is not allowed: a grid needs n >= 2 noise levels")
        return int(n)


# --------------------------------------------------------------------------- families


@dataclass(frozen=True, repr=False)
class VESchedule(Schedule):
    """Variance exploding, geometric: ``alpha = 1``, ``s = s_min (s_max/s_min)^t``,
    ``t in [0, 1]`` (Song et al. 2021, VE SDE). Grid: uniform in ``t`` (geometric in
    ``s``)."""

    name: ClassVar[str] = "ve"
    _formula_params: ClassVar[tuple[str, ...]] = ("s_min", "s_max")

    s_min: float = 0.002
    s_max: float = 80.0

    def _validate(self) -> None:
        self._require_less("s_min", "s_max")

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return 1.0

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        return sp.Integer(1)

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        lo, hi = cls._param_symbols()
        return lo * (hi / lo) ** TIME


@dataclass(frozen=True, repr=False)
class EDMSchedule(Schedule):
    """EDM (Karras et al. 2022): ``alpha = 1``, ``sigma = t``, ``t in [s_min, s_max]``.

    Grid (eq. 5 of the paper): ``sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) -
    s_max^(1/rho)))^rho``, ``i = 0 .. n-1``, equally spaced in ``sigma^(1/rho)``.
    """

    name: ClassVar[str] = "edm"
    _formula_params: ClassVar[tuple[str, ...]] = ()

    s_min: float = 0.002
    s_max: float = 80.0
    rho: float = 7.0

    def _validate(self) -> None:
        self._require_less("s_min", "s_max")

    @property
    def t_min(self) -> float:
        return self.s_min

    @property
    def t_max(self) -> float:
        return self.s_max

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        return sp.Integer(1)

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        return TIME

    def grid(self, n: int) -> np.ndarray:
        """Karras rho-grid of ``n`` noise levels from ``s_max`` down to ``s_min``.

        The endpoints are set exactly (the power round trip ``(x^(1/rho))^rho``
        can miss them by an ulp, which would leave the domain).
        """
        n = self._check_n(n)
        # the same formula with s_max^(1/rho) factored out, so that a small rho cannot
        # overflow: sigma_i = s_max (1 + f_i (r - 1))^rho, r = (s_min/s_max)^(1/rho)
        ratio = (self.s_min / self.s_max) ** (1.0 / self.rho)
        frac = np.arange(n) / (n - 1)
        sig = self.s_max * (1.0 + frac * (ratio - 1.0)) ** self.rho
        sig[0], sig[-1] = self.s_max, self.s_min
        return np.clip(sig, self.s_min, self.s_max)


@dataclass(frozen=True, repr=False)
class VPLinearSchedule(Schedule):
    """Continuous VP with linear ``beta(t) = beta_min + t (beta_max - beta_min)``:
    ``alpha = exp(-1/2 int_0^t beta)``, ``sigma = sqrt(1 - alpha^2)``, ``t in
    [t_min, 1]`` (Song et al. 2021, VP SDE). Grid: uniform in ``t``."""

    name: ClassVar[str] = "vp-linear"
    _formula_params: ClassVar[tuple[str, ...]] = ("beta_min", "beta_max")

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3

    def _validate(self) -> None:
        self._require_less("beta_min", "beta_max")
        if not self.t_min < 1.0:
            raise ValueError(
                f"{self.name}: t_min={self.t_min!r} must be < 1 (allowed: 0 < t_min < 1)"
            )

    @property
    def t_max(self) -> float:
        return 1.0

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        b_lo, b_hi = cls._param_symbols()
        u = sp.Symbol("u", positive=True)
        beta = b_lo + u * (b_hi - b_lo)
        return sp.exp(-sp.integrate(beta, (u, 0, TIME)) / 2)

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        return sp.sqrt(1 - cls._sym("alpha") ** 2)


@dataclass(frozen=True, repr=False)
class VPCosineSchedule(Schedule):
    """Cosine VP (Nichol & Dhariwal 2021, eq. 17): ``alpha_bar = f(t)/f(0)``,
    ``f(t) = cos^2(((t + offset)/(1 + offset)) pi/2)``, so ``alpha = cos(theta(t)) /
    cos(theta(0))`` with ``theta(t) = (t + offset)/(1 + offset) pi/2 < pi/2`` on the
    domain, ``sigma = sqrt(1 - alpha^2)``. The expressions are written with the
    complementary angle ``phi = pi/2 - theta = (1 - t)/(1 + offset) pi/2``
    (``alpha = sin(phi(t))/sin(phi(0))``), the same function, accurate near
    ``t = 1``. Grid: uniform in ``t``."""

    name: ClassVar[str] = "vp-cosine"
    _formula_params: ClassVar[tuple[str, ...]] = ("offset",)

    offset: float = 0.008
    t_min: float = 1e-3
    t_max: float = 0.9946

    def _validate(self) -> None:
        self._require_less("t_min", "t_max")
        if not self.t_max < 1.0:
            raise ValueError(
                f"{self.name}: t_max={self.t_max!r} must be < 1 (s diverges at t = 1; "
                f"allowed: t_min < t_max < 1)"
            )

    @classmethod
    def _theta(cls, t: sp.Expr) -> sp.Expr:
        """The paper's angle ``theta(t) = (t + offset)/(1 + offset) pi/2``."""
        (off,) = cls._param_symbols()
        return (t + off) / (1 + off) * sp.pi / 2

    @classmethod
    def _phi(cls, t: sp.Expr) -> sp.Expr:
        """The complementary angle ``pi/2 - theta(t) = (1 - t)/(1 + offset) pi/2``."""
        (off,) = cls._param_symbols()
        return (1 - t) / (1 + off) * sp.pi / 2

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        # alpha = cos(theta(t))/cos(theta(0)), written as cos(pi/2 - phi), which sympy
        # turns into sin(phi): near t = 1, cos(theta) of a rounded theta loses ~100
        # ulp, while phi = (1 - t) pi/(2 (1 + offset)) keeps full relative precision
        return sp.cos(sp.pi / 2 - cls._phi(TIME)) / sp.cos(sp.pi / 2 - cls._phi(sp.Integer(0)))

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        return sp.sqrt(1 - cls._sym("alpha") ** 2)

    @classmethod
    def _derive_s2(cls) -> sp.Expr:
        # 1/alpha^2 - 1: the form sympy's solve handles in about a second
        return 1 / cls._sym("alpha") ** 2 - 1

    @classmethod
    def _derive_s2_stable(cls) -> sp.Expr:
        # s^2 = (f(0) - f(t))/f(t). The difference f(0) - f(t) cancels at small t, so
        # it is rewritten as a product of sines (fu rules TR8: powers to sums, TR9:
        # sum to product) in the theta form; f(t) = sin(phi)^2 is accurate near t = 1.
        f0 = sp.cos(cls._theta(sp.Integer(0))) ** 2
        ft = sp.cos(cls._theta(TIME)) ** 2
        return TR9(TR8(f0 - ft)) / sp.sin(cls._phi(TIME)) ** 2


@dataclass(frozen=True, repr=False)
class OUSchedule(Schedule):
    """Ornstein-Uhlenbeck: ``alpha = e^{-t}``, ``sigma^2 = 1 - e^{-2t}``, so
    ``s = sqrt(e^{2t} - 1)`` and ``t(s) = 1/2 ln(1 + s^2)``. Grid: uniform in ``t``."""

    name: ClassVar[str] = "ou"
    _formula_params: ClassVar[tuple[str, ...]] = ()

    t_min: float = 1e-4
    t_max: float = 5.0

    def _validate(self) -> None:
        self._require_less("t_min", "t_max")

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        return sp.exp(-TIME)

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        return sp.sqrt(1 - sp.exp(-2 * TIME))


@dataclass(frozen=True, repr=False)
class DDPMSchedule(Schedule):
    """Discrete DDPM (Ho et al. 2020): ``betas = linspace(beta_start, beta_end, T)``,
    ``alpha_bar_i = prod_{j<=i} (1 - beta_j)``, step ``i in 0 .. T-1``.

    Clock: ``t = (i + 1)/T`` (fractional steps allowed), ``t in [1/T, 1]``. Numerics
    come from the table ``L_i = -sum_{j<=i} log1p(-beta_j) = -ln alpha_bar_i``,
    ``s_i^2 = expm1(L_i)`` (full relative precision at ``i = 0``, where ``s^2 ~
    beta_start``); between steps ``ln s`` is linear in the step. The symbolic
    expressions are the exact product in closed form (a ratio of gamma functions,
    derived by sympy), exact on the grid. Grid: ``n`` evenly spaced integer steps
    from ``T-1`` to ``0``.
    """

    name: ClassVar[str] = "ddpm"
    discrete: ClassVar[bool] = True
    _int_params: ClassVar[tuple[str, ...]] = ("T",)
    _formula_params: ClassVar[tuple[str, ...]] = ("T", "beta_start", "beta_end")

    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def _validate(self) -> None:
        if self.T < 2:
            raise ValueError(f"{self.name}: T={self.T!r} is not allowed; need T >= 2 steps")
        self._require_less("beta_start", "beta_end")
        if not self.beta_end < 1.0:
            raise ValueError(
                f"{self.name}: beta_end={self.beta_end!r} must be < 1 "
                f"(allowed: 0 < beta_start < beta_end < 1)"
            )

    @property
    def t_min(self) -> float:
        return 1.0 / self.T

    @property
    def t_max(self) -> float:
        return 1.0

    # ---- symbolic: the product in closed form

    @classmethod
    def _derive_alpha_bar(cls) -> sp.Expr:
        T, b0, b1 = cls._param_symbols()
        j = sp.Symbol("j", integer=True, nonnegative=True)
        n = sp.Symbol("n", integer=True, positive=True)
        d, k = sp.symbols("d k", positive=True)
        # 1 - beta_j = d (k - j), d = (b1 - b0)/(T - 1), k = (1 - b0)/d > T - 1 (all > 0)
        # combsimp merges (-1)^n (-d)^n = d^n (n is an integer)
        prod = sp.combsimp(sp.Product(d * (k - j), (j, 0, n - 1)).doit().rewrite(sp.gamma))
        return prod.subs({k: (1 - b0) / d}).subs({d: (b1 - b0) / (T - 1), n: T * TIME})

    @classmethod
    def _derive_alpha(cls) -> sp.Expr:
        return sp.sqrt(cls._sym("alpha_bar"))

    @classmethod
    def _derive_sigma(cls) -> sp.Expr:
        return sp.sqrt(1 - cls._sym("alpha_bar"))

    @classmethod
    def _derive_s2(cls) -> sp.Expr:
        return 1 / cls._sym("alpha_bar") - 1

    @classmethod
    def _derive_inverse_candidates(cls) -> list[sp.Expr]:
        return []  # no closed form for the inverse of a gamma-function ratio

    def inverse_expr(self) -> None:
        """None: the discrete schedule is inverted by interpolation (:meth:`step_of_s`)."""
        return None

    # ---- numeric: table + log-linear interpolation

    def _table(self) -> dict[str, np.ndarray]:
        key = (self.T, self.beta_start, self.beta_end)
        if key not in _TABLES:
            betas = np.linspace(self.beta_start, self.beta_end, self.T)
            neg_log_ab = _compensated_cumsum(-np.log1p(-betas))
            s_table = np.sqrt(np.expm1(neg_log_ab))
            _TABLES[key] = {
                "betas": betas,
                "alpha_bars": np.exp(-neg_log_ab),
                "s": s_table,
                "log_s": np.log(s_table),
                "steps": np.arange(self.T, dtype=np.float64),
            }
        return _TABLES[key]

    @property
    def betas(self) -> np.ndarray:
        """The ``T`` noising rates ``beta_i``."""
        return self._table()["betas"].copy()

    @property
    def alpha_bars(self) -> np.ndarray:
        """``alpha_bar_i`` for ``i = 0 .. T-1`` (from ``exp(-L_i)``)."""
        return self._table()["alpha_bars"].copy()

    @property
    def s_min(self) -> float:
        return float(self._table()["s"][0])

    @property
    def s_max(self) -> float:
        return float(self._table()["s"][-1])

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["T"] = self.T
        out["clock"] = "t = (step + 1) / T"
        return out

    def _s_of_fractional_step(self, u: np.ndarray) -> np.ndarray:
        tab = self._table()
        s = np.exp(np.interp(u, tab["steps"], tab["log_s"]))
        on_grid = u == np.rint(u)
        if np.any(on_grid):
            idx = np.rint(np.where(on_grid, u, 0.0)).astype(np.int64)
            s = np.where(on_grid, tab["s"][idx], s)
        return s

    def _eval(self, quantity: str, t: np.ndarray) -> Any:
        s = self._s_of_fractional_step(self._t_to_step(np.asarray(t, dtype=np.float64)))
        if quantity == "s":
            out = s
        elif quantity == "alpha":
            out = 1.0 / np.sqrt(1.0 + s * s)
        elif quantity == "sigma_numeric":
            out = s / np.sqrt(1.0 + s * s)
        elif quantity == "log_snr":
            out = -2.0 * np.log(s)
        elif quantity == "alpha_bar":
            out = 1.0 / (1.0 + s * s)
        else:  # pragma: no cover - internal misuse
            raise KeyError(quantity)
        return _out(out)

    def _t_to_step(self, t: np.ndarray) -> np.ndarray:
        u = t * self.T - 1.0
        nearest = np.rint(u)
        # t = fl((i+1)/T) times T, minus 1, misses i by <= 1.5 eps (i+1): snap those
        return np.where(np.abs(u - nearest) <= 2 * _EPS * (np.abs(nearest) + 1), nearest, u)

    def _t_of_s(self, s: np.ndarray) -> Any:
        return _out(np.clip(self._step_to_t(self._step_of_s(s)), self.t_min, self.t_max))

    def _step_to_t(self, step: np.ndarray) -> np.ndarray:
        return (step + 1.0) / self.T

    def _step_of_s(self, s: np.ndarray) -> np.ndarray:
        tab = self._table()
        return np.interp(np.log(s), tab["log_s"], tab["steps"])

    def _check_step(self, step: Any) -> np.ndarray:
        arr = _as_array("step", step)
        bad = (arr < 0) | (arr > self.T - 1)
        if bad.any():
            raise ValueError(
                f"step={_first_bad(arr, bad)!r} is outside the steps of {self.spec}: "
                f"allowed 0 <= step <= {self.T - 1}"
            )
        return arr

    def step_to_t(self, step: Any) -> Any:
        """``t = (step + 1)/T`` (fractional steps allowed)."""
        return _out(self._step_to_t(self._check_step(step)))

    def t_to_step(self, t: Any) -> Any:
        """Fractional step ``T t - 1``, exact (integer-valued) at grid times."""
        return _out(self._t_to_step(self._check_t(t)))

    def s_of_step(self, step: Any) -> Any:
        """Noise level at a (fractional) step; the table value on integer steps."""
        return _out(self._s_of_fractional_step(self._check_step(step)))

    def step_of_s(self, s: Any) -> Any:
        """Fractional step of a noise level (linear in ``ln s`` between steps)."""
        arr = self._check_range("s", _as_array("s", s), self.s_min, self.s_max, self.spec)
        return _out(self._step_of_s(arr))

    def grid(self, n: int) -> np.ndarray:
        """``n`` evenly spaced integer steps from ``T-1`` to ``0``, as times."""
        n = self._check_n(n)
        if n > self.T:
            raise ValueError(f"n={n} is not allowed for {self.spec}: need 2 <= n <= T={self.T}")
        steps = np.rint(np.linspace(self.T - 1, 0, n))
        return self._step_to_t(steps)

    def continuous_counterpart(self) -> VPLinearSchedule:
        """The continuous VP-linear schedule this chain discretizes:
        ``beta_min = T beta_start``, ``beta_max = T beta_end``, ``t_min = 1/T``."""
        return VPLinearSchedule(
            beta_min=self.T * self.beta_start, beta_max=self.T * self.beta_end, t_min=1.0 / self.T
        )


# --------------------------------------------------------------------------- registry

SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (
        VESchedule, EDMSchedule, VPLinearSchedule, DDPMSchedule, VPCosineSchedule, OUSchedule
    )
}


def list_schedules() -> list[str]:
    """Names of the schedule families, in registry order.

    >>> list_schedules()
    ['ve', 'edm', 'vp-linear', 'ddpm', 'vp-cosine', 'ou']
    """
    return list(SCHEDULES)


def _schedule_class(name: Any, source: Any) -> type[Schedule]:
    if not isinstance(name, str) or name.strip().lower() not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r} in {source!r}; allowed: {list_schedules()}")
    return SCHEDULES[name.strip().lower()]


def _check_param_names(cls: type[Schedule], keys: list[str], source: Any) -> None:
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in keys:
        if key not in allowed:
            raise ValueError(
                f"unknown parameter {key!r} for schedule {cls.name!r} in {source!r}; "
                f"allowed: {allowed}"
            )


def _from_string(spec: str) -> Schedule:
    name, _, body = spec.strip().partition(":")
    cls = _schedule_class(name, spec)
    kwargs: dict[str, float | int] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key or not raw:
            raise ValueError(f"malformed parameter {item!r} in spec {spec!r}; expected key=value")
        _check_param_names(cls, [key], spec)
        if key in kwargs:
            raise ValueError(f"parameter {key!r} given twice in spec {spec!r}")
        try:
            value = float(raw)
        except ValueError as err:
            raise ValueError(f"parameter {key}={raw!r} in spec {spec!r} is not a number") from err
        if key in cls._int_params:
            if not value.is_integer():
                raise ValueError(f"parameter {key}={raw!r} in spec {spec!r} must be an integer")
            kwargs[key] = int(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _from_mapping(spec: Mapping[str, Any]) -> Schedule:
    if "name" not in spec:
        raise ValueError(f"a schedule mapping needs a 'name' key, got keys {sorted(spec)}")
    cls = _schedule_class(spec["name"], dict(spec))
    if "params" in spec:  # the output of Schedule.to_dict(); other keys are descriptive
        params = spec["params"]
        if not isinstance(params, Mapping):
            raise TypeError(f"'params' must be a mapping, got {params!r}")
    else:
        params = {k: v for k, v in spec.items() if k != "name"}
    _check_param_names(cls, list(params), dict(spec))
    return cls(**params)


def get_schedule(spec: Schedule | str | Mapping[str, Any]) -> Schedule:
    """A schedule from a :class:`Schedule` (returned as is), a spec string or a mapping.

    Spec strings: ``"name"`` or ``"name:key=value,key=value"``; unspecified
    parameters take their defaults (``"edm:rho=7"``). Mappings: ``{"name": ...,
    key: value, ...}`` or the output of :meth:`Schedule.to_dict`.

    Raises:
        TypeError: ``spec`` is none of these, or a parameter value is not a number.
        ValueError: unknown family or parameter, malformed or invalid value.

    >>> get_schedule("vp-linear:beta_max=20").spec
    'vp-linear:beta_min=0.1,beta_max=20,t_min=0.001'
    >>> get_schedule({"name": "edm", "rho": 5}).spec
    'edm:s_min=0.002,s_max=80,rho=5'
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        return _from_string(spec)
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    raise TypeError(f"schedule spec must be a Schedule, a string or a mapping, got {spec!r}")


def schedule_table(schedule: Schedule | str | Mapping[str, Any], s_values: Any) -> list[dict[str, float]]:
    """One row per noise level: ``t``, ``s``, ``log_snr``, ``alpha_bar`` (and
    ``step`` for discrete schedules), in the schedule's own clock.

    >>> rows = schedule_table("ou", [1.0])
    >>> round(rows[0]["t"], 12)  # t(s) = ln(1 + s^2)/2 = ln(2)/2
    0.34657359028
    """
    sched = get_schedule(schedule)
    s = np.atleast_1d(_as_array("s_values", s_values)).ravel()
    t = np.atleast_1d(sched.t_of_s(s))
    steps = np.atleast_1d(sched.step_of_s(s)) if isinstance(sched, DDPMSchedule) else None
    rows = []
    for i, (si, ti) in enumerate(zip(s, t)):
        row = {
            "t": float(ti),
            "s": float(si),
            "log_snr": float(-2.0 * np.log(si)),
            "alpha_bar": float(1.0 / (1.0 + si * si)),
        }
        if steps is not None:
            row["step"] = float(steps[i])
        rows.append(row)
    return rows
