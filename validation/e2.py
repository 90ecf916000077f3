"""Experiment E2: a trained convolutional denoiser against the patch theory (THEORY.md 5).

A small fully convolutional denoiser with periodic padding
(:func:`~diffcrit.validation.convnet.make_periodic_conv_denoiser`; receptive field
``R = 1 + depth (k - 1)``, exactly translation-equivariant, EDM-preconditioned) is
trained on the data (:func:`~diffcrit.validation.training.train_denoiser`), or a
saved one is loaded. Wrapped as the VE-equivalent denoiser ``D(y; s)``
(:class:`~diffcrit.validation.torch_denoiser.TorchDenoiser`, parametrization
``x0``, conditioning ``s``), it drives an ensemble of probability-flow
trajectories on a periodic ``size^d`` lattice, exactly as the patch model does in
E1. At each observed noise level:

* the **whole local Jacobian** of ``n_jacobian`` members, by coloured probing with
  autograd JVPs (:func:`~diffcrit.numerics.local_jacobian.local_jacobian`): exact,
  because the network's output at a site depends only on the ``R x R`` window
  around it (checked by one random JVP per member: the *locality residual*). From
  it ``kappa_hat(k)`` at every wavevector and the **Jacobian kernel**
  ``m(r) = mean_i J[i, i + r]^2``;
* the low-``k`` Fourier components and ``S(k)`` of every member, for ``xi_2`` and
  the Ornstein–Zernike length.

The measured curves and critical-noise estimates are those of E1
(:func:`~diffcrit.numerics.ensemble.measure_curves`). The **effective window**
``P_eff`` is the smallest centred window holding ``fraction`` (default 90 %) of the
kernel mass away from ``r = 0``, at the observed level nearest the measured critical
point (zero crossing, else susceptibility peak;
:func:`~diffcrit.numerics.local_jacobian.effective_window`). The centre is left out
because the preconditioned network passes its input through (``D ~ c_skip y``), a
diagonal term that says nothing about its spatial reach. The patch theory
(:func:`~diffcrit.theory.patch.patch_theory`) is compared at the window equal to
the receptive field and at ``P_eff``, at each theory level, with E1's verdicts.

Entry points: :func:`run_e2` -> :class:`E2Result`, :func:`write_e2` (run folder with
the trained network), the figures ``plot_e2_*``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffcrit._checks import check_int
from diffcrit.validation.compare import compare
from diffcrit.validation.e1 import (
    _LEVEL_STYLE,
    E1_THEORY_LEVELS,
    _axes,
    _band,
    _load_images,
)
from diffcrit.validation.probe import Measurement, describe_denoiser, is_ready_denoiser

__all__ = [
    "E2Result",
    "plot_e2_kernel",
    "plot_e2_stiffness",
    "plot_e2_training",
    "run_e2",
    "section_e2",
    "summary_e2",
    "write_e2",
]

#: The network's default hyperparameters (receptive field 7 with 3x3 kernels).
E2_DEFAULT_NETWORK = {"depth": 3, "channels": 32, "kernel_size": 3}


@dataclass(frozen=True, eq=False)
class E2Result(Measurement):
    """Outcome of :func:`run_e2` (noise levels decreasing, VE-equivalent ``s``): the
    :class:`~diffcrit.validation.probe.Measurement` (its final samples cut to a few)
    with the network, its training, the theory and its comparisons.

    Attributes (beyond the :class:`~diffcrit.validation.probe.Measurement`'s):
        network: the network's configuration and receptive field.
        training: the training summary (``None`` for a loaded network).
        predictions: window -> level -> :class:`~diffcrit.theory.patch.PatchTheoryResult`.
        comparisons: window -> level -> :class:`~diffcrit.validation.compare.Comparison`.
        module: the network (a torch module; written to ``network.pt`` by :func:`write_e2`).
    """

    network: dict = field(default_factory=dict)
    training: dict | None = None
    predictions: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)
    module: Any = field(default=None, repr=False)

    @property
    def receptive_field(self) -> int:
        return int(self.network["receptive_field"])

    def to_dict(self) -> dict:
        preds = {}
        for window, by_level in self.predictions.items():
            preds[str(window)] = {
                level: {"kind": p.kind, "s_c": p.s_c, "t_c": self.clock(p.s_c), "k_c": list(p.k_c),
                        "min_stiffness": p.min_stiffness, "gamma_min": p.gamma_min.tolist()}
                for level, p in by_level.items()
            }
        return {
            "experiment": "E2",
            "config": dict(self.config),
            "network": dict(self.network),
            "training": None if self.training is None else dict(self.training),
            "s": self.s.tolist(),
            "t": list(self.t),
            "measured_kind": self.measured_kind,
            "measured": self.measured_summary(),
            "min_gamma": dict(self.min_gamma),
            "effective_window": self.effective_window.to_dict(),
            "effective_windows": self.effective_windows.tolist(),
            "locality_residual_max": float(np.max(self.locality_residual)),
            "predictions": preds,
            "comparisons": {str(w): {lv: c.to_dict() for lv, c in by.items()} for w, by in self.comparisons.items()},
            "curves": self.curves(),
            "timings": dict(self.timings),
        }

    def __repr__(self) -> str:
        c = self.config
        lines = [f"E2Result(data={c['data']!r}, receptive field {self.receptive_field}, "
                 f"P_eff {self.effective_window.side}, n={c['n']}, size={c['size']}, measured {self.measured_kind}"]
        for name, est in self.estimates.items():
            lines.append(f"  measured {name}: {est!r}")
        for window, by_level in self.comparisons.items():
            for level, comp in by_level.items():
                lines.append(f"  P={window} {level}: {comp.verdict}")
        lines.append(")")
        return "\n".join(lines)


def _network_inputs(net: Any, images: np.ndarray, depth: int, channels: int, kernel_size: int,
                    train_steps: int, batch_size: int, lr: float, seed: int, checkpoint: Any,
                    progress: bool) -> tuple[Any, dict | None]:
    """The network: loaded (path), given (module) or trained here; and the training summary."""
    from diffcrit.validation.convnet import load_denoiser, make_periodic_conv_denoiser
    from diffcrit.validation.training import train_denoiser

    if net is None:
        net = make_periodic_conv_denoiser(depth, channels, kernel_size, sigma_data=float(images.std()), seed=seed)
        trained = train_denoiser(net, images, steps=train_steps, batch_size=batch_size, lr=lr, seed=seed,
                                 checkpoint=checkpoint, progress=progress)
        summary = {k: v for k, v in trained.to_dict().items() if k != "loss_history"}
        history = np.asarray(trained.loss_history, dtype=np.float64)
        return net, {**summary, "loss_history": history}
    if isinstance(net, (str, Path)):
        return load_denoiser(net), None
    if not hasattr(net, "receptive_field") or not hasattr(net, "config"):
        raise TypeError("net must be a path to a saved PeriodicConvDenoiser or the module itself "
                        f"(with receptive_field and config), got {type(net).__name__}")
    return net, None


def run_e2(
    data: Any = "digits",
    *,
    net: Any = None,
    receptive_field: int | None = None,
    depth: int = E2_DEFAULT_NETWORK["depth"],
    channels: int = E2_DEFAULT_NETWORK["channels"],
    kernel_size: int = E2_DEFAULT_NETWORK["kernel_size"],
    train_steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    checkpoint: Any = None,
    schedule: Any = "vp-linear",
    n: int = 256,
    size: int = 32,
    n_jacobian: int = 32,
    method: str = "heun",
    n_levels: int = 30,
    s_max: float | None = None,
    s_min: float | None = None,
    levels: tuple[str, ...] = E1_THEORY_LEVELS,
    fraction: float = 0.9,
    n_bootstrap: int = 400,
    confidence: float = 0.95,
    n_theory_samples: int = 32,
    n_final_samples: int = 16,
    dtype: str = "float32",
    rng: int = 0,
    progress: bool = True,
) -> E2Result:
    """Run experiment E2: train (or load) a periodic convnet and probe it against the patch theory.

    Args:
        data: dataset spec or :class:`~diffcrit.data.Dataset` (one channel).
        net: ``None`` (train a new network), a path written by
            :func:`~diffcrit.validation.convnet.save_denoiser`, a
            ``PeriodicConvDenoiser`` module, or any ready denoiser with a ``jvp`` and
            a ``field_shape`` equal to the lattice (e.g. your own network wrapped in a
            :class:`~diffcrit.validation.torch_denoiser.TorchDenoiser`).
        receptive_field: for a ready denoiser, the odd window side its output depends
            on (the Jacobian is probed within it; ``locality_residual`` reports what
            reaches beyond).
        depth, channels, kernel_size: the new network's architecture.
        train_steps, batch_size, lr: its training (EDM loss, Adam).
        checkpoint: training checkpoint path (resumes an interrupted training).
        schedule: schedule whose clock the results are also read in.
        n: ensemble size (>= 8).
        size: lattice side (the receptive field must fit).
        n_jacobian: members whose local Jacobian is measured (``<= n``, >= 8).
        method: deterministic sampler (``heun``, ``euler``, ``ddim``).
        n_levels: observed noise levels, log-spaced from ``s_max`` to ``s_min``.
        s_max, s_min: as in :func:`~diffcrit.validation.e1.run_e1`.
        levels: theory levels to compare.
        fraction: kernel-mass fraction that defines the effective window.
        n_bootstrap, confidence: bootstrap replicates and interval level.
        n_theory_samples: Monte Carlo draws of the marginal level.
        n_final_samples: final samples kept.
        dtype: ``"float32"`` (default, the training precision) or ``"float64"``:
            precision of the network evaluation.
        rng: int seed (network initialisation, training, sampler, probes, bootstrap).
        progress: progress bars.

    Returns:
        :class:`E2Result`.
    """
    from diffcrit.numerics.samplers import get_sampler

    n = check_int("n", n, minimum=8)
    size = check_int("size", size, minimum=3)
    n_jacobian = check_int("n_jacobian", n_jacobian, minimum=8)
    if n_jacobian > n:
        raise ValueError(f"n_jacobian must be <= n = {n}, got {n_jacobian}")
    n_levels = check_int("n_levels", n_levels, minimum=5)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    n_theory_samples = check_int("n_theory_samples", n_theory_samples, minimum=2)
    train_steps = check_int("train_steps", train_steps, minimum=1)
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise TypeError(f"rng must be an integer seed >= 0, got {rng!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    stepper = get_sampler(method)
    if stepper.STOCHASTIC:
        raise ValueError(f"method must be a deterministic probability-flow sampler (heun, euler, ddim), got {method!r}")
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in E1_THEORY_LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {E1_THEORY_LEVELS}, got {levels!r}")
    from diffcrit.theory.schedules import get_schedule

    sched = get_schedule(schedule)
    images, name = _load_images(data)
    if images.ndim != 3:
        raise ValueError(f"E2 runs on 2-D images; data {name!r} has fields of shape {images.shape[1:]}")
    lattice = (size, size)

    # ---- the network ------------------------------------------------------------------
    started = time.perf_counter()
    if is_ready_denoiser(net):
        # a wrapped network of the user's (e.g. a TorchDenoiser): probed as it is
        if receptive_field is None:
            raise ValueError("a ready denoiser needs receptive_field: the window its output depends on "
                             "(the locality residual reports whether the Jacobian reaches beyond it)")
        receptive = check_int("receptive_field", receptive_field, minimum=1)
        if receptive % 2 == 0:
            raise ValueError(f"receptive_field must be odd, got {receptive}")
        field_shape = tuple(getattr(net, "field_shape", ()))
        if field_shape != (size, size):
            raise ValueError(f"the denoiser's field_shape {field_shape} must be the simulated lattice ({size}, {size}); "
                             "pass size equal to its side")
        model, module, training = net, None, None
        network = {"kind": "given", "description": describe_denoiser(net), "receptive_field": receptive}
    else:
        if receptive_field is not None:
            raise ValueError("receptive_field is only for a ready denoiser; a convnet declares its own")
        module, training = _network_inputs(net, images, depth, channels, kernel_size, train_steps, batch_size, lr,
                                           int(rng), checkpoint, progress)
        receptive = int(module.receptive_field)
        from diffcrit.validation.torch_denoiser import TorchDenoiser

        module.eval()
        evaluated = module
        if dtype == "float64":
            import copy

            evaluated = copy.deepcopy(module).double()
        model = TorchDenoiser(evaluated, schedule="edm", parametrization="x0", conditioning="s", field_shape=lattice,
                              dtype=dtype)
        network = {"kind": "periodic convnet", **dict(module.config), "receptive_field": receptive, "dtype": dtype,
                   "n_parameters": int(sum(p.numel() for p in module.parameters()))}
    seconds_training = time.perf_counter() - started
    if receptive > size:
        raise ValueError(f"the receptive field {receptive} exceeds the lattice side {size}; use size >= {receptive}")

    # ---- the ensemble and its measured curves --------------------------------------------
    from diffcrit.numerics.ensemble import ensemble_seeds
    from diffcrit.validation.probe import probe

    measurement = probe(model, receptive, data=data, schedule=schedule, n=n, n_jacobian=n_jacobian, method=method,
                        n_levels=n_levels, s_max=s_max, s_min=s_min, fraction=fraction, n_bootstrap=n_bootstrap,
                        confidence=confidence, rng=int(rng), progress=progress)
    s_obs = measurement.s
    theory_seed = ensemble_seeds(int(rng), 4)[2]

    # ---- theory at the receptive field and at the effective window ----------------------
    from diffcrit.theory.patch import patch_theory

    predictions: dict = {}
    comparisons: dict = {}
    theory_seconds: dict = {}
    for window in dict.fromkeys((receptive, measurement.effective_window.side)):
        predictions[window], comparisons[window] = {}, {}
        for level in levels:
            t0 = time.perf_counter()
            pred = patch_theory(images, int(window), level=level, lattice=lattice, s_grid=s_obs, rng=theory_seed,
                                s_start=float(s_obs[0]), n_samples=n_theory_samples)
            theory_seconds[f"P{window}_{level}"] = round(time.perf_counter() - t0, 3)
            predictions[window][level] = pred
            comparisons[window][level] = compare(pred, measurement, confidence=confidence)

    m = measurement
    config = {
        "data": name, "schedule": sched.spec, "n": n, "size": size, "lattice": list(lattice), "n_jacobian": n_jacobian,
        "method": m.config["method"], "n_levels": n_levels, "s_max": m.config["s_max"], "s_min": m.config["s_min"],
        "seed": int(rng), "levels": list(levels), "fraction": float(fraction), "n_bootstrap": n_bootstrap,
        "confidence": confidence, "n_theory_samples": n_theory_samples, "data_std": m.config["data_std"],
        "trained_here": training is not None, "s_effective_window": m.config["s_effective_window"],
        "train_steps": train_steps if training is not None else None,
    }
    return E2Result(
        config=config, denoiser=m.denoiser, network=network, training=training, s=s_obs, t=m.t,
        wavevector_indices=m.wavevector_indices,
        kappa_mean=m.kappa_mean, stiffness=m.stiffness, xi_2=m.xi_2, xi_oz=m.xi_oz,
        structure_factor=m.structure_factor, kappa_max=m.kappa_max, measured_kind=m.measured_kind,
        estimates=m.estimates, min_gamma=m.min_gamma, offsets=m.offsets, kernel_mass=m.kernel_mass,
        effective_windows=m.effective_windows, effective_window=m.effective_window,
        locality_residual=m.locality_residual, predictions=predictions, comparisons=comparisons,
        samples=m.samples[:n_final_samples],
        timings={"training_seconds": round(seconds_training, 3), "sampling_seconds": m.timings["sampling_seconds"],
                 "theory_seconds": theory_seconds},
        module=module,
    )


# ----------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------


def plot_e2_stiffness(result: E2Result, ax=None):
    """Measured ``gamma_min(s)`` of the network with the patch theory at ``R`` and ``P_eff``."""
    ax = _axes(ax)
    curve = result.stiffness.gamma_min
    _band(ax, curve, "C0", f"network (n_J={result.config['n_jacobian']}, {result.config['confidence']:.0%} band)")
    for window, by_level in result.predictions.items():
        width = 1.4 if window == result.receptive_field else 0.8
        for level, pred in by_level.items():
            color, style = _LEVEL_STYLE[level]
            tag = "R" if window == result.receptive_field else "P_eff"
            ax.plot(pred.s_grid, pred.gamma_min, style, color=color, lw=width,
                    alpha=1.0 if tag == "R" else 0.6, label=f"patch theory P={window} ({tag}): {level}")
    ax.axhline(0.0, color="k", lw=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("noise level s")
    ax.set_ylabel(r"$\gamma_{\min}(s)$")
    ax.set_ylim(min(-0.2, float(np.min(curve.values)) - 0.1), 1.05)
    ax.legend(fontsize=6)
    what = "network" if result.network.get("kind") == "given" else "convnet"
    ax.set_title(f"E2 {result.config['data']}: {what}, receptive field {result.receptive_field}", fontsize=9)
    return ax


def plot_e2_kernel(result: E2Result, ax=None):
    """Fraction of the off-centre Jacobian kernel mass inside a centred window of side P, at a few levels."""
    ax = _axes(ax)
    radius = np.abs(result.offsets).max(axis=1)
    off_centre = radius > 0
    sides = np.arange(1, 2 * int(radius.max()) + 2, 2)
    picks = sorted(set(np.linspace(0, len(result.s) - 1, 5).round().astype(int).tolist()))
    cmap = _pyplot_cmap()
    for i, j in enumerate(picks):
        mass = np.where(off_centre, result.kernel_mass[j], 0.0)
        captured = [mass[radius <= p // 2].sum() / mass.sum() for p in sides]
        ax.plot(sides, captured, "o-", ms=3, color=cmap(i / max(1, len(picks) - 1)), label=f"s = {result.s[j]:.3g}")
    ax.axhline(result.config["fraction"], color="k", lw=0.7, ls=":")
    ax.set_xticks(sides)
    ax.set_xlabel("centred window side P")
    ax.set_ylabel("fraction of off-centre kernel mass")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(f"P_eff = {result.effective_window.side} at s = {result.config['s_effective_window']:.3g}",
                 fontsize=9)
    return ax


def _pyplot_cmap():
    from diffcrit.validation.plots import _pyplot

    return _pyplot().get_cmap("viridis")


def plot_e2_training(result: E2Result, ax=None):
    """Training loss per step (running mean) and the trivial denoiser's validation loss."""
    if result.training is None:
        raise ValueError("this network was loaded, not trained in the run: no training history")
    ax = _axes(ax)
    loss = np.asarray(result.training["loss_history"], dtype=np.float64)
    width = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(width) / width, mode="valid")
    ax.plot(np.arange(width, len(loss) + 1), smooth, color="C0", label=f"training loss (mean of {width} steps)")
    ax.axhline(result.training["validation_loss"], color="C1", ls="--", label="final validation loss")
    ax.axhline(result.training["validation_loss_trivial"], color="C3", ls=":", label=r"trivial $D = c_{skip} y$")
    ax.set_xlabel("step")
    ax.set_ylabel("EDM loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return ax


# ----------------------------------------------------------------------------------
# run folder
# ----------------------------------------------------------------------------------


def summary_e2(result: E2Result) -> dict:
    """The headline numbers: measured estimates, effective window, predictions, verdicts."""
    full = result.to_dict()
    return {
        "config": full["config"], "network": full["network"], "measured_kind": result.measured_kind,
        "measured": full["measured"], "min_gamma": full["min_gamma"], "effective_window": full["effective_window"],
        "locality_residual_max": full["locality_residual_max"],
        "training": None if result.training is None else {
            k: v for k, v in full["training"].items() if k in (
                "steps", "validation_loss", "validation_loss_initial", "validation_loss_trivial", "wall_time_s")},
        "predictions": {w: {lv: {k: v for k, v in p.items() if k != "gamma_min"} for lv, p in by.items()}
                        for w, by in full["predictions"].items()},
        "comparisons": full["comparisons"], "timings": full["timings"],
    }


def _document_e2(result: E2Result, document: Any, heading: bool = True) -> None:
    c, net = result.config, result.network
    if heading:
        document.heading("E2: a trained network against the patch theory")
    trained = ("loaded" if result.training is None else
               f"trained here for {result.training['steps']} steps (validation loss "
               f"{result.training['validation_loss']:.4g}; trivial denoiser {result.training['validation_loss_trivial']:.4g})")
    if net.get("kind") == "given":
        what = f"A given denoiser, probed within a {result.receptive_field}x{result.receptive_field} window,"
    else:
        what = (f"A periodic fully convolutional denoiser ({net['depth']} layers of {net['kernel_size']}x"
                f"{net['kernel_size']} convolutions, {net['channels']} channels, receptive field "
                f"{result.receptive_field}, {net['n_parameters']} parameters; {trained})")
    document.paragraph(
        f"{what} drives {c['n']} probability-flow trajectories ({c['method']}) on a periodic "
        f"{c['size']}x{c['size']} lattice from s = {c['s_max']:.3g} to {c['s_min']:.3g}. The local Jacobian of "
        f"{c['n_jacobian']} members is measured exactly at each of the {c['n_levels']} levels (largest locality "
        f"residual {np.max(result.locality_residual):.1e}). Measured: {result.measured_kind} (min gamma_min = "
        f"{result.min_gamma['value']:.3g} at s = {result.min_gamma['s']:.3g}); effective window "
        f"P_eff = {result.effective_window.side} ({c['fraction']:.0%} of the off-centre kernel mass at "
        f"s = {c['s_effective_window']:.3g}).")
    document.table([{"estimator": k.replace("_", " "), "s": e.value,
                     "interval": None if e.interval is None else list(e.interval), "note": e.note or ""}
                    for k, e in result.estimates.items()])
    rows = []
    for window, by_level in result.comparisons.items():
        for level, comp in by_level.items():
            pred = result.predictions[window][level]
            rows.append({"window": window, "level": level, "kind": pred.kind, "s_c": pred.s_c,
                         "inside primary interval": comp.inside_primary_interval,
                         "gamma_min RMS diff": comp.gamma_min_rms_difference})
    document.table(rows)
    document.bullets([f"P={w} {lv}: {comp.verdict}" for w, by in result.comparisons.items()
                      for lv, comp in by.items()])


def _figures(result: E2Result, save) -> None:
    from diffcrit.validation.plots import plot_samples

    save(plot_e2_stiffness(result), "e2_gamma_min",
         "The network's gamma_min(s) (band: bootstrap over the Jacobian members) with the patch theory at the "
         "receptive field and at the effective window.")
    save(plot_e2_kernel(result), "e2_kernel",
         "Fraction of the Jacobian kernel mass m(r), r != 0, inside a centred window, at a few noise levels.")
    if result.training is not None:
        save(plot_e2_training(result), "e2_training", "Training loss of the network.")
    if result.samples.ndim == 3:
        save(plot_samples(result.samples, n=min(16, len(result.samples)), title="E2 final samples"),
             "e2_samples", "A few final samples of the network's ensemble.")


def _arrays(result: E2Result) -> dict:
    arrays = {"s": result.s, "kappa_mean": result.kappa_mean, "gamma_min": result.stiffness.gamma_min.values,
              "gamma_min_replicates": result.stiffness.gamma_min.replicates, "xi_2": result.xi_2.values,
              "xi_oz": result.xi_oz.values, "kernel_mass": result.kernel_mass, "offsets": result.offsets,
              "effective_windows": result.effective_windows, "locality_residual": result.locality_residual,
              "structure_factor": result.structure_factor, "final_samples": result.samples,
              "wavevector_indices": result.wavevector_indices}
    for window, by_level in result.predictions.items():
        for level, pred in by_level.items():
            arrays[f"theory_P{window}_{level}_gamma_min"] = pred.gamma_min
    if result.training is not None:
        arrays["training_loss"] = np.asarray(result.training["loss_history"])
    return arrays


def write_e2(out: str | Path, result: E2Result) -> dict:
    """Write the E2 run folder (staged, atomic): results.json, arrays.npz, figures/,
    report.md/.html and the network (``network.pt``; reload with
    :func:`~diffcrit.validation.convnet.load_denoiser` or pass the path as ``net``).
    """
    from diffcrit.validation.runio import write_run_folder

    if not isinstance(result, E2Result):
        raise TypeError(f"result must be an E2Result, got {type(result).__name__}")

    def save_network(stage: Path) -> None:
        if result.module is not None:
            from diffcrit.validation.convnet import save_denoiser

            save_denoiser(result.module, stage / "network.pt")

    files = write_run_folder(out, title=f"E2: {result.config['data']}, receptive field {result.receptive_field}",
                             results=result.to_dict(), arrays=_arrays(result),
                             document=lambda doc: _document_e2(result, doc),
                             figures=lambda save: _figures(result, save), extra=save_network)
    return {"out": str(out), "files": files, **summary_e2(result)}


#: The report's reduced E2: a small network, a short training, a small ensemble.
REPORT_E2_SCALE = {"depth": 2, "channels": 16, "train_steps": 600, "n": 32, "size": 16, "n_jacobian": 8,
                   "n_levels": 12, "n_theory_samples": 8}


def section_e2(ctx: Any) -> None:
    """E2 at a reduced scale: a small trained convnet against the patch theory."""
    import importlib.util

    ctx.document.heading("E2: a trained network against the patch theory")
    if importlib.util.find_spec("torch") is None:
        ctx.document.paragraph("Skipped: torch is not installed (`pip install diffcrit[torch]`).")
        ctx.results["e2"] = {"skipped": "torch is not installed"}
        return
    images, _ = _load_images(ctx.dataset)
    if images.ndim != 3:
        ctx.document.paragraph(f"Skipped: E2 runs on 2-D images; these fields have shape {images.shape[1:]}.")
        ctx.results["e2"] = {"skipped": "not 2-D images"}
        return
    scale = dict(REPORT_E2_SCALE)
    started = time.perf_counter()
    result = run_e2(ctx.dataset, depth=scale["depth"], channels=scale["channels"], train_steps=scale["train_steps"],
                    schedule=ctx.schedule.spec, n=scale["n"], size=scale["size"], n_jacobian=scale["n_jacobian"],
                    n_levels=scale["n_levels"], n_bootstrap=200, n_theory_samples=scale["n_theory_samples"],
                    rng=0, progress=False)
    seconds = time.perf_counter() - started
    ctx.document.paragraph(
        f"This is a reduced scale for the report ({scale['train_steps']} training steps, n = {scale['n']}, "
        f"{scale['size']}^2 lattice, {scale['n_levels']} levels; {seconds:.0f} s); the full experiment is "
        "`diffcrit probe --data SPEC --depth 3 --train-steps 4000 --n 256 --size 32 --json`.")
    _document_e2(result, ctx.document, heading=False)
    _figures(result, ctx.save_figure)
    ctx.results["e2"] = {**summary_e2(result), "reduced_scale": scale, "seconds": round(seconds, 3)}
    ctx.arrays.update({"e2_s": result.s, "e2_gamma_min": result.stiffness.gamma_min.values,
                       "e2_xi_2": result.xi_2.values, "e2_kernel_mass": result.kernel_mass})
