"""Experiment E3: the guidance pulse (THEORY.md 5, "E3, guidance pulse").

Claim under test (MISSION.md): guidance applied at the critical stage of the reverse
dynamics improves class alignment more than guidance applied at random times.

**Models.** A conditional/unconditional pair of the same family: the unconditional
denoiser ``D_u`` is built from every training image, the conditional one ``D_c``
from the images of class ``c`` only. Families: the patch model
(:class:`~diffcrit.numerics.patch_denoiser.PatchDenoiser`, any mode; ``"local"``
by default) and the memorizing model
(:class:`~diffcrit.numerics.denoisers.MemorizingDenoiser`).

**Guidance pulse.** ``D_w(y; s) = D_u + w(s) (D_c - D_u)`` with ``w(s) = w`` for
``s_low <= s <= s_high`` and ``0`` outside, ``s_high/low = s* e^{+-Delta/2}``
(a window of width ``Delta`` in ``ln s`` centred at ``s*``;
:class:`~diffcrit.numerics.denoisers.GuidanceWindow`). Runs, all probability-flow trajectories from ``s_max``
down to ``s = 0`` (the last step returns the posterior mean at ``s_min``):

* no guidance (``w = 0`` everywhere), guidance everywhere (constant ``w``);
* the window at ``s*`` (default: the predicted critical noise ``s_c`` of the
  unconditional model, :func:`~diffcrit.theory.predict.predict`);
* a sweep of ``n_sweep`` centres log-spaced over the admissible range (every
  window fully inside ``[s_min, s_max]``, i.e. ``s*`` in
  ``[s_min e^{Delta/2}, s_max e^{-Delta/2}]``);
* ``n_random`` centres drawn uniformly in ``ln s`` over the same range (seeded).

**Common random numbers.** Every run starts from the same ``n_per_class`` initial
states ``y_0 = mean + s_max eps`` (the same for every class and every window), so
differences between runs are differences of the protocol, not of the noise. All
classes run together in one class-major batch of ``n_classes x n_per_class``
trajectories: ``D_u`` is called once on the whole batch, and each class block is
guided by its own ``D_c`` (:class:`ClassBlockDenoiser`).

**Edges and the prefix cache.** One integration grid serves every run: the
geometric base grid with every window edge inserted as a node
(:func:`~diffcrit.numerics.samplers.insert_noise_levels`), so no step straddles an
edge. A Heun step from ``s_i`` to ``s_{i+1}`` evaluates ``D`` at both ends:
``D(y_i; s_i)`` and, in the corrector, ``D(y_euler; s_{i+1})``. The window
includes both edges (:class:`~diffcrit.numerics.denoisers.GuidanceWindow` tests
membership in ``s`` against its stored edges, so a grid node equal to an edge is
inside exactly). Therefore what is simulated is:

* the step *arriving* at ``s_high`` uses ``D_u`` at its start and ``D_w`` in its
  corrector (half guided);
* every step between ``s_high`` and ``s_low`` uses ``D_w`` at both ends;
* the step *leaving* ``s_low`` uses ``D_w`` at its start and ``D_u`` in its
  corrector (half guided).

(Euler and DDIM evaluate only the start of a step: the step leaving ``s_low`` is
guided, the step arriving at ``s_high`` is not.) So the pulse acts, in the
trapezoidal sense, over ``Delta`` plus half a grid step on each side; every run
uses the same grid.

Because every evaluation above ``s_high`` is unguided, a guided run and the
unguided run coincide up to the grid node *just above* ``s_high`` (not up to
``s_high`` itself: the step arriving there is already half guided). The unguided
trajectory of the same batch is computed once, its state recorded at every such
restart node, and each guided run restarts from the recorded state at its node
(from the initial state when ``s_high = s_max``), with the same grid and
denoisers. It repeats exactly the operations of a guided run started at
``s_max``, so the two are bit-for-bit equal (:func:`guided_run_from_prefix`,
tested), and a window with ``w = 0`` reproduces the unguided samples exactly.

**Alignment and statistics.** An independent classifier (scikit-learn logistic
regression on the flattened images, fixed stratified held-out split; never the
guided model) labels every final sample. The class alignment of a run is the
fraction of its samples assigned to the targeted class, pooled over classes.
Effect size = alignment of the window at ``s*`` minus the mean alignment of the
random windows. Its bootstrap interval resamples trajectories: one draw of
``n_per_class`` initial-noise indices per replicate, applied to every run and
every class (the runs are paired through the common initial noise). The interval
is conditional on the drawn random windows; the randomness of that draw is what
the permutation p-value
``(1 + #{random windows with alignment >= that at s*}) / (1 + n_random)`` tests
(ties count against the claim). The sweep's maximum is located (with a bootstrap
interval of its position) relative to ``s*``.

Entry points: :func:`run_e3` -> :class:`E3Result`, :func:`write_e3` (run folder),
the figures :func:`plot_e3_alignment` and :func:`plot_e3_samples`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diffcrit._checks import check_float, check_int
from diffcrit.numerics.denoisers import GuidanceWindow
from diffcrit.numerics.ensemble import schedule_time as _clock

__all__ = [
    "E3_MODELS",
    "E3Result",
    "AlignmentClassifier",
    "train_alignment_classifier",
    "ClassBlockDenoiser",
    "restart_node",
    "guided_run_from_prefix",
    "bootstrap_alignments",
    "permutation_p_value",
    "guidance_effect",
    "run_e3",
    "write_e3",
    "summary_e3",
    "plot_e3_alignment",
    "plot_e3_samples",
]

#: Denoiser families of :func:`run_e3`.
E3_MODELS = ("patch", "memorizing")

#: Held-out fraction and seed of the classifier's fixed train/test split.
CLASSIFIER_TEST_FRACTION = 0.25
CLASSIFIER_SPLIT_SEED = 0

#: Samples per class kept for the sample figures.
_N_SHOWN = 8

_DETERMINISTIC_METHODS = ("heun", "euler", "ddim")


# ----------------------------------------------------------------------------------
# the window
# ----------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------
# the classifier
# ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AlignmentClassifier:
    """The independent classifier that scores class alignment.

    Attributes:
        model: the fitted scikit-learn estimator (``predict``, ``predict_proba``).
        held_out_accuracy: accuracy on the held-out split.
        per_class_accuracy: held-out accuracy per class label.
        n_train, n_test: sizes of the split.
        description: what the estimator is.
    """

    model: Any
    held_out_accuracy: float
    per_class_accuracy: dict
    n_train: int
    n_test: int
    description: str

    def predict(self, fields: np.ndarray) -> np.ndarray:
        """Class labels of fields ``(M, *shape)``."""
        return self.model.predict(np.asarray(fields, dtype=np.float64).reshape(len(fields), -1))

    def probability(self, fields: np.ndarray, label: Any) -> np.ndarray:
        """Predicted probability of class ``label`` for fields ``(M, *shape)``."""
        column = int(np.flatnonzero(self.model.classes_ == label)[0])
        flat = np.asarray(fields, dtype=np.float64).reshape(len(fields), -1)
        return self.model.predict_proba(flat)[:, column]

    def to_dict(self) -> dict:
        """JSON-ready description and accuracies."""
        return {"description": self.description, "held_out_accuracy": self.held_out_accuracy,
                "per_class_accuracy": {str(k): v for k, v in self.per_class_accuracy.items()},
                "n_train": self.n_train, "n_test": self.n_test,
                "test_fraction": CLASSIFIER_TEST_FRACTION, "split_seed": CLASSIFIER_SPLIT_SEED}

    def __repr__(self) -> str:
        return (f"AlignmentClassifier({self.description}, held-out accuracy {self.held_out_accuracy:.4f} "
                f"on {self.n_test} images)")


def train_alignment_classifier(images: Any, labels: Any) -> AlignmentClassifier:
    """Fit the E3 classifier: multinomial logistic regression on the flattened images.

    The split is fixed (stratified, ``CLASSIFIER_TEST_FRACTION`` held out, seed
    ``CLASSIFIER_SPLIT_SEED``), so the same data always give the same classifier.

    Args:
        images: ``(N, *shape)`` fields.
        labels: ``(N,)`` integer labels, at least 2 classes, each with >= 2 images.

    Returns:
        :class:`AlignmentClassifier` with its held-out accuracy.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x = np.asarray(images, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim < 2 or len(x) != len(y):
        raise ValueError(f"images (N, *shape) and labels (N,) must match, got shapes {x.shape} and {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        raise ValueError(f"the classifier needs >= 2 classes with >= 2 images each, got counts "
                         f"{dict(zip(classes.tolist(), counts.tolist()))}")
    flat = x.reshape(len(x), -1)
    n_test = max(len(classes), int(round(CLASSIFIER_TEST_FRACTION * len(x))))
    x_train, x_test, y_train, y_test = train_test_split(flat, y, test_size=n_test, stratify=y,
                                                        random_state=CLASSIFIER_SPLIT_SEED)
    model = LogisticRegression(max_iter=5000)
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    per_class = {int(c) if isinstance(c, (int, np.integer)) else c:
                 float(np.mean(predicted[y_test == c] == c)) for c in classes if np.any(y_test == c)}
    return AlignmentClassifier(model=model, held_out_accuracy=float(np.mean(predicted == y_test)),
                               per_class_accuracy=per_class, n_train=int(len(y_train)), n_test=int(len(y_test)),
                               description="logistic regression (scikit-learn, lbfgs, C=1) on flattened images")


# ----------------------------------------------------------------------------------
# class blocks and the prefix cache
# ----------------------------------------------------------------------------------


class ClassBlockDenoiser:
    """Per-class denoisers applied to consecutive blocks of a batch.

    A batch ``(n_classes * block_size, *shape)`` is read class-major: rows
    ``c * block_size ... (c + 1) * block_size - 1`` belong to class ``c`` and are
    denoised by ``denoisers[c]``. As the conditional model of
    :class:`~diffcrit.numerics.denoisers.GuidedDenoiser` it guides every class in
    one run (one call of ``D_u`` on the whole batch per stage), which is what E3
    does.

    Args:
        denoisers: one denoiser per class.
        block_size: trajectories per class.
    """

    def __init__(self, denoisers: Sequence[Any], block_size: int):
        self.denoisers = list(denoisers)
        if not self.denoisers:
            raise ValueError("denoisers must hold at least one denoiser")
        self.block_size = check_int("block_size", block_size, minimum=1)
        shape = getattr(self.denoisers[0], "field_shape", None)
        if shape is not None:
            self.field_shape = tuple(shape)

    def __call__(self, y: np.ndarray, s: float) -> np.ndarray:
        y = np.asarray(y)
        expected = len(self.denoisers) * self.block_size
        if y.ndim < 2 or y.shape[0] != expected:
            raise ValueError(f"ClassBlockDenoiser expects a batch of {len(self.denoisers)} classes x "
                             f"{self.block_size} = {expected} fields, got shape {y.shape}")
        b = self.block_size
        return np.concatenate([np.asarray(d(y[c * b:(c + 1) * b], s)) for c, d in enumerate(self.denoisers)])

    def __repr__(self) -> str:
        return f"ClassBlockDenoiser({len(self.denoisers)} classes x {self.block_size})"


def restart_node(s_grid: Any, window: GuidanceWindow) -> int:
    """Index of the grid node a guided run restarts from: the node just above ``s_high``.

    ``s_grid`` must contain ``window.s_high`` exactly once. Returns 0 when
    ``s_high`` is the first node (the run starts from the initial state).
    """
    grid = np.asarray(s_grid, dtype=np.float64)
    nodes = np.flatnonzero(grid == window.s_high)
    if nodes.size != 1:
        raise ValueError(f"s_grid must contain the window's upper edge s_high = {window.s_high!r} exactly once "
                         "(insert it with insert_noise_levels)")
    return max(int(nodes[0]) - 1, 0)


def guided_run_from_prefix(denoiser: Any, window: GuidanceWindow, s_grid: Any, prefix_states: Any,
                           method: str = "heun") -> np.ndarray:
    """Final samples of a guided run restarted from the recorded unguided trajectory.

    The run restarts at :func:`restart_node` (the node just above ``s_high``):
    every denoiser evaluation there and above is unguided, and the step from it to
    ``s_high`` is the first that uses ``D_w`` (in the Heun corrector). With
    ``prefix_states[node]`` the unguided run's state at ``s_grid[node]`` (the
    unguided run being the same integration with ``w = 0``, on the same batch),
    the result equals, bit for bit, the guided run started at ``s_grid[0]``.

    Args:
        denoiser: the guided denoiser, e.g. ``GuidedDenoiser(D_u, D_c, window)``.
        window: its guidance window (for the edge ``s_high``).
        s_grid: the common grid (contains ``s_high``).
        prefix_states: mapping or array, ``node index -> state (B, *shape)``.
        method: deterministic sampler.

    Returns:
        The final samples ``(B, *shape)``.
    """
    from diffcrit.numerics.samplers import sample

    grid = np.asarray(s_grid, dtype=np.float64)
    start = restart_node(grid, window)
    if start > 0 and window(float(grid[start])) != 0.0:  # pragma: no cover - excluded by construction
        raise RuntimeError("the restart node lies inside the window")
    return sample(denoiser, prefix_states[start], grid[start:], method=method, progress=False).samples


# ----------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------


def _percentile_interval(samples: np.ndarray, confidence: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Order-statistic percentile interval (``inverted_cdf``: no interpolation)."""
    lo = np.quantile(samples, round((1.0 - confidence) / 2.0, 12), axis=axis, method="inverted_cdf")
    hi = np.quantile(samples, round((1.0 + confidence) / 2.0, 12), axis=axis, method="inverted_cdf")
    return lo, hi


def bootstrap_alignments(hits: Any, member_indices: Any) -> np.ndarray:
    """Paired bootstrap replicates of every run's alignment.

    Args:
        hits: ``(n_runs, n_classes, n)`` booleans: sample ``i`` (initial noise ``i``)
            of class ``c`` in run ``k`` was assigned to class ``c``.
        member_indices: ``(R, n)`` resampled trajectory indices; replicate ``r``
            uses the same indices for every run and every class.

    Returns:
        ``(R, n_runs)`` alignments ``mean over c and i of hits[k, c, idx[r, i]]``.
    """
    hits = np.asarray(hits, dtype=np.float64)
    idx = np.asarray(member_indices)
    if hits.ndim != 3 or idx.ndim != 2:
        raise ValueError(f"hits must be (n_runs, n_classes, n) and member_indices (R, n), got {hits.shape}, "
                         f"{idx.shape}")
    n = hits.shape[2]
    counts = np.zeros((idx.shape[0], n))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    per_member = hits.sum(axis=1)  # (n_runs, n): hits summed over classes
    return counts @ per_member.T / (hits.shape[1] * idx.shape[1])


def permutation_p_value(at_target: float, random_alignments: Any) -> float:
    """``(1 + #{random >= at_target}) / (1 + n_random)``: the window at ``s*`` as one more random draw.

    Under the null hypothesis that ``s*`` is no better than a random centre, its
    alignment is exchangeable with the random windows' and this is a valid p-value
    (ties count against the claim).

    >>> permutation_p_value(0.8, [0.1, 0.9, 0.8, 0.3])
    0.6
    """
    values = np.asarray(random_alignments, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("random_alignments must hold at least one value")
    return float((1 + np.count_nonzero(values >= at_target)) / (1 + values.size))


def guidance_effect(hits: Any, target_run: int, random_runs: Sequence[int], member_indices: Any,
                    confidence: float = 0.95) -> dict:
    """Effect size of the window at ``s*`` against the random windows, with interval and p-value.

    Args:
        hits: ``(n_runs, n_classes, n)`` booleans (see :func:`bootstrap_alignments`).
        target_run: index of the window at ``s*``.
        random_runs: indices of the random windows.
        member_indices: ``(R, n)`` resampled trajectory indices (paired across runs).
        confidence: level of the percentile interval.

    Returns:
        ``value`` (alignment at ``s*`` minus the random windows' mean), ``interval``,
        ``at_target``, ``random_mean``, ``p_value``, ``n_random_at_least``,
        ``n_random``, ``replicates`` (``(R,)``).
    """
    hits = np.asarray(hits, dtype=bool)
    random_runs = np.asarray(list(random_runs), dtype=np.int64)
    alignment = hits.mean(axis=(1, 2))
    at_target = float(alignment[target_run])
    random_values = alignment[random_runs]
    replicates_all = bootstrap_alignments(hits, member_indices)
    replicates = replicates_all[:, target_run] - replicates_all[:, random_runs].mean(axis=1)
    lo, hi = _percentile_interval(replicates, confidence)
    return {
        "value": at_target - float(random_values.mean()),
        "interval": [float(lo), float(hi)],
        "confidence": confidence,
        "at_target": at_target,
        "random_mean": float(random_values.mean()),
        "p_value": permutation_p_value(at_target, random_values),
        "n_random_at_least": int(np.count_nonzero(random_values >= at_target)),
        "n_random": int(random_values.size),
        "replicates": replicates,
    }


def _sweep_maximum(centres: np.ndarray, alignment: np.ndarray, replicates: np.ndarray, s_star: float,
                   width: float, confidence: float) -> dict:
    """Where the sweep peaks (ties: the mean ``ln s`` of the tied centres), with a bootstrap interval."""
    log_c = np.log(centres)

    def peak(values: np.ndarray) -> np.ndarray:
        top = values == values.max(axis=-1, keepdims=True)
        return (top * log_c).sum(axis=-1) / top.sum(axis=-1)

    at = float(peak(alignment))
    lo, hi = _percentile_interval(peak(replicates), confidence)
    spacing = float(np.diff(log_c).mean()) if len(log_c) > 1 else float("nan")
    return {
        "s": math.exp(at),
        "alignment": float(alignment.max()),
        "n_tied": int(np.count_nonzero(alignment == alignment.max())),
        "interval": [math.exp(float(lo)), math.exp(float(hi))],
        "ln_ratio_to_s_star": at - math.log(s_star),
        "in_window_widths": (at - math.log(s_star)) / width,
        "in_sweep_spacings": (at - math.log(s_star)) / spacing,
        "s_star_inside_interval": bool(math.exp(float(lo)) <= s_star <= math.exp(float(hi))),
        "sweep_spacing_ln_s": spacing,
    }


# ----------------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------------


def _json_float(value: Any) -> Any:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class E3Result:
    """Outcome of :func:`run_e3` (noise levels are VE-equivalent ``s``).

    Runs are indexed ``k``: ``run_names[k]`` is ``"none"`` (no guidance),
    ``"everywhere"`` (constant ``w``), ``"s_star"`` (the window at ``s*``),
    ``"sweep_j"`` or ``"random_j"``; ``run_centres[k]`` is the window centre (NaN
    for the first two).

    Attributes:
        config: the run's parameters (data, model, weight, width, grid, seeds, ...).
        classifier: the classifier's description and held-out accuracy.
        prediction: the prediction that gave ``s*`` (kind, level, ``s_c``, ``t_c``,
            message), or ``None`` when ``s*`` was given.
        s_star: the centre of the target window.
        s_grid: the integration grid (every window edge a node; ends at 0).
        admissible: ``(low, high)`` range of window centres.
        classes: the targeted class labels.
        run_names, run_centres: see above.
        predicted_labels: ``(n_runs, n_classes, n_per_class)`` classifier labels.
        target_probability: the classifier's probability of the targeted class, same shape.
        alignment: ``(n_runs,)`` pooled class alignment.
        alignment_interval: ``(n_runs, 2)`` paired-bootstrap percentile intervals.
        effect: effect size, interval, permutation p-value (:func:`guidance_effect`).
        sweep_maximum: where the sweep peaks relative to ``s*``.
        samples: ``"none"`` ``(m, *shape)``; ``"s_star"`` and ``"everywhere"``
            ``(n_classes, m, *shape)``: a few final samples for the figures.
        timings: seconds and denoiser-call counts.
    """

    config: dict
    classifier: dict
    prediction: dict | None
    s_star: float
    s_grid: np.ndarray
    admissible: tuple
    classes: np.ndarray
    run_names: tuple
    run_centres: np.ndarray
    predicted_labels: np.ndarray
    target_probability: np.ndarray
    alignment: np.ndarray
    alignment_interval: np.ndarray
    effect: dict
    sweep_maximum: dict
    samples: dict
    timings: dict = field(default_factory=dict)

    # -- views ------------------------------------------------------------------------
    def run_index(self, name: str) -> int:
        """Index of the run called ``name``."""
        try:
            return self.run_names.index(name)
        except ValueError:
            raise KeyError(f"no run named {name!r}; runs: {list(self.run_names)}") from None

    def _kind_indices(self, prefix: str) -> np.ndarray:
        return np.array([k for k, name in enumerate(self.run_names) if name.startswith(prefix)], dtype=np.int64)

    @property
    def hits(self) -> np.ndarray:
        """``(n_runs, n_classes, n_per_class)``: sample assigned to its targeted class."""
        return self.predicted_labels == self.classes[None, :, None]

    @property
    def sweep_centres(self) -> np.ndarray:
        """Centres of the sweep windows (increasing)."""
        return self.run_centres[self._kind_indices("sweep_")]

    @property
    def sweep_alignment(self) -> np.ndarray:
        """Alignment of the sweep windows."""
        return self.alignment[self._kind_indices("sweep_")]

    @property
    def random_centres(self) -> np.ndarray:
        """Centres of the random windows (in drawing order)."""
        return self.run_centres[self._kind_indices("random_")]

    @property
    def random_alignment(self) -> np.ndarray:
        """Alignment of the random windows."""
        return self.alignment[self._kind_indices("random_")]

    def headline(self) -> dict:
        """Alignment without guidance, everywhere, at ``s*``, random mean; effect and p-value."""
        idx = {name: self.run_index(name) for name in ("none", "everywhere", "s_star")}
        return {
            "classifier_held_out_accuracy": self.classifier["held_out_accuracy"],
            "alignment_no_guidance": float(self.alignment[idx["none"]]),
            "alignment_everywhere": float(self.alignment[idx["everywhere"]]),
            "alignment_at_s_star": float(self.alignment[idx["s_star"]]),
            "alignment_random_mean": self.effect["random_mean"],
            "effect_size": self.effect["value"],
            "effect_interval": list(self.effect["interval"]),
            "p_value": self.effect["p_value"],
            "s_star": self.s_star,
            "sweep_maximum_s": self.sweep_maximum["s"],
        }

    def verdict(self) -> str:
        """One sentence: does guidance at ``s*`` beat random windows?"""
        e = self.effect
        lo, hi = e["interval"]
        what = f"effect {e['value']:+.3f} [{lo:+.3f}, {hi:+.3f}], permutation p = {e['p_value']:.3g}"
        alpha = 1.0 - self.config["confidence"]
        if lo > 0 and e["p_value"] <= alpha:
            return f"guidance at s* = {self.s_star:.3g} improves class alignment over random windows ({what})"
        if hi < 0:
            return f"guidance at s* = {self.s_star:.3g} is worse than random windows ({what})"
        return (f"no significant improvement of guidance at s* = {self.s_star:.3g} over random windows ({what}; "
                f"the smallest attainable p-value is {1 / (1 + e['n_random']):.3g})")

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        runs = []
        for k, name in enumerate(self.run_names):
            centre = self.run_centres[k]
            entry = {"name": name, "centre": _json_float(centre),
                     "alignment": float(self.alignment[k]),
                     "interval": [float(v) for v in self.alignment_interval[k]],
                     "mean_target_probability": float(self.target_probability[k].mean()),
                     "alignment_per_class": [float(v) for v in self.hits[k].mean(axis=1)]}
            if math.isfinite(centre):
                width = self.config["width_ln_s"]
                entry["s_high"] = centre * math.exp(0.5 * width)
                entry["s_low"] = centre * math.exp(-0.5 * width)
                entry["t_centre"] = _clock(self.config["schedule"], centre)
            runs.append(entry)
        effect = {k: v for k, v in self.effect.items() if k != "replicates"}
        return {
            "experiment": "E3",
            "config": dict(self.config),
            "classifier": dict(self.classifier),
            "prediction": None if self.prediction is None else dict(self.prediction),
            "s_star": self.s_star,
            "t_star": _clock(self.config["schedule"], self.s_star),
            "admissible_centres": list(self.admissible),
            "classes": [_label(c) for c in self.classes],
            "headline": self.headline(),
            "effect": effect,
            "sweep_maximum": dict(self.sweep_maximum),
            "verdict": self.verdict(),
            "runs": runs,
            "grid": {"n_nodes": int(len(self.s_grid)), "s_max": float(self.s_grid[0]),
                     "s_min": float(self.s_grid[-2]), "ends_at_zero": bool(self.s_grid[-1] == 0.0)},
            "timings": dict(self.timings),
        }

    def __repr__(self) -> str:
        c = self.config
        h = self.headline()
        lo, hi = h["effect_interval"]
        return (f"E3Result(data={c['data']!r}, model={c['model_description']}, w={c['weight']:g}, "
                f"Delta={c['width_ln_s']:g}, {len(self.classes)} classes x {c['n_per_class']}, "
                f"s*={self.s_star:.4g} ({c['s_star_source']}):\n"
                f"  classifier held-out accuracy {h['classifier_held_out_accuracy']:.4f}\n"
                f"  alignment: none {h['alignment_no_guidance']:.4f}, everywhere {h['alignment_everywhere']:.4f}, "
                f"at s* {h['alignment_at_s_star']:.4f}, random mean {h['alignment_random_mean']:.4f}\n"
                f"  effect {h['effect_size']:+.4f} [{lo:+.4f}, {hi:+.4f}], p = {h['p_value']:.3g}; "
                f"sweep maximum at s = {h['sweep_maximum_s']:.4g}\n)")


def _label(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else value.item() if hasattr(value, "item") else value


# ----------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------


def _check_real(name: str, value: Any, *, positive: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    return check_float(name, value, positive=positive)


def _load_labelled(data: Any) -> tuple[np.ndarray, np.ndarray, str]:
    from diffcrit.numerics.ensemble import load_images, resolve_dataset

    dataset, name = resolve_dataset(data)
    images, _ = load_images(dataset, what="E3")
    if dataset.labels is None:
        raise ValueError(f"E3 needs labelled data (a class-conditional model and a classifier); "
                         f"data {name!r} has no labels")
    return images, np.asarray(dataset.labels), name


def _check_classes(classes: Any, labels: np.ndarray) -> np.ndarray:
    present, counts = np.unique(labels, return_counts=True)
    if len(present) < 2:
        raise ValueError(f"E3 needs >= 2 classes in the data, got {present.tolist()}")
    if counts.min() < 2:
        raise ValueError(f"every class needs >= 2 images (classifier split), got counts "
                         f"{dict(zip(present.tolist(), counts.tolist()))}")
    if classes is None:
        return present
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be None or a sequence of class labels, got {classes!r}")
    chosen = list(classes)
    if not chosen:
        raise ValueError("classes must hold at least one class label (or be None for all)")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"classes must be distinct, got {chosen}")
    missing = [c for c in chosen if c not in set(present.tolist())]
    if missing:
        raise ValueError(f"classes {missing} are not in the data; classes present: {present.tolist()}")
    return np.asarray(chosen, dtype=labels.dtype)


# ----------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------


def _build_denoisers(model: str, images: np.ndarray, labels: np.ndarray, classes: np.ndarray,
                     window: int | None, mode: str, dtype: np.dtype) -> tuple[Any, list, dict]:
    if model == "memorizing":
        from diffcrit.numerics.denoisers import MemorizingDenoiser

        unconditional = MemorizingDenoiser(images, dtype=dtype)
        conditional = [MemorizingDenoiser(images[labels == c], dtype=dtype) for c in classes]
        return unconditional, conditional, {"family": "memorizing", "n_train": int(len(images))}
    from diffcrit.numerics.patch_denoiser import PatchDenoiser

    unconditional = PatchDenoiser(images, window, mode=mode, backend="numba", dtype=dtype)
    conditional = [PatchDenoiser(images, window, mode=mode, labels=labels, conditional_on=c, backend="numba",
                                 dtype=dtype) for c in classes]
    return unconditional, conditional, {"family": "patch", "window": window, "mode": mode,
                                        "n_distinct_patches": int(unconditional.n_distinct_patches)}


def _predict_s_c(images: np.ndarray, labels: np.ndarray, name: str, model: str, window: int | None, mode: str,
                 schedule: Any, level: str) -> dict:
    from diffcrit.data import Dataset
    from diffcrit.theory.predict import Memorizing, PatchModel, predict

    theory_model = Memorizing() if model == "memorizing" else PatchModel(window=window, mode=mode)
    p = predict(Dataset(images, labels=labels, name=name), theory_model, schedule, level=level)
    return {"kind": p.kind, "level": p.level, "requested_level": p.requested_level, "model": dict(p.model),
            "critical_noise": p.critical_noise, "critical_time": p.critical_time,
            "critical_mode": None if p.critical_mode is None else list(p.critical_mode),
            "min_stiffness": p.min_stiffness, "message": p.message}


def run_e3(
    data: Any = "digits",
    *,
    model: str = "patch",
    window: int | None = 5,
    mode: str = "local",
    weight: float = 2.0,
    width_ln_s: float = 1.0,
    n_per_class: int = 12,
    classes: Sequence | None = None,
    n_sweep: int = 12,
    n_random: int = 24,
    s_star: float | None = None,
    level: str = "homogeneous",
    schedule: Any = "vp-linear",
    n_levels: int = 40,
    s_max: float | None = None,
    s_min: float | None = None,
    method: str = "heun",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    dtype: Any = "float64",
    rng: Any = 0,
    progress: bool = True,
) -> E3Result:
    """Run experiment E3: a guidance pulse at ``s*`` against random and swept windows.

    See the module docstring for the protocol, the edge semantics and the statistics.

    Args:
        data: dataset spec (``"digits"``; standardized globally) or a labelled
            :class:`~diffcrit.data.Dataset`.
        model: ``"patch"`` or ``"memorizing"`` (same family for ``D_u`` and ``D_c``).
        window: odd window side of the patch model (ignored for ``"memorizing"`` and
            for ``mode="global"``).
        mode: patch-model mode: ``"local"`` (default: each pixel sees the patches
            at its own position), ``"equivariant"`` or ``"global"``.
        weight: guidance weight ``w`` inside the window (finite; ``0`` reproduces
            the unguided run, ``1`` the conditional model).
        width_ln_s: window width ``Delta`` in ``ln s`` (> 0).
        n_per_class: trajectories per class (>= 2), the same initial noise for
            every class and run. The cost is about ``n_classes x n_per_class x
            (n_sweep + n_random + 1)`` trajectories of average length; the default
            12 keeps digits with the local 5x5 patch model at a few minutes on 2 cores.
        classes: class labels to target (default: every class of the data).
        n_sweep: window centres of the sweep (>= 2), log-spaced over the admissible range.
        n_random: random window centres (>= 1; THEORY.md asks for >= 20), uniform in ``ln s``.
        s_star: centre of the target window; default the predicted ``s_c`` of the
            unconditional model at ``level``.
        level: theory level of the prediction (``"moment"``, ``"homogeneous"``,
            ``"marginal"``; see :func:`~diffcrit.theory.predict.predict`).
        schedule: schedule whose clock the times are reported in.
        n_levels: noise levels of the geometric base grid from ``s_max`` to
            ``s_min`` (>= 3); window edges are added, and a final step to ``s = 0``.
        s_max: start of every trajectory (default ``10 x`` the data std).
        s_min: last positive noise level (default ``0.05 x`` the data std).
        method: deterministic probability-flow sampler (``"heun"``, ``"euler"``, ``"ddim"``).
        n_bootstrap: paired bootstrap replicates (>= 20).
        confidence: level of every interval, in (0, 1).
        dtype: ``"float64"`` (default) or ``"float32"`` denoisers and trajectories.
        rng: int seed or numpy Generator (initial noise, random centres and the
            bootstrap draw independent streams from it).
        progress: show progress bars (stderr).

    Returns:
        :class:`E3Result`.

    Raises:
        ValueError, TypeError: bad input, before any sampling (an inadmissible
            predicted ``s_c`` is reported right after the prediction).
    """
    from tqdm.auto import tqdm

    from diffcrit.numerics.denoisers import GuidedDenoiser
    from diffcrit.numerics.samplers import geometric_s_grid, get_sampler, insert_noise_levels, sample
    from diffcrit.theory.predict import LEVELS, PATCH_MODES
    from diffcrit.theory.schedules import get_schedule

    # ---- validation, cheap ------------------------------------------------------------
    if model not in E3_MODELS:
        raise ValueError(f"model must be one of {E3_MODELS}, got {model!r}")
    if model == "patch":
        if mode not in PATCH_MODES:
            raise ValueError(f"mode must be one of {PATCH_MODES}, got {mode!r}")
        if mode == "global":
            window = None
        else:
            if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
                raise TypeError(f"window must be an odd integer side >= 1, got {window!r}")
            if window < 1 or window % 2 == 0:
                raise ValueError(f"window must be an odd integer side >= 1 (3, 5, 7, ...), got {window}")
            window = int(window)
    else:
        window, mode = None, None
    weight = _check_real("weight", weight)
    width = _check_real("width_ln_s", width_ln_s, positive=True)
    n_per_class = check_int("n_per_class", n_per_class, minimum=2)
    n_sweep = check_int("n_sweep", n_sweep, minimum=2)
    n_random = check_int("n_random", n_random, minimum=1)
    n_levels = check_int("n_levels", n_levels, minimum=3)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    s_star = _check_real("s_star", s_star, positive=True, allow_none=True)
    confidence = _check_real("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if str(dtype) not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dtype = np.dtype(str(dtype))
    stepper = get_sampler(method)
    if stepper.STOCHASTIC or stepper.name not in _DETERMINISTIC_METHODS:
        raise ValueError(f"method must be a deterministic probability-flow sampler {_DETERMINISTIC_METHODS} "
                         f"(the prefix cache replays the unguided run exactly), got {method!r}")
    sched = get_schedule(schedule)
    if isinstance(rng, np.random.Generator):
        root = np.random.SeedSequence(int(rng.integers(2**63)))
        seed = None
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)) and rng >= 0:
        root, seed = np.random.SeedSequence(int(rng)), int(rng)
    else:
        raise TypeError(f"rng must be an int seed >= 0 or a numpy Generator, got {rng!r}")

    images, labels, name = _load_labelled(data)
    classes = _check_classes(classes, labels)
    if model == "patch" and window is not None:
        from diffcrit.theory.windows import check_window_fits, square_window

        check_window_fits(square_window(window, images.ndim - 1), images.shape[1:])
    std = float(images.std())
    s_top = _check_real("s_max", s_max, positive=True, allow_none=True) or 10.0 * std
    s_bottom = _check_real("s_min", s_min, positive=True, allow_none=True) or 0.05 * std
    if not s_bottom < s_top:
        raise ValueError(f"need s_min < s_max, got s_min={s_bottom!r}, s_max={s_top!r}")
    if not width < math.log(s_top / s_bottom):
        raise ValueError(f"width_ln_s = {width} must be smaller than ln(s_max/s_min) = "
                         f"{math.log(s_top / s_bottom):.4g} (the window must fit inside [s_min, s_max] "
                         f"= [{s_bottom:.4g}, {s_top:.4g}] with room to move)")
    low_centre, high_centre = s_bottom * math.exp(0.5 * width), s_top * math.exp(-0.5 * width)

    def check_admissible(value: float, what: str) -> None:
        if not low_centre <= value <= high_centre:
            raise ValueError(
                f"{what} = {value:.6g} is not an admissible window centre: a window of width {width:g} in ln s "
                f"lies inside [s_min, s_max] = [{s_bottom:.4g}, {s_top:.4g}] only for centres in "
                f"[{low_centre:.6g}, {high_centre:.6g}]; change s_min/s_max or width_ln_s")

    if s_star is not None:
        check_admissible(s_star, "s_star")

    timings: dict = {}
    # ---- classifier and prediction --------------------------------------------------------
    t0 = time.perf_counter()
    classifier = train_alignment_classifier(images, labels)
    timings["classifier_seconds"] = round(time.perf_counter() - t0, 3)
    prediction = None
    if s_star is None:
        t0 = time.perf_counter()
        prediction = _predict_s_c(images, labels, name, model, window, mode, sched, level)
        timings["prediction_seconds"] = round(time.perf_counter() - t0, 3)
        if prediction["critical_noise"] is None:
            raise ValueError(f"the prediction has no critical noise ({prediction['message']}); pass s_star")
        s_star = float(prediction["critical_noise"])
        check_admissible(s_star, f"the predicted s_c ({prediction['kind']}, level {prediction['level']})")
    source = "given" if prediction is None else "prediction"

    # ---- windows and the grid ---------------------------------------------------------------
    noise_seed, centre_seed, boot_seed = root.spawn(3)
    sweep = np.exp(np.linspace(math.log(low_centre), math.log(high_centre), n_sweep))
    random_centres = np.exp(np.random.default_rng(centre_seed).uniform(math.log(low_centre),
                                                                        math.log(high_centre), n_random))
    run_names = (["none", "everywhere", "s_star"] + [f"sweep_{j}" for j in range(n_sweep)]
                 + [f"random_{j}" for j in range(n_random)])
    run_centres = np.concatenate([[np.nan, np.nan, s_star], sweep, random_centres])
    windows = [GuidanceWindow(weight, float(c), width) for c in run_centres[2:]]
    base = geometric_s_grid(s_top, s_bottom, n_levels - 1, final_zero=True)
    grid = insert_noise_levels(base, [e for w in windows for e in (w.s_high, w.s_low)])
    field_shape = images.shape[1:]

    # ---- denoisers and the unguided run -------------------------------------------------------
    unconditional, conditional, model_info = _build_denoisers(model, images, labels, classes, window, mode, dtype)
    n_runs, n_classes = len(run_names), len(classes)
    eps = np.random.default_rng(noise_seed).standard_normal((n_per_class,) + field_shape)
    # class-major batch: the same n_per_class initial states for every class
    init = np.tile((float(images.mean()) + float(grid[0]) * eps).astype(dtype), (n_classes,) + (1,) * len(field_shape))
    conditional_blocks = ClassBlockDenoiser(conditional, n_per_class)
    restart_nodes = sorted({restart_node(grid, win) for win in windows})
    t0 = time.perf_counter()
    unguided = sample(unconditional, init, grid, method=method, record="observed", observe_at=grid[restart_nodes],
                      progress=bool(progress), desc=f"E3 {name}: unguided")
    timings["unguided_seconds"] = round(time.perf_counter() - t0, 3)
    if not np.array_equal(unguided.s_grid, grid):  # pragma: no cover - the levels are nodes already
        raise RuntimeError("recording the unguided run changed its grid")
    prefix_states = {int(np.flatnonzero(grid == level)[0]): state
                     for level, state in zip(unguided.recorded_s, unguided.states)}
    if 0 not in prefix_states:
        prefix_states[0] = init

    predicted = np.empty((n_runs, n_classes, n_per_class), dtype=labels.dtype)
    probability = np.empty((n_runs, n_classes, n_per_class))
    n_show = min(_N_SHOWN, n_per_class)
    shown = {"none": np.asarray(unguided.samples[:n_show], dtype=np.float64)}

    def score(k: int, samples: np.ndarray) -> None:
        blocks = np.asarray(samples).reshape((n_classes, n_per_class) + field_shape)
        for ci in range(n_classes):
            predicted[k, ci] = classifier.predict(blocks[ci])
            probability[k, ci] = classifier.probability(blocks[ci], classes[ci])
        if run_names[k] in ("s_star", "everywhere"):
            shown[run_names[k]] = np.asarray(blocks[:, :n_show], dtype=np.float64)

    score(0, unguided.samples)  # no guidance: every class block holds the same samples
    t0 = time.perf_counter()
    bar = tqdm(total=n_runs - 1, disable=not progress, desc=f"E3 {name}: guided runs", unit="run", leave=False)
    try:
        everywhere = GuidedDenoiser(unconditional, conditional_blocks, weight)
        score(1, sample(everywhere, init, grid, method=method, progress=False).samples)
        bar.update(1)
        for j, win in enumerate(windows):
            guided = GuidedDenoiser(unconditional, conditional_blocks, win)
            score(2 + j, guided_run_from_prefix(guided, win, grid, prefix_states, method))
            bar.update(1)
    finally:
        bar.close()
    timings["guided_seconds"] = round(time.perf_counter() - t0, 3)

    # ---- statistics -------------------------------------------------------------------------
    hits = predicted == classes[None, :, None]
    member_indices = np.random.default_rng(boot_seed).integers(0, n_per_class, size=(n_bootstrap, n_per_class))
    replicates = bootstrap_alignments(hits, member_indices)
    lo, hi = _percentile_interval(replicates, confidence)
    random_runs = [k for k, nm in enumerate(run_names) if nm.startswith("random_")]
    sweep_runs = [k for k, nm in enumerate(run_names) if nm.startswith("sweep_")]
    effect = guidance_effect(hits, run_names.index("s_star"), random_runs, member_indices, confidence)
    alignment = hits.mean(axis=(1, 2))
    # descriptive: random windows overlapping the one at s* share part of its pulse
    disjoint = [k for k in random_runs if abs(math.log(run_centres[k] / s_star)) >= width]
    effect["disjoint_random"] = {
        "n": len(disjoint),
        "n_at_least": int(np.count_nonzero(alignment[disjoint] >= effect["at_target"])),
        "mean": float(alignment[disjoint].mean()) if disjoint else None,
        "note": "random windows that do not overlap the window at s* (|ln s - ln s*| >= width); descriptive only",
    }
    sweep_max = _sweep_maximum(sweep, alignment[sweep_runs], replicates[:, sweep_runs], s_star, width, confidence)

    log_steps = np.diff(np.log(grid[:-1]))
    config = {
        "data": name, "model": model, "model_description": _model_description(model, window, mode),
        "window": window, "mode": mode, "weight": weight, "width_ln_s": width, "n_per_class": n_per_class,
        "n_classes": n_classes, "n_sweep": n_sweep, "n_random": n_random, "s_star_source": source,
        "level": level, "schedule": sched.spec, "n_levels": n_levels, "s_max": float(grid[0]),
        "s_min": float(grid[-2]), "n_grid_nodes": int(len(grid)), "max_log_step": float(np.max(np.abs(log_steps))),
        "method": stepper.name, "n_bootstrap": n_bootstrap, "confidence": confidence, "dtype": dtype.name,
        "seed": seed, "data_std": std, "initial_state": "data mean + s_max * eps (same eps for every run)",
        "denoisers": model_info,
    }
    timings["total_seconds"] = round(sum(v for k, v in timings.items() if k.endswith("_seconds")), 3)
    return E3Result(
        config=config,
        classifier=classifier.to_dict(),
        prediction=prediction,
        s_star=float(s_star),
        s_grid=grid,
        admissible=(low_centre, high_centre),
        classes=classes,
        run_names=tuple(run_names),
        run_centres=run_centres,
        predicted_labels=predicted,
        target_probability=probability,
        alignment=alignment,
        alignment_interval=np.stack([lo, hi], axis=1),
        effect=effect,
        sweep_maximum=sweep_max,
        samples=shown,
        timings=timings,
    )


def _model_description(model: str, window: int | None, mode: str | None) -> str:
    if model == "memorizing":
        return "memorizing"
    if mode == "global":
        return "patch (global: memorizing)"
    return f"patch ({mode}, {window}x{window} window)"


# ----------------------------------------------------------------------------------
# figures (plots.py conventions: ax=None, return the axes, lazy matplotlib)
# ----------------------------------------------------------------------------------


def _axes(ax, figsize=(5.6, 3.8)):
    if ax is not None:
        return ax
    from diffcrit.validation.plots import _pyplot

    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def plot_e3_alignment(result: E3Result, ax=None):
    """Class alignment against the window centre ``s*``.

    The sweep as a line with its paired-bootstrap band, the random windows as
    points, the window at ``s*`` highlighted (with its interval), and horizontal
    lines for no guidance and guidance everywhere.
    """
    ax = _axes(ax)
    c = result.config
    sweep_runs = result._kind_indices("sweep_")
    band = result.alignment_interval[sweep_runs]
    ax.fill_between(result.sweep_centres, band[:, 0], band[:, 1], color="C0", alpha=0.22, lw=0)
    ax.plot(result.sweep_centres, result.sweep_alignment, "o-", ms=3, color="C0",
            label=f"sweep ({c['confidence']:.0%} band)")
    ax.plot(result.random_centres, result.random_alignment, "x", ms=5, color="C1",
            label=f"random windows (n={len(result.random_centres)})")
    k = result.run_index("s_star")
    lo, hi = result.alignment_interval[k]
    ax.errorbar([result.s_star], [result.alignment[k]], yerr=[[result.alignment[k] - lo], [hi - result.alignment[k]]],
                fmt="*", ms=11, color="C3", capsize=3,
                label=f"window at s* = {result.s_star:.3g} ({c['s_star_source']})")
    ax.axvline(result.s_star, color="C3", ls=":", lw=0.8)
    ax.axhline(result.alignment[result.run_index("none")], color="0.4", ls="--", lw=1, label="no guidance")
    ax.axhline(result.alignment[result.run_index("everywhere")], color="k", ls="-.", lw=1,
               label=f"guidance everywhere (w={c['weight']:g})")
    ax.set_xscale("log")
    ax.set_xlabel(r"window centre $s^*$ (width $\Delta$ = " + f"{c['width_ln_s']:g} in ln s)")
    ax.set_ylabel("class alignment")
    ax.set_title(f"E3 {c['data']}, {c['model_description']}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_e3_samples(result: E3Result, run: str = "s_star", ax=None):
    """Final samples per targeted class (rows) for ``run``, with the unguided samples on top.

    Args:
        run: ``"s_star"`` (the window at ``s*``) or ``"everywhere"``.
    """
    if run not in ("s_star", "everywhere"):
        raise ValueError(f"run must be 's_star' or 'everywhere', got {run!r}")
    rows = [result.samples["none"]] + list(result.samples[run])
    rows = [np.asarray(r).reshape((len(r), 1, -1)) if np.asarray(r).ndim == 2 else np.asarray(r) for r in rows]
    n_show, h, w = rows[0].shape
    canvas = np.full((len(rows) * (h + 1) - 1, n_show * (w + 1) - 1), np.nan)
    for i, row in enumerate(rows):
        for j in range(n_show):
            canvas[i * (h + 1): i * (h + 1) + h, j * (w + 1): j * (w + 1) + w] = row[j]
    ax = _axes(ax, figsize=(max(0.45 * n_show + 1.2, 3.4), 0.45 * len(rows) + 0.9))
    ax.imshow(canvas, cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([i * (h + 1) + (h - 1) / 2 for i in range(len(rows))],
                  ["w=0"] + [f"class {_label(c)}" for c in result.classes], fontsize=7)
    what = f"window at s* = {result.s_star:.3g}" if run == "s_star" else "guidance everywhere"
    ax.set_title(f"E3 samples, {what}\n(top row: the same initial noise, no guidance)", fontsize=7)
    return ax


# ----------------------------------------------------------------------------------
# run folder
# ----------------------------------------------------------------------------------


def _arrays(result: E3Result) -> dict:
    return {
        "s_grid": result.s_grid,
        "classes": np.asarray(result.classes),
        "run_names": np.asarray(result.run_names, dtype=str),
        "run_centres": result.run_centres,
        "predicted_labels": result.predicted_labels,
        "target_probability": result.target_probability,
        "hits": result.hits,
        "alignment": result.alignment,
        "alignment_interval": result.alignment_interval,
        "effect_replicates": result.effect["replicates"],
        "samples_none": result.samples["none"],
        "samples_s_star": result.samples["s_star"],
        "samples_everywhere": result.samples["everywhere"],
    }


def _figures(result: E3Result, save) -> None:
    c = result.config
    save(plot_e3_alignment(result), "e3_alignment",
         f"Class alignment against the window centre s* (width {c['width_ln_s']:g} in ln s, w = {c['weight']:g}): "
         f"sweep with its {c['confidence']:.0%} paired-bootstrap band, random windows, the window at s*, and the "
         "runs without guidance and with guidance everywhere.")
    save(plot_e3_samples(result, "s_star"), "e3_samples_s_star",
         "Final samples per targeted class with the guidance window at s* (top row: the same initial noise "
         "without guidance).")
    save(plot_e3_samples(result, "everywhere"), "e3_samples_everywhere",
         "Final samples per targeted class with guidance everywhere (top row: no guidance).")


def _document_e3(result: E3Result, document: Any) -> None:
    c = result.config
    h = result.headline()
    document.heading("E3: guidance pulse")
    pred = result.prediction
    where = (f"the predicted s_c = {result.s_star:.4g} ({pred['kind']}, {pred['level']} level)" if pred is not None
             else f"the given s* = {result.s_star:.4g}")
    t_star = _clock(c["schedule"], result.s_star)
    clock = f" (t = {t_star:.4g} in the clock of {c['schedule']})" if t_star is not None else ""
    document.paragraph(
        f"Model: {c['model_description']} on {c['data']}; conditional models from each class's images. Guidance "
        f"D_u + w (D_c - D_u) with w = {c['weight']:g} only inside a window of width {c['width_ln_s']:g} in ln s. "
        f"{c['n_per_class']} probability-flow trajectories ({c['method']}) per class for {c['n_classes']} classes, "
        f"the same initial noise for every run, from s = {c['s_max']:.3g} to {c['s_min']:.3g} and a final step to "
        f"s = 0, on one grid of {c['n_grid_nodes']} nodes containing every window edge. Target window at {where}"
        f"{clock}; {c['n_sweep']} swept and {c['n_random']} random centres in the admissible range "
        f"[{result.admissible[0]:.4g}, {result.admissible[1]:.4g}]. Class alignment is scored by an independent "
        f"classifier ({result.classifier['description']}; held-out accuracy "
        f"{result.classifier['held_out_accuracy']:.4f} on {result.classifier['n_test']} images).")
    lo, hi = h["effect_interval"]
    document.table([
        {"quantity": "alignment, no guidance", "value": h["alignment_no_guidance"]},
        {"quantity": "alignment, guidance everywhere", "value": h["alignment_everywhere"]},
        {"quantity": "alignment, window at s*", "value": h["alignment_at_s_star"]},
        {"quantity": "alignment, random windows (mean)", "value": h["alignment_random_mean"]},
        {"quantity": f"effect size (at s* - random mean), {c['confidence']:.0%} interval",
         "value": f"{h['effect_size']:+.4f} [{lo:+.4f}, {hi:+.4f}]"},
        {"quantity": "permutation p-value", "value": h["p_value"]},
        {"quantity": "sweep maximum at s", "value": h["sweep_maximum_s"]},
    ])
    sm = result.sweep_maximum
    document.bullets([
        result.verdict(),
        f"the sweep peaks at s = {sm['s']:.4g} (alignment {sm['alignment']:.4f}; {c['confidence']:.0%} bootstrap "
        f"range of the peak position [{sm['interval'][0]:.4g}, {sm['interval'][1]:.4g}]), "
        f"{sm['in_window_widths']:+.2f} window widths from s* in ln s; s* is "
        f"{'inside' if sm['s_star_inside_interval'] else 'outside'} that range.",
        "intervals resample trajectories (initial noises) jointly for all runs and classes; they are conditional on "
        "the drawn random windows, whose draw the permutation p-value accounts for. Random windows that overlap the "
        "one at s* share part of its pulse and compete with it in the p-value; "
        + _disjoint_text(result.effect),
        "at the window edges: the Heun step arriving at s_high and the step leaving s_low are half guided "
        f"(one of their two denoiser evaluations), so the pulse acts over the width plus half a grid step "
        f"(at most {0.5 * c['max_log_step']:.3g} in ln s) on each side; every run uses the same grid.",
    ])
    rows = []
    for entry in result.to_dict()["runs"]:
        rows.append({"run": entry["name"], "centre s*": entry.get("centre"), "s_high": entry.get("s_high"),
                     "s_low": entry.get("s_low"), f"t ({c['schedule']})": entry.get("t_centre"),
                     "alignment": entry["alignment"], "interval": entry["interval"],
                     "mean p(target)": entry["mean_target_probability"]})
    document.table(rows)


def _disjoint_text(effect: dict) -> str:
    d = effect.get("disjoint_random")
    if not d or not d["n"]:
        return "no random window is disjoint from it."
    return (f"of the {d['n']} random windows disjoint from it (mean alignment {d['mean']:.4f}), "
            f"{d['n_at_least']} reach its alignment (descriptive).")


def summary_e3(result: E3Result) -> dict:
    """The headline numbers, the effect, the sweep maximum, the verdict and the timings."""
    full = result.to_dict()
    return {key: full[key] for key in ("config", "classifier", "prediction", "s_star", "t_star", "headline",
                                       "effect", "sweep_maximum", "verdict", "timings")}


def write_e3(out: str | Path, result: E3Result) -> dict:
    """Write the E3 run folder ``out`` (staged, atomic): results.json, arrays.npz,
    figures/ (PNG and PDF), report.md and report.html.

    Returns:
        A JSON-able summary: the folder, its files and :func:`summary_e3`.
    """
    from diffcrit.validation.runio import write_run_folder

    if not isinstance(result, E3Result):
        raise TypeError(f"result must be an E3Result, got {type(result).__name__}")
    title = f"E3: guidance pulse, {result.config['data']}, {result.config['model_description']}"
    files = write_run_folder(out, title=title, results=result.to_dict(), arrays=_arrays(result),
                             document=lambda doc: _document_e3(result, doc),
                             figures=lambda save: _figures(result, save))
    return {"out": str(out), "files": files, **summary_e3(result)}
