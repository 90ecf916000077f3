"""A small fully convolutional denoiser on a periodic lattice (experiment E2).

THEORY.md 5 (E2) compares a trained network with the patch theory at the window
equal to the network's receptive field, so the network is built to have the two
properties that theory assumes, exactly:

* **translation equivariance** on a periodic lattice of any size: every layer is a
  convolution with circular padding or a pointwise map, there is no positional
  input and no normalization over space (below), so ``D(roll(y)) = roll(D(y))``;
* **a known receptive field**: ``depth`` convolutions of odd kernel size ``k``
  make output pixel ``i`` a function of the input on the ``P x P`` periodic window
  around ``i`` only, ``P = 1 + depth (k - 1)`` (:attr:`receptive_field`).

**Model.** With the EDM preconditioning (Karras, Aittala, Aila & Laine 2022,
"Elucidating the Design Space of Diffusion-Based Generative Models", section 5
and table 1), in the VE-equivalent variables ``y = x_0 + s eps``:

    D(y; s) = c_skip(s) y + c_out(s) F(c_in(s) y; c_noise(s)),
    c_skip = sd^2 / (s^2 + sd^2),   c_out = s sd / sqrt(s^2 + sd^2),
    c_in = 1 / sqrt(s^2 + sd^2),    c_noise = ln(s) / 4,

``sd = sigma_data``. ``F`` is ``depth`` circular convolutions; after each hidden
one a per-channel FiLM (scale and shift) computed from ``c_noise`` by a small MLP
on Fourier features, then SiLU:

    h_1 = conv_1(c_in y),  h_l = conv_l(SiLU(h_{l-1} (1 + a_{l-1}(c_noise)) + b_{l-1}(c_noise))),
    F = h_depth  (one output channel).

The FiLM coefficients ``a_l, b_l`` depend on the noise level only, one number
per channel, so they act identically at every pixel: locality and equivariance
are kept. The FiLM heads start at zero (the network starts noise-independent
apart from the preconditioning).

``forward(y, s)`` returns ``D``, the estimate of ``x_0``: in the project's torch
adapter this is parametrization ``"x0"`` with conditioning ``"s"``.

torch is imported lazily: importing this module does not import torch; the class
:class:`PeriodicConvDenoiser` is built on first use
(:func:`make_periodic_conv_denoiser`, or attribute access on this module).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from diffcrit._checks import check_float, check_int

__all__ = [
    "PeriodicConvDenoiser",
    "make_periodic_conv_denoiser",
    "periodic_conv_denoiser_from_config",
    "receptive_field",
    "edm_preconditioning",
    "save_denoiser",
    "load_denoiser",
]

ARCHITECTURE = "periodic-conv-denoiser"
_FILE_FORMAT = "diffcrit.periodic-conv-denoiser"
_FILE_VERSION = 1


def _import_torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the convolutional denoiser needs PyTorch; install it with "
                          "`pip install diffcrit[torch]`") from error
    return torch


def receptive_field(depth: int, kernel_size: int = 3) -> int:
    """Side ``P = 1 + depth (kernel_size - 1)`` of the window one output pixel sees.

    >>> receptive_field(4, 3), receptive_field(2, 5)
    (9, 9)
    """
    depth = check_int("depth", depth, minimum=1)
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    return 1 + depth * (kernel_size - 1)


def edm_preconditioning(s: float, sigma_data: float = 1.0) -> dict[str, float]:
    """The EDM coefficients at noise level ``s`` (Karras et al. 2022, table 1).

    >>> c = edm_preconditioning(1.0, 1.0)
    >>> round(c["c_skip"], 6), round(c["c_out"], 6), round(c["c_in"], 6), c["c_noise"]
    (0.5, 0.707107, 0.707107, 0.0)
    """
    s = check_float("s", s, positive=True)
    sd = check_float("sigma_data", sigma_data, positive=True)
    total = s * s + sd * sd
    return {"c_skip": sd * sd / total, "c_out": s * sd / math.sqrt(total),
            "c_in": 1.0 / math.sqrt(total), "c_noise": math.log(s) / 4.0}


def _check_config(depth: Any, channels: Any, kernel_size: Any, sigma_data: Any, seed: Any,
                  n_fourier: Any, embed_dim: Any) -> dict[str, Any]:
    depth = check_int("depth", depth, minimum=2)  # at least one hidden layer
    channels = check_int("channels", channels, minimum=1)
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred window), got {kernel_size}")
    sigma_data = check_float("sigma_data", sigma_data, positive=True)
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
    n_fourier = check_int("n_fourier", n_fourier, minimum=1)
    embed_dim = check_int("embed_dim", embed_dim, minimum=1)
    return {"architecture": ARCHITECTURE, "depth": depth, "channels": channels,
            "kernel_size": kernel_size, "sigma_data": sigma_data, "n_fourier": n_fourier,
            "embed_dim": embed_dim, "activation": "silu", "seed": seed,
            "receptive_field": 1 + depth * (kernel_size - 1)}


_CLASS_CACHE: dict[str, type] = {}


def _denoiser_class() -> type:
    """Build (once) and return the ``torch.nn.Module`` subclass."""
    if "cls" in _CLASS_CACHE:
        return _CLASS_CACHE["cls"]
    torch = _import_torch()
    nn = torch.nn

    class PeriodicConvDenoiser(nn.Module):
        """EDM-preconditioned fully convolutional denoiser on a periodic lattice.

        ``D(y; s) = c_skip(s) y + c_out(s) F(c_in(s) y; c_noise(s))`` (Karras et al.
        2022, section 5), ``F`` a stack of circular convolutions with per-channel
        FiLM noise conditioning and SiLU; exactly translation-equivariant with
        receptive field ``1 + depth (kernel_size - 1)`` (see the module docstring).
        Build it with :func:`make_periodic_conv_denoiser`.
        """

        def __init__(self, config: dict[str, Any]):
            super().__init__()
            self._config = dict(config)
            depth, channels, k = config["depth"], config["channels"], config["kernel_size"]
            widths = [1] + [channels] * (depth - 1) + [1]
            # Circular padding makes the lattice a torus: no border, no position.
            # No GroupNorm/BatchNorm/LayerNorm/attention anywhere: each of them mixes
            # statistics over the whole image into every pixel, which would make an
            # output pixel depend on input pixels outside its window (the receptive
            # field would be the whole lattice and would change with its size).
            self.convs = nn.ModuleList(
                nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2, padding_mode="circular")
                for i in range(depth))
            n_f, embed = config["n_fourier"], config["embed_dim"]
            # Fixed (not trained) angular frequencies spanning c_noise in about [-2, 2].
            self.register_buffer("frequencies", 2.0 ** torch.linspace(0.0, 5.0, n_f), persistent=False)
            self.embedding = nn.Sequential(
                nn.Linear(1 + 2 * n_f, embed), nn.SiLU(), nn.Linear(embed, embed), nn.SiLU())
            self.film = nn.Linear(embed, 2 * channels * (depth - 1))
            nn.init.zeros_(self.film.weight)  # starts as the identity modulation
            nn.init.zeros_(self.film.bias)
            self.activation = nn.SiLU()

        @property
        def config(self) -> dict[str, Any]:
            """The hyperparameters (a copy), enough to rebuild the architecture."""
            return dict(self._config)

        @property
        def sigma_data(self) -> float:
            """The data scale ``sd`` of the preconditioning."""
            return float(self._config["sigma_data"])

        @property
        def depth(self) -> int:
            return int(self._config["depth"])

        @property
        def kernel_size(self) -> int:
            return int(self._config["kernel_size"])

        @property
        def receptive_field(self) -> int:
            """Side ``1 + depth (kernel_size - 1)`` of the periodic window one output pixel sees."""
            return 1 + self.depth * (self.kernel_size - 1)

        def _noise_levels(self, s: Any, batch: int, like) -> Any:
            s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
            if s.ndim == 0:
                s = s.expand(batch)
            if s.shape != (batch,):
                raise ValueError(f"s must be a scalar or have shape ({batch},) for a batch of {batch}, "
                                 f"got shape {tuple(s.shape)}")
            if not bool(torch.all(torch.isfinite(s) & (s > 0))):
                bad = s[~(torch.isfinite(s) & (s > 0))][:4].tolist()
                raise ValueError(f"s must be finite and > 0 (ln s conditions the network), got {bad}")
            return s

        def preconditioning(self, s: Any) -> tuple[Any, Any, Any, Any]:
            """``(c_skip, c_out, c_in, c_noise)`` at the noise levels ``s`` (tensors shaped like ``s``)."""
            s = torch.as_tensor(s)
            sd = self.sigma_data
            total = s * s + sd * sd
            return sd * sd / total, s * sd / torch.sqrt(total), 1.0 / torch.sqrt(total), torch.log(s) / 4.0

        def noise_embedding(self, c_noise: Any) -> Any:
            """The MLP features ``(B, embed_dim)`` of ``c_noise`` ``(B,)``."""
            angles = c_noise[:, None] * self.frequencies.to(c_noise.dtype)[None, :]
            features = torch.cat([c_noise[:, None], torch.sin(angles), torch.cos(angles)], dim=1)
            return self.embedding(features)

        def inner(self, x: Any, c_noise: Any) -> Any:
            """The raw network ``F(x; c_noise)``: ``x`` ``(B, 1, H, W)``, ``c_noise`` ``(B,)``."""
            film = self.film(self.noise_embedding(c_noise))
            scales, shifts = film.view(x.shape[0], 2, self.depth - 1, -1).unbind(1)
            h = x
            for layer, conv in enumerate(self.convs):
                h = conv(h)
                if layer < self.depth - 1:
                    h = h * (1.0 + scales[:, layer, :, None, None]) + shifts[:, layer, :, None, None]
                    h = self.activation(h)
            return h

        def forward(self, y: Any, s: Any) -> Any:
            """``D(y; s)``, the estimate of ``x_0``.

            Args:
                y: noisy fields ``(B, 1, H, W)`` in the VE-equivalent variables.
                s: noise levels ``(B,)`` or a scalar (> 0).

            Returns:
                ``(B, 1, H, W)``, the same dtype as ``y``.
            """
            if y.ndim != 4 or y.shape[1] != 1:
                raise ValueError(f"y must have shape (B, 1, H, W), got {tuple(y.shape)}")
            s = self._noise_levels(s, y.shape[0], y)
            c_skip, c_out, c_in, c_noise = self.preconditioning(s)
            view = (-1, 1, 1, 1)
            return c_skip.view(view) * y + c_out.view(view) * self.inner(c_in.view(view) * y, c_noise)

        def extra_repr(self) -> str:
            c = self._config
            return (f"depth={c['depth']}, channels={c['channels']}, kernel_size={c['kernel_size']}, "
                    f"receptive_field={self.receptive_field}, sigma_data={c['sigma_data']:g}")

    PeriodicConvDenoiser.__module__ = __name__
    PeriodicConvDenoiser.__qualname__ = "PeriodicConvDenoiser"
    _CLASS_CACHE["cls"] = PeriodicConvDenoiser
    return PeriodicConvDenoiser


def __getattr__(name: str) -> Any:
    # PEP 562: `PeriodicConvDenoiser` exists only once torch is imported.
    if name == "PeriodicConvDenoiser":
        return _denoiser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_periodic_conv_denoiser(depth: int, channels: int, kernel_size: int = 3,
                                sigma_data: float = 1.0, seed: int | None = None, *,
                                n_fourier: int = 8, embed_dim: int = 64):
    """Build a :class:`PeriodicConvDenoiser` (float32, CPU, PyTorch's default initialization).

    Args:
        depth: number of convolutions (>= 2: at least one hidden layer).
        channels: hidden channels.
        kernel_size: odd kernel side ``k``; receptive field ``1 + depth (k - 1)``.
        sigma_data: the data scale ``sd`` of the EDM preconditioning (1 for
            standardized data).
        seed: seed of the initial weights (drawn from a forked global torch RNG,
            which is left untouched); ``None``: the current global torch RNG.
        n_fourier: number of Fourier frequencies of ``c_noise`` fed to the MLP.
        embed_dim: width of the noise-embedding MLP.

    Returns:
        The module (in training mode, as any new module).

    Raises:
        ValueError, TypeError: bad hyperparameters.
        ImportError: torch is not installed.
    """
    config = _check_config(depth, channels, kernel_size, sigma_data, seed, n_fourier, embed_dim)
    return periodic_conv_denoiser_from_config(config)


def periodic_conv_denoiser_from_config(config: dict[str, Any]):
    """Rebuild a :class:`PeriodicConvDenoiser` from its ``config`` (fresh weights from ``config['seed']``)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if config.get("architecture", ARCHITECTURE) != ARCHITECTURE:
        raise ValueError(f"config describes architecture {config.get('architecture')!r}, not {ARCHITECTURE!r}")
    missing = [key for key in ("depth", "channels", "kernel_size", "sigma_data") if key not in config]
    if missing:
        raise ValueError(f"config lacks {missing}")
    checked = _check_config(config["depth"], config["channels"], config["kernel_size"], config["sigma_data"],
                            config.get("seed"), config.get("n_fourier", 8), config.get("embed_dim", 64))
    torch = _import_torch()
    cls = _denoiser_class()
    if checked["seed"] is None:
        return cls(checked)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(checked["seed"])
        return cls(checked)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary sibling of ``path``, then rename it onto ``path``."""
    torch = _import_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _check_path(name: str, path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {path!r} ({type(path).__name__})")
    return Path(path)


def save_denoiser(net: Any, path: str | os.PathLike) -> Path:
    """Write ``net``'s config, dtype and weights to one file, atomically.

    Args:
        net: a :class:`PeriodicConvDenoiser`.
        path: target file (parent folders are created).

    Returns:
        The path written.
    """
    path = _check_path("path", path)
    cls = _denoiser_class()
    if not isinstance(net, cls):
        raise TypeError(f"net must be a PeriodicConvDenoiser, got {type(net).__name__}")
    dtype = str(next(net.parameters()).dtype).removeprefix("torch.")
    state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
    return atomic_torch_save({"format": _FILE_FORMAT, "version": _FILE_VERSION, "config": net.config,
                              "dtype": dtype, "state_dict": state}, path)


def load_denoiser(path: str | os.PathLike, map_location: Any = "cpu"):
    """Read a file written by :func:`save_denoiser`; the module is returned in eval mode.

    Args:
        path: the file.
        map_location: device for the weights (as in ``torch.load``; a str or
            ``torch.device`` also places the module there).
    """
    path = _check_path("path", path)
    torch = _import_torch()
    if not path.is_file():
        raise FileNotFoundError(f"no denoiser file at {str(path)!r}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FILE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a file written by save_denoiser")
    if payload.get("version") != _FILE_VERSION:
        raise ValueError(f"{str(path)!r} has format version {payload.get('version')!r}; "
                         f"this version reads {_FILE_VERSION}")
    # Any fixed seed: the initial weights are overwritten, and the fork leaves the
    # caller's global RNG untouched.
    net = periodic_conv_denoiser_from_config(dict(payload["config"], seed=0))
    net.to(dtype=getattr(torch, payload["dtype"]))
    net.load_state_dict(payload["state_dict"])
    net._config = dict(payload["config"])  # keep the recorded init seed
    if isinstance(map_location, (str, torch.device)):
        net.to(map_location)
    return net.eval()
