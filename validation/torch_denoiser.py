"""Any trained PyTorch diffusion network as a denoiser ``D(y; s)`` with exact Jacobians.

A network trained on the forward process ``x_t = alpha(t) x_0 + sigma(t) eps`` of a
schedule (THEORY.md 1) is wrapped into the VE-equivalent denoiser of
:mod:`diffcrit.numerics.denoisers`,

    ``D(y; s) = E[x_0 | y]``,   ``y = x_t / alpha``,   ``s = sigma / alpha``,

so the samplers (:func:`diffcrit.numerics.samplers.sample`) and the Jacobian probes
(:func:`diffcrit.numerics.jacobian_probes.fourier_jacobian_spectrum`) treat it like
any analytic model. For a noise level ``s`` the adapter finds the schedule time
``t = t(s)`` and ``alpha = alpha(t)``, sets ``sigma = alpha s``, evaluates the network
at ``x_t = alpha y`` with its conditioning value ``c`` (below), and maps the output
``f`` back by an affine map that depends on what the network predicts:

    ``D(y; s) = a y + b f(alpha y, c)``.

**Parametrizations** (``a``, ``b`` from :func:`parametrization_coefficients`). Every
map is an identity of the forward process that holds for each pair ``(x_0, eps)``;
being affine in the target, it holds for posterior means too (Tweedie), so an exact
network gives the exact ``D``:

- ``"eps"`` (noise; aliases ``"epsilon"``, ``"noise"``): ``x_0 = (x_t - sigma eps)/alpha``,
  hence ``D = y - s eps_hat`` (``a = 1``, ``b = -sigma/alpha = -s``).
- ``"x0"`` (clean-data estimate; aliases ``"sample"``, ``"data"``): ``D = x0_hat``
  (``a = 0``, ``b = 1``).
- ``"v"`` (alias ``"v_prediction"``), ``v = alpha eps - sigma x_0``:
  ``alpha x_t - sigma v = (alpha^2 + sigma^2) x_0``, hence
  ``D = (alpha^2 y - sigma v_hat)/(alpha^2 + sigma^2)`` for any ``alpha, sigma``
  (``a = alpha^2/(alpha^2 + sigma^2)``, ``b = -sigma/(alpha^2 + sigma^2)``; for VP
  schedules ``alpha^2 + sigma^2 = 1``).
- ``"score"`` (``grad_{x_t} log p_t``): the conditional score is
  ``-(x_t - alpha x_0)/sigma^2``, so ``x_0 = (x_t + sigma^2 score)/alpha`` and
  ``D = y + (sigma^2/alpha) score_hat`` (``a = 1``, ``b = sigma^2/alpha``).

The names ``"epsilon"``, ``"sample"`` and ``"v_prediction"`` are the
``prediction_type`` values of the ``diffusers`` library.

**Conditioning** (the network's second argument, a ``(B,)`` tensor filled with one
value): ``"t"`` the schedule time ``t(s)``; ``"sigma"`` ``sigma(t)``; ``"s"`` the
VE-equivalent level itself; ``"log_s_quarter"`` EDM's ``c_noise = ln(s)/4``
(Karras et al. 2022, Table 1; there ``alpha = 1`` and ``s = sigma``); ``"index"``
the DDPM step index of a discrete schedule whose clock is ``t = (i + 1)/T``, i.e.
``i = T t - 1``, fractional between steps (interpolated as the schedule does,
linearly in ``ln s``); or a callable ``f(t, sigma, alpha, s) -> float``.

**Jacobians.** ``J = dD/dy = a I + b alpha (df/dx_t)`` is computed by automatic
differentiation of the whole map ``y -> D(y; s)``: :meth:`TorchDenoiser.jvp` gives
``J v`` in forward mode (:func:`torch.func.jvp`) and falls back to the double
vector-Jacobian product (``g(u) = J^T u`` is linear in ``u``, so the VJP of ``g``
with cotangent ``v`` is ``J v``) for networks without forward-mode support (for
example a custom ``autograd.Function`` without a ``jvp``); :meth:`TorchDenoiser.vjp`
gives ``J^T u`` by reverse mode. Both are exact up to rounding, batched and chunked,
with the calling convention of :mod:`diffcrit.numerics.jacobian_probes`.
:func:`torch.func.jvp` refuses networks that read a tensor's storage inside
``forward`` (``.numpy()``; ``.item()`` and ``.tolist()`` are fine); with
``jvp_method="auto"`` those take the double VJP, which is exact too.

torch is optional (``pip install diffcrit[torch]``): this module imports it only
when a :class:`TorchDenoiser` is built; :func:`parametrization_coefficients` and
:func:`network_inputs` are plain Python.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from diffcrit.theory.schedules import Schedule, get_schedule

__all__ = [
    "PARAMETRIZATIONS",
    "CONDITIONINGS",
    "JVP_METHODS",
    "NetworkInputs",
    "TorchDenoiser",
    "canonical_parametrization",
    "network_inputs",
    "parametrization_coefficients",
]

#: What a network may predict (canonical names).
PARAMETRIZATIONS = ("eps", "x0", "v", "score")
_PARAMETRIZATION_ALIASES = {
    "eps": "eps",
    "epsilon": "eps",
    "noise": "eps",
    "x0": "x0",
    "sample": "x0",
    "data": "x0",
    "v": "v",
    "v_prediction": "v",
    "score": "score",
}
#: Named conditionings (a callable ``f(t, sigma, alpha, s)`` is also allowed).
CONDITIONINGS = ("t", "sigma", "s", "log_s_quarter", "index")
#: How :meth:`TorchDenoiser.jvp` differentiates: forward mode, the double VJP, or
#: forward mode with the double VJP as fallback.
JVP_METHODS = ("auto", "forward", "double_vjp")
_DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64"}
# Relative slack on the ends of the schedule's noise range: s(t_max) computed by the
# forward map may exceed the stored s_max by a few ulp (same slack as the schedules).
_RANGE_SLACK = 1e-12


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TorchDenoiser needs PyTorch; install it with `pip install diffcrit[torch]`"
        ) from error
    return torch


# --------------------------------------------------------------------------- pure maps


def canonical_parametrization(parametrization: Any) -> str:
    """The canonical name (one of :data:`PARAMETRIZATIONS`) of a parametrization.

    >>> canonical_parametrization("v_prediction")
    'v'

    Raises:
        ValueError: unknown name (the message lists the allowed ones).
    """
    key = parametrization.strip().lower() if isinstance(parametrization, str) else None
    if key not in _PARAMETRIZATION_ALIASES:
        raise ValueError(
            f"parametrization={parametrization!r} is not allowed; allowed: "
            f"{sorted(_PARAMETRIZATION_ALIASES)} (canonical: {list(PARAMETRIZATIONS)})"
        )
    return _PARAMETRIZATION_ALIASES[key]


def parametrization_coefficients(parametrization: str, alpha: Any, sigma: Any) -> tuple[Any, Any]:
    """``(a, b)`` with ``D(y; s) = a y + b f`` for a network output ``f`` at ``x_t = alpha y``.

    Pure arithmetic, so ``alpha`` and ``sigma`` may be floats, arrays or sympy
    symbols (the derivation in the module docstring is checked symbolically that way).

    Args:
        parametrization: ``"eps"``, ``"x0"``, ``"v"`` or ``"score"`` (or an alias).
        alpha: signal scale ``alpha(t)``.
        sigma: noise scale ``sigma(t)``.

    >>> parametrization_coefficients("eps", 0.5, 2.0)  # D = y - (sigma/alpha) eps
    (1.0, -4.0)
    >>> parametrization_coefficients("v", 1.0, 2.0)  # D = (alpha^2 y - sigma v)/(alpha^2 + sigma^2)
    (0.2, -0.4)
    """
    name = canonical_parametrization(parametrization)
    if name == "eps":
        return 1.0, -sigma / alpha
    if name == "x0":
        return 0.0, 1.0
    if name == "v":
        norm = alpha**2 + sigma**2
        return alpha**2 / norm, -sigma / norm
    return 1.0, sigma**2 / alpha  # score


@dataclass(frozen=True, repr=False)
class NetworkInputs:
    """How one noise level ``s`` maps to a network call and back.

    ``D(y; s) = y_coefficient * y + output_coefficient * net(alpha * y, conditioning)``.

    Attributes:
        s: the VE-equivalent noise level.
        t: the schedule time ``t(s)``.
        alpha: ``alpha(t)``.
        sigma: ``sigma(t) = alpha s``.
        conditioning: the value passed as the network's second argument.
        y_coefficient: ``a`` of :func:`parametrization_coefficients`.
        output_coefficient: ``b`` of :func:`parametrization_coefficients`.
    """

    s: float
    t: float
    alpha: float
    sigma: float
    conditioning: float
    y_coefficient: float
    output_coefficient: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"NetworkInputs(s={self.s:.6g}, t={self.t:.6g}, alpha={self.alpha:.6g}, "
            f"sigma={self.sigma:.6g}, conditioning={self.conditioning:.6g}, "
            f"D = {self.y_coefficient:.6g} y + {self.output_coefficient:.6g} f)"
        )


def _check_conditioning(conditioning: Any, sched: Schedule) -> str | Callable[..., Any]:
    if callable(conditioning) and not isinstance(conditioning, str):
        return conditioning
    key = conditioning.strip().lower() if isinstance(conditioning, str) else None
    if key not in CONDITIONINGS:
        raise ValueError(
            f"conditioning={conditioning!r} is not allowed; allowed: {list(CONDITIONINGS)} "
            f"or a callable f(t, sigma, alpha, s) -> float"
        )
    if key == "index" and not (sched.discrete and hasattr(sched, "t_to_step")):
        raise ValueError(
            f"conditioning='index' needs a discrete schedule with a step clock (e.g. 'ddpm'), "
            f"got schedule {sched.spec!r}; pass a callable f(t, sigma, alpha, s) for another step map"
        )
    return key


def _check_noise(s: Any, sched: Schedule) -> float:
    if isinstance(s, np.ndarray) and s.ndim == 0:
        s = s.item()
    if isinstance(s, bool) or not isinstance(s, numbers.Real):
        raise TypeError(f"s must be a real noise level (a float), got {s!r}")
    s = float(s)
    lo, hi = sched.s_min, sched.s_max
    if not math.isfinite(s) or s < lo * (1 - _RANGE_SLACK) or s > hi * (1 + _RANGE_SLACK):
        raise ValueError(
            f"s={s!r} is outside the noise range of the schedule {sched.spec!r}: "
            f"allowed {lo!r} <= s <= {hi!r}"
        )
    return min(max(s, lo), hi)


def network_inputs(
    schedule: Schedule | str | Mapping[str, Any],
    s: float,
    parametrization: str = "eps",
    conditioning: str | Callable[..., Any] = "t",
) -> NetworkInputs:
    """Time, scales, conditioning value and output map of a network at noise level ``s``.

    Args:
        schedule: the schedule the network was trained with (a :class:`Schedule`, a
            spec string or a mapping; see :func:`~diffcrit.theory.schedules.get_schedule`).
        s: VE-equivalent noise level in ``[schedule.s_min, schedule.s_max]``.
        parametrization: what the network predicts (module docstring).
        conditioning: what its second argument is (module docstring).

    Returns:
        :class:`NetworkInputs`.

    Raises:
        ValueError, TypeError: unknown parametrization or conditioning, ``s`` outside
            the schedule's range, a conditioning callable that does not return a
            finite real number.

    >>> inp = network_inputs("edm", 1.0, "eps", "log_s_quarter")
    >>> inp.alpha, inp.sigma, inp.conditioning, inp.output_coefficient
    (1.0, 1.0, 0.0, -1.0)
    >>> network_inputs("ddpm", float(get_schedule("ddpm").s_of_step(99)), "x0", "index").conditioning
    99.0
    """
    sched = get_schedule(schedule)
    name = canonical_parametrization(parametrization)
    cond = _check_conditioning(conditioning, sched)
    s = _check_noise(s, sched)
    t = float(sched.t_of_s(s))
    alpha = float(sched.alpha(t))
    # sigma = alpha s (not sigma(t)): the output map then uses exactly the requested s
    sigma = alpha * s
    if cond == "t":
        value = t
    elif cond == "sigma":
        value = sigma
    elif cond == "s":
        value = s
    elif cond == "log_s_quarter":
        value = math.log(s) / 4.0
    elif cond == "index":
        value = float(sched.t_to_step(t))
    else:
        raw = cond(t, sigma, alpha, s)
        if isinstance(raw, np.ndarray) and raw.ndim == 0:
            raw = raw.item()
        if hasattr(raw, "item") and not isinstance(raw, np.ndarray):
            raw = raw.item()  # a 0-d torch tensor
        if isinstance(raw, bool) or not isinstance(raw, numbers.Real) or not math.isfinite(raw):
            raise ValueError(
                f"conditioning callable {_callable_name(cond)} returned {raw!r} at s={s!r} "
                f"(t={t!r}); it must return a finite real number"
            )
        value = float(raw)
    a, b = parametrization_coefficients(name, alpha, sigma)
    return NetworkInputs(
        s=s, t=t, alpha=alpha, sigma=sigma, conditioning=float(value),
        y_coefficient=float(a), output_coefficient=float(b),
    )


def _callable_name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__


# --------------------------------------------------------------------------- adapter


class TorchDenoiser:
    """A trained diffusion network as the VE-equivalent denoiser ``D(y; s)``.

    ``D(y; s) = a y + b net(alpha y, c)`` with ``alpha = alpha(t(s))``, the
    conditioning value ``c`` and the coefficients ``(a, b)`` of the network's
    parametrization (module docstring). The network is called as
    ``net(x, c, **net_kwargs)`` with ``x`` of shape ``(B, 1, *field_shape)`` when
    ``channel_axis`` (else ``(B, *field_shape)``: give a multi-channel field as
    ``field_shape=(C, H, W)`` with ``channel_axis=False``) and ``c`` a ``(B,)``
    tensor; it must return a tensor shaped like ``x``.

    The network is never modified: an ``nn.Module`` must already sit on ``device``
    with floating parameters of ``dtype`` (``net.to(device, dtype)``) and should be
    in eval mode (a warning is given when it contains dropout or batch
    normalization in training mode).

    Args:
        net: a ``torch.nn.Module`` or any callable on tensors.
        schedule: the training schedule (a :class:`Schedule` or spec, e.g. ``"vp-linear"``).
        parametrization: ``"eps"``, ``"x0"``, ``"v"`` or ``"score"`` (or an alias).
        conditioning: ``"t"``, ``"sigma"``, ``"s"``, ``"log_s_quarter"``, ``"index"``
            or a callable ``f(t, sigma, alpha, s) -> float``.
        field_shape: shape of one field ``y``.
        channel_axis: insert a channel axis of length 1 before calling the network.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"``).
        dtype: ``"float32"`` or ``"float64"``: the dtype of the network evaluation
            (inputs and outputs of the public methods are numpy ``float64``).
        batch_size: most fields per network call.
        net_kwargs: keyword arguments passed on every call, shared by the whole
            batch. A tensor or numpy array is broadcast to the batch (a 0-d value
            becomes ``(B,)``, a leading axis of length 1 is expanded to ``B``, any
            other shape gets a new leading axis ``B``) and moved to ``device``
            (floating ones cast to ``dtype``); a callable (not a tensor) is called
            with the batch size and its result passed; anything else is passed as is.
        jvp_method: ``"auto"`` (forward mode, falling back to the double VJP when the
            network does not support forward AD), ``"forward"`` or ``"double_vjp"``.

    Attributes:
        field_shape: the field shape (read by the samplers).
        schedule: the :class:`Schedule`.
        parametrization: the canonical parametrization.
        jvp_method_used: ``"forward"`` or ``"double_vjp"`` once :meth:`jvp` has run
            (``None`` before).
    """

    def __init__(
        self,
        net: Any,
        *,
        schedule: Schedule | str | Mapping[str, Any],
        parametrization: str = "eps",
        conditioning: str | Callable[..., Any] = "t",
        field_shape: Sequence[int],
        channel_axis: bool = True,
        device: Any = "cpu",
        dtype: Any = "float32",
        batch_size: int = 256,
        net_kwargs: Mapping[str, Any] | None = None,
        jvp_method: str = "auto",
    ):
        # cheap argument checks first, then torch
        if not callable(net):
            raise TypeError(
                f"net must be a torch.nn.Module or a callable net(x, c, **net_kwargs) -> tensor, "
                f"got {net!r} ({type(net).__name__})"
            )
        self.schedule = get_schedule(schedule)
        self.parametrization = canonical_parametrization(parametrization)
        self.conditioning = _check_conditioning(conditioning, self.schedule)
        self.field_shape = _check_field_shape(field_shape)
        if not isinstance(channel_axis, (bool, np.bool_)):
            raise TypeError(f"channel_axis must be a bool, got {channel_axis!r}")
        self.channel_axis = bool(channel_axis)
        self.batch_size = _check_batch_size(batch_size)
        if net_kwargs is None:
            net_kwargs = {}
        if not isinstance(net_kwargs, Mapping) or not all(isinstance(k, str) for k in net_kwargs):
            raise TypeError(f"net_kwargs must be a mapping of keyword names to values, got {net_kwargs!r}")
        self.net_kwargs = dict(net_kwargs)
        if jvp_method not in JVP_METHODS:
            raise ValueError(f"jvp_method={jvp_method!r} is not allowed; allowed: {list(JVP_METHODS)}")
        self.jvp_method = jvp_method
        self.dtype = _check_dtype(dtype)

        torch = _torch()
        self._torch_dtype = torch.float64 if self.dtype == "float64" else torch.float32
        self.device = _check_device(device, torch)
        self.net = net
        _check_module(net, self.device, self._torch_dtype, torch)
        self.jvp_method_used: str | None = None

    # ---- description

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the configuration (not the weights)."""
        return {
            "net": type(self.net).__name__,
            "n_parameters": _n_parameters(self.net),
            "schedule": self.schedule.to_dict(),
            "parametrization": self.parametrization,
            "conditioning": self.conditioning if isinstance(self.conditioning, str)
            else f"callable {_callable_name(self.conditioning)}",
            "field_shape": list(self.field_shape),
            "channel_axis": self.channel_axis,
            "device": str(self.device),
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "net_kwargs": {k: _describe_value(v) for k, v in self.net_kwargs.items()},
            "jvp_method": self.jvp_method,
            "jvp_method_used": self.jvp_method_used,
        }

    def __repr__(self) -> str:
        cond = self.conditioning if isinstance(self.conditioning, str) else _callable_name(self.conditioning)
        kw = f", net_kwargs={sorted(self.net_kwargs)}" if self.net_kwargs else ""
        return (
            f"TorchDenoiser(net={type(self.net).__name__}, schedule={self.schedule.spec!r}, "
            f"parametrization={self.parametrization!r}, conditioning={cond!r}, "
            f"field_shape={self.field_shape}, dtype={self.dtype}, device={str(self.device)!r}{kw})"
        )

    def with_kwargs(self, **net_kwargs: Any) -> TorchDenoiser:
        """A copy sharing the network, with ``net_kwargs`` updated by these keywords.

        For a conditional/unconditional pair of one network (classifier-free
        guidance): ``cond = model.with_kwargs(class_labels=3)``,
        ``uncond = model.with_kwargs(class_labels=null_label)``. A keyword set to
        ``None`` is passed as ``None``.
        """
        other = copy.copy(self)
        other.net_kwargs = {**self.net_kwargs, **net_kwargs}
        return other

    def network_inputs(self, s: float) -> NetworkInputs:
        """Time, scales, conditioning and output map at noise level ``s``
        (:func:`network_inputs` for this model's schedule and parametrization)."""
        return network_inputs(self.schedule, s, self.parametrization, self.conditioning)

    # ---- the denoiser

    def __call__(self, y: Any, s: float) -> np.ndarray:
        """``D(y; s)`` for one field ``field_shape`` or a batch ``(M, *field_shape)``.

        Raises:
            ValueError: shape mismatch, non-finite ``y``, ``s`` outside the schedule's
                range, or a non-finite network output (the message names ``s``).
        """
        inputs = self.network_inputs(s)
        batch, single = self._as_batch(y, "y")
        torch = _torch()
        out = np.empty(batch.shape, dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(batch), self.batch_size):
                block = self._tensor(batch[start : start + self.batch_size])
                result = self._denoise_tensor(block, inputs, self._net_arguments(len(block), inputs))
                out[start : start + len(block)] = self._to_numpy(result, inputs, "D")
        return out[0] if single else out

    def jvp(self, y: Any, s: float, v: Any) -> np.ndarray:
        """``J(y_m) v_m`` with ``J = dD/dy`` at noise level ``s``, exact (autograd).

        Args:
            y: states ``(M, *field_shape)`` (or one field).
            s: noise level.
            v: tangents, shaped like ``y``.

        Returns:
            ``(M, *field_shape)`` float64 (one field for one field).
        """
        inputs = self.network_inputs(s)
        batch, single = self._as_batch(y, "y")
        tangents, _ = self._as_batch(v, "v")
        if tangents.shape != batch.shape:
            raise ValueError(f"v must have the shape of y {batch.shape}, got {tangents.shape}")
        out = np.empty(batch.shape, dtype=np.float64)
        for start in range(0, len(batch), self.batch_size):
            stop = start + self.batch_size
            jv = self._jvp_tensor(self._tensor(batch[start:stop]), self._tensor(tangents[start:stop]), inputs)
            out[start:stop] = self._to_numpy(jv, inputs, "J v")
        return out[0] if single else out

    def vjp(self, y: Any, s: float, u: Any) -> np.ndarray:
        """``J(y_m)^T u_m`` with ``J = dD/dy`` at noise level ``s``, exact (reverse mode).

        Args:
            y: states ``(M, *field_shape)`` (or one field).
            s: noise level.
            u: cotangents, shaped like ``y``.

        Returns:
            ``(M, *field_shape)`` float64 (one field for one field).
        """
        inputs = self.network_inputs(s)
        batch, single = self._as_batch(y, "y")
        cotangents, _ = self._as_batch(u, "u")
        if cotangents.shape != batch.shape:
            raise ValueError(f"u must have the shape of y {batch.shape}, got {cotangents.shape}")
        torch = _torch()
        out = np.empty(batch.shape, dtype=np.float64)
        for start in range(0, len(batch), self.batch_size):
            stop = start + self.batch_size
            block = self._tensor(batch[start:stop])
            with torch.enable_grad():
                leaf = block.detach().requires_grad_(True)
                value = self._denoise_tensor(leaf, inputs, self._net_arguments(len(block), inputs))
                (grad,) = torch.autograd.grad(value, leaf, grad_outputs=self._tensor(cotangents[start:stop]),
                                              allow_unused=True)
            if grad is None:  # D does not depend on y
                grad = torch.zeros_like(block)
            out[start:stop] = self._to_numpy(grad.detach(), inputs, "J^T u")
        return out[0] if single else out

    # ---- internals

    def _as_batch(self, y: Any, name: str) -> tuple[np.ndarray, bool]:
        try:
            arr = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a real array of fields, got {type(y).__name__}") from err
        if arr.shape == self.field_shape:
            arr, single = arr[None], True
        elif arr.ndim == len(self.field_shape) + 1 and arr.shape[1:] == self.field_shape:
            single = False
        else:
            raise ValueError(
                f"{name} must be one field of shape {self.field_shape} or a batch of shape "
                f"(M, {', '.join(map(str, self.field_shape))}), got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
        return arr, single

    def _tensor(self, arr: np.ndarray) -> Any:
        torch = _torch()
        return torch.as_tensor(np.ascontiguousarray(arr), dtype=self._torch_dtype, device=self.device)

    def _to_numpy(self, tensor: Any, inputs: NetworkInputs, what: str) -> np.ndarray:
        arr = tensor.detach().to("cpu").numpy().astype(np.float64, copy=False)
        if not np.all(np.isfinite(arr)):
            kind = "NaN" if np.isnan(arr).any() else "inf"
            raise ValueError(
                f"{what} of the network is non-finite ({kind}) at s={inputs.s!r} "
                f"(t={inputs.t!r}, conditioning={inputs.conditioning!r}, parametrization="
                f"{self.parametrization!r}, dtype={self.dtype})"
            )
        return arr

    def _kwargs(self, batch: int) -> dict[str, Any]:
        torch = _torch()
        out = {}
        for key, value in self.net_kwargs.items():
            if isinstance(value, np.ndarray):
                value = torch.as_tensor(value)
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self._torch_dtype)
                if value.ndim == 0:
                    value = value.expand(batch)
                elif value.shape[0] == 1:
                    value = value.expand(batch, *value.shape[1:])
                else:
                    value = value.expand(batch, *value.shape)
            elif callable(value):
                value = value(batch)
                if isinstance(value, np.ndarray):
                    value = torch.as_tensor(value)
                if isinstance(value, torch.Tensor):
                    value = value.to(self.device)
            out[key] = value
        return out

    def _net_arguments(self, batch: int, inputs: NetworkInputs) -> tuple[Any, dict[str, Any]]:
        """The conditioning tensor and keyword arguments for a batch. Built outside
        any function transform, so they are plain tensors that a network may read
        freely (``.item()``, ``.numpy()``) while ``torch.func.jvp`` traces ``y``."""
        torch = _torch()
        cond = torch.full((batch,), inputs.conditioning, dtype=self._torch_dtype, device=self.device)
        return cond, self._kwargs(batch)

    def _denoise_tensor(self, y: Any, inputs: NetworkInputs, arguments: tuple[Any, dict[str, Any]]) -> Any:
        """``a y + b net(alpha y, c)`` on a ``(B, *field_shape)`` tensor (differentiable)."""
        torch = _torch()
        x = inputs.alpha * y
        if self.channel_axis:
            x = x.unsqueeze(1)
        cond, kwargs = arguments
        raw = self.net(x, cond, **kwargs)
        if not isinstance(raw, torch.Tensor):
            raise TypeError(
                f"net must return a tensor shaped like its input {tuple(x.shape)}, "
                f"got {type(raw).__name__} at s={inputs.s!r}"
            )
        if tuple(raw.shape) != tuple(x.shape):
            raise ValueError(
                f"net returned shape {tuple(raw.shape)} for input shape {tuple(x.shape)} at s={inputs.s!r}; "
                f"it must return the {self.parametrization!r} prediction shaped like its input"
            )
        if self.channel_axis:
            raw = raw.squeeze(1)
        raw = raw.to(self._torch_dtype)
        if inputs.y_coefficient == 0.0:
            return inputs.output_coefficient * raw
        return inputs.y_coefficient * y + inputs.output_coefficient * raw

    def _jvp_tensor(self, y: Any, v: Any, inputs: NetworkInputs) -> Any:
        arguments = self._net_arguments(y.shape[0], inputs)

        def func(z):
            return self._denoise_tensor(z, inputs, arguments)

        if self.jvp_method == "double_vjp" or self.jvp_method_used == "double_vjp":
            result = _double_vjp_jvp(func, y, v)
            self.jvp_method_used = "double_vjp"
            return result
        try:
            result = _forward_jvp(func, y, v)
        except (RuntimeError, NotImplementedError) as forward_error:
            if self.jvp_method == "forward":
                raise RuntimeError(
                    f"forward-mode AD (torch.func.jvp) failed for {type(self.net).__name__}: "
                    f"{forward_error}; use jvp_method='auto' or 'double_vjp'"
                ) from forward_error
            try:
                result = _double_vjp_jvp(func, y, v)
            except (RuntimeError, NotImplementedError) as error:
                raise RuntimeError(
                    f"neither forward-mode AD ({forward_error}) nor the double VJP ({error}) "
                    f"could differentiate {type(self.net).__name__}"
                ) from error
            # remembered: later calls go straight to the double VJP
            self.jvp_method_used = "double_vjp"
            return result
        self.jvp_method_used = "forward"
        return result


