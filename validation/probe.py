"""A trained network's ensemble and its measured curves: ``probe -> Measurement``.

The network, wrapped as a denoiser ``D(y; s)`` with an exact Jacobian-vector
product (:class:`~diffcrit.validation.torch_denoiser.TorchDenoiser`, or any object
with ``__call__(y, s)``, ``jvp(y, s, v)`` and ``field_shape``), drives ``n``
probability-flow trajectories on its lattice. At each observed level:

* the **local Jacobian** of the first ``n_jacobian`` members, every entry within
  the declared receptive field, by coloured probes
  (:func:`~diffcrit.numerics.local_jacobian.local_jacobian`: ``prod(spacing)`` JVPs
  per state), with a **locality residual** from one random JVP that flags a
  Jacobian reaching beyond the field; from its rows ``kappa_hat(k, s)`` at every
  wavevector and the kernel mass ``m(r, s) = mean J[i, i+r]^2``;
* the low-``k`` Fourier components of every member and the structure factor,
  exactly as for the patch model (:mod:`diffcrit.numerics.ensemble`).

The same :func:`~diffcrit.numerics.ensemble.measure_curves` then gives
``gamma_min(s)``, ``xi_J``, ``xi_2``, ``xi_OZ`` and the critical-noise estimates
with bootstrap intervals (``kappa`` resampled over the Jacobian members, ``xi``
over all members). The **effective window** ``P_eff`` is the smallest centred
window holding ``fraction`` of the off-centre kernel mass at the level nearest the
measured critical point (the centre is left out: a skip-connected network passes
its input through, ``D ~ c_skip y``, which says nothing about spatial reach).

A :class:`Measurement` compares with any prediction through
:func:`~diffcrit.validation.compare.compare`; :func:`~diffcrit.validation.e2.run_e2`
is training, ``probe`` and the patch theory at the receptive field and at ``P_eff``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcrit._checks import check_int
from diffcrit.numerics.ensemble import (
    MeasuredCurves,
    ensemble_seeds,
    field_observers,
    load_images,
    measure_curves,
    schedule_time,
)

__all__ = ["Measurement", "probe", "is_ready_denoiser"]


def is_ready_denoiser(net: Any) -> bool:
    """A denoiser object with a JVP (a wrapped network), as opposed to a module or a path."""
    return callable(net) and callable(getattr(net, "jvp", None)) and hasattr(net, "field_shape")


def describe_denoiser(net: Any) -> Any:
    """The denoiser's ``to_dict()`` if it has one, else its ``repr``."""
    to_dict = getattr(net, "to_dict", None)
    return to_dict() if callable(to_dict) else repr(net)


