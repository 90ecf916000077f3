"""Symbolic derivations for the patch model's linear theory (THEORY.md 3.3).

Each function derives one statement with sympy on a small symbolic instance, so
the numeric code in :mod:`diffcrit.theory.patch_stats` and
:mod:`diffcrit.theory.patch` rests on a derivation, not on a typed-in formula:

- the Jacobian of the softmax patch denoiser is the weighted covariance of the
  patch centre with each patch offset, divided by ``s^2``
  (:func:`patch_jacobian`, :func:`tilted_covariance_kernel`);
- homogeneous fields are invariant under the flow (:func:`homogeneous_flow`);
- plane waves are eigenvectors of a convolution ``J_{i,i+r} = K(r)`` with
  eigenvalue ``sum_r K(r) e^{i k r}``, complex unless ``K`` is even
  (:func:`plane_wave_residual`, :func:`plane_wave_eigenvalue`);
- at high noise the kernel is the uniform covariance over ``s^2``
  (:func:`high_noise_kernel_leading_term`), and the homogeneous trajectory is
  ``m + f beta/((f + 2) s^2)`` (:func:`homogeneous_high_noise_expansion`);
- the small-``k`` stiffness ``gamma_0 + b |k|^2`` with ``b = sum_r |r|^2 K(r) / (2d)``
  for cubic-symmetric kernels (:func:`small_k_stiffness`);
- the mode equations of the linearized probability-flow ODE and reverse SDE,
  including the SDE's noise injection (:func:`ode_mode_variance_rate`,
  :func:`sde_mode_variance_rate`).
"""

from __future__ import annotations

import itertools

import sympy as sp

__all__ = [
    "softmax_patch_denoiser",
    "patch_jacobian",
    "tilted_covariance_kernel",
    "jacobian_residual",
    "homogeneous_flow",
    "plane_wave_eigenvalue",
    "plane_wave_residual",
    "high_noise_kernel_leading_term",
    "homogeneous_high_noise_expansion",
    "small_k_stiffness",
    "ode_mode_variance_rate",
    "sde_mode_variance_rate",
]


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _patch_symbols(n_patches: int, n_offsets: int):
    s = sp.Symbol("s", positive=True)
    y = sp.Matrix(sp.symbols(f"y0:{n_offsets}", real=True))
    phi = sp.Matrix(n_patches, n_offsets, lambda a, r: sp.Symbol(f"phi{a}_{r}", real=True))
    return y, phi, s


def _softmax_weights(y: sp.Matrix, phi: sp.Matrix, s: sp.Symbol) -> list[sp.Expr]:
    n_patches, n_offsets = phi.shape
    boltzmann = [
        sp.exp(-sum((y[r] - phi[a, r]) ** 2 for r in range(n_offsets)) / (2 * s**2))
        for a in range(n_patches)
    ]
    total = sum(boltzmann)
    return [b / total for b in boltzmann]


def softmax_patch_denoiser(n_patches: int = 2, n_offsets: int = 2):
    """The patch denoiser at one pixel for a symbolic patch set.

    ``D(y) = sum_a w_a phi_a(0)``, ``w_a ∝ exp(-|y - phi_a|^2 / (2 s^2))`` where
    ``y`` is the local patch ``y[i+W]`` (offset 0 first).

    Returns:
        ``(D, y, phi, s)``: the expression, the local-patch symbols (column
        matrix), the patch matrix ``phi[a, r]`` and the noise symbol.

    >>> D, y, phi, s = softmax_patch_denoiser(2, 1)   # patches +-1: D = tanh(y/s^2)
    >>> sp.simplify((D.subs({phi[0, 0]: 1, phi[1, 0]: -1}) - sp.tanh(y[0] / s**2)).rewrite(sp.exp))
    0
    """
    _check_count(n_patches, "n_patches", 1)
    _check_count(n_offsets, "n_offsets", 1)
    y, phi, s = _patch_symbols(n_patches, n_offsets)
    w = _softmax_weights(y, phi, s)
    D = sum(w[a] * phi[a, 0] for a in range(n_patches))
    return D, y, phi, s


