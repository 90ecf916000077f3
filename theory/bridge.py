"""The one bridge from sympy expressions to fast vectorised numeric callables.

Every numeric formula in :mod:`diffcrit.theory` is evaluated through
:func:`to_numeric`, so what is tested symbolically is exactly what runs
numerically. The bridge

- rewrites floating-point-unsafe patterns for the ``"numpy"`` backend
  (``exp(x) - 1 -> expm1(x)``, ``1 - exp(x) -> -expm1(x)``, ``log(1 + x) ->
  log1p(x)``), so small noise levels keep full relative precision (one linear
  pass over the tree; sympy's general C99 optimizer does the same but can take
  seconds on a derivative);
- lambdifies with common-subexpression elimination;
- raises ``ValueError`` when finite inputs give NaN (never a silent NaN);
- broadcasts the result against the inputs (a constant expression such as
  ``alpha = 1`` still returns an array of the inputs' shape) and returns
  ``float64`` (a 0-d input gives a numpy scalar);
- caches the callable by ``(srepr(expr), srepr(symbols), backend)``, so an
  expression is compiled once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

__all__ = ["to_numeric", "evaluate", "clear_cache"]

_CACHE: dict[tuple[str, tuple[str, ...], str, bool], Callable[..., Any]] = {}


def _check_symbols(expr: sp.Basic, symbols: Sequence[sp.Symbol]) -> None:
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expr must be a sympy expression, got {type(expr).__name__}: {expr!r}")
    for sym in symbols:
        if not isinstance(sym, sp.Symbol):
            raise TypeError(f"symbols must be sympy Symbols, got {type(sym).__name__}: {sym!r}")
    names = [sym.name for sym in symbols]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must be distinct, got {names}")
    missing = expr.free_symbols - set(symbols)
    if missing:
        raise ValueError(
            f"expression has free symbols {sorted(str(m) for m in missing)} that are not "
            f"among the arguments {names}; pass every free symbol"
        )


def _expm1_in_sum(node: sp.Add) -> sp.Expr:
    """``exp(z) - 1 -> expm1(z)`` and ``1 - exp(z) -> -expm1(z)`` inside a sum."""
    terms = list(node.args)
    for const, sign in ((sp.Integer(-1), 1), (sp.Integer(1), -1)):
        if const not in terms:
            continue
        for i, term in enumerate(terms):
            candidate = sign * term  # exp(z) for the pattern sign * exp(z) + const
            if isinstance(candidate, sp.exp):
                rest = [a for j, a in enumerate(terms) if j != i]
                rest.remove(const)
                return sp.Add(sign * expm1(candidate.args[0]), *rest)
    return node


def _stabilise(expr: sp.Expr) -> sp.Expr:
    """Bottom-up rewrite of cancellation-prone patterns into expm1/log1p."""
    if not expr.args:
        return expr
    args = tuple(_stabilise(a) for a in expr.args)
    if args != expr.args:
        expr = expr.func(*args)
    if isinstance(expr, sp.Add):
        return _expm1_in_sum(expr)
    if isinstance(expr, sp.log):
        arg = expr.args[0]
        if isinstance(arg, sp.Add) and sp.Integer(1) in arg.args:
            return log1p(arg - 1)
    return expr


def _vectorised(raw: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a numpy lambdified function: float64 inputs, broadcast float64 output."""

    @functools.wraps(raw)
    def numeric(*args: Any) -> Any:
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        # numpy's warnings are silenced here and replaced by checks: NaN from finite
        # inputs is an error; an overflow to inf is returned for the caller to judge
        with np.errstate(all="ignore"):
            out = np.asarray(raw(*arrays))
        if np.iscomplexobj(out):
            raise ValueError(
                "numeric evaluation produced complex values; the expression is not real "
                "on these inputs"
            )
        out = np.array(np.broadcast_to(out.astype(np.float64, copy=False), shape))
        if np.isnan(out).any():
            inputs_nan = np.zeros(shape, dtype=bool)
            for a in arrays:
                inputs_nan |= np.broadcast_to(np.isnan(a), shape)
            if (np.isnan(out) & ~inputs_nan).any():
                raise ValueError(
                    "numeric evaluation produced NaN from non-NaN inputs (an argument "
                    "outside the expression's real domain)"
                )
        return out[()] if out.ndim == 0 else out

    return numeric


def to_numeric(
    expr: sp.Basic, *symbols: sp.Symbol, modules: str | Sequence[Any] = "numpy"
) -> Callable[..., Any]:
    """Turn a sympy expression into a vectorised numeric function of ``symbols``.

    Args:
        expr: sympy expression; every free symbol must be among ``symbols``.
        *symbols: the arguments of the returned function, in order.
        modules: lambdify backend. ``"numpy"`` (default) gives a broadcasting
            float64 function (scipy supplies special functions); any other value
            (for example ``"mpmath"``) is passed to :func:`sympy.lambdify` as is
            and the raw lambdified function is returned.

    Returns:
        A callable ``f(*values)``; for the numpy backend it broadcasts its
        arguments and returns ``float64`` (numpy scalar for scalar input).

    Raises:
        TypeError: ``expr`` is not a sympy expression or a symbol is not a Symbol.
        ValueError: ``expr`` has free symbols not listed in ``symbols``.

    >>> t = sp.Symbol("t", positive=True)
    >>> decay = to_numeric(sp.exp(-t), t)
    >>> decay(np.array([0.0, 1.0]))
    array([1.        , 0.36787944])
    >>> small = to_numeric(sp.sqrt(sp.exp(t) - 1), t)  # evaluated as sqrt(expm1(t))
    >>> float(small(1e-20))
    1e-10
    >>> to_numeric(sp.Integer(1), t)(np.zeros(3))
    array([1., 1., 1.])
    """
    _check_symbols(expr, symbols)
    numpy_backend = isinstance(modules, str) and modules == "numpy"
    key = (sp.srepr(expr), tuple(sp.srepr(s) for s in symbols), repr(modules), numpy_backend)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if numpy_backend:
        stable = _stabilise(expr) if isinstance(expr, sp.Expr) else expr
        raw = sp.lambdify(symbols, stable, modules=["numpy", "scipy"], cse=True)
        func = _vectorised(raw)
    else:
        func = sp.lambdify(symbols, expr, modules=modules, cse=True)
    _CACHE[key] = func
    return func


def evaluate(expr: sp.Basic, **values: Any) -> Any:
    """Evaluate ``expr`` numerically (numpy, vectorised), with symbols given by name.

    Args:
        expr: sympy expression.
        **values: one value (scalar or array) per free symbol of ``expr``, keyed by
            the symbol's name.

    Returns:
        float64 array broadcast over the values (numpy scalar for scalars).

    Raises:
        ValueError: a free symbol has no value, or a value names no free symbol.

    >>> x, y = sp.symbols("x y", positive=True)
    >>> float(evaluate(x**2 + y, x=3.0, y=0.5))
    9.5
    """
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expr must be a sympy expression, got {type(expr).__name__}: {expr!r}")
    free = sorted(expr.free_symbols, key=lambda s: s.name)
    names = [s.name for s in free]
    if len(set(names)) != len(names):
        raise ValueError(f"expression has distinct symbols sharing a name: {names}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"no value given for symbol(s) {missing}; the expression needs {names}")
    extra = sorted(set(values) - set(names))
    if extra:
        raise ValueError(
            f"values given for {extra}, which are not free symbols of the expression {names}"
        )
    return to_numeric(expr, *free)(*(values[n] for n in names))


def clear_cache() -> None:
    """Forget every compiled callable (for tests and long sessions)."""
    _CACHE.clear()
