"""Patch-model denoiser (THEORY.md 3.3): local, translation-equivariant, or memorizing.

At pixel ``i`` of a field ``y`` on a periodic lattice the denoiser is the posterior
mean of the centre value of a patch,

    D_i(y; s) = sum_a w_a phi_a(0),   w_a ∝ m_a exp(-|y[i + W] - phi_a|^2 / (2 s^2)),

over a patch set ``{phi_a}`` with multiplicities ``m_a`` (identical patches merged; this
changes no result). Modes:

* ``"equivariant"``: the patches of every training image at every position, pooled;
  the field may live on any lattice the window fits.
* ``"local"``: at pixel ``i`` only the patches of the training images at position ``i``;
  the field's lattice must be the images' lattice.
* ``"global"``: the window is the whole lattice; this is the memorizing denoiser
  ``D(y) = sum_n w_n x_n`` with ``w_n ∝ exp(-|y - x_n|^2 / 2 s^2)``.

Tweedie's identity for the patch posterior at pixel ``i`` gives the Jacobian: ``y_j``
enters ``D_i`` only through the offsets ``r`` with ``i + r = j``, and

    dD_i / dy_{i+r} = Cov_w[phi(0), phi(r)] / s^2

(:meth:`PatchDenoiser.jacobian_rows`, :meth:`PatchDenoiser.jvp`,
:meth:`PatchDenoiser.vjp`).

Four implementations of one algorithm (``backend``):

* ``"numba"`` (default): fused distance + streaming log-sum-exp kernels
  (:mod:`diffcrit.numerics._kernels.patch`): a register-blocked micro-kernel on packed
  patches, four pixels at a time, parallel over pixels for large calls; optional exact
  pruning (``prune_margin``).
* ``"numpy"``: the reference twin, pixel by pixel, literally the formula above. Slow.
* ``"numpy-fast"``: chunked matrix products for the distances, streaming log-sum-exp
  over chunks of patches.
* ``"torch"``: the same chunked algorithm with PyTorch on the CPU (needs torch).

Log weights are computed either *directly* (``|y - phi|^2``) or *expanded*
(``y.phi - |phi|^2/2``; the ``|y|^2`` term is common to every patch and cancels). The
expanded form costs one multiply-add per (pixel, patch, offset) but its rounding error
in a log weight is up to ``K u (|y||phi| + |phi|^2/2) / s^2`` (``u`` the unit roundoff,
``K`` the window size), which grows at low noise. With ``distance_form="auto"`` that
bound decides: the expanded form is used only where it is below
``1e-11`` (float64) or ``1e-3`` (float32); a relative error ``e`` in the weights
moves ``D`` by at most ``2 e max|phi(0)|``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from diffcrit.theory.windows import check_window_fits, extract_patches, square_window

MODES = ("equivariant", "local", "global")
BACKENDS = ("numba", "numpy", "numpy-fast", "torch")
DISTANCE_FORMS = ("auto", "expanded", "direct")
BOUNDARIES = ("periodic", "valid")

#: Largest rounding error bound (absolute, in a log weight) for which "auto" picks the
#: expanded form.
EXPANDED_FORM_MAX_LOGIT_ERROR = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 1e-3}

_TILE_QUERIES = 32  # pixels sharing one pass over the patches (cache reuse)
_BLOCK_PATCHES = 512  # patches per block of the streaming softmax
_PRUNE_BLOCK_PATCHES = 64  # patches per block when pruning (tighter bounds)
_CHUNK_ELEMENTS = 1 << 22  # elements of one chunk of logits in numpy-fast / torch


@dataclasses.dataclass(frozen=True)
class PatchPosterior:
    """Per-pixel moments of the patch posterior ``w`` (THEORY.md 3.3).

    Attributes:
        mean: the denoiser ``D(y; s) = E_w[phi(0)]``, shape of ``y``.
        patch_mean: ``E_w[phi(r)]`` for every offset ``r``, shape ``(*y.shape, K)``.
        centre_covariance: ``Cov_w[phi(0), phi(r)]``, shape ``(*y.shape, K)``; divided
            by ``s^2`` it is the Jacobian row ``dD_i/dy_{i+r}``.
    """

    mean: np.ndarray
    patch_mean: np.ndarray
    centre_covariance: np.ndarray

    def jacobian_rows(self, s: float) -> np.ndarray:
        """``J[..., i, k] = Cov_w[phi(0), phi(r_k)] / s^2`` at the noise level ``s`` these moments are for."""
        return self.centre_covariance / self.centre_covariance.dtype.type(s * s)


def _require_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _real_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); all must be finite")


def _check_output(values: np.ndarray, backend: str, s: float) -> None:
    """Raise instead of returning NaN/inf (finite inputs cannot produce them: a bug)."""
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(f"the {backend!r} patch denoiser produced non-finite values at s={s!r} "
                                 "from finite inputs; please report this with the inputs")


def check_noise_level(s: Any) -> float:
    """Return ``s`` as a float after checking it is a finite real scalar > 0."""
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, float, np.integer, np.floating, np.ndarray)):
        raise TypeError(f"s must be a real scalar > 0, got {type(s).__name__} {s!r}")
    if isinstance(s, np.ndarray):
        if s.size != 1 or s.dtype.kind not in "iuf":
            raise TypeError(f"s must be a real scalar > 0, got an array of shape {s.shape} and dtype {s.dtype}")
        s = s.reshape(())[()]
    s = float(s)
    if not math.isfinite(s) or s <= 0.0:
        raise ValueError(f"s must be finite and > 0, got {s!r}")
    return s


def _window_offsets(window: Any, dim: int) -> np.ndarray:
    if isinstance(window, (int, np.integer)) and not isinstance(window, (bool, np.bool_)):
        return square_window(int(window), dim)
    if isinstance(window, (bool, np.bool_, float, np.floating, str)) or window is None:
        raise TypeError(f"window must be an odd int side or an (n, {dim}) integer offsets array, got {window!r}")
    offsets = np.asarray(window)
    if offsets.dtype.kind not in "iu":
        raise TypeError(f"window offsets must be integers, got dtype {offsets.dtype}")
    if offsets.ndim != 2 or offsets.shape[1] != dim or offsets.shape[0] < 1:
        raise ValueError(f"window offsets must have shape (n, {dim}) with n >= 1, got {offsets.shape}")
    offsets = offsets.astype(np.int64)
    if np.any(offsets[0] != 0):
        raise ValueError(f"the first window offset must be the centre 0, got {offsets[0].tolist()}")
    if len(np.unique(offsets, axis=0)) != len(offsets):
        raise ValueError("window offsets must be distinct")
    return offsets


def _window_index(lattice: tuple[int, ...], offsets: np.ndarray) -> np.ndarray:
    """``index[i, k]`` = flat index (C order) of site ``i + r_k`` on the periodic lattice."""
    sites = np.indices(lattice).reshape(len(lattice), -1).T  # (n_sites, d), C order
    shifted = (sites[:, None, :] + offsets[None, :, :]) % np.asarray(lattice)
    return np.ravel_multi_index(tuple(np.moveaxis(shifted, -1, 0)), lattice).astype(np.int64)


def _merge_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique, counts.astype(np.int64)


def _coherent_order(points: np.ndarray, leaf: int) -> np.ndarray:
    """Order rows so that consecutive runs of ``leaf`` rows are close together.

    Recursive halving along the segment's principal direction; left halves are a
    multiple of ``leaf`` rows, so the runs are exactly the leaves.
    """
    order = np.arange(len(points))
    stack = [(0, len(points))]
    while stack:
        lo, hi = stack.pop()
        n = hi - lo
        if n <= leaf:
            continue
        segment = points[order[lo:hi]].astype(np.float64)
        centred = segment - segment.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        projection = centred @ vectors[:, -1]
        half = leaf * (-(-n // (2 * leaf)))
        split = np.argpartition(projection, half - 1)
        order[lo:hi] = order[lo:hi][split]
        stack.append((lo, lo + half))
        stack.append((lo + half, hi))
    return order


class PatchDenoiser:
    """Patch-model denoiser ``D(y; s)`` (THEORY.md 3.3).

    Args:
        images: training images ``(N, *lattice)`` (one channel; 1-D or 2-D lattices
            are tested, any dimension works).
        window: odd side of a square window (default 3), or an ``(n, d)`` integer
            array of offsets with the centre ``0`` first. Must be ``None`` in the
            ``"global"`` mode (the window is the whole lattice).
        mode: ``"equivariant"``, ``"local"`` or ``"global"`` (module docstring).
        boundary: how training patches are taken: ``"periodic"`` (every position,
            wrapped) or ``"valid"`` (only where the window lies inside; equivariant
            mode only). Fields ``y`` are always periodic.
        labels: class label of each image, ``(N,)``; needed for ``conditional_on``.
        conditional_on: keep only the images whose label equals this value.
        dtype: ``numpy.float64`` or ``numpy.float32`` (storage and arithmetic).
        merge_duplicates: merge identical patches into one with a multiplicity
            (exact: adds ``log m`` to the log weight).
        backend: ``"numba"``, ``"numpy"``, ``"numpy-fast"`` or ``"torch"``.
        distance_form: ``"auto"``, ``"expanded"`` or ``"direct"`` (module docstring).
        prune_margin: if given (numba backend, equivariant or local mode), skip whole
            blocks of patches whose log weights are all below ``max - prune_margin``.
            Each skipped patch weighs less than ``exp(-prune_margin)`` times the
            largest weight, so ``|D_pruned - D| <= 2 M exp(-prune_margin) max|phi(0)|``
            for ``M`` distinct patches (``prune_margin = 40``, ``M = 1e5``:
            ``<= 1e-12 max|phi(0)|``). The patches are reordered into spatially
            coherent blocks so that the bounds are tight. It pays at low noise (on
            standardized digits, 5x5 window: ~3x at ``s = 0.1``, ~10x at ``s = 0.03``);
            at moderate noise most blocks survive and pruning is slower than none.

    Raises:
        ValueError, TypeError: on bad input, naming the parameter.
        ImportError: ``backend="torch"`` without PyTorch installed.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> images = rng.standard_normal((5, 8, 8))
        >>> model = PatchDenoiser(images, window=3, backend="numpy")
        >>> model(images[0], 1e-3).shape
        (8, 8)
    """

    def __init__(
        self,
        images: Any,
        window: Any = None,
        *,
        mode: str = "equivariant",
        boundary: str = "periodic",
        labels: Any = None,
        conditional_on: Any = None,
        dtype: Any = np.float64,
        merge_duplicates: bool = True,
        backend: str = "numba",
        distance_form: str = "auto",
        prune_margin: float | None = None,
    ) -> None:
        self.mode = _require_choice("mode", mode, MODES)
        self.boundary = _require_choice("boundary", boundary, BOUNDARIES)
        self.distance_form = _require_choice("distance_form", distance_form, DISTANCE_FORMS)
        _require_choice("backend", backend, BACKENDS)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}") from error
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {self.dtype}")
        if not isinstance(merge_duplicates, (bool, np.bool_)):
            raise TypeError(f"merge_duplicates must be a bool, got {merge_duplicates!r}")
        self.merge_duplicates = bool(merge_duplicates)
        if self.mode != "equivariant" and self.boundary != "periodic":
            raise ValueError(f"boundary={boundary!r} needs mode='equivariant'; the {self.mode} mode "
                             "uses every position of the lattice (boundary='periodic')")
        self.prune_margin = None
        if prune_margin is not None:
            if isinstance(prune_margin, (bool, np.bool_)) or not isinstance(prune_margin, (int, float, np.integer, np.floating)):
                raise TypeError(f"prune_margin must be a positive number or None, got {prune_margin!r}")
            if not math.isfinite(prune_margin) or prune_margin <= 0:
                raise ValueError(f"prune_margin must be finite and > 0, got {prune_margin!r}")
            if self.mode == "global":
                raise ValueError("prune_margin is for the equivariant and local modes, not mode='global'")
            self.prune_margin = float(prune_margin)
        self.backend = "numba"
        self._set_backend(backend)  # checks torch is importable, before any heavy work

        images = _real_array("images", images)
        if images.ndim < 2 or images.shape[0] < 1 or 0 in images.shape:
            raise ValueError(f"images must have shape (N, *lattice) with N >= 1, got {images.shape}")
        _check_finite("images", images)
        images = images.astype(np.float64)
        self.lattice: tuple[int, ...] = tuple(int(n) for n in images.shape[1:])
        self.dim = len(self.lattice)

        self.conditional_on = conditional_on
        if conditional_on is not None:
            if labels is None:
                raise ValueError("conditional_on needs labels (one label per image)")
            labels = np.asarray(labels)
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
            keep = labels == conditional_on
            if not np.any(keep):
                classes = np.unique(labels).tolist()
                raise ValueError(f"conditional_on={conditional_on!r} matches no label; labels present: {classes}")
            images = images[keep]
        elif labels is not None and np.shape(labels) != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {np.shape(labels)}")
        self.n_images = int(images.shape[0])

        if self.mode == "global":
            if window is not None:
                raise ValueError(f"window must be None in the global mode (the whole lattice), got {window!r}")
            self.offsets = np.indices(self.lattice).reshape(self.dim, -1).T.astype(np.int64)
        else:
            self.offsets = _window_offsets(3 if window is None else window, self.dim)
            check_window_fits(self.offsets, self.lattice)
        self.offsets.setflags(write=False)
        self._window_index_cache: dict[tuple[int, ...], np.ndarray] = {}
        self._packed_cache: dict[str, Any] | None = None

        groups = self._patch_groups(images)
        if self.merge_duplicates:
            groups = [_merge_rows(rows) for rows in groups]
        else:
            groups = [(rows, np.ones(len(rows), dtype=np.int64)) for rows in groups]

        if self.prune_margin is not None:
            groups = [(rows[order], counts[order]) for rows, counts in groups
                      for order in [_coherent_order(rows, _PRUNE_BLOCK_PATCHES)]]

        sizes = np.array([len(rows) for rows, _ in groups], dtype=np.int64)
        self.group_bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.multiplicity = np.concatenate([counts for _, counts in groups])
        self.patches = np.concatenate([rows for rows, _ in groups]).astype(self.dtype)
        for array in (self.group_bounds, self.multiplicity, self.patches):
            array.setflags(write=False)
        stored = self.patches.astype(np.float64)  # the values the kernels see (float32 rounded)
        self._centre = np.ascontiguousarray(self.patches[:, 0])
        self._log_multiplicity = np.log(self.multiplicity.astype(np.float64))
        self._sq_norm = np.sum(stored**2, axis=1)
        self._max_patch_norm = float(np.sqrt(self._sq_norm.max()))
        self._max_abs_centre = float(np.abs(stored[:, 0]).max())
        if self.prune_margin is not None:
            self._build_blocks()

    # ----------------------------------------------------------------------------------
    # construction helpers
    # ----------------------------------------------------------------------------------

    def _patch_groups(self, images: np.ndarray) -> list[np.ndarray]:
        """Rows of patches for each group (one group, or one per site in local mode)."""
        if self.mode == "global":
            return [images.reshape(images.shape[0], -1)]
        if self.mode == "equivariant":
            return [extract_patches(images, self.offsets, self.boundary)]
        per_site = extract_patches(images, self.offsets, "periodic")
        per_site = per_site.reshape(images.shape[0], -1, len(self.offsets))
        return [per_site[:, site] for site in range(per_site.shape[1])]

    def _build_blocks(self) -> None:
        """Blocks of ``_PRUNE_BLOCK_PATCHES`` patches within groups, with bounding sets.

        Coordinates are rotated onto the principal axes of the patch set (distances are
        unchanged; boxes aligned with those axes are much tighter than pixel-aligned
        ones for correlated image patches). Each block keeps its centre, radius, box,
        and largest log multiplicity, inflated by a relative 1e-9 so rounding cannot
        make a bound too tight.
        """
        spans, group_blocks = [], [0]
        for g in range(len(self.group_bounds) - 1):
            lo, hi = int(self.group_bounds[g]), int(self.group_bounds[g + 1])
            spans.extend((a, min(a + _PRUNE_BLOCK_PATCHES, hi)) for a in range(lo, hi, _PRUNE_BLOCK_PATCHES))
            group_blocks.append(len(spans))
        self._block_span = np.asarray(spans, dtype=np.int64)  # model (unpacked) indices
        self._group_blocks = np.asarray(group_blocks, dtype=np.int64)
        stored = self.patches.astype(np.float64)  # bound the stored (possibly float32) values
        centred = stored - stored.mean(axis=0)
        _, rotation = np.linalg.eigh(centred.T @ centred)
        rotated = stored @ rotation
        slack = 1e-9 * (1.0 + float(np.abs(rotated).max()))
        k = self.window_size
        geometry = np.empty((3 * k + 2, len(spans)))
        for b, (lo, hi) in enumerate(spans):
            rows = rotated[lo:hi]
            centre = rows.mean(axis=0)
            geometry[:k, b] = centre
            geometry[k:2 * k, b] = rows.min(axis=0) - slack
            geometry[2 * k:3 * k, b] = rows.max(axis=0) + slack
            geometry[3 * k, b] = np.sqrt(np.max(np.sum((rows - centre) ** 2, axis=1))) + slack
            geometry[3 * k + 1, b] = self._log_multiplicity[lo:hi].max()
        self._block_geometry = geometry
        self._prune_rotation = np.ascontiguousarray(rotation)

    def _set_backend(self, backend: str) -> None:
        _require_choice("backend", backend, BACKENDS)
        if self.prune_margin is not None and backend != "numba":
            raise ValueError(f"prune_margin needs backend='numba', got backend={backend!r}")
        if backend == "torch":
            _torch()  # fail now, with a clear message, if torch is absent
        self.backend = backend

    def with_backend(self, backend: str) -> PatchDenoiser:
        """The same model (shared patch arrays) evaluated by another backend."""
        other = copy.copy(self)
        other._window_index_cache = self._window_index_cache
        other._set_backend(backend)
        return other

    # ----------------------------------------------------------------------------------
    # description
    # ----------------------------------------------------------------------------------

    @property
    def window_size(self) -> int:
        """Number of offsets ``K`` in the window."""
        return int(len(self.offsets))

    @property
    def n_distinct_patches(self) -> int:
        """Number of stored (merged) patches, summed over groups."""
        return int(len(self.patches))

    @property
    def n_patches(self) -> int:
        """Number of patches counted with multiplicity, summed over groups."""
        return int(self.multiplicity.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description of the model (not the patch arrays)."""
        conditional = self.conditional_on
        if isinstance(conditional, np.generic):
            conditional = conditional.item()
        return {
            "model": "patch",
            "mode": self.mode,
            "window_offsets": self.offsets.tolist(),
            "window_size": self.window_size,
            "boundary": self.boundary,
            "lattice": list(self.lattice),
            "n_images": self.n_images,
            "conditional_on": conditional,
            "n_patches": self.n_patches,
            "n_distinct_patches": self.n_distinct_patches,
            "n_groups": int(len(self.group_bounds) - 1),
            "merge_duplicates": self.merge_duplicates,
            "dtype": str(self.dtype),
            "backend": self.backend,
            "distance_form": self.distance_form,
            "prune_margin": self.prune_margin,
        }

    def __repr__(self) -> str:
        return (f"PatchDenoiser(mode={self.mode!r}, window_size={self.window_size}, "
                f"lattice={self.lattice}, n_images={self.n_images}, "
                f"n_distinct_patches={self.n_distinct_patches}, dtype={self.dtype.name}, "
                f"backend={self.backend!r})")

    # ----------------------------------------------------------------------------------
    # public evaluation
    # ----------------------------------------------------------------------------------

    def __call__(self, y: Any, s: Any) -> np.ndarray:
        """Denoised field ``D(y; s)``.

        Args:
            y: field ``(*lattice)`` or batch ``(B, *lattice)``.
            s: noise level, a finite real scalar > 0.

        Returns:
            ``D(y; s)``, same shape as ``y``, in the model's dtype.
        """
        fields, batched = self._check_fields(y)
        s = self._check_s(s, fields)
        if fields.shape[0] == 0:
            return fields.copy()
        result = _DENOISERS[self.backend](self, fields, s)
        _check_output(result, self.backend, s)
        return result if batched else result[0]

    def posterior_moments(self, y: Any, s: Any) -> PatchPosterior:
        """Per-pixel posterior moments (:class:`PatchPosterior`) of the patch weights."""
        fields, batched = self._check_fields(y)
        s = self._check_s(s, fields)
        if fields.shape[0] == 0:
            empty = np.zeros((*fields.shape, self.window_size), dtype=self.dtype)
            return PatchPosterior(fields.copy(), empty, empty.copy())
        mean, patch_mean, centre_cov = _MOMENTS[self.backend](self, fields, s)
        for values in (mean, patch_mean, centre_cov):
            _check_output(values, self.backend, s)
        if not batched:
            mean, patch_mean, centre_cov = mean[0], patch_mean[0], centre_cov[0]
        return PatchPosterior(mean, patch_mean, centre_cov)

    def jacobian_rows(self, y: Any, s: Any) -> np.ndarray:
        """``J[..., i, k] = dD_i / dy_{i + r_k} = Cov_w[phi(0), phi(r_k)] / s^2``.

        Returns:
            array ``(*y.shape, K)``; every other entry of ``dD/dy`` is zero.
        """
        s_value = check_noise_level(s)
        return self.posterior_moments(y, s).jacobian_rows(s_value)

    def jvp(self, y: Any, s: Any, v: Any) -> np.ndarray:
        """Jacobian-vector product ``(J v)_i = sum_k J[i, k] v_{i + r_k}`` (periodic)."""
        rows = self.jacobian_rows(y, s)
        v = self._check_tangent("v", v, np.shape(y))
        lattice = self.lattice_of(v)
        index = self._window_index(lattice)
        gathered = v.reshape(-1, int(np.prod(lattice)))[:, index]  # (B, n_sites, K)
        product = np.sum(rows.reshape(gathered.shape) * gathered, axis=-1)
        return product.reshape(v.shape)

    def vjp(self, y: Any, s: Any, u: Any) -> np.ndarray:
        """Vector-Jacobian product ``(u^T J)_j = sum_{i, k: i + r_k = j} u_i J[i, k]``."""
        rows = self.jacobian_rows(y, s)
        u = self._check_tangent("u", u, np.shape(y))
        lattice = self.lattice_of(u)
        fields_u = u.reshape(-1, int(np.prod(lattice)))
        index = self._window_index(lattice)
        rows = rows.reshape(fields_u.shape[0], -1, self.window_size)
        result = np.zeros_like(fields_u)
        for k in range(self.window_size):
            # site i sends u_i J[i, k] to site i + r_k; i -> i + r_k is a bijection
            result[:, index[:, k]] += fields_u * rows[:, :, k]
        return result.reshape(u.shape)

    def lattice_of(self, y: np.ndarray) -> tuple[int, ...]:
        """Lattice shape of a field or batch of fields ``y``."""
        return tuple(np.shape(y)[-self.dim:])

    # ----------------------------------------------------------------------------------
    # input checks and layout
    # ----------------------------------------------------------------------------------

    def _check_fields(self, y: Any) -> tuple[np.ndarray, bool]:
        y = _real_array("y", y)
        if y.ndim not in (self.dim, self.dim + 1):
            raise ValueError(f"y must have shape (*lattice) or (B, *lattice) with a {self.dim}-D lattice, "
                             f"got shape {y.shape}")
        batched = y.ndim == self.dim + 1
        lattice = tuple(y.shape[-self.dim:])
        if self.mode == "equivariant":
            check_window_fits(self.offsets, lattice)
        elif lattice != self.lattice:
            raise ValueError(f"y's lattice {lattice} must equal the training images' lattice {self.lattice} "
                             f"in the {self.mode} mode")
        fields = y.reshape((-1, *lattice)).astype(self.dtype)
        _check_finite("y", fields)
        return fields, batched

    def _check_s(self, s: Any, fields: np.ndarray) -> float:
        s = check_noise_level(s)
        # log weights reach scale * (|y| + |phi|)^2; keep them far from overflow
        y_norm = math.sqrt(self.window_size) * float(np.max(np.abs(fields), initial=0.0))
        largest = (y_norm + self._max_patch_norm) ** 2 / s**2
        if not largest < float(np.finfo(self.dtype).max) / 16:
            raise ValueError(f"s={s!r} is too small for dtype {self.dtype}: log weights would overflow")
        return s

    def _check_tangent(self, name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
        array = _real_array(name, value)
        if array.shape != tuple(shape):
            raise ValueError(f"{name} must have the shape of y {tuple(shape)}, got {array.shape}")
        _check_finite(name, array)
        return array.astype(self.dtype)

    def _window_index(self, lattice: tuple[int, ...]) -> np.ndarray:
        index = self._window_index_cache.get(lattice)
        if index is None:
            index = _window_index(lattice, self.offsets)
            self._window_index_cache[lattice] = index
        return index

    def _queries(self, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Windows of the fields as kernel queries, in group order, with their tiles.

        Returns:
            ``queries (n_q, K)``, ``order`` (query ``q`` is flat pixel ``order[q]`` of the
            ``(B, n_sites)`` batch), ``tile_queries (n_tiles + 1,)`` (query boundaries of
            the tiles), ``tile_group (n_tiles,)`` (the patch group each tile uses).
        """
        n_fields = fields.shape[0]
        index = self._window_index(fields.shape[1:])
        n_sites = index.shape[0]
        windows = fields.reshape(n_fields, -1)[:, index]  # (B, n_sites, K)
        if self.mode == "equivariant":
            queries = windows.reshape(-1, self.window_size)
            order = np.arange(n_fields * n_sites)
            starts = np.arange(0, len(queries), _TILE_QUERIES)
            tile_group = np.zeros(len(starts), dtype=np.int64)
        else:  # local: group by site, q = site * B + b
            queries = windows.transpose(1, 0, 2).reshape(-1, self.window_size)
            order = (np.arange(n_fields)[None, :] * n_sites + np.arange(n_sites)[:, None]).ravel()
            per_site = np.arange(0, n_fields, _TILE_QUERIES)
            starts = (np.arange(n_sites)[:, None] * n_fields + per_site[None, :]).ravel()
            tile_group = starts // n_fields
        tile_queries = np.append(starts, len(queries)).astype(np.int64)
        return np.ascontiguousarray(queries), order, tile_queries, tile_group.astype(np.int64)

    def _packed(self) -> dict[str, Any]:
        """Patches packed into panels for the numba micro-kernel (built on first use).

        Group ``g``'s patches sit at packed positions ``start[g] .. start[g] + n_g``,
        ``start[g]`` a multiple of the panel width ``W``; the gaps are zero patches that
        no weight ever reads. ``panels[p, k, w]`` is patch ``p W + w`` at offset ``k``.
        """
        if self._packed_cache is None:
            width = _kernels().panel_width(self.dtype)
            sizes = np.diff(self.group_bounds)
            padded = -(-sizes // width) * width
            start = np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)
            position = np.concatenate([start[g] + np.arange(sizes[g]) for g in range(len(sizes))])
            flat = np.zeros((int(start[-1]), self.window_size), dtype=self.dtype)
            flat[position] = self.patches
            panels = np.ascontiguousarray(flat.reshape(-1, width, self.window_size).transpose(0, 2, 1))
            centre = np.zeros(int(start[-1]), dtype=self.dtype)
            centre[position] = self._centre
            packed = {"width": width, "start": start, "size": sizes.astype(np.int64), "position": position,
                      "panels": panels, "patches_t": np.ascontiguousarray(flat.T), "centre": centre}
            if self.prune_margin is not None:
                group_of_block = np.repeat(np.arange(len(sizes)), np.diff(self._group_blocks))
                shift = start[group_of_block] - self.group_bounds[group_of_block]
                packed["block_span"] = np.ascontiguousarray(self._block_span + shift[:, None])
            self._packed_cache = packed
        return self._packed_cache

    def _use_direct_form(self, queries: np.ndarray, scale: float) -> bool:
        """Pick the form of the log weights (module docstring)."""
        if self.distance_form != "auto":
            return self.distance_form == "direct"
        return self.expanded_form_error_bound(queries, scale) > EXPANDED_FORM_MAX_LOGIT_ERROR[self.dtype]

    def expanded_form_error_bound(self, queries: np.ndarray, scale: float) -> float:
        """Rounding error bound of an expanded-form log weight (absolute).

        ``K u scale (|y|_max |phi|_max + |phi|_max^2 / 2)`` plus the rounding of the
        inputs to the model dtype, with ``u`` the unit roundoff of the dtype.
        """
        unit = float(np.finfo(self.dtype).eps) / 2
        y_max = float(np.sqrt(np.max(np.sum(np.asarray(queries, dtype=np.float64) ** 2, axis=-1), initial=0.0)))
        p_max = self._max_patch_norm
        return (self.window_size + 2) * unit * scale * (y_max * p_max + 0.5 * p_max**2)

    def _bias(self, scale: float, direct: bool) -> np.ndarray:
        if direct:
            return self._log_multiplicity.astype(self.dtype)
        return (self._log_multiplicity - 0.5 * scale * self._sq_norm).astype(self.dtype)

    def _unflatten(self, values: np.ndarray, order: np.ndarray, fields_shape: tuple[int, ...]) -> np.ndarray:
        """Values per query -> array over ``fields_shape`` (+ trailing axes of values)."""
        flat = np.empty((len(order), *values.shape[1:]), dtype=values.dtype)
        flat[order] = values
        return flat.reshape((*fields_shape, *values.shape[1:]))

    def _patch_set_at(self, site: int) -> tuple[np.ndarray, np.ndarray]:
        """Patches (float64) and multiplicities that serve flat site ``site`` (reference path)."""
        if self.mode == "equivariant":
            rows = slice(None)
        elif self.mode == "local":
            rows = slice(self.group_bounds[site], self.group_bounds[site + 1])
        else:  # global: the window of image n at site i is x_n[i + r], i.e. the rolled image
            index = self._window_index(self.lattice)[site]
            return self.patches[:, index].astype(np.float64), self.multiplicity
        return self.patches[rows].astype(np.float64), self.multiplicity[rows]


# ======================================================================================
# backend: numpy twin (reference)
# ======================================================================================


def _twin_weights(window: np.ndarray, patches: np.ndarray, multiplicity: np.ndarray, s: float) -> np.ndarray:
    """Normalized weights ``w_a ∝ m_a exp(-|window - phi_a|^2 / 2 s^2)``, in log space."""
    log_w = np.log(multiplicity) - np.sum((window - patches) ** 2, axis=1) / (2.0 * s * s)
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def _twin_moments(model: PatchDenoiser, fields: np.ndarray, s: float) -> tuple[np.ndarray, ...]:
    n_fields, lattice = fields.shape[0], fields.shape[1:]
    index = model._window_index(lattice)
    flat = fields.reshape(n_fields, -1).astype(np.float64)
    mean = np.empty(flat.shape)
    patch_mean = np.empty((*flat.shape, model.window_size))
    centre_cov = np.empty((*flat.shape, model.window_size))
    for b in range(n_fields):
        for site in range(flat.shape[1]):
            patches, multiplicity = model._patch_set_at(site)
            w = _twin_weights(flat[b, index[site]], patches, multiplicity, s)
            mu = w @ patches
            mean[b, site] = mu[0]
            patch_mean[b, site] = mu
            centre_cov[b, site] = (w * (patches[:, 0] - mu[0])) @ (patches - mu)
    shape = fields.shape
    return (mean.reshape(shape).astype(model.dtype),
            patch_mean.reshape(*shape, -1).astype(model.dtype),
            centre_cov.reshape(*shape, -1).astype(model.dtype))


def twin_denoise_sites(model: PatchDenoiser, field: np.ndarray, s: float, sites: np.ndarray) -> np.ndarray:
    """Reference (numpy twin) ``D_i`` of one field at the flat sites ``sites`` (float64)."""
    index = model._window_index(field.shape)
    flat = np.asarray(field, dtype=np.float64).ravel()
    out = np.empty(len(sites))
    for n, site in enumerate(sites):
        patches, multiplicity = model._patch_set_at(int(site))
        w = _twin_weights(flat[index[site]], patches, multiplicity, s)
        out[n] = w @ patches[:, 0]
    return out


def _twin_denoise(model: PatchDenoiser, fields: np.ndarray, s: float) -> np.ndarray:
    sites = np.arange(int(np.prod(fields.shape[1:])))
    out = np.stack([twin_denoise_sites(model, field, s, sites) for field in fields])
    return out.reshape(fields.shape).astype(model.dtype)


# ======================================================================================
# global mode (all fast backends): posterior over training images
# ======================================================================================


def _global_moments_from_weights(model: PatchDenoiser, weights: np.ndarray, fields_shape) -> tuple[np.ndarray, ...]:
    """Mean image and Jacobian pieces from normalized weights over images ``(B, N)``."""
    images = model.patches.astype(np.float64)  # (N, n_sites)
    weights = weights.astype(np.float64)
    mean = weights @ images
    index = model._window_index(model.lattice)
    n_fields, n_sites = weights.shape[0], images.shape[1]
    patch_mean = np.empty((n_fields, n_sites, model.window_size))
    centre_cov = np.empty_like(patch_mean)
    for b in range(n_fields):
        centred = images - mean[b]
        covariance = centred.T @ (weights[b][:, None] * centred)  # Cov_w[x_i, x_j]
        rows = np.arange(n_sites)[:, None]
        patch_mean[b] = mean[b][index]
        centre_cov[b] = covariance[rows, index]
    return (mean.reshape(fields_shape).astype(model.dtype),
            patch_mean.reshape(*fields_shape, -1).astype(model.dtype),
            centre_cov.reshape(*fields_shape, -1).astype(model.dtype))


# ======================================================================================
# backend: numba
# ======================================================================================


def _kernels():
    from diffcrit.numerics._kernels import patch

    return patch


def _parallel_min_work() -> int:
    from diffcrit.numerics._jit import PARALLEL_MIN_WORK

    return PARALLEL_MIN_WORK


def _packed_bias(model: PatchDenoiser, scale: float, direct: bool) -> np.ndarray:
    packed = model._packed()
    bias = np.zeros(len(packed["centre"]), dtype=model.dtype)
    bias[packed["position"]] = model._bias(scale, direct)
    return bias


def _numba_global_weights(model: PatchDenoiser, fields: np.ndarray, s: float) -> np.ndarray:
    """Normalized weights of the training images for each field, ``(B, N_distinct)``."""
    kernels = _kernels()
    packed = model._packed()
    queries = np.ascontiguousarray(fields.reshape(fields.shape[0], -1))
    scale = 1.0 / s**2
    direct = model._use_direct_form(queries, scale)
    n_patches = model.n_distinct_patches
    weights = np.empty((len(queries), n_patches), dtype=model.dtype)
    tiles = np.append(np.arange(0, len(queries), 4), len(queries)).astype(np.int64)
    run = (kernels.posterior_weights_parallel if weights.size >= _parallel_min_work()
           else kernels.posterior_weights_serial)
    run(queries, tiles, packed["panels"], _packed_bias(model, scale, direct), n_patches,
        model.dtype.type(scale), direct, _BLOCK_PATCHES, weights)
    return weights


def _numba_denoise(model: PatchDenoiser, fields: np.ndarray, s: float) -> np.ndarray:
    if model.mode == "global":
        weights = _numba_global_weights(model, fields, s)
        return (weights @ model.patches).reshape(fields.shape)
    values, _ = _numba_denoise_queries(model, fields, s)
    return values


def _numba_denoise_queries(model: PatchDenoiser, fields: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Numba denoiser; also returns, when pruning, the blocks evaluated per pixel."""
    kernels = _kernels()
    packed = model._packed()
    queries, order, tile_queries, tile_group = model._queries(fields)
    scale = 1.0 / s**2
    direct = model._use_direct_form(queries, scale)
    bias = _packed_bias(model, scale, direct)
    out = np.empty(len(queries), dtype=model.dtype)
    work = len(queries) * int(np.max(packed["size"]))  # pixel-patch pairs (PARALLEL_MIN_WORK's unit)
    parallel = work >= _parallel_min_work()
    blocks_done = None
    if model.prune_margin is None:
        start = packed["start"][tile_group]
        tile_patches = np.ascontiguousarray(np.stack([start, start + packed["size"][tile_group]], axis=1))
        run = kernels.denoise_parallel if parallel else kernels.denoise_serial
        run(queries, tile_queries, tile_patches, packed["panels"], packed["centre"], bias,
            model.dtype.type(scale), direct, _BLOCK_PATCHES, out)
    else:
        if model.mode == "equivariant":
            query_group = np.zeros(len(queries), dtype=np.int64)
        else:  # local: query q = site * B + b serves group (site) q // B
            query_group = np.arange(len(queries), dtype=np.int64) // fields.shape[0]
        chunks = np.append(np.arange(0, len(queries), 8), len(queries)).astype(np.int64)
        blocks_done = np.empty(len(queries), dtype=np.int64)
        run = kernels.denoise_pruned_parallel if parallel else kernels.denoise_pruned_serial
        run(queries, chunks, query_group, model._group_blocks, packed["block_span"],
            model._block_geometry, model._prune_rotation, packed["panels"], packed["centre"], bias,
            model.dtype.type(scale), direct, float(model.prune_margin), out, blocks_done)
        blocks_done = model._unflatten(blocks_done, order, fields.shape)
    return model._unflatten(out, order, fields.shape), blocks_done


def _numba_moments(model: PatchDenoiser, fields: np.ndarray, s: float) -> tuple[np.ndarray, ...]:
    if model.mode == "global":
        return _global_moments_from_weights(model, _numba_global_weights(model, fields, s), fields.shape)
    kernels = _kernels()
    packed = model._packed()
    queries, order, tile_queries, tile_group = model._queries(fields)
    start = packed["start"][tile_group]
    tile_patches = np.ascontiguousarray(np.stack([start, start + packed["size"][tile_group]], axis=1))
    scale = 1.0 / s**2
    direct = model._use_direct_form(queries, scale)
    patch_mean = np.empty(queries.shape, dtype=model.dtype)
    centre_cov = np.empty(queries.shape, dtype=model.dtype)
    work = len(queries) * int(np.max(packed["size"]))  # pixel-patch pairs
    run = kernels.moments_parallel if work >= _parallel_min_work() else kernels.moments_serial
    run(queries, tile_queries, tile_patches, packed["panels"], packed["patches_t"], packed["centre"],
        _packed_bias(model, scale, direct), model.dtype.type(scale), direct, _BLOCK_PATCHES,
        patch_mean, centre_cov)
    patch_mean = model._unflatten(patch_mean, order, fields.shape)
    centre_cov = model._unflatten(centre_cov, order, fields.shape)
    return patch_mean[..., 0].copy(), patch_mean, centre_cov


def prune_statistics(model: PatchDenoiser, y: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pruned denoiser output and the fraction of patch blocks evaluated per pixel.

    Only for a model built with ``prune_margin`` (numba backend).
    """
    if model.prune_margin is None:
        raise ValueError("prune_statistics needs a model built with prune_margin")
    fields, batched = model._check_fields(y)
    s = model._check_s(s, fields)
    values, blocks_done = _numba_denoise_queries(model, fields, s)
    blocks_per_pixel = np.diff(model._group_blocks)
    if model.mode == "equivariant":
        total = np.full(blocks_done.shape, blocks_per_pixel[0])
    else:
        total = np.broadcast_to(blocks_per_pixel.reshape(model.lattice), blocks_done.shape)
    fraction = blocks_done / total
    return (values, fraction) if batched else (values[0], fraction[0])


# ======================================================================================
# backends: numpy-fast and torch (same chunked algorithm, two array libraries)
# ======================================================================================


class _NumpyOps:
    """Array operations of the chunked algorithm, numpy flavour."""

    def asarray(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array)

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def row_max(self, array: np.ndarray) -> np.ndarray:
        return array.max(axis=1)

    def exp(self, array: np.ndarray) -> np.ndarray:
        return np.exp(array)

    def maximum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)


class _TorchOps:
    """Array operations of the chunked algorithm, PyTorch (CPU) flavour."""

    def __init__(self) -> None:
        self.torch = _torch()

    def asarray(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # torch wants writable memory; copy read-only views
            array = array.copy()
        return self.torch.from_numpy(array)

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.numpy()

    def row_max(self, tensor):
        return tensor.amax(dim=1)

    def exp(self, tensor):
        return self.torch.exp(tensor)

    def maximum(self, a, b):
        return self.torch.maximum(a, b)


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("backend='torch' needs PyTorch; install it with `pip install diffcrit[torch]` "
                          "or choose backend='numba', 'numpy-fast' or 'numpy'") from error
    return torch


def _chunk_logits(ops, queries, patches, patches_t, bias, scale: float, direct: bool):
    """Log weights ``(n_q, n_p)`` of a chunk: a matrix product, or direct differences."""
    if direct:
        diff = queries[:, None, :] - patches[None, :, :]
        return bias[None, :] - (0.5 * scale) * (diff * diff).sum(-1)
    return (queries * scale) @ patches_t + bias[None, :]


def _chunked_sizes(model: PatchDenoiser, n_patches: int, direct: bool) -> tuple[int, int]:
    per_pair = model.window_size if direct else 1
    patch_chunk = max(1, min(n_patches, 8192 if not direct else 1024))
    query_chunk = max(1, _CHUNK_ELEMENTS // (patch_chunk * per_pair))
    return query_chunk, patch_chunk


def _chunked_stream(ops, model: PatchDenoiser, queries: np.ndarray, lo: int, hi: int, s: float,
                    second_moments: bool) -> tuple[np.ndarray, ...]:
    """Stream one group of patches ``lo .. hi`` against ``queries``.

    Returns the denoised centre values, and if ``second_moments`` the mean patches and
    ``Cov_w[phi(0), phi(r)]`` (second pass with the final maximum, centred).
    """
    scale = 1.0 / s**2
    direct = model._use_direct_form(queries, scale)
    bias_all = model._bias(scale, direct)[lo:hi]
    rows = model.patches[lo:hi]
    query_chunk, patch_chunk = _chunked_sizes(model, hi - lo, direct)
    dtype = model.dtype.type
    patch_chunks = [(ops.asarray(rows[a:a + patch_chunk]), ops.asarray(rows[a:a + patch_chunk].T),
                     ops.asarray(bias_all[a:a + patch_chunk]))
                    for a in range(0, hi - lo, patch_chunk)]
    n_q, n_offsets = queries.shape
    centre = np.empty(n_q, dtype=model.dtype)
    patch_mean = np.empty((n_q, n_offsets), dtype=model.dtype) if second_moments else None
    centre_cov = np.empty((n_q, n_offsets), dtype=model.dtype) if second_moments else None
    for q0 in range(0, n_q, query_chunk):
        chunk_queries = ops.asarray(queries[q0:q0 + query_chunk])
        log_max = total = first = None
        for patches, patches_t, bias in patch_chunks:
            logits = _chunk_logits(ops, chunk_queries, patches, patches_t, bias, dtype(scale), direct)
            block_max = ops.row_max(logits)
            if log_max is None:
                log_max = block_max
                weights = ops.exp(logits - log_max[:, None])
                total = weights.sum(1)
                first = weights @ patches if second_moments else weights @ patches[:, 0]
            else:
                new_max = ops.maximum(log_max, block_max)
                factor = ops.exp(log_max - new_max)
                weights = ops.exp(logits - new_max[:, None])
                total = total * factor + weights.sum(1)
                if second_moments:
                    first = first * factor[:, None] + weights @ patches
                else:
                    first = first * factor + weights @ patches[:, 0]
                log_max = new_max
        if not second_moments:
            centre[q0:q0 + query_chunk] = ops.to_numpy(first / total)
            continue
        mean = first / total[:, None]
        cov = None
        for patches, patches_t, bias in patch_chunks:
            logits = _chunk_logits(ops, chunk_queries, patches, patches_t, bias, dtype(scale), direct)
            weights = ops.exp(logits - log_max[:, None]) / total[:, None]
            centred_weights = weights * (patches[:, 0][None, :] - mean[:, 0:1])
            # sum_a u_a (phi_a(r) - mean(r)); sum_a u_a is 0 up to rounding
            part = centred_weights @ patches - mean * centred_weights.sum(1)[:, None]
            cov = part if cov is None else cov + part
        centre[q0:q0 + query_chunk] = ops.to_numpy(mean[:, 0])
        patch_mean[q0:q0 + query_chunk] = ops.to_numpy(mean)
        centre_cov[q0:q0 + query_chunk] = ops.to_numpy(cov)
    return (centre, patch_mean, centre_cov) if second_moments else (centre,)


def _chunked_global_weights(ops, model: PatchDenoiser, fields: np.ndarray, s: float) -> np.ndarray:
    queries = np.ascontiguousarray(fields.reshape(fields.shape[0], -1))
    scale = 1.0 / s**2
    direct = model._use_direct_form(queries, scale)
    logits = _chunk_logits(ops, ops.asarray(queries), ops.asarray(model.patches),
                           ops.asarray(model.patches.T), ops.asarray(model._bias(scale, direct)),
                           model.dtype.type(scale), direct)
    weights = ops.exp(logits - ops.row_max(logits)[:, None])
    return ops.to_numpy(weights / weights.sum(1)[:, None])


def _chunked_run(ops, model: PatchDenoiser, fields: np.ndarray, s: float, second_moments: bool):
    queries, order, _, _ = model._queries(fields)
    n_fields = fields.shape[0]
    if model.mode == "equivariant":
        results = _chunked_stream(ops, model, queries, 0, model.n_distinct_patches, s, second_moments)
    else:  # local: one group per site, the B queries of that site
        parts = [_chunked_stream(ops, model, queries[site * n_fields:(site + 1) * n_fields],
                                 int(model.group_bounds[site]), int(model.group_bounds[site + 1]),
                                 s, second_moments)
                 for site in range(len(model.group_bounds) - 1)]
        results = tuple(np.concatenate(pieces) for pieces in zip(*parts))
    return tuple(model._unflatten(values, order, fields.shape) for values in results)


def _make_chunked(ops_factory: Callable[[], Any]):
    def denoise(model: PatchDenoiser, fields: np.ndarray, s: float) -> np.ndarray:
        ops = ops_factory()
        if model.mode == "global":
            weights = _chunked_global_weights(ops, model, fields, s)
            return (weights @ model.patches).reshape(fields.shape)
        return _chunked_run(ops, model, fields, s, second_moments=False)[0]

    def moments(model: PatchDenoiser, fields: np.ndarray, s: float) -> tuple[np.ndarray, ...]:
        ops = ops_factory()
        if model.mode == "global":
            return _global_moments_from_weights(model, _chunked_global_weights(ops, model, fields, s), fields.shape)
        return _chunked_run(ops, model, fields, s, second_moments=True)

    return denoise, moments


_fast_denoise, _fast_moments = _make_chunked(_NumpyOps)
_torch_denoise, _torch_moments = _make_chunked(_TorchOps)

_DENOISERS: dict[str, Callable[..., np.ndarray]] = {
    "numba": _numba_denoise,
    "numpy": _twin_denoise,
    "numpy-fast": _fast_denoise,
    "torch": _torch_denoise,
}
_MOMENTS: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {
    "numba": _numba_moments,
    "numpy": _twin_moments,
    "numpy-fast": _fast_moments,
    "torch": _torch_moments,
}
