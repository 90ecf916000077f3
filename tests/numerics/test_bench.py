"""The benchmark runs in quick mode and reports a complete, consistent structure.

Timings are not asserted (they depend on the machine and its load); agreement is.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffcrit.numerics import bench


@pytest.fixture(scope="module")
def quick_results():
    return bench.run_benchmark(quick=True)


def _positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_results_are_json_serializable(quick_results):
    assert json.loads(json.dumps(quick_results)) == quick_results
    assert quick_results["quick"] is True


def test_machine_info(quick_results):
    info = quick_results["machine_info"]
    assert info["numba_threads"] >= 1 and isinstance(info["numba"], str)
    assert isinstance(info["cpu_model"], str)


def test_digits_section_structure_and_agreement(quick_results):
    digits = quick_results["digits"]
    model = digits["model"]
    assert model["window_size"] == 25 and model["merge_duplicates"] is False
    # pairs = pixels x patches, the unit of every throughput
    assert digits["pairs_per_call"] == np.prod(digits["canvas"]) * model["n_distinct_patches"]
    for name in ("numba", "numpy_twin", "numpy_fast", "numba_float32"):
        entry = digits[name]
        assert _positive(entry["seconds_best"]) and _positive(entry["pairs_per_second"])
        assert len(entry["seconds_all"]) == entry["repeats"]
    assert digits["numpy_twin"]["pixels_timed"] < np.prod(digits["canvas"])
    assert "extrapolated" in digits["numpy_twin"]["note"]
    for name in ("numpy_twin", "numpy_fast"):
        # the float64 implementations of one algorithm (tolerance argued in patch_denoiser)
        assert digits[name]["max_abs_difference_vs_numba"] <= bench.AGREEMENT_TOLERANCE
    torch_entry = digits["torch"]
    if torch_entry["available"]:
        assert torch_entry["max_abs_difference_vs_numba"] <= bench.AGREEMENT_TOLERANCE
        assert _positive(digits["ratios"]["numba_over_torch"])
    else:
        assert torch_entry["reason"]
    assert digits["agreement"]["all_agree"] is True
    assert _positive(digits["ratios"]["numba_over_numpy_fast"])
    # float32 vs float64 at s = 1: well inside the float32 rounding bound of the tests (~1e-3)
    assert digits["numba_float32"]["max_abs_difference_vs_float64"] < 1e-3


def test_pruning_within_its_stated_bound(quick_results):
    pruning = quick_results["digits"]["pruning"]
    assert pruning["max_abs_error"] <= pruning["error_bound"] + bench.AGREEMENT_TOLERANCE
    assert 0 < pruning["fraction_of_blocks_evaluated"] <= 1
    assert _positive(pruning["pruned"]["pairs_per_second"])
    for row in pruning["by_noise"]:  # each level: within the same bound, fewer blocks at lower noise
        assert row["max_abs_error"] <= pruning["error_bound"] + bench.AGREEMENT_TOLERANCE
        assert 0 < row["fraction_of_blocks_evaluated"] <= 1 and _positive(row["speedup"])
    fractions = [row["fraction_of_blocks_evaluated"] for row in pruning["by_noise"]]
    assert fractions == sorted(fractions)  # noise levels ascending: pruning can only skip less


def test_binary_texture_merging(quick_results):
    binary = quick_results["binary_texture"]
    # a 3x3 window of +-1 values has at most 2^9 distinct patches
    assert binary["n_distinct_patches"] <= 512 < binary["n_patches"]
    assert binary["max_abs_difference"] <= bench.AGREEMENT_TOLERANCE
    assert _positive(binary["merged"]["pairs_per_second"]) and _positive(binary["speedup"])


def test_machine_probes_and_fraction(quick_results):
    machine = quick_results["machine"]
    for dtype in ("float64", "float32"):
        assert _positive(machine[dtype]["multiply_adds_per_second"])
        assert _positive(machine[dtype]["exps_per_second"])
    fraction = quick_results["fraction_of_attainable"]
    assert _positive(fraction["numba_float64"]) and _positive(fraction["attainable_pairs_per_second_float64"])


def test_ginzburg_landau_slot(quick_results):
    slot = quick_results["ginzburg_landau"]
    if slot["available"]:
        assert _positive(slot["site_updates_per_second"])
    else:
        assert "not available" in slot["reason"]


def test_attainable_bound_formula():
    # K multiply-adds and one exp per pair: 1 / (K/F + 1/E)
    machine = {"float64": {"multiply_adds_per_second": 1e9, "exps_per_second": 2e8}}
    assert bench.attainable_pairs_per_second(25, machine) == pytest.approx(1 / (25e-9 + 5e-9))


def test_binary_textures_are_plus_minus_one():
    textures = bench.binary_textures(3, 16, 2.0, rng=0)
    assert textures.shape == (3, 16, 16) and set(np.unique(textures)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(textures, bench.binary_textures(3, 16, 2.0, rng=0))


def test_bad_arguments():
    with pytest.raises(TypeError, match="quick"):
        bench.run_benchmark(quick="yes")
    with pytest.raises(TypeError, match="include_torch"):
        bench.run_benchmark(quick=True, include_torch=1)
