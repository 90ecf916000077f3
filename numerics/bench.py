"""Benchmark of the patch denoiser's four implementations, and of this machine.

:func:`run_benchmark` runs, in one process:

1. *digits*: the equivariant patch model of sklearn's digits (standardized with one
   global mean and standard deviation, 5x5 window, every periodic patch: 1797 x 64 =
   115008 patches, not merged) on a 32x32 white-noise field ``y = s * eps`` at
   ``s = 1``: the Numba kernel, the numpy twin (on a subset of pixels, extrapolated),
   fast numpy and torch-CPU, their agreement, float32, the posterior moments (Jacobian
   rows) against the denoiser call, and exact pruning at low noise;
2. *binary texture*: a 3x3-window model of +-1 textures (sign of a smoothed Gaussian
   field), where merging identical patches pays;
3. *machine*: this CPU's attainable multiply-add and ``exp`` throughput (Numba, all
   threads), and the fraction of the resulting bound that the kernel reaches;
4. *Ginzburg–Landau*: site updates per second of the TDGL step, if
   :mod:`diffcrit.numerics.ginzburg_landau` provides ``gl_step_throughput``.

Throughput is in pixel-patch pairs per second (one pair: one log weight, ``K``
multiply-adds and one ``exp``). Timings are wall-clock (best and median of repeats);
CPU seconds and the load average are recorded too, because other processes may share
the cores (CPU-time throughput ~ what an idle machine would give).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from diffcrit.numerics.patch_denoiser import PatchDenoiser, prune_statistics, twin_denoise_sites

AGREEMENT_TOLERANCE = 1e-10  # float64 implementations of one algorithm (module doc of patch_denoiser)


def _timed(call: Callable[[], Any], repeats: int) -> tuple[Any, dict[str, Any]]:
    """Run ``call`` ``repeats`` times; wall and CPU seconds per call."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    stats = {
        "seconds_best": float(min(walls)),
        "seconds_median": float(np.median(walls)),
        "seconds_all": [float(w) for w in walls],
        "cpu_seconds_median": float(np.median(cpus)),
        "repeats": repeats,
    }
    return result, stats


def _throughput(stats: dict[str, Any], pairs: float, threads: int) -> dict[str, Any]:
    stats = dict(stats)
    stats["pairs_per_call"] = float(pairs)
    stats["pairs_per_second"] = float(pairs / stats["seconds_best"])
    # the CPU time of all threads together, spread over `threads` cores
    stats["pairs_per_second_from_cpu_time"] = float(pairs * threads / max(stats["cpu_seconds_median"], 1e-12))
    return stats


