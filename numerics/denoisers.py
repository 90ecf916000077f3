"""Exact denoisers ``D(y; s) = E[x_0 | y]`` in the VE-equivalent variables.

Conventions (THEORY.md 1): a noisy field is ``y = x_0 + s * eps`` with
``y = x / alpha`` and ``s = sigma / alpha``; the score is
``grad log p_s(y) = (D(y; s) - y) / s**2``.

**The denoiser protocol** is minimal: any callable ``D(y, s)`` that takes a state
``y`` (one field of shape ``shape`` or a batch ``(B, *shape)``) and a noise level
``s > 0`` and returns an array of the same shape is a denoiser. Plain functions,
the classes below, the patch model and wrapped networks are used interchangeably by
the samplers. Optional attributes that the samplers use when present:

- ``field_shape``: the shape of one field (lets the sampler tell a single field from
  a batch and check shapes before any work);
- ``mean``: the data mean ``E[x_0]`` (the default centre of the initial state).

The classes here are the exact posterior means of simple data models:

- :class:`GaussianFieldDenoiser`: Gaussian data (the Wiener filter), stationary
  (FFT, diagonal in Fourier space) or with a dense covariance (eigenbasis);
- :class:`GaussianMixtureDenoiser`: isotropic Gaussian mixture (THEORY.md 3.2);
- :class:`MemorizingDenoiser`: the empirical distribution of a training set (the
  ``v -> 0`` limit of the mixture with one component per training point);
- :class:`GuidedDenoiser`: the guided combination ``D_u + w(s) (D_c - D_u)``, with
  :func:`guidance_window` for a guidance pulse (THEORY.md 5, E3).

All softmax weights are computed in log space (subtract the maximum logit, streamed
over chunks of components), so they are finite for ``s`` from ``1e-4`` to ``1e4``
and beyond. Every class computes in ``float64`` by default and in ``float32`` on
request (``dtype=np.float32``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Denoiser",
    "GaussianFieldDenoiser",
    "GaussianMixtureDenoiser",
    "MemorizingDenoiser",
    "GuidedDenoiser",
    "GuidanceWindow",
    "guidance_window",
    "check_denoiser",
]

#: Target number of float entries of one temporary block in the streamed softmax
#: (about 32 MB in float64): bounds memory whatever the number of components.
_BLOCK_ENTRIES = 4_000_000


@runtime_checkable
class Denoiser(Protocol):
    """Anything callable as ``D(y, s)`` returning an array shaped like ``y``."""

    def __call__(self, y: np.ndarray, s: float) -> np.ndarray:  # pragma: no cover - protocol
        ...


def check_denoiser(denoiser: Any, name: str = "denoiser") -> Any:
    """Return ``denoiser`` if it is callable as ``D(y, s)``, else raise ``TypeError``."""
    if not callable(denoiser):
        raise TypeError(
            f"{name} must be callable as D(y, s) -> array shaped like y, "
            f"got {denoiser!r} ({type(denoiser).__name__})"
        )
    return denoiser


# --------------------------------------------------------------------------- checks


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float64 or float32, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dt}")
    return dt


def _check_noise_level(s: Any) -> float:
    """The noise level passed to a denoiser: a finite real scalar > 0."""
    if isinstance(s, np.ndarray) and s.ndim == 0:
        s = s.item()
    if isinstance(s, bool) or not isinstance(s, numbers.Real):
        raise TypeError(f"noise level s must be a real scalar, got {s!r}")
    s = float(s)
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"noise level s must be finite and > 0, got {s}")
    return s


def _as_batch(y: Any, field_shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """Return ``(batch (B, *field_shape), was_single)``; raise on a shape mismatch."""
    y = np.asarray(y, dtype=dtype)
    if y.shape == field_shape:
        return y[None], True
    if y.ndim == len(field_shape) + 1 and y.shape[1:] == field_shape:
        return y, False
    raise ValueError(
        f"y must be one field of shape {field_shape} or a batch of shape "
        f"(B, {', '.join(map(str, field_shape))}), got shape {y.shape}"
    )


def _streamed_softmax_mean(block_iter, batch: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax-weighted sums streamed over blocks of components.

    ``block_iter`` yields ``(logits (B, c), values (c, width))``. Returns
    ``(weighted (B, width), total (B,))`` with ``sum_c softmax_c values_c =
    weighted / total[:, None]``, computed as a running log-sum-exp: each block is
    exponentiated relative to the running maximum, and earlier sums are rescaled
    when the maximum grows, so no exponential overflows or turns 0/0.
    """
    running_max = np.full(batch, -np.inf)
    total = np.zeros(batch)
    weighted = np.zeros((batch, width))
    for logits, values in block_iter:
        new_max = np.maximum(running_max, logits.max(axis=1))
        rescale = np.exp(running_max - new_max)  # exp(-inf) = 0 on the first block
        weights = np.exp(logits - new_max[:, None])
        total = total * rescale + weights.sum(axis=1)
        weighted = weighted * rescale[:, None] + weights @ values
        running_max = new_max
    return weighted, total


