"""Numba denoisers, samplers, simulators and observables (each kernel has a numpy twin)."""
