"""Linear theory of the equivariant local patch model at three levels (THEORY.md 3.3).

The patch denoiser ``D_i(y) = sum_a w_a phi_a(0)``, ``w_a ∝ exp(-|y[i+W] - phi_a|^2/2s^2)``
(patches pooled over every position of every training image, periodic) has the
local Jacobian ``J_{i,i+r} = Cov_w(i)[phi(0), phi(r)]/s^2``
(:mod:`diffcrit.theory.patch_symbolic`). A Fourier mode ``k`` with complex
amplitude ``a_k`` obeys ``d a_k/d ln s = (1 - lambda(k)) a_k`` under the
linearized probability-flow ODE, ``lambda(k) = sum_{r in W} K(r) e^{i k.r}``;
only ``kappa(k) = Re lambda(k) = sum_r K(r) cos(k.r)`` sets growth (``Im lambda``
drifts the phase: ``K`` need not be even, see below). Stiffness
``gamma = 1 - kappa``; instability ``kappa > 1``.

Three levels of the kernel ``K(r, s)``:

1. *moment* (high noise, uniform weights): ``K = C(r)/s^2``, ``C`` the pooled
   patch covariance, so ``kappa = S_W(k)/s^2`` with the windowed spectrum
   ``S_W(k) = sum_{r in W} C(r) cos(k.r)`` and ``s_c^2 = max_k S_W(k)``.
2. *homogeneous* (quenched mean field): the tilted kernel along the homogeneous
   trajectory ``c(s)`` (``dc/ds = (c - h(c,s))/s`` from the data mean at
   ``s0 = 100 x std``); exact linear stability of that invariant trajectory.
3. *marginal* (annealed): ``kappa_bar(k, s) = E Re <e_k, J(x_0 + s eps) e_k>``
   over training images ``x_0`` and noise ``eps`` (unit complex plane waves
   ``e_k``), by Monte Carlo with common random numbers across ``s``.

Is ``K`` even? ``C(r)`` is (periodic pooling). The tilted kernel at ``c 1`` is
``K(r) s^2 = sum_p w(p) (x_p - mu_0)(x_{p+r} - mu_r)`` with the weight ``w(p)``
set by the window *centred at p*; relabelling ``p -> p - r`` in ``K(-r)`` moves
the weight to the window centred at ``p - r``, so ``K(r) != K(-r)`` unless the
data are statistically reflection-symmetric. On sklearn digits the asymmetry is
small for windows 3 and 5 and large for window 7 (``|Im lambda|`` up to ~0.6).

Marginal level on a lattice other than the data's: the marginal states
``x_0 + s eps`` live on the images' lattice; the annealed kernel
``K_bar(r, s)`` (mean over samples and pixels) is local, so ``kappa_bar`` is
evaluated on any lattice ``L`` the window fits as ``sum_r K_bar(r) cos(k.r)``.
This assumes the local statistics of marginal states on the ``L`` lattice are
those on the data lattice (exact for translation-pooled stationary data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, minimize_scalar

from diffcrit.theory.windows import extract_patches
from diffcrit.theory.patch_stats import (
    PatchStatistics,
    _as_images,
    _as_noise,
    _as_shape,
    _check_stats,
    _homogeneous_moments,
    _softmax,
    homogeneous_trajectory,
    HomogeneousTrajectory,
    kernel_fourier_eigenvalues,
    noise_scan_upper_bound,
    patch_statistics,
    pooled_patch_covariance,
    windowed_spectrum,
)

__all__ = [
    "LEVELS",
    "PatchTheoryResult",
    "patch_theory",
    "moment_level",
    "homogeneous_level",
    "marginal_level",
    "default_noise_grid",
    "homogeneous_kernel",
    "MarginalKernelEstimator",
    "gradient_stiffness",
    "response_correlation_length",
    "critical_mode_index",
    "linear_structure_factor",
    "second_moment_length",
    "linear_saturation_noise",
    "high_noise_approximation_error",
]

LEVELS = ("moment", "homogeneous", "marginal")
_LEVEL_ALIASES = {1: "moment", 2: "homogeneous", 3: "marginal", "moment": "moment",
                  "homogeneous": "homogeneous", "marginal": "marginal"}
# Relative tie tolerance for degenerate maxima over k (copies at +-k agree to rounding).
_TIE_RTOL = 1e-10


# --------------------------------------------------------------------------- small pieces


def default_noise_grid(stats: PatchStatistics, per_decade: int = 40, s_min: float | None = None) -> np.ndarray:
    """Descending log-spaced noise grid from the no-instability bound down to ``s_min``.

    The top is :func:`~diffcrit.theory.patch_stats.noise_scan_upper_bound`
    (``sqrt(|W|) range/2``: no mode can have ``kappa >= 1`` above it, at any
    level), the bottom ``0.02 x std`` by default.

    >>> from diffcrit.theory.patch_stats import patch_statistics
    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> g = default_noise_grid(st, per_decade=10)
    >>> round(float(g[0]), 4), round(float(g[-1]), 4), bool(np.all(np.diff(g) < 0))
    (0.866, 0.01, True)
    """
    stats = _check_stats(stats)
    if isinstance(per_decade, bool) or not isinstance(per_decade, (int, np.integer)) or per_decade < 2:
        raise ValueError(f"per_decade must be an integer >= 2, got {per_decade!r}")
    top = noise_scan_upper_bound(stats)
    bottom = 0.02 * stats.std if s_min is None else float(_as_noise(s_min, "s_min"))
    if not bottom < top:
        raise ValueError(f"s_min ({bottom:.4g}) must be below the scan top {top:.4g}")
    n = max(2, int(np.ceil(per_decade * np.log10(top / bottom))) + 1)
    return np.geomspace(top, bottom, n)


def _as_grid(s_grid: Any) -> np.ndarray:
    grid = _as_noise(s_grid, "s_grid").astype(np.float64).ravel()
    if grid.size < 2:
        raise ValueError(f"s_grid needs at least 2 noise levels, got {grid.size}")
    grid = np.sort(grid)[::-1]
    if np.any(np.diff(grid) == 0):
        raise ValueError("s_grid must not contain repeated noise levels")
    return grid


def _signed_index(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(n if n <= L // 2 else n - L) for n, L in zip(index, shape))


def critical_mode_index(kappa: Any) -> tuple[int, ...]:
    """Signed lattice index ``[k_y, k_x]`` (``k = 2 pi n/L``) of the largest ``kappa``.

    Ties (``+-k`` copies, symmetric axes; relative tolerance 1e-10) are broken
    by the smallest ``|n|``, then the largest signed index tuple.

    >>> kappa = np.zeros((4, 4)); kappa[0, 1] = kappa[0, 3] = 0.5   # k = (0, +-2 pi/4)
    >>> critical_mode_index(kappa)
    (0, 1)
    """
    kappa = np.asarray(kappa, dtype=np.float64)
    top = float(kappa.max())
    ties = np.argwhere(kappa >= top - _TIE_RTOL * max(1.0, abs(top)))
    candidates = [_signed_index(tuple(t), kappa.shape) for t in ties]
    return min(candidates, key=lambda n: (sum(v * v for v in n), tuple(-v for v in n)))


def _offsets_sq_norm(offsets: np.ndarray) -> np.ndarray:
    return np.sum(np.asarray(offsets, dtype=np.float64) ** 2, axis=1)


def gradient_stiffness(kernel: Any, offsets: Any) -> np.ndarray:
    """``b = sum_r |r|^2 K(r) / (2d)``: the ``|k|^2`` coefficient of ``gamma(k)`` near ``k = 0``.

    Exact for cubic-symmetric kernels (:func:`~diffcrit.theory.patch_symbolic.small_k_stiffness`);
    otherwise the isotropic part (trace/d) of ``B_ab = sum_r K(r) r_a r_b / 2``.

    >>> float(gradient_stiffness([0.5, 0.25, 0.25], [[0], [-1], [1]]))
    0.25
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    offsets = np.asarray(offsets)
    return kernel @ _offsets_sq_norm(offsets) / (2.0 * offsets.shape[1])


