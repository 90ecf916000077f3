"""Numba kernels (private). Each kernel has a plain-numpy twin and an equivalence test."""