def machine_info() -> dict[str, Any]:
    """Thread counts, library versions, CPU model and the current load."""
    import numba

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": int(numba.get_num_threads()),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "cpu_model": platform.processor() or "unknown",
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = int(torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    return info


def standardized_digits() -> np.ndarray:
    """sklearn's digits images ``(1797, 8, 8)``, standardized with one global mean/std."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float64)
    return (images - images.mean()) / images.std()


def binary_textures(n_images: int, size: int, correlation_length: float, rng: Any) -> np.ndarray:
    """``sign`` of Gaussian white noise smoothed by a Gaussian of width ``correlation_length``."""
    rng = np.random.default_rng(rng)
    noise = rng.standard_normal((n_images, size, size))
    k = 2 * np.pi * np.fft.fftfreq(size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    smoothed = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-0.5 * correlation_length**2 * k2)).real
    return np.where(smoothed >= 0, 1.0, -1.0)


def _distance_form(model: PatchDenoiser, field: np.ndarray, s: float) -> str:
    """The form of the log weights the "auto" rule picks for this field and ``s``."""
    queries = model._queries(np.asarray(field, dtype=model.dtype)[None])[0]
    return "direct" if model._use_direct_form(queries, 1.0 / s**2) else "expanded"


def _max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# --------------------------------------------------------------------------------------
# (i) digits
# --------------------------------------------------------------------------------------


def _bench_digits(quick: bool, include_torch: bool, threads: int, rng: np.random.Generator) -> dict[str, Any]:
    images = standardized_digits()
    if quick:
        images = images[:40]
    canvas = (12, 12) if quick else (32, 32)
    s = 1.0
    repeats = 2 if quick else 5
    model = PatchDenoiser(images, 5, merge_duplicates=False, backend="numba")
    field = s * rng.standard_normal(canvas)
    n_pixels = field.size
    pairs = float(n_pixels) * model.n_distinct_patches
    out: dict[str, Any] = {
        "model": model.to_dict(),
        "canvas": list(canvas),
        "s": s,
        "pairs_per_call": pairs,
        "note": "pairs = pixels x patches; y = s * white noise",
    }
    model(field, s)  # compile / warm up
    reference, stats = _timed(lambda: model(field, s), repeats)
    out["numba"] = _throughput(stats, pairs, threads)
    out["numba"]["distance_form"] = _distance_form(model, field, s)

    n_sub = 4 if quick else 16
    sites = rng.choice(n_pixels, size=n_sub, replace=False)
    twin_values, stats = _timed(lambda: twin_denoise_sites(model, field, s, sites), 1)
    twin = _throughput(stats, float(n_sub) * model.n_distinct_patches, 1)
    twin["pixels_timed"] = n_sub
    twin["extrapolated_seconds_per_call"] = stats["seconds_best"] * n_pixels / n_sub
    twin["note"] = (f"timed on {n_sub} of {n_pixels} pixels; seconds per full call extrapolated "
                    "linearly (the twin is pixel by pixel)")
    twin["max_abs_difference_vs_numba"] = _max_abs_difference(twin_values, reference.ravel()[sites])
    out["numpy_twin"] = twin

    fast = model.with_backend("numpy-fast")
    fast_values, stats = _timed(lambda: fast(field, s), 1 if not quick else 2)
    out["numpy_fast"] = _throughput(stats, pairs, threads)
    out["numpy_fast"]["max_abs_difference_vs_numba"] = _max_abs_difference(fast_values, reference)

    if include_torch:
        try:
            torch_model = model.with_backend("torch")
        except ImportError as error:
            out["torch"] = {"available": False, "reason": str(error)}
        else:
            torch_model(field, s)  # warm up (thread pool, allocator)
            torch_values, stats = _timed(lambda: torch_model(field, s), 1 if not quick else 2)
            out["torch"] = _throughput(stats, pairs, threads)
            out["torch"]["available"] = True
            out["torch"]["max_abs_difference_vs_numba"] = _max_abs_difference(torch_values, reference)
    else:
        out["torch"] = {"available": False, "reason": "include_torch=False"}

    differences = [out["numpy_twin"]["max_abs_difference_vs_numba"], out["numpy_fast"]["max_abs_difference_vs_numba"]]
    if out["torch"].get("available"):
        differences.append(out["torch"]["max_abs_difference_vs_numba"])
    out["agreement"] = {"tolerance": AGREEMENT_TOLERANCE, "max_abs_difference": float(max(differences)),
                        "all_agree": bool(max(differences) <= AGREEMENT_TOLERANCE)}
    numba_rate = out["numba"]["pairs_per_second"]
    out["ratios"] = {
        "numba_over_numpy_fast": numba_rate / out["numpy_fast"]["pairs_per_second"],
        "numba_over_numpy_twin": numba_rate / out["numpy_twin"]["pairs_per_second"],
    }
    if out["torch"].get("available"):
        out["ratios"]["numba_over_torch"] = numba_rate / out["torch"]["pairs_per_second"]

    # posterior moments (the Jacobian rows): the same pairs, 3K multiply-adds and one exp each
    model.posterior_moments(field, s)
    moments, stats = _timed(lambda: model.posterior_moments(field, s), repeats)
    out["numba_moments"] = _throughput(stats, pairs, threads)
    out["numba_moments"]["seconds_over_denoiser_call"] = stats["seconds_best"] / out["numba"]["seconds_best"]
    out["numba_moments"]["mean_max_abs_difference_vs_numba"] = _max_abs_difference(moments.mean, reference)

    # float32
    model32 = PatchDenoiser(images, 5, merge_duplicates=False, dtype=np.float32, backend="numba")
    model32(field, s)
    values32, stats = _timed(lambda: model32(field, s), repeats)
    out["numba_float32"] = _throughput(stats, pairs, threads)
    out["numba_float32"]["distance_form"] = _distance_form(model32, field, s)
    out["numba_float32"]["max_abs_difference_vs_float64"] = _max_abs_difference(values32, reference)
    out["numba_float32"]["speedup_over_float64"] = out["numba_float32"]["pairs_per_second"] / numba_rate

    out["pruning"] = _bench_pruning(images, canvas, quick, threads, rng)
    return out


def _bench_pruning(images: np.ndarray, canvas: tuple[int, int], quick: bool, threads: int,
                   rng: np.random.Generator) -> dict[str, Any]:
    """Low noise, near the data: one training image repeated periodically over the canvas
    (so every window is a training patch, as in a low-noise sample) plus ``s`` noise."""
    s_low = 0.1
    margin = 40.0
    repeats = 2 if quick else 3
    image = images[rng.integers(len(images))]
    reps = (-(-canvas[0] // image.shape[0]), -(-canvas[1] // image.shape[1]))
    clean = np.tile(image, reps)[:canvas[0], :canvas[1]]
    field = clean + s_low * rng.standard_normal(canvas)
    full = PatchDenoiser(images, 5, merge_duplicates=False, backend="numba")
    pruned = PatchDenoiser(images, 5, merge_duplicates=False, backend="numba", prune_margin=margin)
    full(field, s_low)
    exact, stats_full = _timed(lambda: full(field, s_low), repeats)
    prune_statistics(pruned, field, s_low)
    (values, fraction), stats = _timed(lambda: prune_statistics(pruned, field, s_low), repeats)
    pairs = float(field.size) * full.n_distinct_patches
    bound = 2 * full.n_distinct_patches * np.exp(-margin) * full._max_abs_centre
    return {
        "s": s_low,
        "prune_margin": margin,
        "field": "one training digit repeated over the canvas + s * white noise",
        "distance_form": _distance_form(full, field, s_low),
        "unpruned": _throughput(stats_full, pairs, threads),
        "pruned": _throughput(stats, pairs, threads),
        "fraction_of_blocks_evaluated": float(np.mean(fraction)),
        "speedup": stats_full["seconds_best"] / stats["seconds_best"],
        "max_abs_error": _max_abs_difference(values, exact),
        "error_bound": float(bound),
        "note": "throughput counts every pixel-patch pair, evaluated or skipped",
        "by_noise": [_pruning_at(full, pruned, clean, s, repeats, rng) for s in _PRUNING_NOISE_LEVELS],
    }


#: Where pruning stops paying: the pruned kernel bounds and evaluates one pixel at a
#: time, the plain one tiles many pixels against each patch panel.
_PRUNING_NOISE_LEVELS = (0.03, 0.3, 1.5)


def _pruning_at(full: PatchDenoiser, pruned: PatchDenoiser, clean: np.ndarray, s: float, repeats: int,
                rng: np.random.Generator) -> dict[str, Any]:
    """Pruned against unpruned at one noise level on ``clean + s * noise``."""
    field = clean + s * rng.standard_normal(clean.shape)
    exact, stats_full = _timed(lambda: full(field, s), repeats)
    (values, fraction), stats = _timed(lambda: prune_statistics(pruned, field, s), repeats)
    return {"s": s, "fraction_of_blocks_evaluated": float(np.mean(fraction)),
            "speedup": stats_full["seconds_best"] / stats["seconds_best"],
            "max_abs_error": _max_abs_difference(values, exact)}


# --------------------------------------------------------------------------------------
# (ii) binary texture: merging duplicates
# --------------------------------------------------------------------------------------


def _bench_binary(quick: bool, threads: int, rng: np.random.Generator) -> dict[str, Any]:
    n_images, size = (16, 16) if quick else (256, 32)
    images = binary_textures(n_images, size, 2.0, rng)
    s = 1.0
    field = s * rng.standard_normal((size, size))
    repeats = 2 if quick else 3
    merged = PatchDenoiser(images, 3, merge_duplicates=True, backend="numba")
    unmerged = PatchDenoiser(images, 3, merge_duplicates=False, backend="numba")
    pairs = float(field.size) * unmerged.n_patches  # with multiplicity: the model's pairs
    merged(field, s)
    unmerged(field, s)
    values_merged, stats_merged = _timed(lambda: merged(field, s), repeats)
    values_unmerged, stats_unmerged = _timed(lambda: unmerged(field, s), repeats)
    return {
        "n_images": n_images,
        "lattice": [size, size],
        "window_size": 9,
        "s": s,
        "n_patches": unmerged.n_patches,
        "n_distinct_patches": merged.n_distinct_patches,
        "merged": _throughput(stats_merged, pairs, threads),
        "unmerged": _throughput(stats_unmerged, pairs, threads),
        "speedup": stats_unmerged["seconds_best"] / stats_merged["seconds_best"],
        "max_abs_difference": _max_abs_difference(values_merged, values_unmerged),
        "note": "throughput in pixel-patch pairs counted with multiplicity",
    }


# --------------------------------------------------------------------------------------
# (iii) this machine's attainable throughput
# --------------------------------------------------------------------------------------


def _calibrated_reps(call: Callable[[int], Any], target_seconds: float) -> int:
    """Repetitions for which ``call(reps)`` lasts about ``target_seconds``."""
    call(1)  # compile / warm up first: that time says nothing about the rate
    reps = 1
    while True:
        begin = time.perf_counter()
        call(reps)
        elapsed = time.perf_counter() - begin
        if elapsed >= target_seconds / 4 or reps >= 1 << 30:
            return max(1, int(reps * target_seconds / max(elapsed, 1e-9)))
        reps *= 4


def _bench_machine(quick: bool, threads: int) -> dict[str, Any]:
    from diffcrit.numerics._kernels import patch as kernels

    width = 256
    target = 0.02 if quick else 0.3  # seconds per timed probe: long enough to dwarf thread start-up
    out: dict[str, Any] = {"threads": threads}
    for dtype in (np.float64, np.float32):
        lanes = np.random.default_rng(0).uniform(0.4, 0.5, (threads, 8, width)).astype(dtype)
        reps = _calibrated_reps(lambda r: kernels.fma_probe(lanes, dtype(0.25), r), target)
        _, stats = _timed(lambda: kernels.fma_probe(lanes, dtype(0.25), reps), 3)
        if not np.all(np.isfinite(lanes)):
            raise RuntimeError("multiply-add probe diverged; its timing would be meaningless")
        fma_work = threads * 64 * width * reps
        arguments = -np.random.default_rng(1).uniform(0, 30, (threads, 4096)).astype(dtype)
        totals = np.empty(threads, dtype=dtype)
        reps = _calibrated_reps(lambda r: kernels.exp_probe(arguments, r, totals), target)
        _, stats_exp = _timed(lambda: kernels.exp_probe(arguments, reps, totals), 3)
        exp_work = threads * 4096 * reps
        out[np.dtype(dtype).name] = {
            "multiply_adds_per_second": float(fma_work / stats["seconds_best"]),
            "exps_per_second": float(exp_work / stats_exp["seconds_best"]),
            "multiply_adds_per_second_from_cpu_time": float(fma_work * threads / stats["cpu_seconds_median"]),
            "exps_per_second_from_cpu_time": float(exp_work * threads / stats_exp["cpu_seconds_median"]),
        }
    out["note"] = ("multiply-adds: independent chains held in registers; exp: the kernels' "
                   "vectorized polynomial exp, summed; both on all Numba threads. '_from_cpu_time': "
                   "work x threads / CPU seconds, i.e. the rate of an unloaded machine when other "
                   "processes share the cores")
    return out


def attainable_pairs_per_second(window_size: int, machine: dict[str, Any], dtype: str = "float64",
                                basis: str = "", multiply_adds_per_offset: int = 1) -> float:
    """Bound on pairs/s: ``K`` multiply-adds (times ``multiply_adds_per_offset``) plus one
    exp per pair, at the probed rates.

    ``basis=""`` uses the wall-clock rates, ``"_from_cpu_time"`` the CPU-time rates. The
    posterior moments do 3 multiply-adds per offset (log weight, mean, covariance).
    """
    rates = machine[dtype]
    multiply_adds = multiply_adds_per_offset * window_size
    return 1.0 / (multiply_adds / rates["multiply_adds_per_second" + basis] + 1.0 / rates["exps_per_second" + basis])


# --------------------------------------------------------------------------------------
# (iv) Ginzburg–Landau step
# --------------------------------------------------------------------------------------


def _bench_ginzburg_landau(quick: bool) -> dict[str, Any]:
    try:
        from diffcrit.numerics import ginzburg_landau
    except ImportError as error:
        return {"available": False, "reason": f"not available ({error})"}
    hook = getattr(ginzburg_landau, "gl_step_throughput", None)
    if hook is None:
        return {"available": False, "reason": "not available (no gl_step_throughput in ginzburg_landau)"}
    size, steps = (32, 20) if quick else (256, 200)
    rate = hook(size, steps, dim=2, implementation="numba")
    return {"available": True, "lattice": [size, size], "steps": steps,
            "site_updates_per_second": float(rate)}


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def run_benchmark(quick: bool = False, include_torch: bool = True, rng: Any = 0) -> dict[str, Any]:
    """Run the benchmark and return a JSON-serializable dictionary.

    Args:
        quick: small sizes (seconds), for tests; numbers are then not meaningful.
        include_torch: time the torch-CPU implementation (skipped, with the reason,
            when torch is absent).
        rng: seed or ``numpy.random.Generator`` for the fields and textures.

    Returns:
        ``{"machine_info", "digits", "binary_texture", "machine", "fraction_of_attainable",
        "ginzburg_landau", "quick"}``; see the module docstring.
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be a bool, got {quick!r}")
    if not isinstance(include_torch, (bool, np.bool_)):
        raise TypeError(f"include_torch must be a bool, got {include_torch!r}")
    rng = np.random.default_rng(rng)
    info = machine_info()
    threads = info["numba_threads"]
    started = time.perf_counter()
    results: dict[str, Any] = {"quick": bool(quick), "machine_info": info}
    results["machine"] = _bench_machine(quick, threads)
    results["digits"] = _bench_digits(quick, include_torch, threads, rng)
    results["binary_texture"] = _bench_binary(quick, threads, rng)
    digits = results["digits"]
    window = digits["model"]["window_size"]
    fraction: dict[str, Any] = {"note": "bound = 1 / (K / multiply-add rate + 1 / exp rate), rates from "
                                        "'machine' (3K multiply-adds for the posterior moments); wall-clock "
                                        "against wall-clock, CPU time against CPU time"}
    for dtype, entry in (("float64", "numba"), ("float32", "numba_float32")):
        for basis, rate in (("", "pairs_per_second"), ("_from_cpu_time", "pairs_per_second_from_cpu_time")):
            bound = attainable_pairs_per_second(window, results["machine"], dtype, basis)
            fraction[f"attainable_pairs_per_second_{dtype}{basis}"] = bound
            fraction[f"numba_{dtype}{basis}"] = digits[entry][rate] / bound
        if dtype == "float64":
            for basis, rate in (("", "pairs_per_second"), ("_from_cpu_time", "pairs_per_second_from_cpu_time")):
                bound = attainable_pairs_per_second(window, results["machine"], dtype, basis, 3)
                fraction[f"numba_moments_float64{basis}"] = digits["numba_moments"][rate] / bound
    results["fraction_of_attainable"] = fraction
    results["ginzburg_landau"] = _bench_ginzburg_landau(quick)
    results["machine_info"]["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["total_seconds"] = time.perf_counter() - started
    return results


def main() -> None:  # pragma: no cover - manual use: python -m diffcrit.numerics.bench
    import json
    import sys

    quick = "--quick" in sys.argv
    print(json.dumps(run_benchmark(quick=quick), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
