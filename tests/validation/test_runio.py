import json

import numpy as np
import pytest

from diffcrit.validation.runio import (
    dumps,
    staged_run_folder,
    to_jsonable,
    write_json_atomic,
    write_npz_atomic,
    write_run_folder,
)


def test_to_jsonable_converts_numpy_and_nonfinite():
    value = to_jsonable({"a": np.float64(1.5), "b": np.arange(3), "c": np.nan, 2: np.int32(4)})
    assert value == {"a": 1.5, "b": [0, 1, 2], "c": None, "2": 4}
    # Strict JSON: no NaN token can reach the output.
    assert "NaN" not in dumps({"x": float("inf")})


def test_atomic_writes_roundtrip(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"x": np.float32(2.0)})
    assert json.loads(path.read_text()) == {"x": 2.0}
    npz = write_npz_atomic(tmp_path / "a.npz", y=np.eye(2))
    np.testing.assert_array_equal(np.load(npz)["y"], np.eye(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "sub"]


def test_staged_folder_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with staged_run_folder(out) as stage:
            (stage / "partial.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staged_folder_replaces_existing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_run_folder(out) as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with pytest.raises(ValueError, match="exists"):
        with staged_run_folder(out, overwrite=False):
            pass


def test_write_run_folder_writes_every_part_and_keeps_an_old_folder_on_failure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "run"

    def figures(save):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save(ax, "line", "A falling line.")

    files = write_run_folder(out, title="T", results={"x": np.float64(0.5)}, arrays={"a": [1, 2]},
                             document=lambda doc: doc.paragraph("Body text."), figures=figures,
                             extra=lambda stage: (stage / "extra.txt").write_text("e"))
    assert files == ["arrays.npz", "extra.txt", "figures/line.pdf", "figures/line.png", "report.html",
                     "report.md", "results.json"]
    assert json.loads((out / "results.json").read_text()) == {"x": 0.5}
    np.testing.assert_array_equal(np.load(out / "arrays.npz")["a"], [1, 2])
    markdown = (out / "report.md").read_text()
    assert "Body text." in markdown and "figures/line.png" in markdown and "A falling line." in markdown

    def broken(doc):
        raise RuntimeError("document failed")

    with pytest.raises(RuntimeError, match="document failed"):
        write_run_folder(out, title="T", results={}, arrays={}, document=broken, figures=figures)
    assert (out / "extra.txt").exists()  # the earlier folder is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
