"""The ``diffcrit predict`` subcommand: JSON contract, every model and clock, bad input."""

import json
import math

import numpy as np
import pytest

import diffcrit.validation.cli_predict  # noqa: F401  registers the subcommand
from diffcrit.theory.schedules import get_schedule, list_schedules
from diffcrit.validation.cli import main

DIGITS = "digits?n=150"
GRID = ["--s-min", "0.3", "--s-max", "6", "--n-s", "16"]


def run_json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout


def test_json_contract(capsys):
    out = run_json(capsys, ["predict", "--data", DIGITS, "--model", "patch", "--window", "3",
                            "--schedule", "vp-linear", "--level", "moment", *GRID, "--json"])
    for key in ("kind", "level", "critical_noise", "critical_time", "critical_mode", "min_stiffness",
                "schedule", "model"):
        assert key in out
    assert out["command"] == "predict" and out["kind"] == "critical" and out["level"] == "moment"
    assert isinstance(out["critical_mode"], list) and len(out["critical_mode"]) == 2
    assert all(isinstance(v, int) for v in out["critical_mode"])
    assert out["model"] == {"name": "patch", "window": 3, "mode": "equivariant", "conditional_on": None}
    schedule = get_schedule(out["schedule"]["spec"])
    assert out["critical_time"] == pytest.approx(float(schedule.t_of_s(out["critical_noise"])), rel=1e-14)
    assert len(out["curves"]["s"]) == 16 and "arrays" not in out
    assert out["curves"]["s"][0] == pytest.approx(6.0, rel=1e-14)


def test_arrays_and_size(capsys):
    out = run_json(capsys, ["predict", "--data", DIGITS, "--level", "moment", "--size", "12", *GRID,
                            "--arrays", "--json"])
    assert np.asarray(out["arrays"]["kappa"]).shape == (16, 12, 12)
    assert out["lattice"] == [12, 12]


@pytest.mark.parametrize("argv", [
    ["--model", "gaussian"],
    ["--model", "memorizing", "--level", "moment"],
    ["--model", "patch", "--mode", "global", "--level", "moment"],
    ["--model", "patch", "--mode", "local", "--window", "3", "--level", "moment"],
    ["--model", "patch", "--window", "3", "--level", "homogeneous"],
    ["--model", "patch", "--window", "3", "--level", "marginal", "--samples", "3", "--pixels", "8"],
])
def test_every_model_on_a_synthetic_texture(capsys, argv):
    data = "synthetic:binary?size=8&n=12&corr=1.5&seed=4"
    out = run_json(capsys, ["predict", "--data", data, *argv, "--schedule", "ou", "--json"])
    assert out["kind"] in ("critical", "pseudo-critical", "crossover")
    # OU clock: t = ln(1 + s^2)/2 (closed form)
    assert out["critical_time"] == pytest.approx(0.5 * math.log1p(out["critical_noise"] ** 2), rel=1e-10)


def test_mixture_on_labelled_digits(capsys):
    out = run_json(capsys, ["predict", "--data", DIGITS, "--model", "mixture", "--level", "moment",
                            "--schedule", "ddpm", "--json"])
    assert out["model"]["n_components"] == 10 and out["level"] == "moment"
    assert out["critical_step"] == pytest.approx(
        float(get_schedule("ddpm").step_of_s(out["critical_noise"])), rel=1e-12)


@pytest.mark.parametrize("name", list_schedules())
def test_every_clock(capsys, name):
    out = run_json(capsys, ["predict", "--data", DIGITS, "--level", "moment", *GRID, "--schedule", name,
                            "--json"])
    schedule = get_schedule(name)
    assert out["in_schedule_range"] is True
    # the time maps back to s_c through the schedule's forward map
    assert float(schedule.s(out["critical_time"])) == pytest.approx(out["critical_noise"], rel=1e-6)


def test_out_of_range_clock(capsys):
    out = run_json(capsys, ["predict", "--data", DIGITS, "--level", "moment", *GRID,
                            "--schedule", "edm:s_min=0.002,s_max=1", "--json"])
    assert out["critical_time"] is None and out["in_schedule_range"] is False
    assert "not extrapolated" in out["message"]


def test_text_output(capsys):
    assert main(["predict", "--data", DIGITS, "--level", "moment", *GRID]) == 0
    text = capsys.readouterr().out
    assert "kind: critical" in text and "critical_mode: [0, 0]" in text and "curves" not in text


@pytest.fixture()
def constant_npy(tmp_path):
    path = tmp_path / "constant.npy"
    np.save(path, np.full((4, 6, 6), 3.0))
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["--window", "4"], "odd"),
    (["--window", "11"], "larger than the lattice"),
    (["--window", "5", "--size", "4"], "larger than the lattice"),
    (["--model", "unet"], "unknown model"),
    (["--level", "quenched"], "level must be one of"),
    (["--s-min", "-1", "--s-max", "3"], "--s-min"),
    (["--s-min", "0", "--s-max", "3"], "--s-min"),
    (["--s-min", "2", "--s-max", "1"], "--s-max"),
    (["--s-min", "1"], "go together"),
    (["--model", "mixture", "--data", "synthetic:grf?size=8&n=8"], "no labels"),
    (["--model", "gaussian", "--window", "3"], "--model patch only"),
    (["--model", "memorizing", "--size", "16"], "lattice"),
    (["--mode", "pooled"], "mode"),
    (["--pixels", "many"], "--pixels"),
    (["--dynamics", "langevin"], "dynamics"),
    (["--schedule", "linear"], "unknown schedule"),
])
def test_bad_input_exits_2(capsys, argv, message):
    argv = ["predict", "--data", DIGITS, *argv] if "--data" not in argv else ["predict", *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "diffcrit predict: error:" in err and message in err


@pytest.mark.parametrize("standardize", ["none", "global"])
def test_constant_data_exits_2(capsys, constant_npy, standardize):
    assert main(["predict", "--data", f"npy:{constant_npy}", "--standardize", standardize]) == 2
    assert "constant" in capsys.readouterr().err