def response_correlation_length(kernel: Any, offsets: Any) -> np.ndarray:
    """``xi_J = sqrt(b / gamma_0)``, ``gamma_0 = 1 - sum_r K(r)``; NaN where ``gamma_0 <= 0`` or ``b < 0``.

    Undefined (NaN by design, not an error) beyond the ``k = 0`` instability or
    for kernels whose small-``k`` curvature is negative (softest mode not at 0).

    >>> float(response_correlation_length([0.4, 0.2, 0.2], [[0], [-1], [1]]))   # gamma_0 = b = 0.2
    1.0
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    gamma0 = 1.0 - kernel.sum(axis=-1)
    b = gradient_stiffness(kernel, offsets)
    ok = (gamma0 > 0) & (b >= 0)
    ratio = np.divide(b, gamma0, out=np.zeros_like(gamma0), where=ok)
    return np.where(ok, np.sqrt(ratio), np.nan)


# --------------------------------------------------------------------------- level kernels


def homogeneous_kernel(
    stats: PatchStatistics, trajectory: HomogeneousTrajectory, s: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Tilted kernel ``K(r, s)`` along a homogeneous trajectory.

    Returns:
        ``(c, K)``: ``c(s)`` (data units) and ``K`` of shape ``(*s.shape, n_offsets)``.
    """
    s_arr = _as_noise(s)
    c = trajectory(s_arr)
    _, cov = _homogeneous_moments(stats, c.ravel() - stats.mean, s_arr.ravel())
    return c, (cov / (s_arr.ravel() ** 2)[:, None]).reshape(s_arr.shape + (stats.n_offsets,))


