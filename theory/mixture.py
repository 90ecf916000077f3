"""Gaussian mixture and the memorizing denoiser: the pitchfork (THEORY.md 3.2).

Model: ``x_0 ~ sum_c pi_c N(m_c, v I)`` in ``d`` dimensions, observed as
``y = x_0 + s eps``. The memorizing (empirical) denoiser is the limit ``v -> 0``
with one component per training point and uniform weights.

Derived here, symbolically (generic ``d`` and number of components, small sizes):

- the exact posterior mean, a softmax over components of shrunk means,
  ``D = sum_c r_c(y) (v y + s^2 m_c)/(v + s^2)``,
  ``r_c ∝ pi_c exp(-|y - m_c|^2 / (2 (v + s^2)))``;
- its Jacobian at *every* ``y``:
  ``J = v/(v + s^2) I + s^2/(v + s^2)^2 B_r(y)``, ``B_r`` the
  responsibility-weighted between-component covariance, equal to
  ``Cov[x_0 | y]/s^2`` (Tweedie);
- at a symmetric point (``r = pi``; e.g. ``y = m_bar`` when all ``|m_c - m_bar|``
  are equal, ``m_bar = sum_c pi_c m_c``) the eigenvalue along an eigenvector of
  ``B = B_pi`` with eigenvalue ``b`` is ``kappa = s^2 b/(v + s^2)^2 + v/(v + s^2)``,
  and ``kappa = 1`` at ``s_c^2 = b_max - v``;
- the two-component normal form: ``D = (v y + s^2 m tanh(m y/(v + s^2)))/(v + s^2)``
  along ``m``, whose frozen-``s`` fixed points ``y = m tanh(m y/(v + s^2))`` (the
  Curie-Weiss equation at temperature ``(v + s^2)/m^2``) define the order
  parameter; exponents ``beta = 1/2`` and ``gamma = 1`` (amplitude ratio 2);
- the OU-clock critical ("speciation") time ``t_c = 1/2 ln(1 + Lambda)``
  (Biroli, Bonnaire, de Bortoli and Mezard 2024, Nat. Commun. 15, 9957).

Numerics: exact denoiser, posterior covariance and Jacobian (log-space softmax,
stable for ``s`` in ``1e-4 .. 1e4``), the mean trajectory (started at the data mean
at high noise) and the critical noise along it by bracketing root finding.

The order parameter, precisely: at frozen ``s``, the denoising map ``y -> D(y; s)``
(the fixed points of ``dy/d(-ln s) = D(y; s) - y`` with ``s`` held fixed) has the
fixed point ``y = m_bar``; below ``s_c`` it is unstable and two stable fixed
points ``m_bar +- y* m/|m|`` appear. ``y*`` is the order parameter. The
susceptibility is ``chi = d y*/d h`` for a field ``h`` that tilts the weights,
``pi_+- ∝ exp(+-h)``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import sympy as sp
from scipy import integrate, optimize

from diffcrit.theory.bridge import to_numeric

__all__ = [
    "mixture_denoiser_symbolic",
    "mixture_jacobian_residual",
    "mixture_tweedie_residual",
    "symmetric_point_kappa",
    "symmetric_point_stiffness",
    "mixture_critical_noise_variance",
    "two_component_denoiser",
    "two_component_fixed_point_map",
    "two_component_normal_form",
    "two_component_order_parameter_leading",
    "two_component_order_parameter_exponent",
    "two_component_susceptibility_leading",
    "ou_critical_time",
    "between_component_covariance",
    "mixture_responsibilities",
    "mixture_denoiser",
    "mixture_posterior_covariance",
    "mixture_jacobian",
    "mixture_kappa_max",
    "memorizing_denoiser",
    "CriticalNoise",
    "mixture_mean_trajectory",
    "memorizing_mean_trajectory",
    "mixture_critical_noise",
    "memorizing_critical_noise",
    "two_component_order_parameter",
    "two_component_susceptibility",
    "ou_critical_time_numeric",
]

_s = sp.Symbol("s", positive=True)
_v = sp.Symbol("v", positive=True)
_y = sp.Symbol("y", real=True)
_m = sp.Symbol("m", positive=True)
_b = sp.Symbol("b", positive=True)
_h = sp.Symbol("h", real=True)
_s_sq = sp.Symbol("s_sq", positive=True)


# ---------------------------------------------------------------------------
# Symbolic derivations
# ---------------------------------------------------------------------------


def _check_sizes(dim: int, n_components: int) -> None:
    for name, value in (("dim", dim), ("n_components", n_components)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@functools.cache
def _mixture_pieces(dim: int, n_components: int) -> dict:
    """Symbols and the softmax pieces of a generic mixture.

    Each ``exp(-|y - m_c|^2/(2 (v + s^2)))`` is an undefined function ``E_c(y)``
    with the derivative rule ``dE_c/dy_j = -(y_j - m_cj)/(v + s^2) E_c``; after
    differentiation ``E_c`` becomes a positive symbol, so every identity is an
    identity of rational functions (``cancel`` decides it exactly and fast).
    """
    _check_sizes(dim, n_components)
    ys = sp.symbols(f"y1:{dim + 1}", real=True)
    y = sp.Matrix(ys)
    means = [
        sp.Matrix(sp.symbols(f"m{c + 1}_1:{dim + 1}", real=True)) for c in range(n_components)
    ]
    weights = sp.symbols(f"p1:{n_components + 1}", positive=True)
    kernels = [sp.Function(f"E{c + 1}")(*ys) for c in range(n_components)]
    kernel_symbols = sp.symbols(f"E1:{n_components + 1}", positive=True)
    total = _v + _s**2
    rules = {
        sp.Derivative(kernels[c], ys[j]): -(ys[j] - means[c][j]) / total * kernels[c]
        for c in range(n_components)
        for j in range(dim)
    }
    explicit = {
        kernels[c]: sp.exp(-((y - means[c]).dot(y - means[c])) / (2 * total))
        for c in range(n_components)
    }
    terms = [weights[c] * kernels[c] for c in range(n_components)]
    norm = sum(terms)
    resp = [t / norm for t in terms]
    return {
        "ys": ys,
        "y": y,
        "means": means,
        "weights": weights,
        "kernels": kernels,
        "rules": rules,
        "plain": dict(zip(kernels, kernel_symbols)),
        "explicit": explicit,
        "norm": norm,
        "resp": resp,
    }


def _d(expr: sp.Expr, variable: sp.Symbol, rules: dict) -> sp.Expr:
    return sp.diff(expr, variable).subs(rules)


def _rational_zero(matrix: sp.Matrix, plain: dict) -> sp.Matrix:
    return matrix.subs(plain).applyfunc(lambda e: sp.cancel(sp.together(e)))


def _softmax_denoiser(pieces: dict) -> sp.Matrix:
    total = _v + _s**2
    dim = len(pieces["ys"])
    return sum(
        (r * (_v * pieces["y"] + _s**2 * m) / total for r, m in zip(pieces["resp"], pieces["means"])),
        sp.zeros(dim, 1),
    )


def _weighted_between_covariance(pieces: dict) -> sp.Matrix:
    dim = len(pieces["ys"])
    mean = sum((r * m for r, m in zip(pieces["resp"], pieces["means"])), sp.zeros(dim, 1))
    return sum(
        (r * (m - mean) * (m - mean).T for r, m in zip(pieces["resp"], pieces["means"])),
        sp.zeros(dim, dim),
    )


@functools.cache
def mixture_denoiser_symbolic(dim: int = 1, n_components: int = 2) -> sp.Matrix:
    """Posterior mean of a mixture ``sum_c p_c N(m_c, v I)`` (``d x 1`` matrix).

    Derived as ``y + s^2 grad log p_s`` with ``p_s = sum_c p_c N(y; m_c, (v + s^2) I)``
    and checked to equal the softmax of shrunk means
    ``sum_c r_c (v y + s^2 m_c)/(v + s^2)``, which is returned (explicit exponentials).

    Args:
        dim: dimension ``d``.
        n_components: number of components.

    >>> mixture_denoiser_symbolic(1, 1)
    Matrix([[(m1_1*s**2 + v*y1)/(s**2 + v)]])
    """
    pieces = _mixture_pieces(dim, n_components)
    log_marginal = sp.log(pieces["norm"])
    tweedie = pieces["y"] + _s**2 * sp.Matrix(
        [_d(log_marginal, yj, pieces["rules"]) for yj in pieces["ys"]]
    )
    softmax = _softmax_denoiser(pieces)
    if _rational_zero(tweedie - softmax, pieces["plain"]) != sp.zeros(dim, 1):
        raise AssertionError("mixture posterior mean: Tweedie and softmax forms disagree")
    return softmax.subs(pieces["explicit"])


@functools.cache
def mixture_jacobian_residual(dim: int = 2, n_components: int = 2) -> sp.Matrix:
    """``dD/dy - [v/(v + s^2) I + s^2/(v + s^2)^2 B_r(y)]`` at a generic ``y``: the zero matrix.

    ``B_r(y) = sum_c r_c (m_c - m_r)(m_c - m_r)^T``, ``m_r = sum_c r_c m_c``.

    >>> mixture_jacobian_residual(2, 2)
    Matrix([
    [0, 0],
    [0, 0]])
    """
    pieces = _mixture_pieces(dim, n_components)
    softmax = _softmax_denoiser(pieces)
    ys = pieces["ys"]
    jac = sp.Matrix(dim, dim, lambda i, j: _d(softmax[i], ys[j], pieces["rules"]))
    formula = _v / (_v + _s**2) * sp.eye(dim) + _s**2 / (_v + _s**2) ** 2 * (
        _weighted_between_covariance(pieces)
    )
    return _rational_zero(jac - formula, pieces["plain"])


@functools.cache
def mixture_tweedie_residual(dim: int = 2, n_components: int = 2) -> sp.Matrix:
    """``dD/dy - Cov[x_0 | y]/s^2`` for the mixture, with the posterior covariance from Bayes.

    Given component ``c``, ``x_0 | y`` is ``N((v y + s^2 m_c)/(v + s^2), v s^2/(v + s^2) I)``;
    the law of total covariance gives ``Cov[x_0 | y]``.

    >>> mixture_tweedie_residual(1, 3)
    Matrix([[0]])
    """
    pieces = _mixture_pieces(dim, n_components)
    total = _v + _s**2
    softmax = _softmax_denoiser(pieces)
    ys = pieces["ys"]
    jac = sp.Matrix(dim, dim, lambda i, j: _d(softmax[i], ys[j], pieces["rules"]))
    second = sum(
        (
            r * (_v * _s**2 / total * sp.eye(dim) + ((_v * pieces["y"] + _s**2 * m) / total)
                 * ((_v * pieces["y"] + _s**2 * m) / total).T)
            for r, m in zip(pieces["resp"], pieces["means"])
        ),
        sp.zeros(dim, dim),
    )
    covariance = second - softmax * softmax.T
    return _rational_zero(jac - covariance / _s**2, pieces["plain"])


@functools.cache
def symmetric_point_kappa() -> sp.Expr:
    """``kappa`` at a symmetric point along an eigenvector of ``B`` with eigenvalue ``b``.

    At a point where ``r = pi`` (e.g. ``y = m_bar`` with all ``|m_c - m_bar|`` equal),
    ``B_r = B`` and the Jacobian formula of :func:`mixture_jacobian_residual` gives
    the eigenvalue below. Cross-checked on ``+-m`` in 1-D at ``y = 0``
    (``b = m^2``) by differentiating the exact denoiser.

    >>> symmetric_point_kappa()
    b*s**2/(s**2 + v)**2 + v/(s**2 + v)
    """
    kappa = _b * _s**2 / (_v + _s**2) ** 2 + _v / (_v + _s**2)
    two = two_component_denoiser()
    at_origin = sp.diff(two, _y).subs(_y, 0)
    if sp.simplify(at_origin - kappa.subs(_b, _m**2)) != 0:
        raise AssertionError("symmetric-point kappa disagrees with the +-m denoiser")
    return kappa


def symmetric_point_stiffness() -> sp.Expr:
    """Stiffness ``gamma = 1 - kappa`` at the symmetric point, factored.

    Its sign is that of ``s^2 - (b - v)``: negative (unstable) below ``s_c^2 = b - v``.

    >>> symmetric_point_stiffness()
    s**2*(-b + s**2 + v)/(s**2 + v)**2
    """
    return sp.factor(1 - symmetric_point_kappa())


def mixture_critical_noise_variance() -> sp.Expr:
    """``s_c^2`` solving ``kappa(s_c) = 1`` at the symmetric point (positive root).

    >>> mixture_critical_noise_variance()
    b - v
    """
    equation = sp.numer(sp.together(symmetric_point_kappa().subs(_s, sp.sqrt(_s_sq)) - 1))
    roots = sp.solve(equation, _s_sq)
    nonzero = [r for r in roots if sp.simplify(r) != 0]
    if len(nonzero) != 1:
        raise AssertionError(f"unexpected roots {roots}")
    return nonzero[0]


@functools.cache
def two_component_denoiser() -> sp.Expr:
    """Exact ``D`` of ``(N(m, v) + N(-m, v))/2`` in 1-D (``m > 0``): the tanh form.

    Derived from the generic softmax (:func:`mixture_denoiser_symbolic`) and
    checked to equal ``(v y + s^2 m tanh(m y/(v + s^2)))/(v + s^2)``; in ``d``
    dimensions the same holds along ``m/|m|`` with ``m -> |m|``.

    >>> two_component_denoiser()
    (m*s**2*tanh(m*y/(s**2 + v)) + v*y)/(s**2 + v)
    """
    generic = mixture_denoiser_symbolic(1, 2)[0]
    y1, m1, m2 = sp.Symbol("y1", real=True), sp.Symbol("m1_1", real=True), sp.Symbol("m2_1", real=True)
    p1, p2 = sp.symbols("p1 p2", positive=True)
    specific = generic.subs({y1: _y, m1: _m, m2: -_m, p1: 1, p2: 1})
    tanh_form = (_v * _y + _s**2 * _m * sp.tanh(_m * _y / (_v + _s**2))) / (_v + _s**2)
    if sp.simplify((specific - tanh_form).rewrite(sp.exp)) != 0:
        raise AssertionError("two-component denoiser is not the tanh form")
    return tanh_form


def two_component_fixed_point_map() -> sp.Expr:
    """Right-hand side of the frozen-``s`` fixed-point equation ``y = F(y)`` for ``+-m``.

    ``D(y) = y`` rearranges to ``y = m tanh(m y/(v + s^2))``: the Curie-Weiss
    equation at temperature ``T = (v + s^2)/m^2``, critical at ``T = 1``.

    >>> two_component_fixed_point_map()
    m*tanh(m*y/(s**2 + v))
    """
    denoiser = two_component_denoiser()
    # (D - y)(v + s^2)/s^2 = F(y) - y.
    return sp.simplify((denoiser - _y) * (_v + _s**2) / _s**2 + _y)


@functools.cache
def two_component_normal_form() -> tuple[sp.Expr, sp.Expr]:
    """``(gamma, u)`` in ``D(y) - y = -gamma y - u y^3 + O(y^5)`` (frozen ``s``, ``+-m``).

    ``gamma`` is the stiffness at ``y = 0`` (negative below ``s_c``), ``u > 0`` the
    cubic coefficient that saturates the instability.

    >>> two_component_normal_form()
    (s**2*(-m**2 + s**2 + v)/(s**2 + v)**2, m**4*s**2/(3*(s**2 + v)**4))
    """
    series = sp.series(two_component_denoiser() - _y, _y, 0, 5).removeO()
    gamma = sp.factor(-series.coeff(_y, 1))
    quartic = sp.factor(-series.coeff(_y, 3))
    if series.coeff(_y, 2) != 0 or series.coeff(_y, 0) != 0:
        raise AssertionError("+-m normal form must be odd in y")
    return gamma, quartic


def two_component_order_parameter_leading() -> sp.Expr:
    """Leading-order stable fixed point ``y* = sqrt(-gamma/u)`` below ``s_c``.

    Equals ``sqrt(3) (v + s^2)/m^2 sqrt(s_c^2 - s^2)`` with ``s_c^2 = m^2 - v``, so
    ``y* -> sqrt(3 (s_c^2 - s^2))`` at the transition: ``beta = 1/2``.

    >>> two_component_order_parameter_leading()
    sqrt(3)*(s**2 + v)*sqrt(m**2 - s**2 - v)/m**2
    """
    gamma, quartic = two_component_normal_form()
    return sp.simplify(sp.sqrt(sp.factor(-gamma / quartic)))


def two_component_order_parameter_exponent() -> sp.Expr:
    """``beta = lim d ln y* / d ln (s_c^2 - s^2)`` as ``s^2 -> s_c^2`` (from below).

    >>> two_component_order_parameter_exponent()
    1/2
    """
    distance = sp.Symbol("epsilon", positive=True)  # s_c^2 - s^2
    leading = two_component_order_parameter_leading().subs(
        _s, sp.sqrt(_m**2 - _v - distance)
    )
    log_slope = sp.diff(sp.log(leading), distance) * distance
    return sp.limit(sp.simplify(log_slope), distance, 0, "+")


def two_component_susceptibility_leading() -> tuple[sp.Expr, sp.Expr]:
    """``chi = dy*/dh`` above ``s_c`` (exact) and below ``s_c`` (leading order).

    The field ``h`` tilts the weights, ``pi_+- ∝ exp(+-h)``, so
    ``D_h(y) = (v y + s^2 m tanh(h + m y/(v + s^2)))/(v + s^2)``. Above ``s_c``
    (``y* = 0``) implicit differentiation of ``D_h(y) = y`` gives
    ``chi = a/gamma``, ``a = dD_h/dh``; below ``s_c`` the normal form gives
    ``chi = a/(gamma + 3 u y*^2) = a/(2 |gamma|)``: both ``∝ |s^2 - s_c^2|^(-1)``,
    amplitude ratio 2 (mean field).

    >>> above, below = two_component_susceptibility_leading()
    >>> above
    m*(s**2 + v)/(-m**2 + s**2 + v)
    >>> sp.simplify(below / above)
    -1/2
    """
    tilted = (_v * _y + _s**2 * _m * sp.tanh(_h + _m * _y / (_v + _s**2))) / (_v + _s**2)
    residual = tilted - _y
    at_origin = {_y: 0, _h: 0}
    above = sp.factor(
        sp.simplify(-sp.diff(residual, _h).subs(at_origin) / sp.diff(residual, _y).subs(at_origin))
    )
    gamma, quartic = two_component_normal_form()
    field_coefficient = sp.diff(tilted, _h).subs(at_origin)
    if sp.simplify(above - field_coefficient / gamma) != 0:
        raise AssertionError("susceptibility above s_c is not a/gamma")
    ordered_square = -gamma / quartic
    below = sp.factor(sp.simplify(field_coefficient / (gamma + 3 * quartic * ordered_square)))
    return above, below


def ou_critical_time() -> sp.Expr:
    """OU-clock time at which ``s(t)^2 = Lambda`` (``alpha = e^-t``, ``sigma^2 = 1 - e^-2t``).

    >>> ou_critical_time()
    log(Lambda + 1)/2
    """
    t = sp.Symbol("t", positive=True)
    critical = sp.Symbol("Lambda", positive=True)
    alpha = sp.exp(-t)
    sigma_sq = 1 - sp.exp(-2 * t)
    noise_variance = sp.simplify(sigma_sq / alpha**2)
    (root,) = sp.solve(sp.Eq(noise_variance, critical), t)
    return sp.simplify(root)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _positive(value, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return number


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be non-negative and finite, got {value!r}")
    return number


def _means(means) -> np.ndarray:
    arr = np.asarray(means, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"means must be a non-empty (n_components, d) array, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("means must be finite")
    return arr


def _log_weights(weights, n_components: int) -> np.ndarray:
    if weights is None:
        return np.full(n_components, -np.log(n_components))
    arr = np.asarray(weights, dtype=float)
    if arr.shape != (n_components,):
        raise ValueError(
            f"weights must have shape ({n_components},) to match means, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"weights must be positive and finite, got {weights!r}")
    return np.log(arr) - np.log(arr.sum())


def _points(y, dim: int, name: str = "y") -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (n, {dim}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


# ---------------------------------------------------------------------------
# Exact numerics of the mixture (plain numpy)
# ---------------------------------------------------------------------------


def between_component_covariance(means, weights=None) -> np.ndarray:
    """``B = sum_c pi_c (m_c - m_bar)(m_c - m_bar)^T`` with ``m_bar = sum_c pi_c m_c``.

    With uniform weights this is the data covariance with ``1/N`` normalization.

    >>> between_component_covariance(np.array([[1.0], [-1.0]])).tolist()
    [[1.0]]
    """
    means = _means(means)
    pi = np.exp(_log_weights(weights, means.shape[0]))
    centred = means - pi @ means
    return (centred * pi[:, None]).T @ centred


def _responsibilities(y: np.ndarray, s: float, means: np.ndarray, v: float, log_pi: np.ndarray) -> np.ndarray:
    # |y - m_c|^2 = |y|^2 - 2 y.m_c + |m_c|^2; |y|^2 is common to all c and cancels.
    logits = log_pi + (y @ means.T - 0.5 * np.einsum("cd,cd->c", means, means)) / (v + s**2)
    logits = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)


def mixture_responsibilities(y, s: float, means, v: float, weights=None) -> np.ndarray:
    """Posterior component probabilities ``r_c(y) ∝ pi_c N(y; m_c, (v + s^2) I)``.

    Args:
        y: ``(d,)`` or ``(n, d)``.
        s: noise level ``> 0``.
        means: ``(n_components, d)``.
        v: component variance ``> 0``.
        weights: ``(n_components,)`` positive (normalized here); uniform if None.

    Returns:
        ``(n_components,)`` or ``(n, n_components)``.

    >>> mixture_responsibilities(np.zeros(1), 1.0, np.array([[1.0], [-1.0]]), 0.5).tolist()
    [0.5, 0.5]
    """
    s = _positive(s, "s")
    v = _positive(v, "v")
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    y = _points(y, means.shape[1])
    return _responsibilities(y, s, means, v, log_pi)


def _denoise(y: np.ndarray, s: float, means: np.ndarray, v: float, log_pi: np.ndarray) -> np.ndarray:
    resp = _responsibilities(y, s, means, v, log_pi)
    shrink = v / (v + s**2)
    return shrink * y + (1.0 - shrink) * (resp @ means)


def mixture_denoiser(y, s: float, means, v: float, weights=None) -> np.ndarray:
    """Exact posterior mean ``D = sum_c r_c(y) (v y + s^2 m_c)/(v + s^2)``.

    Args:
        y: ``(d,)`` or ``(n, d)``.
        s: noise level ``> 0``.
        means: ``(n_components, d)``.
        v: component variance ``> 0``.
        weights: ``(n_components,)`` positive; uniform if None.

    Returns:
        Array with the shape of ``y``.

    >>> float(mixture_denoiser(np.array([0.3]), 1.0, np.array([[0.0]]), 1.0)[0])
    0.15
    """
    s = _positive(s, "s")
    v = _positive(v, "v")
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    return _denoise(_points(y, means.shape[1]), s, means, v, log_pi)


def _weighted_covariance(resp: np.ndarray, means: np.ndarray) -> np.ndarray:
    centred = means - resp @ means
    return (centred * resp[:, None]).T @ centred


def mixture_posterior_covariance(y, s: float, means, v: float, weights=None) -> np.ndarray:
    """Exact ``Cov[x_0 | y] = v s^2/(v + s^2) I + (s^2/(v + s^2))^2 B_r(y)`` (law of total covariance).

    Args:
        y: one point ``(d,)``.
        s, means, v, weights: as in :func:`mixture_denoiser`.

    Returns:
        ``(d, d)``.

    >>> mixture_posterior_covariance(np.zeros(1), 1.0, np.array([[0.0]]), 1.0).tolist()
    [[0.5]]
    """
    s = _positive(s, "s")
    v = _positive(v, "v")
    return _posterior_covariance(y, s, means, v, weights)


def _posterior_covariance(y, s: float, means, v: float, weights) -> np.ndarray:
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    y = _points(y, means.shape[1])
    if y.ndim != 1:
        raise ValueError(f"y must be a single point of shape ({means.shape[1]},), got {y.shape}")
    resp = _responsibilities(y, s, means, v, log_pi)
    shrink = s**2 / (v + s**2)
    return v * shrink * np.eye(means.shape[1]) + shrink**2 * _weighted_covariance(resp, means)


def mixture_jacobian(y, s: float, means, v: float, weights=None) -> np.ndarray:
    """Exact ``J = dD/dy = Cov[x_0 | y]/s^2`` (Tweedie) at one point ``y``.

    >>> mixture_jacobian(np.zeros(1), 1.0, np.array([[1.0], [-1.0]]), 1.0).tolist()
    [[0.75]]
    """
    s = _positive(s, "s")
    return mixture_posterior_covariance(y, s, means, v, weights) / s**2


def _top_eigen(resp: np.ndarray, means: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest eigenvalue and unit eigenvector of ``B_r``, via the smaller Gram matrix."""
    centred = (means - resp @ means) * np.sqrt(resp)[:, None]
    n_components, dim = centred.shape
    if dim <= n_components:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        return float(max(values[-1], 0.0)), vectors[:, -1]
    values, vectors = np.linalg.eigh(centred @ centred.T)
    top = max(values[-1], 0.0)
    direction = centred.T @ vectors[:, -1]
    norm = np.linalg.norm(direction)
    if norm == 0:
        direction = np.zeros(dim)
        direction[0] = 1.0
        return float(top), direction
    return float(top), direction / norm


