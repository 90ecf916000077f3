"""Training loop of the E2 denoiser: the EDM loss, Adam, checkpoints that resume.

**Loss** (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", section 5, eq. 8 and table 1), in the VE-equivalent variables:

    ln s ~ N(p_mean, p_std^2),   y = x_0 + s n,   n ~ N(0, I),
    L = E[ lambda(s) |D(y; s) - x_0|^2 ],   lambda(s) = (s^2 + sd^2) / (s sd)^2,

with ``|.|^2`` the mean over pixels and ``sd`` the network's ``sigma_data``. The
weight is ``1/c_out^2``: the trivial denoiser ``D = c_skip y`` (``F = 0``) has
expected loss ``(s^2 m_2/sd^2 + sd^2)/(s^2 + sd^2)`` per level, ``m_2`` the
data's mean square, which is 1 at every ``s`` for standardized data and
``sd = 1``. Whatever a network explains brings it below that.

**Data.** ``images`` ``(n, H, W)`` (standardized, see :mod:`diffcrit.data`) are
split once into training and validation images by a fixed permutation that does
not depend on ``seed`` (runs with different seeds validate on the same images).
Training batches draw images with replacement; with ``augment="translations"``
each drawn image is rolled by a uniform random periodic shift (the data live on a
torus, and the network is translation-equivariant, so a roll is a free new
sample of the same law when the data are stationary).

**Validation loss** is comparable across runs: the same EDM-weighted loss on the
validation images at a fixed grid of noise levels (:data:`VALIDATION_NOISE_LEVELS`)
with fixed noise draws (a generator seeded with a constant, independent of
``seed``), averaged over the levels. It is evaluated before training, every
``validate_every`` steps and at the end; the trivial denoiser's value on the same
draws is reported next to it.

**Reproducibility.** Every random draw of training (batch indices, shifts,
``ln s``, noise, in this order per step) comes from one CPU ``torch.Generator``
seeded with ``seed``; the global torch RNG is not used. Two runs with the same
arguments, the same initial network, the same torch build, device and thread
count (``torch.set_num_threads``) give bit-for-bit the same weights and losses.

**Checkpoints.** With ``checkpoint=path`` the model, the optimizer, the step, the
generator state and the histories are written atomically (temporary file +
rename) every ``checkpoint_every`` steps and at the end. Calling again with the
same path and a matching configuration resumes from the saved step; the resumed
run is bit-for-bit the run that was never interrupted (at a fixed thread count).
A finished checkpoint returns its result at once.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from diffcrit._checks import check_choice, check_float, check_int
from diffcrit.validation.convnet import _import_torch, atomic_torch_save

__all__ = ["TrainingResult", "train_denoiser", "edm_loss_weight", "trivial_validation_loss",
           "VALIDATION_NOISE_LEVELS", "AUGMENTATIONS", "LR_SCHEDULES"]

#: Noise levels of the validation loss: the bulk of the EDM training distribution
#: (``ln s ~ N(-1.2, 1.2^2)`` puts 95% of its mass in ``[0.03, 3.2]``) plus the
#: region ``s ~ 2 - 5`` where the patch theory places the transition on digits.
VALIDATION_NOISE_LEVELS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
AUGMENTATIONS = ("translations", "none")
LR_SCHEDULES = ("constant", "cosine")

_SPLIT_SEED = 20220610  # fixed: the split does not depend on the training seed
_VALIDATION_SEED = 1729  # fixed: the validation noise does not depend on the training seed
_CHECKPOINT_FORMAT = "diffcrit.training-checkpoint"
_CHECKPOINT_VERSION = 1
_VALIDATION_CHUNK = 1024  # images per validation forward pass


def edm_loss_weight(s: Any, sigma_data: float = 1.0) -> Any:
    """``lambda(s) = (s^2 + sd^2) / (s sd)^2`` (works on floats, arrays and tensors).

    >>> edm_loss_weight(1.0, 1.0)
    2.0
    """
    return (s * s + sigma_data * sigma_data) / (s * sigma_data) ** 2


def trivial_validation_loss(s: float, mean_square: float, sigma_data: float = 1.0) -> float:
    """Expected EDM loss of ``D = c_skip y`` at level ``s`` for data of mean square ``mean_square``.

    ``lambda |(c_skip - 1) x_0 + c_skip s n|^2`` averaged over ``n`` gives
    ``(s^2 m_2 / sd^2 + sd^2) / (s^2 + sd^2)``.

    >>> trivial_validation_loss(0.3, 1.0, 1.0)
    1.0
    """
    sd2 = sigma_data * sigma_data
    return (s * s * mean_square / sd2 + sd2) / (s * s + sd2)


# ------------------------------------------------------------------------- result


@dataclass(frozen=True, repr=False, eq=False)
class TrainingResult:
    """What a training run did and how well the network denoises held-out images.

    Attributes:
        steps: optimizer steps done in total (including resumed ones).
        loss_history: training loss of every step, ``(steps,)``.
        validation_s: the noise levels of the validation loss.
        validation_steps: steps at which the validation loss was evaluated (0 first).
        validation_history: validation loss at those steps (mean over levels).
        validation_loss: final validation loss (mean over levels).
        validation_loss_per_s: final validation loss at each level.
        validation_loss_initial: validation loss of the network before training.
        validation_loss_trivial: the trivial denoiser ``D = c_skip y`` on the same draws.
        validation_loss_trivial_per_s: the same, per level.
        n_train: training images.
        n_validation: validation images.
        validation_indices: indices (into ``images``) of the validation images.
        resumed_from: step the run resumed from (0: fresh start).
        wall_time_s: seconds spent in this call.
        total_train_time_s: seconds spent training over all calls of this run.
        config: training and network configuration, thread count, torch version.
    """

    steps: int
    loss_history: np.ndarray
    validation_s: np.ndarray
    validation_steps: np.ndarray
    validation_history: np.ndarray
    validation_loss: float
    validation_loss_per_s: np.ndarray
    validation_loss_initial: float
    validation_loss_trivial: float
    validation_loss_trivial_per_s: np.ndarray
    n_train: int
    n_validation: int
    validation_indices: np.ndarray
    resumed_from: int
    wall_time_s: float
    total_train_time_s: float
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)  # frozen means the arrays too

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for arrays)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        out["config"] = dict(self.config)
        return out

    def __repr__(self) -> str:
        final = self.loss_history[-1] if len(self.loss_history) else float("nan")
        resumed = f", resumed from {self.resumed_from}" if self.resumed_from else ""
        return (f"TrainingResult(steps={self.steps}{resumed}, final train loss={final:.4g}, "
                f"validation loss={self.validation_loss:.4g} (initial {self.validation_loss_initial:.4g}, "
                f"trivial D=c_skip y {self.validation_loss_trivial:.4g}), "
                f"n_train={self.n_train}, n_validation={self.n_validation}, wall {self.wall_time_s:.1f} s)")


# ------------------------------------------------------------------------- checks


def _check_images(images: Any) -> np.ndarray:
    images = getattr(images, "images", images)  # a diffcrit Dataset works too
    if isinstance(images, (str, bytes)) or not hasattr(images, "__array__") and not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be an array (n, H, W), got {type(images).__name__}")
    array = np.asarray(images)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"images must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (n, 1, H, W) (one channel, 2-D lattice), "
                         f"got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1 or array.shape[2] < 1:
        raise ValueError(f"images must hold at least 2 non-empty images, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"images must be finite, got {bad} non-finite values")
    return array


def _check_net(net: Any, torch) -> None:
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module D(y, s) -> x0 estimate, got {type(net).__name__}")
    sd = getattr(net, "sigma_data", None)
    if sd is None or isinstance(sd, bool) or not isinstance(sd, numbers.Real) or not sd > 0:
        raise TypeError(f"net must have a positive sigma_data attribute (the EDM data scale), got {sd!r}")
    if not any(True for _ in net.parameters()):
        raise ValueError("net has no parameters to train")


def _split(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(1, int(round(val_fraction * n)))
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training image out of {n}")
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _fingerprint(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------- pieces


def _edm_loss(net, x0, s, noise, sigma_data: float):
    """Per-image EDM-weighted loss ``lambda(s) mean_pixels (D(x0 + s n; s) - x0)^2`` ``(B,)``."""
    y = x0 + s.view(-1, 1, 1, 1) * noise
    err = net(y, s) - x0
    return edm_loss_weight(s, sigma_data) * (err * err).mean(dim=(1, 2, 3))


def _validation_noise(index: int, shape: tuple[int, ...], torch):
    """The fixed standard-normal draws of validation level ``index`` (float64, CPU)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(_VALIDATION_SEED + index)
    # float64 draws: a float32 and a float64 network see the same noise (rounded)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _validation_losses(net, val_images, levels: np.ndarray, sigma_data: float, torch) -> np.ndarray:
    """Per-level EDM validation loss of ``net`` on the fixed draws (mean over images)."""
    losses = []
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for index, s_value in enumerate(levels):
                noise_all = _validation_noise(index, tuple(val_images.shape), torch)
                total = 0.0
                for lo in range(0, val_images.shape[0], _VALIDATION_CHUNK):
                    x0 = val_images[lo:lo + _VALIDATION_CHUNK]
                    noise = noise_all[lo:lo + _VALIDATION_CHUNK].to(device=x0.device, dtype=x0.dtype)
                    s = torch.full((x0.shape[0],), float(s_value), dtype=x0.dtype, device=x0.device)
                    total += float(_edm_loss(net, x0, s, noise, sigma_data).double().sum())
                losses.append(total / val_images.shape[0])
    finally:
        net.train(was_training)
    out = np.asarray(losses)
    if not np.all(np.isfinite(out)):
        bad = [float(s) for s, v in zip(levels, out) if not math.isfinite(v)]
        raise FloatingPointError(f"validation loss is not finite at noise levels s={bad}")
    return out


