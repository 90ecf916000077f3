"""Numeric statistics of the equivariant local (pooled patch) denoiser.

The patch model (THEORY.md 3.3): a window ``W`` of offsets (centre first), a patch
set ``Phi`` (every window of every training image at every position, periodic) and
the denoiser, at pixel ``i`` of a state ``y``,

    D_i(y) = sum_a w_a phi_a(0),   w_a ∝ exp(-|y[i+W] - phi_a|^2 / (2 s^2)).

Differentiating the softmax gives the local Jacobian kernel
``J_{i,i+r} = Cov_w(i)[phi(0), phi(r)] / s^2`` (weights from the local patch
``y[i+W]``; derived in :mod:`diffcrit.theory.patch_symbolic`). At a homogeneous
state ``y = c 1`` every pixel sees the same patch ``c 1_W``, so ``J`` is a
convolution with the *tilted* kernel ``K(r) = Cov_w[phi(0), phi(r)] / s^2``.

This module holds the numeric side: the patch set (deduplicated, with
multiplicities), log-space softmax weights that stay finite for
``s`` in ``1e-4 .. 1e4`` (in units of the data), the homogeneous denoiser
``h(c, s)``, the tilted kernel, the pooled (uniform-weight) covariance ``C(r)``,
lattice Fourier sums of a kernel, the homogeneous trajectory ``c(s)`` and the
local kernel at an arbitrary state (for the marginal level).

Internally patches are stored centred by the scalar data mean ``m`` (the model is
invariant under shifting data and state together); every public function takes
and returns values in data units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from diffcrit.theory.statistics import lattice_wavevectors
from diffcrit.theory.windows import check_window_fits, extract_patches, square_window

__all__ = [
    "PatchStatistics",
    "patch_statistics",
    "homogeneous_weights",
    "homogeneous_denoiser",
    "tilted_patch_covariance",
    "tilted_kernel",
    "pooled_patch_covariance",
    "lattice_wavevectors",
    "kernel_fourier_eigenvalues",
    "kernel_fourier_kappa",
    "windowed_spectrum",
    "kernel_asymmetry",
    "HomogeneousTrajectory",
    "homogeneous_trajectory",
    "local_jacobian_kernel",
    "noise_scan_upper_bound",
]

# Rows of the (pixels x patches) logit matrix held at once by the local kernel.
_MAX_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True, eq=False)
class PatchStatistics:
    """The patch set of the pooled (equivariant local) patch model.

    Attributes:
        offsets: window offsets ``(n_offsets, d)``, the centre ``0`` first.
        patches: unique patches ``(n_unique, n_offsets)``, centred by ``mean``.
        counts: multiplicity of each unique patch ``(n_unique,)``.
        mean: scalar data mean ``m`` (over all pixels of all images).
        std: scalar data standard deviation.
        value_range: ``max - min`` of the data.
        data_shape: lattice shape of the training images.
        n_images: number of training images.
        boundary: how patches were extracted (``"periodic"`` or ``"valid"``).
    """

    offsets: np.ndarray
    patches: np.ndarray
    counts: np.ndarray
    mean: float
    std: float
    value_range: float
    data_shape: tuple[int, ...]
    n_images: int
    boundary: str

    @property
    def dim(self) -> int:
        """Spatial dimension ``d``."""
        return int(self.offsets.shape[1])

    @property
    def n_offsets(self) -> int:
        """Window size ``|W|``."""
        return int(self.offsets.shape[0])

    @property
    def n_patches(self) -> int:
        """Total number of patches (with multiplicity)."""
        return int(self.counts.sum())

    @property
    def log_counts(self) -> np.ndarray:
        """``ln`` multiplicities (added to the logits of unique patches)."""
        return self._derived["log_counts"]

    @property
    def patch_sums(self) -> np.ndarray:
        """``u_a = sum_r phi_a(r)`` of each unique (centred) patch."""
        return self._derived["sums"]

    @property
    def patch_sq_norms(self) -> np.ndarray:
        """``q_a = |phi_a|^2`` of each unique (centred) patch."""
        return self._derived["sq_norms"]

    @property
    def centre_values(self) -> np.ndarray:
        """``phi_a(0)`` of each unique (centred) patch (contiguous)."""
        return self._derived["centre"]

    @property
    def _derived(self) -> dict:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {
                "log_counts": np.log(self.counts.astype(np.float64)),
                "sums": self.patches.sum(axis=1),
                "sq_norms": np.sum(self.patches**2, axis=1),
                "centre": np.ascontiguousarray(self.patches[:, 0]),
                # [phi(r), phi(0) phi(r)]: first and second weighted moments in one product
                "moments": np.concatenate([self.patches, self.patches[:, :1] * self.patches], axis=1),
            }
            object.__setattr__(self, "_cache", cache)
        return cache

    def __repr__(self) -> str:
        return (
            f"PatchStatistics(window={self.n_offsets} offsets in {self.dim}-D, "
            f"patches={self.n_patches} ({self.patches.shape[0]} unique), "
            f"data_shape={self.data_shape}, mean={self.mean:.4g}, std={self.std:.4g})"
        )


# --------------------------------------------------------------------------- input checks


def _as_images(images: Any) -> np.ndarray:
    if isinstance(images, (str, bytes)) or images is None:
        raise TypeError(f"images must be an array (N, *lattice), got {type(images).__name__}")
    arr = np.asarray(images)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"images must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.size == 0:
        raise ValueError(
            f"images must have shape (N, *lattice) with N >= 1 and d >= 1 lattice axes, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf; the patch model needs finite pixel values")
    if float(arr.max() - arr.min()) <= 0.0:
        raise ValueError(
            f"images are constant (every pixel = {float(arr.flat[0])!r}): the patch covariance "
            "vanishes and no mode can soften; pass data with nonzero variance"
        )
    return arr


def _as_offsets(window: Any, dim: int) -> np.ndarray:
    """A window given as an odd side length or as an offsets array (centre first)."""
    if isinstance(window, bool):
        raise TypeError(f"window must be an odd integer side or an offsets array, got {window!r}")
    if isinstance(window, (int, np.integer)):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd integer side >= 1 (P = 2R+1), got {int(window)}")
        return square_window(int(window), dim)
    offsets = np.asarray(window)
    if offsets.dtype == object or not np.issubdtype(offsets.dtype, np.integer):
        raise TypeError(
            f"window must be an odd integer side or an integer offsets array, got {window!r}"
        )
    if offsets.ndim != 2 or offsets.shape[1] != dim or offsets.shape[0] < 1:
        raise ValueError(f"window offsets must have shape (n, {dim}), got {offsets.shape}")
    if np.any(offsets[0] != 0):
        raise ValueError(f"window offsets must start with the centre offset 0, got {offsets[0].tolist()}")
    if len(np.unique(offsets, axis=0)) != len(offsets):
        raise ValueError("window offsets must be distinct")
    return offsets.astype(np.int64)


def _as_noise(s: Any, name: str = "s") -> np.ndarray:
    """Noise levels as a float array; every entry finite and > 0."""
    arr = np.asarray(s, dtype=np.float64) if not isinstance(s, (str, bytes)) else None
    if arr is None:
        raise TypeError(f"{name} must be a positive number or array, got {s!r}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        bad = arr[~(np.isfinite(arr) & (arr > 0))].ravel()[0]
        raise ValueError(f"{name} (noise level) must be finite and > 0, got {float(bad)!r}")
    return arr


def _as_shape(lattice: Any, dim: int) -> tuple[int, ...]:
    """A lattice side (int, applied to every axis) or a shape tuple."""
    if isinstance(lattice, bool):
        raise TypeError(f"lattice must be an int side or a shape tuple, got {lattice!r}")
    if isinstance(lattice, (int, np.integer)):
        shape = (int(lattice),) * dim
    else:
        try:
            shape = tuple(int(v) for v in lattice)
        except TypeError as exc:
            raise TypeError(f"lattice must be an int side or a shape tuple, got {lattice!r}") from exc
        if len(shape) != dim:
            raise ValueError(f"lattice {shape} must have {dim} axes (the data dimension)")
    if any(v < 1 for v in shape):
        raise ValueError(f"lattice sides must be >= 1, got {shape}")
    return shape


# --------------------------------------------------------------------------- patch set


def patch_statistics(images: Any, window: Any, boundary: str = "periodic") -> PatchStatistics:
    """Build the pooled patch set of a data set.

    Args:
        images: ``(N, *lattice)`` training images (one channel, ``d`` axes).
        window: odd side ``P`` of a centred cube window, or an integer offsets
            array ``(n, d)`` with the centre first.
        boundary: ``"periodic"`` (every position, wrapped; the model of THEORY.md
            3.3) or ``"valid"`` (only positions where the window fits).

    Returns:
        :class:`PatchStatistics` with unique centred patches and multiplicities.

    Raises:
        ValueError: even/non-positive window, a window larger than the images,
            constant or non-finite data.

    >>> x = np.array([[0.0, 1.0, 0.0, 1.0]])
    >>> st = patch_statistics(x, 3)
    >>> st.patches.shape, st.counts.tolist(), st.mean
    ((2, 3), [2, 2], 0.5)
    """
    arr = _as_images(images)
    dim = arr.ndim - 1
    offsets = _as_offsets(window, dim)
    try:
        check_window_fits(offsets, arr.shape[1:])
    except ValueError as exc:
        raise ValueError(f"window does not fit the images {arr.shape[1:]}: {exc}") from None
    if boundary not in ("periodic", "valid"):
        raise ValueError(f"boundary must be 'periodic' or 'valid', got {boundary!r}")
    mean = float(arr.mean())
    patches = extract_patches(arr - mean, offsets, boundary=boundary)
    unique, counts = np.unique(patches, axis=0, return_counts=True)
    return PatchStatistics(
        offsets=offsets,
        patches=np.ascontiguousarray(unique),
        counts=counts.astype(np.int64),
        mean=mean,
        std=float(arr.std()),
        value_range=float(arr.max() - arr.min()),
        data_shape=tuple(arr.shape[1:]),
        n_images=int(arr.shape[0]),
        boundary=boundary,
    )


def _check_stats(stats: Any) -> PatchStatistics:
    if not isinstance(stats, PatchStatistics):
        raise TypeError(f"stats must be a PatchStatistics (from patch_statistics), got {type(stats).__name__}")
    return stats


def noise_scan_upper_bound(stats: PatchStatistics) -> float:
    """A noise level above which no mode can reach ``kappa = 1``, at any state.

    Every weighted variance of a pixel is at most ``(range/2)^2`` (Popoviciu), so
    ``|kappa(k)| <= sum_r |K(r)| <= |W| (range/2)^2 / s^2 < 1`` for
    ``s > sqrt(|W|) range / 2``. Scans for the critical noise start here.

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> round(noise_scan_upper_bound(st), 6)
    0.866025
    """
    _check_stats(stats)
    return float(np.sqrt(stats.n_offsets) * stats.value_range / 2.0)


# --------------------------------------------------------------------------- homogeneous states


def _homogeneous_logits(stats: PatchStatistics, c_centred: float, s: float) -> np.ndarray:
    # -|c 1 - phi_a|^2 / 2s^2 without the patch-independent term |W| c^2 / 2s^2:
    # (c u_a - q_a/2)/s^2, u_a = sum_r phi_a(r), q_a = |phi_a|^2. O(n_patches) per
    # state; absolute logit error ~ 1e-16 (|c u| + q)/s^2, i.e. relative weight
    # errors ~ 1e-7 at s = 1e-4 in data-std units (checked against mpmath).
    return (c_centred * stats.patch_sums - 0.5 * stats.patch_sq_norms) / (s * s) + stats.log_counts


def _softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    w = np.exp(shifted)
    return w / w.sum(axis=axis, keepdims=True)


def homogeneous_weights(stats: PatchStatistics, c: float, s: float) -> np.ndarray:
    """Softmax weights ``w_a(c)`` of the unique patches at the homogeneous state ``c 1``.

    Multiplicities are included (``w_a`` is the total weight of all copies of
    unique patch ``a``). Computed in log space.

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> homogeneous_weights(st, 0.5, 1e4).round(6).tolist()
    [0.5, 0.5]
    """
    stats = _check_stats(stats)
    c = float(c)
    s = float(_as_noise(s))
    return _softmax(_homogeneous_logits(stats, c - stats.mean, s))


def _homogeneous_moments(
    stats: PatchStatistics, c_centred: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Centred ``h`` and ``Cov_w[phi(0), phi(r)]`` at homogeneous states (1-D arrays).

    Batched over states: the weighted first and second moments are one matrix
    product. The one-pass covariance ``E_w[phi(0) phi(r)] - E_w[phi(0)] E_w[phi(r)]``
    is accurate here because the patches are centred by the data mean: its
    absolute error is ~1e-16 max|phi|^2, i.e. ~1e-15/s^2 in ``K`` for
    standardized data.
    """
    phi = stats.patches
    moments = stats._derived["moments"]  # (M, 2n)
    n = stats.n_offsets
    h = np.empty(len(s))
    cov = np.empty((len(s), n))
    block = max(1, _MAX_BLOCK_ELEMENTS // max(1, phi.shape[0]))
    for start in range(0, len(s), block):
        sl = slice(start, start + block)
        s_b = s[sl][:, None]
        logits = (c_centred[sl][:, None] * stats.patch_sums - 0.5 * stats.patch_sq_norms) / (s_b * s_b)
        w = _softmax(logits + stats.log_counts, axis=1)
        m = w @ moments
        h[sl] = m[:, 0]
        cov[sl] = m[:, n:] - m[:, :1] * m[:, :n]
    return h, cov


def _broadcast_states(c: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    s_arr = _as_noise(s)
    c_arr = np.asarray(c, dtype=np.float64)
    if not np.all(np.isfinite(c_arr)):
        raise ValueError(f"c (homogeneous state) must be finite, got {c!r}")
    return np.broadcast_arrays(c_arr, s_arr)


def homogeneous_denoiser(stats: PatchStatistics, c: Any, s: Any) -> np.ndarray:
    """``h(c, s) = sum_a w_a(c) phi_a(0)``: the patch denoiser at the state ``c 1``.

    Args:
        stats: patch statistics.
        c: homogeneous state value(s) (data units).
        s: noise level(s) ``> 0`` (broadcast against ``c``).

    Returns:
        ``h`` with the broadcast shape of ``c`` and ``s`` (data units).

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> float(homogeneous_denoiser(st, 0.5, 1e4)), float(homogeneous_denoiser(st, 0.9, 1e-3))
    (0.5, 0.0)
    """
    stats = _check_stats(stats)
    c_b, s_b = _broadcast_states(c, s)
    h, _ = _homogeneous_moments(stats, c_b.ravel() - stats.mean, s_b.ravel())
    return h.reshape(c_b.shape) + stats.mean


def tilted_patch_covariance(stats: PatchStatistics, c: Any, s: Any) -> np.ndarray:
    """Tilted patch covariance ``Cov_w[phi(0), phi(r)]`` at the state ``c 1``.

    Returns:
        Array ``(*broadcast(c, s).shape, n_offsets)``, offsets in ``stats.offsets`` order.
    """
    stats = _check_stats(stats)
    c_b, s_b = _broadcast_states(c, s)
    _, cov = _homogeneous_moments(stats, c_b.ravel() - stats.mean, s_b.ravel())
    return cov.reshape(c_b.shape + (stats.n_offsets,))


def tilted_kernel(stats: PatchStatistics, c: Any, s: Any) -> np.ndarray:
    """Jacobian kernel ``K(r) = Cov_w[phi(0), phi(r)] / s^2`` at the state ``c 1``.

    ``J_{i, i+r} = K(r)`` at a homogeneous state; ``K`` need not be even in ``r``
    (see :func:`kernel_asymmetry`).

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> (tilted_kernel(st, 0.5, 1e2) * 1e4).round(6).tolist()   # -> C(r) at high noise
    [0.25, -0.25, -0.25]
    """
    _, s_b = _broadcast_states(c, s)
    return tilted_patch_covariance(stats, c, s) / (s_b**2)[..., None]


def pooled_patch_covariance(stats: PatchStatistics) -> np.ndarray:
    """Pooled (uniform-weight) patch covariance ``C(r) = Cov[phi(0), phi(r)]``.

    For periodic pooled patches this is the pooled lattice covariance of the data
    at lag ``r`` (even in ``r``).

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> pooled_patch_covariance(st).tolist()
    [0.25, -0.25, -0.25]
    """
    stats = _check_stats(stats)
    w = stats.counts / stats.counts.sum()
    mu = w @ stats.patches
    dev = stats.patches - mu
    return (w * dev[:, 0]) @ dev


# --------------------------------------------------------------------------- lattice Fourier sums


def kernel_fourier_eigenvalues(kernel: Any, offsets: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Eigenvalues ``lambda(k) = sum_{r in W} K(r) e^{i k.r}`` of the convolution ``J_{i,i+r} = K(r)``.

    ``(J e_k)_j = sum_r K(r) e^{i k.(j+r)} = lambda(k) e_k(j)`` for ``e_k(j) = e^{i k.j}``.

    Args:
        kernel: ``(..., n_offsets)`` kernel values.
        offsets: ``(n_offsets, d)`` offsets.
        shape: lattice shape (every wavevector of the lattice is evaluated).

    Returns:
        Complex array ``(..., *shape)`` (``numpy.fft`` order of ``k``).

    >>> kernel_fourier_eigenvalues([0.5, 0.25, 0.25], [[0], [-1], [1]], (4,)).real.round(12).tolist()
    [1.0, 0.5, 0.0, 0.5]
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if kernel.shape[-1] != offsets.shape[0]:
        raise ValueError(f"kernel last axis {kernel.shape[-1]} != number of offsets {offsets.shape[0]}")
    check_window_fits(offsets, tuple(shape))
    k = lattice_wavevectors(tuple(shape)).reshape(-1, len(shape))
    phases = np.exp(1j * (k @ offsets.T))  # (n_k, n_offsets)
    values = kernel @ phases.T
    return values.reshape(kernel.shape[:-1] + tuple(shape))


def kernel_fourier_kappa(kernel: Any, offsets: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Growth part ``kappa(k) = Re lambda(k) = sum_r K(r) cos(k.r)`` on the full lattice.

    The real part governs growth: a mode's complex amplitude obeys
    ``d a_k / d ln s = (1 - lambda(k)) a_k``, so ``|a_k| ~ s^(1 - Re lambda)``;
    ``Im lambda`` only drifts its phase (a pattern translating as ``s`` changes).

    >>> kernel_fourier_kappa([0.5, 0.1, 0.3], [[0], [-1], [1]], (4,)).round(12).tolist()
    [0.9, 0.5, 0.1, 0.5]
    """
    return kernel_fourier_eigenvalues(kernel, offsets, shape).real


def windowed_spectrum(stats: PatchStatistics, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Windowed spectrum ``S_W(k) = sum_{r in W} C(r) cos(k.r)`` on a lattice.

    Args:
        stats: patch statistics.
        shape: lattice shape (default: the images' shape).

    >>> st = patch_statistics(np.array([[0.0, 1.0, 0.0, 1.0]]), 3)
    >>> windowed_spectrum(st).round(12).tolist()
    [-0.25, 0.25, 0.75, 0.25]
    """
    stats = _check_stats(stats)
    shape = stats.data_shape if shape is None else _as_shape(shape, stats.dim)
    return kernel_fourier_kappa(pooled_patch_covariance(stats), stats.offsets, shape)


def kernel_asymmetry(kernel: Any, offsets: Any) -> np.ndarray:
    """``max_r |K(r) - K(-r)|`` (zero iff every eigenvalue ``lambda(k)`` is real).

    Needs a window symmetric under ``r -> -r``.

    >>> round(float(kernel_asymmetry([0.5, 0.1, 0.3], [[0], [-1], [1]])), 12)
    0.2
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    lookup = {tuple(o): j for j, o in enumerate(offsets.tolist())}
    try:
        mirror = np.array([lookup[tuple(-v for v in o)] for o in offsets.tolist()])
    except KeyError as exc:
        raise ValueError(f"window is not symmetric under r -> -r (missing {exc.args[0]})") from None
    return np.max(np.abs(kernel - kernel[..., mirror]), axis=-1)


# --------------------------------------------------------------------------- homogeneous trajectory


_DYNAMICS_FACTOR = {"ode": 1.0, "sde": 2.0}


@dataclass(frozen=True, eq=False)
class HomogeneousTrajectory:
    """The homogeneous trajectory ``c(s)`` (dense output of the scalar ODE in ``ln s``).

    Attributes:
        s0: starting noise level (``c(s0)`` = data mean).
        s_end: lowest noise level integrated to.
        dynamics: ``"ode"`` (``dc/ds = (c - h)/s``) or ``"sde"`` (the noiseless
            drift of the reverse SDE, ``dc/ds = 2 (c - h)/s``).
        mean: data mean (the starting value).
        solution: scipy dense output in ``ln s`` of ``c - mean``.
        n_rhs: number of right-hand-side evaluations used.
    """

    s0: float
    s_end: float
    dynamics: str
    mean: float
    solution: Any
    n_rhs: int

    def __call__(self, s: Any) -> np.ndarray:
        """``c(s)`` (data units) for ``s_end <= s <= s0``."""
        s_arr = _as_noise(s)
        # 1e-9 relative slack: grid ends computed from s0/s_end by exp/log round-trips.
        if np.any(s_arr > self.s0 * (1 + 1e-9)) or np.any(s_arr < self.s_end * (1 - 1e-9)):
            raise ValueError(
                f"s must lie in the integrated range [{self.s_end:.4g}, {self.s0:.4g}], "
                f"got [{float(s_arr.min()):.4g}, {float(s_arr.max()):.4g}]"
            )
        log_s = np.clip(np.log(s_arr), np.log(self.s_end), np.log(self.s0))
        return np.asarray(self.solution(log_s.ravel())).reshape(s_arr.shape) + self.mean

    def __repr__(self) -> str:
        return f"HomogeneousTrajectory(dynamics={self.dynamics!r}, s0={self.s0:.4g}, s_end={self.s_end:.4g})"


def homogeneous_trajectory(
    stats: PatchStatistics,
    s_end: float,
    s0: float | None = None,
    dynamics: str = "ode",
    rtol: float = 1e-10,
) -> HomogeneousTrajectory:
    """Integrate the homogeneous trajectory ``c(s)`` from ``s0`` down to ``s_end``.

    ODE in ``l = ln s``: ``dc/dl = f (c - h(c, s))`` with ``f = 1`` (probability
    flow) or ``f = 2`` (noiseless drift of the reverse SDE). Start: ``c(s0) = m``,
    the data mean, at ``s0 = 100 x`` data std by default. At high noise the exact
    invariant trajectory is ``c = m + beta/(3 s^2) + O(s^-4)`` (see
    :func:`diffcrit.theory.patch_symbolic.homogeneous_high_noise_expansion`), so
    starting at ``m`` is off by ``|beta|/(3 s0^2)``; the ODE contracts as ``s``
    decreases (``delta ~ s^(1 - kappa(0))``), shrinking that error further by
    ``s/s0``. Integrated with LSODA (switches to an implicit method where the softmax makes
    ``h`` steep in ``c``) and the analytic ``dh/dc = sum_r K(r)``.

    Args:
        stats: patch statistics.
        s_end: lowest noise level (``> 0``).
        s0: starting noise level (default ``100 * std``); must exceed ``s_end``.
        dynamics: ``"ode"`` or ``"sde"``.
        rtol: relative tolerance (absolute tolerance ``rtol * 1e-2 * std``).

    Returns:
        :class:`HomogeneousTrajectory`.
    """
    stats = _check_stats(stats)
    if dynamics not in _DYNAMICS_FACTOR:
        raise ValueError(f"dynamics must be 'ode' or 'sde', got {dynamics!r}")
    s_end = float(_as_noise(s_end, "s_end"))
    s0 = 100.0 * stats.std if s0 is None else float(_as_noise(s0, "s0"))
    if not s0 > s_end:
        raise ValueError(f"s0 ({s0:.4g}) must exceed s_end ({s_end:.4g})")
    if not (0.0 < rtol < 1e-2):
        raise ValueError(f"rtol must lie in (0, 1e-2), got {rtol!r}")
    factor = _DYNAMICS_FACTOR[dynamics]
    sums = stats.patch_sums
    centre = stats.centre_values
    counter = [0]

    def rhs(log_s: float, y: np.ndarray) -> np.ndarray:
        counter[0] += 1
        s = float(np.exp(log_s))
        w = _softmax(_homogeneous_logits(stats, float(y[0]), s))
        # elementwise sums, not BLAS dot: threaded BLAS on tiny vectors stalls on busy machines
        return np.array([factor * (y[0] - np.sum(w * centre))])

    def jac(log_s: float, y: np.ndarray) -> np.ndarray:
        s = float(np.exp(log_s))
        w = _softmax(_homogeneous_logits(stats, float(y[0]), s))
        # dh/dc = Cov_w[phi(0), sum_r phi(r)] / s^2
        cov = np.sum(w * (centre - np.sum(w * centre)) * (sums - np.sum(w * sums)))
        return np.array([[factor * (1.0 - cov / (s * s))]])

    sol = solve_ivp(
        rhs, (np.log(s0), np.log(s_end)), np.array([0.0]), method="LSODA", jac=jac,
        rtol=rtol, atol=rtol * 1e-2 * stats.std, dense_output=True,
    )
    if not sol.success:
        raise RuntimeError(f"homogeneous trajectory integration failed: {sol.message}")
    if not np.all(np.isfinite(sol.y)):
        raise RuntimeError("homogeneous trajectory produced non-finite values")

    def dense(log_s: np.ndarray) -> np.ndarray:
        return sol.sol(log_s)[0]

    return HomogeneousTrajectory(
        s0=s0, s_end=s_end, dynamics=dynamics, mean=stats.mean, solution=dense, n_rhs=counter[0]
    )


# --------------------------------------------------------------------------- arbitrary states


def local_jacobian_kernel(
    stats: PatchStatistics, fields: Any, s: float, return_denoised: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-pixel Jacobian kernel ``J_{i,i+r} = Cov_w(i)[phi(0), phi(r)] / s^2`` at any state.

    The weights at pixel ``i`` come from the local patch ``y[i+W]`` (periodic);
    the fields may live on any lattice the window fits (the denoiser is local).

    Args:
        stats: patch statistics.
        fields: ``(N, *lattice)`` states.
        s: noise level ``> 0``.
        return_denoised: also return the denoised fields ``D(y)``.

    Returns:
        ``K`` of shape ``(N, *lattice, n_offsets)`` (and ``D`` of shape ``(N, *lattice)``).
    """
    stats = _check_stats(stats)
    s = float(_as_noise(s))
    y = np.asarray(fields, dtype=np.float64)
    if y.ndim != stats.dim + 1:
        raise ValueError(f"fields must have shape (N, *lattice) with {stats.dim} lattice axes, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("fields contain NaN or inf")
    check_window_fits(stats.offsets, y.shape[1:])
    local = extract_patches(y - stats.mean, stats.offsets)  # (rows, n)
    phi = stats.patches
    half_sq = 0.5 * np.sum(phi**2, axis=1)
    centre_prod = phi[:, :1] * phi
    log_counts = stats.log_counts
    rows = local.shape[0]
    block = max(1, _MAX_BLOCK_ELEMENTS // max(1, phi.shape[0]))
    kernel = np.empty((rows, stats.n_offsets))
    denoised = np.empty(rows)
    for start in range(0, rows, block):
        y_loc = local[start : start + block]
        # -|y - phi|^2/2s^2 up to a per-row constant; the matmul form is what makes
        # this affordable (logit error ~ 1e-16 |y||phi|/s^2, negligible for s >= 1e-4).
        logits = (y_loc @ phi.T - half_sq) / (s * s) + log_counts
        w = _softmax(logits, axis=1)
        mu = w @ phi
        second = w @ centre_prod
        kernel[start : start + block] = (second - mu[:, :1] * mu) / (s * s)
        denoised[start : start + block] = mu[:, 0]
    kernel = kernel.reshape(y.shape + (stats.n_offsets,))
    if return_denoised:
        return kernel, denoised.reshape(y.shape) + stats.mean
    return kernel
