"""One string for every data source: ``load_dataset("synthetic:grf?size=32&corr=3")``.

Grammar: ``KIND[:TARGET][?key=value&key=value...]``. ``TARGET`` is a path for file
kinds and a generator name for ``synthetic``. Values may be percent-encoded (write
``%3F`` for a ``?`` and ``%26`` for a ``&`` inside a path). Every kind accepts only
its own parameters, each parsed with its type; anything else is a ValueError that
lists what is allowed. :func:`describe_specs` prints the table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from diffcrit.data.dataset import STANDARDIZATION_MODES, Dataset, _Owned


@dataclass(frozen=True)
class _Param:
    name: str
    type: str  # "int", "float", "bool", "path", "str" or "choice"
    default: Any
    help: str
    choices: tuple[str, ...] = ()


_N_FILE = _Param("n", "int", None, "keep the first n images (default: all)")
_SYNTH_COMMON = (
    _Param("n", "int", 512, "number of fields"),
    _Param("size", "int", 32, "lattice side L (>= 2)"),
    _Param("dim", "int", 2, "lattice dimension, 1 or 2"),
    _Param("seed", "int", 0, "random seed (>= 0)"),
)

# kind -> (target description or None, {target or None: parameters}, help)
_KINDS: dict[str, tuple[str | None, dict[str | None, tuple[_Param, ...]], str]] = {
    "digits": (None, {None: (_N_FILE,)},
               "scikit-learn's bundled 8x8 digits (1797 images, labels 0..9; offline)"),
    "idx": ("PATH", {None: (_Param("labels", "path", None, "IDX file of labels"), _N_FILE)},
            "MNIST/Fashion-MNIST IDX images (raw or gzip, detected by content)"),
    "npy": ("PATH", {None: (_N_FILE,)}, "a .npy array of images (N, H, W) or (N, C, H, W)"),
    "npz": ("PATH", {None: (
        _Param("key", "str", None, "array with the images (default images, x, or the first)"),
        _Param("labels", "str", None, "array with integer labels (default labels or y if present)"),
        _N_FILE)}, "a .npz archive of images (and labels)"),
    "synthetic": ("GENERATOR", {
        "grf": _SYNTH_COMMON + (
            _Param("spectrum", "choice", "gaussian", "spectral shape", ("gaussian", "power")),
            _Param("corr", "float", 3.0, "correlation length in sites"),
            _Param("exponent", "float", 2.0, "power-law exponent (spectrum=power only)"),
            _Param("variance", "float", 1.0, "pixel variance"),
        ),
        "binary": _SYNTH_COMMON + (
            _Param("corr", "float", 3.0, "correlation length of the latent Gaussian field"),
            _Param("threshold", "float", 0.0, "level in latent std units (0: symmetric +-1)"),
            _Param("spectrum", "choice", "gaussian", "latent spectral shape", ("gaussian", "power")),
            _Param("exponent", "float", 2.0, "latent power-law exponent (spectrum=power only)"),
        ),
        "stripes": _SYNTH_COMMON + (
            _Param("wavelength", "float", 4.0, "stripe period in sites (>= 2)"),
            _Param("width", "float", None, "ring width in rad/site (default k0/4)"),
            _Param("binary", "bool", False, "sign of the field (+-1 values)"),
            _Param("variance", "float", 1.0, "pixel variance (1 when binary)"),
        ),
    }, "stationary fields with exactly known spectra"),
}

_TARGET_HELP = {
    "grf": "Gaussian random field (gaussian-kernel or power-law spectrum)",
    "binary": "+-1 texture: sign of a Gaussian field (arcsine-law covariance at threshold 0)",
    "stripes": "stripe texture: Gaussian field with power on the ring |k| = 2 pi / wavelength",
}
_SYNTHETIC_FUNCTIONS = {"grf": "gaussian_random_field", "binary": "binary_texture",
                        "stripes": "stripe_texture"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``kind``, ``target`` (path or generator) and typed ``params``.

    ``params`` holds only the parameters written in the spec.
    """

    kind: str
    target: str | None
    params: dict[str, Any] = field(default_factory=dict)


def _parse_value(where: str, param: _Param, raw: str) -> Any:
    text = raw.strip()
    if param.type == "int":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"{where} parameter '{param.name}': expected an integer, got {raw!r}")
        return int(text)
    if param.type == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{where} parameter '{param.name}': expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{where} parameter '{param.name}': expected a finite number, got {raw!r}")
        return value
    if param.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{where} parameter '{param.name}': expected true or false, got {raw!r}")
    if param.type == "choice":
        if text not in param.choices:
            raise ValueError(f"{where} parameter '{param.name}': expected one of "
                             f"{list(param.choices)}, got {raw!r}")
        return text
    if not raw:
        raise ValueError(f"{where} parameter '{param.name}': expected a non-empty value")
    return raw


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Parse and type-check a spec without loading anything.

    >>> parse_dataset_spec("synthetic:grf?size=16&corr=2.5")
    DatasetSpec(kind='synthetic', target='grf', params={'size': 16, 'corr': 2.5})
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string, got {type(spec).__name__}; {_kinds_line()}")
    if not spec.strip():
        raise ValueError(f"spec must be a non-empty string; {_kinds_line()}")
    spec = spec.strip()
    head, _, query = spec.partition("?")
    kind, colon, target = head.partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ValueError(f"unknown dataset kind {kind!r} in spec {spec!r}; {_kinds_line()}")
    target_name, tables, _ = _KINDS[kind]
    target = unquote(target) if colon else None
    if target_name is None:
        if target:
            raise ValueError(f"spec kind '{kind}' takes no ':{target}' part; write '{kind}' or "
                             f"'{kind}?n=100'")
        target = None
        params_table = tables[None]
    elif not target:
        raise ValueError(f"spec kind '{kind}' needs a {target_name}: write '{kind}:{target_name}'"
                         + (f" with {target_name} one of {list(tables)}" if None not in tables else ""))
    elif None in tables:
        params_table = tables[None]
    else:
        if target not in tables:
            raise ValueError(f"unknown {kind} generator {target!r}; allowed: {list(tables)}")
        params_table = tables[target]
    where = f"{kind}:{target}" if target and kind == "synthetic" else kind
    allowed = {p.name: p for p in params_table}
    params: dict[str, Any] = {}
    for piece in query.split("&") if query else ():
        if not piece:
            continue
        key, equals, raw = piece.partition("=")
        key = unquote(key).strip()
        if not equals:
            raise ValueError(f"{where}: parameter {piece!r} must be written key=value")
        if key not in allowed:
            raise ValueError(f"{where}: unknown parameter {key!r}; allowed: {list(allowed) or 'none'}")
        if key in params:
            raise ValueError(f"{where}: parameter {key!r} given twice")
        params[key] = _parse_value(where, allowed[key], unquote(raw))
    if "exponent" in params and params.get("spectrum", "gaussian") != "power":
        raise ValueError(f"{where}: parameter 'exponent' applies only with spectrum=power")
    return DatasetSpec(kind, target, params)