# ------------------------------------------------------------------ Gaussian field


class GaussianFieldDenoiser:
    """Exact denoiser of Gaussian data ``x_0 ~ N(mu, Sigma)``: the Wiener filter.

    ``D(y; s) = mu + Sigma (Sigma + s^2 I)^{-1} (y - mu)`` (THEORY.md 3.1). In the
    eigenbasis of ``Sigma`` (Fourier modes for a stationary field on a periodic
    lattice) it acts mode by mode:
    ``D_k = mu_k + lambda_k / (lambda_k + s^2) (y_k - mu_k)``.

    Two representations:

    - ``spectrum``: the eigenvalues ``lambda_k >= 0`` of a circulant (stationary,
      periodic) covariance on the FFT grid of the lattice (shape = lattice shape,
      ``numpy.fft.fftn`` ordering), i.e. ``lambda = fftn(C)`` for the correlation
      function ``C(r) = Cov(x_i, x_{i+r})``. Applied with real FFTs.
    - ``covariance``: a dense symmetric PSD matrix ``(N, N)``, ``N = prod(field_shape)``;
      applied through its eigendecomposition (computed once).

    The mean ``mu`` is a scalar or a field of the lattice shape (it need not be
    stationary).

    Args:
        spectrum: lattice-shaped array of ``lambda_k`` (exclusive with ``covariance``).
        covariance: dense ``(N, N)`` covariance (exclusive with ``spectrum``).
        mean: scalar or field-shaped mean ``mu`` (default 0).
        field_shape: shape of one field for ``covariance`` (default ``(N,)``).
        dtype: ``float64`` (default) or ``float32``.
    """

    def __init__(self, spectrum: Any = None, covariance: Any = None, mean: Any = 0.0, *,
                 field_shape: tuple[int, ...] | None = None, dtype: Any = np.float64):
        if (spectrum is None) == (covariance is None):
            raise ValueError("give exactly one of spectrum (stationary, FFT) or covariance (dense)")
        self.dtype = _check_dtype(dtype)
        if spectrum is not None:
            self._init_spectrum(spectrum, field_shape)
        else:
            self._init_covariance(covariance, field_shape)
        mean_arr = np.asarray(mean, dtype=np.float64)
        if mean_arr.ndim == 0:
            mean_arr = np.full(self.field_shape, float(mean_arr))
        if mean_arr.shape != self.field_shape:
            raise ValueError(
                f"mean must be a scalar or an array of the field shape {self.field_shape}, "
                f"got shape {mean_arr.shape}"
            )
        if not np.all(np.isfinite(mean_arr)):
            raise ValueError("mean must be finite")
        self._mean = mean_arr

    # -- construction

    def _init_spectrum(self, spectrum: Any, field_shape: Any) -> None:
        lam = np.asarray(spectrum, dtype=np.float64)
        if lam.ndim < 1 or lam.size == 0:
            raise ValueError(f"spectrum must be a lattice-shaped array, got shape {lam.shape}")
        if field_shape is not None and tuple(field_shape) != lam.shape:
            raise ValueError(f"field_shape {tuple(field_shape)} does not match spectrum shape {lam.shape}")
        if not np.all(np.isfinite(lam)):
            raise ValueError("spectrum must be finite")
        scale = float(np.max(np.abs(lam))) if lam.size else 0.0
        if np.any(lam < -1e-12 * max(scale, 1e-300)):
            raise ValueError(f"spectrum must be >= 0 (a covariance), got minimum {lam.min():.3g}")
        lam = np.clip(lam, 0.0, None)
        axes = tuple(range(lam.ndim))
        mirrored = np.roll(np.flip(lam, axis=axes), shift=1, axis=axes)  # lambda(-k)
        asym = float(np.max(np.abs(lam - mirrored)))
        if asym > 1e-10 * max(scale, 1e-300):
            raise ValueError(
                "spectrum must satisfy lambda(k) = lambda(-k) (a real stationary field); "
                f"largest asymmetry {asym:.3g}"
            )
        self.kind = "stationary"
        self.field_shape = lam.shape
        self.spectrum = lam
        self._axes = tuple(range(-lam.ndim, 0))
        last = lam.shape[-1] // 2 + 1
        self._half_spectrum = lam[..., :last]  # rfftn keeps k_last in [0, n//2]

    def _init_covariance(self, covariance: Any, field_shape: Any) -> None:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
            raise ValueError(f"covariance must be a square (N, N) matrix, got shape {cov.shape}")
        if not np.all(np.isfinite(cov)):
            raise ValueError("covariance must be finite")
        n = cov.shape[0]
        if field_shape is None:
            field_shape = (n,)
        field_shape = tuple(int(a) for a in field_shape)
        if math.prod(field_shape) != n:
            raise ValueError(f"field_shape {field_shape} has {math.prod(field_shape)} sites, covariance has {n}")
        scale = float(np.max(np.abs(cov)))
        if np.max(np.abs(cov - cov.T)) > 1e-10 * max(scale, 1e-300):
            raise ValueError("covariance must be symmetric")
        eigval, eigvec = np.linalg.eigh(0.5 * (cov + cov.T))
        if eigval.min() < -1e-10 * max(scale, 1e-300):
            raise ValueError(f"covariance must be positive semi-definite, smallest eigenvalue {eigval.min():.3g}")
        self.kind = "dense"
        self.field_shape = field_shape
        self.eigenvalues = np.clip(eigval, 0.0, None)
        self.eigenvectors = eigvec

    @classmethod
    def from_correlation(cls, correlation: Any, mean: Any = 0.0, *, dtype: Any = np.float64
                         ) -> "GaussianFieldDenoiser":
        """Stationary field from its correlation function ``C(r)`` on the lattice.

        ``correlation[r] = Cov(x_i, x_{i+r})`` with offsets ``r`` in FFT order (``r``
        and ``r + L`` identified). The spectrum is ``lambda_k = Re fftn(C)(k)``.
        """
        corr = np.asarray(correlation, dtype=np.float64)
        return cls(spectrum=np.real(np.fft.fftn(corr)), mean=mean, dtype=dtype)

    # -- properties

    @property
    def mean(self) -> np.ndarray:
        """The data mean ``mu`` as a field."""
        return self._mean.astype(self.dtype)

    def modes(self) -> np.ndarray:
        """Covariance eigenvalues ``lambda_k`` (lattice-shaped spectrum or a 1-D array)."""
        return self.spectrum if self.kind == "stationary" else self.eigenvalues

    def jacobian_eigenvalues(self, s: float) -> np.ndarray:
        """``kappa_k = lambda_k / (lambda_k + s^2)``: the Jacobian ``dD/dy`` per mode."""
        s = _check_noise_level(s)
        lam = self.modes()
        return lam / (lam + s * s)

    # -- the filter

    def _apply_mode_gain(self, batch: np.ndarray, gain_half_or_eig: np.ndarray) -> np.ndarray:
        """``mu + G (y - mu)`` with ``G`` diagonal in the mode basis."""
        centred = batch - self._mean.astype(batch.dtype)
        if self.kind == "stationary":
            coeffs = np.fft.rfftn(centred, axes=self._axes)
            coeffs *= gain_half_or_eig.astype(coeffs.real.dtype)
            out = np.fft.irfftn(coeffs, s=self.field_shape, axes=self._axes)
        else:
            flat = centred.reshape(len(batch), -1)
            vec = self.eigenvectors.astype(batch.dtype)
            out = ((flat @ vec) * gain_half_or_eig.astype(batch.dtype)) @ vec.T
            out = out.reshape(batch.shape)
        return (out + self._mean).astype(batch.dtype, copy=False)

    def _mode_values(self) -> np.ndarray:
        return self._half_spectrum if self.kind == "stationary" else self.eigenvalues

    def __call__(self, y: Any, s: float) -> np.ndarray:
        s = _check_noise_level(s)
        batch, single = _as_batch(y, self.field_shape, self.dtype)
        lam = self._mode_values()
        out = self._apply_mode_gain(batch, lam / (lam + s * s))
        return out[0] if single else out

    def exact_flow(self, y0: Any, s0: float, s: float) -> np.ndarray:
        """Exact probability-flow ODE solution from ``(y0, s0)`` to noise level ``s``.

        Per mode ``y_k(s) = mu_k + (y_k(s0) - mu_k) sqrt((lambda_k + s^2)/(lambda_k + s0^2))``
        (THEORY.md 3.1), valid for any ``s, s0 >= 0`` (forward or backward).
        """
        s0 = float(s0)
        s = float(s)
        if not (math.isfinite(s0) and math.isfinite(s) and s0 >= 0 and s >= 0):
            raise ValueError(f"s0 and s must be finite and >= 0, got s0={s0}, s={s}")
        batch, single = _as_batch(y0, self.field_shape, np.dtype(np.float64))
        lam = self._mode_values()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt((lam + s * s) / (lam + s0 * s0))
        if not np.all(np.isfinite(ratio)):
            raise ValueError("exact_flow from s0 = 0 is undefined for modes with lambda_k = 0")
        out = self._apply_mode_gain(batch, ratio)
        return out[0] if single else out

    def sample_marginal(self, n: int, s: float, rng: Any) -> np.ndarray:
        """``n`` exact draws of ``y = x_0 + s eps`` (``N(mu, Sigma + s^2 I)``), shape ``(n, *shape)``."""
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        s = float(s)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"s must be finite and >= 0, got {s}")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        white = gen.standard_normal((n, *self.field_shape))
        lam = self._mode_values()
        out = self._apply_mode_gain(white + self._mean, np.sqrt(lam + s * s))
        return out.astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return (f"GaussianFieldDenoiser(kind={self.kind!r}, field_shape={self.field_shape}, "
                f"dtype={self.dtype.name})")


