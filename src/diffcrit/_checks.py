"""Argument checks shared across the package (numpy only).

Each check names the parameter, the value it got and what is allowed, so that bad
input fails before any work is done.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np


def check_int(name: str, value: Any, *, minimum: int | None = None,
              allowed: tuple[int, ...] | None = None) -> int:
    """Return ``value`` as an ``int``; bools and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if allowed is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_float(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False,
                minimum: float | None = None) -> float:
    """Return ``value`` as a finite ``float`` with the requested sign."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the ``allowed`` strings."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def as_generator(rng: Any, name: str = "rng") -> tuple[np.random.Generator, int | None]:
    """Turn ``rng`` (a Generator or an int seed) into ``(generator, seed or None)``."""
    if isinstance(rng, np.random.Generator):
        return rng, None
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"{name} must be a numpy.random.Generator or an int seed, got {rng!r}")
    if rng < 0:
        raise ValueError(f"{name} seed must be >= 0, got {rng}")
    return np.random.default_rng(int(rng)), int(rng)


def existing_file(name: str, path: Any) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` to an existing regular file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {path!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file: '{path}'")
    if not path.is_file():
        raise IsADirectoryError(f"{name}: not a regular file: '{path}'")
    return path


def check_limit(name: str, n: Any, available: int) -> int | None:
    """Validate an optional "first n items" limit; ``None`` means all."""
    if n is None:
        return None
    n = check_int(name, n, minimum=1)
    return min(n, available)
