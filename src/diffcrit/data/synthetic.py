r"""Synthetic stationary fields on periodic lattices, with their exact laws.

Every generator here returns a :class:`~diffcrit.data.Dataset` and records, in its
provenance, the *law* it sampled from: a :class:`GaussianFieldLaw` or a
:class:`BinaryFieldLaw` whose mean, covariance and power spectrum are known exactly
on the finite lattice (not only in the continuum limit), so that theory can be
tested against data whose statistics are not estimated but given.

Conventions (shared with :mod:`diffcrit.theory.statistics`). The lattice is
``(L,)`` (``dim=1``) or ``(L, L)`` (``dim=2``) with periodic boundaries and
``N = L**dim`` sites. Wavevectors are ``k = 2 pi m / L`` with components in
``[-pi, pi)``; arrays over ``k`` or over displacements ``r`` are indexed like
``numpy.fft.fftn`` (``k = 0`` or ``r = 0`` at index 0, ``r`` and ``r + L``
identified). For a stationary field ``y`` with mean ``mu``

* covariance ``C(r) = Cov[y(x), y(x + r)]``,
* power spectrum (structure factor) ``S(k) = E|FFT(y - mu)(k)|^2 / N
  = sum_r C(r) exp(-i k.r)``, and ``C = IFFT(S)``, so ``C(0) = mean_k S(k)``.

A Gaussian field is made by filtering white noise: ``y = IFFT(sqrt(S) * FFT(w))``
with ``w`` i.i.d. ``N(0, 1)``. This is exact: ``y`` is Gaussian with covariance
exactly ``IFFT(S)``, for every ``L``.

Spectral shapes (``f`` below; the law normalizes ``S = variance * f / mean_k f``
so that the pixel variance ``C(0)`` equals ``variance``):

* :class:`GaussianKernelSpectrum` ``(corr)``: ``f(k) = prod_i sum_{m in Z}
  exp(-m^2 / (2 corr^2)) cos(k_i m)``, the lattice Fourier transform of a Gaussian.
  Its covariance is exactly the periodized Gaussian
  ``C(r) = variance * prod_i g(r_i) / g(0)``, ``g(r) = sum_{n in Z}
  exp(-(r + n L)^2 / (2 corr^2))``; on the infinite lattice
  ``C(r) = variance * exp(-|r|^2 / (2 corr^2))``.
* :class:`PowerLawSpectrum` ``(corr, exponent)``: ``f(k) = (q^2 + corr^-2)^(-exponent/2)``,
  ``q^2 = sum_i 4 sin^2(k_i / 2)`` (the symbol of the lattice Laplacian). For
  ``exponent = 2`` this is the lattice Ornstein-Zernike (massive free) field: its
  second-moment correlation length ``sqrt(S(0)/S(k_min) - 1) / (2 sin(|k_min|/2))``
  equals ``corr`` exactly, and in 1-D ``C(r) = variance * cosh(mu (r - L/2)) /
  cosh(mu L / 2)`` with ``cosh(mu) = 1 + 1 / (2 corr^2)``.
* :class:`RingSpectrum` ``(wavelength, width)``: ``f(k) = exp(-(|k| - k0)^2 / (2 width^2))``,
  ``k0 = 2 pi / wavelength``, ``|k|`` the Euclidean norm of ``k`` in ``[-pi, pi)^dim``:
  power on a ring, so ``C(r)`` oscillates with period about ``wavelength`` and
  windowed spectra peak at finite ``k``.

Binary textures are ``b = +1`` where a unit-variance Gaussian field ``y`` exceeds
``threshold`` and ``-1`` elsewhere. With ``rho(r)`` the correlation of ``y`` and
``t`` the threshold, the exact law of ``b`` is (see :func:`thresholded_covariance`)

* ``E b = -erf(t / sqrt 2)``,
* ``C_b(r) = (2/pi) int_0^{arcsin rho(r)} exp(-t^2 / (1 + sin theta)) d theta``,
  which for ``t = 0`` is the arcsine law ``C_b(r) = (2/pi) arcsin rho(r)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from diffcrit._checks import as_generator, check_choice, check_float, check_int
from diffcrit.data.dataset import Dataset, _owned_dataset

SPECTRUM_SHAPES = ("gaussian", "power")
_LEGENDRE_NODES = 96


# ---------------------------------------------------------------------- lattice
def _check_lattice(size: Any, dim: Any) -> tuple[int, int]:
    size = check_int("size", size, minimum=2)
    dim = check_int("dim", dim, allowed=(1, 2))
    return size, dim


def lattice_wavevectors(size: int, dim: int) -> np.ndarray:
    """Wavevectors ``k = 2 pi m / L`` of the periodic lattice, shape ``(L,)*dim + (dim,)``.

    Components lie in ``[-pi, pi)`` and are ordered like ``numpy.fft.fftfreq``.

    >>> lattice_wavevectors(4, 1)[:, 0].round(4).tolist()
    [0.0, 1.5708, -3.1416, -1.5708]
    """
    size, dim = _check_lattice(size, dim)
    axis = 2.0 * np.pi * np.fft.fftfreq(size)
    return np.stack(np.meshgrid(*([axis] * dim), indexing="ij"), axis=-1)


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(values - top), axis=axis))


# ---------------------------------------------------------------------- spectral shapes
@dataclass(frozen=True)
class GaussianKernelSpectrum:
    """Lattice transform of a Gaussian kernel; ``C(r) ∝ exp(-|r|^2 / (2 corr^2))`` (periodized).

    ``f(k) = prod_i sum_{m in Z} exp(-m^2/(2 corr^2)) cos(k_i m)``, evaluated by its
    Poisson-dual form ``sqrt(2 pi) corr sum_j exp(-corr^2 (k_i + 2 pi j)^2 / 2)`` (all
    terms positive, so no cancellation at large ``k``).

    Attributes:
        corr: standard deviation of the Gaussian covariance, in lattice units (> 0).
    """

    corr: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "corr", check_float("corr", self.corr, positive=True))

    def log_shape(self, k: np.ndarray) -> np.ndarray:
        """``log f(k)`` for wavevectors ``k`` of shape ``(..., dim)``."""
        c = self.corr
        # Terms up to |j| = J: the first omitted one is below exp(-40) of the kept ones.
        J = int(math.ceil(9.0 / (2.0 * math.pi * c))) + 2
        j = np.arange(-J, J + 1)
        shifted = k[..., None] + 2.0 * np.pi * j
        per_axis = 0.5 * math.log(2.0 * math.pi) + math.log(c) + _logsumexp(-0.5 * (c * shifted) ** 2, axis=-1)
        return per_axis.sum(axis=-1)

    def to_dict(self) -> dict:
        return {"shape": "gaussian", "corr": self.corr}


@dataclass(frozen=True)
class PowerLawSpectrum:
    """Massive lattice power law ``f(k) = (q^2 + corr^-2)^(-exponent/2)``, ``q^2 = sum 4 sin^2(k_i/2)``.

    Attributes:
        corr: mass scale ``1/m`` in lattice units (> 0); for ``exponent = 2`` the
            second-moment correlation length exactly.
        exponent: decay exponent of the spectrum (>= 0; 0 is white noise).
    """

    corr: float = 3.0
    exponent: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "corr", check_float("corr", self.corr, positive=True))
        object.__setattr__(self, "exponent", check_float("exponent", self.exponent, nonnegative=True))

    def log_shape(self, k: np.ndarray) -> np.ndarray:
        """``log f(k)`` for wavevectors ``k`` of shape ``(..., dim)``."""
        q2 = np.sum(4.0 * np.sin(0.5 * k) ** 2, axis=-1)
        return -0.5 * self.exponent * np.log(q2 + self.corr ** -2)

    def to_dict(self) -> dict:
        return {"shape": "power", "corr": self.corr, "exponent": self.exponent}


@dataclass(frozen=True)
class RingSpectrum:
    """Power concentrated on the ring ``|k| = 2 pi / wavelength``: ``f = exp(-(|k|-k0)^2/(2 width^2))``.

    Attributes:
        wavelength: stripe period in lattice units (>= 2, the Nyquist limit).
        width: standard deviation of the ring in wavenumber (radians per site);
            None means ``k0 / 4``, so the shape does not depend on the wavelength.
    """

    wavelength: float = 4.0
    width: float | None = None

    def __post_init__(self) -> None:
        wavelength = check_float("wavelength", self.wavelength, minimum=2.0)
        object.__setattr__(self, "wavelength", wavelength)
        width = 0.25 * 2.0 * math.pi / wavelength if self.width is None else self.width
        object.__setattr__(self, "width", check_float("width", width, positive=True))

    @property
    def k0(self) -> float:
        """Ring radius ``2 pi / wavelength``."""
        return 2.0 * math.pi / self.wavelength

    def log_shape(self, k: np.ndarray) -> np.ndarray:
        """``log f(k)`` for wavevectors ``k`` of shape ``(..., dim)``."""
        radius = np.sqrt(np.sum(k ** 2, axis=-1))
        return -0.5 * ((radius - self.k0) / self.width) ** 2

    def to_dict(self) -> dict:
        return {"shape": "ring", "wavelength": self.wavelength, "width": self.width}


_SHAPES = {"gaussian": GaussianKernelSpectrum, "power": PowerLawSpectrum, "ring": RingSpectrum}


def _shape_from_dict(record: Mapping[str, Any]):
    record = dict(record)
    name = record.pop("shape", None)
    if name not in _SHAPES:
        raise ValueError(f"spectrum shape must be one of {list(_SHAPES)}, got {name!r}")
    return _SHAPES[name](**record)


# ---------------------------------------------------------------------- laws
@dataclass(frozen=True)
class GaussianFieldLaw:
    """Exact law of a stationary, zero-mean Gaussian field on a periodic lattice.

    ``S(k) = variance * f(k) / mean_k f(k)`` with ``f`` the spectral shape, so that
    ``C(0) = variance`` exactly; ``C = IFFT(S)``.

    Attributes:
        spectrum: a :class:`GaussianKernelSpectrum`, :class:`PowerLawSpectrum` or
            :class:`RingSpectrum`.
        size: lattice side ``L`` (>= 2).
        dim: 1 or 2.
        variance: pixel variance (> 0).

    >>> law = GaussianFieldLaw(PowerLawSpectrum(corr=2.0, exponent=2.0), size=8, dim=1)
    >>> round(float(law.covariance()[0]), 12), law.power_spectrum().shape
    (1.0, (8,))
    """

    spectrum: Any
    size: int
    dim: int = 2
    variance: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.spectrum, tuple(_SHAPES.values())):
            raise TypeError("spectrum must be a GaussianKernelSpectrum, PowerLawSpectrum or "
                            f"RingSpectrum, got {self.spectrum!r}")
        size, dim = _check_lattice(self.size, self.dim)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "variance", check_float("variance", self.variance, positive=True))

    @property
    def lattice(self) -> tuple[int, ...]:
        """Lattice shape ``(L,) * dim``."""
        return (self.size,) * self.dim

    def mean(self) -> float:
        """Pixel mean (0)."""
        return 0.0

    def power_spectrum(self) -> np.ndarray:
        """Exact ``S(k)`` on the lattice wavevectors (fftn order); ``mean_k S = variance``."""
        log_f = self.spectrum.log_shape(lattice_wavevectors(self.size, self.dim))
        f = np.exp(log_f - log_f.max())
        return self.variance * f / f.mean()

    def covariance(self) -> np.ndarray:
        """Exact ``C(r) = IFFT(S)(r)`` (fftn order, ``C(0) = variance``)."""
        return np.real(np.fft.ifftn(self.power_spectrum()))

    def correlation(self) -> np.ndarray:
        """``rho(r) = C(r) / C(0)``."""
        covariance = self.covariance()
        return covariance / covariance.flat[0]

    def sample(self, n: int, rng: Any = 0) -> np.ndarray:
        """Draw ``n`` independent fields, shape ``(n, *lattice)``, by filtering white noise."""
        n = check_int("n", n, minimum=1)
        generator, _ = as_generator(rng)
        amplitude = np.sqrt(self.power_spectrum())[..., : self.size // 2 + 1]
        axes = tuple(range(1, self.dim + 1))
        noise = generator.standard_normal((n, *self.lattice))
        return np.fft.irfftn(np.fft.rfftn(noise, axes=axes) * amplitude, s=self.lattice, axes=axes)

    def to_dict(self) -> dict:
        return {"kind": "gaussian", "size": self.size, "dim": self.dim,
                "variance": self.variance, "spectrum": self.spectrum.to_dict()}


@dataclass(frozen=True)
class BinaryFieldLaw:
    """Exact second-order law of ``b = sign(y - threshold)`` (values +-1), ``y`` a unit-variance GRF.

    Attributes:
        latent: the :class:`GaussianFieldLaw` of ``y`` (its variance must be 1, so
            that ``threshold`` is in units of the latent standard deviation).
        threshold: level ``t``; ``t = 0`` gives a symmetric texture (+-1 equally likely).

    >>> latent = GaussianFieldLaw(GaussianKernelSpectrum(corr=1.5), size=8, dim=1)
    >>> law = BinaryFieldLaw(latent)
    >>> law.mean(), round(float(law.covariance()[0]), 12)
    (0.0, 1.0)
    """

    latent: GaussianFieldLaw
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.latent, GaussianFieldLaw):
            raise TypeError(f"latent must be a GaussianFieldLaw, got {self.latent!r}")
        if self.latent.variance != 1.0:
            raise ValueError(f"latent variance must be 1 (threshold is in latent std units), "
                             f"got {self.latent.variance}")
        object.__setattr__(self, "threshold", check_float("threshold", self.threshold))

    @property
    def size(self) -> int:
        return self.latent.size

    @property
    def dim(self) -> int:
        return self.latent.dim

    @property
    def lattice(self) -> tuple[int, ...]:
        return self.latent.lattice

    def mean(self) -> float:
        """``E b = P(y > t) - P(y < t) = -erf(t / sqrt 2)``."""
        return 0.0 - math.erf(self.threshold / math.sqrt(2.0))  # 0.0 - : no -0.0 at t = 0

    def covariance(self) -> np.ndarray:
        """Exact connected ``C_b(r)`` from the latent correlation (:func:`thresholded_covariance`)."""
        return thresholded_covariance(self.latent.correlation(), self.threshold)

    def power_spectrum(self) -> np.ndarray:
        """Exact connected ``S_b(k) = FFT(C_b)(k)`` (fftn order)."""
        return np.real(np.fft.fftn(self.covariance()))

    def sample(self, n: int, rng: Any = 0) -> np.ndarray:
        """Draw ``n`` textures, shape ``(n, *lattice)``, values exactly +-1."""
        fields = self.latent.sample(n, rng)
        return np.where(fields > self.threshold, 1.0, -1.0)

    def to_dict(self) -> dict:
        return {"kind": "binary", "threshold": self.threshold, "latent": self.latent.to_dict()}


def law_from_dict(record: Mapping[str, Any]) -> GaussianFieldLaw | BinaryFieldLaw:
    """Rebuild a law from its :meth:`to_dict` record (as stored in dataset provenance)."""
    if not isinstance(record, Mapping):
        raise TypeError(f"law record must be a mapping, got {type(record).__name__}")
    kind = record.get("kind")
    if kind == "gaussian":
        return GaussianFieldLaw(_shape_from_dict(record["spectrum"]), record["size"], record["dim"],
                                record["variance"])
    if kind == "binary":
        return BinaryFieldLaw(law_from_dict(record["latent"]), record["threshold"])
    raise ValueError(f"law kind must be 'gaussian' or 'binary', got {kind!r}")


# ---------------------------------------------------------------------- threshold statistics
def arcsine_law(rho: Any) -> np.ndarray:
    """Covariance of ``sign(y1), sign(y2)`` for standard Gaussians of correlation ``rho``.

    ``E[sign y1 sign y2] = (2/pi) arcsin(rho)`` (Van Vleck's arcsine law).

    >>> arcsine_law([0.0, 0.5, 1.0]).round(12).tolist()
    [0.0, 0.333333333333, 1.0]
    """
    return thresholded_covariance(rho, 0.0)


def thresholded_covariance(rho: Any, threshold: float = 0.0) -> np.ndarray:
    """Covariance of ``b_i = sign(y_i - t)`` for standard Gaussians of correlation ``rho``.

    ``Cov(b1, b2) = 4 [P(y1 > t, y2 > t) - P(y > t)^2]`` and
    ``d/d rho P(y1 > t, y2 > t) = exp(-t^2/(1 + rho)) / (2 pi sqrt(1 - rho^2))`` (the
    bivariate density at ``(t, t)``), so with ``rho = sin(theta)``

    ``Cov(b1, b2) = (2/pi) int_0^{arcsin rho} exp(-t^2 / (1 + sin theta)) d theta``,

    evaluated by Gauss-Legendre quadrature (smooth integrand). Special cases:
    ``t = 0`` gives ``(2/pi) arcsin rho``; ``rho = 1`` gives ``1 - erf(t/sqrt 2)^2``;
    ``rho = -1`` gives ``-(1 - erf(|t|/sqrt 2))^2``.

    Args:
        rho: latent correlations, any shape, in ``[-1, 1]`` (rounding up to 1e-12 is clipped).
        threshold: the level ``t`` in units of the latent standard deviation.

    >>> float(thresholded_covariance(1.0, 1.0).round(12)) == round(1 - math.erf(2 ** -0.5) ** 2, 12)
    True
    """
    t = check_float("threshold", threshold)
    rho = np.asarray(rho, dtype=np.float64)
    bad = ~(np.abs(rho) <= 1.0 + 1e-12)  # also catches NaN
    if np.any(bad):
        raise ValueError(f"rho must be finite correlations in [-1, 1], got {int(bad.sum())} "
                         f"value(s) outside, e.g. {rho[bad].flat[0]!r}")
    theta_max = np.arcsin(np.clip(rho, -1.0, 1.0))
    if t == 0.0:
        return (2.0 / np.pi) * theta_max
    nodes, weights = np.polynomial.legendre.leggauss(_LEGENDRE_NODES)
    theta = theta_max[..., None] * (0.5 * (nodes + 1.0))
    with np.errstate(divide="ignore", under="ignore"):
        integrand = np.exp(-t * t / (1.0 + np.sin(theta)))
    return (2.0 / np.pi) * 0.5 * theta_max * (integrand @ weights)


# ---------------------------------------------------------------------- exact statistics of a source
def field_law(source: Any) -> GaussianFieldLaw | BinaryFieldLaw:
    """The law a synthetic dataset was drawn from (or ``source`` itself if it is a law).

    Raises:
        ValueError: ``source`` is a dataset that was not generated by this module.
    """
    if isinstance(source, (GaussianFieldLaw, BinaryFieldLaw)):
        return source
    if isinstance(source, Dataset):
        record = source.provenance.get("law")
        if record is None:
            raise ValueError(f"dataset '{source.name}' has no exact law: only synthetic data "
                             "(gaussian_random_field, binary_texture, stripe_texture) carry one")
        return law_from_dict(record)
    if isinstance(source, Mapping):
        return law_from_dict(source.get("law", source))
    raise TypeError(f"source must be a synthetic Dataset, a law or a law record, got {type(source).__name__}")


def _affine(source: Any) -> tuple[float, float]:
    """(shift, scale) of the standardization applied to a dataset: z = (y - shift) / scale."""
    record = source.standardization if isinstance(source, Dataset) else None
    if record is None or record.mode == "none":
        return 0.0, 1.0
    if record.mode != "global":
        raise ValueError(f"dataset '{source.name}' is standardized per pixel, which breaks "
                         "stationarity; its exact spectrum is not defined (use mode 'global')")
    return record.mean, record.std


def exact_mean(source: Any) -> float:
    """Exact pixel mean of a synthetic source, in the dataset's (standardized) units."""
    shift, scale = _affine(source)
    return (field_law(source).mean() - shift) / scale


def exact_covariance(source: Any) -> np.ndarray:
    """Exact ``C(r)`` of a synthetic source (fftn order, ``r = 0`` at index 0).

    For a dataset standardized with mode ``"global"`` the recorded ``mean``/``std`` are
    treated as fixed constants: the result is the law of ``(y - mean)/std`` for a
    fresh draw ``y``, i.e. ``C / std^2``.
    """
    _, scale = _affine(source)
    return field_law(source).covariance() / scale ** 2


def exact_power_spectrum(source: Any) -> np.ndarray:
    """Exact connected ``S(k) = E|FFT(y - mu)(k)|^2 / N`` of a synthetic source (fftn order).

    Standardized datasets: as :func:`exact_covariance`, ``S / std^2``.
    """
    _, scale = _affine(source)
    return field_law(source).power_spectrum() / scale ** 2


# ---------------------------------------------------------------------- generators
def _generate(law, n: Any, rng: Any, generator_name: str, params: dict, name: str) -> Dataset:
    n = check_int("n", n, minimum=1)
    generator, seed = as_generator(rng)
    images = law.sample(n, generator)
    provenance = {"source": "synthetic", "generator": generator_name,
                  "params": {"n": n, **params}, "seed": seed, "law": law.to_dict()}
    if seed is None:
        provenance["rng"] = "numpy.random.Generator passed by the caller (seed not recorded)"
    return _owned_dataset(images, name=name, provenance=provenance)


def _latent_shape(spectrum: Any, corr: Any, exponent: Any):
    spectrum = check_choice("spectrum", spectrum, SPECTRUM_SHAPES)
    if spectrum == "gaussian":
        return GaussianKernelSpectrum(corr)
    return PowerLawSpectrum(corr, exponent)


def gaussian_random_field(n: int, size: int, dim: int = 2, spectrum: str = "gaussian",
                          corr: float = 3.0, exponent: float = 2.0, variance: float = 1.0,
                          rng: Any = 0) -> Dataset:
    """Stationary zero-mean Gaussian fields with an exactly known spectrum.

    ``spectrum="gaussian"``: covariance exactly the periodized Gaussian
    ``C(r) = variance * prod_i g(r_i)/g(0)``, ``g(r) = sum_n exp(-(r + nL)^2/(2 corr^2))``
    (``= variance * exp(-|r|^2/(2 corr^2))`` on the infinite lattice).
    ``spectrum="power"``: ``S(k) ∝ (q^2 + corr^-2)^(-exponent/2)``,
    ``q^2 = sum_i 4 sin^2(k_i/2)``; for ``exponent=2`` the second-moment correlation
    length is exactly ``corr``. In both cases ``S = variance * f / mean_k f``, so the
    pixel variance is exactly ``variance`` (see the module docstring).

    Args:
        n: number of fields (>= 1).
        size: lattice side ``L`` (>= 2).
        dim: 1 (chain ``(n, L)``) or 2 (images ``(n, L, L)``).
        spectrum: ``"gaussian"`` or ``"power"``.
        corr: correlation length in lattice units (> 0).
        exponent: power-law exponent (>= 0; ignored for ``"gaussian"``).
        variance: pixel variance (> 0).
        rng: numpy Generator or int seed.

    Returns:
        An unlabelled, unstandardized :class:`Dataset`; ``field_law(ds)`` gives the law,
        :func:`exact_power_spectrum` / :func:`exact_covariance` its exact statistics.
    """
    size, dim = _check_lattice(size, dim)
    law = GaussianFieldLaw(_latent_shape(spectrum, corr, exponent), size, dim, variance)
    params = {"size": size, "dim": dim, "spectrum": spectrum, "corr": law.spectrum.corr,
              "variance": law.variance}
    if spectrum == "power":
        params["exponent"] = law.spectrum.exponent
    return _generate(law, n, rng, "gaussian_random_field", params, "grf")


def binary_texture(n: int, size: int, dim: int = 2, corr: float = 3.0, threshold: float = 0.0,
                   spectrum: str = "gaussian", exponent: float = 2.0, rng: Any = 0) -> Dataset:
    """Binary (+-1) textures ``b = sign(y - threshold)`` of a unit-variance Gaussian field ``y``.

    ``y`` is :func:`gaussian_random_field` with the same ``spectrum``, ``corr`` and
    ``exponent``. Exact law (:class:`BinaryFieldLaw`): mean ``-erf(t/sqrt 2)`` and
    covariance ``(2/pi) int_0^{arcsin rho(r)} exp(-t^2/(1 + sin theta)) d theta``, the
    arcsine law ``(2/pi) arcsin rho(r)`` for ``threshold = 0`` (symmetric: +-1 equally
    likely). The texture is non-Gaussian.

    Args:
        n, size, dim, corr, spectrum, exponent, rng: as :func:`gaussian_random_field`.
        threshold: level ``t`` in units of the latent standard deviation (finite).
    """
    size, dim = _check_lattice(size, dim)
    latent = GaussianFieldLaw(_latent_shape(spectrum, corr, exponent), size, dim, 1.0)
    law = BinaryFieldLaw(latent, threshold)
    params = {"size": size, "dim": dim, "spectrum": spectrum, "corr": latent.spectrum.corr,
              "threshold": law.threshold}
    if spectrum == "power":
        params["exponent"] = latent.spectrum.exponent
    return _generate(law, n, rng, "binary_texture", params, "binary_texture")


def stripe_texture(n: int, size: int, dim: int = 2, wavelength: float = 4.0,
                   width: float | None = None, binary: bool = False, variance: float = 1.0,
                   rng: Any = 0) -> Dataset:
    """Stripe (labyrinth) textures: a Gaussian field with power on the ring ``|k| = 2 pi/wavelength``.

    ``S(k) = variance * f / mean_k f`` with ``f = exp(-(|k| - k0)^2/(2 width^2))``,
    ``k0 = 2 pi / wavelength``. The covariance oscillates (negative near half a
    wavelength), so windowed spectra peak at finite ``k``. With ``binary=True`` the
    texture is the sign of the unit-variance field (threshold 0; exact covariance by
    the arcsine law).

    Args:
        n, size, dim, rng: as :func:`gaussian_random_field`.
        wavelength: stripe period in lattice units (>= 2).
        width: ring width in radians per site (> 0); None means ``k0 / 4``.
        binary: return +-1 textures.
        variance: pixel variance of the Gaussian field (must be 1 when ``binary``).
    """
    size, dim = _check_lattice(size, dim)
    if not isinstance(binary, bool):
        raise TypeError(f"binary must be a bool, got {binary!r}")
    shape = RingSpectrum(wavelength, width)
    variance = check_float("variance", variance, positive=True)
    if binary and variance != 1.0:
        raise ValueError(f"variance must be 1 for binary stripes (values are +-1), got {variance}")
    latent = GaussianFieldLaw(shape, size, dim, variance)
    law = BinaryFieldLaw(latent, 0.0) if binary else latent
    params = {"size": size, "dim": dim, "wavelength": shape.wavelength, "width": shape.width,
              "binary": binary, "variance": variance}
    return _generate(law, n, rng, "stripe_texture", params, "stripe_texture")