def _forward_jvp(func: Callable[[Any], Any], y: Any, v: Any) -> Any:
    torch = _torch()
    with torch.no_grad():  # forward AD is unaffected; no reverse graph is recorded
        _, tangent = torch.func.jvp(func, (y,), (v,))
    return tangent


def _double_vjp_jvp(func: Callable[[Any], Any], y: Any, v: Any) -> Any:
    """``J v`` as the VJP of the linear map ``u -> J^T u`` with cotangent ``v``."""
    torch = _torch()
    with torch.enable_grad():
        leaf = y.detach().requires_grad_(True)
        value = func(leaf)
        dummy = torch.zeros_like(value, requires_grad=True)
        (vjp_u,) = torch.autograd.grad(value, leaf, grad_outputs=dummy, create_graph=True, allow_unused=True)
        if vjp_u is None:  # D does not depend on y: J = 0
            return torch.zeros_like(y)
        if not vjp_u.requires_grad:  # J^T u lost its dependence on u: no double backward
            raise RuntimeError(
                "the network's backward pass is not differentiable (no double backward), "
                "so J v cannot be formed as the VJP of u -> J^T u"
            )
        (jv,) = torch.autograd.grad(vjp_u, dummy, grad_outputs=v, allow_unused=True)
    return torch.zeros_like(y) if jv is None else jv.detach()


