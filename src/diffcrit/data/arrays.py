"""User arrays from ``.npy`` / ``.npz`` files (loaded without pickle).

The format is recognised by the file's magic bytes (``\\x93NUMPY`` for ``.npy``, a
zip header for ``.npz``), not by its name.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from diffcrit._checks import check_limit, existing_file
from diffcrit.data.dataset import Dataset

IMAGE_KEYS = ("images", "x")
LABEL_KEYS = ("labels", "y")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _format_of(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head == _NPY_MAGIC:
        return "npy"
    if head[:4] in _ZIP_MAGICS:
        return "npz"
    raise ValueError(f"file '{path}' is neither .npy nor .npz (its first bytes are {head!r})")


def _load(path: Path, fmt: str):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"cannot read {fmt} file '{path}': {error}") from None


def load_array(path: str | os.PathLike, key: str | None = None, labels_key: str | None = None,
               n: int | None = None, dim: int | None = None) -> Dataset:
    """Load images (and labels) from a ``.npy`` or ``.npz`` file as a raw Dataset.

    Args:
        path: the file.
        key: npz array holding the images; default: ``"images"``, else ``"x"``, else
            the first array that is not a label array.
        labels_key: npz array holding integer labels; default ``"labels"`` or ``"y"``
            if present, else no labels. Not allowed for ``.npy`` files.
        n: keep only the first ``n`` images.
        dim: number of lattice axes if the layout is not the default one (see
            :class:`~diffcrit.data.Dataset`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable file, missing key (the message lists the keys present),
            non-finite values or wrong shapes.
    """
    path = existing_file("path", path)
    for name, value in (("key", key), ("labels_key", labels_key)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {value!r}")
    if n is not None:
        check_limit("n", n, available=1)
    fmt = _format_of(path)
    labels = None
    if fmt == "npy":
        if key is not None or labels_key is not None:
            raise ValueError(f"'{path}' is a .npy file (one array); key and labels_key apply to .npz only")
        images = _load(path, fmt)
        chosen = None
    else:
        with _load(path, fmt) as archive:
            names = list(archive.files)
            if not names:
                raise ValueError(f"npz file '{path}' holds no arrays")
            if key is not None:
                if key not in names:
                    raise ValueError(f"key must be one of the arrays {names} of '{path}', got {key!r}")
                chosen = key
            else:
                preferred = [k for k in IMAGE_KEYS if k in names]
                others = [k for k in names if k not in LABEL_KEYS and k != labels_key]
                if not preferred and not others:
                    raise ValueError(f"npz file '{path}' holds only label arrays {names}; "
                                     "pass key= to choose the images")
                chosen = preferred[0] if preferred else others[0]
            if labels_key is not None:
                if labels_key not in names:
                    raise ValueError(f"labels_key must be one of the arrays {names} of '{path}', "
                                     f"got {labels_key!r}")
                chosen_labels = labels_key
            else:
                chosen_labels = next((k for k in LABEL_KEYS if k in names and k != chosen), None)
            try:
                images = archive[chosen]
                labels = None if chosen_labels is None else archive[chosen_labels]
            except (ValueError, OSError, zipfile.BadZipFile) as error:
                raise ValueError(f"cannot read array from npz file '{path}': {error}") from None
    if images.dtype.kind not in "biuf":
        raise TypeError(f"images in '{path}' must be a real numeric array, got dtype {images.dtype}")
    if labels is not None and images.ndim >= 1 and labels.shape[:1] != images.shape[:1]:
        raise ValueError(f"labels in '{path}' have shape {labels.shape}, expected ({images.shape[0]},) "
                         "to match the images")
    provenance: dict[str, Any] = {"source": fmt, "path": str(path.resolve()), "key": chosen,
                                  "labels_key": None if labels is None else chosen_labels,
                                  "dtype": str(images.dtype),
                                  "n_total": int(images.shape[0]) if images.ndim else 0}
    limit = check_limit("n", n, available=images.shape[0]) if images.ndim else None
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
        provenance["n"] = int(limit)
    return Dataset(images, labels=labels, name=path.stem, provenance=provenance, dim=dim)
