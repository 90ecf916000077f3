"""Local Jacobians of any denoiser by coloured probing, and what they give.

A denoiser whose output at site ``i`` depends only on the inputs in a window
``W = {r_1, ..., r_K}`` around ``i`` (the patch model: its window; a convolutional
network: its receptive field) has a Jacobian with ``K`` nonzero entries per row,
``J[i, k] = dD_i / dy_{i + r_k}`` on a periodic lattice. All of them follow from a
few Jacobian-vector products: colour the sites by their coordinates modulo a
spacing ``c_a >= P_a`` (the window's extent) that divides the side ``L_a``, and
probe with the indicator ``v_c`` of each colour. Two different offsets of one
window never share a colour (their coordinate difference is nonzero and smaller
than ``c_a`` along some axis), so

    ``(J v_c)_i = J[i, k]``  for the one ``k`` with ``i + r_k`` of colour ``c``,

exactly, with ``prod_a c_a`` products per state (at least ``K``; ``K`` when every
side is a multiple of the window's extent). Nothing is assumed about the states
(not homogeneous, not equivariant).

If the Jacobian reaches beyond the declared window, the entries outside alias onto
sites of the same colour and the rows are silently wrong; ``check_locality`` guards
against that with one more product along a random direction ``u``: the residual
``|J u - J_rows u| / |J u|`` is zero up to rounding for a truly local Jacobian.

From the rows, the Fourier-probe spectrum of THEORY.md section 4 costs nothing:

    ``kappa_hat(k) = Re <e_k, J e_k> = sum_k Kbar(r_k) cos(k . r_k)``,
    ``Kbar(r) = (1/N) sum_i J[i, i + r]``,

the same number :func:`~diffcrit.numerics.jacobian_probes.fourier_jacobian_spectrum`
measures with two products per wavevector, for every wavevector at once. The
squared-row mass ``m(r) = mean_i J[i, i + r]^2`` is the measured *Jacobian kernel*;
:func:`effective_window` reads off the smallest window that holds a given fraction
of it (the effective window of a trained network, THEORY.md section 5, E2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcrit.numerics.jacobian_probes import JVP, Denoiser, _call_jvp, _check_noise, _fd_jvp, _site_step
from diffcrit.numerics.observables import _as_ensemble, _as_generator, _check_int, _to_jsonable

__all__ = [
    "EffectiveWindow",
    "LocalJacobian",
    "effective_window",
    "kappa_hat_from_jacobian_rows",
    "local_jacobian",
    "probe_spacing",
]


def _window_offsets(window: Any, dim: int) -> np.ndarray:
    """Offsets ``(K, d)`` of an odd side ``P`` (centred cube) or an explicit array."""
    from diffcrit.theory.windows import square_window

    if isinstance(window, (int, np.integer)) and not isinstance(window, (bool, np.bool_)):
        return square_window(int(window), dim)
    offsets = np.asarray(window)
    if offsets.ndim != 2 or offsets.shape[1] != dim or offsets.shape[0] < 1 or offsets.dtype.kind not in "iu":
        raise ValueError(f"window must be an odd side P or integer offsets of shape (K, {dim}), got {window!r}")
    if np.unique(offsets, axis=0).shape[0] != offsets.shape[0]:
        raise ValueError("window offsets must be distinct")
    return offsets.astype(np.int64)


def probe_spacing(shape: tuple[int, ...], offsets: np.ndarray) -> tuple[int, ...]:
    """Colour spacing per axis: the smallest divisor of the side ``>=`` the window's extent.

    Raises:
        ValueError: the window is wider than the lattice along some axis.
    """
    offsets = np.asarray(offsets)
    extent = offsets.max(axis=0) - offsets.min(axis=0) + 1
    spacing = []
    for axis, (e, side) in enumerate(zip(extent.tolist(), shape)):
        if e > side:
            raise ValueError(f"window extent {e} along axis {axis} exceeds the lattice side {side}")
        spacing.append(next(c for c in range(int(e), side + 1) if side % c == 0))
    return tuple(spacing)


def kappa_hat_from_jacobian_rows(rows: np.ndarray, offsets: np.ndarray, wavevectors: np.ndarray) -> np.ndarray:
    """``kappa_hat(k) = sum_r Kbar(r) cos(k.r)`` for every member (module docstring).

    Args:
        rows: ``(B, *lattice, K)`` Jacobian rows ``J[b, i, k] = dD_i/dy_{i + r_k}``.
        offsets: ``(K, d)`` window offsets ``r_k``.
        wavevectors: ``(M, d)`` wavevectors ``k`` (radians per site).

    Returns:
        ``(B, M)``: ``Re <e_k, J_b e_k>`` for each member ``b``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    offsets = np.asarray(offsets)
    if rows.ndim < 3 or rows.shape[-1] != offsets.shape[0]:
        raise ValueError(f"rows must be (B, *lattice, {offsets.shape[0]}), got {rows.shape}")
    kbar = rows.reshape(rows.shape[0], -1, rows.shape[-1]).mean(axis=1)  # (B, K)
    phases = np.asarray(wavevectors, dtype=np.float64) @ offsets.T.astype(np.float64)  # (M, K)
    return kbar @ np.cos(phases).T