def patch_jacobian(n_patches: int = 2, n_offsets: int = 2) -> sp.Matrix:
    """``dD/dy(r)`` for each offset ``r`` (a row), by differentiating the softmax.

    >>> D, y, phi, s = softmax_patch_denoiser(2, 1)
    >>> J = patch_jacobian(2, 1)
    >>> sp.simplify(J[0].subs({phi[0, 0]: 1, phi[1, 0]: -1}) - sp.diff(sp.tanh(y[0] / s**2), y[0]).rewrite(sp.exp))
    0
    """
    D, y, _, _ = softmax_patch_denoiser(n_patches, n_offsets)
    return sp.Matrix([[sp.diff(D, y[r]) for r in range(n_offsets)]])


def tilted_covariance_kernel(n_patches: int = 2, n_offsets: int = 2) -> sp.Matrix:
    """``K(r) = Cov_w[phi(0), phi(r)] / s^2`` with the same softmax weights (a row).

    Equal to :func:`patch_jacobian` (see :func:`jacobian_residual`): the
    Jacobian of the patch denoiser is the weighted (tilted) patch covariance
    over ``s^2``.

    >>> tilted_covariance_kernel(1, 2)   # a single patch has no covariance
    Matrix([[0, 0]])
    """
    _check_count(n_patches, "n_patches", 1)
    _check_count(n_offsets, "n_offsets", 1)
    y, phi, s = _patch_symbols(n_patches, n_offsets)
    w = _softmax_weights(y, phi, s)
    means = [sum(w[a] * phi[a, r] for a in range(n_patches)) for r in range(n_offsets)]
    cov = [
        sum(w[a] * (phi[a, 0] - means[0]) * (phi[a, r] - means[r]) for a in range(n_patches))
        for r in range(n_offsets)
    ]
    return sp.Matrix([[c / s**2 for c in cov]])


def _vanishes(expr: sp.Expr) -> bool:
    """Exact zero test for rational expressions in exponentials.

    The numerator over a common denominator, expanded with products of
    exponentials merged (``powsimp``), is identically zero.
    """
    numerator = sp.together(expr).as_numer_denom()[0]
    return sp.expand(sp.powsimp(sp.expand(numerator))) == 0


def jacobian_residual(n_patches: int = 2, n_offsets: int = 2) -> list[bool]:
    """Whether ``dD/dy(r) - Cov_w[phi(0), phi(r)]/s^2`` vanishes identically, per offset.

    Compares :func:`patch_jacobian` with :func:`tilted_covariance_kernel` for a
    fully symbolic patch set (``n_patches`` patches, ``n_offsets`` offsets).

    >>> jacobian_residual(2, 2)
    [True, True]
    """
    J = patch_jacobian(n_patches, n_offsets)
    K = tilted_covariance_kernel(n_patches, n_offsets)
    return [_vanishes(J[r] - K[r]) for r in range(n_offsets)]


def homogeneous_flow(n_sites: int = 4, radius: int = 1):
    """Probability-flow velocity ``(y - D(y))/s`` of a periodic 1-D ring at ``y = c 1``.

    The patch set is every window (radius ``radius``) of one symbolic periodic
    image ``x_0 .. x_{n-1}`` at every position (pooled). At ``y = c 1`` every pixel
    sees the same local patch ``c 1_W``, so the velocity is the same at every
    site: ``(c - h(c, s))/s`` with ``h = sum_a w_a(c) phi_a(0)`` — the homogeneous
    fields are an invariant set, moving by the scalar ODE ``dc/ds = (c - h)/s``.

    Returns:
        ``(velocity, c, s, h)``: the velocity at each site (column), the state and
        noise symbols, and ``h(c, s)``.

    >>> v, c, s, h = homogeneous_flow(4, 1)
    >>> all(sp.simplify(v_i - (c - h) / s) == 0 for v_i in v)
    True
    """
    _check_count(n_sites, "n_sites", 1)
    _check_count(radius, "radius", 0)
    if 2 * radius + 1 > n_sites:
        raise ValueError(f"window of radius {radius} does not fit a ring of {n_sites} sites")
    c = sp.Symbol("c", real=True)
    s = sp.Symbol("s", positive=True)
    x = sp.symbols(f"x0:{n_sites}", real=True)
    offsets = [0] + [r for r in range(-radius, radius + 1) if r != 0]
    patches = [[x[(p + r) % n_sites] for r in offsets] for p in range(n_sites)]
    field = [c] * n_sites

    def denoise(site: int) -> sp.Expr:
        local = [field[(site + r) % n_sites] for r in offsets]
        boltz = [sp.exp(-sum((lv - pv) ** 2 for lv, pv in zip(local, patch)) / (2 * s**2)) for patch in patches]
        return sum(b * patch[0] for b, patch in zip(boltz, patches)) / sum(boltz)

    velocity = sp.Matrix([(field[i] - denoise(i)) / s for i in range(n_sites)])
    h = denoise(0)
    return velocity, c, s, h


