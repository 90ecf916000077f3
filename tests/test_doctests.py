"""Run every docstring example of the package (theory functions carry doctests)."""

import doctest
import importlib
import pkgutil

import pytest

import diffcrit

PACKAGES = ["diffcrit", "diffcrit.data", "diffcrit.theory", "diffcrit.numerics", "diffcrit.validation"]


def _modules():
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.ispkg and info.name != "__main__":
                names.append(f"{package_name}.{info.name}")
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_import_is_cheap():
    """`import diffcrit` and the theory layer must not load numba, torch or matplotlib."""
    import subprocess
    import sys

    code = (
        "import sys, diffcrit, diffcrit.data, diffcrit.theory;"
        "import diffcrit.theory.statistics, diffcrit.theory.windows;"
        "heavy=[m for m in ('numba','torch','matplotlib') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"