def _kappa_max(y: np.ndarray, s: float, means: np.ndarray, v: float, log_pi: np.ndarray) -> tuple[float, np.ndarray]:
    resp = _responsibilities(y, s, means, v, log_pi)
    top, vector = _top_eigen(resp, means)
    return s**2 * top / (v + s**2) ** 2 + v / (v + s**2), vector


def mixture_kappa_max(y, s: float, means, v: float, weights=None) -> tuple[float, np.ndarray]:
    """Largest Jacobian eigenvalue ``kappa_max(y, s)`` and its unit eigenvector.

    ``kappa_max = s^2 lambda_max(B_r(y))/(v + s^2)^2 + v/(v + s^2)``.

    >>> round(mixture_kappa_max(np.zeros(1), 1.0, np.array([[1.0], [-1.0]]), 1.0)[0], 12)
    0.75
    """
    s = _positive(s, "s")
    v = _positive(v, "v")
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    y = _points(y, means.shape[1])
    if y.ndim != 1:
        raise ValueError(f"y must be a single point of shape ({means.shape[1]},), got {y.shape}")
    return _kappa_max(y, s, means, v, log_pi)


def _training_set(data) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(data, dtype=float)
    if arr.ndim < 2 or arr.shape[0] == 0 or arr[0].size == 0:
        raise ValueError(
            f"data must be a non-empty array (n_samples, *field_shape), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("data must be finite")
    return arr.reshape(arr.shape[0], -1), arr.shape[1:]


def memorizing_denoiser(y, s: float, data) -> np.ndarray:
    """Exact denoiser of the empirical distribution of ``data`` (the ``v -> 0`` mixture).

    ``D(y) = sum_a w_a x_a``, ``w_a ∝ exp(-|y - x_a|^2/(2 s^2))`` (log-space softmax).

    Args:
        y: one field ``field_shape`` or a batch ``(n, *field_shape)``.
        s: noise level ``> 0``.
        data: training set ``(n_samples, *field_shape)``.

    Returns:
        Array with the shape of ``y``.

    >>> memorizing_denoiser(np.array([0.9]), 1e-3, np.array([[1.0], [-1.0]])).tolist()
    [1.0]
    """
    s = _positive(s, "s")
    flat, field_shape = _training_set(data)
    y = np.asarray(y, dtype=float)
    if y.shape == field_shape:
        batch = y.reshape(1, -1)
    elif y.ndim == len(field_shape) + 1 and y.shape[1:] == field_shape:
        batch = y.reshape(y.shape[0], -1)
    else:
        raise ValueError(
            f"y must have shape {field_shape} or (n, *{field_shape}) to match data, got {y.shape}"
        )
    if not np.all(np.isfinite(batch)):
        raise ValueError("y must be finite")
    log_pi = np.full(flat.shape[0], -np.log(flat.shape[0]))
    out = _denoise(batch, s, flat, 0.0, log_pi)
    return out.reshape(y.shape)


# ---------------------------------------------------------------------------
# Critical noise
# ---------------------------------------------------------------------------

KINDS = ("critical", "no transition", "none in range")


@dataclasses.dataclass(frozen=True, eq=False)
class CriticalNoise:
    """Critical noise of a mixture or memorizing model along its mean trajectory.

    Attributes:
        kind: ``"critical"`` (``kappa_max`` crosses 1 at ``s_c``), ``"no transition"``
            (proved: ``kappa_max < 1`` for every ``s > 0``), or ``"none in range"``
            (no crossing found on the searched grid; see the peak).
        s_c: critical noise level (``None`` unless ``kind == "critical"``).
        mode: unit eigenvector of ``J`` at ``s_c`` (else at the peak), field-shaped.
        s_grid: noise levels, decreasing.
        kappa_max: largest Jacobian eigenvalue along the mean trajectory on ``s_grid``.
        s_peak: grid point of the largest ``kappa_max`` (pseudo-critical point).
        kappa_peak: that largest value (minimum stiffness ``1 - kappa_peak``).
        moment_level_s_c: ``sqrt(lambda_max(B) - v)`` with prior weights
            (uniform for the memorizing model: ``lambda_max`` of the data
            covariance with ``1/N`` normalization); ``None`` when ``<= 0``.
        method: ``"symmetric point (exact)"`` or ``"mean trajectory (numerical)"``.
        trajectory: mean trajectory on ``s_grid``, ``(len(s_grid), *field_shape)``.
    """

    kind: str
    s_c: float | None
    mode: np.ndarray
    s_grid: np.ndarray
    kappa_max: np.ndarray
    s_peak: float
    kappa_peak: float
    moment_level_s_c: float | None
    method: str
    trajectory: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("mode", "s_grid", "kappa_max", "trajectory"):
            arr = np.array(getattr(self, name), dtype=float, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def critical_noise_variance(self) -> float | None:
        """``s_c^2`` or ``None``."""
        return None if self.s_c is None else self.s_c**2

    def to_dict(self) -> dict:
        """Plain-Python dictionary (lists for arrays), JSON-serializable."""
        return {
            "kind": self.kind,
            "s_c": self.s_c,
            "critical_noise_variance": self.critical_noise_variance,
            "mode": self.mode.tolist(),
            "s_grid": self.s_grid.tolist(),
            "kappa_max": self.kappa_max.tolist(),
            "s_peak": self.s_peak,
            "kappa_peak": self.kappa_peak,
            "moment_level_s_c": self.moment_level_s_c,
            "method": self.method,
            "trajectory": self.trajectory.tolist(),
        }

    def __repr__(self) -> str:
        s_c = "None" if self.s_c is None else f"{self.s_c:.6g}"
        moment = "None" if self.moment_level_s_c is None else f"{self.moment_level_s_c:.6g}"
        return (
            f"CriticalNoise(kind={self.kind!r}, s_c={s_c}, s_peak={self.s_peak:.6g}, "
            f"kappa_peak={self.kappa_peak:.6g}, moment_level_s_c={moment}, "
            f"method={self.method!r}, grid={self.s_grid.size} points "
            f"[{self.s_grid[0]:.3g} .. {self.s_grid[-1]:.3g}])"
        )


def _is_symmetric(means: np.ndarray, pi: np.ndarray) -> bool:
    distances = np.linalg.norm(means - pi @ means, axis=1)
    scale = max(distances.max(), np.abs(means).max(), 1e-300)
    # Equal distances up to round-off of the subtraction (a few ulps of the scale).
    return bool(np.ptp(distances) <= 1e-12 * scale)


def _default_grid(scale: float, s_min, s_max, n_grid: int) -> np.ndarray:
    s_max = 100.0 * scale if s_max is None else _positive(s_max, "s_max")
    s_min = 1e-3 * scale if s_min is None else _positive(s_min, "s_min")
    if s_min >= s_max:
        raise ValueError(f"s_min must be < s_max, got s_min={s_min}, s_max={s_max}")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 3:
        raise ValueError(f"n_grid must be an integer >= 3, got {n_grid!r}")
    return np.geomspace(s_max, s_min, int(n_grid))


def _integrate_mean_trajectory(means: np.ndarray, v: float, log_pi: np.ndarray, s_max: float, s_min: float):
    """Dense solution of ``dy/d ln s = y - D(y; s)`` from the weighted mean at ``s_max``.

    Starting exactly at the mean instead of on the true trajectory (which differs
    from it by ``O(s_max^-2)``) leaves an error that shrinks like ``s/s_max``
    further down (``kappa ~ 0`` at high noise).
    """
    start = np.exp(log_pi) @ means
    scale = max(np.abs(means).max(), 1e-300)

    def rhs(log_s, y):
        s = np.exp(log_s)
        return y - _denoise(y, s, means, v, log_pi)

    solution = integrate.solve_ivp(
        rhs,
        (np.log(s_max), np.log(s_min)),
        start,
        method="DOP853",
        dense_output=True,
        rtol=1e-10,
        atol=1e-12 * scale,
    )
    if not solution.success:
        raise RuntimeError(f"mean trajectory integration failed: {solution.message}")
    return solution


def mixture_mean_trajectory(s, means, v: float, weights=None) -> np.ndarray:
    """The mean trajectory: the probability-flow solution that starts at the data mean at high noise.

    Integrates ``dy/ds = (y - D(y; s))/s`` (in ``ln s``, DOP853, rtol 1e-10) from
    ``m_bar = sum_c pi_c m_c`` at ``s_max = max(s)`` down to ``min(s)``.

    Args:
        s: noise levels ``> 0``, 1-D, strictly decreasing.
        means, v, weights: as in :func:`mixture_denoiser`.

    Returns:
        ``(len(s), d)``.

    >>> mixture_mean_trajectory(np.array([10.0, 1.0]), np.array([[1.0], [-1.0]]), 0.5).tolist()
    [[0.0], [0.0]]
    """
    v = _positive(v, "v")
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    s = _decreasing_levels(s)
    return _trajectory_on_grid(means, v, log_pi, s)


def memorizing_mean_trajectory(s, data) -> np.ndarray:
    """Mean trajectory of the memorizing denoiser (``v = 0``, uniform weights).

    Args:
        s: noise levels ``> 0``, 1-D, strictly decreasing.
        data: training set ``(n_samples, *field_shape)``.

    Returns:
        ``(len(s), *field_shape)``.

    >>> memorizing_mean_trajectory(np.array([10.0, 0.1]), np.array([[1.0], [-1.0]])).tolist()
    [[0.0], [0.0]]
    """
    flat, field_shape = _training_set(data)
    s = _decreasing_levels(s)
    log_pi = np.full(flat.shape[0], -np.log(flat.shape[0]))
    return _trajectory_on_grid(flat, 0.0, log_pi, s).reshape((s.size, *field_shape))


def _decreasing_levels(s) -> np.ndarray:
    arr = np.asarray(s, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"s must be a 1-D array of >= 2 noise levels, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("s must be positive and finite")
    if np.any(np.diff(arr) >= 0):
        raise ValueError("s must be strictly decreasing (the reverse dynamics run from high to low noise)")
    return arr


def _trajectory_on_grid(means, v, log_pi, s) -> np.ndarray:
    solution = _integrate_mean_trajectory(means, v, log_pi, s[0], s[-1])
    return solution.sol(np.log(s)).T


def _critical_along_trajectory(
    means: np.ndarray, v: float, log_pi: np.ndarray, grid: np.ndarray, field_shape: tuple[int, ...]
) -> tuple[str, float | None, np.ndarray, np.ndarray, float, float, np.ndarray]:
    solution = _integrate_mean_trajectory(means, v, log_pi, grid[0], grid[-1])
    path = solution.sol(np.log(grid)).T
    kappas = np.array([_kappa_max(y, s, means, v, log_pi)[0] for y, s in zip(path, grid)])
    if not np.all(np.isfinite(kappas)):
        raise RuntimeError("non-finite kappa_max along the mean trajectory")

    def excess(log_s: float) -> float:
        return _kappa_max(solution.sol(log_s), float(np.exp(log_s)), means, v, log_pi)[0] - 1.0

    above = np.nonzero(kappas >= 1.0)[0]
    peak = int(np.argmax(kappas))
    if above.size and above[0] > 0:
        first = above[0]
        log_s_c = optimize.brentq(
            excess, np.log(grid[first]), np.log(grid[first - 1]), xtol=1e-13, rtol=4 * np.finfo(float).eps
        )
        s_c = float(np.exp(log_s_c))
        _, mode = _kappa_max(solution.sol(log_s_c), s_c, means, v, log_pi)
        kind = "critical"
    elif above.size:
        raise ValueError(
            f"kappa_max = {kappas[0]:.4g} >= 1 already at s_max = {grid[0]:.4g}; raise s_max"
        )
    else:
        s_c = None
        _, mode = _kappa_max(path[peak], grid[peak], means, v, log_pi)
        kind = "none in range"
    return kind, s_c, mode.reshape(field_shape), kappas, float(grid[peak]), float(kappas[peak]), path


def mixture_critical_noise(
    means,
    v: float,
    weights=None,
    *,
    s_min: float | None = None,
    s_max: float | None = None,
    n_grid: int = 200,
    method: str = "auto",
) -> CriticalNoise:
    """Critical noise of a Gaussian mixture along its mean trajectory.

    If every ``|m_c - m_bar|`` is equal (``m_bar = sum pi_c m_c``), ``y = m_bar`` is
    an exact, invariant trajectory with ``r = pi`` on it, and
    ``s_c^2 = lambda_max(B) - v`` (``"no transition"`` if ``lambda_max(B) <= v``).
    Otherwise the mean trajectory is integrated and ``kappa_max(s) = 1`` is
    bracketed on a log grid and refined with Brent's method.

    For ``v > 0``, ``kappa_max -> 1`` from below as ``s -> 0`` whatever the means
    (each component is a Gaussian with its own crossover at ``s^2 = v``), so when
    no crossing is found the peak often sits at the low end of the grid: read
    ``s_peak`` together with ``kappa_peak`` and the curve.

    Args:
        means: ``(n_components, d)``.
        v: component variance ``> 0``.
        weights: ``(n_components,)`` positive; uniform if None.
        s_min, s_max: grid range (defaults ``1e-3`` and ``100`` times
            ``sqrt(trace B + v)``).
        n_grid: number of grid points (geometric, decreasing).
        method: ``"auto"``, ``"symmetric"`` (closed form; the means must be
            symmetric) or ``"trajectory"`` (numerical in every case).

    Returns:
        :class:`CriticalNoise`.

    >>> r = mixture_critical_noise(np.array([[2.0], [-2.0]]), 1.0)
    >>> r.kind, round(r.s_c**2, 12)
    ('critical', 3.0)
    """
    v = _positive(v, "v")
    means = _means(means)
    log_pi = _log_weights(weights, means.shape[0])
    if method not in ("auto", "symmetric", "trajectory"):
        raise ValueError(f"method must be 'auto', 'symmetric' or 'trajectory', got {method!r}")
    pi = np.exp(log_pi)
    between = between_component_covariance(means, pi)
    top = float(max(np.linalg.eigvalsh(between)[-1], 0.0))
    scale = float(np.sqrt(np.trace(between) + v))
    grid = _default_grid(scale, s_min, s_max, n_grid)
    moment = float(np.sqrt(top - v)) if top > v else None
    symmetric = _is_symmetric(means, pi)
    if method == "symmetric" and not symmetric:
        raise ValueError(
            "method='symmetric' needs all |m_c - m_bar| equal (m_bar the weighted mean); "
            "use method='trajectory'"
        )
    if symmetric and method != "trajectory":
        values, vectors = np.linalg.eigh(between)
        kappas = grid**2 * top / (v + grid**2) ** 2 + v / (v + grid**2)
        peak = int(np.argmax(kappas))
        path = np.broadcast_to(pi @ means, (grid.size, means.shape[1]))
        kind = "critical" if moment is not None else "no transition"
        if moment is not None and not (grid[-1] <= moment <= grid[0]):
            kind = "none in range"
        return CriticalNoise(
            kind=kind,
            s_c=moment if kind == "critical" else None,
            mode=vectors[:, -1],
            s_grid=grid,
            kappa_max=kappas,
            s_peak=float(grid[peak]),
            kappa_peak=float(kappas[peak]),
            moment_level_s_c=moment,
            method="symmetric point (exact)",
            trajectory=path,
        )
    kind, s_c, mode, kappas, s_peak, kappa_peak, path = _critical_along_trajectory(
        means, v, log_pi, grid, (means.shape[1],)
    )
    return CriticalNoise(
        kind=kind,
        s_c=s_c,
        mode=mode,
        s_grid=grid,
        kappa_max=kappas,
        s_peak=s_peak,
        kappa_peak=kappa_peak,
        moment_level_s_c=moment,
        method="mean trajectory (numerical)",
        trajectory=path,
    )


def memorizing_critical_noise(
    data, *, s_min: float | None = None, s_max: float | None = None, n_grid: int = 200
) -> CriticalNoise:
    """Exact critical noise of the memorizing denoiser along its mean trajectory.

    The trajectory starts at the data mean at ``s_max``; along it the weights are
    not uniform, ``kappa_max(s) = lambda_max(B_w(y(s)))/s^2`` (``B_w`` the
    ``w``-weighted data covariance), and ``s_c`` is its first crossing of 1. The
    high-noise (uniform-weight) value ``sqrt(lambda_max(C))``, ``C`` the data
    covariance with ``1/N`` normalization, is reported as ``moment_level_s_c``.

    Args:
        data: training set ``(n_samples, *field_shape)``.
        s_min, s_max: grid range (defaults ``1e-3`` and ``100`` times ``sqrt(trace C)``).
        n_grid: number of grid points.

    Returns:
        :class:`CriticalNoise` (``mode`` and ``trajectory`` field-shaped).

    >>> r = memorizing_critical_noise(np.array([[1.0], [-1.0]]))
    >>> r.kind, round(r.s_c, 9), r.moment_level_s_c
    ('critical', 1.0, 1.0)
    """
    flat, field_shape = _training_set(data)
    log_pi = np.full(flat.shape[0], -np.log(flat.shape[0]))
    uniform = np.exp(log_pi)
    top = _top_eigen(uniform, flat)[0]
    total = float(np.sum((flat - flat.mean(axis=0)) ** 2) / flat.shape[0])  # trace of C
    if total <= 0:
        grid = _default_grid(1.0, s_min, s_max, n_grid)
        mean = flat.mean(axis=0)
        mode = np.zeros(flat.shape[1])
        mode[0] = 1.0
        return CriticalNoise(
            kind="no transition",
            s_c=None,
            mode=mode.reshape(field_shape),
            s_grid=grid,
            kappa_max=np.zeros(grid.size),
            s_peak=float(grid[0]),
            kappa_peak=0.0,
            moment_level_s_c=None,
            method="mean trajectory (numerical)",
            trajectory=np.broadcast_to(mean, (grid.size, flat.shape[1])).reshape(
                (grid.size, *field_shape)
            ),
        )
    grid = _default_grid(float(np.sqrt(total)), s_min, s_max, n_grid)
    kind, s_c, mode, kappas, s_peak, kappa_peak, path = _critical_along_trajectory(
        flat, 0.0, log_pi, grid, field_shape
    )
    return CriticalNoise(
        kind=kind,
        s_c=s_c,
        mode=mode,
        s_grid=grid,
        kappa_max=kappas,
        s_peak=s_peak,
        kappa_peak=kappa_peak,
        moment_level_s_c=float(np.sqrt(top)),
        method="mean trajectory (numerical)",
        trajectory=path.reshape((grid.size, *field_shape)),
    )


# ---------------------------------------------------------------------------
# Two-component order parameter and susceptibility (numeric)
# ---------------------------------------------------------------------------


def _two_component_args(s, m_norm, v) -> tuple[np.ndarray, float, float, float]:
    s_arr = np.asarray(s, dtype=float)
    if s_arr.ndim > 1 or s_arr.size == 0 or not np.all(np.isfinite(s_arr)) or np.any(s_arr <= 0):
        raise ValueError(f"s must be positive and finite (scalar or 1-D), got {s!r}")
    m_norm = _positive(m_norm, "m_norm")
    v = _positive(v, "v")
    critical_sq = m_norm**2 - v
    if critical_sq <= 0:
        raise ValueError(
            f"no transition: |m|^2 = {m_norm**2:.6g} <= v = {v:.6g} (needs |m|^2 > v)"
        )
    return s_arr, m_norm, v, critical_sq


def _stable_fixed_point(s: float, m_norm: float, v: float) -> float:
    total = v + s**2
    if total >= m_norm**2:
        return 0.0

    def residual(y):
        return y - m_norm * np.tanh(m_norm * y / total)

    lower = 1e-150 * m_norm
    if residual(lower) >= 0:
        # s^2 so close to s_c^2 that the slope 1 - m^2/(v + s^2) is below round-off:
        # the normal form is exact to that order.
        return float(np.sqrt(3.0 * (m_norm**2 - total)) * total / m_norm**2)
    return float(optimize.brentq(residual, lower, m_norm, xtol=1e-300, rtol=4 * np.finfo(float).eps))


def two_component_order_parameter(s, m_norm: float, v: float) -> np.ndarray:
    """Order parameter ``y*(s)`` of the ``+-m`` mixture: the stable fixed point of ``y = D(y; s)``.

    ``y* = 0`` for ``s >= s_c``; below, the positive root of ``y = |m| tanh(|m| y/(v + s^2))``
    (Brent's method). Near ``s_c``, ``y* ≈ sqrt(3 (s_c^2 - s^2))``.

    Args:
        s: noise level(s) ``> 0``.
        m_norm: ``|m| > 0``.
        v: component variance ``> 0``, ``v < |m|^2``.

    Returns:
        Array with the shape of ``s``.

    >>> float(two_component_order_parameter(2.0, 1.0, 0.5))
    0.0
    """
    s_arr, m_norm, v, _ = _two_component_args(s, m_norm, v)
    values = np.array([_stable_fixed_point(float(x), m_norm, v) for x in np.atleast_1d(s_arr)])
    return values.reshape(s_arr.shape)


def two_component_susceptibility(s, m_norm: float, v: float) -> np.ndarray:
    """``chi = dy*/dh`` of the stable fixed point for the weight tilt ``pi_+- ∝ exp(+-h)``.

    Implicit differentiation of ``y = |m| tanh(h + |m| y/(v + s^2))`` at ``h = 0``:
    ``chi = |m| c/(1 - |m|^2 c/(v + s^2))``, ``c = 1 - (y*/|m|)^2``.

    Raises:
        ValueError: at ``s = s_c`` exactly, where ``chi`` diverges.

    >>> round(float(two_component_susceptibility(2.0, 1.0, 0.5)), 12)  # 1*4.5/(4.5-1)
    1.285714285714
    """
    s_arr, m_norm, v, critical_sq = _two_component_args(s, m_norm, v)
    if np.any(s_arr**2 == critical_sq):
        raise ValueError(f"the susceptibility diverges at s = s_c = {np.sqrt(critical_sq):.17g}")
    order = two_component_order_parameter(s_arr, m_norm, v)
    total = v + s_arr**2
    slope = 1.0 - (order / m_norm) ** 2
    return m_norm * slope / (1.0 - m_norm**2 * slope / total)


@functools.cache
def _ou_time_function():
    return to_numeric(ou_critical_time(), sp.Symbol("Lambda", positive=True))


def ou_critical_time_numeric(critical_noise_variance) -> np.ndarray:
    """``t_c = 1/2 ln(1 + s_c^2)`` in the OU clock (lambdified from :func:`ou_critical_time`).

    >>> round(float(ou_critical_time_numeric(np.e**2 - 1)), 12)
    1.0
    """
    arr = np.asarray(critical_noise_variance, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"critical_noise_variance must be positive and finite, got {critical_noise_variance!r}"
        )
    return np.asarray(_ou_time_function()(arr), dtype=float)
