"""Tweedie's identities and the linear stability of the reverse dynamics (THEORY.md 1-2).

Conventions: ``y = x_0 + s eps`` (VE-equivalent noise level ``s``), denoiser
``D(y; s) = E[x_0 | y]``, score ``grad log p_s(y) = (D - y)/s^2``.

Derived here, symbolically:

- Tweedie: ``D = y + s^2 d/dy log p_s`` equals the posterior mean, and
  ``J = dD/dy = Var[x_0 | y] / s^2`` (1-D, any prior, through the Gaussian
  convolution identity; and explicitly for a discrete prior with ``n`` atoms).
- The probability-flow ODE ``dy/ds = (y - D)/s`` and the VE reverse SDE
  ``dy = 2 (y - D)/s ds + sqrt(2 s |ds|) xi``, both from the forward process
  ``dy = sqrt(d(s^2)/dt) dW`` and Anderson's time reversal (Anderson 1982,
  Stoch. Proc. Appl. 12, 313; Song et al. 2021, ICLR, eqs. 6 and 13).
- Linearization around a trajectory along an eigenvector of ``J`` with
  eigenvalue ``kappa``: ``d delta / d ln s = (1 - kappa) delta`` for the ODE,
  ``2 (1 - kappa)`` for the mean of the SDE, and the exact SDE variance.
- The stability threshold ``kappa = 1`` for both.

Numeric helpers used by the checks: :func:`finite_difference_jacobian` and the
exact posterior moments of a 1-D discrete prior.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import sympy as sp

__all__ = [
    "gaussian_kernel_moment_derivative",
    "tweedie_denoiser_from_moments",
    "tweedie_jacobian_from_moments",
    "discrete_prior_denoiser",
    "discrete_prior_posterior_variance",
    "discrete_prior_tweedie_residual",
    "probability_flow_drift",
    "reverse_sde_drift",
    "reverse_sde_noise_variance",
    "ode_perturbation_rate",
    "ode_perturbation_solution",
    "sde_perturbation_mean_rate",
    "sde_perturbation_variance_equation",
    "sde_perturbation_variance_solution",
    "stability_threshold",
    "finite_difference_jacobian",
    "discrete_prior_posterior_moments",
]

# Symbols shared by the derivations (sympy symbols with equal names and
# assumptions compare equal, so callers can rebuild them).
_y = sp.Symbol("y", real=True)
_x = sp.Symbol("x", real=True)
_s = sp.Symbol("s", positive=True)
_s0 = sp.Symbol("s0", positive=True)
_kappa = sp.Symbol("kappa", nonnegative=True)
_denoised = sp.Symbol("D", real=True)
_delta0 = sp.Symbol("delta0", real=True)
_variance0 = sp.Symbol("V0", positive=True)


# ---------------------------------------------------------------------------
# Tweedie's identities
# ---------------------------------------------------------------------------


@functools.cache
def gaussian_kernel_moment_derivative(order: int) -> sp.Expr:
    """``d/dy [(x - y)^k N(y; x, s^2)] / N(y; x, s^2)`` (the convolution identity).

    With ``M_k(y) = int (x - y)^k N(y; x, s^2) p_0(x) dx`` (so that
    ``p_s = M_0``), differentiating under the integral gives
    ``dM_k/dy = -k M_{k-1} + M_{k+1}/s^2``; this function returns the integrand
    factor that proves it.

    Args:
        order: the power ``k >= 0``.

    Returns:
        ``-k (x - y)^(k-1) + (x - y)^(k+1)/s^2``, expanded.

    >>> gaussian_kernel_moment_derivative(0)
    x/s**2 - y/s**2
    >>> gaussian_kernel_moment_derivative(1)
    -1 + x**2/s**2 - 2*x*y/s**2 + y**2/s**2
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    kernel = sp.exp(-((_y - _x) ** 2) / (2 * _s**2)) / sp.sqrt(2 * sp.pi * _s**2)
    return sp.expand(sp.simplify(sp.diff((_x - _y) ** order * kernel, _y) / kernel))


def _moment_functions() -> tuple[sp.Function, sp.Function, sp.Function]:
    return tuple(sp.Function(f"M{k}")(_y) for k in range(3))  # type: ignore[return-value]