def plane_wave_eigenvalue(radius: int = 1):
    """``lambda(k) = sum_{|r| <= R} K_r e^{i k r}`` in 1-D, with real and imaginary parts.

    ``Re lambda = sum_r K_r cos(k r)`` (the growth rate part) and
    ``Im lambda = sum_{r > 0} (K_r - K_{-r}) sin(k r)``, which vanishes for all
    ``k`` iff ``K`` is even.

    Returns:
        ``(lam, re, im, k, kernel)`` with ``kernel`` a dict ``r -> K_r``.

    >>> lam, re, im, k, K = plane_wave_eigenvalue(1)
    >>> sp.simplify(im - (K[1] - K[-1]) * sp.sin(k))
    0
    >>> sp.simplify(re - (K[0] + (K[1] + K[-1]) * sp.cos(k)))
    0
    """
    _check_count(radius, "radius", 0)
    k = sp.Symbol("k", real=True)
    kernel = {r: sp.Symbol(f"K_{r}".replace("-", "m"), real=True) for r in range(-radius, radius + 1)}
    lam = sum(kernel[r] * sp.exp(sp.I * k * r) for r in kernel)
    re = sp.simplify(sp.re(sp.expand_complex(lam)))
    im = sp.simplify(sp.im(sp.expand_complex(lam)))
    return lam, re, im, k, kernel


def plane_wave_residual(n_sites: int = 5, radius: int = 1) -> sp.Matrix:
    """``(J e_k - lambda(k) e_k)_j`` for the periodic convolution ``J_{j, j+r} = K_r``.

    Evaluated on a ring of ``n_sites`` with ``k = 2 pi m / n`` for every
    integer ``m``: identically zero, so each plane wave is an eigenvector.

    >>> plane_wave_residual(5, 1).applyfunc(sp.simplify) == sp.zeros(5, 5)
    True
    """
    _check_count(n_sites, "n_sites", 1)
    _check_count(radius, "radius", 0)
    if 2 * radius + 1 > n_sites:
        raise ValueError(f"window of radius {radius} does not fit a ring of {n_sites} sites")
    lam, _, _, k, kernel = plane_wave_eigenvalue(radius)
    J = sp.zeros(n_sites, n_sites)
    for j in range(n_sites):
        for r, value in kernel.items():
            J[j, (j + r) % n_sites] += value
    rows = []
    for m in range(n_sites):
        km = 2 * sp.pi * m / n_sites
        e = sp.Matrix([sp.exp(sp.I * km * j) for j in range(n_sites)])
        rows.append(list(sp.expand(J * e - lam.subs(k, km) * e)))
    return sp.Matrix(rows)  # row m: residual of mode m at every site