@dataclass(frozen=True, eq=False)
class Measurement(MeasuredCurves):
    """Outcome of :func:`probe` (noise levels decreasing, VE-equivalent ``s``).

    Attributes:
        config: the run's parameters.
        denoiser: description of the probed denoiser (its ``to_dict()`` or ``repr``).
        s, t: observed noise levels and the same in the schedule's clock.
        wavevector_indices: ``(M, d)`` probed wavevectors.
        kappa_mean: ``(n_s, M)`` mean ``kappa_hat(k, s)`` over the Jacobian members.
        stiffness, kappa_max, xi_2, xi_oz, estimates, measured_kind, min_gamma: as in
            :class:`~diffcrit.numerics.ensemble.Ensemble`.
        structure_factor: ``(n_s, *lattice)``.
        offsets: ``(K, d)`` offsets of the receptive field.
        kernel_mass: ``(n_s, K)`` Jacobian kernel ``m(r, s)``.
        effective_windows: ``P_eff(s)`` at each level, ``(n_s,)``.
        effective_window: the :class:`~diffcrit.numerics.local_jacobian.EffectiveWindow`
            at the level nearest the measured critical point (``config['s_effective_window']``).
        locality_residual: ``(n_s,)`` largest locality residual at each level.
        samples: the ``n`` final samples.
        timings: seconds spent.
    """

    config: dict
    denoiser: Any
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
    offsets: np.ndarray
    kernel_mass: np.ndarray
    effective_windows: np.ndarray
    effective_window: Any
    locality_residual: np.ndarray
    samples: np.ndarray
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the curves as lists; not the samples)."""
        return {
            "config": dict(self.config),
            "denoiser": self.denoiser,
            "s": self.s.tolist(),
            "t": list(self.t),
            "measured_kind": self.measured_kind,
            "measured": self.measured_summary(),
            "min_gamma": dict(self.min_gamma),
            "effective_window": self.effective_window.to_dict(),
            "effective_windows": self.effective_windows.tolist(),
            "locality_residual_max": float(np.max(self.locality_residual)),
            "curves": self.curves(),
            "timings": dict(self.timings),
        }

    def __repr__(self) -> str:
        c = self.config
        lines = [f"Measurement(receptive field {c['receptive_field']}, P_eff {self.effective_window.side}, "
                 f"n={c['n']}, lattice={tuple(c['lattice'])}, {len(self.s)} levels "
                 f"s={self.s[0]:.3g}->{self.s[-1]:.3g}, measured {self.measured_kind}, min gamma_min "
                 f"{self.min_gamma['value']:.3g} at s={self.min_gamma['s']:.3g}, locality residual "
                 f"{np.max(self.locality_residual):.1e}"]
        for name, est in self.estimates.items():
            lines.append(f"  {name}: {est!r}")
        lines.append(")")
        return "\n".join(lines)


def probe(
    denoiser: Any,
    receptive_field: int,
    *,
    data: Any = None,
    schedule: Any = "vp-linear",
    n: int = 256,
    n_jacobian: int = 32,
    method: str = "heun",
    n_levels: int = 30,
    s_max: float | None = None,
    s_min: float | None = None,
    mean: float | None = None,
    fraction: float = 0.9,
    n_bootstrap: int = 400,
    confidence: float = 0.95,
    rng: int = 0,
    progress: bool = True,
) -> Measurement:
    """Run a network's probability-flow ensemble and measure its local Jacobian and correlations.

    Args:
        denoiser: ``D(y; s)`` with ``jvp(y, s, v)`` and ``field_shape`` (e.g. a
            :class:`~diffcrit.validation.torch_denoiser.TorchDenoiser`); the
            ensemble lives on ``field_shape``.
        receptive_field: odd window side the output depends on; the Jacobian is
            measured within it, and ``locality_residual`` reports what reaches beyond.
        data: dataset spec or :class:`~diffcrit.data.Dataset` the network was trained
            on: sets the defaults of ``s_max``, ``s_min`` and ``mean``; without it
            pass ``s_max`` and ``s_min``.
        schedule: schedule whose clock the results are also read in.
        n: ensemble size (>= 8).
        n_jacobian: members whose local Jacobian is measured (8 <= n_jacobian <= n).
        method: deterministic sampler (``heun``, ``euler``, ``ddim``).
        n_levels: observed noise levels, log-spaced from ``s_max`` to ``s_min``.
        s_max: start; default ``max(4 s_b, 10 std)`` (``s_b``: the patch model's
            no-instability bound at the receptive field), capped at half the
            denoiser's own ``schedule.s_max`` if it has one.
        s_min: end; default ``0.05 x std``.
        mean: the initial state's mean (``y = mean + s_max eps``); default the data's
            mean, else 0.
        fraction: kernel-mass fraction that defines the effective window.
        n_bootstrap, confidence: bootstrap replicates and interval level.
        rng: int seed >= 0 (sampler, bootstrap and the probes draw independent
            streams from it).
        progress: progress bar.

    Returns:
        :class:`Measurement`.

    Raises:
        ValueError, TypeError: bad input, before any network evaluation.
    """
    from diffcrit.numerics.jacobian_probes import representative_wavevector_indices
    from diffcrit.numerics.local_jacobian import effective_window, local_jacobian, probe_spacing
    from diffcrit.numerics.observables import bootstrap_member_indices
    from diffcrit.numerics.samplers import geometric_s_grid, get_sampler, sample
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.theory.windows import square_window

    # ---- validation, cheap ------------------------------------------------------------
    if not is_ready_denoiser(denoiser):
        raise TypeError("denoiser must be callable as D(y, s) with a jvp(y, s, v) method and a field_shape "
                        f"(e.g. a TorchDenoiser), got {type(denoiser).__name__}")
    lattice = tuple(int(v) for v in denoiser.field_shape)
    receptive = check_int("receptive_field", receptive_field, minimum=1)
    if receptive % 2 == 0:
        raise ValueError(f"receptive_field must be odd, got {receptive}")
    if receptive > min(lattice):
        raise ValueError(f"the receptive field {receptive} exceeds the lattice side {min(lattice)}; "
                         f"use a field_shape of side >= {receptive}")
    n = check_int("n", n, minimum=8)
    n_jacobian = check_int("n_jacobian", n_jacobian, minimum=8)
    if n_jacobian > n:
        raise ValueError(f"n_jacobian must be <= n = {n}, got {n_jacobian}")
    n_levels = check_int("n_levels", n_levels, minimum=5)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise TypeError(f"rng must be an integer seed >= 0, got {rng!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    stepper = get_sampler(method)
    if stepper.STOCHASTIC:
        raise ValueError(f"method must be a deterministic probability-flow sampler (heun, euler, ddim), got {method!r}")
    sched = get_schedule(schedule)
    if data is None:
        if s_max is None or s_min is None:
            raise ValueError("without data, pass s_max and s_min (the noise range of the ensemble)")
        std, name, data_mean = None, None, 0.0
        s_top, s_bottom = float(s_max), float(s_min)
    else:
        from diffcrit.theory.patch_stats import noise_scan_upper_bound, patch_statistics

        images, name = load_images(data, what="the probe")
        if images.ndim - 1 != len(lattice):
            raise ValueError(f"data {name!r} has {images.ndim - 1}-D fields; the denoiser's field_shape is {lattice}")
        std, data_mean = float(images.std()), float(images.mean())
        model_s_max = getattr(getattr(denoiser, "schedule", None), "s_max", math.inf)
        if s_max is None:
            bound = noise_scan_upper_bound(patch_statistics(images, receptive))
            s_top = min(max(4.0 * bound, 10.0 * std), 0.5 * model_s_max)
        else:
            s_top = float(s_max)
        s_bottom = 0.05 * std if s_min is None else float(s_min)
    if not (math.isfinite(s_top) and math.isfinite(s_bottom) and 0 < s_bottom < s_top):
        raise ValueError(f"need 0 < s_min < s_max, got s_min={s_bottom!r}, s_max={s_top!r}")
    start_mean = data_mean if mean is None else float(mean)

    # the first three streams are those of the patch model's ensemble (the third is
    # left to theory comparisons); the fourth drives the locality probes
    sampler_seed, boot_seed, _, probe_seed = ensemble_seeds(int(rng), 4)
    wave_idx = representative_wavevector_indices(lattice)
    wavevectors = 2.0 * np.pi * wave_idx / np.asarray(lattice)
    observers, flat_mask = field_observers(lattice)
    grid = geometric_s_grid(s_top, s_bottom, n_levels - 1)
    offsets = square_window(receptive, len(lattice))
    n_kappa = n_jacobian * len(wave_idx)

    def observe_jacobian(s: float, y: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        # one flat vector per level (kappa_hat of each member, kernel mass, locality
        # residual): the observer is a function of its arguments only
        level = int(np.argmin(np.abs(grid - s)))
        local = local_jacobian(None, np.asarray(y[:n_jacobian], dtype=np.float64), s, offsets, jvp=denoiser.jvp,
                               rng=probe_seed + level)
        return np.concatenate([local.kappa_hat(wavevectors).ravel(), local.kernel_mass(),
                               [local.locality_residual.max()]])

    started = time.perf_counter()
    result = sample(denoiser, (n,) + lattice, grid, method=method, rng=sampler_seed,
                    observers={"jacobian": observe_jacobian, **observers},
                    progress=bool(progress), mean=start_mean, desc=f"probe {name} R={receptive}" if name else f"probe R={receptive}",
                    dtype=np.float64)
    seconds_sampling = time.perf_counter() - started
    s_obs = result.observed_s
    jacobian = result.observations["jacobian"]
    kappa = jacobian[:, :n_kappa].reshape(len(s_obs), n_jacobian, len(wave_idx))
    kernel_mass = jacobian[:, n_kappa:-1]  # (n_s, K)
    residuals = jacobian[:, -1]

    member_indices = bootstrap_member_indices(n, n_bootstrap, boot_seed)
    kappa_members = bootstrap_member_indices(n_jacobian, n_bootstrap, boot_seed + 1)
    measured = measure_curves(s_obs, kappa, result.observations["low_k"], lattice, wave_idx, flat_mask,
                              member_indices, kappa_member_indices=kappa_members, confidence=confidence,
                              method="local Jacobian by coloured probes")
    per_level = np.array([effective_window(m, offsets, fraction, exclude_centre=True).side for m in kernel_mass])
    primary = measured["estimates"]["zero_crossing" if measured["measured_kind"] == "critical" else "susceptibility_peak"]
    s_eff = primary.value if primary.value is not None else measured["min_gamma"]["s"]
    j_eff = int(np.argmin(np.abs(np.log(np.asarray(s_obs)) - math.log(s_eff))))
    eff = effective_window(kernel_mass[j_eff], offsets, fraction, exclude_centre=True)

    config = {
        "data": name, "schedule": sched.spec, "n": n, "lattice": list(lattice), "receptive_field": receptive,
        "n_jacobian": n_jacobian, "method": stepper.name, "n_levels": n_levels, "s_max": s_top, "s_min": s_bottom,
        "mean": start_mean, "seed": int(rng), "fraction": float(fraction), "n_bootstrap": n_bootstrap,
        "confidence": confidence, "data_std": std, "s_effective_window": float(s_obs[j_eff]),
    }
    return Measurement(
        config=config, denoiser=describe_denoiser(denoiser), s=s_obs,
        t=tuple(schedule_time(sched.spec, v) for v in s_obs),
        wavevector_indices=wave_idx, kappa_mean=kappa.mean(axis=1),
        stiffness=measured["stiffness"], xi_2=measured["xi_2"], xi_oz=measured["xi_oz"],
        structure_factor=result.observations["structure"], kappa_max=measured["kappa_max"],
        measured_kind=measured["measured_kind"], estimates=measured["estimates"], min_gamma=measured["min_gamma"],
        offsets=offsets, kernel_mass=kernel_mass, effective_windows=per_level, effective_window=eff,
        locality_residual=residuals, samples=np.asarray(result.samples),
        timings={"sampling_seconds": round(seconds_sampling, 3),
                 "jvps_per_member_and_level": int(np.prod(probe_spacing(lattice, offsets))) + 1},
    )
