"""Plain reference implementations and data for the patch-model tests.

The reference patch denoiser here is written from the model's definition only:
every window of every image at every position (periodic, raw data, no
deduplication, no centring), squared distances to the local patch, softmax,
weighted centre value. The library code is checked against it.
"""

from __future__ import annotations

import numpy as np


def all_patches(images: np.ndarray, size: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Every periodic window of side ``size`` of every image, and the offsets (row order)."""
    d = images.ndim - 1
    radius = size // 2
    offsets = [tuple(v - radius for v in idx) for idx in np.ndindex(*(size,) * d)]
    axes = tuple(range(1, d + 1))
    cols = [np.roll(images, tuple(-v for v in o), axis=axes) for o in offsets]
    return np.stack(cols, axis=-1).reshape(-1, len(offsets)), offsets


def local_windows(fields: np.ndarray, offsets: list[tuple[int, ...]]) -> np.ndarray:
    """``y[i + r]`` for every pixel ``i`` of every field: ``(N * n_pixels, n_offsets)``."""
    d = fields.ndim - 1
    axes = tuple(range(1, d + 1))
    cols = [np.roll(fields, tuple(-v for v in o), axis=axes) for o in offsets]
    return np.stack(cols, axis=-1).reshape(-1, len(offsets))


def reference_denoise_local(local: np.ndarray, patches: np.ndarray, centre: int, s: float) -> np.ndarray:
    """``sum_a w_a phi_a(0)`` for each row of local patches ``local``."""
    out = np.empty(len(local))
    sq = np.sum(patches**2, axis=1)
    for a in range(0, len(local), 64):
        y = local[a : a + 64]
        dist2 = np.sum(y**2, axis=1)[:, None] - 2.0 * y @ patches.T + sq[None, :]
        logits = -dist2 / (2.0 * s * s)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        out[a : a + 64] = w @ patches[:, centre]
    return out


def reference_denoise(fields: np.ndarray, patches: np.ndarray, offsets, s: float) -> np.ndarray:
    """The patch denoiser on a batch of fields ``(N, *lattice)``."""
    centre = offsets.index((0,) * (fields.ndim - 1))
    return reference_denoise_local(local_windows(fields, offsets), patches, centre, s).reshape(fields.shape)


def fd_jacobian(field: np.ndarray, patches: np.ndarray, offsets, s: float, h: float = 1e-4) -> np.ndarray:
    """Central finite-difference Jacobian ``dD_i/dy_j`` of the whole field (sites in C order)."""
    n = field.size
    eye = np.eye(n).reshape((n,) + field.shape) * h
    plus = reference_denoise(field[None] + eye, patches, offsets, s)
    minus = reference_denoise(field[None] - eye, patches, offsets, s)
    return ((plus - minus) / (2 * h)).reshape(n, n).T  # column j: response to site j


def fd_local_row(local: np.ndarray, patches: np.ndarray, centre: int, s: float, h: float = 1e-4) -> np.ndarray:
    """Central FD of the one-pixel denoiser with respect to each entry of its local patch."""
    n = local.size
    eye = np.eye(n) * h
    plus = reference_denoise_local(local[None] + eye, patches, centre, s)
    minus = reference_denoise_local(local[None] - eye, patches, centre, s)
    return (plus - minus) / (2 * h)


def standardized_digits(n_images: int | None = None) -> np.ndarray:
    """sklearn digits, standardized with one global scalar mean and std."""
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float64)
    x = (x - x.mean()) / x.std()
    return x if n_images is None else x[:n_images]


def gaussian_field(n: int, shape: tuple[int, ...], corr_length: float, rng) -> np.ndarray:
    """Stationary Gaussian fields with spectrum ``exp(-|k|^2 l^2 / 2)``, unit variance."""
    gen = np.random.default_rng(rng)
    k = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(L) for L in shape], indexing="ij")
    k2 = sum(v**2 for v in k)
    amp = np.sqrt(np.exp(-k2 * corr_length**2 / 2))
    white = gen.standard_normal((n,) + shape)
    axes = tuple(range(1, len(shape) + 1))
    field = np.fft.ifftn(np.fft.fftn(white, axes=axes) * amp, axes=axes).real
    return field / field.std()


def binary_texture(n: int, shape: tuple[int, ...], corr_length: float, rng, threshold: float = 0.0,
                   symmetric: bool = False) -> np.ndarray:
    """Thresholded Gaussian field (+-1); ``symmetric`` appends the negatives (exact zero mean)."""
    x = np.where(gaussian_field(n, shape, corr_length, rng) > threshold, 1.0, -1.0)
    return np.concatenate([x, -x]) if symmetric else x


def stripe_images(n: int, size: int, period: int, rng, flip: float = 0.05) -> np.ndarray:
    """Binary stripes varying along the last axis, random phase, a fraction ``flip`` of pixels flipped."""
    gen = np.random.default_rng(rng)
    j = np.arange(size)
    phase = gen.uniform(0, 2 * np.pi, size=n)
    rows = np.where(np.cos(2 * np.pi * j[None, :] / period + phase[:, None] + 1e-3) > 0, 1.0, -1.0)
    x = np.repeat(rows[:, None, :], size, axis=1)
    flips = gen.random(x.shape) < flip
    return np.where(flips, -x, x)


def sawtooth_chains(n: int, length: int, period: int, rng, noise: float = 0.1) -> np.ndarray:
    """1-D ramps that rise over ``period`` sites and drop: not reflection-symmetric."""
    gen = np.random.default_rng(rng)
    j = np.arange(length)
    shift = gen.integers(0, period, size=n)
    ramp = ((j[None, :] + shift[:, None]) % period) / (period - 1)
    return ramp + noise * gen.standard_normal((n, length))


def test_reference_denoiser_matches_an_explicit_loop():
    """The vectorised reference equals the definition written as a loop over pixels and patches."""
    rng = np.random.default_rng(1)
    images = rng.standard_normal((3, 5, 6))
    patches, offsets = all_patches(images, 3)
    field = rng.standard_normal((5, 6))
    s = 0.7
    expected = np.empty_like(field)
    for i in range(5):
        for j in range(6):
            local = np.array([field[(i + a) % 5, (j + b) % 6] for a, b in offsets])
            logits = np.array([-np.sum((local - p) ** 2) / (2 * s * s) for p in patches])
            w = np.exp(logits - logits.max())
            expected[i, j] = np.sum(w * patches[:, offsets.index((0, 0))]) / w.sum()
    got = reference_denoise(field[None], patches, offsets, s)[0]
    # same arithmetic up to summation order: agreement to rounding
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