def high_noise_kernel_leading_term(n_patches: int = 2, n_offsets: int = 2) -> sp.Matrix:
    """``lim_{s -> oo} s^2 K(r)`` at a homogeneous state: the uniform patch covariance.

    With ``t = 1/s^2`` the tilted weights are ``1/n + O(t)``, so ``s^2 K(r) =
    Cov_uniform[phi(0), phi(r)] + O(1/s^2)`` (moment level of THEORY.md 3.3).

    Returns:
        Row of ``lim s^2 K(r) - Cov_uniform[phi(0), phi(r)]`` (zero).

    >>> high_noise_kernel_leading_term(2, 2).applyfunc(sp.simplify) == sp.zeros(1, 2)
    True
    """
    _check_count(n_patches, "n_patches", 1)
    _check_count(n_offsets, "n_offsets", 1)
    y, phi, s = _patch_symbols(n_patches, n_offsets)
    c = sp.Symbol("c", real=True)
    t = sp.Symbol("t", positive=True)
    w = [wa.subs({y[r]: c for r in range(n_offsets)}) for wa in _softmax_weights(y, phi, s)]
    means = [sum(w[a] * phi[a, r] for a in range(n_patches)) for r in range(n_offsets)]
    scaled_kernel = [  # s^2 K(r) at the homogeneous state c 1, in t = 1/s^2
        sum(w[a] * (phi[a, 0] - means[0]) * (phi[a, r] - means[r]) for a in range(n_patches)).subs(s, 1 / sp.sqrt(t))
        for r in range(n_offsets)
    ]
    leading = [sp.limit(expr, t, 0) for expr in scaled_kernel]
    mean = [sum(phi[a, r] for a in range(n_patches)) / n_patches for r in range(n_offsets)]
    uniform = [
        sum((phi[a, 0] - mean[0]) * (phi[a, r] - mean[r]) for a in range(n_patches)) / n_patches
        for r in range(n_offsets)
    ]
    return sp.Matrix([[leading[r] - uniform[r] for r in range(n_offsets)]])


def homogeneous_high_noise_expansion(factor: int = 1) -> sp.Expr:
    """Coefficient ``a`` of the high-noise homogeneous trajectory ``c = m + a/s^2 + ...``.

    At high noise ``h(c, s) = m + (beta + A (c - m))/s^2 + O(s^-4)`` with
    ``beta = -Cov[phi(0), |phi - m|^2]/2`` (the tilt of ``w ∝ exp(-|phi - m|^2/2s^2)``
    at ``c = m``) and ``A = sum_r C(r)``. The invariant trajectory of
    ``dc/d ln s = f (c - h)`` (``f = 1`` probability flow, ``f = 2`` SDE drift)
    that tends to ``m`` has ``a = f beta / (f + 2)``.

    >>> homogeneous_high_noise_expansion(1)
    beta/3
    >>> homogeneous_high_noise_expansion(2)
    beta/2
    """
    f = sp.Integer(_check_count(factor, "factor", 1))
    a, beta, A, m = sp.symbols("a beta A m", real=True)
    s = sp.Symbol("s", positive=True)
    c = m + a / s**2
    h = m + (beta + A * (c - m)) / s**2
    # d/d ln s = s d/ds
    residual = s * sp.diff(c, s) - f * (c - h)
    leading = sp.limit(residual * s**2, s, sp.oo)  # the O(1/s^2) balance
    return sp.solve(sp.Eq(leading, 0), a)[0]


def _cube_offsets(dim: int, radius: int) -> list[tuple[int, ...]]:
    return list(itertools.product(range(-radius, radius + 1), repeat=dim))


