"""Fourier-probe Jacobian spectrum of a denoiser, stiffness and response length.

THEORY.md sections 2 and 4. For a denoiser ``D(y; s)`` with Jacobian
``J = dD/dy`` at a state ``y``, a Fourier mode ``k`` is probed with the normalized
plane waves

    ``c_k(x) = sqrt(2/N) cos(k.x)``,  ``s_k(x) = sqrt(2/N) sin(k.x)``

(``c_k = 1/sqrt(N) cos(k.x)`` alone for the self-conjugate wavevectors with
``2k = 0`` mod ``2 pi``, e.g. ``k = 0`` and the Nyquist modes, whose sine
vanishes), and

    ``kappa_hat(k) = (<c_k, J c_k> + <s_k, J s_k>) / 2``.

Why the average: it equals ``Re <e_k, J e_k>`` for the complex unit plane wave
``e_k = (c_k + i s_k)/sqrt(2)``, i.e. the real part of the diagonal of ``J`` in
the Fourier basis. Hence ``sum_k kappa_hat(k)`` over the whole lattice is
``trace J`` for any ``J``, and for an equivariant (circulant) ``J`` with Fourier
multiplier ``mu(k)`` both terms equal ``Re mu(k)``, which is the eigenvalue
``kappa(k)`` when ``J`` is symmetric (Tweedie: ``J = Cov[x_0|y]/s^2``). The
*leakage* ``|J e - kappa_hat e|`` (root mean square over the cosine and the sine
wave) is zero for a symmetric circulant ``J`` and measures broken equivariance;
note that an antisymmetric circulant part (``Im mu != 0``) rotates ``c_k`` into
``s_k`` and is counted as leakage too.

``J v`` comes from a user-supplied Jacobian-vector product ``jvp(y, s, v)`` when
given (analytic for the patch denoiser, autograd for networks), otherwise from
central finite differences of ``D`` (:func:`central_difference_jvp`).

Stiffness ``gamma(k, s) = 1 - kappa_hat(k, s)`` (member mean), its minimum over the
probed wavevectors ``gamma_min(s)``, ``gamma(k_min, s)`` at the smallest nonzero
wavevector, and the response correlation length ``xi_J(s)`` (second-moment length
of ``chi(k) = 1/gamma(k)``) come from :func:`stiffness_curve`. Models that are not
equivariant are analysed by Lanczos on a JVP operator
(:func:`jacobian_top_eigenpairs`).

Calling convention: ``denoiser(y, s)`` takes a batch ``y`` of shape
``(M, *shape)`` and a float ``s`` and returns ``(M, *shape)``; ``jvp(y, s, v)``
takes ``y`` and ``v`` of shape ``(M, *shape)`` and returns ``J(y_m) v_m`` for each
``m``; ``vjp(y, s, u)`` likewise returns ``J(y_m)^T u_m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcrit.numerics.observables import (
    DEFAULT_CONFIDENCE,
    BootstrapCurve,
    _as_ensemble,
    _as_generator,
    _as_real_array,
    _check_callable,
    _check_confidence,
    _check_int,
    _exact_shell_labels,
    _minimal_wavevector_q2,
    _resample_counts,
    _second_moment_xi_squared,
    _to_jsonable,
    lattice_q2,
)

__all__ = [
    "FourierJacobianSpectrum",
    "JacobianEigenpairs",
    "StiffnessCurve",
    "central_difference_jvp",
    "default_relative_step",
    "fourier_jacobian_spectrum",
    "fourier_plane_waves",
    "jacobian_asymmetry",
    "jacobian_operator",
    "jacobian_top_eigenpairs",
    "representative_wavevector_indices",
    "response_correlation_length",
    "smallest_shell_wavevector_indices",
    "stiffness_curve",
]

Denoiser = Callable[[np.ndarray, float], np.ndarray]
JVP = Callable[[np.ndarray, float, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------
# wavevectors and plane waves
# ----------------------------------------------------------------------------


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError as exc:
        raise TypeError(f"shape must be a sequence of lattice sides, got {shape!r}") from exc
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"shape must be a non-empty sequence of sides >= 1, got {shape}")
    return shape


def representative_wavevector_indices(shape: Sequence[int]) -> np.ndarray:
    """One lattice index ``n`` per pair ``{k, -k}`` (all of them for a full probe).

    ``k`` and ``-k`` give the same cosine and the negated sine wave, hence the same
    ``kappa_hat`` and leakage, so probing one of each pair is complete. The
    representative is the one whose C-order linear index is smaller (``n = 0`` and
    the self-conjugate indices represent themselves).

    Returns:
        Integer array ``(K, d)`` of FFT indices ``0 <= n_a < L_a``, in C order.
    """
    shape = _check_shape(shape)
    grid = np.indices(shape).reshape(len(shape), -1).T
    negated = (-grid) % np.array(shape)
    linear = np.ravel_multi_index(grid.T, shape)
    linear_neg = np.ravel_multi_index(negated.T, shape)
    return grid[linear <= linear_neg].astype(np.int64)


def smallest_shell_wavevector_indices(
    shape: Sequence[int], n_shells: int, *, include_zero: bool = True
) -> np.ndarray:
    """Representatives whose ``q^2`` lies in the ``n_shells`` smallest nonzero shells.

    Args:
        shape: lattice shape.
        n_shells: number of nonzero ``q^2`` shells (>= 1).
        include_zero: prepend ``k = 0`` (needed for ``xi_J``).

    Returns:
        Integer array ``(K, d)``, sorted by ``q^2``.
    """
    shape = _check_shape(shape)
    n_shells = _check_int(n_shells, "n_shells", 1)
    reps = representative_wavevector_indices(shape)
    q2_grid = lattice_q2(shape)
    labels, shell_q2 = _exact_shell_labels(q2_grid)
    if n_shells > shell_q2.size - 1:
        raise ValueError(f"n_shells={n_shells} exceeds the {shell_q2.size - 1} nonzero shells of a lattice {shape}")
    rep_labels = labels[tuple(reps.T)]
    keep = (rep_labels <= n_shells) & ((rep_labels >= 1) | include_zero)
    chosen = reps[keep]
    order = np.argsort(q2_grid[tuple(chosen.T)], kind="stable")
    return chosen[order]


@dataclass(frozen=True)
class _WavevectorTable:
    indices: np.ndarray  # (K, d) FFT indices
    wavevectors: np.ndarray  # (K, d) in (-pi, pi]
    q2: np.ndarray  # (K,)
    self_conjugate: np.ndarray  # (K,)


def _wavevector_table(shape: tuple[int, ...], indices: Any) -> _WavevectorTable:
    if indices is None:
        idx = representative_wavevector_indices(shape)
    else:
        idx = np.asarray(indices)
        if idx.ndim == 1 and len(shape) == 1:
            idx = idx[:, None]
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 2 or idx.shape[1] != len(shape):
            raise ValueError(
                f"wavevector_indices must be an integer array (K, {len(shape)}) of lattice indices, "
                f"got dtype {idx.dtype} and shape {idx.shape}"
            )
        if idx.shape[0] == 0:
            raise ValueError("wavevector_indices is empty")
        idx = idx % np.array(shape)
    sides = np.array(shape)
    k = 2.0 * np.pi * idx / sides
    k = np.where(k > np.pi, k - 2.0 * np.pi, k)
    q2 = (4.0 * np.sin(k / 2.0) ** 2).sum(axis=1)
    self_conjugate = np.all((2 * idx) % sides == 0, axis=1)
    return _WavevectorTable(idx.astype(np.int64), k, q2, self_conjugate)


def _plane_waves(shape: tuple[int, ...], table: _WavevectorTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized cosine and sine waves ``(len(rows), *shape)`` (zero sine if self-conjugate)."""
    n_sites = math.prod(shape)
    phase = np.zeros((rows.size,) + shape)
    for a, side in enumerate(shape):
        coord = np.arange(side).reshape((1,) + tuple(side if b == a else 1 for b in range(len(shape))))
        step = (2.0 * np.pi * table.indices[rows, a] / side).reshape((-1,) + (1,) * len(shape))
        phase = phase + step * coord
    selfc = table.self_conjugate[rows].reshape((-1,) + (1,) * len(shape))
    cos = np.cos(phase) * np.where(selfc, 1.0 / math.sqrt(n_sites), math.sqrt(2.0 / n_sites))
    sin = np.where(selfc, 0.0, np.sin(phase) * math.sqrt(2.0 / n_sites))
    return cos, sin