@dataclass(frozen=True, repr=False)
class LocalJacobian:
    """Every nonzero Jacobian entry of a local denoiser at a set of states.

    Attributes:
        s: noise level.
        shape: lattice shape.
        offsets: ``(K, d)`` window offsets ``r_k``.
        rows: ``(n_states, *shape, K)``, ``rows[b, i, k] = dD_i / dy_{i + r_k}``.
        spacing: colour spacing per axis; ``n_probes = prod(spacing)`` products per state.
        locality_residual: ``(n_states,)`` relative residual of one random product
            (``None`` if not checked); rounding-level for a truly local Jacobian.
        method: ``"jvp"`` or ``"finite_difference"``.
    """

    s: float
    shape: tuple[int, ...]
    offsets: np.ndarray
    rows: np.ndarray
    spacing: tuple[int, ...]
    locality_residual: np.ndarray | None
    method: str

    @property
    def n_probes(self) -> int:
        return int(math.prod(self.spacing))

    @property
    def n_states(self) -> int:
        return int(self.rows.shape[0])

    def kappa_hat(self, wavevectors: Any) -> np.ndarray:
        """``(n_states, M)`` Fourier-probe spectrum at wavevectors ``(M, d)`` (radians per site)."""
        return kappa_hat_from_jacobian_rows(self.rows, self.offsets, wavevectors)

    def kernel(self) -> np.ndarray:
        """``Kbar(r_k)``: the row entries averaged over sites and states, ``(K,)``."""
        return self.rows.reshape(-1, self.rows.shape[-1]).mean(axis=0)

    def kernel_mass(self) -> np.ndarray:
        """``m(r_k) = mean J[i, i + r_k]^2`` over sites and states, ``(K,)``."""
        return (self.rows.reshape(-1, self.rows.shape[-1]) ** 2).mean(axis=0)

    def to_dict(self) -> dict:
        return {key: _to_jsonable(value) for key, value in {
            "s": self.s, "shape": list(self.shape), "n_states": self.n_states, "n_offsets": int(self.offsets.shape[0]),
            "spacing": list(self.spacing), "n_probes": self.n_probes, "method": self.method,
            "max_locality_residual": None if self.locality_residual is None else float(self.locality_residual.max()),
        }.items()}

    def __repr__(self) -> str:
        check = "" if self.locality_residual is None else f", locality residual <= {self.locality_residual.max():.1e}"
        return (f"LocalJacobian(s={self.s:.4g}, {self.n_states} states on {self.shape}, {self.offsets.shape[0]} "
                f"offsets, {self.n_probes} probes by {self.method}{check})")


