import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffcrit.numerics.jacobian_probes import fourier_jacobian_spectrum, representative_wavevector_indices  # noqa: E402
from diffcrit.numerics.local_jacobian import local_jacobian  # noqa: E402
from diffcrit.validation.cli import main  # noqa: E402
from diffcrit.validation.convnet import load_denoiser  # noqa: E402
from diffcrit.validation.e2 import E2Result, run_e2, write_e2  # noqa: E402
from diffcrit.validation.torch_denoiser import TorchDenoiser  # noqa: E402

TINY = dict(depth=2, channels=8, train_steps=30, n=16, size=8, n_jacobian=8, n_levels=6,
            levels=("moment", "homogeneous"), n_bootstrap=40, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    result = run_e2("digits", **TINY)
    out = tmp_path_factory.mktemp("e2") / "run"
    summary = write_e2(out, result)
    return result, out, summary


def test_e2_measures_the_network_along_its_trajectories(tiny_run):
    result, _, _ = tiny_run
    assert isinstance(result, E2Result)
    assert result.receptive_field == 1 + 2 * (3 - 1)  # depth 2 of 3x3 convolutions
    n_s, n_k = len(result.s), representative_wavevector_indices((8, 8)).shape[0]
    assert result.kappa_mean.shape == (n_s, n_k)
    assert result.kernel_mass.shape == (n_s, result.receptive_field**2)
    assert np.all(np.diff(result.s) < 0)
    # the network is local within its receptive field: one random JVP per member is
    # rebuilt from the probed rows to float32 rounding (~1e-7 per term, 25 terms)
    assert result.locality_residual.max() < 1e-4
    assert 1 <= result.effective_window.side <= result.receptive_field
    assert result.measured_kind in ("critical", "pseudo-critical")
    assert set(result.comparisons) == {result.receptive_field} | {result.effective_window.side}
    assert result.training is not None and result.training["steps"] == 30


def test_rows_of_the_trained_network_give_the_plane_wave_spectrum(tiny_run):
    # independent of the colouring: kappa_hat from two JVPs per wavevector
    result, _, _ = tiny_run
    module = result.module
    import copy

    model = TorchDenoiser(copy.deepcopy(module).double(), schedule="edm", parametrization="x0", conditioning="s",
                          field_shape=(8, 8), dtype="float64")
    states = np.random.default_rng(0).standard_normal((3, 8, 8))
    s = 0.7
    local = local_jacobian(None, states, s, result.receptive_field, jvp=model.jvp)
    probe = fourier_jacobian_spectrum(None, states, s, jvp=model.jvp)
    wavevectors = 2 * np.pi * probe.wavevector_indices / 8.0
    # both are exact sums of the same float64 Jacobian: rounding only
    np.testing.assert_allclose(local.kappa_hat(wavevectors), probe.kappa, rtol=0, atol=1e-10)
    assert local.locality_residual.max() < 1e-12
    # a window smaller than the receptive field misses entries: the residual says so
    narrow = local_jacobian(None, states, s, 3, jvp=model.jvp)
    assert narrow.locality_residual.min() > 1e-3


def test_run_folder_and_reloaded_network_reproduce_the_measurement(tiny_run):
    result, out, summary = tiny_run
    for name in ("results.json", "arrays.npz", "report.md", "report.html", "network.pt",
                 "figures/e2_gamma_min.png", "figures/e2_kernel.png", "figures/e2_training.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "E2"
    assert saved["network"]["receptive_field"] == result.receptive_field
    json.dumps(summary)
    reloaded = load_denoiser(out / "network.pt")
    again = run_e2("digits", net=str(out / "network.pt"), **{k: v for k, v in TINY.items()
                                                            if k not in ("depth", "channels", "train_steps")})
    assert again.training is None and reloaded.receptive_field == result.receptive_field
    # same weights, same seeds, one thread: the same numbers
    np.testing.assert_array_equal(again.stiffness.gamma_min.values, result.stiffness.gamma_min.values)
    np.testing.assert_array_equal(again.xi_2.values, result.xi_2.values)


def test_cli_probe_json(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["probe", "--data", "digits", "--depth", "2", "--channels", "4", "--train-steps", "5",
                 "--n", "8", "--size", "6", "--n-jacobian", "8", "--levels", "5", "--theory-levels", "moment",
                 "--bootstrap", "20", "--out", str(out), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "probe" and (out / "network.pt").is_file()
    assert not out.with_name(out.name + ".training-checkpoint.pt").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=8, n_jacobian=16), "n_jacobian must be <= n"),
    (dict(depth=5, size=8), "receptive field 11 exceeds the lattice side 8"),
    (dict(dtype="float16"), "dtype"),
    (dict(fraction=1.5), "fraction"),
    (dict(method="em"), "deterministic"),
    (dict(levels=("bogus",)), "levels"),
])
def test_bad_input(kwargs, match):
    base = dict(depth=2, channels=4, train_steps=1, n=8, size=8, n_jacobian=8, n_levels=5, progress=False)
    with pytest.raises((ValueError, TypeError), match=match):
        run_e2("digits", **{**base, **kwargs})