def _trivial_validation_losses(val_images: np.ndarray, levels: np.ndarray, sigma_data: float, torch) -> np.ndarray:
    """Per-level EDM loss of ``D = c_skip y`` (``F = 0``) on the same draws, in float64."""
    x0 = torch.from_numpy(val_images)[:, None]
    out = []
    for index, s_value in enumerate(levels):
        y = x0 + float(s_value) * _validation_noise(index, tuple(x0.shape), torch)
        c_skip = sigma_data**2 / (s_value**2 + sigma_data**2)
        err = c_skip * y - x0
        out.append(float(edm_loss_weight(float(s_value), sigma_data) * (err * err).mean()))
    return np.asarray(out)


def _learning_rate(lr: float, schedule: str, step: int, steps: int) -> float:
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / steps))  # cosine from lr (step 0) to 0


def _roll_batch(x0, shift_h, shift_w, torch):
    """``out[b] = roll(x0[b], (shift_h[b], shift_w[b]))`` for a batch ``(B, 1, H, W)``."""
    batch, _, height, width = x0.shape
    rows = (torch.arange(height, device=x0.device)[None, :] - shift_h[:, None]) % height
    cols = (torch.arange(width, device=x0.device)[None, :] - shift_w[:, None]) % width
    b = torch.arange(batch, device=x0.device)[:, None, None]
    return x0[:, 0][b, rows[:, :, None], cols[:, None, :]][:, None]


