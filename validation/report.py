"""The main job: analyse a data set and write a run folder a person reads first.

``write_report`` builds the folder in a staging directory and renames it into
place, so a failed run leaves nothing behind. The report is a list of sections;
each section adds prose, tables and figures to the document, numbers to
``results.json`` and arrays to ``arrays.npz``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from diffcrit import __version__
from diffcrit.validation.document import Document
from diffcrit.validation.runio import (
    staged_run_folder,
    write_json_atomic,
    write_npz_atomic,
    write_text_atomic,
)

#: Noise levels (VE-equivalent s) at which the schedule table reads every clock.
TABLE_NOISE_LEVELS = (80.0, 20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.05, 0.01)

#: Schedules shown side by side in the report.
REPORT_SCHEDULES = ("ve", "edm", "vp-linear", "ddpm", "vp-cosine", "ou")


@dataclass
class ReportContext:
    """What sections share: inputs, the staging folder and the accumulating outputs."""

    dataset: object
    window: int
    schedule: object
    folder: Path
    document: Document
    results: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)

    def save_figure(self, ax, name: str, caption: str) -> None:
        from diffcrit.validation.plots import save_figure

        paths = save_figure(ax, self.folder / "figures" / name)
        self.figures += [str(p.relative_to(self.folder)) for p in paths]
        self.document.figure(f"figures/{name}.png", caption)


def _single_channel(images: np.ndarray) -> np.ndarray:
    return images[:, 0] if images.ndim == 4 else images


def section_dataset(ctx: ReportContext) -> None:
    """Dataset summary and example images."""
    from diffcrit.validation.plots import plot_samples

    ds = ctx.dataset
    summary = ds.summary()
    ctx.results["dataset"] = summary
    ctx.document.heading("Dataset")
    ctx.document.paragraph(
        f"`{ds.name}`: {ds.n} images on a {'x'.join(map(str, ds.shape))} lattice"
        + (f", {len(ds.classes)} classes" if ds.labels is not None else "")
        + ". Standardization: "
        + (f"{ds.standardization.mode} (recorded and invertible)." if ds.standardization else "none.")
    )
    rows = [{"quantity": key, "value": summary[key]} for key in
            ("n", "shape", "channels") if key in summary]
    pixel = summary.get("pixels", {})
    rows += [{"quantity": f"pixel {key}", "value": value} for key, value in pixel.items()]
    ctx.document.table(rows)
    images = _single_channel(ds.images)
    if images.ndim == 3:
        labels = ds.labels[:16] if ds.labels is not None else None
        ax = plot_samples(images, labels, n=16, title=f"{ds.name}: first 16 images")
        ctx.save_figure(ax, "samples", "The first images of the data set (standardized).")


def section_spectrum(ctx: ReportContext) -> None:
    """Pooled covariance, power spectrum and the window's patch covariance."""
    from diffcrit.numerics.observables import radial_average
    from diffcrit.theory.statistics import pooled_covariance, pooled_power_spectrum
    from diffcrit.theory.windows import extract_patches, square_window
    from diffcrit.validation.plots import plot_lattice_map, plot_radial_spectrum

    images = _single_channel(ctx.dataset.images)
    spectrum = pooled_power_spectrum(images)
    covariance = pooled_covariance(images)
    profile = radial_average(spectrum, by="k")
    k, radial = profile.centres, profile.values
    ctx.arrays.update(power_spectrum=spectrum, covariance=covariance,
                      radial_k=k, radial_spectrum=radial)

    offsets = square_window(ctx.window, dim=images.ndim - 1)
    patches = extract_patches(images, offsets, boundary="periodic")
    # Cov[phi(0), phi(r)] over the pooled periodic patch set: C(r) restricted to W.
    centred = patches - patches.mean(axis=0)
    window_cov = centred.T @ centred[:, 0] / len(patches)
    ctx.arrays["window_offsets"] = offsets
    ctx.arrays["window_covariance"] = window_cov
    peak = int(np.argmax(radial))
    ctx.results["spectrum"] = {
        "pooled_variance": float(covariance.flat[0]),
        "spectrum_at_k0": float(spectrum.flat[0]),
        "radial_peak_k": float(k[peak]),
        "radial_peak_value": float(radial[peak]),
        "window": ctx.window,
        "n_patches": int(len(patches)),
        "window_covariance_sum": float(window_cov.sum()),
    }

    ctx.document.heading("Second-order statistics")
    ctx.document.paragraph(
        "Pooled over positions with one scalar mean, as an equivariant patch model sees the data: "
        "covariance C(r) and power spectrum P(k) (its Fourier transform). At high noise the patch "
        "model's mode stiffness is set by the windowed spectrum S_W(k) = sum over r in W of "
        "C(r) cos(k.r): where it is largest, modes soften first."
    )
    ctx.document.table([
        {"quantity": "pooled pixel variance C(0)", "value": float(covariance.flat[0])},
        {"quantity": "P(k=0)", "value": float(spectrum.flat[0])},
        {"quantity": "peak of radial P(|k|) at |k|", "value": float(k[peak])},
        {"quantity": f"patches in the {ctx.window}x{ctx.window} pooled set", "value": int(len(patches))},
        {"quantity": "sum of C(r) over the window", "value": float(window_cov.sum())},
    ])
    ax = plot_radial_spectrum(k, np.maximum(radial, 1e-300), label=ctx.dataset.name,
                              title="radially averaged pooled power spectrum")
    ctx.save_figure(ax, "power_spectrum", "Radially averaged pooled power spectrum P(|k|).")
    if images.ndim == 3:
        ax = plot_lattice_map(covariance, title="pooled covariance C(r)")
        ctx.save_figure(ax, "covariance", "Pooled covariance C(r) on the periodic lattice, origin centred.")
        side = ctx.window
        grid = np.zeros((side, side))
        grid[offsets[:, 0] + side // 2, offsets[:, 1] + side // 2] = window_cov
        ax = plot_lattice_map(np.fft.ifftshift(grid), title=f"patch covariance Cov[phi(0), phi(r)], {side}x{side}")
        ctx.save_figure(ax, "patch_covariance",
                        f"Patch covariance over the {side}x{side} window (pooled periodic patches).")


def section_schedules(ctx: ReportContext) -> None:
    """Every schedule's clock at a common set of VE-equivalent noise levels."""
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.validation.plots import plot_schedules

    schedules = {name: get_schedule(name) for name in REPORT_SCHEDULES}
    if ctx.schedule.spec not in {s.spec for s in schedules.values()}:
        schedules[ctx.schedule.spec] = ctx.schedule
    rows = []
    for s in TABLE_NOISE_LEVELS:
        row = {"s": s, "log-SNR": -2.0 * np.log(s), "alpha_bar": 1.0 / (1.0 + s * s)}
        for name, sched in schedules.items():
            inside = sched.s_min <= s <= sched.s_max
            row[f"t ({name})"] = float(sched.t_of_s(s)) if inside else None
            if sched.discrete and inside:
                row["step (ddpm)" if name == "ddpm" else f"step ({name})"] = float(sched.step_of_s(s))
        rows.append(row)
    ctx.results["schedules"] = {
        "noise_levels": list(TABLE_NOISE_LEVELS),
        "schedules": {name: sched.to_dict() for name, sched in schedules.items()},
        "table": rows,
    }
    ctx.document.heading("Schedules: one noise level, every clock")
    ctx.document.paragraph(
        "All critical conditions are stated in the VE-equivalent noise s = sigma/alpha. The table "
        "reads a noise level in each schedule's own clock (– where the schedule's range does not "
        "reach it); `diffcrit schedule --schedule NAME --s S` converts any value."
    )
    ctx.document.table(rows, digits=4)
    curves = {}
    for name, sched in schedules.items():
        t = np.linspace(sched.t_min, sched.t_max, 400)
        curves[name] = ((t - sched.t_min) / (sched.t_max - sched.t_min), sched.s(t))
    ax = plot_schedules(curves)
    ctx.save_figure(ax, "schedules", "VE-equivalent noise s against each schedule's normalised clock.")


def section_e1(ctx: ReportContext) -> None:
    """E1: the patch-model ensemble against the three theory levels (reduced scale)."""
    from diffcrit.validation.e1 import section_e1 as run_section

    run_section(ctx)


def section_e2(ctx: ReportContext) -> None:
    """E2: a small trained convolutional denoiser against the patch theory (reduced scale)."""
    from diffcrit.validation.e2 import section_e2 as run_section

    run_section(ctx)


#: The report's sections, in order.
SECTIONS: list[Callable[[ReportContext], None]] = [
    section_dataset, section_spectrum, section_schedules, section_e1, section_e2,
]

#: Sections that simulate ensembles or train networks (skipped with ``simulate=False``).
SIMULATION_SECTIONS = (section_e1, section_e2)


def write_report(data="digits", out="runs/report", window: int = 5, schedule="vp-linear",
                 standardize: str = "global", progress: bool = True, simulate: bool = True) -> dict:
    """Analyse a data set and write the run folder ``out``.

    Args:
        data: dataset spec (see :func:`diffcrit.data.load_dataset`) or a ``Dataset``.
        out: run folder; replaced atomically when the run succeeds.
        window: odd patch-window side for the patch statistics.
        schedule: schedule spec whose clock the report reads in.
        standardize: ``"global"``, ``"per-pixel"`` or ``"none"``.
        progress: print one line per section to stderr.
        simulate: run the sections that simulate ensembles or train networks (E1, E2).

    Returns:
        A JSON-able summary: the folder, its files and the headline numbers.
    """
    import sys

    from diffcrit.data import Dataset, load_dataset
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.theory.windows import check_window_fits, square_window

    # Validate everything cheap before any heavy work.
    sched = get_schedule(schedule)
    dataset = data if isinstance(data, Dataset) else load_dataset(data, standardize=standardize)
    check_window_fits(square_window(window, dim=len(dataset.shape)), dataset.shape)

    started = time.perf_counter()
    document = Document(title=f"diffcrit report: {dataset.name}")
    document.paragraph(
        f"diffcrit {__version__}. Data `{dataset.name}`, window {window}x{window}, "
        f"clock of schedule `{sched.spec}`. Numbers are in results.json, arrays in arrays.npz, "
        "figures in figures/ (PNG and PDF)."
    )
    with staged_run_folder(out) as stage:
        ctx = ReportContext(dataset=dataset, window=window, schedule=sched, folder=stage, document=document)
        for section in SECTIONS:
            if not simulate and section in SIMULATION_SECTIONS:
                continue
            if progress:
                print(f"[diffcrit report] {section.__doc__.splitlines()[0]}", file=sys.stderr)
            section(ctx)
        ctx.results["run"] = {
            "diffcrit_version": __version__,
            "data": data if isinstance(data, str) else dataset.name,
            "window": window,
            "schedule": sched.spec,
            "simulate": simulate,
            "seconds": round(time.perf_counter() - started, 3),
        }
        write_json_atomic(stage / "results.json", ctx.results)
        write_npz_atomic(stage / "arrays.npz", **ctx.arrays)
        write_text_atomic(stage / "report.md", document.to_markdown())
        write_text_atomic(stage / "report.html", document.to_html())
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    return {
        "command": "report",
        "out": str(Path(out)),
        "files": files,
        "dataset": ctx.results["dataset"],
        "spectrum": ctx.results["spectrum"],
        "seconds": ctx.results["run"]["seconds"],
    }
