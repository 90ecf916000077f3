"""Dataset container: validation, standardization round trips, selection, summaries, digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffcrit.data import Dataset, Standardization, digits

EPS = np.finfo(np.float64).eps


def _toy(n=6, labels=True):
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, size=(n, 4, 5))
    return Dataset(images, labels=np.arange(n) % 3 if labels else None, name="toy",
                   provenance={"source": "test"})


# ---------------------------------------------------------------------- construction
def test_images_are_a_read_only_float64_copy():
    source = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    ds = Dataset(source, name="ints")
    assert ds.images.dtype == np.float64 and not ds.images.flags.writeable
    source[0, 0, 0] = 99
    assert ds.images[0, 0, 0] == 0.0
    with pytest.raises(ValueError):
        ds.images[0, 0, 0] = 1.0


@pytest.mark.parametrize("shape, dim, lattice, channels", [
    ((3, 8), None, (8,), 1),
    ((3, 5, 6), None, (5, 6), 1),
    ((3, 2, 5, 6), None, (5, 6), 2),
    ((3, 2, 8), 1, (8,), 2),
])
def test_layouts(shape, dim, lattice, channels):
    ds = Dataset(np.ones(shape), dim=dim)
    assert ds.n == 3 and ds.shape == lattice and ds.channels == channels
    assert ds.as_channels_first().shape == (3, channels, *lattice)


@pytest.mark.parametrize("images, error, words", [
    (np.ones(5), ValueError, "shape"),
    (np.ones((1, 2, 3, 4, 5)), ValueError, "shape"),
    (np.ones((0, 4, 4)), ValueError, "N >= 1"),
    (np.ones((2, 0, 4)), ValueError, "empty lattice"),
    (np.array([[[1.0, np.nan]]]), ValueError, "non-finite"),
    (np.array([[[1.0, np.inf]]]), ValueError, "non-finite"),
    (np.ones((2, 3, 3), dtype=complex), TypeError, "real"),
    (np.array([[["a"]]]), TypeError, "numeric"),
])
def test_bad_images_are_refused_naming_the_dataset(images, error, words):
    with pytest.raises(error, match=words) as info:
        Dataset(images, name="bad-one")
    assert "bad-one" in str(info.value)


def test_bad_labels_provenance_and_dim():
    images = np.zeros((3, 2, 2))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        Dataset(images, labels=[0, 1])
    with pytest.raises(TypeError, match="integers"):
        Dataset(images, labels=[0.5, 1, 2])
    assert Dataset(images, labels=np.array([0.0, 1.0, 2.0])).labels.dtype == np.int64
    with pytest.raises(TypeError, match="JSON"):
        Dataset(images, provenance={"when": object()})
    with pytest.raises(TypeError, match="JSON"):
        Dataset(images, provenance={"x": float("nan")})
    with pytest.raises(ValueError, match="dim=1"):
        Dataset(np.zeros((3, 2, 2, 2)), dim=1)
    with pytest.raises(TypeError, match="name"):
        Dataset(images, name="")


# ---------------------------------------------------------------------- standardization
def test_global_standardization_and_exact_inverse():
    raw = _toy()
    z = raw.standardize()
    rec = z.standardization
    assert rec.mode == "global" and isinstance(rec.mean, float)
    assert rec.mean == pytest.approx(raw.images.mean(), rel=1e-15)
    # Mean of N standardized values: rounding ~ eps * sqrt-ish(N) * max|z|.
    assert abs(z.images.mean()) < 1e-14 and z.images.std() == pytest.approx(1.0, rel=1e-14)
    back = z.destandardize(z.images)
    # Four roundings (subtract, divide, multiply, add), each <= eps/2 relative:
    # |x' - x| <= 2 eps (|x| + |mean|).
    assert np.all(np.abs(back - raw.images) <= 2 * EPS * (np.abs(raw.images) + abs(rec.mean)))
    assert z.labels is raw.labels or np.array_equal(z.labels, raw.labels)
    assert z.provenance == raw.provenance


def test_global_standardization_keeps_stationary_statistics_stationary():
    raw = _toy(n=20, labels=False)
    z = raw.standardize("global")
    # One affine map for every pixel: the pooled covariance just scales by 1/std^2.
    def pooled_covariance(x):
        centred = x - x.mean()
        spectrum = np.mean(np.abs(np.fft.fft2(centred)) ** 2, axis=0) / centred[0].size
        return np.real(np.fft.ifft2(spectrum))
    np.testing.assert_allclose(pooled_covariance(z.images),
                               pooled_covariance(raw.images) / z.standardization.std**2,
                               rtol=1e-12, atol=1e-14)


def test_per_pixel_standardization_and_constant_pixels():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(50, 3, 3)) * np.arange(1, 10).reshape(3, 3) + 5.0
    images[:, 0, 0] = 7.0  # a constant pixel (like the corners of the digits)
    raw = Dataset(images, name="pp")
    z = raw.standardize("per-pixel")
    rec = z.standardization
    assert rec.mean.shape == (3, 3) and rec.std[0, 0] == 1.0
    mask = np.ones((3, 3), bool)
    mask[0, 0] = False
    # Per-pixel means of 50 values of order 1: rounding ~ 1e-15.
    np.testing.assert_allclose(z.images.mean(axis=0)[mask], 0.0, atol=1e-14)
    np.testing.assert_allclose(z.images.std(axis=0)[mask], 1.0, rtol=1e-13)
    assert np.all(z.images[:, 0, 0] == 0.0)
    back = z.destandardize(z.images)
    assert np.all(np.abs(back - images) <= 2 * EPS * (np.abs(images) + np.abs(rec.mean)))
    # A single image broadcasts against the per-pixel record.
    assert z.destandardize(z.images[0]).shape == (3, 3)


def test_none_mode_is_recorded_identity():
    raw = _toy()
    z = raw.standardize("none")
    assert z.standardization.mode == "none"
    np.testing.assert_array_equal(z.images, raw.images)
    np.testing.assert_array_equal(z.destandardize(z.images), raw.images)
    assert z.standardize("global").standardization.mode == "global"  # "none" can be replaced
    np.testing.assert_array_equal(raw.destandardize(raw.images), raw.images)  # raw: identity


def test_constant_data_and_double_standardization_are_refused():
    const = Dataset(np.full((4, 3, 3), 0.1), name="flat")
    for mode in ("global", "per-pixel"):
        with pytest.raises(ValueError, match="'flat'"):
            const.standardize(mode)
    z = _toy().standardize()
    with pytest.raises(ValueError, match="already standardized"):
        z.standardize("per-pixel")
    with pytest.raises(ValueError, match="mode"):
        _toy().standardize("minmax")


def test_standardization_record_validation():
    with pytest.raises(ValueError, match="std"):
        Standardization("global", 0.0, 0.0)
    with pytest.raises(ValueError, match="scalar"):
        Standardization("global", np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="mode"):
        Standardization("robust", 0.0, 1.0)
    with pytest.raises(ValueError, match="does not match"):
        Dataset(np.zeros((2, 3, 3)), standardization=Standardization("per-pixel", np.zeros((2, 2)),
                                                                      np.ones((2, 2))))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5),
                  elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
       st.sampled_from(["global", "per-pixel"]))
def test_standardization_round_trip_property(images, mode):
    raw = Dataset(images)
    try:
        z = raw.standardize(mode)
    except ValueError as error:
        assert "constant" in str(error) or "zero variance" in str(error)
        return
    rec = z.standardization
    back = z.destandardize(z.images)
    # Rounding bound of forward + inverse (see test_global_standardization_and_exact_inverse).
    assert np.all(np.abs(back - images) <= 2 * EPS * (np.abs(images) + np.abs(rec.mean)))


# ---------------------------------------------------------------------- selection
def test_subset_first_random_indices_and_mask():
    raw = _toy(n=10)
    z = raw.standardize()
    first = z.subset(4)
    np.testing.assert_array_equal(first.images, z.images[:4])
    assert first.standardization is z.standardization
    assert first.provenance["subsets"] == [{"selection": "first", "n": 4}]
    random_a, random_b = z.subset(5, rng=3), z.subset(5, rng=3)
    np.testing.assert_array_equal(random_a.images, random_b.images)
    assert random_a.n == 5 and random_a.provenance["subsets"][0]["seed"] == 3
    rows = [np.flatnonzero((z.images == img).all(axis=(1, 2)))[0] for img in random_a.images]
    assert rows == sorted(rows) and len(set(rows)) == 5
    picked = z.subset([7, 2])
    np.testing.assert_array_equal(picked.images, z.images[[7, 2]])
    np.testing.assert_array_equal(picked.labels, z.labels[[7, 2]])
    masked = z.subset(z.labels == 1)
    assert set(masked.labels.tolist()) == {1}


@pytest.mark.parametrize("args, error, words", [
    ((11,), ValueError, "n must be <= the 10"),
    ((0,), ValueError, "n must"),
    (([0, 10],), ValueError, "indices must lie"),
    (([],), ValueError, "empty"),
    ((np.ones(3, bool),), ValueError, "boolean"),
    (([0.5],), TypeError, "selection"),
    (([1, 2], 0), ValueError, "rng"),
])
def test_subset_errors(args, error, words):
    with pytest.raises(error, match=words):
        _toy(n=10).subset(*args)


def test_by_class():
    raw = _toy(n=9)
    ones = raw.by_class(1)
    assert ones.n == 3 and set(ones.labels.tolist()) == {1}
    with pytest.raises(ValueError, match=r"\[0, 1, 2\]"):
        raw.by_class(5)
    with pytest.raises(ValueError, match="no labels"):
        _toy(labels=False).by_class(0)


# ---------------------------------------------------------------------- reporting
def test_summary_to_dict_and_repr_are_json_and_readable():
    z = _toy(n=6).standardize("per-pixel")
    summary = z.summary()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    assert summary["n"] == 6 and summary["shape"] == [4, 5] and summary["channels"] == 1
    assert summary["classes"] == [0, 1, 2] and summary["class_counts"] == {"0": 2, "1": 2, "2": 2}
    assert set(summary["pixels"]) == {"mean", "std", "min", "max"}
    assert summary["standardization"]["mode"] == "per-pixel"
    assert summary["standardization"]["mean"]["shape"] == [4, 5]
    assert summary["provenance"] == {"source": "test"}
    full = z.to_dict(include_arrays=True)
    json.dumps(full, allow_nan=False)
    np.testing.assert_array_equal(np.array(full["images"]), z.images)
    assert repr(z) == ("Dataset('toy', n=6, shape=(4, 5), channels=1, classes=3, "
                       "standardization='per-pixel')")
    assert "global" in repr(Standardization("global", 1.0, 2.0))


# ---------------------------------------------------------------------- digits
def test_digits_is_sklearn_digits():
    from sklearn.datasets import load_digits

    reference = load_digits()
    ds = digits()
    assert ds.n == 1797 and ds.shape == (8, 8) and ds.channels == 1
    np.testing.assert_array_equal(ds.images, reference.images)
    np.testing.assert_array_equal(ds.labels, reference.target)
    assert ds.classes == tuple(range(10))
    assert sum(ds.summary()["class_counts"].values()) == 1797
    assert ds.images.min() == 0.0 and ds.images.max() == 16.0
    assert ds.provenance["source"] == "sklearn.datasets.load_digits"
    assert ds.standardization is None
    small = digits(n=100)
    assert small.n == 100 and small.provenance["n"] == 100
    np.testing.assert_array_equal(small.images, reference.images[:100])
    with pytest.raises(ValueError, match="n must"):
        digits(n=0)
