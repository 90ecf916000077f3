import json
import math

import numpy as np
import pytest

import diffcrit.validation.cli_simulate  # noqa: F401  (registers the subcommand)
from diffcrit.numerics.jacobian_probes import representative_wavevector_indices
from diffcrit.numerics.patch_denoiser import PatchDenoiser
from diffcrit.validation.cli import main
from diffcrit.validation.e1 import E1_THEORY_LEVELS, E1Result, run_e1
from diffcrit.validation.runio import dumps

TINY = "synthetic:binary?size=8&corr=1.5&n=32&seed=1"
TINY_RUN = dict(window=3, n=16, size=8, n_levels=8, progress=False, n_bootstrap=40, n_theory_samples=8)


@pytest.fixture(scope="module")
def tiny_result():
    return run_e1(TINY, rng=0, **TINY_RUN)


def test_run_structure(tiny_result):
    r = tiny_result
    assert isinstance(r, E1Result)
    n_s = TINY_RUN["n_levels"]
    assert r.s.shape == (n_s,) and np.all(np.diff(r.s) < 0)
    assert r.kappa_mean.shape == (n_s, len(representative_wavevector_indices((8, 8))))
    assert r.structure_factor.shape == (n_s, 8, 8)
    assert r.samples.shape[1:] == (8, 8)
    assert set(r.predictions) == set(E1_THEORY_LEVELS) == set(r.comparisons)
    assert set(r.estimates) == {"zero_crossing", "susceptibility_peak", "xi_J_peak", "xi_2_steepest_rise"}
    # stiffness is 1 - kappa of the member mean: consistent by construction of the curve
    np.testing.assert_allclose(r.stiffness.gamma_min.values, 1.0 - r.kappa_mean.max(axis=1), atol=1e-12)
    np.testing.assert_allclose(r.kappa_max.values, r.kappa_mean.max(axis=1), atol=1e-12)
    # at s_max >> data scale the Jacobian is ~ C/s^2: kappa small (|kappa| <= |W| (range/2)^2 / s^2)
    bound = 9 * 1.0 / r.s[0] ** 2  # binary +-1 data after standardization has range ~2
    assert np.max(np.abs(r.kappa_mean[0])) <= bound * 1.2  # 1.2: standardization rescales range slightly
    for level, comp in r.comparisons.items():
        pred = r.predictions[level]
        primary = r.estimates[comp.primary_estimator]
        if primary.interval is not None:
            assert comp.inside_primary_interval == (primary.interval[0] <= pred.s_c <= primary.interval[1])
        assert comp.kind_agrees == (pred.kind == r.measured_kind)
        assert comp.verdict.startswith(("agrees", "disagrees", "undecided"))
        if comp.inside_primary_interval is False:
            overlap = comp.theory_interval_overlaps_primary
            assert comp.verdict.startswith("agrees within" if overlap else "disagrees")
        if comp.predicted_s_c_interval is not None:
            low, high = comp.predicted_s_c_interval
            assert low <= pred.s_c <= high
    assert r.comparisons["moment"].predicted_s_c_interval is None  # exact level: no Monte Carlo error
    assert r.comparisons["marginal"].predicted_s_c_interval is not None
    sc = r.self_consistent
    assert sc["kappa_max"].shape == (n_s,) and sc["n_samples"] == 16
    # at s_max >> data scale J ~ C_W / s^2 whatever the state: the softening over the
    # model's own samples equals the measured one up to the O(range / s_max) tilt
    assert sc["kappa_max"][0] == pytest.approx(r.kappa_max.values[0], rel=0.1)
    approach = r.s >= r.min_gamma["s"]
    rms = np.sqrt(np.mean((sc["kappa_max"][approach] - r.kappa_max.values[approach]) ** 2))
    assert sc["rms_difference_from_measured"] == pytest.approx(rms, rel=1e-12)
    # one posterior-moments pass per observed level serves the sampler and the Jacobian
    assert r.timings["moment_calls"] == n_s
    # schedule clock: None outside the schedule's range, else a time in it
    assert len(r.t) == n_s
    assert all(t is None or math.isfinite(t) for t in r.t)
    text = dumps(r.to_dict())  # strict JSON, no NaN
    assert json.loads(text)["experiment"] == "E1"
    assert "E1Result(" in repr(r)


