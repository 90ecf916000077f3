"""Time-dependent Ginzburg–Landau (model A) Euler–Maruyama steps: Numba kernels and numpy twin.

One step on a batch of periodic lattices (field flattened to ``(n_samples * n_sites,)``)::

    phi <- phi + dt * (-(r_n phi - c lap phi) - g phi^2 - u phi^3) + amp_n * eta

with the nearest-neighbour lattice Laplacian (spacing 1) and ``amp_n = sqrt(2 T_n dt)``.

Noise is counter based, so the Numba kernels (serial or parallel, any thread count)
and the numpy twin draw the same numbers: normal pair ``j`` (global sites ``2 j`` and
``2 j + 1``; step ``n`` uses the pairs ``n * ceil(n_total/2) + j``) is the Box–Muller
transform (cosine and sine outputs) of the SplitMix64 outputs number ``2 j`` and
``2 j + 1`` of the stream seeded by ``key``. (SplitMix64 output ``i`` is
``mix(key + (i + 1) * golden)``; the generator passes BigCrush.)

The Laplacian adds the neighbours in the order of the neighbour table (axis by axis,
``-e_a`` then ``+e_a``) and then subtracts ``2 d phi``, the same order in both
implementations, so they differ only through the last bit of ``log``/``cos``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from diffcrit.numerics._jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_INV_2_53 = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * np.pi


def neighbor_table(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices of the ``2 d`` nearest neighbours of every site (periodic).

    Column ``2 a`` is the site at ``x - e_a``, column ``2 a + 1`` at ``x + e_a``.
    """
    n_sites = int(np.prod(shape))
    index = np.arange(n_sites).reshape(shape)
    columns = []
    for axis in range(len(shape)):
        columns.append(np.roll(index, 1, axis=axis).ravel())  # value at x - e_a
        columns.append(np.roll(index, -1, axis=axis).ravel())  # value at x + e_a
    return np.ascontiguousarray(np.stack(columns, axis=1).astype(np.int64))


# ---------------------------------------------------------------------------
# Numba
# ---------------------------------------------------------------------------


@njit()
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit()
def _counter_normal_pair(key, pair):
    """Normal pair number ``pair`` of the stream ``key`` (Box–Muller, both outputs)."""
    base = _TWO * pair
    z1 = _mix64(key + (base + _ONE) * _GOLDEN)
    z2 = _mix64(key + (base + _TWO) * _GOLDEN)
    u1 = (np.float64(z1 >> _S11) + 1.0) * _INV_2_53  # in (0, 1]: log is finite
    u2 = np.float64(z2 >> _S11) * _INV_2_53
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = _TWO_PI * u2
    return radius * np.cos(angle), radius * np.sin(angle)