def _kinds_line() -> str:
    return ("allowed kinds: digits, idx:PATH, npy:PATH, npz:PATH, "
            "synthetic:grf|binary|stripes (see describe_specs())")


def load_dataset(spec: str | DatasetSpec, standardize: str | None = "global") -> Dataset:
    """Load a dataset from a spec string and standardize it.

    Specs (see :func:`describe_specs` for every parameter)::

        digits                                   scikit-learn 8x8 digits
        idx:PATH[?labels=PATH&n=1000]            MNIST-style IDX (raw or gzip)
        npy:PATH[?n=...]                         .npy array
        npz:PATH[?key=images&labels=labels]      .npz archive
        synthetic:grf?size=32&corr=3&n=512&seed=0[&spectrum=power&exponent=2&dim=1]
        synthetic:binary?size=32&corr=3&threshold=0
        synthetic:stripes?wavelength=4[&binary=true]

    Args:
        spec: the spec string (or a parsed :class:`DatasetSpec`).
        standardize: ``"global"`` (default: one scalar mean/std, keeps stationary
            fields stationary), ``"per-pixel"``, ``"none"`` (or None, the same).

    Returns:
        A :class:`Dataset` whose provenance records the spec and whose
        ``standardization`` records the map applied.
    """
    mode = "none" if standardize is None else standardize
    if mode not in STANDARDIZATION_MODES:
        raise ValueError(f"standardize must be one of {list(STANDARDIZATION_MODES)} or None, "
                         f"got {standardize!r}")
    parsed = spec if isinstance(spec, DatasetSpec) else parse_dataset_spec(spec)
    params = dict(parsed.params)
    if parsed.kind == "digits":
        from diffcrit.data.digits import digits

        dataset = digits(n=params.get("n"))
    elif parsed.kind == "idx":
        from diffcrit.data.idx import load_idx

        dataset = load_idx(parsed.target, params.get("labels"), n=params.get("n"))
    elif parsed.kind in ("npy", "npz"):
        from diffcrit.data.arrays import load_array

        dataset = load_array(parsed.target, key=params.get("key"), labels_key=params.get("labels"),
                             n=params.get("n"))
    else:
        from diffcrit.data import synthetic

        generator = getattr(synthetic, _SYNTHETIC_FUNCTIONS[parsed.target])
        defaults = {p.name: p.default for p in _KINDS["synthetic"][1][parsed.target]}
        arguments = {**defaults, **params}
        arguments["rng"] = arguments.pop("seed")
        if parsed.target != "stripes" and arguments["spectrum"] != "power":
            arguments.pop("exponent")
        dataset = generator(**arguments)
    provenance = dict(dataset.provenance)
    provenance["spec"] = spec if isinstance(spec, str) else _format_spec(parsed)
    # The images are read-only and the intermediate dataset is dropped: share, do not copy.
    dataset = Dataset(_Owned(dataset.images), dataset.labels, dataset.name, provenance,
                      dataset.standardization, dataset.dim)
    return dataset.standardize(mode)


def _format_spec(parsed: DatasetSpec) -> str:
    head = parsed.kind + (f":{parsed.target}" if parsed.target else "")
    query = "&".join(f"{k}={v}" for k, v in parsed.params.items())
    return head + (f"?{query}" if query else "")


def describe_specs() -> str:
    """Help text listing every spec kind, its parameters, types and defaults."""
    lines = ["Dataset specs: KIND[:TARGET][?key=value&...] (values may be percent-encoded).", ""]
    for kind, (target_name, tables, text) in _KINDS.items():
        for target, params in tables.items():
            if target_name is None:
                head = kind
            elif target is None:
                head = f"{kind}:{target_name}"
            else:
                head = f"{kind}:{target}"
            lines.append(f"{head}  --  {text if target is None else _TARGET_HELP[target]}")
            for p in params:
                kind_text = "|".join(p.choices) if p.type == "choice" else p.type
                default = "" if p.default is None else f", default {p.default}"
                lines.append(f"    {p.name:<10} {kind_text:<16} {p.help}{default}")
            lines.append("")
    lines.append("Standardization (load_dataset(spec, standardize=...)): "
                 + ", ".join(STANDARDIZATION_MODES) + " (default global).")
    return "\n".join(lines)