class MarginalKernelEstimator:
    """Monte Carlo of the annealed kernel ``K_bar(r, s) = E mean_i J_{i,i+r}(x_0 + s eps)``.

    Draws are fixed at construction (images ``x_0``, noise ``eps`` on the
    images' lattice, optional pixel subsets), so the estimate is a smooth
    function of ``s`` (common random numbers) and root finding on it is sound.
    For one state, ``<e_k, J e_k> = sum_r Kbar_i(r) e^{i k.r}`` exactly for the
    unit complex plane wave (``Kbar_i`` the pixel mean), so the per-sample
    ``kappa`` is ``sum_r Kbar_i(r) cos(k.r)``.

    Args:
        stats: patch statistics of ``images``.
        images: the training images (``x_0`` is drawn from them).
        n_samples: number of ``(x_0, eps)`` draws (>= 2 for a standard error).
        pixels_per_sample: pixels per draw used for the pixel mean (``None``:
            all); a random subset keeps the cost independent of the lattice.
        rng: ``numpy.random.Generator`` or seed.
    """

    def __init__(
        self,
        stats: PatchStatistics,
        images: Any,
        n_samples: int = 32,
        pixels_per_sample: int | None = 64,
        rng: Any = 0,
    ) -> None:
        self.stats = _check_stats(stats)
        arr = _as_images(images)
        if arr.shape[1:] != stats.data_shape:
            raise ValueError(f"images shape {arr.shape[1:]} does not match the patch statistics {stats.data_shape}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        n_pixels = int(np.prod(stats.data_shape))
        if pixels_per_sample is None:
            pixels_per_sample = n_pixels
        if isinstance(pixels_per_sample, bool) or not isinstance(pixels_per_sample, (int, np.integer)) \
                or pixels_per_sample < 1:
            raise ValueError(f"pixels_per_sample must be a positive integer or None, got {pixels_per_sample!r}")
        pixels_per_sample = min(int(pixels_per_sample), n_pixels)
        gen = np.random.default_rng(rng)
        replace = n_samples > arr.shape[0]
        self.image_index = gen.choice(arr.shape[0], size=n_samples, replace=replace)
        eps = gen.standard_normal((n_samples,) + stats.data_shape)
        self._x0 = arr[self.image_index]
        self._eps = eps
        n = stats.n_offsets
        local_x = extract_patches(arr[self.image_index] - stats.mean, stats.offsets).reshape(n_samples, n_pixels, n)
        local_e = extract_patches(eps, stats.offsets).reshape(n_samples, n_pixels, n)
        if pixels_per_sample < n_pixels:
            pick = np.stack([gen.choice(n_pixels, size=pixels_per_sample, replace=False) for _ in range(n_samples)])
            rows = np.arange(n_samples)[:, None]
            local_x, local_e = local_x[rows, pick], local_e[rows, pick]
        self._local_x = local_x.reshape(-1, n)
        self._local_e = local_e.reshape(-1, n)
        self.n_samples = int(n_samples)
        self.pixels_per_sample = pixels_per_sample
        self._half_sq = 0.5 * stats.patch_sq_norms
        self._moments = stats._derived["moments"]  # [phi(r), phi(0) phi(r)]

    def fields(self, s: float) -> np.ndarray:
        """The marginal states ``x_0 + s eps`` of the draws: ``(n_samples, *data_shape)``."""
        return self._x0 + float(_as_noise(s)) * self._eps

    def sample_kernels(self, s: float) -> np.ndarray:
        """Pixel-mean kernel of each draw at noise ``s``: ``(n_samples, n_offsets)``."""
        s = float(_as_noise(s))
        stats = self.stats
        n = stats.n_offsets
        local = self._local_x + s * self._local_e  # local patches of x_0 + s eps (linear in s)
        rows = local.shape[0]
        block = max(1, 4_000_000 // max(1, stats.patches.shape[0]))
        kernel = np.empty((rows, n))
        for start in range(0, rows, block):
            y_loc = local[start : start + block]
            logits = (y_loc @ stats.patches.T - self._half_sq) / (s * s) + stats.log_counts
            m = _softmax(logits, axis=1) @ self._moments
            kernel[start : start + block] = (m[:, n:] - m[:, :1] * m[:, :n]) / (s * s)
        return kernel.reshape(self.n_samples, -1, n).mean(axis=1)

    def sample_kernel_stack(self, s: Any) -> np.ndarray:
        """Per-draw pixel-mean kernels at each ``s``: ``(len(s), n_samples, n_offsets)``."""
        return np.stack([self.sample_kernels(v) for v in _as_noise(s).ravel()])

    def kernel(self, s: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean annealed kernel and its standard error at each ``s``: two ``(len(s), n_offsets)`` arrays."""
        per = self.sample_kernel_stack(s)
        return per.mean(axis=1), per.std(axis=1, ddof=1) / np.sqrt(self.n_samples)

    def kappa(self, s: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``kappa_bar(k, s)`` on the lattice ``shape`` and its standard error: ``(len(s), *shape)`` each."""
        return _kappa_mean_and_error(self.sample_kernel_stack(s), self.stats.offsets, shape)


def _kappa_mean_and_error(per: np.ndarray, offsets: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over draws (axis 1) of ``sum_r K(r) cos(k.r)``."""
    kap = kernel_fourier_eigenvalues(per, offsets, shape).real  # (n_s, n_samples, *shape)
    return kap.mean(axis=1), kap.std(axis=1, ddof=1) / np.sqrt(per.shape[1])


# --------------------------------------------------------------------------- critical point


def _find_critical(
    kappa_max: Callable[[float], float], grid: np.ndarray, kappa_max_grid: np.ndarray
) -> tuple[str, float, list[str]]:
    """First crossing of ``max_k kappa = 1`` from above, or the point of maximal softening.

    ``grid`` descends; ``kappa_max_grid`` are the values on it. A crossing is
    bracketed between the last grid point below 1 and the first at or above 1
    and refined by ``brentq``; otherwise the grid maximum is refined by a bounded
    scalar search in ``ln s`` between its neighbours.
    """
    notes: list[str] = []
    above = np.flatnonzero(kappa_max_grid >= 1.0)
    if above.size:
        j = int(above[0])
        if j == 0:
            notes.append("max kappa >= 1 already at the top of the scan")
            return "critical", float(grid[0]), notes
        lo, hi = float(grid[j]), float(grid[j - 1])
        f_lo, f_hi = kappa_max(lo) - 1.0, kappa_max(hi) - 1.0
        if f_lo < 0.0 or f_hi >= 0.0:
            # the scan value sat within rounding of 1 (batched vs single evaluation)
            notes.append("crossing within rounding of a scan point; s_c taken at that point")
            return "critical", lo if f_lo >= 0.0 else hi, notes
        s_c = brentq(lambda v: kappa_max(v) - 1.0, lo, hi, xtol=1e-14, rtol=1e-13)
        return "critical", float(s_c), notes
    j = int(np.argmax(kappa_max_grid))
    if j in (0, len(grid) - 1):
        notes.append("maximal softening at the edge of the noise scan; extend s_grid")
    lo = np.log(grid[min(j + 1, len(grid) - 1)])
    hi = np.log(grid[max(j - 1, 0)])
    res = minimize_scalar(lambda u: -kappa_max(float(np.exp(u))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})
    best = float(np.exp(res.x)) if -res.fun > kappa_max_grid[j] else float(grid[j])
    return "pseudo-critical", best, notes


# --------------------------------------------------------------------------- linear fluctuations


def linear_structure_factor(
    gamma: Callable[[float], np.ndarray],
    s_values: Any,
    s_start: float,
    initial: Any = None,
    dynamics: str = "ode",
    rtol: float = 1e-8,
) -> np.ndarray:
    """``ln S(k, s)`` of the linearized dynamics around a reference trajectory.

    ODE (probability flow): ``d ln S/d ln s = 2 gamma``
    (:func:`~diffcrit.theory.patch_symbolic.ode_mode_variance_rate`), i.e.
    ``S(k,s) = S(k,s0) exp(-2 int_{ln s}^{ln s0} gamma d ln s')``.
    SDE (reverse VE SDE): ``dS/d ln s = 4 gamma S - 2 s^2``
    (:func:`~diffcrit.theory.patch_symbolic.sde_mode_variance_rate`), integrated
    for ``u = ln S``: ``du/d ln s = 4 gamma - 2 s^2 e^{-u}`` (implicit Radau with
    the diagonal Jacobian; the noise injection makes strongly damped modes stiff).

    Args:
        gamma: callable ``s -> gamma(k, s)`` (array over the lattice).
        s_values: noise levels ``<= s_start`` at which to report.
        s_start: where the ensemble starts.
        initial: ``S(k, s_start)`` (scalar or lattice array); default
            ``s_start^2`` (white noise of variance ``s_start^2``, a sampler's start).
        dynamics: ``"ode"`` or ``"sde"``.
        rtol: relative tolerance (absolute ``rtol`` on ``ln S``).

    Returns:
        ``ln S`` of shape ``(len(s_values), *gamma_shape)``, in the order of ``s_values``.
    """
    _check_dynamics(dynamics)
    s_vals = _as_noise(s_values, "s_values").ravel()
    s_start = float(_as_noise(s_start, "s_start"))
    # 1e-12 relative slack: grids built from the same endpoint by geomspace
    if np.any(s_vals > s_start * (1 + 1e-12)):
        raise ValueError(f"s_values must not exceed s_start={s_start:.6g}, got max {float(s_vals.max()):.6g}")
    g0 = np.asarray(gamma(s_start), dtype=np.float64)
    shape = g0.shape
    if initial is None:
        initial = s_start**2
    init = np.broadcast_to(np.asarray(initial, dtype=np.float64), shape)
    if np.any(~np.isfinite(init)) or np.any(init <= 0):
        raise ValueError("initial structure factor must be finite and > 0")
    u0 = np.log(init).ravel().copy()
    order = np.argsort(-s_vals)
    targets = np.log(np.minimum(s_vals[order], s_start))
    ell0 = np.log(s_start)
    if dynamics == "ode":
        def rhs(ell: float, u: np.ndarray) -> np.ndarray:
            return 2.0 * np.asarray(gamma(float(np.exp(ell))), dtype=np.float64).ravel()
        method, jac = "DOP853", None
    else:
        def rhs(ell: float, u: np.ndarray) -> np.ndarray:
            g = np.asarray(gamma(float(np.exp(ell))), dtype=np.float64).ravel()
            return 4.0 * g - 2.0 * np.exp(2.0 * ell - u)

        def jac(ell: float, u: np.ndarray):
            return sparse.diags(2.0 * np.exp(2.0 * ell - u))
        method = "Radau"
    end = float(min(targets[-1], ell0 - 1e-12))
    if end >= ell0:  # every requested s equals s_start
        out = np.tile(u0, (len(s_vals), 1))
        return out.reshape((len(s_vals),) + shape)
    kwargs = {"jac": jac} if jac is not None else {}
    sol = solve_ivp(rhs, (ell0, end), u0, method=method, t_eval=np.clip(targets, end, ell0),
                    rtol=rtol, atol=rtol, **kwargs)
    if not sol.success:
        raise RuntimeError(f"linear structure factor integration failed: {sol.message}")
    if not np.all(np.isfinite(sol.y)):
        raise RuntimeError("linear structure factor integration produced non-finite values")
    out = np.empty((len(s_vals), u0.size))
    out[order] = sol.y.T
    return out.reshape((len(s_vals),) + shape)


def second_moment_length(log_structure_factor: Any) -> np.ndarray:
    """Lattice second-moment correlation length from ``ln S(k)`` (THEORY.md 4).

    Per axis ``a``: ``xi_a = sqrt(S(0)/S_a(k_min) - 1) / (2 sin(k_min/2))`` with
    ``S_a(k_min)`` the mean over ``+-k_min e_a``; reads 0 where
    ``S(0) < S(k_min)``, ``inf`` where the ratio overflows; averaged over axes.

    Args:
        log_structure_factor: ``ln S`` of shape ``(n, *lattice)`` (``numpy.fft``
            order of ``k``); one field: add a leading axis of length 1.

    Returns:
        ``xi_2`` of shape ``(n,)``.

    >>> L, xi = 16, 2.5     # Ornstein-Zernike form: the estimator is exact
    >>> q2 = 4 * np.sin(np.pi * np.arange(L) / L) ** 2
    >>> round(float(second_moment_length(np.log(1 / (1 + xi**2 * q2))[None])[0]), 12)
    2.5
    """
    logS = np.asarray(log_structure_factor, dtype=np.float64)
    if logS.ndim < 2:
        raise ValueError(f"log_structure_factor must have shape (n, *lattice), got {logS.shape}")
    lattice = logS.shape[1:]
    d = len(lattice)
    xis = []
    for a, L in enumerate(lattice):
        if L < 2:
            continue
        plus = [0] * d
        minus = [0] * d
        plus[a], minus[a] = 1, L - 1
        lp = logS[(slice(None),) + tuple(plus)]
        lm = logS[(slice(None),) + tuple(minus)]
        l_kmin = np.logaddexp(lp, lm) - np.log(2.0)
        log_ratio = logS[(slice(None),) + (0,) * d] - l_kmin
        excess = np.expm1(np.minimum(log_ratio, 700.0))  # S(0)/S(k_min) - 1
        xi = np.sqrt(np.maximum(excess, 0.0)) / (2.0 * np.sin(np.pi / L))
        xis.append(np.where(log_ratio > 700.0, np.inf, xi))
    if not xis:
        raise ValueError(f"lattice {lattice} has no axis of side >= 2")
    return np.mean(xis, axis=0)


def linear_saturation_noise(
    log_structure_factor: Any, s_values: Any, data_variance: float
) -> float | None:
    """Largest ``s`` at which the linear theory's per-site variance reaches ``var_data + s^2``.

    ``mean_k S(k, s)`` is the per-site fluctuation variance (Parseval); an exact
    sampler holds ``var_data + s^2`` at noise ``s``. Past this point the linear
    theory has outgrown what the nonlinear dynamics can hold (a heuristic for
    "until saturation"). ``None`` if never reached on the grid.
    """
    logS = np.asarray(log_structure_factor, dtype=np.float64)
    s_vals = _as_noise(s_values).ravel()
    flat = logS.reshape(len(s_vals), -1)
    m = flat.max(axis=1)
    log_var = m + np.log(np.mean(np.exp(flat - m[:, None]), axis=1))
    reached = log_var >= np.log(data_variance + s_vals**2)
    if not np.any(reached):
        return None
    return float(s_vals[reached].max())


# --------------------------------------------------------------------------- result object


@dataclass(frozen=True, eq=False)
class PatchTheoryResult:
    """Prediction of the patch model's linear theory at one level.

    Attributes:
        kind: ``"critical"`` (some mode reaches ``kappa = 1``) or
            ``"pseudo-critical"`` (none does; the point of maximal softening).
        level: ``"moment"``, ``"homogeneous"`` or ``"marginal"``.
        s_c: critical noise (first crossing of ``max_k kappa = 1`` as ``s``
            decreases) or, if pseudo-critical, the ``s`` of maximal softening.
        k_c: signed lattice index ``[k_y, k_x]`` of the critical (or softest)
            mode at ``s_c``, wavevector ``2 pi k_c / L``.
        kappa_c: ``max_k kappa`` at ``s_c`` (1 for critical).
        min_stiffness: minimum of ``gamma_min(s)`` over ``s >= s_c``: 0 for a
            critical result, the (positive) stiffness at maximal softening for a
            pseudo-critical one.
        lattice: lattice shape of the ``k`` grid.
        s_grid: descending noise levels.
        kappa: ``kappa(k, s)`` (growth part, real), ``(n_s, *lattice)``, fft order.
        kappa_imag: ``Im lambda(k, s)`` (phase drift), same shape.
        kappa_stderr: Monte Carlo standard error (marginal level) or ``None``.
        gamma_min: ``min_k (1 - kappa)`` per ``s``.
        gamma_zero: ``1 - kappa(k = 0)`` per ``s``.
        xi_J: response correlation length ``sqrt(b/gamma_0)`` per ``s`` (NaN where undefined).
        xi_2: linear-theory second-moment length per ``s`` (``None`` if not computed).
        log_structure_factor: linear-theory ``ln S(k, s)`` (``None`` if not computed).
        s_saturation: where the linear theory saturates (:func:`linear_saturation_noise`),
            or ``None`` (never, or not computed).
        dynamics: ``"ode"`` or ``"sde"`` for the fluctuation theory.
        trajectory_c: homogeneous trajectory ``c(s)`` (homogeneous level) or ``None``.
        kernel: ``K(r, s)``, ``(n_s, n_offsets)``.
        offsets: window offsets ``(n_offsets, d)``.
        notes: caveats found while computing.
    """

    kind: str
    level: str
    s_c: float
    k_c: tuple[int, ...]
    kappa_c: float
    min_stiffness: float
    lattice: tuple[int, ...]
    s_grid: np.ndarray
    kappa: np.ndarray
    kappa_imag: np.ndarray
    kappa_stderr: np.ndarray | None
    gamma_min: np.ndarray
    gamma_zero: np.ndarray
    xi_J: np.ndarray
    xi_2: np.ndarray | None
    log_structure_factor: np.ndarray | None
    s_saturation: float | None
    dynamics: str
    trajectory_c: np.ndarray | None
    kernel: np.ndarray
    offsets: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def k_c_wavevector(self) -> np.ndarray:
        """``2 pi k_c / L`` (radians per site)."""
        return 2.0 * np.pi * np.asarray(self.k_c, dtype=np.float64) / np.asarray(self.lattice)

    def to_dict(self) -> dict:
        """All fields as plain Python / lists (JSON-ready; NaN stays NaN)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v)
        return out

    def __repr__(self) -> str:
        k = ", ".join(str(v) for v in self.k_c)
        return (
            f"PatchTheoryResult(level={self.level!r}, kind={self.kind!r}, s_c={self.s_c:.6g}, "
            f"k_c=[{k}], kappa_c={self.kappa_c:.4g}, min_stiffness={self.min_stiffness:.4g}, "
            f"lattice={self.lattice}, n_s={len(self.s_grid)})"
        )


# --------------------------------------------------------------------------- levels


def _scan_grid(stats: PatchStatistics, grid: np.ndarray, per_decade: int = 40) -> np.ndarray:
    """``grid`` plus log-spaced points from the no-instability bound down to its top."""
    top = noise_scan_upper_bound(stats)
    if grid[0] >= top:
        return grid
    n = max(2, int(np.ceil(per_decade * np.log10(top / grid[0]))) + 1)
    return np.concatenate([np.geomspace(top, grid[0], n)[:-1], grid])


def _assemble(
    level: str,
    stats: PatchStatistics,
    shape: tuple[int, ...],
    grid: np.ndarray,
    kernel_of_s: Callable[[np.ndarray], np.ndarray],
    kernel_grid: np.ndarray,
    dynamics: str,
    s_start: float | None,
    kappa_stderr: np.ndarray | None = None,
    trajectory_c: np.ndarray | None = None,
    extra_scan: tuple[np.ndarray, np.ndarray] | None = None,
    notes: list[str] | None = None,
    fluctuation_kernel: Callable[[float], np.ndarray] | None = None,
    fluctuations: bool = True,
) -> PatchTheoryResult:
    notes = list(notes or [])
    offsets = stats.offsets
    lam = kernel_fourier_eigenvalues(kernel_grid, offsets, shape)
    kappa = lam.real
    n_s = len(grid)
    kmax_grid = kappa.reshape(n_s, -1).max(axis=1)
    scan_s, scan_kmax = grid, kmax_grid
    if extra_scan is not None:
        scan_s = np.concatenate([extra_scan[0], grid])
        scan_kmax = np.concatenate([extra_scan[1], kmax_grid])

    def kappa_at(s: float) -> np.ndarray:
        return kernel_fourier_eigenvalues(kernel_of_s(np.array([s]))[0], offsets, shape).real

    def kappa_max(s: float) -> float:
        return float(kappa_at(s).max())

    kind, s_c, found = _find_critical(kappa_max, scan_s, scan_kmax)
    notes += found
    kappa_sc = kappa_at(s_c)
    k_c = critical_mode_index(kappa_sc)
    if level == "homogeneous" and kind == "critical" and not any(k_c):
        notes.append("critical mode k = 0: below s_c the homogeneous trajectory itself is unstable and "
                     "follows a branch selected by rounding (symmetry breaking)")
    gamma_min = 1.0 - kmax_grid
    # min over s >= s_c of gamma_min: 0 at a crossing, the softening minimum otherwise
    min_stiffness = 0.0 if kind == "critical" else float(1.0 - kappa_sc.max())
    gamma_zero = 1.0 - kappa[(slice(None),) + (0,) * len(shape)]
    xi_J = response_correlation_length(kernel_grid, offsets)

    start = float(grid[0]) if s_start is None else float(_as_noise(s_start, "s_start"))
    if start < grid[0] * (1 - 1e-12):
        raise ValueError(f"s_start ({start:.4g}) must be >= the top of s_grid ({grid[0]:.4g})")

    def gamma_of_s(s: float) -> np.ndarray:
        if fluctuation_kernel is None:
            return 1.0 - kappa_at(s)
        return 1.0 - kernel_fourier_eigenvalues(fluctuation_kernel(s), offsets, shape).real

    if fluctuations:
        log_S = linear_structure_factor(gamma_of_s, grid, start, dynamics=dynamics)
        xi_2 = second_moment_length(log_S)
        s_sat = linear_saturation_noise(log_S, grid, stats.std**2)
    else:
        log_S = xi_2 = s_sat = None
    return PatchTheoryResult(
        kind=kind, level=level, s_c=float(s_c), k_c=k_c, kappa_c=float(kappa_sc.max()),
        min_stiffness=min_stiffness, lattice=tuple(shape), s_grid=grid, kappa=kappa,
        kappa_imag=lam.imag, kappa_stderr=kappa_stderr, gamma_min=gamma_min, gamma_zero=gamma_zero,
        xi_J=xi_J, xi_2=xi_2, log_structure_factor=log_S, s_saturation=s_sat, dynamics=dynamics,
        trajectory_c=trajectory_c, kernel=kernel_grid, offsets=offsets.copy(), notes=tuple(notes),
    )


def _check_dynamics(dynamics: Any) -> str:
    if dynamics not in ("ode", "sde"):
        raise ValueError(f"dynamics must be 'ode' or 'sde', got {dynamics!r}")
    return dynamics


def _lattice_for(stats: PatchStatistics, lattice: Any) -> tuple[int, ...]:
    shape = stats.data_shape if lattice is None else _as_shape(lattice, stats.dim)
    if any(v < 2 for v in shape):
        raise ValueError(f"lattice sides must be >= 2 (a nonzero wavevector per axis), got {shape}")
    extent = stats.offsets.max(axis=0) - stats.offsets.min(axis=0) + 1
    if np.any(extent > np.array(shape)):
        raise ValueError(f"window of extent {extent.tolist()} does not fit the lattice {shape}; use a larger lattice")
    return shape


def moment_level(
    stats: PatchStatistics,
    lattice: Any = None,
    s_grid: Any = None,
    dynamics: str = "ode",
    s_start: float | None = None,
    fluctuations: bool = True,
) -> PatchTheoryResult:
    """Level 1 (moment, high-noise uniform weights): ``kappa = S_W(k)/s^2``, ``s_c^2 = max_k S_W``.

    Always critical (``sum_k S_W(k) = N_sites C(0) > 0``); ``k_c = argmax S_W``.
    """
    stats = _check_stats(stats)
    _check_dynamics(dynamics)
    shape = _lattice_for(stats, lattice)
    grid = default_noise_grid(stats) if s_grid is None else _as_grid(s_grid)
    C = pooled_patch_covariance(stats)

    def kernel_of_s(s: np.ndarray) -> np.ndarray:
        return C[None, :] / (s[:, None] ** 2)

    SW = windowed_spectrum(stats, shape)
    s_c_exact = float(np.sqrt(SW.max()))
    scan = _scan_grid(stats, grid)
    extra = scan[: len(scan) - len(grid)]
    result = _assemble("moment", stats, shape, grid, kernel_of_s, kernel_of_s(grid), dynamics, s_start,
                       extra_scan=(extra, SW.max() / extra**2), fluctuations=fluctuations)
    # kappa = S_W/s^2 is monotone in s: the crossing is known in closed form (even below the grid)
    return dataclasses.replace(result, kind="critical", s_c=s_c_exact, k_c=critical_mode_index(SW),
                               kappa_c=1.0, min_stiffness=0.0, notes=())


def homogeneous_level(
    stats: PatchStatistics,
    lattice: Any = None,
    s_grid: Any = None,
    dynamics: str = "ode",
    s0: float | None = None,
    s_start: float | None = None,
    fluctuations: bool = True,
) -> PatchTheoryResult:
    """Level 2 (homogeneous, quenched mean field): tilted kernel along ``c(s)``.

    The trajectory follows the chosen ``dynamics`` (``"ode"``: probability flow;
    ``"sde"``: the reverse SDE's noiseless drift, ``dc/ds = 2(c - h)/s``, the
    consistent reference for linearizing the SDE), started at the data mean at
    ``s0 = 100 x std``.
    """
    stats = _check_stats(stats)
    _check_dynamics(dynamics)
    shape = _lattice_for(stats, lattice)
    grid = default_noise_grid(stats) if s_grid is None else _as_grid(s_grid)
    scan = _scan_grid(stats, grid)
    s_top = max(float(scan[0]), float(s_start or 0.0))
    s0_val = 100.0 * stats.std if s0 is None else float(_as_noise(s0, "s0"))
    if s0_val < s_top:
        raise ValueError(f"s0 ({s0_val:.4g}) must be >= the top of the scan ({s_top:.4g})")
    traj = homogeneous_trajectory(stats, float(grid[-1]), s0=s0_val, dynamics=dynamics)

    def kernel_of_s(s: np.ndarray) -> np.ndarray:
        return homogeneous_kernel(stats, traj, s)[1]

    c_grid, K_grid = homogeneous_kernel(stats, traj, grid)
    extra = scan[: len(scan) - len(grid)]
    extra_kmax = (kernel_fourier_eigenvalues(kernel_of_s(extra), stats.offsets, shape).real
                  .reshape(len(extra), -1).max(axis=1)) if len(extra) else np.empty(0)
    return _assemble("homogeneous", stats, shape, grid, kernel_of_s, K_grid, dynamics, s_start,
                     trajectory_c=c_grid, extra_scan=(extra, extra_kmax), fluctuations=fluctuations)


def marginal_level(
    stats: PatchStatistics,
    images: Any,
    lattice: Any = None,
    s_grid: Any = None,
    dynamics: str = "ode",
    n_samples: int = 32,
    pixels_per_sample: int | None = 64,
    rng: Any = 0,
    s_start: float | None = None,
    fluctuations: bool = True,
) -> PatchTheoryResult:
    """Level 3 (marginal, annealed): ``kappa_bar(k, s)`` by Monte Carlo over ``x_0 + s eps``.

    The critical point is found on the Monte Carlo mean with common random
    numbers (a smooth function of ``s``); ``kappa_stderr`` is the standard error
    over draws. The linear fluctuation theory is driven by ``gamma_bar``
    interpolated linearly in ``ln s`` on ``s_grid``.
    """
    stats = _check_stats(stats)
    _check_dynamics(dynamics)
    shape = _lattice_for(stats, lattice)
    grid = _as_grid(default_noise_grid(stats, per_decade=12) if s_grid is None else s_grid)
    if s_start is not None and float(_as_noise(s_start, "s_start")) > grid[0] * (1 + 1e-12):
        raise ValueError(f"s_start ({float(s_start):.4g}) must not exceed the top of s_grid ({grid[0]:.4g}) "
                         "at the marginal level (the kernel is tabulated on s_grid)")
    est = MarginalKernelEstimator(stats, images, n_samples=n_samples, pixels_per_sample=pixels_per_sample, rng=rng)
    scan = _scan_grid(stats, grid, per_decade=12)
    n_extra = len(scan) - len(grid)
    per = est.sample_kernel_stack(scan)  # (n_scan, n_samples, n_offsets)
    kappa_mean, kappa_se = _kappa_mean_and_error(per, stats.offsets, shape)
    K_scan = per.mean(axis=1)
    K_grid = K_scan[n_extra:]
    extra_kmax = kappa_mean[:n_extra].reshape(n_extra, int(np.prod(shape))).max(axis=1)
    log_grid = np.log(grid[::-1])
    K_ascending = K_grid[::-1]

    def kernel_of_s(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        hit = np.isclose(s[:, None], grid[None, :], rtol=1e-13, atol=0.0)
        if np.all(hit.any(axis=1)):
            return K_grid[hit.argmax(axis=1)]
        return est.kernel(s)[0]

    def interpolated_kernel(s: float) -> np.ndarray:
        # Monte Carlo at every solver step is too costly: interpolate linearly in ln s
        u = float(np.clip(np.log(s), log_grid[0], log_grid[-1]))
        return np.array([np.interp(u, log_grid, K_ascending[:, j]) for j in range(stats.n_offsets)])

    return _assemble("marginal", stats, shape, grid, kernel_of_s, K_grid, dynamics, s_start,
                     kappa_stderr=kappa_se[n_extra:], extra_scan=(scan[:n_extra], extra_kmax),
                     fluctuation_kernel=interpolated_kernel, fluctuations=fluctuations)


# --------------------------------------------------------------------------- one call


def patch_theory(
    images: Any,
    window: Any,
    level: str | int = "homogeneous",
    lattice: Any = None,
    s_grid: Any = None,
    rng: Any = 0,
    *,
    dynamics: str = "ode",
    boundary: str = "periodic",
    n_samples: int = 32,
    pixels_per_sample: int | None = 64,
    s0: float | None = None,
    s_start: float | None = None,
    fluctuations: bool = True,
) -> PatchTheoryResult:
    """Linear theory of the pooled patch model for a data set, at one level.

    Args:
        images: ``(N, *lattice)`` training images (one channel).
        window: odd window side (or offsets array, centre first).
        level: ``"moment"`` (1), ``"homogeneous"`` (2) or ``"marginal"`` (3).
        lattice: lattice side or shape for the ``k`` grid (default: the images').
        s_grid: noise levels (default: from the no-instability bound
            ``sqrt(|W|) range/2`` down to ``0.02 std``; 40 per decade, 12 for
            the marginal level).
        rng: seed or generator (marginal level).
        dynamics: ``"ode"`` or ``"sde"`` (fluctuation theory and, at the
            homogeneous level, the reference trajectory).
        boundary: patch extraction (``"periodic"`` or ``"valid"``).
        n_samples: Monte Carlo draws (marginal level).
        pixels_per_sample: pixels per draw (marginal level; ``None`` = all).
        s0: trajectory start (homogeneous level; default ``100 x std``).
        s_start: where the fluctuation theory starts (default: top of ``s_grid``),
            with white noise of variance ``s_start^2``.
        fluctuations: compute the linear fluctuation theory (``xi_2``,
            ``ln S``); ``False`` skips it (those fields are ``None``).

    Returns:
        :class:`PatchTheoryResult`.

    >>> x = np.array([[1.0, -1.0, 1.0, 1.0, -1.0, -1.0]])   # C(0) = 1, C(+-1) = -1/3
    >>> r = patch_theory(x, 3, level="moment", s_grid=np.geomspace(3, 0.1, 20))
    >>> r.kind, round(r.s_c**2, 12), r.k_c    # s_c^2 = max_k (1 - (2/3) cos k) at k = pi
    ('critical', 1.666666666667, (3,))
    """
    key = level if not isinstance(level, bool) else None
    if key not in _LEVEL_ALIASES:
        raise ValueError(f"level must be one of {LEVELS} (or 1, 2, 3), got {level!r}")
    level_name = _LEVEL_ALIASES[key]
    _check_dynamics(dynamics)
    arr = _as_images(images)
    stats = patch_statistics(arr, window, boundary=boundary)
    if level_name == "moment":
        return moment_level(stats, lattice, s_grid, dynamics=dynamics, s_start=s_start, fluctuations=fluctuations)
    if level_name == "homogeneous":
        return homogeneous_level(stats, lattice, s_grid, dynamics=dynamics, s0=s0, s_start=s_start,
                                 fluctuations=fluctuations)
    return marginal_level(stats, arr, lattice, s_grid, dynamics=dynamics, n_samples=n_samples,
                          pixels_per_sample=pixels_per_sample, rng=rng, s_start=s_start, fluctuations=fluctuations)


# --------------------------------------------------------------------------- high-noise error


def high_noise_approximation_error(
    stats: PatchStatistics,
    s_values: Any,
    lattice: Any = None,
    trajectory: HomogeneousTrajectory | None = None,
) -> dict:
    """How far the moment level (1) is from the homogeneous level (2).

    Returns a dict with ``s``, ``relative_error`` (``max_k |kappa_1 - kappa_2| /
    max_k |kappa_2|`` per ``s``; ``O(1/s^2)`` at high noise because the tilted
    weights are uniform up to ``O(1/s^2)``), ``kappa_max_moment``,
    ``kappa_max_homogeneous``.
    """
    stats = _check_stats(stats)
    s_arr = _as_noise(s_values, "s_values").ravel()
    shape = _lattice_for(stats, lattice)
    if trajectory is None:
        trajectory = homogeneous_trajectory(stats, float(s_arr.min()), s0=max(100.0 * stats.std, float(s_arr.max())))
    _, K2 = homogeneous_kernel(stats, trajectory, s_arr)
    k2 = kernel_fourier_eigenvalues(K2, stats.offsets, shape).real.reshape(len(s_arr), -1)
    k1 = (windowed_spectrum(stats, shape).ravel()[None, :] / (s_arr**2)[:, None])
    err = np.abs(k1 - k2).max(axis=1) / np.abs(k2).max(axis=1)
    return {"s": s_arr, "relative_error": err, "kappa_max_moment": k1.max(axis=1),
            "kappa_max_homogeneous": k2.max(axis=1)}
