"""Loading .npy / .npz arrays: default keys, explicit keys, format detection, errors."""

from __future__ import annotations

import numpy as np
import pytest

from diffcrit.data import load_array

RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(6, 4, 4))
LABELS = np.array([0, 1, 2, 0, 1, 2])


def test_npy(tmp_path):
    path = tmp_path / "fields.npy"
    np.save(path, IMAGES.astype(np.float32))
    ds = load_array(path)
    np.testing.assert_array_equal(ds.images, IMAGES.astype(np.float32).astype(np.float64))
    assert ds.labels is None and ds.name == "fields" and ds.provenance["source"] == "npy"
    assert load_array(path, n=2).n == 2
    with pytest.raises(ValueError, match="npz only"):
        load_array(path, key="images")


@pytest.mark.parametrize("image_key, label_key", [("images", "labels"), ("x", "y")])
def test_npz_default_keys(tmp_path, image_key, label_key):
    path = tmp_path / "d.npz"
    np.savez(path, **{label_key: LABELS, image_key: IMAGES})
    ds = load_array(path)
    np.testing.assert_array_equal(ds.images, IMAGES)
    np.testing.assert_array_equal(ds.labels, LABELS)
    assert ds.provenance["key"] == image_key and ds.provenance["labels_key"] == label_key


def test_npz_first_array_and_explicit_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, y=LABELS, fields=IMAGES, other=IMAGES[:, :2])
    ds = load_array(path)  # first array that is not a label array
    np.testing.assert_array_equal(ds.images, IMAGES)
    explicit = load_array(path, key="other", labels_key="y", n=3)
    assert explicit.shape == (2, 4) and explicit.n == 3
    np.testing.assert_array_equal(explicit.labels, LABELS[:3])
    with pytest.raises(ValueError, match=r"\['y', 'fields', 'other'\]"):
        load_array(path, key="images")
    with pytest.raises(ValueError, match="labels_key"):
        load_array(path, labels_key="targets")


def test_format_is_detected_by_content(tmp_path):
    path = tmp_path / "archive.npy"  # an npz under a misleading name
    with open(path, "wb") as handle:
        np.savez(handle, images=IMAGES)
    np.testing.assert_array_equal(load_array(path).images, IMAGES)
    text = tmp_path / "notes.npy"
    text.write_text("hello")
    with pytest.raises(ValueError, match="neither .npy nor .npz"):
        load_array(text)


@pytest.mark.parametrize("content, error, words", [
    (np.array([[[1.0, np.nan]]]), ValueError, "non-finite"),
    (np.ones(5), ValueError, "shape"),
    (np.array([[["a"]]]), TypeError, "numeric"),
    (np.ones((2, 2, 2), dtype=complex), TypeError, "numeric"),
])
def test_bad_arrays(tmp_path, content, error, words):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(error, match=words):
        load_array(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        load_array(path)


def test_label_length_and_missing_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=IMAGES, labels=LABELS[:5])
    with pytest.raises(ValueError, match="labels"):
        load_array(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_array(tmp_path / "missing.npz")