def test_run_e1_is_simulate_plus_theory():
    from diffcrit.numerics.ensemble import simulate

    ensemble = simulate(TINY, rng=0, **{k: v for k, v in TINY_RUN.items() if k != "n_theory_samples"})
    r = run_e1(TINY, rng=0, levels=("moment",), **TINY_RUN)
    np.testing.assert_array_equal(r.kappa_mean, ensemble.kappa_mean)
    np.testing.assert_array_equal(r.xi_2.replicates, ensemble.xi_2.replicates)
    assert r.to_dict()["measured"] == ensemble.to_dict()["measured"]


def test_reproducible_by_seed(tiny_result):
    again = run_e1(TINY, rng=0, **TINY_RUN)
    np.testing.assert_array_equal(again.kappa_mean, tiny_result.kappa_mean)
    np.testing.assert_array_equal(again.xi_2.replicates, tiny_result.xi_2.replicates)
    assert again.to_dict()["measured"] == tiny_result.to_dict()["measured"]
    other = run_e1(TINY, rng=1, **TINY_RUN)
    assert not np.array_equal(other.samples, tiny_result.samples)


def test_float32_run_tracks_the_float64_run(tiny_result):
    single = run_e1(TINY, rng=0, dtype="float32", **TINY_RUN)
    assert single.config["dtype"] == "float32" and single.model["dtype"] == "float32"
    # same seed and grid: the two runs differ by float32 rounding (~1e-7 relative per
    # step) carried along a flow that never becomes unstable here (pseudo-critical), so
    # kappa (O(1)) agrees to far better than 1e-4
    np.testing.assert_allclose(single.kappa_mean, tiny_result.kappa_mean, atol=1e-4)
    with pytest.raises(ValueError, match="dtype"):
        run_e1(TINY, dtype="float16", **TINY_RUN)


def test_bad_input_raises_before_work():
    with pytest.raises(ValueError, match="window"):
        run_e1(TINY, window=4, n=16, size=8)
    with pytest.raises(ValueError, match="n must be"):
        run_e1(TINY, window=3, n=4, size=8)
    with pytest.raises(ValueError, match="levels"):
        run_e1(TINY, window=3, n=16, size=8, levels=("nonsense",))
    with pytest.raises(ValueError, match="deterministic"):
        run_e1(TINY, window=3, n=16, size=8, method="euler_maruyama")