def _moment_derivative_rules() -> dict:
    """``dM_k/dy`` in terms of ``M_{k-1}, M_{k+1}``, read off the kernel identity."""
    moments = _moment_functions()
    rules = {}
    for k in range(2):
        factor = gaussian_kernel_moment_derivative(k)
        # factor = -k (x-y)^(k-1) + (x-y)^(k+1)/s^2: map (x-y)^j -> M_j.
        u = sp.Symbol("u", real=True)
        poly = sp.Poly(sp.expand(factor.subs(_x, _y + u)), u)
        rules[sp.Derivative(moments[k], _y)] = sum(
            coeff * moments[j] for (j,), coeff in poly.terms()
        )
    return rules


@functools.cache
def tweedie_denoiser_from_moments() -> sp.Expr:
    """``D = y + s^2 d/dy log p_s`` in terms of the moments ``M_k`` (any 1-D prior).

    ``M_k(y) = int (x - y)^k N(y; x, s^2) p_0(x) dx``, so ``M_1/M_0 = E[x_0 - y | y]``
    and the result says ``D = E[x_0 | y]`` (Tweedie's first identity).

    >>> tweedie_denoiser_from_moments()
    y + M1(y)/M0(y)
    """
    m0, _, _ = _moment_functions()
    denoiser = _y + _s**2 * sp.diff(sp.log(m0), _y)
    return sp.simplify(denoiser.subs(_moment_derivative_rules()))


@functools.cache
def tweedie_jacobian_from_moments() -> sp.Expr:
    """``dD/dy`` in terms of the moments ``M_k`` (any 1-D prior).

    The result is ``(M2/M0 - (M1/M0)^2)/s^2 = Var[x_0 - y | y]/s^2
    = Var[x_0 | y]/s^2``: Tweedie's second identity.

    >>> j = tweedie_jacobian_from_moments()
    >>> M0, M1, M2 = [sp.Function(f"M{k}")(sp.Symbol("y", real=True)) for k in range(3)]
    >>> s = sp.Symbol("s", positive=True)
    >>> sp.simplify(j - (M2 / M0 - (M1 / M0) ** 2) / s**2)
    0
    """
    jac = sp.diff(tweedie_denoiser_from_moments(), _y)
    return sp.simplify(jac.subs(_moment_derivative_rules()))


def _discrete_prior_symbols(n_atoms: int) -> tuple[tuple, tuple]:
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
        raise ValueError(f"n_atoms must be an integer >= 1, got {n_atoms!r}")
    atoms = sp.symbols(f"a1:{n_atoms + 1}", real=True)
    weights = sp.symbols(f"w1:{n_atoms + 1}", positive=True)
    return atoms, weights


def _discrete_prior_terms(n_atoms: int) -> tuple[tuple, tuple, list]:
    atoms, weights = _discrete_prior_symbols(n_atoms)
    # Unnormalized posterior weights w_i N(y; a_i, s^2); the common factor
    # 1/sqrt(2 pi s^2) cancels in every ratio and log-derivative below.
    terms = [w * sp.exp(-((_y - a) ** 2) / (2 * _s**2)) for a, w in zip(atoms, weights)]
    return atoms, weights, terms


@functools.cache
def discrete_prior_denoiser(n_atoms: int) -> sp.Expr:
    """``D = y + s^2 d/dy log p_s`` for ``p_0 = sum_i w_i delta(x - a_i)`` in 1-D.

    Args:
        n_atoms: number of atoms ``a_1..a_n`` (weights ``w_i > 0``, any
            normalization).

    Returns:
        ``sum_i a_i w_i e_i / sum_i w_i e_i`` with ``e_i = exp(-(y - a_i)^2/2 s^2)``.

    >>> sp.simplify(discrete_prior_denoiser(1))
    a1
    """
    atoms, _, terms = _discrete_prior_terms(n_atoms)
    marginal = sum(terms)
    denoiser = _y + _s**2 * sp.diff(sp.log(marginal), _y)
    posterior_mean = sum(a * t for a, t in zip(atoms, terms)) / marginal
    # The score form must equal the posterior mean (Tweedie's first identity).
    if sp.simplify(denoiser - posterior_mean) != 0:
        raise AssertionError("Tweedie's first identity failed symbolically")
    return posterior_mean


def discrete_prior_posterior_variance(n_atoms: int) -> sp.Expr:
    """``Var[x_0 | y]`` for the discrete prior of :func:`discrete_prior_denoiser`.

    >>> sp.simplify(discrete_prior_posterior_variance(1))
    0
    """
    atoms, _, terms = _discrete_prior_terms(n_atoms)
    marginal = sum(terms)
    mean = sum(a * t for a, t in zip(atoms, terms)) / marginal
    second = sum(a**2 * t for a, t in zip(atoms, terms)) / marginal
    return second - mean**2


