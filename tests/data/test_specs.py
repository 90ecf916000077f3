"""Dataset spec strings: parsing, type checking, loading every kind, help text."""

from __future__ import annotations

import re

import numpy as np
import pytest

from diffcrit.data import (
    DatasetSpec,
    binary_texture,
    describe_specs,
    gaussian_random_field,
    load_dataset,
    parse_dataset_spec,
    stripe_texture,
    write_idx,
)


def test_parse_types():
    spec = parse_dataset_spec("synthetic:stripes?size=16&wavelength=5&binary=true&n=8")
    assert spec == DatasetSpec("synthetic", "stripes",
                               {"size": 16, "wavelength": 5.0, "binary": True, "n": 8})
    assert isinstance(spec.params["wavelength"], float)
    assert parse_dataset_spec("digits").params == {}
    assert parse_dataset_spec("idx:/a/b.gz?labels=/a/l.gz&n=5").target == "/a/b.gz"
    assert parse_dataset_spec("npz:/d/x%3Fy.npz?key=a%26b").target == "/d/x?y.npz"
    assert parse_dataset_spec("npz:/d/x.npz?key=a%26b").params == {"key": "a&b"}


@pytest.mark.parametrize("spec, words", [
    ("mnist", "unknown dataset kind 'mnist'.*digits, idx:PATH"),
    ("synthetic:grf?size=3.5", "parameter 'size': expected an integer, got '3.5'"),
    ("synthetic:grf?corr=abc", "parameter 'corr': expected a number"),
    ("synthetic:grf?corr=nan", "expected a finite number"),
    ("synthetic:stripes?binary=maybe", "expected true or false"),
    ("synthetic:grf?spectrum=lorentz", r"expected one of \['gaussian', 'power'\]"),
    ("synthetic:grf?sigma=2", r"unknown parameter 'sigma'; allowed: \['n', 'size'"),
    ("synthetic:grf?size=8&size=9", "given twice"),
    ("synthetic:grf?size", "key=value"),
    ("synthetic:grf?exponent=3", "only with spectrum=power"),
    ("synthetic:ising", r"unknown synthetic generator 'ising'; allowed: \['grf', 'binary', 'stripes'\]"),
    ("synthetic", "needs a GENERATOR"),
    ("idx", "needs a PATH"),
    ("idx:", "needs a PATH"),
    ("digits:foo", "takes no"),
    ("digits?size=3", r"unknown parameter 'size'; allowed: \['n'\]"),
    ("npy:/x.npy?key=a", r"allowed: \['n'\]"),
])
def test_parse_errors_say_what_is_allowed(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_dataset_spec(spec)


def test_non_string_spec():
    with pytest.raises(TypeError, match="spec"):
        parse_dataset_spec(3)
    with pytest.raises(ValueError, match="non-empty"):
        load_dataset("   ")


@pytest.mark.parametrize("spec, direct", [
    ("synthetic:grf?size=12&n=6&seed=3", lambda: gaussian_random_field(6, 12, rng=3)),
    ("synthetic:grf?size=20&n=4&dim=1&spectrum=power&exponent=1.5&corr=2&variance=3&seed=1",
     lambda: gaussian_random_field(4, 20, dim=1, spectrum="power", exponent=1.5, corr=2.0,
                                   variance=3.0, rng=1)),
    ("synthetic:binary?size=10&n=5&threshold=0.4&corr=1.5",
     lambda: binary_texture(5, 10, corr=1.5, threshold=0.4, rng=0)),
    ("synthetic:stripes?size=12&n=3&wavelength=6&width=0.3&binary=1",
     lambda: stripe_texture(3, 12, wavelength=6.0, width=0.3, binary=True, rng=0)),
])
def test_synthetic_specs_equal_direct_calls(spec, direct):
    loaded = load_dataset(spec, standardize="none")
    expected = direct()
    np.testing.assert_array_equal(loaded.images, expected.images)
    assert loaded.provenance["law"] == expected.provenance["law"]
    assert loaded.provenance["spec"] == spec


def test_synthetic_defaults():
    ds = load_dataset("synthetic:grf")
    assert ds.n == 512 and ds.shape == (32, 32)
    assert ds.provenance["params"]["corr"] == 3.0 and ds.provenance["seed"] == 0
    assert ds.standardization.mode == "global"


def test_digits_spec_and_standardization_modes():
    ds = load_dataset("digits?n=50", standardize="per-pixel")
    assert ds.n == 50 and ds.standardization.mode == "per-pixel"
    assert load_dataset("digits?n=5", standardize=None).standardization.mode == "none"
    with pytest.raises(ValueError, match="standardize must be one of"):
        load_dataset("digits", standardize="minmax")


def test_file_specs(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 5), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 2
    image_path = write_idx(tmp_path / "im&ages.gz", images, compress="gzip")
    label_path = write_idx(tmp_path / "labels", labels)
    spec = f"idx:{str(image_path).replace('&', '%26')}?labels={label_path}&n=6"
    ds = load_dataset(spec, standardize="none")
    np.testing.assert_array_equal(ds.images, images[:6])
    np.testing.assert_array_equal(ds.labels, labels[:6])
    npz = tmp_path / "arr.npz"
    np.savez(npz, pixels=images.astype(float), classes=labels)
    ds = load_dataset(f"npz:{npz}?key=pixels&labels=classes")
    assert ds.n == 7 and ds.classes == (0, 1) and ds.standardization.mode == "global"
    npy = tmp_path / "arr.npy"
    np.save(npy, images)
    assert load_dataset(f"npy:{npy}?n=2").n == 2
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_dataset(f"idx:{tmp_path / 'nothing-here'}")


def test_bad_values_fail_before_generation():
    with pytest.raises(ValueError, match="size"):
        load_dataset("synthetic:grf?size=1")
    with pytest.raises(ValueError, match="dim"):
        load_dataset("synthetic:binary?dim=3")
    with pytest.raises(ValueError, match="wavelength"):
        load_dataset("synthetic:stripes?wavelength=1")


def test_describe_specs_lists_every_parameter_the_parser_accepts():
    text = describe_specs()
    for head in ["digits", "idx:PATH", "npy:PATH", "npz:PATH", "synthetic:grf", "synthetic:binary",
                 "synthetic:stripes"]:
        assert head in text
    # Each documented parameter line parses in the spec it is listed under.
    section = None
    checked = 0
    for line in text.splitlines():
        header = re.match(r"^(\S+)(\s+--|$)", line)
        if header and ":" in header.group(1) or line.startswith("digits"):
            section = header.group(1).replace("PATH", "/tmp/x")
            continue
        param = re.match(r"^ {4}(\w+)\s", line)
        if param and section:
            name = param.group(1)
            value = {"spectrum": "power", "binary": "true", "key": "a", "labels": "b"}.get(name, "2")
            extra = "&spectrum=power" if name == "exponent" else ""
            parse_dataset_spec(f"{section}?{name}={value}{extra}")
            checked += 1
    assert checked == 1 + 2 + 1 + 3 + 8 + 8 + 8
