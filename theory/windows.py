"""Windows (sets of lattice offsets) and patch extraction on periodic lattices.

A window ``W`` is an integer array of offsets of shape ``(n_offsets, d)``; the
offset ``0`` is always present and comes first, so ``patches[:, 0]`` is the
centre value ``phi_a(0)`` that the patch denoiser returns (THEORY.md 3.3).
"""

from __future__ import annotations

import numpy as np


def square_window(size: int, dim: int = 2) -> np.ndarray:
    """Offsets of a centred cube window of side ``size`` (odd) in ``dim`` dimensions.

    The centre offset comes first; the rest follow in lexicographic order.

    Args:
        size: side length ``P = 2R + 1`` (odd, >= 1).
        dim: spatial dimension (1 or 2 tested; any >= 1 works).

    Returns:
        Integer array ``(size**dim, dim)``.

    >>> square_window(3, dim=1).ravel().tolist()
    [0, -1, 1]
    >>> square_window(3).shape
    (9, 2)
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"window size must be an integer, got {size!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be odd and >= 1 (P = 2R+1), got {size}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    radius = size // 2
    axes = [np.arange(-radius, radius + 1)] * dim
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
    centre = np.all(grid == 0, axis=1)
    return np.concatenate([grid[centre], grid[~centre]]).astype(np.int64)


def check_window_fits(offsets: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` if a window does not fit a periodic lattice of ``shape``.

    A window fits when its extent along each axis is at most the lattice side, so
    no two offsets alias to the same site.
    """
    offsets = np.asarray(offsets)
    if offsets.ndim != 2 or offsets.shape[1] != len(shape):
        raise ValueError(
            f"window offsets must have shape (n, {len(shape)}) for a lattice {shape}, "
            f"got {offsets.shape}"
        )
    extent = offsets.max(axis=0) - offsets.min(axis=0) + 1
    for axis, (e, n) in enumerate(zip(extent, shape)):
        if e > n:
            raise ValueError(
                f"window extent {int(e)} along axis {axis} exceeds the lattice side {n}; "
                f"use a window of side <= {n}"
            )


def extract_patches(
    images: np.ndarray, offsets: np.ndarray, boundary: str = "periodic"
) -> np.ndarray:
    """All patches ``phi(r) = x[i + r]`` of every image at every position.

    Args:
        images: ``(N, *shape)`` array (one channel).
        offsets: window offsets ``(n_offsets, d)`` with ``d = images.ndim - 1``.
        boundary: ``"periodic"`` (every position, wrapped) or ``"valid"`` (only
            positions where the whole window lies inside the image).

    Returns:
        ``(N * n_positions, n_offsets)`` array; rows ordered image-major, then by
        position in C order.

    >>> x = np.arange(4.0).reshape(1, 4)
    >>> extract_patches(x, square_window(3, dim=1)).tolist()
    [[0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 3.0], [3.0, 2.0, 0.0]]
    """
    images = np.asarray(images)
    offsets = np.asarray(offsets, dtype=np.int64)
    if images.ndim < 2:
        raise ValueError(f"images must have shape (N, *lattice), got {images.shape}")
    shape = images.shape[1:]
    check_window_fits(offsets, shape)
    if boundary not in ("periodic", "valid"):
        raise ValueError(f"boundary must be 'periodic' or 'valid', got {boundary!r}")
    # shifted[..., j] = x[i + r_j]: np.roll by -r moves site i + r to i.
    columns = [np.roll(images, tuple(-offsets[j]), axis=tuple(range(1, images.ndim)))
               for j in range(len(offsets))]
    stacked = np.stack(columns, axis=-1)  # (N, *shape, n_offsets)
    if boundary == "valid":
        lo = -offsets.min(axis=0)
        hi = np.array(shape) - offsets.max(axis=0)
        if np.any(hi <= lo):
            raise ValueError(f"window does not fit inside images of shape {shape} for boundary='valid'")
        index = (slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))
        stacked = stacked[index]
    return stacked.reshape(-1, len(offsets))