@functools.cache
def discrete_prior_tweedie_residual(n_atoms: int) -> sp.Expr:
    """``dD/dy - Var[x_0 | y]/s^2`` for a discrete prior with ``n_atoms`` atoms.

    Simplifies to zero: Tweedie's second identity, explicitly. Each Gaussian
    factor ``exp(-(y - a_i)^2/2 s^2)`` is differentiated by its rule
    ``dE_i/dy = -(y - a_i)/s^2 E_i`` and then replaced by a positive symbol, so the
    residual is a rational function that ``cancel`` reduces exactly.

    >>> discrete_prior_tweedie_residual(2)
    0
    """
    atoms, weights = _discrete_prior_symbols(n_atoms)
    kernels = [sp.Function(f"E{i + 1}")(_y) for i in range(n_atoms)]
    rules = {sp.Derivative(k, _y): -(_y - a) / _s**2 * k for k, a in zip(kernels, atoms)}
    plain = dict(zip(kernels, sp.symbols(f"E1:{n_atoms + 1}", positive=True)))
    terms = [w * k for w, k in zip(weights, kernels)]
    marginal = sum(terms)
    denoiser = _y + _s**2 * sp.diff(sp.log(marginal), _y).subs(rules)
    mean = sum(a * t for a, t in zip(atoms, terms)) / marginal
    variance = sum(a**2 * t for a, t in zip(atoms, terms)) / marginal - mean**2
    residual = sp.diff(denoiser, _y).subs(rules) - variance / _s**2
    return sp.cancel(sp.together(residual.subs(plain)))


# ---------------------------------------------------------------------------
# Reverse dynamics from Anderson's reversal of the VE forward process
# ---------------------------------------------------------------------------


