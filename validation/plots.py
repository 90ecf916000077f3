"""All plotting. Every function takes ``ax=None``, returns the axes, never shows.

matplotlib is imported lazily (and with the non-interactive Agg backend) so that
importing diffcrit never pulls it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(5.0, 3.6)):
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def save_figure(ax_or_fig, stem: str | Path) -> list[Path]:
    """Save a figure as ``stem.png`` and ``stem.pdf``; close it; return the paths."""
    plt = _pyplot()
    fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and not hasattr(ax_or_fig, "savefig") else ax_or_fig
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def plot_samples(images: np.ndarray, labels: Sequence[int] | None = None, n: int = 16,
                 ax=None, title: str | None = None):
    """A grid of the first ``n`` single-channel images (one axes, tiled)."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"plot_samples needs 2-D images (N, H, W), got shape {images.shape}")
    n = min(n, len(images))
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = images.shape[1:]
    canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for idx in range(n):
        r, c = divmod(idx, cols)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = images[idx]
    ax = _axes(ax, figsize=(4.0, 4.0))
    ax.imshow(canvas, cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if labels is not None:
        ax.set_xlabel("labels: " + " ".join(str(int(l)) for l in list(labels)[:n]), fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def plot_radial_spectrum(k: np.ndarray, spectrum: np.ndarray, ax=None, label: str | None = None,
                         title: str | None = None):
    """Radially averaged power spectrum ``S(|k|)`` on log-linear axes."""
    ax = _axes(ax)
    ax.plot(k, spectrum, "o-", ms=3, label=label)
    ax.set_xlabel(r"$|k|$")
    ax.set_ylabel(r"$S(|k|)$")
    ax.set_yscale("log")
    if label:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_lattice_map(values: np.ndarray, ax=None, title: str | None = None, centered: bool = True,
                     extent_label: str = "r", cmap: str = "RdBu_r", colorbar: bool = True):
    """A 2-D map (covariance ``C(r)`` or spectrum ``S(k)``) with the origin centred."""
    values = np.asarray(values, dtype=float)
    ax = _axes(ax, figsize=(4.2, 3.6))
    shown = np.fft.fftshift(values) if centered else values
    limit = np.nanmax(np.abs(shown))
    kwargs = {"vmin": -limit, "vmax": limit} if cmap == "RdBu_r" else {}
    image = ax.imshow(shown, cmap=cmap, interpolation="nearest", **kwargs)
    h, w = shown.shape
    ax.set_xticks([0, w // 2, w - 1], [str(-(w // 2)), "0", str(w - 1 - w // 2)])
    ax.set_yticks([0, h // 2, h - 1], [str(-(h // 2)), "0", str(h - 1 - h // 2)])
    ax.set_xlabel(f"{extent_label}_x")
    ax.set_ylabel(f"{extent_label}_y")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.85)
    if title:
        ax.set_title(title)
    return ax


def plot_schedules(curves: dict[str, tuple[np.ndarray, np.ndarray]], ax=None,
                   marks: dict[str, float] | None = None):
    """VE-equivalent noise ``s`` against each schedule's normalised clock.

    Args:
        curves: name -> (t normalised to [0, 1], s(t)).
        marks: optional horizontal lines, label -> s value (e.g. a critical noise).
    """
    ax = _axes(ax)
    for name, (t, s) in curves.items():
        ax.plot(t, s, label=name)
    for label, value in (marks or {}).items():
        ax.axhline(value, ls="--", color="k", lw=0.8)
        ax.annotate(label, (0.02, value), textcoords="offset points", xytext=(0, 3), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("normalised time (t - t_min)/(t_max - t_min)")
    ax.set_ylabel(r"VE-equivalent noise $s = \sigma/\alpha$")
    ax.legend(fontsize=8)
    return ax