def fourier_plane_waves(shape: Sequence[int], wavevector_indices: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The normalized probe waves used by :func:`fourier_jacobian_spectrum`.

    Args:
        shape: lattice shape.
        wavevector_indices: ``(K, d)`` lattice indices (default: all
            representatives).

    Returns:
        ``(cos, sin, self_conjugate)``: arrays ``(K, *shape)`` of unit norm (the
        sine is identically 0 where ``self_conjugate``), and the mask ``(K,)``.
    """
    shape = _check_shape(shape)
    table = _wavevector_table(shape, wavevector_indices)
    cos, sin = _plane_waves(shape, table, np.arange(table.indices.shape[0]))
    return cos, sin, table.self_conjugate.copy()


# ----------------------------------------------------------------------------
# Jacobian-vector products
# ----------------------------------------------------------------------------


def default_relative_step(dtype: Any = np.float64) -> float:
    """``eps^(1/3)`` of ``dtype``: the central-difference step that balances errors."""
    return float(np.finfo(np.dtype(dtype)).eps) ** (1.0 / 3.0)


def _check_noise(s: Any) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
        raise TypeError(f"s must be a real noise level, got {s!r}")
    s = float(s)
    if not math.isfinite(s) or s <= 0.0:
        raise ValueError(f"s must be a finite noise level > 0, got {s}")
    return s


def _call_denoiser(denoiser: Denoiser, y: np.ndarray, s: float) -> np.ndarray:
    out = np.asarray(denoiser(y, s))
    if out.shape != y.shape:
        raise ValueError(f"denoiser returned shape {out.shape} for input of shape {y.shape} (must be equal)")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"denoiser returned non-finite values at s = {s} (input shape {y.shape})")
    return out.astype(np.float64, copy=False)


def _call_jvp(jvp: JVP, y: np.ndarray, s: float, v: np.ndarray) -> np.ndarray:
    out = np.asarray(jvp(y, s, v))
    if out.shape != v.shape:
        raise ValueError(f"jvp returned shape {out.shape} for tangents of shape {v.shape} (must be equal)")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"jvp returned non-finite values at s = {s}")
    return out.astype(np.float64, copy=False)


def _site_step(s: float, rel_step: float | None, dtype: Any) -> float:
    rel = default_relative_step(dtype) if rel_step is None else float(rel_step)
    if not math.isfinite(rel) or rel <= 0.0:
        raise ValueError(f"fd_rel_step must be a finite number > 0, got {rel_step}")
    return rel * s


def central_difference_jvp(
    denoiser: Denoiser,
    y: Any,
    s: float,
    v: Any,
    *,
    fd_rel_step: float | None = None,
) -> np.ndarray:
    """``J(y) v`` by central finite differences of ``D``, batched.

    ``J v ~ (D(y + h u) - D(y - h u)) / (2 h) * |v|`` with ``u = v/|v|`` and the
    perturbation ``h u`` of per-site root-mean-square amplitude ``rel * s``
    (``h = rel * s * sqrt(N)``).

    Step choice: the error is the truncation ``(h^2/6) |D'''[u,u,u]|`` plus the
    roundoff ``eps |D| / h``. A posterior-mean denoiser varies on the scale of the
    noise: its posterior weights resolve changes of order ``s`` per site (finer,
    ``~ s^2/|y|``, when the field is much larger than ``s``), so ``D'''`` scales like
    ``|J| / s^2``. Balancing the two gives the relative step
    ``rel = eps^(1/3)`` (6e-6 in float64, 5e-3 in float32; the default follows the
    dtype of ``y``), with relative error ``~ eps^(2/3) (|D|/(s |J|) + 1)``: about
    ``1e-10`` for an O(1) field at ``s = 1`` in float64, growing like ``1/s`` for
    ``s`` below the field scale. Pass a ``jvp`` instead where one exists.

    Args:
        denoiser: batched ``denoiser(y, s)``.
        y: states ``(M, *shape)``.
        s: noise level.
        v: tangents ``(M, *shape)`` (any norm; zero rows give zero).
        fd_rel_step: relative step ``rel`` (default ``eps^(1/3)`` of ``y``'s dtype).

    Returns:
        ``(M, *shape)`` float64.
    """
    _check_callable(denoiser, "denoiser")
    s = _check_noise(s)
    y_arr = np.asarray(y)
    dtype = y_arr.dtype if np.issubdtype(y_arr.dtype, np.floating) else np.float64
    y_arr = _as_ensemble(y_arr, name="y")
    v_arr = _as_real_array(v, "v")
    if v_arr.shape != y_arr.shape:
        raise ValueError(f"v must have the shape of y {y_arr.shape}, got {v_arr.shape}")
    if not np.all(np.isfinite(v_arr)):
        raise ValueError("v contains non-finite values")
    return _fd_jvp(denoiser, y_arr, s, v_arr, _site_step(s, fd_rel_step, dtype), dtype)


def _fd_jvp(denoiser: Denoiser, y: np.ndarray, s: float, v: np.ndarray, site_step: float, dtype: Any) -> np.ndarray:
    axes = tuple(range(1, y.ndim))
    n_sites = math.prod(y.shape[1:])
    norms = np.sqrt((v**2).sum(axis=axes, keepdims=True))
    unit = v / np.where(norms > 0.0, norms, 1.0)
    h = site_step * math.sqrt(n_sites)
    batch = np.concatenate([y + h * unit, y - h * unit]).astype(dtype, copy=False)
    out = _call_denoiser(denoiser, batch, s)
    m = y.shape[0]
    return (out[:m] - out[m:]) / (2.0 * h) * norms


# ----------------------------------------------------------------------------
# Fourier-probe spectrum
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class FourierJacobianSpectrum:
    """``kappa_hat(k)`` and leakage for a set of states at one noise level.

    Attributes:
        s: noise level.
        shape: lattice shape.
        wavevector_indices: ``(K, d)`` FFT indices of the probed wavevectors.
        wavevectors: ``(K, d)`` wavevectors in ``(-pi, pi]``.
        q2: ``(K,)`` lattice momentum squared.
        self_conjugate: ``(K,)`` mask of cosine-only probes.
        kappa: ``(n_states, K)`` ``kappa_hat``, the cosine/sine average.
        kappa_cos, kappa_sin: ``(n_states, K)`` the two terms (``kappa_sin`` equals
            ``kappa_cos`` where self-conjugate).
        leakage: ``(n_states, K)`` ``sqrt(mean over waves of |J e - kappa_hat e|^2)``.
        method: ``"jvp"`` or ``"finite_difference"``.
        fd_site_step: per-site finite-difference amplitude (``None`` for ``jvp``).
    """

    s: float
    shape: tuple[int, ...]
    wavevector_indices: np.ndarray
    wavevectors: np.ndarray
    q2: np.ndarray
    self_conjugate: np.ndarray
    kappa: np.ndarray
    kappa_cos: np.ndarray
    kappa_sin: np.ndarray
    leakage: np.ndarray
    method: str
    fd_site_step: float | None = None

    @property
    def n_states(self) -> int:
        return int(self.kappa.shape[0])

    @property
    def gamma(self) -> np.ndarray:
        """Stiffness ``1 - kappa_hat`` per state, ``(n_states, K)``."""
        return 1.0 - self.kappa

    def mean_kappa(self) -> np.ndarray:
        """``kappa_hat`` averaged over the states, ``(K,)``."""
        return self.kappa.mean(axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.s,
            "shape": list(self.shape),
            "wavevector_indices": self.wavevector_indices.tolist(),
            "q2": self.q2.tolist(),
            "kappa_mean": self.mean_kappa().tolist(),
            "leakage_mean": self.leakage.mean(axis=0).tolist(),
            "n_states": self.n_states,
            "method": self.method,
            "fd_site_step": self.fd_site_step,
        }

    def __repr__(self) -> str:
        mean = self.mean_kappa()
        j = int(np.argmax(mean))
        return (
            f"FourierJacobianSpectrum(s={self.s:.4g}, shape={self.shape}, {self.wavevector_indices.shape[0]} "
            f"wavevectors x {self.n_states} states, max kappa_hat {mean[j]:.4g} at n={tuple(int(v) for v in self.wavevector_indices[j])}, "
            f"mean leakage {self.leakage.mean():.3g}, {self.method})"
        )


def fourier_jacobian_spectrum(
    denoiser: Denoiser | None,
    states: Any,
    s: float,
    *,
    wavevector_indices: Any = None,
    jvp: JVP | None = None,
    fd_rel_step: float | None = None,
    max_batch: int = 256,
) -> FourierJacobianSpectrum:
    """Fourier-probe Jacobian spectrum ``kappa_hat(k)`` and leakage at each state.

    Args:
        denoiser: batched ``denoiser(y, s)`` (may be ``None`` when ``jvp`` is given).
        states: ``(n_states, *shape)`` (always with the leading state axis, so a
            single image is ``y[None]``).
        s: noise level.
        wavevector_indices: ``(K, d)`` lattice indices to probe; default every
            representative of the ``{k, -k}`` pairs
            (:func:`representative_wavevector_indices`); see
            :func:`smallest_shell_wavevector_indices` for the smallest shells.
        jvp: optional batched ``jvp(y, s, v)``; otherwise central differences
            (:func:`central_difference_jvp`).
        fd_rel_step: relative finite-difference step (default ``eps^(1/3)`` of the
            states' dtype).
        max_batch: most fields per call of ``denoiser`` / ``jvp``.

    Returns:
        :class:`FourierJacobianSpectrum`.
    """
    if jvp is None:
        if denoiser is None:
            raise TypeError("give a denoiser or a jvp callable")
        _check_callable(denoiser, "denoiser")
    else:
        _check_callable(jvp, "jvp")
    s = _check_noise(s)
    raw = np.asarray(states)
    dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float64
    y = _as_ensemble(raw, name="states")
    shape = y.shape[1:]
    max_batch = _check_int(max_batch, "max_batch", 4)
    table = _wavevector_table(shape, wavevector_indices)
    n_states, n_k = y.shape[0], table.indices.shape[0]
    site_step = None if jvp is not None else _site_step(s, fd_rel_step, dtype)
    axes = tuple(range(1, len(shape) + 1))

    kappa_cos = np.empty((n_states, n_k))
    kappa_sin = np.empty((n_states, n_k))
    leakage = np.empty((n_states, n_k))
    # each (state, k) pair needs 2 directions; finite differences evaluate each twice
    per_pair = 2 if jvp is not None else 4
    chunk = max(1, max_batch // per_pair)
    pairs_state = np.repeat(np.arange(n_states), n_k)
    pairs_k = np.tile(np.arange(n_k), n_states)
    for start in range(0, pairs_state.size, chunk):
        ps = pairs_state[start : start + chunk]
        pk = pairs_k[start : start + chunk]
        cos, sin = _plane_waves(shape, table, pk)
        directions = np.concatenate([cos, sin])
        base = np.concatenate([y[ps], y[ps]])
        if jvp is not None:
            jv = _call_jvp(jvp, base.astype(dtype, copy=False), s, directions.astype(dtype, copy=False))
        else:
            jv = _fd_jvp(denoiser, base, s, directions, site_step, dtype)
        m = ps.size
        j_cos, j_sin = jv[:m], jv[m:]
        kc = (cos * j_cos).sum(axis=axes)
        ks = (sin * j_sin).sum(axis=axes)
        selfc = table.self_conjugate[pk]
        ks = np.where(selfc, kc, ks)
        kap = 0.5 * (kc + ks)
        kap_b = kap.reshape((-1,) + (1,) * len(shape))
        res_c = ((j_cos - kap_b * cos) ** 2).sum(axis=axes)
        res_s = ((j_sin - kap_b * sin) ** 2).sum(axis=axes)
        leak = np.sqrt(np.where(selfc, res_c, 0.5 * (res_c + res_s)))
        kappa_cos[ps, pk] = kc
        kappa_sin[ps, pk] = ks
        leakage[ps, pk] = leak
    return FourierJacobianSpectrum(
        s=s,
        shape=shape,
        wavevector_indices=table.indices,
        wavevectors=table.wavevectors,
        q2=table.q2,
        self_conjugate=table.self_conjugate,
        kappa=0.5 * (kappa_cos + kappa_sin),
        kappa_cos=kappa_cos,
        kappa_sin=kappa_sin,
        leakage=leakage,
        method="jvp" if jvp is not None else "finite_difference",
        fd_site_step=site_step,
    )


# ----------------------------------------------------------------------------
# Lanczos on a JVP operator
# ----------------------------------------------------------------------------


def jacobian_operator(
    denoiser: Denoiser | None,
    y: Any,
    s: float,
    *,
    jvp: JVP | None = None,
    vjp: JVP | None = None,
    symmetrize: bool = False,
    fd_rel_step: float | None = None,
):
    """``scipy.sparse.linalg.LinearOperator`` of ``J(y)`` (or its symmetric part).

    Args:
        denoiser: batched ``denoiser(y, s)`` (used for finite differences when
            ``jvp`` is ``None``).
        y: one state of shape ``shape``.
        s: noise level.
        jvp: optional batched ``jvp(y, s, v)``.
        vjp: optional batched ``vjp(y, s, u) = J^T u``; required for
            ``symmetrize=True`` and used for ``rmatvec``.
        symmetrize: apply ``(J + J^T)/2`` (needs ``vjp``).
        fd_rel_step: relative finite-difference step.

    Returns:
        A ``LinearOperator`` of size ``N x N`` acting on flattened fields.
    """
    from scipy.sparse.linalg import LinearOperator

    s = _check_noise(s)
    raw = np.asarray(y)
    dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float64
    state = _as_ensemble(raw[None], name="y")
    shape = state.shape[1:]
    n_sites = math.prod(shape)
    if jvp is None:
        if denoiser is None:
            raise TypeError("give a denoiser or a jvp callable")
        _check_callable(denoiser, "denoiser")
        site_step = _site_step(s, fd_rel_step, dtype)
    else:
        _check_callable(jvp, "jvp")
    if vjp is not None:
        _check_callable(vjp, "vjp")
    if symmetrize and vjp is None:
        raise ValueError("symmetrize=True needs vjp (J^T u) to form (J + J^T)/2")

    def forward(block: np.ndarray) -> np.ndarray:
        v = block.T.reshape((-1,) + shape)
        base = np.repeat(state, v.shape[0], axis=0)
        if jvp is not None:
            out = _call_jvp(jvp, base.astype(dtype, copy=False), s, v.astype(dtype, copy=False))
        else:
            out = _fd_jvp(denoiser, base, s, v, site_step, dtype)
        return out.reshape(v.shape[0], n_sites).T

    def backward(block: np.ndarray) -> np.ndarray:
        u = block.T.reshape((-1,) + shape)
        base = np.repeat(state, u.shape[0], axis=0)
        return _call_jvp(vjp, base.astype(dtype, copy=False), s, u.astype(dtype, copy=False)).reshape(u.shape[0], n_sites).T

    def matmat(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64).reshape(n_sites, -1)
        if symmetrize:
            return 0.5 * (forward(block) + backward(block))
        return forward(block)

    def rmatmat(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64).reshape(n_sites, -1)
        if symmetrize:
            return matmat(block)
        if vjp is None:
            raise ValueError("J^T v needs vjp")
        return backward(block)

    return LinearOperator(
        (n_sites, n_sites),
        matvec=lambda v: matmat(v)[:, 0],
        matmat=matmat,
        rmatvec=lambda v: rmatmat(v)[:, 0],
        rmatmat=rmatmat,
        dtype=np.float64,
    )


@dataclass(frozen=True, repr=False)
class JacobianEigenpairs:
    """Top eigenpairs of the Jacobian (or of its symmetric part).

    Attributes:
        values: ``(n,)`` eigenvalues, descending.
        vectors: ``(n, *shape)`` unit eigenvectors.
        s: noise level.
        symmetry: ``"assumed"`` (``J`` used as is, symmetric by Tweedie for exact
            denoisers) or ``"symmetrized"`` (``(J + J^T)/2``).
    """

    values: np.ndarray
    vectors: np.ndarray
    s: float
    symmetry: str

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "s": self.s, "symmetry": self.symmetry}

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.4g}" for v in self.values)
        return f"JacobianEigenpairs(s={self.s:.4g}, top eigenvalues [{vals}], {self.symmetry})"


def jacobian_top_eigenpairs(
    denoiser: Denoiser | None,
    y: Any,
    s: float,
    rng: Any,
    *,
    n_eigenvalues: int = 6,
    jvp: JVP | None = None,
    vjp: JVP | None = None,
    symmetrize: bool = False,
    fd_rel_step: float | None = None,
    tol: float = 1e-8,
) -> JacobianEigenpairs:
    """Largest (algebraic) eigenvalues of ``J(y)`` by Lanczos (``scipy eigsh``).

    Lanczos needs a symmetric operator. For an exact posterior-mean denoiser ``J``
    is symmetric (Tweedie: ``J = Cov[x_0|y]/s^2``), so ``J`` is used as is
    (``symmetrize=False``). A trained network's Jacobian is not exactly symmetric:
    pass its ``vjp`` and ``symmetrize=True`` to get the eigenvalues of the symmetric
    part ``(J + J^T)/2``, which governs the growth rate of ``|delta|^2`` under the
    linearized flow; :func:`jacobian_asymmetry` says how large the antisymmetric
    part is.

    Args:
        denoiser, y, s, jvp, vjp, symmetrize, fd_rel_step: as in
            :func:`jacobian_operator`.
        rng: numpy Generator or int seed (the Lanczos start vector).
        n_eigenvalues: how many (``1 <= n < N``).
        tol: relative accuracy of ``eigsh`` (finite differences limit the accuracy
            to about ``1e-9`` anyway).

    Returns:
        :class:`JacobianEigenpairs`.
    """
    from scipy.sparse.linalg import eigsh

    operator = jacobian_operator(denoiser, y, s, jvp=jvp, vjp=vjp, symmetrize=symmetrize, fd_rel_step=fd_rel_step)
    n_sites = operator.shape[0]
    n_eigenvalues = _check_int(n_eigenvalues, "n_eigenvalues", 1)
    if n_eigenvalues >= n_sites:
        raise ValueError(f"n_eigenvalues must be < N = {n_sites} for Lanczos, got {n_eigenvalues}; use numpy.linalg.eigh")
    gen = _as_generator(rng, what="jacobian_top_eigenpairs")
    start = gen.standard_normal(n_sites)
    values, vectors = eigsh(operator, k=n_eigenvalues, which="LA", v0=start, tol=tol)
    order = np.argsort(values)[::-1]
    shape = np.asarray(y).shape
    return JacobianEigenpairs(
        values=values[order],
        vectors=vectors[:, order].T.reshape((n_eigenvalues,) + tuple(shape)),
        s=float(s),
        symmetry="symmetrized" if symmetrize else "assumed",
    )


def jacobian_asymmetry(
    denoiser: Denoiser | None,
    y: Any,
    s: float,
    rng: Any,
    *,
    n_probes: int = 8,
    jvp: JVP | None = None,
    fd_rel_step: float | None = None,
) -> float:
    """Relative size of the antisymmetric part of ``J(y)``, from JVPs only.

    With random unit vectors ``u_i``, ``A_ij = <u_i, J u_j>``; returns
    ``|A - A^T|_F / (|A + A^T|_F)``: 0 for a symmetric ``J`` (up to finite-difference
    error), about ``|J_anti|/|J_sym|`` in general (a random-projection estimate).

    Args:
        denoiser, y, s, jvp, fd_rel_step: as in :func:`jacobian_operator`.
        rng: numpy Generator or int seed.
        n_probes: number of random vectors (>= 2).
    """
    n_probes = _check_int(n_probes, "n_probes", 2)
    operator = jacobian_operator(denoiser, y, s, jvp=jvp, fd_rel_step=fd_rel_step)
    gen = _as_generator(rng, what="jacobian_asymmetry")
    probes = gen.standard_normal((operator.shape[0], n_probes))
    probes /= np.linalg.norm(probes, axis=0)
    projected = probes.T @ operator.matmat(probes)
    sym = np.linalg.norm(projected + projected.T)
    if sym == 0.0:
        raise ValueError("the projected Jacobian vanishes; asymmetry undefined")
    return float(np.linalg.norm(projected - projected.T) / sym)


# ----------------------------------------------------------------------------
# stiffness and response correlation length
# ----------------------------------------------------------------------------


def _minimal_rows(indices: np.ndarray, shape: tuple[int, ...]) -> tuple[int | None, list[int] | None]:
    """Rows of ``k = 0`` and of the minimal wavevector ``+e_a`` per axis (or None)."""
    d = len(shape)
    lookup = {tuple(int(v) for v in row): i for i, row in enumerate(indices)}
    zero = lookup.get((0,) * d)
    axes = []
    for a in range(d):
        plus = tuple(1 if b == a else 0 for b in range(d))
        minus = tuple(shape[a] - 1 if b == a else 0 for b in range(d))
        row = lookup.get(plus, lookup.get(minus))
        if row is None:
            return zero, None
        axes.append(row)
    return zero, axes


def response_correlation_length(gamma: Any, wavevector_indices: Any, shape: Sequence[int]) -> np.ndarray:
    """Response correlation length ``xi_J``: second-moment length of ``chi = 1/gamma``.

    ``xi_J^2 = (chi(0)/chi_bar(k_min) - 1) / q^2(k_min)`` with ``chi_bar`` the mean of
    ``chi`` over the ``d`` minimal wavevectors (equal sides; unequal sides average the
    per-axis squared lengths), the formula of the second-moment ``xi_2`` applied to
    the susceptibility. Near ``k = 0``, ``gamma ~ gamma_0 + b |k|^2`` gives
    ``xi_J^2 ~ b / gamma_0`` (THEORY.md 3.3).

    Conventions (never NaN): ``xi_J = inf`` where ``gamma(0) <= 0`` or
    ``gamma(k_min) <= 0`` (the response has diverged: a mode went unstable);
    ``xi_J = 0`` where the squared length is negative (``chi`` larger at ``k_min``
    than at ``0``: the softest mode is not ``k = 0``).

    Args:
        gamma: ``(..., K)`` stiffness at the probed wavevectors.
        wavevector_indices: ``(K, d)``; must contain ``k = 0`` and ``+-e_a`` for
            every axis.
        shape: lattice shape (sides >= 3).

    Returns:
        ``(...)`` array of lengths in lattice spacings.
    """
    shape = _check_shape(shape)
    if min(shape) < 3:
        raise ValueError(f"xi_J needs lattice sides >= 3, got {shape}")
    g = _as_real_array(gamma, "gamma")
    if np.isnan(g).any():
        raise ValueError("gamma contains NaN")
    table = _wavevector_table(shape, wavevector_indices)
    if g.shape[-1] != table.indices.shape[0]:
        raise ValueError(f"gamma has {g.shape[-1]} wavevectors, wavevector_indices {table.indices.shape[0]}")
    zero, axes = _minimal_rows(table.indices, shape)
    if zero is None or axes is None:
        raise ValueError("xi_J needs k = 0 and the minimal wavevector along every axis among the probed wavevectors")
    g0 = g[..., zero]
    ga = g[..., axes]
    stable = (g0 > 0.0) & np.all(ga > 0.0, axis=-1)
    safe0 = np.where(stable, g0, 1.0)
    safea = np.where(stable[..., None], ga, 1.0)
    xi2 = _second_moment_xi_squared(1.0 / safe0, 1.0 / safea, _minimal_wavevector_q2(shape))
    return np.where(stable, np.sqrt(np.maximum(xi2, 0.0)), np.inf)


@dataclass(frozen=True, repr=False)
class StiffnessCurve:
    """Stiffness along a noise grid, from Fourier-probe spectra.

    All curves use the member-mean ``kappa_hat`` at each ``s`` (the annealed
    stiffness ``gamma(k, s) = 1 - E[kappa_hat(k, s)]``); the replicates resample
    members (trajectories) with the same indices at every ``s``.

    Attributes:
        s: noise levels, as given.
        wavevector_indices: ``(K, d)`` probed wavevectors.
        gamma: ``(n_s, K)`` member-mean stiffness.
        gamma_min: :class:`BootstrapCurve` of ``min_k gamma(k, s)`` over the probed
            wavevectors.
        k_at_min: ``(n_s, d)`` lattice index of the minimizing wavevector.
        gamma_kmin: :class:`BootstrapCurve` of ``gamma`` at the minimal wavevector
            (mean over axes), or ``None`` if not probed.
        xi_J: :class:`BootstrapCurve` of the response length
            (:func:`response_correlation_length`), or ``None`` if ``k = 0`` or a
            minimal wavevector was not probed.
        susceptibility: :class:`BootstrapCurve` of ``1/gamma_min`` (``inf`` where
            ``gamma_min <= 0``).
    """

    s: np.ndarray
    wavevector_indices: np.ndarray
    gamma: np.ndarray
    gamma_min: BootstrapCurve
    k_at_min: np.ndarray
    gamma_kmin: BootstrapCurve | None
    xi_J: BootstrapCurve | None
    susceptibility: BootstrapCurve
    n_members: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.s.tolist(),
            "wavevector_indices": self.wavevector_indices.tolist(),
            "gamma": _to_jsonable(self.gamma),
            "gamma_min": self.gamma_min.to_dict(),
            "k_at_min": self.k_at_min.tolist(),
            "gamma_kmin": None if self.gamma_kmin is None else self.gamma_kmin.to_dict(),
            "xi_J": None if self.xi_J is None else self.xi_J.to_dict(),
            "susceptibility": self.susceptibility.to_dict(),
            "n_members": self.n_members,
        }

    def __repr__(self) -> str:
        j = int(np.argmin(self.gamma_min.values))
        return (
            f"StiffnessCurve(n_s={self.s.size}, K={self.wavevector_indices.shape[0]}, members={self.n_members}, "
            f"lowest gamma_min {self.gamma_min.values[j]:.4g} at s={self.s[j]:.4g}, "
            f"n_bootstrap={self.gamma_min.n_bootstrap})"
        )


def stiffness_curve(
    spectra: Sequence[FourierJacobianSpectrum],
    *,
    n_bootstrap: int = 1000,
    rng: Any = None,
    member_indices: Any = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> StiffnessCurve:
    """``gamma_min(s)``, ``gamma(k_min, s)``, ``xi_J(s)`` and ``1/gamma_min`` with bootstrap.

    Args:
        spectra: one :class:`FourierJacobianSpectrum` per noise level, all on the same
            lattice and wavevectors, with the same members (state ``i`` is the same
            trajectory at every level).
        n_bootstrap: replicates (resampling members, paired across ``s``); 0 for none.
        rng: numpy Generator or int seed (required for the bootstrap).
        member_indices: optional ``(R, n_states)`` resampled indices (overrides
            ``n_bootstrap``/``rng``; share with ``correlation_length_curve`` for
            paired replicates).
        confidence: interval level.

    Returns:
        :class:`StiffnessCurve`.
    """
    confidence = _check_confidence(confidence)
    spectra = list(spectra)
    if not spectra:
        raise ValueError("spectra is empty")
    for i, sp in enumerate(spectra):
        if not isinstance(sp, FourierJacobianSpectrum):
            raise TypeError(f"spectra[{i}] must be a FourierJacobianSpectrum, got {type(sp).__name__}")
    first = spectra[0]
    for i, sp in enumerate(spectra[1:], start=1):
        if sp.shape != first.shape or not np.array_equal(sp.wavevector_indices, first.wavevector_indices):
            raise ValueError(f"spectra[{i}] probes a different lattice or wavevector set than spectra[0]")
        if sp.n_states != first.n_states:
            raise ValueError(
                f"spectra[{i}] has {sp.n_states} states, spectra[0] {first.n_states}: members must be the same trajectories"
            )
    s = np.array([sp.s for sp in spectra])
    if np.unique(s).size != s.size:
        raise ValueError(f"spectra have repeated noise levels: {s.tolist()}")
    n_members = first.n_states
    counts = _resample_counts(n_members, n_bootstrap, rng, member_indices, what="stiffness_curve")
    weights = np.concatenate([np.ones((1, n_members)), counts], axis=0)  # row 0: the full ensemble
    kappa = np.stack([sp.kappa for sp in spectra])  # (n_s, n_members, K)
    gamma_all = 1.0 - np.einsum("rm,smk->srk", weights, kappa) / n_members  # (n_s, 1+R, K)

    def curve(name: str, values: np.ndarray) -> BootstrapCurve:
        return BootstrapCurve(name=name, s=s, values=values[:, 0], replicates=values[:, 1:], confidence=confidence)

    gmin = gamma_all.min(axis=-1)
    with np.errstate(divide="ignore"):
        chi = np.where(gmin > 0.0, 1.0 / np.where(gmin > 0.0, gmin, 1.0), np.inf)
    zero, axes = _minimal_rows(first.wavevector_indices, first.shape)
    gamma_kmin = None if axes is None else curve("gamma_kmin", gamma_all[..., axes].mean(axis=-1))
    xi_j = None
    if zero is not None and axes is not None and min(first.shape) >= 3:
        xi_j = curve("xi_J", response_correlation_length(gamma_all, first.wavevector_indices, first.shape))
    return StiffnessCurve(
        s=s,
        wavevector_indices=first.wavevector_indices,
        gamma=gamma_all[:, 0, :],
        gamma_min=curve("gamma_min", gmin),
        k_at_min=first.wavevector_indices[np.argmin(gamma_all[:, 0, :], axis=-1)],
        gamma_kmin=gamma_kmin,
        xi_J=xi_j,
        susceptibility=curve("susceptibility", chi),
        n_members=n_members,
    )
