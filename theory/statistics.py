"""Second-order statistics of a data set on a periodic lattice, pooled over positions.

These are the statistics an equivariant (translation-pooled) model sees: one
scalar mean ``m`` over all pixels of all images, the pooled covariance
``C(r) = <(x_i - m)(x_{i+r} - m)>`` averaged over images and positions ``i``, and
its Fourier transform, the pooled power spectrum ``P(k) = sum_r C(r) e^{-i k.r}``.
For a stationary ensemble they estimate the exact covariance and spectrum; for
non-stationary data (digits) they are what translation pooling makes of it.
"""

from __future__ import annotations

import numpy as np


def _lattice_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim < 2 or images.shape[0] < 1 or images.size == 0:
        raise ValueError(f"images must have shape (N, *lattice) with N >= 1, got {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or inf")
    return images


def pooled_power_spectrum(images: np.ndarray) -> np.ndarray:
    """Pooled power spectrum ``P(k) = <|FFT(x - m)(k)|^2> / N_sites`` (``m`` the scalar mean).

    Args:
        images: ``(N, *lattice)`` array, one channel.

    Returns:
        Array of the lattice shape, indexed like ``numpy.fft.fftn`` (``k = 0`` first).

    >>> x = np.array([[1.0, -1.0, 1.0, -1.0]])
    >>> pooled_power_spectrum(x).round(12).tolist()
    [0.0, 0.0, 4.0, 0.0]
    """
    images = _lattice_images(images)
    axes = tuple(range(1, images.ndim))
    centred = images - images.mean()
    sites = int(np.prod(images.shape[1:]))
    return np.mean(np.abs(np.fft.fftn(centred, axes=axes)) ** 2, axis=0) / sites


def pooled_covariance(images: np.ndarray) -> np.ndarray:
    """Pooled covariance ``C(r)`` on the periodic lattice (``r = 0`` at index 0).

    The inverse FFT of :func:`pooled_power_spectrum` (Wiener–Khinchin), so
    ``C(0)`` is the pooled pixel variance.

    >>> x = np.array([[1.0, -1.0, 1.0, -1.0]])
    >>> pooled_covariance(x).tolist()
    [1.0, -1.0, 1.0, -1.0]
    """
    spectrum = pooled_power_spectrum(images)
    return np.real(np.fft.ifftn(spectrum))


def lattice_wavevectors(shape: tuple[int, ...]) -> np.ndarray:
    """Wavevectors ``k = 2 pi n / L`` of a periodic lattice, shape ``(*shape, d)``.

    Components lie in ``[-pi, pi)``, ordered like ``numpy.fft.fftfreq``.
    """
    axes = [2 * np.pi * np.fft.fftfreq(n) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
