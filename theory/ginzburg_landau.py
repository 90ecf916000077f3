r"""Ginzburg–Landau effective theory of the patch dynamics (THEORY.md 3.4).

The chain of results derived here, each by a small sympy function:

1. **Derivatives of the posterior mean are posterior cumulants.** For Gaussian
   noise, ``p(x0 | y) ∝ p(x0) exp(-|y - x0|^2 / 2 s^2)`` is the exponential tilt,
   with parameter ``theta = y / s^2``, of ``q(x0) = p(x0) exp(-|x0|^2 / 2 s^2)``.
   With ``K(theta) = log E_q[exp(theta . x0)]`` the posterior's cumulant generating
   function is ``t -> K(theta + t) - K(theta)``, so its joint cumulants are the
   derivatives of ``K`` at ``theta``; ``D_i = dK/dtheta_i`` and ``d/dy = s^-2 d/dtheta``
   give ``d^n D_i / dy_j1 ... dy_jn = kappa(x_i, x_j1, ..., x_jn) / s^(2n)``
   (:func:`posterior_mean_derivative`, :func:`posterior_mean_mixed_derivative`).
2. **Uniform-mode expansion.** Along the homogeneous trajectory ``y = c 1`` of the
   patch model, the denoiser at one site is the posterior mean of the patch centre
   ``phi(0)`` given the window. A uniform deviation ``y = (c + eps) 1`` tilts the
   patch posterior by ``eps S / s^2`` with ``S = sum_{r in W} phi(r)``, so by
   multilinearity ``d^n D / d eps^n = kappa(phi(0), S, ..., S) / s^(2n)``: the
   *mixed* cumulant of the centre with ``n`` copies of the window sum
   (:func:`uniform_mode_derivative`, :func:`uniform_mode_cumulant`).
3. **The GL equation.** In ``tau = -ln s`` the probability-flow ODE
   ``dy/ds = (y - D)/s`` reads ``dy/dtau = D - y`` (:func:`log_noise_time_drift`).
   Subtracting the homogeneous trajectory ``dc/dtau = h - c`` and coarse-graining
   the convolution (:func:`coarse_grained_convolution`) gives
   ``dphi/dtau = -(r - c_grad lap) phi - g phi^2 - u phi^3`` with
   ``r = gamma_0 = 1 - kappa(0)``, ``c_grad = b = (1/2d) sum_r |r|^2 K(r)``,
   ``g = -kappa(phi0, S, S) / (2 s^4)``, ``u = -kappa(phi0, S, S, S) / (6 s^6)``
   (:func:`gl_coefficients_symbolic`, numerically :func:`gl_coefficients_from_weights`).
   For the reverse SDE the drift doubles and, in the time ``tau' = 2 tau``, the noise
   temperature is ``T = s^2 / 2`` (:func:`sde_gl_temperature`).
4. **Kibble–Zurek.** For the mean-field exponents of this GL equation
   (:func:`mean_field_exponents`: ``nu = 1/2``, ``z = 2``) and a linear ramp
   ``r = -(tau - tau_c)/tau_Q``, freeze-out ``tau_rel(t) = |t - t_c|`` gives the
   delay ``t_hat ~ tau_Q^(z nu/(1 + z nu)) = tau_Q^(1/2)`` and the length
   ``xi_hat ~ tau_Q^(nu/(1 + z nu)) = tau_Q^(1/4)`` (:func:`kibble_zurek_freeze_out`).

References: W. H. Zurek, Nature 317, 505 (1985) and Phys. Rep. 276, 177 (1996) for
the freeze-out argument; P. C. Hohenberg and B. I. Halperin, Rev. Mod. Phys. 49,
435 (1977) (model A) for the relaxational GL dynamics.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import sympy as sp

__all__ = [
    "KZ_DELAY_EXPONENT",
    "KZ_LENGTH_EXPONENT",
    "MEAN_FIELD_NU",
    "MEAN_FIELD_Z",
    "coarse_grained_convolution",
    "gl_coefficients_from_weights",
    "gl_coefficients_symbolic",
    "gl_coefficients_symmetric_pm",
    "joint_cumulant_from_central_moments",
    "kibble_zurek_exponents",
    "kibble_zurek_freeze_out",
    "log_noise_time_drift",
    "mean_field_exponents",
    "posterior_mean_derivative",
    "posterior_mean_mixed_derivative",
    "quench_time_at_critical_point",
    "sde_gl_temperature",
    "tilted_cumulants_discrete",
    "uniform_mode_cumulant",
    "uniform_mode_derivative",
]

#: Noise level (VE-equivalent), positive.
s = sp.Symbol("s", positive=True)


# ---------------------------------------------------------------------------
# 1. Derivatives of the posterior mean are posterior cumulants
# ---------------------------------------------------------------------------


def _cumulant_symbol(indices: tuple[int, ...]) -> sp.Symbol:
    """``kappa_{i,j,...}``: joint cumulant of ``x_i, x_j, ...`` (indices sorted)."""
    return sp.Symbol("kappa_" + "_".join(str(i) for i in sorted(indices)), real=True)


def _check_order(order, name: str = "order", minimum: int = 0) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {order!r}")
    if order < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {order}")
    return int(order)


def posterior_mean_mixed_derivative(i: int, js: tuple[int, ...]) -> sp.Expr:
    """``d^n D_i / dy_j1 ... dy_jn`` for the Gaussian-noise posterior, as a cumulant.

    Derived from a generic cumulant generating function of the tilted prior,
    written as its Taylor polynomial ``K(theta0 + delta) = sum_alpha kappa_alpha
    delta^alpha / alpha!`` (the coefficients are the posterior cumulants at
    ``theta0 = y0 / s^2``). Then ``D_i(y0 + Delta) = dK/dtheta_i`` at
    ``theta0 + Delta / s^2``, differentiated ``n`` times in ``Delta`` at 0.

    Args:
        i: component of ``D``.
        js: components ``(j1, ..., jn)`` to differentiate by (repeats allowed).

    Returns:
        ``kappa_{i,j1,...,jn} / s^(2n)`` (cumulant symbols have sorted indices).

    >>> posterior_mean_mixed_derivative(0, (1, 1))
    kappa_0_1_1/s**4
    >>> posterior_mean_mixed_derivative(1, ())
    kappa_1
    """
    i = _check_order(i, "i")
    js = tuple(_check_order(j, "js entry") for j in js)
    order = len(js) + 1
    dim = max((i,) + js) + 1
    delta = sp.symbols(f"Delta0:{dim}", real=True)
    theta_shift = [d / s**2 for d in delta]
    cgf = sp.Integer(0)
    # every multi-index of total degree <= order (degree 0 is log-normalization)
    for degree in range(1, order + 1):
        for combo in itertools.combinations_with_replacement(range(dim), degree):
            counts = [combo.count(k) for k in range(dim)]
            term = _cumulant_symbol(combo)
            for k, n_k in enumerate(counts):
                term *= theta_shift[k] ** n_k / sp.factorial(n_k)
            cgf += term
    mean = s**2 * sp.diff(cgf, delta[i])  # dK/dtheta_i = s^2 dK/dDelta_i
    derivative = sp.diff(mean, *[delta[j] for j in js]) if js else mean
    return sp.simplify(derivative.subs({d: 0 for d in delta}))


def posterior_mean_derivative(order: int) -> sp.Expr:
    """``d^n D / dy^n`` in one dimension: ``kappa_{n+1}[x0 | y] / s^(2n)``.

    Args:
        order: ``n >= 0`` (``n = 0`` is the posterior mean ``kappa_1`` itself).

    Returns:
        Expression in the posterior cumulant symbol ``kappa_{n+1}`` and ``s``.

    >>> posterior_mean_derivative(1)
    kappa_2/s**2
    >>> posterior_mean_derivative(3)
    kappa_4/s**6
    """
    order = _check_order(order)
    expr = posterior_mean_mixed_derivative(0, (0,) * order)
    one_d = _cumulant_symbol((0,) * (order + 1))
    return expr.subs(one_d, sp.Symbol(f"kappa_{order + 1}", real=True))


@lru_cache(maxsize=None)
def joint_cumulant_from_central_moments(order: int) -> sp.Expr:
    """Joint cumulant ``kappa(X_1, ..., X_n)`` in terms of joint central moments.

    The coefficient of ``t_1 ... t_n`` in ``log E[exp(sum_i t_i X_i)]``. Only the
    multilinear part of the moment generating function contributes to that
    coefficient, so ``M = 1 + sum_A mu_A prod_{i in A} t_i`` over subsets ``A`` with
    ``|A| >= 2`` (central moments: ``mu_{i} = 0``). Symbols ``mu_ijk`` denote
    ``E[dX_i dX_j dX_k]`` with ``dX = X - E X``.

    Args:
        order: ``n >= 2``.

    >>> joint_cumulant_from_central_moments(3)
    mu_123
    >>> joint_cumulant_from_central_moments(4)
    -mu_12*mu_34 + mu_1234 - mu_13*mu_24 - mu_14*mu_23
    """
    order = _check_order(order, minimum=2)
    t = sp.symbols(f"t1:{order + 1}")
    z = sp.Integer(0)
    for size in range(2, order + 1):
        for subset in itertools.combinations(range(1, order + 1), size):
            mu = sp.Symbol("mu_" + "".join(str(k) for k in subset), real=True)
            z += mu * sp.Mul(*[t[k - 1] for k in subset])
    # log(1 + z) = sum_k (-1)^(k+1) z^k / k; z has degree >= 2, so k <= order // 2
    log_m = sum((-1) ** (k + 1) * z**k / k for k in range(1, order // 2 + 1))
    poly = sp.Poly(sp.expand(log_m), *t)
    return sp.expand(poly.coeff_monomial(sp.Mul(*t)))


def uniform_mode_cumulant(order: int) -> sp.Expr:
    """``kappa(phi0, S, ..., S)`` (one ``phi0``, ``order - 1`` copies of ``S``).

    Substitutes ``X_1 = phi0`` and ``X_2 = ... = X_n = S`` into
    :func:`joint_cumulant_from_central_moments`. Symbol ``mu_a_b`` is the central
    moment ``E[dphi0^a dS^b]`` under the tilted patch posterior.

    Args:
        order: total order ``n >= 2``.

    >>> uniform_mode_cumulant(3)
    mu_1_2
    >>> uniform_mode_cumulant(4)
    -3*mu_0_2*mu_1_1 + mu_1_3
    """
    order = _check_order(order, minimum=2)
    expr = joint_cumulant_from_central_moments(order)
    replacements = {}
    for sym in expr.free_symbols:
        indices = sym.name.split("_")[1]
        a = int("1" in indices)
        b = len(indices) - a
        replacements[sym] = sp.Symbol(f"mu_{a}_{b}", real=True)
    return sp.expand(expr.xreplace(replacements))


def uniform_mode_derivative(order: int) -> sp.Expr:
    """``d^n D / d eps^n`` for a uniform shift ``y = (c + eps) 1`` of the window.

    Sums :func:`posterior_mean_mixed_derivative` over all ``j``'s in a window, which
    by multilinearity of cumulants is ``kappa(phi0, S, ..., S) / s^(2n)``. Derived
    here for a symbolic 2-site window and checked to equal that form.

    Args:
        order: ``n >= 1``.

    Returns:
        Expression in ``kappa_phi0_S<n>`` (the mixed cumulant) and ``s``.

    >>> uniform_mode_derivative(2)
    kappa_phi0_SS/s**4
    """
    order = _check_order(order, minimum=1)
    window = (0, 1)  # site 0 is the centre; two sites suffice to show multilinearity
    total = sum(posterior_mean_mixed_derivative(0, js)
                for js in itertools.product(window, repeat=order))
    # kappa(phi0, S, ..., S) expanded by multilinearity over S = phi0 + phi1:
    expanded = sum(_cumulant_symbol((0,) + js) for js in itertools.product(window, repeat=order))
    if sp.simplify(total * s ** (2 * order) - expanded) != 0:  # pragma: no cover - guard
        raise ArithmeticError("uniform-mode derivative is not the multilinear cumulant sum")
    mixed = sp.Symbol("kappa_phi0_" + "S" * order, real=True)
    return mixed / s ** (2 * order)


# ---------------------------------------------------------------------------
# 2. The GL equation from the patch dynamics
# ---------------------------------------------------------------------------


def log_noise_time_drift() -> sp.Expr:
    """Drift of the probability-flow ODE in the time ``tau = -ln s``.

    From ``dy/ds = (y - D)/s`` and ``s = exp(-tau)``: ``dy/dtau = (dy/ds)(ds/dtau)``.

    >>> log_noise_time_drift()
    D - y
    """
    tau = sp.Symbol("tau", real=True)
    y, d = sp.symbols("y D", real=True)
    s_of_tau = sp.exp(-tau)
    dy_ds = (y - d) / s
    return sp.simplify((dy_ds * sp.diff(s_of_tau, tau)).subs(s, s_of_tau))


def sde_gl_temperature() -> dict[str, sp.Expr]:
    """Reverse SDE in ``tau = -ln s``: drift factor and noise temperature.

    The VE reverse SDE ``dy = 2 (y - D)/s ds + sqrt(2 s |ds|) xi`` with
    ``ds = -s dtau`` becomes ``dy = 2 (D - y) dtau + sqrt(2 s^2 dtau) xi``. In the
    time ``tau' = 2 tau`` the drift is ``D - y`` (the ODE's) and the noise is
    ``sqrt(2 T dtau') xi`` with the returned ``T``.

    Returns:
        ``{"drift_factor": 2, "temperature": s**2/2}`` (temperature in ``tau'``).

    >>> sde_gl_temperature()
    {'drift_factor': 2, 'temperature': s**2/2}
    """
    dtau = sp.Symbol("dtau", positive=True)
    ds = -s * dtau  # |ds| = s dtau
    y, d = sp.symbols("y D", real=True)
    drift_increment = 2 * (y - d) / s * ds
    drift_factor = sp.simplify(drift_increment / ((d - y) * dtau))
    noise_variance_per_dtau = 2 * s * sp.Abs(ds) / dtau  # variance of the increment / dtau
    # tau' = drift_factor * tau rescales the variance per unit time by 1/drift_factor
    temperature = sp.simplify(noise_variance_per_dtau / drift_factor / 2)
    return {"drift_factor": drift_factor, "temperature": temperature}


def coarse_grained_convolution(dim: int) -> dict[str, sp.Expr]:
    """Continuum limit of ``sum_r K(r) phi(x + r)`` to second order in gradients.

    Taylor-expands ``phi(x + r)`` for one offset ``r`` and averages the second-order
    term over the lattice point group (all axis permutations and reflections, the
    symmetry of a square window), which turns ``r_a r_b d_a d_b`` into
    ``|r|^2 lap / d``. Summed over the window with weights ``K(r)``:
    ``kappa(0) phi + b lap phi`` with ``b = (1/2d) sum_r |r|^2 K(r)``.

    Args:
        dim: spatial dimension ``d >= 1``.

    Returns:
        ``{"per_offset_laplacian_weight": |r|^2/(2d) (in r_1..r_d),
        "first_order": the point-group average of the gradient term (0)}``.

    >>> coarse_grained_convolution(2)["per_offset_laplacian_weight"]
    r_1**2/4 + r_2**2/4
    """
    dim = _check_order(dim, "dim", minimum=1)
    r = sp.symbols(f"r_1:{dim + 1}", real=True)
    eps = sp.Symbol("epsilon")
    grad = sp.symbols(f"g_1:{dim + 1}", real=True)  # d_a phi
    hess = sp.Matrix(dim, dim, lambda a, b: sp.Symbol(f"h_{min(a, b) + 1}{max(a, b) + 1}", real=True))
    # phi(x + eps r) to second order, as a polynomial in the derivatives of phi at x
    taylor = (eps * sum(r[a] * grad[a] for a in range(dim))
              + eps**2 / 2 * sum(r[a] * r[b] * hess[a, b] for a in range(dim) for b in range(dim)))
    group = []
    for perm in itertools.permutations(range(dim)):
        for signs in itertools.product((1, -1), repeat=dim):
            group.append({r[a]: signs[a] * r[perm[a]] for a in range(dim)})
    averaged = sp.expand(sum(taylor.xreplace(g) for g in group) / len(group))
    first = averaged.coeff(eps, 1)
    second = averaged.coeff(eps, 2)
    laplacian = sum(hess[a, a] for a in range(dim))
    weight = sp.simplify(second.subs({hess[a, a]: sp.Symbol("lap") / dim for a in range(dim)})
                         .subs({hess[a, b]: 0 for a in range(dim) for b in range(dim) if a != b})
                         / sp.Symbol("lap"))
    # guard: the averaged Hessian term is a pure Laplacian
    residual = sp.expand(second - weight * laplacian)
    if residual != 0:  # pragma: no cover - derivation guard
        raise ArithmeticError(f"point-group average is not isotropic: {residual}")
    return {"per_offset_laplacian_weight": sp.expand(weight), "first_order": first}


def gl_coefficients_symbolic() -> dict[str, sp.Expr]:
    """GL coefficients ``r, c, g, u`` from the Taylor expansion of ``D - y``.

    The uniform deviation ``phi`` from the homogeneous trajectory obeys
    ``dphi/dtau = D(c + phi) - h(c) - phi`` (difference of two :func:`log_noise_time_drift`),
    with ``D(c + phi) - h(c) = sum_n phi^n/n! kappa(phi0, S^n)/s^(2n)``
    (:func:`uniform_mode_derivative`); matched to
    ``-(r - c lap) phi - g phi^2 - u phi^3``, plus the gradient term
    ``b lap phi`` of :func:`coarse_grained_convolution`.

    Symbols: ``kappa_0 = kappa(phi0, S)/s^2 = sum_r K(r)``, ``kappa_phi0_SS``,
    ``kappa_phi0_SSS``, ``b``.

    >>> sorted(gl_coefficients_symbolic().items())
    [('c', b), ('g', -kappa_phi0_SS/(2*s**4)), ('r', 1 - kappa_0), ('u', -kappa_phi0_SSS/(6*s**6))]
    """
    phi = sp.Symbol("phi", real=True)
    kappa_0 = sp.Symbol("kappa_0", real=True)
    b = sp.Symbol("b", real=True)
    first = uniform_mode_derivative(1).subs(sp.Symbol("kappa_phi0_S", real=True), kappa_0 * s**2)
    taylor_d = sum(phi**n / sp.factorial(n) * (first if n == 1 else uniform_mode_derivative(n))
                   for n in range(1, 4))
    drift = sp.expand(log_noise_time_drift().subs({sp.Symbol("D", real=True): taylor_d,
                                                   sp.Symbol("y", real=True): phi}))
    return {
        "r": sp.simplify(-drift.coeff(phi, 1)),
        "c": b,
        "g": sp.simplify(-drift.coeff(phi, 2)),
        "u": sp.simplify(-drift.coeff(phi, 3)),
    }


def tilted_cumulants_discrete(values: np.ndarray, log_weights: np.ndarray, max_order: int = 4) -> np.ndarray:
    """Cumulants ``kappa_1..kappa_max_order`` of a discrete distribution (numerics).

    Uses :func:`joint_cumulant_from_central_moments` with all variables equal.

    Args:
        values: atoms ``(M,)``.
        log_weights: unnormalized log probabilities ``(M,)``.
        max_order: highest order (2 to 6).

    Returns:
        ``(max_order,)`` array ``[kappa_1, ..., kappa_max_order]``.
    """
    values = np.asarray(values, dtype=np.float64)
    max_order = _check_order(max_order, "max_order", minimum=1)
    if max_order > 6:
        raise ValueError(f"max_order must be <= 6, got {max_order}")
    weights = _normalized_weights(log_weights, len(values))
    mean = float(weights @ values)
    central = values - mean
    moments = {k: float(weights @ central**k) for k in range(2, max_order + 1)}
    out = [mean]
    for order in range(2, max_order + 1):
        expr = joint_cumulant_from_central_moments(order)
        subs = {sym: moments[len(sym.name.split("_")[1])] for sym in expr.free_symbols}
        out.append(float(expr.subs(subs)))
    return np.array(out)


# ---------------------------------------------------------------------------
# Numeric GL coefficients from tilted patch weights
# ---------------------------------------------------------------------------


def _normalized_weights(log_weights, n_expected: int) -> np.ndarray:
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if log_weights.shape != (n_expected,):
        raise ValueError(f"log_weights must have shape ({n_expected},), got {log_weights.shape}")
    if not np.all(np.isfinite(log_weights)):
        raise ValueError("log_weights contain NaN or inf")
    w = np.exp(log_weights - log_weights.max())
    return w / w.sum()


@lru_cache(maxsize=None)
def _uniform_cumulant_functions():
    """Lambdified ``kappa(phi0, S)``, ``kappa(phi0, S, S)``, ``kappa(phi0, S, S, S)``."""
    names = ["mu_0_2", "mu_1_1", "mu_1_2", "mu_1_3"]
    symbols = [sp.Symbol(n, real=True) for n in names]
    funcs = {}
    for order in (2, 3, 4):
        funcs[order] = sp.lambdify(symbols, uniform_mode_cumulant(order), modules="numpy")
    return names, funcs


@lru_cache(maxsize=None)
def _gl_coefficient_functions():
    exprs = gl_coefficients_symbolic()
    symbols = [sp.Symbol(n, real=True) for n in ("kappa_0", "kappa_phi0_SS", "kappa_phi0_SSS", "b")] + [s]
    return {key: sp.lambdify(symbols, expr, modules="numpy") for key, expr in exprs.items()}


def gl_coefficients_from_weights(patches, log_weights, offsets, s_value: float) -> dict:
    """GL coefficients from the tilted patch posterior at one point of the trajectory.

    Args:
        patches: ``(M, n_offsets)`` patch values ``phi_a(r)``; column ``j`` belongs to
            ``offsets[j]`` and the offset 0 must be present (the denoised centre).
        log_weights: ``(M,)`` unnormalized log weights of the patches, e.g.
            ``-|c 1 - phi_a|^2 / (2 s^2)`` along the homogeneous trajectory.
        offsets: ``(n_offsets, d)`` integer window offsets.
        s_value: noise level ``s > 0``.

    Returns:
        ``{"r", "c", "g", "u"}`` (floats) of
        ``dphi/dtau = -(r - c lap) phi - g phi^2 - u phi^3``, and diagnostics:
        ``"kappa_0"`` (``sum_r K(r)``), ``"kernel"`` (``K(r)`` per offset),
        ``"drift"`` (``sum_r K(r) r``: an advection term the isotropic form leaves
        out; zero when ``K`` is even) and ``"gradient_tensor"``
        (``(1/2) sum_r K(r) r r^T``, equal to ``c`` times the identity for a
        point-group symmetric kernel).
    """
    patches = np.asarray(patches, dtype=np.float64)
    offsets = np.asarray(offsets)
    if patches.ndim != 2 or patches.shape[0] < 1:
        raise ValueError(f"patches must have shape (M, n_offsets) with M >= 1, got {patches.shape}")
    if not np.all(np.isfinite(patches)):
        raise ValueError("patches contain NaN or inf")
    if offsets.ndim != 2 or offsets.shape[0] != patches.shape[1]:
        raise ValueError(
            f"offsets must have shape ({patches.shape[1]}, d) to match patches, got {offsets.shape}")
    if not np.issubdtype(offsets.dtype, np.integer):
        raise TypeError(f"offsets must be integers, got dtype {offsets.dtype}")
    centre = np.flatnonzero(np.all(offsets == 0, axis=1))
    if centre.size != 1:
        raise ValueError("offsets must contain the zero offset exactly once")
    if not (np.isscalar(s_value) and np.isfinite(s_value) and s_value > 0):
        raise ValueError(f"s_value must be a finite positive number, got {s_value!r}")
    weights = _normalized_weights(log_weights, patches.shape[0])
    dim = offsets.shape[1]
    centred = patches - weights @ patches
    phi0 = centred[:, centre[0]]
    window_sum = centred.sum(axis=1)
    kernel = (weights * phi0) @ centred / s_value**2  # K(r) = Cov_w[phi(0), phi(r)] / s^2
    moments = {
        "mu_0_2": float(weights @ window_sum**2),
        "mu_1_1": float(weights @ (phi0 * window_sum)),
        "mu_1_2": float(weights @ (phi0 * window_sum**2)),
        "mu_1_3": float(weights @ (phi0 * window_sum**3)),
    }
    names, cumulant_funcs = _uniform_cumulant_functions()
    args = [moments[n] for n in names]
    kappa_phi0_s = float(cumulant_funcs[2](*args))
    kappa_phi0_ss = float(cumulant_funcs[3](*args))
    kappa_phi0_sss = float(cumulant_funcs[4](*args))
    offsets_f = offsets.astype(np.float64)
    b = float(kernel @ np.sum(offsets_f**2, axis=1)) / (2 * dim)
    coefficient_funcs = _gl_coefficient_functions()
    kappa_0 = kappa_phi0_s / s_value**2
    values = [kappa_0, kappa_phi0_ss, kappa_phi0_sss, b, float(s_value)]
    out = {key: float(f(*values)) for key, f in coefficient_funcs.items()}
    out["kappa_0"] = kappa_0
    out["kernel"] = kernel
    out["drift"] = kernel @ offsets_f
    out["gradient_tensor"] = 0.5 * (offsets_f * kernel[:, None]).T @ offsets_f
    return out


def gl_coefficients_symmetric_pm(m, s_value, y=0, n_sites: int = 1) -> dict[str, sp.Expr]:
    """GL coefficients ``r, g, u`` for the two-point data ``+-m`` (all-equal patches).

    Patches are ``+-m 1`` on a window of ``n_sites`` sites, so along a uniform field
    ``y`` the denoiser is ``D = m tanh(n_sites m y / s^2)``. The coefficients are
    computed from the cumulants of the two-point posterior (CGF
    ``log cosh(m (theta + t))``, ``theta = n_sites y / s^2``, window sum
    ``S = n_sites phi0``) via :func:`gl_coefficients_symbolic`; at ``y = 0`` they are
    ``r = 1 - n m^2/s^2``, ``g = 0``, ``u = n^3 m^4 / (3 s^6)``.

    Args:
        m: data amplitude (number or sympy expression).
        s_value: noise level (number or sympy expression).
        y: uniform field value around which to expand.
        n_sites: window size ``|W|``.

    Returns:
        ``{"r", "g", "u"}`` sympy expressions (numbers if the inputs are numbers).

    >>> m, sv = sp.symbols("m s", positive=True)
    >>> coeffs = gl_coefficients_symmetric_pm(m, sv)
    >>> coeffs["r"], coeffs["g"], coeffs["u"]
    (-m**2/s**2 + 1, 0, m**4/(3*s**6))
    """
    n_sites = _check_order(n_sites, "n_sites", minimum=1)
    m, s_sym, y = sp.sympify(m), sp.sympify(s_value), sp.sympify(y)
    if s_sym.is_number and not s_sym.is_positive:
        raise ValueError(f"s_value must be positive, got {s_value!r}")
    t = sp.Symbol("t", real=True)
    theta = n_sites * y / s_sym**2
    # CGF of the centre value phi0 = +-m under the tilted two-point posterior
    cgf = sp.log(sp.cosh(m * (theta + t))) - sp.log(sp.cosh(m * theta))
    kappa = {n: sp.diff(cgf, t, n).subs(t, 0) for n in (2, 3, 4)}
    # S = n_sites * phi0: kappa(phi0, S^k) = n_sites^k kappa_{k+1}(phi0)
    exprs = gl_coefficients_symbolic()
    subs = {
        sp.Symbol("kappa_0", real=True): n_sites * kappa[2] / s_sym**2,
        sp.Symbol("kappa_phi0_SS", real=True): n_sites**2 * kappa[3],
        sp.Symbol("kappa_phi0_SSS", real=True): n_sites**3 * kappa[4],
        s: s_sym,
    }
    return {key: sp.simplify(exprs[key].xreplace(subs)) for key in ("r", "g", "u")}


# ---------------------------------------------------------------------------
# 3. Mean-field exponents and Kibble–Zurek
# ---------------------------------------------------------------------------


def mean_field_exponents() -> dict[str, sp.Expr]:
    """``nu`` and ``z`` of the linearized GL equation ``dphi/dtau = -(r + c k^2) phi``.

    ``xi = sqrt(c / r)`` (the ``k^2`` scale of the relaxation rate) gives
    ``nu = -d ln xi / d ln r``; the relaxation time ``tau_rel = 1 / omega(k = 0) = 1/r``
    gives ``z = d ln tau_rel / d ln xi``.

    >>> mean_field_exponents()
    {'nu': 1/2, 'z': 2}
    """
    r, c, k = sp.symbols("r c k", positive=True)
    rate = r + c * k**2
    xi_sym = sp.Symbol("xi", positive=True)
    # xi: the wavelength at which the gradient term equals the mass, rate(1/xi) = 2 rate(0)
    xi = sp.solve(sp.Eq(rate.subs(k, 1 / xi_sym), 2 * rate.subs(k, 0)), xi_sym)[0]
    tau_rel = 1 / rate.subs(k, 0)
    nu = sp.simplify(-sp.diff(sp.log(xi), r) * r)
    z = sp.simplify(sp.diff(sp.log(tau_rel), r) / sp.diff(sp.log(xi), r))
    return {"nu": nu, "z": z}


def kibble_zurek_freeze_out(nu=None, z=None) -> dict[str, sp.Expr]:
    """Freeze-out delay and length for a linear ramp ``r = -(t - t_c) / tau_Q``.

    With ``tau_rel = tau_0 |r|^(-z nu)`` and ``xi = xi_0 |r|^(-nu)``, freeze-out is
    where the relaxation time equals the time left to the crossing,
    ``tau_rel(t_hat) = t_hat`` (``t_hat = |t - t_c|``); then ``xi_hat = xi(t_hat)``.

    Args:
        nu, z: exponents (default: :func:`mean_field_exponents`).

    Returns:
        ``{"t_hat", "xi_hat", "delay_exponent", "length_exponent"}``.

    >>> out = kibble_zurek_freeze_out()
    >>> out["t_hat"], out["xi_hat"]
    (sqrt(tau_0)*sqrt(tau_Q), tau_Q**(1/4)*xi_0/tau_0**(1/4))
    >>> out["length_exponent"], out["delay_exponent"]
    (1/4, 1/2)
    """
    if nu is None or z is None:
        exps = mean_field_exponents()
        nu = exps["nu"] if nu is None else sp.sympify(nu)
        z = exps["z"] if z is None else sp.sympify(z)
    nu, z = sp.sympify(nu), sp.sympify(z)
    if (nu.is_number and not nu.is_positive) or (z.is_number and not z.is_positive):
        raise ValueError(f"nu and z must be positive, got nu={nu}, z={z}")
    tau_q, tau_0, xi_0 = sp.symbols("tau_Q tau_0 xi_0", positive=True)
    # Solve in logarithms (the equation is linear in ln t_hat for any nu, z):
    # ln tau_0 - z nu (ln t_hat - ln tau_Q) = ln t_hat.
    log_t, log_tq, log_t0 = sp.symbols("log_t log_tau_Q log_tau_0", real=True)
    solution = sp.solve(sp.Eq(log_t0 - z * nu * (log_t - log_tq), log_t), log_t)
    if len(solution) != 1:  # pragma: no cover - derivation guard
        raise ArithmeticError(f"freeze-out equation has {len(solution)} solutions")
    log_t_hat = sp.expand(solution[0])
    log_xi_hat = sp.expand(sp.log(xi_0) - nu * (log_t_hat - log_tq))  # xi_0 |r|^-nu, |r| = t_hat/tau_Q
    delay_exp = sp.simplify(sp.diff(log_t_hat, log_tq))
    length_exp = sp.simplify(sp.diff(log_xi_hat, log_tq))
    back = {log_tq: sp.log(tau_q), log_t0: sp.log(tau_0)}
    t_hat_expr = sp.powsimp(sp.expand_power_base(sp.exp(log_t_hat.subs(back)), force=True), force=True)
    xi_hat_expr = sp.powsimp(sp.expand_power_base(sp.exp(log_xi_hat.subs(back)), force=True), force=True)
    return {"t_hat": t_hat_expr, "xi_hat": xi_hat_expr,
            "delay_exponent": delay_exp, "length_exponent": length_exp}


def kibble_zurek_exponents(nu=None, z=None) -> dict[str, sp.Expr]:
    """``{"length": nu/(1 + z nu), "delay": z nu/(1 + z nu)}`` from :func:`kibble_zurek_freeze_out`.

    >>> kibble_zurek_exponents(nu=1, z=sp.Rational(217, 100))["length"]
    100/317
    """
    out = kibble_zurek_freeze_out(nu, z)
    return {"length": out["length_exponent"], "delay": out["delay_exponent"]}


def quench_time_at_critical_point(gamma_0: sp.Expr, s_c) -> sp.Expr:
    """Intrinsic quench time ``tau_Q`` of the diffusion near its critical point.

    Near ``s_c`` the mass ``r(tau) = gamma_0(s = exp(-tau))`` is linear,
    ``r ~ -(tau - tau_c)/tau_Q`` with ``1/tau_Q = -dr/dtau = s dgamma_0/ds`` at ``s_c``.

    Args:
        gamma_0: stiffness of the uniform mode as an expression in the module
            symbol :data:`s`.
        s_c: critical noise level.

    >>> m = sp.Symbol("m", positive=True)
    >>> quench_time_at_critical_point(1 - m**2 / s**2, m)
    1/2
    """
    tau = sp.Symbol("tau", real=True)
    r_of_tau = sp.sympify(gamma_0).subs(s, sp.exp(-tau))
    rate = -sp.diff(r_of_tau, tau)
    return sp.simplify(1 / rate.subs(tau, -sp.log(s_c)))


@lru_cache(maxsize=None)
def _mean_field_kz_exponents() -> tuple[float, float, float, float]:
    exps = mean_field_exponents()
    kz = kibble_zurek_exponents(exps["nu"], exps["z"])
    return float(exps["nu"]), float(exps["z"]), float(kz["length"]), float(kz["delay"])


def __getattr__(name: str):
    # Declared exponents, derived (not typed) on first access so importing is cheap.
    table = {"MEAN_FIELD_NU": 0, "MEAN_FIELD_Z": 1, "KZ_LENGTH_EXPONENT": 2, "KZ_DELAY_EXPONENT": 3}
    if name in table:
        return _mean_field_kz_exponents()[table[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# 4. Coarsening after the quench (model A, T below the ordering temperature)
# ---------------------------------------------------------------------------
#
# After a quench to constant r < 0 the two phases phi = +-phi_0 form domains
# separated by interfaces of width ~ sqrt(c/|r|); the domains then coarsen. The
# interface moves with normal velocity c K (mean curvature K, Allen and Cahn, Acta
# Metall. 27, 1085 (1979)): a spherical domain shrinks as R^2 = R0^2 - 2 (d-1) c tau
# and, in d = 2, every closed domain loses area at the constant rate 2 pi c (the
# total curvature of a closed curve is 2 pi). With one length scale L(tau) the law
# dL/dtau ~ c/L gives L ~ (c tau)^(1/2): growth exponent 1/2, dynamic exponent z = 2
# (A. J. Bray, Adv. Phys. 43, 357 (1994), Section 4). The exact hull-area results in
# d = 2 (J. J. Arenzon, A. J. Bray, L. F. Cugliandolo, A. Sicilia, Phys. Rev. Lett.
# 98, 145701 (2007)) rest on the same area law.


def _check_coarsening_dim(dim) -> int:
    dim = _check_order(dim, "dim", minimum=1)
    if dim == 1:
        raise ValueError(
            "dim=1 has no curvature-driven coarsening: interfaces are points, domains shrink "
            "only through the exponentially weak attraction of neighbouring kinks (range "
            "sqrt(c/|r|)), so at T = 0 the domain length grows logarithmically, "
            "L ~ sqrt(c/|r|) ln(tau), not as a power law (and for T > 0 the 1-D chain has no "
            "ordered phase); the law needs dim >= 2")
    return dim


@lru_cache(maxsize=None)
def _interface_profile() -> dict[str, sp.Expr]:
    return _derive_interface_profile()


def interface_profile() -> dict[str, sp.Expr]:
    """Planar interface (kink) of ``dphi/dtau = c phi'' - r phi - u phi^3`` for ``r < 0``.

    Solves the stationary equation ``c f'' + |r| f - u f^3 = 0`` with the ansatz
    ``f = A tanh(x / w)`` (matching the powers of ``tanh``) and integrates the
    profile's moments with the substitution ``df = f' dx``.

    Returns:
        ``{"profile": phi_0 tanh(x/w), "amplitude": phi_0 = sqrt(|r|/u),
        "width": w = sqrt(2 c/|r|) = sqrt(2) xi, "correlation_length": xi = sqrt(c/|r|),
        "deficit": int (phi_0^2 - f^2) dx = 2 w phi_0^2,
        "line_tension": sigma = c int f'^2 dx = 4 c phi_0^2 / (3 w)}``, in the positive
        symbols ``c``, ``u`` and ``m = |r|``.

    >>> out = interface_profile()
    >>> out["amplitude"], out["width"]
    (sqrt(m)/sqrt(u), sqrt(2)*sqrt(c)/sqrt(m))
    >>> sp.simplify(out["deficit"] - 2 * out["width"] * out["amplitude"]**2)
    0
    """
    return dict(_interface_profile())


def _derive_interface_profile() -> dict[str, sp.Expr]:
    c, m, u = sp.symbols("c m u", positive=True)
    x = sp.Symbol("x", real=True)
    amp, width, w_t = sp.symbols("A w T_h", positive=True)
    f = amp * sp.tanh(x / width)
    residual = c * sp.diff(f, x, 2) + m * f - u * f**3
    # in T_h = tanh(x/w) the residual is a polynomial whose coefficients must vanish
    poly = sp.Poly(sp.expand(residual.rewrite(sp.tanh).subs(sp.tanh(x / width), w_t)), w_t)
    solution = sp.solve(poly.coeffs(), [amp, width], dict=True)
    if len(solution) != 1:  # pragma: no cover - derivation guard
        raise ArithmeticError(f"kink ansatz has {len(solution)} positive solutions")
    phi_0, w = solution[0][amp], solution[0][width]
    # moments via f' dx = df, with f' = (phi_0/w) (1 - f^2/phi_0^2) for the tanh kink
    y = sp.Symbol("y", real=True)  # the field value along the profile
    slope = phi_0 / w * (1 - y**2 / phi_0**2)
    deficit = sp.simplify(sp.integrate((phi_0**2 - y**2) / slope, (y, -phi_0, phi_0)))
    tension = sp.simplify(c * sp.integrate(slope, (y, -phi_0, phi_0)))
    return {"profile": phi_0 * sp.tanh(x / w), "amplitude": phi_0, "width": w,
            "correlation_length": sp.sqrt(c / m), "deficit": deficit, "line_tension": tension}


def shrinking_domain_law(dim: int = 2) -> dict[str, sp.Expr]:
    """A spherical domain of the other phase, radius ``R(tau)``, in ``dim >= 2`` dimensions.

    Derivation (sharp-interface limit, ``R >> w``): write the radial field as the
    planar kink carried along, ``phi = f(s)``, ``s = rho - R(tau)``. Model A in radial
    form, ``phi_tau = c (phi_rho,rho + (d-1)/rho phi_rho) + |r| phi - u phi^3``, minus
    the kink equation ``c f'' + |r| f - u f^3 = 0`` leaves
    ``-f'(s) [R' + c (d-1)/(R + s)] = 0``. Projected on ``f'`` (the solvability
    condition) with ``1/(R + s) = 1/R - s/R^2 + ...``: the ``s/R^2`` term vanishes
    because ``f'^2`` is even, so ``R' = -c (d-1)/R`` up to corrections of relative
    order ``(w/R)^2``, and ``R^2 = R0^2 - 2 (d-1) c tau``. The interface velocity is
    ``c`` times the mean curvature ``(d-1)/R``; ``|r|`` and ``u`` drop out.

    Args:
        dim: spatial dimension ``d >= 2`` (``d = 1`` has no curvature: ``ValueError``).

    Returns:
        ``{"radius_squared": R0^2 - 2 (d-1) c tau, "normal_velocity": -c (d-1)/R,
        "collapse_time": R0^2 / (2 (d-1) c), "volume_rate": dV/dtau as a function of R}``; in
        ``d = 2`` the area rate is the constant ``-2 pi c`` for a domain of any shape.

    >>> law = shrinking_domain_law(2)
    >>> law["radius_squared"], law["volume_rate"]
    (R_0**2 - 2*c*tau, -2*pi*c)
    >>> shrinking_domain_law(3)["radius_squared"]
    R_0**2 - 4*c*tau
    """
    dim = _check_coarsening_dim(dim)
    c, m, u, r0 = sp.symbols("c m u R_0", positive=True)
    tau = sp.Symbol("tau", nonnegative=True)
    s_co = sp.Symbol("s", real=True)  # co-moving coordinate rho - R
    radius, dradius = sp.symbols("R Rdot", real=True)
    f0, f1, f2 = sp.symbols("f0 f1 f2", real=True)  # f, f', f'' at s
    # phi = f(rho - R(tau)): phi_tau = -R' f', phi_rho = f', phi_rho,rho = f''
    residual = -dradius * f1 - (c * (f2 + (dim - 1) / (radius + s_co) * f1) + m * f0 - u * f0**3)
    residual = sp.factor(residual.subs(f2, (u * f0**3 - m * f0) / c))  # kink equation
    bracket = sp.simplify(residual / (-f1))
    # solvability: int f'^2 [R' + c (d-1)/(R+s)] ds = 0, expanded to first order in s/R
    kink = interface_profile()
    slope = sp.diff(kink["profile"].subs(sp.Symbol("x", real=True), s_co), s_co) ** 2
    first_order_integrand = s_co * slope
    if sp.simplify(first_order_integrand + first_order_integrand.subs(s_co, -s_co)) != 0:
        raise ArithmeticError("s f'^2 is not odd")  # pragma: no cover - derivation guard
    leading = sp.series(bracket, s_co, 0, 1).removeO()  # O(s) term integrates to zero
    velocity = sp.solve(sp.Eq(leading, 0), dradius)[0]
    big_r = sp.Function("R", positive=True)
    ode = sp.Eq(big_r(tau).diff(tau), velocity.subs(radius, big_r(tau)))
    solutions = sp.dsolve(ode, big_r(tau), ics={big_r(0): r0})
    solutions = solutions if isinstance(solutions, list) else [solutions]
    positive = [sol.rhs for sol in solutions if sol.rhs.subs(tau, 0) == r0]
    if len(positive) != 1:  # pragma: no cover - derivation guard
        raise ArithmeticError(f"radius ODE gave {len(positive)} branches through R_0")
    radius_squared = sp.expand(positive[0] ** 2)
    collapse = sp.solve(sp.Eq(radius_squared, 0), tau)[0]
    # volume of a d-ball: S_d R^d / d with S_d the unit sphere's area
    sphere_area = 2 * sp.pi ** sp.Rational(dim, 2) / sp.gamma(sp.Rational(dim, 2))
    volume_rate = sp.simplify(sphere_area * radius ** (dim - 1) * velocity)
    return {"radius_squared": radius_squared, "normal_velocity": velocity,
            "collapse_time": collapse, "volume_rate": volume_rate}


def coarsening_exponents(dim: int = 2) -> dict[str, sp.Expr]:
    """Growth and dynamic exponents of curvature-driven coarsening (model A).

    Scaling hypothesis: one length ``L(tau)`` describes the domain pattern, so the
    curvature is ``~ 1/L`` and the interfaces move, by :func:`shrinking_domain_law`,
    at ``dL/dtau = a c / L`` (``a`` a pattern-dependent number). Then
    ``L^2 = L_0^2 + 2 a c tau``: the growth exponent ``n = lim tau L'/L = 1/2`` and the
    dynamic exponent ``z = 1/n = 2``. At finite times the offset ``L_0`` (the length
    when the domains formed) lowers the log-log slope to
    ``n_eff = a c tau / (L_0^2 + 2 a c tau)``, approaching ``1/2`` from below.

    Assumptions: late times, ``L >> w = sqrt(2 c/|r|)`` (sharp interfaces); the noise
    temperature below the ordering temperature (thermal noise renormalizes ``c`` and
    the interface mobility, not the exponent); degenerate phases, ``g = 0`` (with a
    quadratic term the minima differ in depth and the favoured phase invades at a
    constant speed, ``L ~ tau``); non-conserved order parameter (conserved model B
    has ``n = 1/3``); ``dim >= 2`` (``d = 1`` coarsens only logarithmically and is
    refused with ``ValueError``). In ``d = 2`` the pattern formed from a disordered
    start keeps the large-scale geometry of critical percolation, which slows the
    approach to scaling and makes finite periodic boxes matter while ``L`` is still
    a small fraction of their side.

    Args:
        dim: spatial dimension (``>= 2``).

    Returns:
        ``{"growth": 1/2, "dynamic": 2, "length_squared": L_0^2 + 2 a c tau,
        "effective_growth": n_eff(tau)}``.

    >>> exps = coarsening_exponents(2)
    >>> exps["growth"], exps["dynamic"]
    (1/2, 2)
    """
    _check_coarsening_dim(dim)
    return dict(_coarsening_exponents())


@lru_cache(maxsize=None)
def _coarsening_exponents() -> dict[str, sp.Expr]:
    # the derivation does not depend on dim >= 2 (curvature ~ 1/L in any dimension)
    a, c, l0 = sp.symbols("a c L_0", positive=True)
    tau = sp.Symbol("tau", positive=True)
    big_l = sp.Function("L", positive=True)
    solutions = sp.dsolve(sp.Eq(big_l(tau).diff(tau), a * c / big_l(tau)), big_l(tau),
                          ics={big_l(0): l0})
    solutions = solutions if isinstance(solutions, list) else [solutions]
    positive = [sol.rhs for sol in solutions if sol.rhs.subs(tau, 0) == l0]
    if len(positive) != 1:  # pragma: no cover - derivation guard
        raise ArithmeticError(f"growth ODE gave {len(positive)} branches through L_0")
    length = positive[0]
    effective = sp.simplify(tau * sp.diff(length, tau) / length)
    growth = sp.limit(effective, tau, sp.oo)
    return {"growth": growth, "dynamic": sp.simplify(1 / growth),
            "length_squared": sp.expand(length**2), "effective_growth": effective}


__all__ += ["coarsening_exponents", "interface_profile", "shrinking_domain_law"]
