"""The :class:`Dataset` container and its invertible :class:`Standardization` record.

A data set is a stack of fields on a periodic lattice: ``images`` has shape
``(N, *lattice)`` or ``(N, C, *lattice)`` with a 1-D chain ``(L,)`` or a 2-D image
``(H, W)`` as the lattice. Everything downstream (theory, numerics, validation)
reads the same object, so it is validated once here: finite float64 values, at
least one image, a non-empty lattice, integer labels of the right length, and a
JSON-able provenance saying where the numbers came from.
"""

from __future__ import annotations

import copy
import json
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from diffcrit._checks import as_generator, check_choice, check_int

STANDARDIZATION_MODES = ("global", "per-pixel", "none")


class _Owned:
    """Marks a freshly built float64 array that a Dataset may keep without copying."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _pixel_shape_note(dim: int) -> str:
    return "(N, L) or (N, C, L)" if dim == 1 else "(N, H, W) or (N, C, H, W)"


@dataclass(frozen=True, eq=False, repr=False)
class Standardization:
    """An affine pixel map ``z = (x - mean) / std`` and its exact inverse.

    Attributes:
        mode: ``"global"`` (one scalar ``mean`` and ``std`` over all pixels of all
            images: a stationary ensemble stays stationary), ``"per-pixel"``
            (``mean``/``std`` arrays of the image shape; pixels of zero variance get
            ``std = 1``) or ``"none"`` (``mean = 0``, ``std = 1``: the identity).
        mean: scalar (``global``/``none``) or read-only array of the image shape.
        std: like ``mean``; strictly positive.

    >>> rec = Standardization("global", 2.0, 4.0)
    >>> rec.forward(np.array([2.0, 6.0])).tolist(), rec.inverse(np.array([0.0, 1.0])).tolist()
    ([0.0, 1.0], [2.0, 6.0])
    """

    mode: str
    mean: float | np.ndarray
    std: float | np.ndarray

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, STANDARDIZATION_MODES)
        if self.mode == "per-pixel":
            mean = np.array(self.mean, dtype=np.float64)
            std = np.array(self.std, dtype=np.float64)
            if mean.shape != std.shape or mean.ndim == 0:
                raise ValueError(
                    "per-pixel standardization needs mean and std arrays of one image shape, "
                    f"got shapes {mean.shape} and {std.shape}")
            object.__setattr__(self, "mean", _readonly(mean))
            object.__setattr__(self, "std", _readonly(std))
        else:
            for name in ("mean", "std"):
                value = getattr(self, name)
                if np.ndim(value) != 0:
                    raise ValueError(f"{self.mode} standardization needs a scalar {name}, "
                                     f"got shape {np.shape(value)}")
                object.__setattr__(self, name, float(value))
            if self.mode == "none" and (self.mean != 0.0 or self.std != 1.0):
                raise ValueError(f"mode 'none' needs mean 0 and std 1, got {self.mean}, {self.std}")
        std = np.asarray(self.std)
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("standardization mean must be finite and std finite and > 0")

    def forward(self, array: Any) -> np.ndarray:
        """Apply ``(x - mean) / std``; per-pixel records broadcast over leading axes."""
        return (np.asarray(array, dtype=np.float64) - self.mean) / self.std

    def inverse(self, array: Any) -> np.ndarray:
        """Apply ``z * std + mean``, the exact inverse of :meth:`forward`."""
        return np.asarray(array, dtype=np.float64) * self.std + self.mean

    def to_dict(self, compact: bool = False) -> dict:
        """JSON-able record; ``compact`` summarizes per-pixel arrays by shape and range."""
        def encode(value):
            if isinstance(value, float):
                return value
            if compact:
                return {"shape": list(value.shape), "min": float(value.min()),
                        "max": float(value.max())}
            return value.tolist()

        return {"mode": self.mode, "mean": encode(self.mean), "std": encode(self.std)}

    def __repr__(self) -> str:
        if self.mode == "per-pixel":
            return f"Standardization(mode='per-pixel', shape={self.mean.shape})"
        return f"Standardization(mode={self.mode!r}, mean={self.mean:.6g}, std={self.std:.6g})"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A validated, read-only stack of lattice fields with labels and provenance.

    Attributes:
        images: float64, read-only, shape ``(N, *lattice)`` or ``(N, C, *lattice)``.
            With ``dim=None`` the layout is inferred from ``ndim``: 2 -> ``(N, L)``
            (1-D chain), 3 -> ``(N, H, W)``, 4 -> ``(N, C, H, W)``. Pass ``dim`` to
            say otherwise (``dim=1`` with ``ndim=3`` means ``(N, C, L)``).
        labels: int64 read-only array ``(N,)`` or None.
        name: short name used in reports.
        provenance: JSON-able mapping (source, path, generator and parameters, seed).
        standardization: the record of the affine map already applied to
            ``images`` (see :meth:`standardize`), or None for raw data.
        dim: number of lattice axes (1 or 2 for the models of the package).

    >>> ds = Dataset(np.arange(8.0).reshape(2, 2, 2), labels=[0, 1], name="toy")
    >>> ds
    Dataset('toy', n=2, shape=(2, 2), channels=1, classes=2, standardization=None)
    >>> z = ds.standardize()
    >>> float(z.images.mean()), float(z.images.std())
    (0.0, 1.0)
    >>> bool(np.allclose(z.destandardize(z.images), ds.images, rtol=1e-14, atol=0))
    True
    """

    images: Any
    labels: Any = None
    name: str = "dataset"
    provenance: Mapping[str, Any] | None = None
    standardization: Standardization | None = None
    dim: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")
        images = self._validated_images(self.images)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", self._validated_labels(self.labels, images.shape[0]))
        object.__setattr__(self, "provenance", self._validated_provenance(self.provenance))
        record = self.standardization
        if record is not None:
            if not isinstance(record, Standardization):
                raise TypeError(f"standardization must be a Standardization or None, got {record!r}")
            if record.mode == "per-pixel" and record.mean.shape != images.shape[1:]:
                raise ValueError(f"per-pixel standardization of shape {record.mean.shape} does "
                                 f"not match the image shape {images.shape[1:]}")

    # ------------------------------------------------------------------ validation
    def _validated_images(self, images: Any) -> np.ndarray:
        owned = isinstance(images, _Owned)
        if owned:
            array = images.array
            if array.dtype != np.float64 or not array.flags.c_contiguous:
                raise TypeError("internal: owned images must be C-contiguous float64")
        else:
            array = np.asarray(images)
            if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                             or array.dtype == bool):
                raise TypeError(f"images of dataset '{self.name}' must be a real numeric array, "
                                f"got dtype {array.dtype}")
            if np.issubdtype(array.dtype, np.complexfloating):
                raise TypeError(f"images of dataset '{self.name}' must be real, got dtype {array.dtype}")
        dim = self.dim
        if dim is None:
            if array.ndim not in (2, 3, 4):
                raise ValueError(
                    f"images of dataset '{self.name}' must have shape (N, H, W), (N, C, H, W) "
                    f"or (N, L) (1-D chain), got shape {array.shape}")
            dim = 1 if array.ndim == 2 else 2
        else:
            dim = check_int("dim", dim, minimum=1)
            if array.ndim not in (dim + 1, dim + 2):
                raise ValueError(
                    f"images of dataset '{self.name}' with dim={dim} must have {dim + 1} or "
                    f"{dim + 2} axes (N, [C,] *lattice), got shape {array.shape}")
        object.__setattr__(self, "dim", dim)
        if array.shape[0] < 1:
            raise ValueError(f"images of dataset '{self.name}' must hold N >= 1 images, got shape "
                             f"{array.shape}")
        if any(side < 1 for side in array.shape[1:]):
            raise ValueError(f"images of dataset '{self.name}' have an empty lattice or channel "
                             f"axis: shape {array.shape}, expected {_pixel_shape_note(dim)}")
        if not owned:
            array = np.array(array, dtype=np.float64, copy=True, order="C")
        finite = np.isfinite(array)
        if not finite.all():
            bad = np.argwhere(~finite)
            raise ValueError(f"images of dataset '{self.name}' contain {len(bad)} non-finite "
                             f"values (NaN or inf), first at index {tuple(int(i) for i in bad[0])}")
        return _readonly(array)

    def _validated_labels(self, labels: Any, n: int) -> np.ndarray | None:
        if labels is None:
            return None
        array = np.asarray(labels)
        if array.ndim != 1 or array.shape[0] != n:
            raise ValueError(f"labels of dataset '{self.name}' must have shape ({n},) to match "
                             f"the images, got shape {array.shape}")
        if np.issubdtype(array.dtype, np.integer):
            out = array.astype(np.int64)
        elif np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) \
                and np.all(array == np.round(array)):
            out = array.astype(np.int64)
        else:
            raise TypeError(f"labels of dataset '{self.name}' must be integers, got dtype "
                            f"{array.dtype}")
        return _readonly(np.array(out, copy=True))

    def _validated_provenance(self, provenance: Any) -> dict:
        if provenance is None:
            return {}
        if not isinstance(provenance, Mapping):
            raise TypeError(f"provenance must be a mapping, got {type(provenance).__name__}")
        provenance = copy.deepcopy(dict(provenance))
        try:
            json.dumps(provenance, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"provenance of dataset '{self.name}' must be JSON-serializable "
                            f"(str keys, finite numbers, lists, dicts): {error}") from None
        return provenance

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of images ``N``."""
        return int(self.images.shape[0])

    @property
    def has_channel_axis(self) -> bool:
        """Whether ``images`` carries an explicit channel axis after ``N``."""
        return self.images.ndim == self.dim + 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Lattice shape (``(H, W)`` or ``(L,)``), without ``N`` and channels."""
        return tuple(int(s) for s in self.images.shape[-self.dim:])

    @property
    def channels(self) -> int:
        """Number of channels (1 when there is no channel axis)."""
        return int(self.images.shape[1]) if self.has_channel_axis else 1

    @property
    def classes(self) -> tuple[int, ...]:
        """Sorted distinct labels; ``()`` for unlabelled data."""
        if self.labels is None:
            return ()
        return tuple(int(c) for c in np.unique(self.labels))

    def as_channels_first(self) -> np.ndarray:
        """Read-only view of ``images`` with an explicit channel axis: ``(N, C, *lattice)``."""
        return self.images if self.has_channel_axis else self.images[:, None]

    # ------------------------------------------------------------------ standardization
    def standardize(self, mode: str = "global") -> "Dataset":
        """Return a new Dataset with standardized images and the record of the map.

        Args:
            mode: ``"global"`` (default; one scalar mean and std over all pixels, so
                stationary fields stay stationary), ``"per-pixel"`` (each pixel to zero
                mean and unit variance over the images; constant pixels keep ``std = 1``)
                or ``"none"`` (identity, recorded).

        Raises:
            ValueError: unknown mode, data already standardized, or constant data
                (zero variance), naming the dataset.
        """
        check_choice("mode", mode, STANDARDIZATION_MODES)
        if self.standardization is not None and self.standardization.mode != "none":
            raise ValueError(f"dataset '{self.name}' is already standardized "
                             f"(mode {self.standardization.mode!r}); standardize the raw data")
        x = self.images
        scale = float(np.max(np.abs(x)))
        # Relative threshold: a constant array's std is exactly 0 only up to rounding.
        tiny = 1e-12 * max(scale, np.finfo(np.float64).tiny)
        if mode == "none":
            record = Standardization("none", 0.0, 1.0)
        elif mode == "global":
            mean, std = float(x.mean()), float(x.std())
            if std <= tiny:
                raise ValueError(f"dataset '{self.name}' is constant (pixel std {std:.3g}); "
                                 "it cannot be standardized")
            record = Standardization("global", mean, std)
        else:
            mean, std = x.mean(axis=0), x.std(axis=0)
            constant = std <= tiny
            if constant.all():
                raise ValueError(f"dataset '{self.name}' has zero variance at every pixel; "
                                 "it cannot be standardized")
            record = Standardization("per-pixel", mean, np.where(constant, 1.0, std))
        images = _Owned(record.forward(x))
        return Dataset(images, self.labels, self.name, self.provenance, record, self.dim)

    def destandardize(self, array: Any) -> np.ndarray:
        """Map standardized values back to data units (identity for raw data).

        ``array`` has shape ``(..., *image_shape)`` for a per-pixel record; any
        shape for a global one.
        """
        if self.standardization is None:
            return np.array(array, dtype=np.float64)
        return self.standardization.inverse(array)

    # ------------------------------------------------------------------ selection
    def _select(self, index: np.ndarray, note: dict) -> "Dataset":
        provenance = dict(self.provenance)
        provenance["subsets"] = list(provenance.get("subsets", [])) + [note]
        labels = None if self.labels is None else self.labels[index]
        return Dataset(_Owned(np.ascontiguousarray(self.images[index])), labels, self.name,
                       provenance, self.standardization, self.dim)

    def subset(self, selection: Any, rng: Any = None) -> "Dataset":
        """Return a subset; the standardization record is kept (it is a fixed map).

        Args:
            selection: an int ``n`` (the first ``n`` images, or ``n`` drawn without
                replacement, in their original order, when ``rng`` is given), or a
                sequence of integer indices, or a boolean mask of length ``N``.
            rng: None, a numpy Generator or an int seed (only with an int ``selection``).
        """
        if isinstance(selection, numbers.Integral) and not isinstance(selection, bool):
            n = check_int("n", selection, minimum=1)
            if n > self.n:
                raise ValueError(f"n must be <= the {self.n} images of dataset '{self.name}', got {n}")
            if rng is None:
                return self._select(np.arange(n), {"selection": "first", "n": n})
            generator, seed = as_generator(rng)
            index = np.sort(generator.choice(self.n, size=n, replace=False))
            return self._select(index, {"selection": "random", "n": n, "seed": seed})
        if rng is not None:
            raise ValueError("rng is only used with an int selection (a random subset of size n)")
        index = np.asarray(selection)
        if index.dtype == bool:
            if index.shape != (self.n,):
                raise ValueError(f"boolean selection must have shape ({self.n},), got {index.shape}")
            index = np.flatnonzero(index)
        elif index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise TypeError("selection must be an int, a 1-D sequence of integer indices or a "
                            f"boolean mask, got {type(selection).__name__} of shape {index.shape}")
        if index.size == 0:
            raise ValueError(f"selection of dataset '{self.name}' is empty")
        if index.min() < -self.n or index.max() >= self.n:
            raise ValueError(f"indices must lie in [-{self.n}, {self.n - 1}] for dataset "
                             f"'{self.name}', got range [{index.min()}, {index.max()}]")
        return self._select(index.astype(np.int64), {"selection": "indices", "n": int(index.size)})

    def by_class(self, label: int) -> "Dataset":
        """Return the images whose label equals ``label``."""
        if self.labels is None:
            raise ValueError(f"dataset '{self.name}' has no labels; by_class needs labelled data")
        label = check_int("label", label)
        if label not in self.classes:
            raise ValueError(f"label must be one of the classes {list(self.classes)} of dataset "
                             f"'{self.name}', got {label}")
        out = self._select(np.flatnonzero(self.labels == label), {"selection": "class", "label": label})
        return out

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """JSON-able description: sizes, classes with counts, pixel statistics, provenance."""
        x = self.images
        out = {
            "name": self.name,
            "n": self.n,
            "shape": list(self.shape),
            "dim": self.dim,
            "channels": self.channels,
            "classes": list(self.classes),
        }
        if self.labels is not None:
            values, counts = np.unique(self.labels, return_counts=True)
            out["class_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
        out["pixels"] = {"mean": float(x.mean()), "std": float(x.std()),
                         "min": float(x.min()), "max": float(x.max())}
        out["standardization"] = (None if self.standardization is None
                                  else self.standardization.to_dict(compact=True))
        out["provenance"] = copy.deepcopy(self.provenance)
        return out

    def to_dict(self, include_arrays: bool = False) -> dict:
        """JSON-able dictionary: :meth:`summary`, plus the arrays as lists if asked."""
        out = self.summary()
        if include_arrays:
            out["images"] = self.images.tolist()
            out["labels"] = None if self.labels is None else self.labels.tolist()
            if self.standardization is not None:
                out["standardization"] = self.standardization.to_dict()
        return out

    def __repr__(self) -> str:
        classes = len(self.classes) if self.labels is not None else None
        record = None if self.standardization is None else self.standardization.mode
        return (f"Dataset({self.name!r}, n={self.n}, shape={self.shape}, channels={self.channels}, "
                f"classes={classes}, standardization={record!r})")

    def __len__(self) -> int:
        return self.n


def _owned_dataset(images: np.ndarray, **kwargs: Any) -> Dataset:
    """Build a Dataset from a float64 array the caller hands over (no extra copy)."""
    array = np.ascontiguousarray(images, dtype=np.float64)
    return Dataset(_Owned(array), **kwargs)