@njit()
def counter_normals_numba(key, start_pair, count):
    """``count`` normals of stream ``key``, pairs numbered from ``start_pair``."""
    out = np.empty(count)
    for j in range((count + 1) // 2):
        first, second = _counter_normal_pair(key, start_pair + np.uint64(j))
        out[2 * j] = first
        if 2 * j + 1 < count:
            out[2 * j + 1] = second
    return out


@njit(parallel=True)
def _fill_normals_parallel(out, key, start_pair):
    count = out.shape[0]
    for j in prange((count + 1) // 2):
        first, second = _counter_normal_pair(key, start_pair + np.uint64(j))
        out[2 * j] = first
        if 2 * j + 1 < count:
            out[2 * j + 1] = second


@njit()
def _fill_normals_serial(out, key, start_pair):
    count = out.shape[0]
    for j in range((count + 1) // 2):
        first, second = _counter_normal_pair(key, start_pair + np.uint64(j))
        out[2 * j] = first
        if 2 * j + 1 < count:
            out[2 * j + 1] = second


@njit()
def tdgl_steps_serial(phi, scratch, noise, neighbors, r_steps, amp_steps, dt, c, g, u, key, step0):
    """Advance ``phi`` (flat, in place) by ``len(r_steps)`` steps; serial loops.

    ``scratch`` and ``noise`` are work arrays of ``phi``'s size. Step ``n`` draws the
    normal pairs ``(step0 + n) * ceil(n_total / 2) + j``.

    Returns:
        ``-1`` if every value stayed finite, else the local index of the first step
        after which a NaN or inf was present (``phi`` then holds that step's field).
    """
    n_sites = neighbors.shape[0]
    n_total = phi.shape[0]
    n_samples = n_total // n_sites
    n_nb = neighbors.shape[1]
    n_pairs = (n_total + 1) // 2
    for n in range(r_steps.shape[0]):
        rn = r_steps[n]
        amp = amp_steps[n]
        if amp != 0.0:
            _fill_normals_serial(noise, key, np.uint64(step0 + n) * np.uint64(n_pairs))
        for b in range(n_samples):
            base = b * n_sites
            for i in range(n_sites):
                idx = base + i
                p = phi[idx]
                lap = 0.0
                for j in range(n_nb):
                    lap += phi[base + neighbors[i, j]]
                lap -= n_nb * p
                new = p + dt * (-(rn * p - c * lap) - g * p * p - u * p * p * p)
                if amp != 0.0:
                    new += amp * noise[idx]
                scratch[idx] = new
        bad = 0
        for idx in range(n_total):
            v = scratch[idx]
            phi[idx] = v
            if not np.isfinite(v):
                bad += 1
        if bad > 0:
            return n
    return -1


@njit(parallel=True)
def tdgl_steps_parallel(phi, scratch, noise, neighbors, r_steps, amp_steps, dt, c, g, u, key, step0):
    """Same as :func:`tdgl_steps_serial`, parallel over sites within each step."""
    n_sites = neighbors.shape[0]
    n_total = phi.shape[0]
    n_nb = neighbors.shape[1]
    n_pairs = (n_total + 1) // 2
    for n in range(r_steps.shape[0]):
        rn = r_steps[n]
        amp = amp_steps[n]
        if amp != 0.0:
            _fill_normals_parallel(noise, key, np.uint64(step0 + n) * np.uint64(n_pairs))
        for idx in prange(n_total):
            base = (idx // n_sites) * n_sites
            i = idx - base
            p = phi[idx]
            lap = 0.0
            for j in range(n_nb):
                lap += phi[base + neighbors[i, j]]
            lap -= n_nb * p
            new = p + dt * (-(rn * p - c * lap) - g * p * p - u * p * p * p)
            if amp != 0.0:
                new += amp * noise[idx]
            scratch[idx] = new
        bad = 0
        for idx in prange(n_total):
            v = scratch[idx]
            phi[idx] = v
            if not np.isfinite(v):
                bad += 1
        if bad > 0:
            return n
    return -1


# ---------------------------------------------------------------------------
# numpy twin
# ---------------------------------------------------------------------------


def _mix64_numpy(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def counter_normals_numpy(key, start_pair, count) -> np.ndarray:
    """numpy twin of :func:`counter_normals_numba` (uint64 arrays wrap silently)."""
    n_pairs = (count + 1) // 2
    pairs = np.uint64(start_pair) + np.arange(n_pairs, dtype=np.uint64)
    base = _TWO * pairs
    z1 = _mix64_numpy(np.uint64(key) + (base + _ONE) * _GOLDEN)
    z2 = _mix64_numpy(np.uint64(key) + (base + _TWO) * _GOLDEN)
    u1 = ((z1 >> _S11).astype(np.float64) + 1.0) * _INV_2_53
    u2 = (z2 >> _S11).astype(np.float64) * _INV_2_53
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = _TWO_PI * u2
    out = np.empty(2 * n_pairs)
    out[0::2] = radius * np.cos(angle)
    out[1::2] = radius * np.sin(angle)
    return out[:count]


def tdgl_steps_numpy(phi, shape, r_steps, amp_steps, dt, c, g, u, key, step0) -> int:
    """numpy twin of the kernels: ``phi`` flat ``(n_samples * prod(shape),)``, in place.

    The Laplacian uses ``np.roll`` (independent of the neighbour table).
    """
    n_total = phi.shape[0]
    n_pairs = (n_total + 1) // 2
    field = phi.reshape((-1,) + tuple(shape))
    dim = len(shape)
    for n in range(len(r_steps)):
        # overflow is detected below (as in the kernels) and reported by the caller
        with np.errstate(over="ignore", invalid="ignore"):
            lap = np.zeros_like(field)
            for axis in range(1, dim + 1):
                lap += np.roll(field, 1, axis=axis)  # x - e_a
                lap += np.roll(field, -1, axis=axis)  # x + e_a
            lap -= 2 * dim * field
            new = field + dt * (-(r_steps[n] * field - c * lap) - g * field * field
                                - u * field * field * field)
            if amp_steps[n] != 0.0:
                noise = counter_normals_numpy(key, (step0 + n) * n_pairs, n_total)
                new += amp_steps[n] * noise.reshape(field.shape)
        field[...] = new
        if not np.all(np.isfinite(new)):
            return n
    return -1