def test_a_ready_wrapped_network_is_probed_like_the_convnet(tiny_run):
    result, _, _ = tiny_run
    wrapped = TorchDenoiser(result.module, schedule="edm", parametrization="x0", conditioning="s",
                            field_shape=(8, 8), dtype="float32")
    kwargs = {k: v for k, v in TINY.items() if k not in ("depth", "channels", "train_steps")}
    given = run_e2("digits", net=wrapped, receptive_field=result.receptive_field, **kwargs)
    assert given.network["kind"] == "given" and given.training is None and given.module is None
    # the same network, wrapping, seeds and thread count: the same numbers
    np.testing.assert_array_equal(given.stiffness.gamma_min.values, result.stiffness.gamma_min.values)
    np.testing.assert_array_equal(given.kernel_mass, result.kernel_mass)
    with pytest.raises(ValueError, match="needs receptive_field"):
        run_e2("digits", net=wrapped, **kwargs)
    with pytest.raises(ValueError, match="field_shape"):
        run_e2("digits", net=wrapped, receptive_field=5, **{**kwargs, "size": 10})
    with pytest.raises(ValueError, match="only for a ready denoiser"):
        run_e2("digits", receptive_field=5, **TINY)


def test_report_section_adds_e2(tmp_path, monkeypatch):
    from diffcrit.data import load_dataset
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.validation import e2
    from diffcrit.validation.document import Document
    from diffcrit.validation.report import ReportContext

    monkeypatch.setattr(e2, "REPORT_E2_SCALE", {"depth": 2, "channels": 4, "train_steps": 5, "n": 8, "size": 8,
                                                "n_jacobian": 8, "n_levels": 5, "n_theory_samples": 2})
    ctx = ReportContext(dataset=load_dataset("digits"), window=3, schedule=get_schedule("vp-linear"),
                        folder=tmp_path, document=Document(title="t"))
    e2.section_e2(ctx)
    assert ctx.results["e2"]["reduced_scale"]["train_steps"] == 5
    text = ctx.document.to_markdown()
    assert "E2: a trained network" in text and "reduced scale" in text
    assert (tmp_path / "figures" / "e2_gamma_min.png").is_file()
    assert ctx.arrays["e2_kernel_mass"].shape == (5, 25)


def test_report_section_without_torch_says_so(tmp_path, monkeypatch):
    import importlib.util

    from diffcrit.data import load_dataset
    from diffcrit.theory.schedules import get_schedule
    from diffcrit.validation import e2
    from diffcrit.validation.document import Document
    from diffcrit.validation.report import ReportContext

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    ctx = ReportContext(dataset=load_dataset("digits"), window=3, schedule=get_schedule("vp-linear"),
                        folder=tmp_path, document=Document(title="t"))
    e2.section_e2(ctx)
    assert ctx.results["e2"] == {"skipped": "torch is not installed"}
    assert "pip install diffcrit[torch]" in ctx.document.to_markdown()