# --------------------------------------------------------------------------- checks


def _check_field_shape(field_shape: Any) -> tuple[int, ...]:
    if isinstance(field_shape, (int, np.integer)) and not isinstance(field_shape, bool):
        field_shape = (field_shape,)
    try:
        shape = tuple(field_shape)
    except TypeError as err:
        raise TypeError(f"field_shape must be a tuple of positive ints, got {field_shape!r}") from err
    if not shape or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape
    ):
        raise ValueError(f"field_shape must be a non-empty tuple of positive ints, got {field_shape!r}")
    return tuple(int(n) for n in shape)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; it must be >= 1")
    return int(batch_size)


def _check_dtype(dtype: Any) -> str:
    name = dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")
    if not isinstance(dtype, str):
        try:  # numpy dtypes and scalar types
            name = np.dtype(dtype).name
        except TypeError:
            pass
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; allowed: 'float32' or 'float64'")
    return _DTYPES[key]


def _check_device(device: Any, torch: Any) -> Any:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"device={device!r} is not a torch device; allowed e.g. 'cpu', 'cuda', 'cuda:0', 'mps'"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is not available (torch.cuda.is_available() is False); use 'cpu'")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} is not available (MPS backend missing); use 'cpu'")
    return dev


def _check_module(net: Any, device: Any, dtype: Any, torch: Any) -> None:
    """An ``nn.Module`` must already match ``device`` and ``dtype`` (it is never moved)."""
    if not isinstance(net, torch.nn.Module):
        return
    tensors = list(net.parameters()) + list(net.buffers())
    for tensor in tensors:
        if tensor.is_floating_point() and tensor.dtype != dtype:
            raise ValueError(
                f"net has {str(tensor.dtype).replace('torch.', '')} parameters but "
                f"dtype={str(dtype).replace('torch.', '')!r} was requested; convert it first "
                f"(net.to({dtype})) or pass the matching dtype"
            )
        if tensor.device.type != device.type or (
            device.index is not None and tensor.device.index != device.index
        ):
            raise ValueError(
                f"net has parameters on {tensor.device} but device={str(device)!r} was requested; "
                f"move it first (net.to({str(device)!r})) or pass the matching device"
            )
    if net.training:
        stochastic = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)
        if any(isinstance(m, stochastic) for m in net.modules()):
            warnings.warn(
                f"net ({type(net).__name__}) is in training mode and contains dropout or "
                "normalization layers, so D(y; s) is not a deterministic function of y; call net.eval()",
                UserWarning,
                stacklevel=3,
            )


def _n_parameters(net: Any) -> int | None:
    params = getattr(net, "parameters", None)
    if not callable(params):
        return None
    try:
        return int(sum(p.numel() for p in params()))
    except TypeError:
        return None


def _describe_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} shape={tuple(shape)} dtype={getattr(value, 'dtype', None)}"
    if callable(value):
        return f"callable {_callable_name(value)}"
    return type(value).__name__