def test_cli_json_contract(tmp_path, capsys):
    out = tmp_path / "e1"
    argv = ["simulate", "--data", TINY, "--model", "patch", "--window", "3", "--schedule", "vp-linear",
            "--n", "16", "--size", "8", "--levels", "6", "--bootstrap", "40", "--seed", "0",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert result["command"] == "simulate" and result["out"] == str(out)
    assert set(result["comparisons"]) == set(E1_THEORY_LEVELS)
    for level, pred in result["predictions"].items():
        assert pred["kind"] in ("critical", "pseudo-critical") and pred["s_c"] > 0
    for name in ("susceptibility_peak", "xi_J_peak"):
        assert "interval" in result["measured"][name]
    for name in ("results.json", "arrays.npz", "report.md", "report.html",
                 "figures/e1_gamma_min.png", "figures/e1_gamma_min.pdf", "figures/e1_xi.png",
                 "figures/e1_kappa_max.png", "figures/e1_critical_noise.png", "figures/e1_samples.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["n"] == 16 and len(saved["s"]) == 6
    assert not (tmp_path / "e1.sampling-checkpoint.pkl").exists()  # removed once the folder is written
    with np.load(out / "arrays.npz") as arrays:  # the marginal level's Monte Carlo error travels with it
        assert arrays["theory_marginal_kappa_stderr"].shape == arrays["theory_marginal_kappa"].shape
        assert "theory_moment_kappa_stderr" not in arrays


@pytest.mark.parametrize("extra, message", [
    (["--model", "unet"], "--model"),
    (["--window", "4"], "--window"),
    (["--n", "4"], "--n"),
])
def test_cli_bad_input_exit_2(tmp_path, capsys, extra, message):
    argv = ["simulate", "--data", TINY, "--size", "8", "--n", "16", "--levels", "6",
            "--out", str(tmp_path / "x"), "--json"] + extra
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "error" in captured.err
    assert captured.out == ""
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_symmetric_binary_texture_stays_pseudo_critical_and_marginal_level_wins():
    """Physical check (THEORY.md 3.3): on a symmetric binary texture the moment and
    homogeneous levels predict an instability (kappa = 1 near s ~ 2.3), but an
    ensemble of probability-flow trajectories never reaches it: the noisy states
    tilt the patch weights, which the annealed (marginal) level accounts for. So the
    measured softening stays below the threshold and the marginal level's
    gamma_min(s) is closer to the measured curve than the moment level's.
    """
    r = run_e1("synthetic:binary?size=16&corr=1.5", window=3, n=48, size=16, n_levels=28,
               progress=False, n_bootstrap=200, rng=0)
    # the whole 95% bootstrap interval of min_s gamma_min lies above 0: never unstable
    assert r.measured_kind == "pseudo-critical"
    assert r.min_gamma["interval"][0] > 0.0
    assert r.predictions["moment"].kind == "critical"
    rms = {lv: c.gamma_min_rms_difference for lv, c in r.comparisons.items()}
    assert rms["marginal"] < rms["moment"]
    assert rms["marginal"] < rms["homogeneous"]


@pytest.mark.slow
def test_report_section_adds_e1(tmp_path, monkeypatch):
    from diffcrit.data import load_dataset
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.validation import e1
    from diffcrit.validation.document import Document
    from diffcrit.validation.report import ReportContext

    monkeypatch.setattr(e1, "REPORT_E1_SCALE", {"window": 3, "n": 8, "size": 8, "n_levels": 6, "s_min": 0.1})
    ctx = ReportContext(dataset=load_dataset(TINY), window=3, schedule=get_schedule("vp-linear"),
                        folder=tmp_path, document=Document(title="t"))
    e1.section_e1(ctx)
    assert ctx.results["e1"]["reduced_scale"]["n"] == 8
    assert "reduced scale" in ctx.document.to_markdown()
    assert (tmp_path / "figures" / "e1_gamma_min.png").is_file()
    assert "e1_gamma_min" in ctx.arrays and "e1_theory_marginal_kappa" in ctx.arrays


def test_an_interrupted_e1_resumes_from_its_checkpoint_bit_for_bit(tmp_path, monkeypatch):
    whole = run_e1(TINY, levels=("moment",), **TINY_RUN)
    path = tmp_path / "e1.ckpt"
    original = PatchDenoiser.__call__
    calls = [0]

    def dying(self, y, s):
        calls[0] += 1
        if calls[0] > 5:
            raise KeyboardInterrupt
        return original(self, y, s)

    monkeypatch.setattr(PatchDenoiser, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        run_e1(TINY, levels=("moment",), checkpoint=path, checkpoint_every=0.0, **TINY_RUN)
    monkeypatch.setattr(PatchDenoiser, "__call__", original)
    assert path.is_file()
    resumed = run_e1(TINY, levels=("moment",), checkpoint=path, checkpoint_every=0.0, **TINY_RUN)
    assert resumed.timings["resumed_from_step"] > 0
    # the first level after the resume takes its Jacobian rows from a fresh moments pass
    # of the same state: the same numbers
    np.testing.assert_array_equal(resumed.stiffness.gamma_min.values, whole.stiffness.gamma_min.values)
    np.testing.assert_array_equal(resumed.xi_2.values, whole.xi_2.values)
    np.testing.assert_array_equal(resumed.samples, whole.samples)
    # another window is another run: refused
    with pytest.raises(ValueError, match="another run"):
        run_e1(TINY, levels=("moment",), checkpoint=path, **{**TINY_RUN, "window": 5})
