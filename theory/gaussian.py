"""Gaussian field, the null model (THEORY.md 3.1).

``x_0 ~ N(mu, Sigma)``, ``Sigma = U diag(lambda_k) U^T``; for a stationary field on
a periodic lattice ``U`` is the Fourier basis and ``lambda_k = P(k)`` the power
spectrum. Every mode decouples, so the derivations are per mode (symbols ``y``,
``mu``, ``lambda``, ``s``).

Derived here, symbolically:

- the denoiser is the Wiener filter ``D_k = (lambda y + s^2 mu)/(lambda + s^2)``;
- ``kappa_k = lambda_k/(lambda_k + s^2) < 1`` for every ``s > 0`` (no instability);
  the crossover of mode ``k`` at ``s_k^2 = lambda_k`` (``kappa = 1/2``);
- the exact probability-flow ODE flow
  ``y_k(s) = mu_k + (y_k(s0) - mu_k) sqrt((lambda_k + s^2)/(lambda_k + s0^2))``
  and the SDE mean ``mu_k + (y_k(s0) - mu_k) (lambda_k + s^2)/(lambda_k + s0^2)``;
- the structure factor along the flow: from the stationary noisy ensemble
  ``y(s0) = x_0 + s0 eps`` it is ``S(k, s) = lambda_k + s^2`` for both ODE and SDE;
  from an arbitrary initial ensemble with ``S0(k)`` at ``s0`` it is
  ``S0 (lambda + s^2)/(lambda + s0^2)`` (ODE) and
  ``lambda + s^2 + (S0 - lambda - s0^2) ((lambda + s^2)/(lambda + s0^2))^2`` (SDE);
- the second-moment correlation length along the flow in closed form.

Spectrum convention (numeric functions): ``spectrum`` has the lattice shape, in
``numpy.fft`` order (index 0 is ``k = 0``), and equals the eigenvalue of the
circulant covariance, ``P(k) = sum_r C(r) exp(-i k.r)``; then the structure factor
``S(k) = <|FFT(delta y)(k)|^2>/N_sites`` of ``x_0`` is ``P(k)`` and that of white
noise of variance ``s^2`` is ``s^2``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from diffcrit.theory.bridge import to_numeric

__all__ = [
    "wiener_filter_mode",
    "gaussian_mode_kappa",
    "gaussian_mode_stiffness",
    "gaussian_mode_crossover_noise_variance",
    "gaussian_mode_ode_flow",
    "gaussian_mode_sde_mean",
    "gaussian_mode_ode_variance",
    "gaussian_mode_sde_variance",
    "stationary_flow_structure_factor",
    "stationary_flow_correlation_length",
    "gaussian_denoiser",
    "stationary_gaussian_denoiser",
    "gaussian_field_kappa",
    "gaussian_mode_flow",
    "gaussian_field_structure_factor",
    "gaussian_field_correlation_length",
]

_y = sp.Symbol("y", real=True)
_y0 = sp.Symbol("y0", real=True)
_mu = sp.Symbol("mu", real=True)
_lam = sp.Symbol("lambda", positive=True)
_s = sp.Symbol("s", positive=True)
_s0 = sp.Symbol("s0", positive=True)
_initial_variance = sp.Symbol("S0", positive=True)


# ---------------------------------------------------------------------------
# Symbolic derivations, per mode
# ---------------------------------------------------------------------------


@functools.cache
def wiener_filter_mode() -> sp.Expr:
    """Posterior mean of one mode, from Tweedie on the marginal ``N(mu, lambda + s^2)``.

    Cross-checked against completing the square in the posterior
    ``p(x | y) ∝ N(x; mu, lambda) N(y; x, s^2)``.

    >>> wiener_filter_mode()
    (lambda*y + mu*s**2)/(lambda + s**2)
    """
    log_marginal = -((_y - _mu) ** 2) / (2 * (_lam + _s**2))
    tweedie = _y + _s**2 * sp.diff(log_marginal, _y)
    x = sp.Symbol("x", real=True)
    log_posterior = -((x - _mu) ** 2) / (2 * _lam) - (_y - x) ** 2 / (2 * _s**2)
    (posterior_mode,) = sp.solve(sp.diff(log_posterior, x), x)  # Gaussian: mode = mean
    if sp.simplify(tweedie - posterior_mode) != 0:
        raise AssertionError("Wiener filter: Tweedie and Bayes disagree")
    return sp.factor(sp.simplify(tweedie), _y)


@functools.cache
def gaussian_mode_kappa() -> sp.Expr:
    """Jacobian eigenvalue ``kappa_k = dD_k/dy_k`` of mode ``k``.

    >>> gaussian_mode_kappa()
    lambda/(lambda + s**2)
    """
    return sp.simplify(sp.diff(wiener_filter_mode(), _y))


def gaussian_mode_stiffness() -> sp.Expr:
    """Stiffness ``gamma_k = 1 - kappa_k``; positive for all ``lambda, s > 0``.

    >>> g = gaussian_mode_stiffness()
    >>> g, g.is_positive
    (s**2/(lambda + s**2), True)
    """
    return sp.simplify(1 - gaussian_mode_kappa())


def gaussian_mode_crossover_noise_variance() -> sp.Expr:
    """Noise variance ``s_k^2`` at which ``kappa_k = 1/2`` (the crossover of mode ``k``).

    >>> gaussian_mode_crossover_noise_variance()
    lambda
    """
    s_sq = sp.Symbol("s_sq", positive=True)
    (root,) = sp.solve(sp.Eq(gaussian_mode_kappa().subs(_s, sp.sqrt(s_sq)), sp.Rational(1, 2)), s_sq)
    return root


@functools.cache
def gaussian_mode_ode_flow() -> sp.Expr:
    """Exact probability-flow solution ``y_k(s)`` with ``y_k(s0) = y0`` (dsolve of ``dy/ds = (y - D)/s``).

    >>> y0, mu = sp.Symbol("y0", real=True), sp.Symbol("mu", real=True)
    >>> lam, s, s0 = sp.symbols("lambda s s0", positive=True)
    >>> expected = mu + (y0 - mu) * sp.sqrt((lam + s**2) / (lam + s0**2))
    >>> sp.simplify(gaussian_mode_ode_flow() - expected)
    0
    """
    mode = sp.Function("y")
    drift = (mode(_s) - wiener_filter_mode().subs(_y, mode(_s))) / _s
    solution = sp.dsolve(sp.Eq(mode(_s).diff(_s), drift), mode(_s), ics={mode(_s0): _y0})
    return solution.rhs


@functools.cache
def gaussian_mode_sde_mean() -> sp.Expr:
    """Mean of mode ``k`` under the reverse SDE ``dy = 2 (y - D)/s ds + ...``, from ``y0`` at ``s0``.

    >>> y0, mu = sp.Symbol("y0", real=True), sp.Symbol("mu", real=True)
    >>> lam, s, s0 = sp.symbols("lambda s s0", positive=True)
    >>> sp.simplify(gaussian_mode_sde_mean() - mu - (y0 - mu) * (lam + s**2) / (lam + s0**2))
    0
    """
    mode = sp.Function("m")
    drift = 2 * (mode(_s) - wiener_filter_mode().subs(_y, mode(_s))) / _s
    solution = sp.dsolve(sp.Eq(mode(_s).diff(_s), drift), mode(_s), ics={mode(_s0): _y0})
    return solution.rhs


@functools.cache
def gaussian_mode_ode_variance() -> sp.Expr:
    """Variance of mode ``k`` along the ODE flow of an ensemble with variance ``S0`` at ``s0``.

    The flow is affine in ``y0`` (:func:`gaussian_mode_ode_flow`), so the variance
    is multiplied by the square of its slope.

    >>> gaussian_mode_ode_variance()
    S0*(lambda + s**2)/(lambda + s0**2)
    """
    slope = sp.diff(gaussian_mode_ode_flow(), _y0)
    return sp.simplify(_initial_variance * slope**2)


@functools.cache
def gaussian_mode_sde_variance() -> sp.Expr:
    """Variance of mode ``k`` along the reverse SDE from variance ``S0`` at ``s0``.

    Solves ``dV/ds = 4 (1 - kappa_k) V/s - 2 s`` (Ito, integrated downward in ``s``;
    see :func:`diffcrit.theory.tweedie.sde_perturbation_variance_equation`).

    >>> lam, s, s0, S0 = sp.symbols("lambda s s0 S0", positive=True)
    >>> expected = lam + s**2 + (S0 - lam - s0**2) * ((lam + s**2) / (lam + s0**2)) ** 2
    >>> sp.simplify(gaussian_mode_sde_variance() - expected)
    0
    """
    from diffcrit.theory.tweedie import _solve_linear_first_order, sde_perturbation_variance_equation

    variance = sp.Symbol("V", positive=True)
    equation = sde_perturbation_variance_equation().subs(
        sp.Symbol("kappa", nonnegative=True), gaussian_mode_kappa()
    )
    rate = sp.diff(equation, variance)
    forcing = sp.simplify(equation - rate * variance)
    return _solve_linear_first_order(rate, forcing, _initial_variance)


@functools.cache
def stationary_flow_structure_factor() -> tuple[sp.Expr, sp.Expr]:
    """``S(k, s)`` along the ODE and the SDE from the stationary noisy ensemble at ``s0``.

    ``y(s0) = x_0 + s0 eps`` has ``S0 = lambda + s0^2`` in every mode; both
    dynamics keep the marginal exact: ``S(k, s) = lambda_k + s^2``.

    >>> stationary_flow_structure_factor()
    (lambda + s**2, lambda + s**2)
    """
    stationary = {_initial_variance: _lam + _s0**2}
    return (
        sp.simplify(gaussian_mode_ode_variance().subs(stationary)),
        sp.simplify(gaussian_mode_sde_variance().subs(stationary)),
    )


def stationary_flow_correlation_length() -> sp.Expr:
    """Second-moment length along one lattice axis for ``S(k, s) = P(k) + s^2``.

    ``xi_2 = sqrt(S(0)/S(k_min) - 1)/(2 sin(k_min/2))`` with ``S(0) = P0 + s^2`` and
    ``S(k_min) = P1 + s^2`` (symbols ``P0 > P1``; ``k_min = 2 pi/L``). It decreases
    monotonically with ``s``: no sharp rise, only the smooth approach to its
    ``s -> 0`` value (the data's own length).

    >>> stationary_flow_correlation_length()
    sqrt(P0 - P1)/(2*sqrt(P1 + s**2)*sin(k/2))
    """
    p0, p1 = sp.symbols("P0 P1", positive=True)
    k = sp.Symbol("k", positive=True)
    ratio = sp.simplify((p0 + _s**2) / (p1 + _s**2) - 1)
    return sp.sqrt(ratio) / (2 * sp.sin(k / 2))


# ---------------------------------------------------------------------------
# Numeric evaluation
# ---------------------------------------------------------------------------


@functools.cache
def _numeric(name: str):
    """Per-mode formulas as vectorised numpy functions (through the theory bridge), built once."""
    lam, s, s0, y0, mu = _lam, _s, _s0, _y0, _mu
    if name == "kappa":
        return to_numeric(gaussian_mode_kappa(), lam, s)
    if name == "ode_flow":
        return to_numeric(gaussian_mode_ode_flow(), y0, mu, lam, s0, s)
    if name == "ode_variance":
        return to_numeric(gaussian_mode_ode_variance(), _initial_variance, lam, s0, s)
    if name == "sde_variance":
        return to_numeric(gaussian_mode_sde_variance(), _initial_variance, lam, s0, s)
    raise KeyError(name)


def _noise_levels(s, name: str = "s") -> np.ndarray:
    arr = np.asarray(s, dtype=float)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite, got {s!r}")
    return arr


def _spectrum(spectrum) -> np.ndarray:
    arr = np.asarray(spectrum, dtype=float)
    if arr.size == 0:
        raise ValueError("spectrum must be non-empty")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(
            "spectrum must be finite and non-negative (eigenvalues of a covariance), "
            f"got min {np.nanmin(arr) if arr.size else arr!r}"
        )
    return arr


def _field_mean(mean, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(mean, dtype=float)
    try:
        np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        raise ValueError(
            f"mean must be a scalar or broadcastable to the lattice shape {shape}, got shape {arr.shape}"
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError("mean must be finite")
    return arr


def _broadcast_s(s_arr: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    return s_arr.reshape(s_arr.shape + (1,) * spectrum.ndim)


def gaussian_field_kappa(spectrum, s) -> np.ndarray:
    """``kappa_k = lambda_k/(lambda_k + s^2)`` for every mode.

    Args:
        spectrum: eigenvalues ``lambda_k >= 0`` (any shape, e.g. the lattice shape).
        s: noise level ``> 0``, scalar or 1-D array.

    Returns:
        Array of shape ``spectrum.shape`` (scalar ``s``) or ``(len(s), *spectrum.shape)``.

    >>> gaussian_field_kappa(np.array([1.0, 4.0]), 2.0).tolist()
    [0.2, 0.5]
    """
    spectrum = _spectrum(spectrum)
    s_arr = _noise_levels(s)
    return np.asarray(_numeric("kappa")(spectrum, _broadcast_s(s_arr, spectrum)), dtype=float)


def gaussian_denoiser(y, s: float, mean, covariance) -> np.ndarray:
    """Exact posterior mean ``mu + Sigma (Sigma + s^2 I)^(-1) (y - mu)`` (dense Wiener filter).

    Args:
        y: ``(d,)`` or ``(n, d)``.
        s: noise level ``> 0``.
        mean: ``(d,)``.
        covariance: ``(d, d)`` symmetric positive semi-definite.

    Returns:
        Array with the shape of ``y``.

    >>> gaussian_denoiser(np.array([2.0]), 1.0, np.zeros(1), np.eye(1)).tolist()
    [1.0]
    """
    s = _scalar_level(s)
    covariance = np.asarray(covariance, dtype=float)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1] or covariance.size == 0:
        raise ValueError(f"covariance must be a square (d, d) matrix, got shape {covariance.shape}")
    d = covariance.shape[0]
    if not np.allclose(covariance, covariance.T, rtol=1e-10, atol=1e-12 * np.abs(covariance).max()):
        raise ValueError("covariance must be symmetric")
    mean = np.asarray(mean, dtype=float)
    if mean.shape != (d,):
        raise ValueError(f"mean must have shape ({d},) to match covariance, got {mean.shape}")
    y = np.asarray(y, dtype=float)
    if y.ndim not in (1, 2) or y.shape[-1] != d:
        raise ValueError(f"y must have shape ({d},) or (n, {d}), got {y.shape}")
    eigenvalues, basis = np.linalg.eigh(covariance)
    if eigenvalues.min() < -1e-10 * max(eigenvalues.max(), 1.0):
        raise ValueError(f"covariance must be positive semi-definite, min eigenvalue {eigenvalues.min()}")
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    gain = eigenvalues / (eigenvalues + s**2)
    return mean + ((y - mean) @ basis) * gain @ basis.T


def _scalar_level(value, name: str = "s") -> float:
    """A single positive noise level (not an array)."""
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a positive scalar here, got shape {np.shape(value)}")
    return _noise_levels(value, name).item()


def _check_symmetric_spectrum(spectrum: np.ndarray) -> None:
    flipped = spectrum
    for axis in range(spectrum.ndim):
        flipped = np.roll(np.flip(flipped, axis=axis), 1, axis=axis)
    if not np.allclose(flipped, spectrum, rtol=1e-10, atol=1e-12 * max(spectrum.max(), 1e-300)):
        raise ValueError(
            "spectrum must satisfy P(k) = P(-k) (a real stationary field) in numpy.fft order"
        )


def stationary_gaussian_denoiser(y, s: float, mean, spectrum) -> np.ndarray:
    """Wiener filter of a stationary field on a periodic lattice, by FFT.

    ``D = mu + IFFT(P/(P + s^2) FFT(y - mu))``.

    Args:
        y: ``(*shape)`` or ``(n, *shape)`` fields.
        s: noise level ``> 0``.
        mean: scalar mean ``mu`` (stationary) or an array broadcastable to ``shape``.
        spectrum: ``P(k) >= 0`` of the lattice shape in ``numpy.fft`` order, ``P(k) = P(-k)``.

    Returns:
        Denoised fields with the shape of ``y``.

    >>> stationary_gaussian_denoiser(np.ones(4), 1.0, 0.0, np.ones(4)).tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    spectrum = _spectrum(spectrum)
    _check_symmetric_spectrum(spectrum)
    s = _scalar_level(s)
    y = np.asarray(y, dtype=float)
    shape = spectrum.shape
    if y.shape[-len(shape):] != shape or y.ndim not in (len(shape), len(shape) + 1):
        raise ValueError(f"y must have shape {shape} or (n, *{shape}), got {y.shape}")
    mean = _field_mean(mean, shape)
    axes = tuple(range(y.ndim - len(shape), y.ndim))
    deviation = y - mean
    gain = spectrum / (spectrum + s**2)
    filtered = np.fft.ifftn(np.fft.fftn(deviation, axes=axes) * gain, axes=axes).real
    return mean + filtered


def gaussian_mode_flow(y0, s0: float, s, mean, spectrum) -> np.ndarray:
    """Exact ODE flow of fields from ``s0`` to ``s``, mode by mode in Fourier space.

    ``y_k(s) = mu_k + (y_k(s0) - mu_k) sqrt((P_k + s^2)/(P_k + s0^2))``.

    Args:
        y0: fields at ``s0``, ``(*shape)`` or ``(n, *shape)``.
        s0: initial noise level ``> 0``.
        s: final noise level ``> 0`` (scalar).
        mean: scalar or array broadcastable to the lattice shape.
        spectrum: ``P(k)``, lattice shape, ``numpy.fft`` order, ``P(k) = P(-k)``.

    Returns:
        Fields at ``s``, shape of ``y0``.

    >>> gaussian_mode_flow(np.ones(2), 1.0, 0.5, 0.0, np.zeros(2)).tolist()
    [0.5, 0.5]
    """
    spectrum = _spectrum(spectrum)
    _check_symmetric_spectrum(spectrum)
    s0 = _scalar_level(s0, "s0")
    s = _scalar_level(s)
    y0 = np.asarray(y0, dtype=float)
    shape = spectrum.shape
    if y0.shape[-len(shape):] != shape or y0.ndim not in (len(shape), len(shape) + 1):
        raise ValueError(f"y0 must have shape {shape} or (n, *{shape}), got {y0.shape}")
    mean = _field_mean(mean, shape)
    axes = tuple(range(y0.ndim - len(shape), y0.ndim))
    # The flow of every Fourier amplitude is affine; apply its slope to y0 - mu.
    slope = _numeric("ode_flow")(1.0, 0.0, spectrum, s0, s)
    moved = np.fft.ifftn(np.fft.fftn(y0 - mean, axes=axes) * slope, axes=axes).real
    return mean + moved


def gaussian_field_structure_factor(
    spectrum, s, *, s0: float | None = None, initial_structure_factor=None, dynamics: str = "ode"
) -> np.ndarray:
    """``S(k, s)`` along the ODE or SDE flow, in closed form.

    Without an initial ensemble, the flow starts from the stationary noisy ensemble
    and ``S(k, s) = P(k) + s^2`` (both dynamics). With ``initial_structure_factor``
    ``S0(k)`` at ``s0``: ``S0 (P + s^2)/(P + s0^2)`` (ODE) or
    ``P + s^2 + (S0 - P - s0^2) ((P + s^2)/(P + s0^2))^2`` (SDE).

    Args:
        spectrum: ``P(k) >= 0``, any shape.
        s: noise level(s) ``> 0``, scalar or 1-D.
        s0: initial noise level, required with ``initial_structure_factor``.
        initial_structure_factor: ``S0(k) >= 0`` with the shape of ``spectrum``.
        dynamics: ``"ode"`` or ``"sde"``.

    Returns:
        ``spectrum.shape`` (scalar ``s``) or ``(len(s), *spectrum.shape)``.

    >>> gaussian_field_structure_factor(np.array([1.0, 2.0]), 1.0).tolist()
    [2.0, 3.0]
    """
    spectrum = _spectrum(spectrum)
    s_arr = _noise_levels(s)
    if dynamics not in ("ode", "sde"):
        raise ValueError(f"dynamics must be 'ode' or 'sde', got {dynamics!r}")
    if initial_structure_factor is None:
        if s0 is not None:
            raise ValueError("s0 is only used with initial_structure_factor")
        return np.asarray(spectrum + _broadcast_s(s_arr, spectrum) ** 2, dtype=float)
    if s0 is None:
        raise ValueError("s0 is required with initial_structure_factor")
    s0 = _scalar_level(s0, "s0")
    initial = np.asarray(initial_structure_factor, dtype=float)
    if initial.shape != spectrum.shape:
        raise ValueError(
            f"initial_structure_factor must have the spectrum's shape {spectrum.shape}, "
            f"got {initial.shape}"
        )
    if not np.all(np.isfinite(initial)) or np.any(initial < 0):
        raise ValueError("initial_structure_factor must be finite and non-negative")
    formula = _numeric("ode_variance" if dynamics == "ode" else "sde_variance")
    return np.asarray(formula(initial, spectrum, s0, _broadcast_s(s_arr, spectrum)), dtype=float)


def _second_moment_length(structure_factor: np.ndarray, lattice_ndim: int) -> np.ndarray:
    """Lattice second-moment length of ``S`` (lattice in the last ``lattice_ndim`` axes).

    Same convention as the measured observable (THEORY.md 4): with
    ``q^2 = 4 sin^2(pi/L_a)`` and ``S(k_a)`` at ``k_a = 2 pi/L_a e_a``, equal sides
    average ``S(k_a)`` over the axes first, ``xi^2 = (S(0)/S_bar - 1)/q^2``;
    unequal sides average the per-axis ``xi_a^2``. A negative ``xi^2`` reads 0.
    """
    shape = structure_factor.shape[structure_factor.ndim - lattice_ndim :]
    origin = (Ellipsis,) + (0,) * lattice_ndim
    at_kmin = np.stack(
        [
            structure_factor[(Ellipsis, *(1 if b == a else 0 for b in range(lattice_ndim)))]
            for a in range(lattice_ndim)
        ],
        axis=-1,
    )
    q2 = np.array([4.0 * np.sin(np.pi / side) ** 2 for side in shape])
    if np.all(np.asarray(shape) == shape[0]):
        xi_sq = (structure_factor[origin] / at_kmin.mean(axis=-1) - 1.0) / q2[0]
    else:
        xi_sq = ((structure_factor[origin][..., None] / at_kmin - 1.0) / q2).mean(axis=-1)
    return np.sqrt(np.clip(xi_sq, 0.0, None))


def gaussian_field_correlation_length(
    spectrum, s, *, s0: float | None = None, initial_structure_factor=None, dynamics: str = "ode"
) -> np.ndarray:
    """Second-moment correlation length ``xi_2(s)`` along the flow, in closed form.

    ``xi_2 = sqrt(S(0)/S(k_min) - 1)/(2 sin(|k_min|/2))``, ``k_min = 2 pi/L``, with
    ``S(k_min)`` averaged over the ``d`` axes (unequal sides: the per-axis squared
    lengths are averaged); a ratio below 1 reads 0 (THEORY.md 4, the convention
    of the measured observable). ``S(k, s)`` is
    :func:`gaussian_field_structure_factor`.

    Args:
        spectrum: ``P(k)`` of the lattice shape (``numpy.fft`` order), every side >= 2.
        s, s0, initial_structure_factor, dynamics: as in
            :func:`gaussian_field_structure_factor`.

    Returns:
        Scalar array (scalar ``s``) or ``(len(s),)``.

    >>> P = np.array([3.0, 1.0, 1.0, 1.0])
    >>> round(float(gaussian_field_correlation_length(P, 1.0)), 12)  # sqrt(4/2 - 1)/(2 sin(pi/4))
    0.707106781187
    """
    spectrum = _spectrum(spectrum)
    if min(spectrum.shape) < 2:
        raise ValueError(f"every lattice side must be >= 2 for k_min to exist, got {spectrum.shape}")
    factor = gaussian_field_structure_factor(
        spectrum, s, s0=s0, initial_structure_factor=initial_structure_factor, dynamics=dynamics
    )
    return _second_moment_length(factor, spectrum.ndim)
