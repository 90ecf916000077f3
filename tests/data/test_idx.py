"""IDX reader/writer: round trips, a hand-built byte string, and every kind of defect."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from diffcrit.data import IdxFormatError, load_idx, read_idx, write_idx


def _raw_idx(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """IDX bytes built from the format description, independently of write_idx."""
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [None, "gzip"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 1, 3, 2)])
def test_round_trip(tmp_path, dtype, compress, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        array = rng.normal(size=shape).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compress == "gzip")


def test_hand_built_file_is_read_big_endian(tmp_path):
    values = [1, -2, 300, -40000, 5, 6]
    path = tmp_path / "hand.idx"
    path.write_bytes(_raw_idx(0x0C, (2, 3), struct.pack(">6i", *values)))
    np.testing.assert_array_equal(read_idx(path), np.array(values).reshape(2, 3))
    doubles = tmp_path / "doubles"
    doubles.write_bytes(_raw_idx(0x0E, (2,), struct.pack(">2d", 0.1, -2.5)))
    assert read_idx(doubles).tolist() == [0.1, -2.5]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    compressed = tmp_path / "plain-name.idx"
    compressed.write_bytes(gzip.compress(_raw_idx(0x08, (3, 4), array.tobytes())))
    raw = tmp_path / "looks-compressed.gz"
    raw.write_bytes(_raw_idx(0x08, (3, 4), array.tobytes()))
    np.testing.assert_array_equal(read_idx(compressed), array)
    np.testing.assert_array_equal(read_idx(raw), array)


GOOD = _raw_idx(0x08, (2, 3), bytes(range(6)))


@pytest.mark.parametrize("content, words", [
    (GOOD[:-1], "truncated data"),
    (GOOD + b"\x00", "over-long"),
    (b"\x01" + GOOD[1:], "bad magic"),
    (b"\x00\x07" + GOOD[2:], "bad magic"),
    (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown type code 0x0A"),
    (GOOD[:3] + b"\x00", "number of dimensions is 0"),
    (GOOD[:6], "truncated header"),
    (GOOD[:3], "too short"),
    (b"", "too short"),
    (_raw_idx(0x0B, (2, 3), bytes(6)), "truncated data"),  # shorts need 12 bytes
    (_raw_idx(0x08, (4_000_000_000,), b"\x00"), "truncated data"),  # lying header
], ids=["truncated", "over-long", "magic-0", "magic-1", "type-code", "ndim-0", "header",
        "tiny", "empty", "size-mismatch", "huge-claim"])
@pytest.mark.parametrize("compress", [False, True])
def test_defects_are_reported_with_the_file_name(tmp_path, content, words, compress):
    path = tmp_path / "broken-file"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IdxFormatError, match=words) as info:
        read_idx(path)
    assert "broken-file" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("damage", ["truncate", "flip", "trailer"])
def test_corrupt_gzip_stream(tmp_path, damage):
    payload = bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8))
    blob = bytearray(gzip.compress(_raw_idx(0x08, (40, 100), payload)))
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    else:
        blob[-6] ^= 0xFF  # inside the CRC-32 of the trailer
    path = tmp_path / "data.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(IdxFormatError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert "data.gz" in str(info.value)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(IsADirectoryError):
        read_idx(tmp_path)
    images_path = write_idx(tmp_path / "ok.idx", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(FileNotFoundError, match="labels_path.*missing-labels.idx"):
        load_idx(images_path, tmp_path / "missing-labels.idx")


def test_write_idx_rejects_unsupported_input(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="bool"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="compress"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint8), compress="zip")
    with pytest.raises(ValueError, match="axes"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_load_idx_dataset(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(10, 6, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10, dtype=np.uint8)
    images_path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, compress="gzip")
    labels_path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    ds = load_idx(images_path, labels_path)
    assert ds.n == 10 and ds.shape == (6, 5) and ds.images.dtype == np.float64
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.provenance["source"] == "idx" and ds.provenance["path"].endswith(".gz")
    assert ds.standardization is None
    first = load_idx(images_path, labels_path, n=4)
    np.testing.assert_array_equal(first.images, images[:4])
    assert first.provenance["n"] == 4 and first.provenance["n_total"] == 10
    unlabeled = load_idx(images_path)
    assert unlabeled.labels is None


def test_load_idx_shape_errors(tmp_path):
    images_path = write_idx(tmp_path / "im", np.zeros((10, 3, 3), np.uint8))
    short_labels = write_idx(tmp_path / "lab", np.zeros(9, np.uint8))
    with pytest.raises(ValueError, match="9 labels") as info:
        load_idx(images_path, short_labels)
    assert str(images_path) in str(info.value) and str(short_labels) in str(info.value)
    float_labels = write_idx(tmp_path / "flab", np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="integer"):
        load_idx(images_path, float_labels)
    flat_images = write_idx(tmp_path / "flat", np.zeros((10, 9), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        load_idx(flat_images)
    with pytest.raises(ValueError, match="n must"):
        load_idx(images_path, n=0)
    nan_images = write_idx(tmp_path / "nan", np.full((2, 2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        load_idx(nan_images)
