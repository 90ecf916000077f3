"""IDX files, the format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Layout: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
big-endian uint32 sizes, then the values, big-endian, C order, exactly
``prod(sizes) * itemsize`` bytes. Type codes:

======  ===============  =========
code    type             bytes
======  ===============  =========
0x08    unsigned byte    1
0x09    signed byte      1
0x0B    short            2
0x0C    int              4
0x0D    float            4
0x0E    double           8
======  ===============  =========

A gzip file is recognised by its magic bytes ``1f 8b``, whatever its name. Every
defect (bad magic, unknown type code, truncated or over-long payload, corrupt
gzip stream) raises :class:`IdxFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from diffcrit._checks import check_limit, existing_file
from diffcrit.data.dataset import Dataset, _owned_dataset

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file; the message names the file."""

    def __init__(self, path: Any, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"IDX file '{path}': {problem}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _read_up_to(handle, count: int) -> bytearray:
    """Read at most ``count`` bytes, in bounded chunks (a lying header cannot force a huge allocation)."""
    data = bytearray()
    while len(data) < count:
        chunk = handle.read(min(1 << 24, count - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _read_idx_stream(handle, path: Path) -> np.ndarray:
    magic = _read_up_to(handle, 4)
    if len(magic) < 4:
        raise IdxFormatError(path, f"too short for an IDX header: {len(magic)} bytes, need 4")
    if magic[0] != 0 or magic[1] != 0:
        raise IdxFormatError(path, f"bad magic: the first two bytes must be 00 00, got {bytes(magic[:2]).hex(' ')}")
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise IdxFormatError(path, f"unknown type code 0x{code:02X}; allowed: {allowed}")
    if ndim < 1:
        raise IdxFormatError(path, "the number of dimensions is 0; need at least 1")
    raw_dims = _read_up_to(handle, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxFormatError(path, f"truncated header: {ndim} dimension sizes need {4 * ndim} "
                                   f"bytes, found {len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    payload = _read_up_to(handle, expected)
    got = len(payload)
    if got < expected:
        raise IdxFormatError(path, f"truncated data: shape {dims} of {dtype.str[1:]} needs "
                                   f"{expected} bytes, found {got}")
    if handle.read(1):
        raise IdxFormatError(path, f"over-long file: bytes remain after the {expected} data bytes "
                                   f"of shape {dims}")
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip, detected by magic bytes) into a native-endian array.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IdxFormatError: the file is not a well-formed IDX file (the message says why).
    """
    path = existing_file("path", path)
    if _is_gzip(path):
        try:
            with gzip.open(path, "rb") as handle:
                return _read_idx_stream(handle, path)
        except IdxFormatError:
            raise
        except (OSError, EOFError, zlib.error) as error:
            raise IdxFormatError(path, f"corrupt gzip stream: {error}") from None
    with open(path, "rb") as handle:
        return _read_idx_stream(handle, path)


def write_idx(path: str | os.PathLike, array: Any, compress: str | None = None) -> Path:
    """Write ``array`` as an IDX file (atomically: temporary file, then rename).

    Args:
        path: destination.
        array: uint8, int8, int16, int32, float32 or float64 array with 1 to 255
            axes, each shorter than 2**32.
        compress: None (raw) or ``"gzip"``.

    Returns:
        The path written.
    """
    if compress not in (None, "gzip"):
        raise ValueError(f"compress must be None or 'gzip', got {compress!r}")
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.dtype.kind not in "uif":
        raise TypeError(f"array dtype must be one of uint8, int8, int16, int32, float32, float64 "
                        f"for IDX, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 axes for IDX, got {array.ndim}")
    if any(side >= 2 ** 32 for side in array.shape):
        raise ValueError(f"IDX dimension sizes must be < 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    if compress == "gzip":
        data = gzip.compress(data, mtime=0)
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                                             prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def load_idx(images_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
             n: int | None = None) -> Dataset:
    """Load IDX images (and optional labels) as a raw (unstandardized) Dataset.

    Args:
        images_path: IDX file of shape ``(N, H, W)`` (or ``(N, C, H, W)``).
        labels_path: IDX file of ``N`` integer labels, or None.
        n: keep only the first ``n`` images (all when None).

    Raises:
        FileNotFoundError: a path does not exist (checked before any reading).
        IdxFormatError: a malformed file.
        ValueError: wrong shapes, or label count different from the image count.
    """
    images_file = existing_file("images_path", images_path)
    labels_file = None if labels_path is None else existing_file("labels_path", labels_path)
    if n is not None:
        check_limit("n", n, available=1)
    images = read_idx(images_file)
    if images.ndim not in (3, 4):
        raise ValueError(f"images file '{images_file}' must hold an array of shape (N, H, W) or "
                         f"(N, C, H, W), got shape {images.shape}")
    labels = None
    if labels_file is not None:
        labels = read_idx(labels_file)
        if labels.ndim != 1 or labels.dtype.kind not in "ui":
            raise ValueError(f"labels file '{labels_file}' must hold a 1-D integer array, got shape "
                             f"{labels.shape} of {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels file '{labels_file}' holds {labels.shape[0]} labels but images "
                             f"file '{images_file}' holds {images.shape[0]} images")
    limit = check_limit("n", n, available=images.shape[0])
    provenance = {"source": "idx", "path": str(images_file.resolve()),
                  "labels_path": None if labels_file is None else str(labels_file.resolve()),
                  "dtype": str(images.dtype), "n_total": int(images.shape[0])}
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
        provenance["n"] = int(limit)
    name = images_file.name.removesuffix(".gz")
    return _owned_dataset(images.astype(np.float64), labels=labels, name=name or "idx",
                          provenance=provenance)