def local_jacobian(
    denoiser: Denoiser | None,
    states: Any,
    s: float,
    window: Any,
    *,
    jvp: JVP | None = None,
    fd_rel_step: float | None = None,
    max_batch: int = 256,
    check_locality: bool = True,
    rng: Any = 0,
) -> LocalJacobian:
    """All Jacobian entries of a denoiser that is local within ``window``, by coloured probes.

    Args:
        denoiser: batched ``denoiser(y, s)`` (may be ``None`` when ``jvp`` is given).
        states: ``(n_states, *shape)``.
        s: noise level.
        window: odd side ``P`` of a centred cube window (a network's receptive field),
            or explicit integer offsets ``(K, d)``.
        jvp: optional batched ``jvp(y, s, v)`` (autograd, analytic); otherwise
            central finite differences.
        fd_rel_step: relative finite-difference step (default ``eps^(1/3)``).
        max_batch: most fields per call.
        check_locality: spend one more product per state on a random direction to
            measure the residual of the reconstruction (see module docstring).
        rng: seed or Generator for that direction.

    Returns:
        :class:`LocalJacobian`.
    """
    if jvp is None:
        if not callable(denoiser):
            raise TypeError(f"give a callable denoiser or jvp, got denoiser={denoiser!r}")
    elif not callable(jvp):
        raise TypeError(f"jvp must be callable as jvp(y, s, v), got {jvp!r}")
    s = _check_noise(s)
    raw = np.asarray(states)
    dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float64
    y = _as_ensemble(raw, name="states")
    shape = tuple(y.shape[1:])
    offsets = _window_offsets(window, len(shape))
    spacing = probe_spacing(shape, offsets)
    max_batch = _check_int(max_batch, "max_batch", 1)
    site_step = None if jvp is not None else _site_step(s, fd_rel_step, dtype)
    n_states, n_k = y.shape[0], offsets.shape[0]

    def products(base: np.ndarray, directions: np.ndarray) -> np.ndarray:
        out = np.empty(base.shape, dtype=np.float64)
        chunk = max(1, max_batch // (1 if jvp is not None else 2))
        for start in range(0, base.shape[0], chunk):
            sl = slice(start, start + chunk)
            b, v = base[sl].astype(dtype, copy=False), directions[sl].astype(dtype, copy=False)
            out[sl] = _call_jvp(jvp, b, s, v) if jvp is not None else _fd_jvp(denoiser, b, s, v, site_step, dtype)
        return out

    coords = np.indices(shape).reshape(len(shape), -1).T  # (N, d)
    colour_of = np.ravel_multi_index(tuple((coords % np.asarray(spacing)).T), spacing)  # (N,)
    neighbours = np.ravel_multi_index(tuple(((coords[:, None, :] + offsets[None]) % np.asarray(shape)).transpose(2, 0, 1)),
                                      shape)  # (N, K): site i + r_k
    neighbour_colour = colour_of[neighbours]  # (N, K)
    rows = np.empty((n_states, coords.shape[0], n_k))
    for colour in range(int(math.prod(spacing))):
        probe = (colour_of == colour).astype(np.float64).reshape(shape)
        jv = products(y, np.broadcast_to(probe, y.shape)).reshape(n_states, -1)
        site, k = np.nonzero(neighbour_colour == colour)  # each site has at most one such k
        rows[:, site, k] = jv[:, site]

    residual = None
    if check_locality:
        direction = _as_generator(rng, what="local_jacobian").standard_normal(y.shape)
        direct = products(y, direction).reshape(n_states, -1)
        rebuilt = np.einsum("bik,bik->bi", rows, direction.reshape(n_states, -1)[:, neighbours])
        norm = np.sqrt((direct**2).sum(axis=1))
        residual = np.sqrt(((direct - rebuilt) ** 2).sum(axis=1)) / np.where(norm > 0, norm, 1.0)
    return LocalJacobian(s=s, shape=shape, offsets=offsets, rows=rows.reshape((n_states,) + shape + (n_k,)),
                         spacing=spacing, locality_residual=residual,
                         method="jvp" if jvp is not None else "finite_difference")


@dataclass(frozen=True, repr=False)
class EffectiveWindow:
    """Smallest centred window holding a fraction of the Jacobian kernel's mass.

    Attributes:
        side: the effective window side ``P_eff`` (odd).
        fraction: the requested fraction.
        sides: the odd sides tried, ``1, 3, ...`` up to the probed window.
        captured: fraction of the mass inside each side.
        rms_radius: ``sqrt(sum_r |r|^2 m(r) / sum_r m(r))`` (sites), a continuous width.
        exclude_centre: whether ``r = 0`` was left out of the mass.
    """

    side: int
    fraction: float
    sides: np.ndarray
    captured: np.ndarray
    rms_radius: float
    exclude_centre: bool = False

    def to_dict(self) -> dict:
        return {key: _to_jsonable(value) for key, value in {
            "side": self.side, "fraction": self.fraction, "sides": self.sides, "captured": self.captured,
            "rms_radius": self.rms_radius, "exclude_centre": self.exclude_centre}.items()}

    def __repr__(self) -> str:
        return f"EffectiveWindow(side={self.side}, fraction={self.fraction}, rms_radius={self.rms_radius:.3f})"


def effective_window(mass: Any, offsets: Any, fraction: float = 0.9, *,
                     exclude_centre: bool = False) -> EffectiveWindow:
    """``P_eff``: the smallest odd side whose centred cube holds ``fraction`` of ``mass``.

    Args:
        mass: ``(K,)`` nonnegative kernel mass per offset (:meth:`LocalJacobian.kernel_mass`).
        offsets: ``(K, d)`` integer offsets.
        fraction: in ``(0, 1]``.
        exclude_centre: measure only the coupling between different sites (drop
            ``r = 0``). A denoiser that passes its input through (``D ~ c y`` at low
            noise, as every skip-connected network does) has a large ``J[i, i]``
            that says nothing about its spatial reach.

    Returns:
        :class:`EffectiveWindow`.
    """
    mass = np.asarray(mass, dtype=np.float64)
    offsets = np.asarray(offsets)
    if offsets.ndim != 2 or mass.shape != (offsets.shape[0],):
        raise ValueError(f"mass must be (K,) for offsets (K, d), got {mass.shape} and {offsets.shape}")
    if not np.all(np.isfinite(mass)) or np.any(mass < 0) or mass.sum() <= 0:
        raise ValueError("mass must be finite, nonnegative and not all zero")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if exclude_centre:
        mass = np.where(np.all(offsets == 0, axis=1), 0.0, mass)
        if mass.sum() <= 0:
            raise ValueError("mass is zero away from the centre: no coupling between sites to measure")
    radius = np.abs(offsets).max(axis=1)  # the cube of side 2R+1 holds |r|_inf <= R
    total = mass.sum()
    sides = np.arange(1, 2 * int(radius.max()) + 2, 2)
    captured = np.array([mass[radius <= side // 2].sum() / total for side in sides])
    # a rounding-level shortfall of a fraction of 1 must not push the answer out by one side
    side = int(sides[np.argmax(captured >= fraction * (1 - 1e-12))])
    rms = float(np.sqrt((mass * (offsets.astype(np.float64) ** 2).sum(axis=1)).sum() / total))
    return EffectiveWindow(side=side, fraction=float(fraction), sides=sides, captured=captured, rms_radius=rms,
                           exclude_centre=bool(exclude_centre))