def small_k_stiffness(dim: int = 2, radius: int = 1):
    """Small-``k`` expansion ``gamma(k) = gamma_0 + b |k|^2 + O(k^4)`` for a cubic-symmetric kernel.

    ``gamma(k) = 1 - sum_r K(r) cos(k.r)``; ``K`` is constant on orbits of the
    cubic group (sign flips and permutations of the components of ``r``). The
    ``k^2`` term ``sum_r K(r) (k.r)^2 / 2`` is then isotropic and equals
    ``|k|^2 sum_r |r|^2 K(r) / (2 d)``.

    Returns:
        ``(gamma0, b, kernel)``: ``gamma_0 = 1 - sum_r K(r)``, ``b`` and the dict
        ``r -> K`` symbol of its orbit.

    >>> g0, b, K = small_k_stiffness(2, 1)
    >>> sp.simplify(b - sum((r[0]**2 + r[1]**2) * v for r, v in K.items()) / 4)
    0
    >>> b
    K_01 + 2*K_11
    """
    _check_count(dim, "dim", 1)
    _check_count(radius, "radius", 0)
    offsets = _cube_offsets(dim, radius)
    kernel = {}
    for r in offsets:
        orbit = "".join(str(v) for v in sorted(abs(x) for x in r))
        kernel[r] = sp.Symbol(f"K_{orbit}", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    n = sp.symbols(f"n0:{dim}", real=True)
    gamma = 1 - sum(v * sp.cos(eps * sum(ni * ri for ni, ri in zip(n, r))) for r, v in kernel.items())
    series = sp.series(gamma, eps, 0, 3).removeO()
    gamma0 = sp.simplify(series.subs(eps, 0))
    quad = sp.expand(series.coeff(eps, 2))
    b = sp.expand(quad.coeff(n[0], 2))
    # isotropy: the quadratic form is b * |n|^2 (no cross terms, equal diagonal)
    if sp.expand(quad - b * sum(ni**2 for ni in n)) != 0:
        raise ArithmeticError("quadratic term is not isotropic; kernel not cubic-symmetric")
    return gamma0, b, kernel


def ode_mode_variance_rate():
    """``dS/d ln s`` of a Fourier mode under the linearized probability-flow ODE.

    Linearizing ``dy/ds = (y - D)/s`` around a homogeneous trajectory gives
    ``d delta_k / d ln s = (1 - lambda(k)) delta_k``, so
    ``d|delta_k|^2 / d ln s = 2 Re(1 - lambda) |delta_k|^2 = 2 gamma S``.

    Returns:
        ``(rate, S, gamma)``.

    >>> ode_mode_variance_rate()[0]
    2*S*gamma
    """
    S = sp.Symbol("S", positive=True)
    gamma, lam_im = sp.symbols("gamma lambda_i", real=True)
    ell = sp.Symbol("ell", real=True)
    amp = sp.Function("a")(ell)
    # complex amplitude a with d a / d ln s = (1 - lambda) a, lambda = 1 - gamma + i lambda_i
    growth = (gamma - sp.I * lam_im) * amp
    d_abs2 = sp.expand(growth * sp.conjugate(amp) + sp.conjugate(growth) * amp)
    rate = sp.simplify(d_abs2.subs(amp * sp.conjugate(amp), S).subs(sp.conjugate(amp) * amp, S))
    return rate, S, gamma


def sde_mode_variance_rate():
    """``dS/d ln s`` of a Fourier mode under the linearized reverse SDE (noise included).

    The reverse SDE ``dy = 2 (y - D)/s ds + sqrt(2 s |ds|) xi`` linearized per
    (unitary) Fourier mode: ``d delta = 2 gamma delta ds/s + sqrt(2 s |ds|) xi``.
    One Euler–Maruyama step ``ds = -s h`` (``h > 0``, integrating downward) maps
    ``S -> (1 - 2 gamma h)^2 S + 2 s^2 h``; dividing by ``d ln s = ln(1 - h)``
    and letting ``h -> 0`` gives ``dS/d ln s = 4 gamma S - 2 s^2``.

    Returns:
        ``(rate, S, gamma, s)``.

    >>> rate, S, gamma, s = sde_mode_variance_rate()
    >>> rate
    4*S*gamma - 2*s**2
    >>> lam = sp.Symbol("lambda", positive=True)   # Gaussian: gamma = s^2/(lam + s^2)
    >>> sp.simplify(rate.subs({gamma: s**2 / (lam + s**2), S: lam + s**2}) - s * sp.diff(lam + s**2, s))
    0
    """
    S = sp.Symbol("S", positive=True)
    gamma = sp.Symbol("gamma", real=True)
    s, h = sp.symbols("s h", positive=True)
    ds = -s * h
    next_variance = (1 + 2 * gamma * ds / s) ** 2 * S + 2 * s * sp.Abs(ds)
    rate = sp.limit((next_variance - S) / sp.log(1 - h), h, 0, "+")
    return sp.expand(rate), S, gamma, s
