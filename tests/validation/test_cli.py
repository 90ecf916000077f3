import json
import subprocess
import sys

import pytest

from diffcrit.validation.cli import main

SMALL = "synthetic:grf?size=8&n=24&corr=1.5&seed=0"


def run_json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object, nothing else on stdout


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ("data", "schedule", "report"):
        assert name in text


def test_data_json(capsys):
    result = run_json(capsys, ["data", "--data", SMALL, "--json"])
    assert result["command"] == "data" and result["n"] == 24
    assert list(result["shape"]) == [8, 8]


def test_schedule_json_round_trip(capsys):
    result = run_json(capsys, ["schedule", "--schedule", "ou", "--s", "1.0", "2.0", "--json"])
    rows = result["rows"]
    assert [r["s"] for r in rows] == [1.0, 2.0]
    # OU clock: t = 1/2 ln(1 + s^2), checked against the closed form.
    import math

    assert rows[0]["t"] == pytest.approx(0.5 * math.log(2.0), rel=1e-12)


def test_errors_exit_2_with_message(capsys):
    assert main(["data", "--data", "nonsense:thing"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "nonsense" in err
    assert main(["schedule", "--schedule", "ve:s_min=5,s_max=1"]) == 2
    assert "s_min" in capsys.readouterr().err


def test_report_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    result = run_json(capsys, ["report", "--data", SMALL, "--window", "3", "--out", str(out),
                                "--no-simulation", "--json"])
    for name in ("report.md", "report.html", "results.json", "arrays.npz",
                 "figures/power_spectrum.png", "figures/power_spectrum.pdf", "figures/schedules.png"):
        assert (out / name).is_file(), name
    assert set(result["files"]) >= {"report.md", "results.json"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"]["n"] == 24
    assert "Schedules" in (out / "report.md").read_text()


def test_report_bad_window_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["report", "--data", SMALL, "--window", "11", "--out", str(out)]) == 2
    assert "window" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "diffcrit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("diffcrit ")
