"""diffcrit: the physics of pattern formation in generative diffusion models.

Three layers under one import root:

- :mod:`diffcrit.theory`: symbolic derivations (sympy) and their numeric evaluation;
- :mod:`diffcrit.numerics`: Numba denoisers, samplers, simulators, observables;
- :mod:`diffcrit.validation`: probes of trained networks, experiments, reports, CLI.

:mod:`diffcrit.data` sits below all three (numpy only): every layer reads data.
``import diffcrit`` is cheap: numba, torch and matplotlib load only where used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
