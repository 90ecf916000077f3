"""The embedded default data set: scikit-learn's bundled 8x8 handwritten digits.

The data ship inside scikit-learn (the UCI optical-recognition test set: 1797
images, 8x8 pixels with integer values 0..16, labels 0..9), so loading them needs
no network. scikit-learn is imported only when the digits are asked for.
"""

from __future__ import annotations

import numpy as np

from diffcrit._checks import check_limit
from diffcrit.data.dataset import Dataset, _owned_dataset


def digits(n: int | None = None) -> Dataset:
    """Load scikit-learn's 8x8 digits as raw pixel values (0..16), labels 0..9.

    Args:
        n: keep only the first ``n`` images (all 1797 when None).

    Returns:
        An unstandardized :class:`Dataset` of shape ``(N, 8, 8)`` named ``"digits"``.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    limit = check_limit("n", n, available=1797)
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the digits data set needs scikit-learn (pip install scikit-learn)") from error
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    provenance = {
        "source": "sklearn.datasets.load_digits",
        "scikit_learn_version": sklearn.__version__,
        "description": "UCI optical recognition of handwritten digits, 8x8, values 0..16",
        "n_total": int(bunch.images.shape[0]),
    }
    if limit is not None:
        provenance["n"] = int(limit)
    return _owned_dataset(images, labels=labels, name="digits", provenance=provenance)
