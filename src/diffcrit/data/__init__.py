"""Data sets on periodic lattices: containers, loaders and synthetic fields (numpy only).

Everything that reads data goes through :class:`Dataset` (validated, read-only,
with provenance and an invertible standardization record). Sources:

- :func:`digits`: scikit-learn's bundled 8x8 digits, the embedded default;
- :func:`gaussian_random_field`, :func:`binary_texture`, :func:`stripe_texture`:
  stationary fields whose exact covariance and spectrum are known
  (:func:`exact_covariance`, :func:`exact_power_spectrum`, :func:`field_law`);
- :func:`load_idx` / :func:`read_idx` / :func:`write_idx`: MNIST-style IDX files;
- :func:`load_array`: ``.npy`` / ``.npz`` files;
- :func:`load_dataset`: one spec string for all of them (:func:`describe_specs`).
"""

from diffcrit.data.arrays import load_array
from diffcrit.data.dataset import STANDARDIZATION_MODES, Dataset, Standardization
from diffcrit.data.digits import digits
from diffcrit.data.idx import IdxFormatError, load_idx, read_idx, write_idx
from diffcrit.data.specs import DatasetSpec, describe_specs, load_dataset, parse_dataset_spec
from diffcrit.data.synthetic import (
    BinaryFieldLaw,
    GaussianFieldLaw,
    GaussianKernelSpectrum,
    PowerLawSpectrum,
    RingSpectrum,
    arcsine_law,
    binary_texture,
    exact_covariance,
    exact_mean,
    exact_power_spectrum,
    field_law,
    gaussian_random_field,
    lattice_wavevectors,
    law_from_dict,
    stripe_texture,
    thresholded_covariance,
)

__all__ = [
    "STANDARDIZATION_MODES",
    "BinaryFieldLaw",
    "Dataset",
    "DatasetSpec",
    "GaussianFieldLaw",
    "GaussianKernelSpectrum",
    "IdxFormatError",
    "PowerLawSpectrum",
    "RingSpectrum",
    "Standardization",
    "arcsine_law",
    "binary_texture",
    "describe_specs",
    "digits",
    "exact_covariance",
    "exact_mean",
    "exact_power_spectrum",
    "field_law",
    "gaussian_random_field",
    "lattice_wavevectors",
    "law_from_dict",
    "load_array",
    "load_dataset",
    "load_idx",
    "parse_dataset_spec",
    "read_idx",
    "stripe_texture",
    "thresholded_covariance",
    "write_idx",
]