def _reverse_time_pieces() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Forward ``dy = g dW`` with ``g^2 = d(s(t)^2)/dt``: returns ``(g^2, score, ds/dt)``.

    ``s(t)`` is a generic increasing function of the forward time; the results
    are expressed per unit ``ds`` and so hold for every schedule.
    """
    t = sp.Symbol("t", real=True)
    noise_level = sp.Function("s", positive=True)(t)
    diffusion_sq = sp.diff(noise_level**2, t)
    score = (_denoised - _y) / noise_level**2
    return diffusion_sq, score, sp.diff(noise_level, t)


def _as_plain_s(expr: sp.Expr) -> sp.Expr:
    t = sp.Symbol("t", real=True)
    return sp.simplify(expr.subs(sp.Function("s", positive=True)(t), _s))


@functools.cache
def probability_flow_drift() -> sp.Expr:
    """Drift per unit ``ds`` of the probability-flow ODE, from ``dy = -g^2/2 score dt``.

    >>> probability_flow_drift()
    (-D + y)/s
    """
    diffusion_sq, score, ds_dt = _reverse_time_pieces()
    return _as_plain_s(-diffusion_sq * score / 2 / ds_dt)


@functools.cache
def reverse_sde_drift() -> sp.Expr:
    """Drift per unit ``ds`` of the reverse SDE (Anderson: ``dy = -g^2 score dt + g dW``).

    The factor is 2, twice the probability-flow drift.

    >>> reverse_sde_drift()
    2*(-D + y)/s
    """
    diffusion_sq, score, ds_dt = _reverse_time_pieces()
    return _as_plain_s(-diffusion_sq * score / ds_dt)


@functools.cache
def reverse_sde_noise_variance() -> sp.Expr:
    """Variance of the reverse SDE's noise increment per unit ``|ds|``: ``g^2 |dt|/|ds|``.

    So the increment is ``sqrt(2 s |ds|) xi`` with ``xi ~ N(0, 1)``.

    >>> reverse_sde_noise_variance()
    2*s
    """
    diffusion_sq, _, ds_dt = _reverse_time_pieces()
    return _as_plain_s(diffusion_sq / ds_dt)


# ---------------------------------------------------------------------------
# Linearization around a reference trajectory
# ---------------------------------------------------------------------------


def _linear_rate_per_log_s(drift: sp.Expr) -> sp.Expr:
    """``d(drift)/d delta * s`` with ``D -> D_ref + kappa delta`` (rate per ``ln s``)."""
    delta = sp.Symbol("delta", real=True)
    y_ref = sp.Symbol("y_ref", real=True)
    d_ref = sp.Symbol("D_ref", real=True)
    linear = drift.subs({_y: y_ref + delta, _denoised: d_ref + _kappa * delta})
    return sp.factor(sp.simplify(sp.diff(linear, delta) * _s))


@functools.cache
def ode_perturbation_rate() -> sp.Expr:
    """Rate ``r`` in ``d delta / d ln s = r delta`` for the ODE along an eigenvector of ``J``.

    >>> ode_perturbation_rate()
    1 - kappa
    """
    return sp.expand(_linear_rate_per_log_s(probability_flow_drift()))


@functools.cache
def ode_perturbation_solution() -> sp.Expr:
    """``delta(s)`` for constant ``kappa`` with ``delta(s0) = delta0`` (dsolve).

    As ``s`` decreases from ``s0`` it shrinks when ``kappa < 1`` and grows when
    ``kappa > 1``.

    >>> sp.simplify(ode_perturbation_solution() - sp.Symbol("delta0", real=True)
    ...     * (sp.Symbol("s", positive=True) / sp.Symbol("s0", positive=True))
    ...     ** (1 - sp.Symbol("kappa", nonnegative=True)))
    0
    """
    delta = sp.Function("delta")
    rate = ode_perturbation_rate()
    solution = sp.dsolve(
        sp.Eq(delta(_s).diff(_s), rate * delta(_s) / _s), delta(_s), ics={delta(_s0): _delta0}
    )
    return sp.simplify(solution.rhs)


@functools.cache
def sde_perturbation_mean_rate() -> sp.Expr:
    """Rate of the SDE's linearized mean, ``d <delta> / d ln s = r <delta>``: twice the ODE's.

    >>> sde_perturbation_mean_rate()
    2 - 2*kappa
    """
    return sp.expand(_linear_rate_per_log_s(reverse_sde_drift()))


def sde_perturbation_variance_equation() -> sp.Expr:
    """``dV/ds`` for ``V = <delta^2>`` of the linearized SDE integrated downward in ``s``.

    Ito: ``d(delta^2) = 2 delta d delta + (d delta)^2`` with
    ``d delta = a delta ds + sqrt(2 s |ds|) xi`` and ``ds = -|ds|``, so
    ``dV/ds = 2 a V - 2 s`` with ``a = 2 (1 - kappa)/s``.

    >>> sde_perturbation_variance_equation()
    -4*V*kappa/s + 4*V/s - 2*s
    """
    variance = sp.Symbol("V", positive=True)
    drift_coefficient = sde_perturbation_mean_rate() / _s
    # (d delta)^2 = noise variance * |ds| and |ds| = -ds going down in s.
    return sp.expand(2 * drift_coefficient * variance - reverse_sde_noise_variance())


def _solve_linear_first_order(
    rate: sp.Expr, forcing: sp.Expr, initial: sp.Expr
) -> sp.Expr:
    """Solve ``dV/ds = rate(s) V + forcing(s)``, ``V(s0) = initial``, by variation of constants.

    The solution is checked by substitution before it is returned.
    """
    dummy = sp.Symbol("sigma_", positive=True)
    propagator = sp.exp(sp.integrate(rate.subs(_s, dummy), (dummy, _s0, _s), conds="none"))
    propagator = sp.powsimp(sp.simplify(propagator), force=True)
    integral = sp.integrate(
        (forcing / propagator).subs(_s, dummy), (dummy, _s0, _s), conds="none"
    )
    solution = sp.simplify(propagator * (initial + integral))
    residual = sp.simplify(sp.diff(solution, _s) - rate * solution - forcing)
    if residual != 0 or sp.simplify(solution.subs(_s, _s0) - initial) != 0:
        raise AssertionError(f"linear ODE solution failed its check: residual {residual}")
    return solution


@functools.cache
def sde_perturbation_variance_solution() -> sp.Expr:
    """``V(s)`` for constant ``kappa != 1/2`` with ``V(s0) = V0``.

    ``V = (V0 - s0^2/(1 - 2 kappa)) (s/s0)^(4 (1 - kappa)) + s^2/(1 - 2 kappa)``:
    the homogeneous part has the doubled exponent ``2 * 2 (1 - kappa)`` (variance
    of an amplitude growing like ``s^(2 (1 - kappa))``); the second term is the
    injected noise. For ``kappa = 0`` and ``V0 = s0^2`` it gives ``V = s^2``.

    >>> s, s0 = sp.Symbol("s", positive=True), sp.Symbol("s0", positive=True)
    >>> kappa, V0 = sp.Symbol("kappa", nonnegative=True), sp.Symbol("V0", positive=True)
    >>> expected = (V0 - s0**2 / (1 - 2 * kappa)) * (s / s0) ** (4 - 4 * kappa) + s**2 / (1 - 2 * kappa)
    >>> sp.simplify(sde_perturbation_variance_solution() - expected)
    0
    """
    variance = sp.Symbol("V", positive=True)
    equation = sde_perturbation_variance_equation()
    rate = sp.diff(equation, variance)
    forcing = sp.simplify(equation - rate * variance)
    return _solve_linear_first_order(rate, forcing, _variance0)


def stability_threshold() -> tuple[sp.Expr, sp.Expr]:
    """Values of ``kappa`` at which the ODE and SDE growth rates vanish.

    >>> stability_threshold()
    (1, 1)
    """
    (ode_root,) = sp.solve(ode_perturbation_rate(), _kappa)
    (sde_root,) = sp.solve(sde_perturbation_mean_rate(), _kappa)
    return ode_root, sde_root


# ---------------------------------------------------------------------------
# Numerics used by the checks
# ---------------------------------------------------------------------------


def finite_difference_jacobian(
    func: Callable[[np.ndarray], np.ndarray], point: np.ndarray, step: float = 1e-5
) -> np.ndarray:
    """Central finite-difference Jacobian ``dF_i/dy_j`` of ``func`` at ``point``.

    Args:
        func: maps an array of shape ``(d,)`` to an array of shape ``(m,)``.
        point: where to differentiate, shape ``(d,)``.
        step: difference step (truncation error ``O(step^2)``).

    Returns:
        ``(m, d)`` array.

    >>> finite_difference_jacobian(lambda v: 3.0 * v, np.zeros(2)).round(8).tolist()
    [[3.0, 0.0], [0.0, 3.0]]
    """
    point = np.asarray(point, dtype=float)
    if point.ndim != 1 or point.size == 0:
        raise ValueError(f"point must be a non-empty 1-D array, got shape {point.shape}")
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step must be a positive finite float, got {step!r}")
    columns = []
    for j in range(point.size):
        offset = np.zeros_like(point)
        offset[j] = step
        columns.append(
            (np.asarray(func(point + offset)) - np.asarray(func(point - offset))) / (2 * step)
        )
    return np.stack(columns, axis=-1)


def discrete_prior_posterior_moments(
    y: np.ndarray | float, s: float, atoms: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior mean and variance of ``x_0`` for a 1-D discrete prior (Bayes).

    Args:
        y: observation(s), any shape.
        s: noise level ``> 0``.
        atoms: prior atoms ``(n,)``.
        weights: prior weights ``(n,)``, positive (normalized here); uniform if None.

    Returns:
        ``(mean, variance)``, each with the shape of ``y``.

    >>> m, v = discrete_prior_posterior_moments(0.0, 1.0, np.array([-1.0, 1.0]))
    >>> float(m), float(v)
    (0.0, 1.0)
    """
    s = _positive_float(s, "s")
    atoms = np.asarray(atoms, dtype=float)
    if atoms.ndim != 1 or atoms.size == 0:
        raise ValueError(f"atoms must be a non-empty 1-D array, got shape {atoms.shape}")
    if weights is None:
        weights = np.full(atoms.size, 1.0 / atoms.size)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != atoms.shape or np.any(weights <= 0) or not np.all(np.isfinite(weights)):
        raise ValueError(
            f"weights must be positive and finite with the shape of atoms {atoms.shape}, "
            f"got {weights!r}"
        )
    y = np.asarray(y, dtype=float)
    logits = np.log(weights / weights.sum()) - (y[..., None] - atoms) ** 2 / (2 * s**2)
    logits -= logits.max(axis=-1, keepdims=True)
    posterior = np.exp(logits)
    posterior /= posterior.sum(axis=-1, keepdims=True)
    mean = posterior @ atoms
    variance = posterior @ atoms**2 - mean**2
    # Guard tiny negative round-off of a zero variance.
    return mean, np.maximum(variance, 0.0)


def _positive_float(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return number
