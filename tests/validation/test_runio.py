import json

import numpy as np
import pytest

from diffcrit.validation.runio import (
    dumps,
    staged_run_folder,
    to_jsonable,
    write_json_atomic,
    write_npz_atomic,
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
