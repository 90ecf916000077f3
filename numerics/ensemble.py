"""Ensembles of the patch model and what is measured on them: ``simulate -> Ensemble``.

An ensemble of ``n`` probability-flow trajectories of the equivariant patch
denoiser (:class:`~diffcrit.numerics.patch_denoiser.PatchDenoiser`, built from the
training images) runs on a periodic ``size^d`` lattice from ``s_max`` (well above
the data scale) down to ``s_min``. At each observed noise level the observers
record, without storing trajectories:

* the **annealed Fourier-probe spectrum** ``kappa_hat(k, s)`` of every member at
  every wavevector of the lattice, by an exact shortcut for the patch model (below);
* the low-``k`` Fourier components of every member (``k = 0`` and the smallest
  shells), from which ``xi_2`` and the Ornstein–Zernike length are recomputed
  exactly with paired bootstrap replicates (below);
* the ensemble structure factor ``S(k, s)``.

From these (:func:`measure_curves`): ``gamma_min(s)``, ``gamma(k_min, s)``,
``xi_J(s)`` (all from the member-mean ``kappa_hat``;
:func:`~diffcrit.numerics.jacobian_probes.stiffness_curve`), ``xi_2(s)`` and
``xi_OZ(s)``, and the measured critical or pseudo-critical noise from each
estimator with bootstrap intervals
(:func:`~diffcrit.numerics.observables.critical_noise_estimates`).

**The kappa_hat shortcut.** For the patch model ``J_{i, i+r} = K_i(r)`` with
``K_i(r) = Cov_w(i)[phi(0), phi(r)]/s^2`` (``PatchDenoiser.jacobian_rows``) and no
other entry. For the unit complex plane wave ``e_k(x) = exp(i k.x)/sqrt(N)``,

    <e_k, J e_k> = (1/N) sum_i sum_r K_i(r) exp(-i k.i) exp(i k.(i + r))
                 = sum_r Kbar(r) exp(i k.r),    Kbar(r) = (1/N) sum_i K_i(r),

so ``kappa_hat(k) = Re <e_k, J e_k> = sum_r Kbar(r) cos(k.r)`` exactly, at any
state (not only homogeneous ones), for every ``k``. The probe of
:func:`~diffcrit.numerics.jacobian_probes.fourier_jacobian_spectrum` averages the
cosine and sine waves, ``(<c,Jc> + <s,Js>)/2``, which is that real part for a real
``J``; for a self-conjugate ``k`` (``2k = 0``; ``sin(k.x) = 0`` on the lattice) the
cosine probe alone gives ``(1/N) sum_i sum_r K_i(r) cos^2(k.i) cos(k.r)`` with
``cos^2(k.i) = 1``: the same sum. One ``jacobian_rows`` call per level therefore
replaces ``2 x (number of wavevectors)`` Jacobian-vector products. (The leakage,
which needs ``J e_k`` itself, is not measured by the shortcut.)

**Exact low-k projection.** ``xi_2`` uses only the Fourier components at ``k = 0``
and at the minimal wavevectors; the Ornstein–Zernike fit only those on its
``n_shells`` smallest nonzero shells (a per-sample mean removal changes ``k = 0``
only). Keeping the FFT of each member on those sets (closed under ``k -> -k``) and
transforming back gives real fields on which both estimators return exactly what
they return on the full fields, with the whole ``(n_s, B, *lattice)`` history never
stored.

Entry point: :func:`simulate` -> :class:`Ensemble`. Experiment E1
(:func:`~diffcrit.validation.e1.run_e1`) is ``simulate`` plus the theory of
:func:`~diffcrit.theory.patch.patch_theory` and
:func:`~diffcrit.validation.compare.compare`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcrit._checks import check_int
from diffcrit.numerics.local_jacobian import kappa_hat_from_jacobian_rows

__all__ = [
    "Ensemble",
    "MeasuredCurves",
    "simulate",
    "measure_curves",
    "low_k_mask",
    "project_low_k",
    "schedule_time",
    "ESTIMATORS",
]

#: Smallest nonzero shells kept per member for the Ornstein–Zernike fit.
OZ_SHELLS = 3

#: Critical-noise estimator keys, in report order.
ESTIMATORS = ("zero_crossing", "susceptibility_peak", "xi_J_peak", "xi_2_steepest_rise")


def low_k_mask(shape: tuple[int, ...], n_shells: int = OZ_SHELLS) -> np.ndarray:
    """Boolean mask (FFT order) of ``k = 0`` and the ``n_shells`` smallest nonzero ``q^2`` shells.

    It contains the minimal wavevectors ``+-2 pi/L e_a`` (the first shell on a square
    lattice; every axis's minimal wavevector is added explicitly otherwise) and is
    closed under ``k -> -k`` (``q^2`` is even).
    """
    from diffcrit.numerics.observables import lattice_q2

    q2 = lattice_q2(shape)
    levels = np.unique(np.round(q2, 12))
    keep = np.round(q2, 12) <= levels[min(n_shells, levels.size - 1)]
    d = len(shape)
    for a, side in enumerate(shape):
        for n in (1, side - 1):
            index = tuple(n if b == a else 0 for b in range(d))
            keep[index] = True
    return keep


def project_low_k(fields: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Real fields whose FFT equals that of ``fields`` on ``mask`` and 0 elsewhere."""
    axes = tuple(range(1, fields.ndim))
    transform = np.fft.fftn(fields, axes=axes)
    return np.fft.ifftn(np.where(mask, transform, 0.0), axes=axes).real


def field_observers(lattice: tuple[int, ...]) -> tuple[dict, np.ndarray]:
    """The observers every ensemble records besides its Jacobian: the low-``k`` Fourier
    components of each member (``"low_k"``, on :func:`low_k_mask`) and the structure
    factor (``"structure"``). Returns them and the mask's flat indices."""
    from diffcrit.numerics.observables import structure_factor

    flat_mask = np.flatnonzero(low_k_mask(lattice).ravel())
    axes = tuple(range(1, len(lattice) + 1))

    def observe_low_k(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        transform = np.fft.fftn(np.asarray(y, dtype=np.float64), axes=axes)
        return transform.reshape(y.shape[0], -1)[:, flat_mask]

    def observe_structure(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        return structure_factor(np.asarray(y, dtype=np.float64))

    return {"low_k": observe_low_k, "structure": observe_structure}, flat_mask


def schedule_time(schedule: Any, s_value: float | None) -> float | None:
    """``t(s)`` in ``schedule``'s own clock; ``None`` for ``None``, a non-finite ``s`` or one outside its range."""
    if s_value is None or not math.isfinite(float(s_value)):
        return None
    from diffcrit.theory.schedules import get_schedule

    sched = get_schedule(schedule)
    if not sched.s_min <= float(s_value) <= sched.s_max:
        return None
    return float(sched.t_of_s(float(s_value)))


def _counts(member_indices: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros((member_indices.shape[0], n))
    np.add.at(counts, (np.arange(member_indices.shape[0])[:, None], member_indices), 1.0)
    return counts


def minimum_with_interval(curve: Any, confidence: float) -> dict:
    """``min_s`` of a bootstrap curve, where it is, and the interval of the replicates' minima."""
    from diffcrit.numerics.observables import _percentile_interval

    j = int(np.argmin(curve.values))
    out = {"value": float(curve.values[j]), "s": float(curve.s[j]), "interval": None}
    if curve.n_bootstrap:
        lo, hi = _percentile_interval(curve.replicates.min(axis=0), confidence)
        out["interval"] = [float(lo), float(hi)]
    return out


def measure_curves(s_obs: np.ndarray, kappa: np.ndarray, low_k: np.ndarray, lattice: tuple[int, ...],
                   wave_idx: np.ndarray, flat_mask: np.ndarray, member_indices: np.ndarray, *,
                   kappa_member_indices: np.ndarray | None = None, confidence: float = 0.95,
                   method: str = "jacobian rows") -> dict:
    """The measured curves and critical-noise estimates from an ensemble's observations.

    Args:
        s_obs: observed noise levels ``(n_s,)`` (decreasing).
        kappa: ``(n_s, B_k, M)`` ``kappa_hat`` of ``B_k`` members at the wavevectors ``wave_idx``.
        low_k: ``(n_s, B, len(flat_mask))`` Fourier components of all ``B`` members on
            the low-``k`` mask (:func:`low_k_mask`, flattened indices ``flat_mask``).
        lattice: lattice shape.
        wave_idx: ``(M, d)`` wavevector indices.
        member_indices: ``(R, B)`` bootstrap resamples of the ``B`` members (``xi``).
        kappa_member_indices: ``(R, B_k)`` resamples of the ``kappa`` members; default
            ``member_indices`` (then ``B_k = B`` and the replicates are paired).
        confidence: interval level.
        method: how ``kappa`` was measured (recorded in the spectra).

    Returns:
        ``stiffness``, ``kappa_max``, ``xi_2``, ``xi_oz``, ``estimates``,
        ``measured_kind`` and ``min_gamma``.
    """
    from diffcrit.numerics.jacobian_probes import FourierJacobianSpectrum, stiffness_curve
    from diffcrit.numerics.observables import (
        BootstrapCurve,
        critical_noise_estimates,
        ornstein_zernike_correlation_length,
        second_moment_correlation_length,
    )

    kappa_members = member_indices if kappa_member_indices is None else kappa_member_indices
    n_k_members = kappa.shape[1]
    if kappa_members.shape[1] != n_k_members:
        raise ValueError(f"kappa has {n_k_members} members but its resamples index {kappa_members.shape[1]}")
    n = low_k.shape[1]
    wavevectors = 2.0 * np.pi * wave_idx / np.asarray(lattice)
    k_table_q2 = (4.0 * np.sin(wavevectors / 2.0) ** 2).sum(axis=1)
    self_conj = np.all((2 * wave_idx) % np.asarray(lattice) == 0, axis=1)
    spectra = [
        FourierJacobianSpectrum(
            s=float(s), shape=lattice, wavevector_indices=wave_idx,
            wavevectors=np.where(wavevectors > np.pi, wavevectors - 2 * np.pi, wavevectors),
            q2=k_table_q2, self_conjugate=self_conj, kappa=kappa[j], kappa_cos=kappa[j], kappa_sin=kappa[j],
            leakage=np.full(kappa[j].shape, np.nan), method=method)
        for j, s in enumerate(s_obs)
    ]
    stiff = stiffness_curve(spectra, member_indices=kappa_members, confidence=confidence)

    weights = np.concatenate([np.ones((1, n_k_members)), _counts(kappa_members, n_k_members)])  # (1+R, B_k)
    kmax_all = (np.einsum("rm,smk->srk", weights, kappa) / n_k_members).max(axis=-1)  # (n_s, 1+R)
    kappa_max = BootstrapCurve("kappa_max", s_obs, kmax_all[:, 0], kmax_all[:, 1:], confidence)

    xi2_vals, xi2_reps, oz_vals, oz_reps = [], [], [], []
    for j in range(len(s_obs)):
        full = np.zeros((n, int(np.prod(lattice))), dtype=complex)
        full[:, flat_mask] = low_k[j]
        fields = np.fft.ifftn(full.reshape((n,) + tuple(lattice)), axes=tuple(range(1, len(lattice) + 1))).real
        e2 = second_moment_correlation_length(fields, n_bootstrap=0, member_indices=member_indices,
                                              confidence=confidence)
        eo = ornstein_zernike_correlation_length(fields, n_shells=OZ_SHELLS, n_bootstrap=0,
                                                 member_indices=member_indices, confidence=confidence)
        xi2_vals.append(e2.value)
        xi2_reps.append(e2.replicates)
        oz_vals.append(eo.value)
        oz_reps.append(eo.replicates)
    xi_2 = BootstrapCurve("xi_2", s_obs, np.array(xi2_vals), np.array(xi2_reps), confidence)
    xi_oz = BootstrapCurve("xi_oz", s_obs, np.array(oz_vals), np.array(oz_reps), confidence)

    susc = critical_noise_estimates(s_obs, gamma_min_samples=stiff.gamma_min, xi_2_samples=xi_2,
                                    peak_of="susceptibility", confidence=confidence)
    estimates = {
        "zero_crossing": susc.zero_crossing,
        "susceptibility_peak": susc.response_peak,
        "xi_2_steepest_rise": susc.steepest_rise,
    }
    if stiff.xi_J is not None:
        xj = critical_noise_estimates(s_obs, xi_J_samples=stiff.xi_J, peak_of="xi_J", confidence=confidence)
        estimates["xi_J_peak"] = xj.response_peak
    estimates = {k: estimates[k] for k in ESTIMATORS if k in estimates}
    measured_kind = "critical" if estimates["zero_crossing"].value is not None else "pseudo-critical"
    return {"stiffness": stiff, "kappa_max": kappa_max, "xi_2": xi_2, "xi_oz": xi_oz, "estimates": estimates,
            "measured_kind": measured_kind, "min_gamma": minimum_with_interval(stiff.gamma_min, confidence)}


# ----------------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------------


class MeasuredCurves:
    """What every measurement along ``s`` reports: the estimates in ``s`` and in the
    schedule's clock, and the curves with their bootstrap bands.

    For dataclasses with ``config["schedule"]``, ``estimates``, ``stiffness``,
    ``kappa_max``, ``xi_2`` and ``xi_oz`` (:class:`Ensemble`, the trained-network
    :class:`~diffcrit.validation.probe.Measurement`, the experiments' results).
    """

    def clock(self, s_value: float | None) -> float | None:
        """``t(s)`` in the run's schedule (``None`` outside its range or for ``None``)."""
        return schedule_time(self.config["schedule"], s_value)

    def measured_summary(self) -> dict:
        """Measured estimates with intervals, in ``s`` and in the schedule's clock."""
        out = {}
        for name, est in self.estimates.items():
            entry = est.to_dict()
            entry["value"] = est.value
            entry["t"] = self.clock(est.value)
            entry["t_interval"] = None if est.interval is None else [self.clock(v) for v in est.interval]
            out[name] = entry
        return out

    def curves(self) -> dict:
        """The measured curves with their bootstrap bands, JSON-ready."""
        return {
            "gamma_min": self.stiffness.gamma_min.to_dict(),
            "gamma_kmin": None if self.stiffness.gamma_kmin is None else self.stiffness.gamma_kmin.to_dict(),
            "xi_J": None if self.stiffness.xi_J is None else self.stiffness.xi_J.to_dict(),
            "kappa_max": self.kappa_max.to_dict(),
            "xi_2": self.xi_2.to_dict(),
            "xi_oz": self.xi_oz.to_dict(),
            "k_at_min": self.stiffness.k_at_min.tolist(),
        }


@dataclass(frozen=True, eq=False)
class Ensemble(MeasuredCurves):
    """Outcome of :func:`simulate` (noise levels decreasing, VE-equivalent ``s``).

    Attributes:
        config: the run's parameters (data, window, schedule, n, size, method, ...).
        model: description of the patch denoiser.
        s: observed noise levels ``(n_s,)``.
        t: the same levels in the schedule's clock (``None`` outside its range).
        wavevector_indices: ``(M, d)`` probed wavevectors (one per ``{k, -k}`` pair).
        kappa_mean: ``(n_s, M)`` ensemble-mean ``kappa_hat(k, s)``.
        stiffness: :class:`~diffcrit.numerics.jacobian_probes.StiffnessCurve`
            (``gamma_min``, ``gamma(k_min)``, ``xi_J``, susceptibility, bootstrap).
        xi_2: :class:`~diffcrit.numerics.observables.BootstrapCurve` of ``xi_2(s)``.
        xi_oz: the Ornstein–Zernike length along ``s``.
        structure_factor: ``(n_s, *lattice)`` connected ``S(k, s)``.
        kappa_max: :class:`BootstrapCurve` of ``max_k`` of the member-mean ``kappa_hat``.
        measured_kind: ``"critical"`` (``gamma_min`` crosses 0) or ``"pseudo-critical"``.
        estimates: name -> :class:`~diffcrit.numerics.observables.CriticalNoiseEstimate`
            (``zero_crossing``, ``susceptibility_peak``, ``xi_J_peak``,
            ``xi_2_steepest_rise``).
        min_gamma: measured ``min_s gamma_min(s)``, where, and its bootstrap interval.
        samples: the ``n`` final samples ``(n, *lattice)``.
        timings: seconds spent sampling and denoiser calls.
        denoiser: the :class:`~diffcrit.numerics.patch_denoiser.PatchDenoiser` that ran.
    """

    config: dict
    model: dict
    s: np.ndarray
    t: tuple
    wavevector_indices: np.ndarray
    kappa_mean: np.ndarray
    stiffness: Any
    xi_2: Any
    xi_oz: Any
    structure_factor: np.ndarray
    kappa_max: Any
    measured_kind: str
    estimates: dict
    min_gamma: dict
    samples: np.ndarray
    timings: dict = field(default_factory=dict)
    denoiser: Any = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the curves as lists; not the samples)."""
        return {
            "config": dict(self.config),
            "model": dict(self.model),
            "s": self.s.tolist(),
            "t": list(self.t),
            "measured_kind": self.measured_kind,
            "measured": self.measured_summary(),
            "min_gamma": dict(self.min_gamma),
            "curves": self.curves(),
            "timings": dict(self.timings),
        }

    def __repr__(self) -> str:
        c = self.config
        lines = [f"Ensemble(data={c['data']!r}, window={c['window']}, n={c['n']}, size={c['size']}, "
                 f"method={c['method']!r}, {len(self.s)} levels s={self.s[0]:.3g}->{self.s[-1]:.3g}, "
                 f"measured {self.measured_kind}, min gamma_min {self.min_gamma['value']:.3g} "
                 f"at s={self.min_gamma['s']:.3g}"]
        for name, est in self.estimates.items():
            lines.append(f"  {name}: {est!r}")
        lines.append(")")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------


def resolve_dataset(data: Any) -> tuple[Any, str]:
    """A :class:`~diffcrit.data.Dataset` and its name from a dataset spec or a ``Dataset``."""
    from diffcrit.data import Dataset, load_dataset

    if isinstance(data, str):
        return load_dataset(data), data
    if isinstance(data, Dataset):
        return data, data.name
    raise TypeError(f"data must be a dataset spec (str) or a diffcrit Dataset, got {type(data).__name__}")


def load_images(data: Any, what: str = "the patch model") -> tuple[np.ndarray, str]:
    """One-channel float64 images ``(n, *shape)`` and a name from a dataset spec or a ``Dataset``."""
    dataset, name = resolve_dataset(data)
    images = np.asarray(dataset.images, dtype=np.float64)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"{what} is stated for one channel; data {name!r} has {images.shape[1]} channels")
        images = images[:, 0]
    return images, name


def check_window(window: Any) -> int:
    """An odd window side ``P >= 1``."""
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an odd integer side >= 1, got {window!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer side >= 1 (3, 5, 7, ...), got {window}")
    return int(window)


def ensemble_seeds(rng: Any, count: int = 3) -> tuple[int, ...]:
    """Independent seeds ``(sampler, bootstrap, theory, ...)`` from an int seed or a Generator.

    The ``j``-th seed does not depend on ``count`` (children of one ``SeedSequence``).
    """
    seeds = np.random.SeedSequence(rng if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
                                   else np.random.default_rng(rng).integers(2**63))
    return tuple(int(c.generate_state(1, dtype=np.uint64)[0] % 2**63) for c in seeds.spawn(count))


def simulate(
    data: Any,
    window: int = 3,
    schedule: Any = "vp-linear",
    n: int = 256,
    size: int = 32,
    method: str = "heun",
    n_levels: int = 40,
    s_max: float | None = None,
    s_min: float | None = None,
    rng: Any = 0,
    progress: bool = True,
    prune_margin: float | None = None,
    n_bootstrap: int = 400,
    confidence: float = 0.95,
    dtype: Any = "float64",
    checkpoint: Any = None,
    checkpoint_every: float = 300.0,
) -> Ensemble:
    """Run an ensemble of the equivariant patch model and measure its curves.

    Args:
        data: dataset spec (``"digits"``, ``"synthetic:binary?size=16&corr=1.5"``, ...)
            or a :class:`~diffcrit.data.Dataset`; spec strings are standardized
            globally (one scalar mean and std).
        window: odd window side ``P``.
        schedule: schedule spec whose clock the results are also read in.
        n: ensemble size (>= 8, for the bootstrap).
        size: lattice side of the simulated fields (the window must fit).
        method: deterministic sampler of the probability-flow ODE (``"heun"``,
            ``"euler"``, ``"ddim"``).
        n_levels: observed noise levels, log-spaced from ``s_max`` to ``s_min``; the
            sampler steps exactly onto them (``n_levels - 1`` steps).
        s_max: start of the trajectories; default ``max(4 s_b, 10 std)`` with
            ``s_b`` the bound above which no mode can be unstable
            (:func:`~diffcrit.theory.patch_stats.noise_scan_upper_bound`).
        s_min: end; default ``0.05 x std``.
        rng: int seed or numpy Generator; the sampler and the bootstrap use the first
            two of :func:`ensemble_seeds` (the third is left to theory comparisons).
        progress: show a progress bar.
        prune_margin: passed to the denoiser (exact pruning at low noise).
        n_bootstrap: bootstrap replicates (members resampled, paired across ``s``).
        confidence: level of every interval.
        dtype: ``"float64"`` (default) or ``"float32"``: precision of the denoiser
            and the trajectories (observables are reduced in float64).
        checkpoint: optional file for the ensemble's state; an interrupted run
            called again with the same file and arguments resumes where it stopped
            (bit for bit, same thread count).
        checkpoint_every: seconds between checkpoint writes.

    Returns:
        :class:`Ensemble`.

    Raises:
        ValueError, TypeError: bad input, before any heavy work.
    """
    from diffcrit.numerics.jacobian_probes import representative_wavevector_indices
    from diffcrit.numerics.observables import bootstrap_member_indices
    from diffcrit.numerics.patch_denoiser import PatchDenoiser
    from diffcrit.numerics.samplers import geometric_s_grid, get_sampler, sample
    from diffcrit.theory.patch_stats import noise_scan_upper_bound, patch_statistics
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.theory.windows import check_window_fits, square_window

    # ---- validation, cheap ------------------------------------------------------------
    window = check_window(window)
    n = check_int("n", n, minimum=8)
    size = check_int("size", size, minimum=3)
    n_levels = check_int("n_levels", n_levels, minimum=5)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    if str(dtype) not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dtype = np.dtype(str(dtype))
    stepper = get_sampler(method)
    if stepper.STOCHASTIC:
        raise ValueError(f"method must be a deterministic probability-flow sampler (heun, euler, ddim), got {method!r}")
    sched = get_schedule(schedule)
    images, name = load_images(data)
    dim = images.ndim - 1
    lattice = (size,) * dim
    check_window_fits(square_window(window, dim), lattice)

    stats = patch_statistics(images, window)
    std = float(images.std())
    bound = noise_scan_upper_bound(stats)
    s_top = max(4.0 * bound, 10.0 * std) if s_max is None else float(s_max)
    s_bottom = 0.05 * std if s_min is None else float(s_min)
    if not (math.isfinite(s_top) and math.isfinite(s_bottom) and 0 < s_bottom < s_top):
        raise ValueError(f"need 0 < s_min < s_max, got s_min={s_bottom!r}, s_max={s_top!r}")
    sampler_seed, boot_seed, _ = ensemble_seeds(rng)

    # ---- the ensemble -----------------------------------------------------------------
    model = PatchDenoiser(images, window, mode="equivariant", backend="numba", prune_margin=prune_margin,
                          dtype=dtype)
    wave_idx = representative_wavevector_indices(lattice)
    wavevectors = 2.0 * np.pi * wave_idx / np.asarray(lattice)
    observers, flat_mask = field_observers(lattice)
    grid = geometric_s_grid(s_top, s_bottom, n_levels - 1)

    # at an observed level one posterior-moments pass gives both D(y) (for the
    # sampler) and the Jacobian rows (for the kappa observer): no separate call
    last_rows: dict = {}

    def denoise_with_moments(y: np.ndarray, s: float) -> np.ndarray:
        posterior = model.posterior_moments(y, s)
        last_rows.clear()
        last_rows.update(state=y, s=s, rows=posterior.jacobian_rows(s))
        return posterior.mean

    def observe_kappa(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        if last_rows.get("state") is y and last_rows.get("s") == s:
            rows = last_rows["rows"]
        else:  # the first level after a resume: its D came from the checkpoint
            rows = model.jacobian_rows(y, s)
        return kappa_hat_from_jacobian_rows(rows, model.offsets, wavevectors)

    started = time.perf_counter()
    result = sample(model, (n,) + lattice, grid, method=method, rng=sampler_seed,
                    observers={"kappa": observe_kappa, **observers},
                    progress=bool(progress), mean=float(images.mean()), desc=f"E1 {name} P={window}",
                    observed_denoiser=denoise_with_moments, dtype=dtype, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every,
                    checkpoint_key=f"E1 {name} window={window} prune={prune_margin} model={model!r}")
    seconds_sampling = time.perf_counter() - started
    s_obs = result.observed_s
    kappa = result.observations["kappa"]  # (n_s, B, M)

    # ---- measured curves ----------------------------------------------------------------
    member_indices = bootstrap_member_indices(n, n_bootstrap, boot_seed)
    measured = measure_curves(s_obs, kappa, result.observations["low_k"], lattice, wave_idx, flat_mask,
                              member_indices, confidence=confidence,
                              method="patch kernel average (leakage not measured)")

    n_moment_calls = len(s_obs)  # the observed levels' evaluations carry the Jacobian
    config = {
        "data": name, "window": window, "schedule": sched.spec, "n": n, "size": size,
        "lattice": list(lattice), "method": stepper.name, "n_levels": n_levels, "s_max": s_top,
        "s_min": s_bottom, "seed": rng if isinstance(rng, (int, np.integer)) else None,
        "prune_margin": prune_margin, "n_bootstrap": n_bootstrap, "confidence": confidence,
        "dtype": dtype.name, "data_std": std, "no_instability_bound": bound,
    }
    return Ensemble(
        config=config,
        model=model.to_dict(),
        s=s_obs,
        t=tuple(schedule_time(sched.spec, v) for v in s_obs),
        wavevector_indices=wave_idx,
        kappa_mean=kappa.mean(axis=1),
        stiffness=measured["stiffness"],
        xi_2=measured["xi_2"],
        xi_oz=measured["xi_oz"],
        structure_factor=result.observations["structure"],
        kappa_max=measured["kappa_max"],
        measured_kind=measured["measured_kind"],
        estimates=measured["estimates"],
        min_gamma=measured["min_gamma"],
        samples=np.asarray(result.samples),
        timings={
            "sampling_seconds": round(seconds_sampling, 3),
            "denoiser_calls": int(result.n_denoiser_calls) - n_moment_calls,
            "moment_calls": n_moment_calls,
            "seconds_per_evaluation": round(seconds_sampling / int(result.n_denoiser_calls), 4),
            "resumed_from_step": int(result.resumed_from_step),
        },
        denoiser=model,
    )