def _describe_mismatch(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """``"key: checkpoint has A, this call has B"`` for each differing entry (nested dicts by dotted key)."""
    lines = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            lines.extend(_describe_mismatch(old, new, f"{prefix}{key}."))
        elif old != new:
            lines.append(f"{prefix}{key}: checkpoint has {old!r}, this call has {new!r}")
    return lines


# ------------------------------------------------------------------------- entry point


def train_denoiser(
    net: Any,
    images: Any,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    seed: int = 0,
    augment: str = "translations",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    progress: bool = True,
    val_fraction: float = 0.1,
    lr_schedule: str = "constant",
    grad_clip: float | None = 1.0,
    validate_every: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
) -> TrainingResult:
    """Train ``net`` in place on ``images`` with the EDM loss (module docstring).

    Args:
        net: a ``torch.nn.Module`` ``D(y, s)`` returning the ``x_0`` estimate for
            ``y`` ``(B, 1, H, W)`` and ``s`` ``(B,)``, with a ``sigma_data``
            attribute (e.g. :func:`~diffcrit.validation.convnet.make_periodic_conv_denoiser`).
            Trained in place, on its own device and dtype; left in eval mode.
        images: ``(n, H, W)`` or ``(n, 1, H, W)`` finite array, or a
            :class:`~diffcrit.data.Dataset` (its ``images``).
        steps: total optimizer steps of the run (>= 1).
        batch_size: images per step (drawn with replacement).
        lr: Adam learning rate (> 0).
        p_mean, p_std: ``ln s ~ N(p_mean, p_std^2)`` (EDM's defaults).
        seed: seed of the training generator (>= 0).
        augment: ``"translations"`` (random periodic rolls) or ``"none"``.
        checkpoint: file to checkpoint to and resume from; ``None``: no checkpoints.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        progress: show a tqdm progress bar (on stderr).
        val_fraction: fraction of the images held out for validation, in (0, 1).
        lr_schedule: ``"constant"`` or ``"cosine"`` (from ``lr`` to 0 over ``steps``).
        grad_clip: maximum global gradient norm (``None``: no clipping).
        validate_every: steps between validation losses (default ``checkpoint_every``).
        callback: called as ``callback(step, loss)`` after each step (after its
            checkpoint, if any); an exception it raises stops the run.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ValueError, TypeError: bad arguments, or a checkpoint written with a
            different configuration (the message lists the differences).
        FloatingPointError: a non-finite loss (the message names the step and the
            batch's noise levels).
    """
    torch = _import_torch()
    _check_net(net, torch)
    data = _check_images(images)
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_float("lr", lr, positive=True)
    p_mean = check_float("p_mean", p_mean)
    p_std = check_float("p_std", p_std, positive=True)
    seed = check_int("seed", seed, minimum=0)
    augment = check_choice("augment", augment, AUGMENTATIONS)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be None, a str or os.PathLike, got {checkpoint!r}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    val_fraction = check_float("val_fraction", val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    lr_schedule = check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if grad_clip is not None:
        grad_clip = check_float("grad_clip", grad_clip, positive=True)
    validate_every = checkpoint_every if validate_every is None else check_int("validate_every", validate_every, minimum=1)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    train_idx, val_idx = _split(data.shape[0], val_fraction)
    parameter = next(net.parameters())
    device, dtype = parameter.device, parameter.dtype
    pad = max((p for m in net.modules() if isinstance(m, torch.nn.Conv2d) and isinstance(m.padding, tuple)
               for p in m.padding), default=0)
    if min(data.shape[1:]) < pad:
        raise ValueError(f"images of shape {data.shape[1:]} are smaller than the network's circular padding {pad}")

    sigma_data = float(net.sigma_data)
    levels = np.asarray(VALIDATION_NOISE_LEVELS, dtype=np.float64)
    net_config = dict(getattr(net, "config", {"class": type(net).__name__}))
    run_config = {
        "steps": steps, "batch_size": batch_size, "lr": lr, "p_mean": p_mean, "p_std": p_std, "seed": seed,
        "augment": augment, "val_fraction": val_fraction, "lr_schedule": lr_schedule, "grad_clip": grad_clip,
        "validate_every": validate_every, "validation_s": levels.tolist(), "sigma_data": sigma_data,
        "dtype": str(dtype).removeprefix("torch."), "n_images": int(data.shape[0]),
        "lattice": list(data.shape[1:]), "data_sha256": _fingerprint(data),
        "net": net_config,
    }

    train_images = torch.from_numpy(data[train_idx]).to(device=device, dtype=dtype)[:, None]
    val_images = torch.from_numpy(data[val_idx]).to(device=device, dtype=dtype)[:, None]
    n_train = train_images.shape[0]
    height, width = data.shape[1:]
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)

    start = 0
    losses: list[float] = []
    val_steps: list[int] = []
    val_history: list[list[float]] = []
    train_time = 0.0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {str(path)!r} exists but is not a training checkpoint")
        if saved.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {str(path)!r} has version {saved.get('version')!r}; "
                             f"this version reads {_CHECKPOINT_VERSION}")
        diffs = _describe_mismatch(saved["config"], run_config)
        if diffs:
            raise ValueError(f"checkpoint {str(path)!r} was written with a different configuration; "
                             + "; ".join(diffs) + ". Use another checkpoint path or delete this file.")
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        start = int(saved["step"])
        losses = [float(v) for v in saved["loss_history"].tolist()]
        val_steps = [int(v) for v in saved["validation_steps"]]
        val_history = [[float(x) for x in row] for row in saved["validation_history"]]
        train_time = float(saved["train_time_s"])

    def save(step: int) -> None:
        atomic_torch_save({
            "format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "config": run_config, "step": step,
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
            "loss_history": torch.tensor(losses, dtype=torch.float64),
            "validation_steps": list(val_steps), "validation_history": [list(r) for r in val_history],
            "train_time_s": train_time,
        }, path)

    began = time.perf_counter()
    if not val_steps:
        val_steps.append(0)
        val_history.append(_validation_losses(net, val_images, levels, sigma_data, torch).tolist())

    net.train()
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", unit="step", leave=False)
    try:
        for step in range(start, steps):
            tick = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(lr, lr_schedule, step, steps)
            # All draws on the CPU generator, in a fixed order: the run does not
            # depend on the global RNG, and the device only receives the numbers.
            idx = torch.randint(n_train, (batch_size,), generator=gen)
            if augment == "translations":
                shift_h = torch.randint(height, (batch_size,), generator=gen)
                shift_w = torch.randint(width, (batch_size,), generator=gen)
            ln_s = torch.randn(batch_size, generator=gen, dtype=torch.float64) * p_std + p_mean
            noise = torch.randn((batch_size, 1, height, width), generator=gen, dtype=dtype)
            x0 = train_images[idx.to(device)]
            if augment == "translations":
                x0 = _roll_batch(x0, shift_h.to(device), shift_w.to(device), torch)
            s = torch.exp(ln_s).to(device=device, dtype=dtype)
            loss = _edm_loss(net, x0, s, noise.to(device), sigma_data).mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"training loss is {value} at step {step + 1} of {steps} "
                    f"(batch noise levels s in [{float(s.min()):.4g}, {float(s.max()):.4g}], lr {group['lr']:.3g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            losses.append(value)
            done = step + 1
            if done % validate_every == 0 or done == steps:
                val_steps.append(done)
                val_history.append(_validation_losses(net, val_images, levels, sigma_data, torch).tolist())
            train_time += time.perf_counter() - tick
            if path is not None and (done % checkpoint_every == 0 or done == steps):
                save(done)
            bar.update(1)
            if done % 10 == 0 or done == steps:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if callback is not None:
                callback(done, value)
    finally:
        bar.close()
    net.eval()
    trivial = _trivial_validation_losses(data[val_idx], levels, sigma_data, torch)
    history = np.asarray(val_history, dtype=np.float64)
    return TrainingResult(
        steps=len(losses),
        loss_history=np.asarray(losses, dtype=np.float64),
        validation_s=levels,
        validation_steps=np.asarray(val_steps, dtype=np.int64),
        validation_history=history.mean(axis=1),
        validation_loss=float(history[-1].mean()),
        validation_loss_per_s=history[-1].copy(),
        validation_loss_initial=float(history[0].mean()),
        validation_loss_trivial=float(np.mean(trivial)),
        validation_loss_trivial_per_s=trivial,
        n_train=int(n_train),
        n_validation=int(val_images.shape[0]),
        validation_indices=val_idx.copy(),
        resumed_from=start,
        wall_time_s=time.perf_counter() - began,
        total_train_time_s=train_time,
        config={**run_config, "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
                "device": str(device)},
    )