# ------------------------------------------------------------------ Gaussian mixture


class GaussianMixtureDenoiser:
    """Exact denoiser of an isotropic Gaussian mixture (THEORY.md 3.2).

    Data ``x_0 ~ sum_c pi_c N(m_c, v_c I)`` in ``n = prod(field_shape)`` dimensions.
    Given ``y = x_0 + s eps``, the component posterior is
    ``w_c(y) = softmax_c[ln pi_c - |y - m_c|^2 / (2 (v_c + s^2)) - (n/2) ln(v_c + s^2)]``
    and the component-wise posterior mean is the shrunk mean
    ``m_c + v_c/(v_c + s^2) (y - m_c)``, so

    ``D(y; s) = sum_c w_c(y) [m_c + v_c/(v_c + s^2) (y - m_c)]``.

    The softmax is streamed over blocks of components in log space. ``v = 0`` is the
    empirical distribution of the means (see also :class:`MemorizingDenoiser`).

    Args:
        means: ``(C, *field_shape)`` component means.
        variance: ``v >= 0``, a scalar or one value per component ``(C,)``.
        weights: ``(C,)`` nonnegative mixture weights (normalized here; zero-weight
            components are dropped); uniform by default.
        dtype: ``float64`` (default) or ``float32`` for the returned field.
    """

    def __init__(self, means: Any, variance: Any = 0.0, weights: Any = None, *,
                 dtype: Any = np.float64):
        self.dtype = _check_dtype(dtype)
        m = np.asarray(means, dtype=np.float64)
        if m.ndim < 2 or m.shape[0] < 1:
            raise ValueError(f"means must have shape (C, *field_shape) with C >= 1, got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("means must be finite")
        n_comp = m.shape[0]
        v = np.asarray(variance, dtype=np.float64)
        if v.ndim == 0:
            v = np.full(n_comp, float(v))
        if v.shape != (n_comp,):
            raise ValueError(f"variance must be a scalar or have shape ({n_comp},), got {v.shape}")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"variance must be finite and >= 0, got {variance!r}")
        if weights is None:
            w = np.full(n_comp, 1.0 / n_comp)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n_comp,):
                raise ValueError(f"weights must have shape ({n_comp},), got {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError("weights must be finite, >= 0, with a positive sum")
            w = w / w.sum()
        keep = w > 0
        self.field_shape = m.shape[1:]
        self.means = m[keep]
        self.variances = v[keep]
        self.weights = w[keep]
        self._flat_means = self.means.reshape(len(self.means), -1)
        self._log_weights = np.log(self.weights)

    @property
    def mean(self) -> np.ndarray:
        """The data mean ``sum_c pi_c m_c``."""
        return np.tensordot(self.weights, self.means, axes=1).astype(self.dtype)

    def component_posterior(self, y: Any, s: float) -> np.ndarray:
        """Posterior weights ``w_c(y)`` of the (kept) components, shape ``(B, C)`` or ``(C,)``."""
        s = _check_noise_level(s)
        batch, single = _as_batch(y, self.field_shape, np.dtype(np.float64))
        flat = batch.reshape(len(batch), -1)
        logits = np.concatenate([lg for lg, _ in self._blocks(flat, s, values=False)], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        post = np.exp(logits)
        post /= post.sum(axis=1, keepdims=True)
        return post[0] if single else post

    def _blocks(self, flat: np.ndarray, s: float, values: bool = True):
        """Yield ``(logits (B, c), values (c, n + 1))`` per block of components.

        ``values[c] = [(1 - r_c) m_c, r_c]`` with ``r_c = v_c / (v_c + s^2)``, so that
        ``D = sum_c w_c (1 - r_c) m_c + (sum_c w_c r_c) y``.
        """
        batch, n = flat.shape
        n_comp = len(self._flat_means)
        step = max(1, _BLOCK_ENTRIES // max(1, batch * n))
        for start in range(0, n_comp, step):
            sl = slice(start, min(start + step, n_comp))
            means = self._flat_means[sl]
            total_var = self.variances[sl] + s * s
            # direct differences (not the expanded |y|^2 - 2 y.m + |m|^2): exact
            # distances even when s is tiny and y sits on a component.
            diff = flat[:, None, :] - means[None]
            sq_dist = np.einsum("bcn,bcn->bc", diff, diff)
            logits = (self._log_weights[sl] - 0.5 * sq_dist / total_var
                      - 0.5 * n * np.log(total_var))
            if not values:
                yield logits, None
                continue
            shrink = self.variances[sl] / total_var
            vals = np.concatenate([(1.0 - shrink)[:, None] * means, shrink[:, None]], axis=1)
            yield logits, vals

    def __call__(self, y: Any, s: float) -> np.ndarray:
        s = _check_noise_level(s)
        batch, single = _as_batch(y, self.field_shape, np.dtype(np.float64))
        flat = batch.reshape(len(batch), -1)
        weighted, total = _streamed_softmax_mean(self._blocks(flat, s), len(flat), flat.shape[1] + 1)
        weighted /= total[:, None]
        out = weighted[:, :-1] + weighted[:, -1:] * flat
        out = out.reshape(batch.shape).astype(self.dtype, copy=False)
        return out[0] if single else out

    def __repr__(self) -> str:
        return (f"GaussianMixtureDenoiser(components={len(self.means)}, field_shape={self.field_shape}, "
                f"dtype={self.dtype.name})")


# ------------------------------------------------------------------ memorizing model


class MemorizingDenoiser:
    """Exact denoiser of the empirical distribution of a training set.

    ``D(y; s) = sum_n softmax_n(-|y - x_n|^2 / (2 s^2)) x_n`` (THEORY.md 3.2): the
    ``v -> 0`` limit of :class:`GaussianMixtureDenoiser` with one equal-weight
    component per training point ``x_n``.

    Computed with matrix products: ``-|y - x_n|^2/(2 s^2) = (y.x_n - |x_n|^2/2)/s^2 + const(y)``
    (the constant drops out of the softmax), streamed over chunks of the training
    set with a running log-sum-exp, so memory is ``O(B * chunk)`` and no exponential
    overflows at any ``s``. The rounding error of a logit is about
    ``eps * (|y|^2 + |x_n|^2) / s^2`` (``eps`` the dtype's machine epsilon); it only
    matters when two training points are within that margin of a tie.

    Args:
        data: ``(N, *field_shape)`` training fields.
        chunk_size: training points per chunk (default: sized to about 32 MB blocks).
        dtype: ``float64`` (default) or ``float32`` (the matrix products run in it).
    """

    def __init__(self, data: Any, *, chunk_size: int | None = None, dtype: Any = np.float64):
        self.dtype = _check_dtype(dtype)
        x = np.asarray(data, dtype=np.float64)
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError(f"data must have shape (N, *field_shape) with N >= 1, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("data must be finite")
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
                raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.field_shape = x.shape[1:]
        self.data = x
        self._flat = x.reshape(len(x), -1).astype(self.dtype)
        self._half_sq_norms = 0.5 * np.einsum("nd,nd->n", self._flat, self._flat)

    @property
    def mean(self) -> np.ndarray:
        """The training-set mean."""
        return self.data.mean(axis=0).astype(self.dtype)

    def _blocks(self, flat: np.ndarray, s: float):
        n_data = len(self._flat)
        step = self.chunk_size or max(1, _BLOCK_ENTRIES // max(1, len(flat)))
        inv_var = 1.0 / (s * s)
        for start in range(0, n_data, step):
            chunk = self._flat[start:start + step]
            logits = (flat @ chunk.T - self._half_sq_norms[start:start + step]).astype(np.float64)
            yield logits * inv_var, chunk

    def __call__(self, y: Any, s: float) -> np.ndarray:
        s = _check_noise_level(s)
        batch, single = _as_batch(y, self.field_shape, self.dtype)
        flat = batch.reshape(len(batch), -1)
        weighted, total = _streamed_softmax_mean(self._blocks(flat, s), len(flat), flat.shape[1])
        out = (weighted / total[:, None]).reshape(batch.shape).astype(self.dtype, copy=False)
        return out[0] if single else out

    def __repr__(self) -> str:
        return (f"MemorizingDenoiser(n_train={len(self.data)}, field_shape={self.field_shape}, "
                f"dtype={self.dtype.name})")


# ------------------------------------------------------------------ guidance


class GuidanceWindow:
    """Guidance weight ``w(s) = w`` for ``s* e^{-Delta/2} <= s <= s* e^{+Delta/2}``, else 0 (THEORY.md 5, E3).

    Membership is tested in ``s`` against the stored edges, so an edge inserted into
    a sampler's grid is inside exactly (a test of ``|ln s - ln s*| <= Delta/2`` misses
    an edge by one rounding in about one case in ten).

    Attributes:
        weight: the guidance weight ``w`` inside the window.
        s_center: the centre ``s*``.
        width_ln_s: the width ``Delta`` in ``ln s``.
        s_high, s_low: the window edges ``s* e^{+-Delta/2}``; add them to a sampler's
            grid (``insert_noise_levels``) so that no step straddles an edge.
    """

    def __init__(self, weight: float, s_center: float, width_ln_s: float):
        for name, value in (("weight", weight), ("s_center", s_center), ("width_ln_s", width_ln_s)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite real number, got {value!r}")
        if s_center <= 0:
            raise ValueError(f"s_center must be > 0, got {s_center}")
        if width_ln_s <= 0:
            raise ValueError(f"width_ln_s must be > 0, got {width_ln_s}")
        self.weight = float(weight)
        self.s_center = float(s_center)
        self.width_ln_s = float(width_ln_s)
        self.s_high = self.s_center * math.exp(0.5 * self.width_ln_s)
        self.s_low = self.s_center * math.exp(-0.5 * self.width_ln_s)

    def __call__(self, s: float) -> float:
        # tested in s against the stored edges: an edge inserted into a grid is then
        # inside exactly, where |ln s - ln s*| <= Delta/2 can miss it by one rounding
        return self.weight if self.s_low <= s <= self.s_high else 0.0

    def __repr__(self) -> str:
        return (f"GuidanceWindow(weight={self.weight}, s_center={self.s_center:.4g}, "
                f"width_ln_s={self.width_ln_s:.4g}; s in [{self.s_low:.4g}, {self.s_high:.4g}])")


def guidance_window(w: float, s_center: float, width_ln_s: float) -> GuidanceWindow:
    """Guidance weight ``w`` inside a window of width ``Delta`` in ``ln s`` centred at ``s*``.

    Returns a callable ``weight(s)`` for :class:`GuidedDenoiser`: ``w`` when
    ``s_center e^{-width/2} <= s <= s_center e^{+width/2}`` (edges included), ``0`` outside.

    >>> window = guidance_window(3.0, s_center=2.0, width_ln_s=1.0)
    >>> window(2.0), window(2.0 * 1.6), window(0.5)
    (3.0, 3.0, 0.0)
    """
    return GuidanceWindow(w, s_center, width_ln_s)


class GuidedDenoiser:
    """Guided combination ``D_w(y; s) = D_u(y; s) + w(s) (D_c(y; s) - D_u(y; s))``.

    ``w = 0`` is the unconditional model, ``w = 1`` the conditional one, ``w > 1``
    classifier-free guidance. Where ``w(s) = 0`` the conditional model is not called.

    Args:
        unconditional: denoiser ``D_u(y, s)``.
        conditional: denoiser ``D_c(y, s)``.
        weight: a constant ``w`` or a callable ``w(s)`` (e.g. :func:`guidance_window`).
    """

    def __init__(self, unconditional: Any, conditional: Any, weight: Any):
        self.unconditional = check_denoiser(unconditional, "unconditional")
        self.conditional = check_denoiser(conditional, "conditional")
        if callable(weight):
            self.weight: Callable[[float], float] = weight
        elif isinstance(weight, numbers.Real) and not isinstance(weight, bool) and math.isfinite(weight):
            constant = float(weight)
            self.weight = lambda s: constant
        else:
            raise TypeError(f"weight must be a finite real number or a callable w(s), got {weight!r}")
        for name in ("field_shape", "mean"):
            if hasattr(unconditional, name):
                setattr(self, name, getattr(unconditional, name))

    def __call__(self, y: Any, s: float) -> np.ndarray:
        s = _check_noise_level(s)
        w = float(self.weight(s))
        if not math.isfinite(w):
            raise ValueError(f"guidance weight w(s) must be finite, got {w} at s={s}")
        d_u = np.asarray(self.unconditional(y, s))
        if w == 0.0:
            return d_u
        d_c = np.asarray(self.conditional(y, s))
        if d_c.shape != d_u.shape:
            raise ValueError(f"conditional denoiser returned shape {d_c.shape}, unconditional {d_u.shape}")
        return d_u + w * (d_c - d_u)

    def __repr__(self) -> str:
        return f"GuidedDenoiser(unconditional={self.unconditional!r}, conditional={self.conditional!r}, weight={self.weight!r})"
