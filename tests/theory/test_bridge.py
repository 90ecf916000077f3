"""Tests of the sympy -> numpy bridge against high-precision evaluation."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import sympy as sp

import diffcrit.theory.bridge as bridge
from diffcrit.theory.bridge import evaluate, to_numeric

EPS = np.finfo(np.float64).eps
x = sp.Symbol("x", positive=True)
y = sp.Symbol("y", positive=True)

# Expressions with their evaluation points; several would lose digits if evaluated
# naively in float64 (exp(x) - 1 and log(1 + x) at tiny x), so they test the
# stabilising rewrites of the bridge as well as lambdify itself.
CASES = [
    (sp.exp(-x) * sp.sin(x), [0.1, 1.0, 3.0, 10.0]),
    (sp.sqrt(sp.exp(x) - 1), [1e-14, 1e-8, 1e-3, 0.5, 5.0]),
    (sp.log(1 + x**2) / 2, [1e-9, 1e-4, 0.3, 2.0, 150.0]),
    (-sp.log(sp.exp(x) - 1), [1e-12, 1e-5, 0.7, 10.0]),
    (sp.cos(x) ** 2 / (1 + x), [0.2, 1.0, 1.3]),
]


def _reference(expr: sp.Expr, value: float) -> float:
    # 40 significant digits: far beyond float64, so the reference is exact for the test
    return float(expr.evalf(40, subs={x: sp.Float(value, 40)}))


@pytest.mark.parametrize("expr, points", CASES, ids=[str(c[0]) for c in CASES])
def test_numeric_matches_high_precision_evalf(expr, points):
    func = to_numeric(expr, x)
    got = func(np.array(points))
    ref = np.array([_reference(expr, p) for p in points])
    # Each case is a few correctly rounded libm calls on well-conditioned forms
    # (after the expm1/log1p rewrites): 8 ulp covers them. A naive exp(x) - 1 at
    # x = 1e-14 would be off by ~1e-2 relative, so this also tests the rewrite.
    np.testing.assert_allclose(got, ref, rtol=8 * EPS, atol=0)


def test_mpmath_backend_matches_evalf():
    import mpmath

    expr = sp.sqrt(sp.exp(x) - 1) * sp.gamma(x)
    func = to_numeric(expr, x, modules="mpmath")
    with mpmath.workdps(30):
        got = func(mpmath.mpf("0.25"))
        ref = expr.evalf(30, subs={x: sp.Rational(1, 4)})
        # both at 30 digits; 1e-25 leaves room for the last few digits of each
        assert abs(got - mpmath.mpf(str(ref))) < 1e-25 * abs(got)


def test_constant_expression_broadcasts():
    out = to_numeric(sp.Integer(1), x)(np.zeros((2, 3)))
    assert out.shape == (2, 3)
    assert np.all(out == 1.0)


def test_two_arguments_broadcast():
    func = to_numeric(x * y + 1, x, y)
    xs = np.arange(3.0).reshape(3, 1)
    ys = np.arange(4.0)
    np.testing.assert_array_equal(func(xs, ys), xs * ys + 1)  # exact in float64


def test_scalar_in_scalar_out():
    out = to_numeric(x + 1, x)(2.0)
    assert np.ndim(out) == 0
    assert isinstance(out, np.float64)
    assert out == 3.0


def test_cache_returns_same_callable():
    a = to_numeric(sp.exp(x) + y, x, y)
    b = to_numeric(sp.exp(x) + y, x, y)
    assert a is b
    # a symbol with other assumptions is another symbol: another entry
    x_real = sp.Symbol("x", real=True)
    c = to_numeric(sp.exp(x_real) + y, x_real, y)
    assert c is not a
    # argument order matters
    d = to_numeric(sp.exp(x) + y, y, x)
    assert d is not a
    assert float(d(0.0, 1.0)) == float(a(1.0, 0.0))


def test_clear_cache():
    a = to_numeric(x**3, x)
    bridge.clear_cache()
    assert to_numeric(x**3, x) is not a


def test_evaluate_by_name():
    out = evaluate(x**2 * y, x=np.array([1.0, 2.0]), y=3.0)
    np.testing.assert_array_equal(out, [3.0, 12.0])  # exact in float64


def test_evaluate_rejects_missing_and_extra():
    with pytest.raises(ValueError, match=r"no value given for symbol\(s\) \['y'\]"):
        evaluate(x + y, x=1.0)
    with pytest.raises(ValueError, match=r"\['z'\]"):
        evaluate(x, x=1.0, z=2.0)


def test_missing_free_symbol_is_rejected():
    with pytest.raises(ValueError, match="free symbols \\['y'\\]"):
        to_numeric(x + y, x)


def test_bad_types_rejected():
    with pytest.raises(TypeError, match="sympy expression"):
        to_numeric("x + 1", x)
    with pytest.raises(TypeError, match="Symbols"):
        to_numeric(x + 1, "x")
    with pytest.raises(ValueError, match="distinct"):
        to_numeric(x + 1, x, x)


def test_complex_result_is_an_error():
    with pytest.raises(ValueError, match="complex"):
        to_numeric(sp.I * x, x)(1.0)


def test_nan_from_finite_input_is_an_error():
    z = sp.Symbol("z", real=True)
    func = to_numeric(sp.sqrt(z), z)
    with pytest.raises(ValueError, match="NaN"):
        func(np.array([1.0, -1.0]))
    # NaN in, NaN out is passed through (the caller validated nothing)
    assert np.isnan(func(np.nan))


def test_doctests():
    result = doctest.testmod(bridge)
    assert result.attempted > 0
    assert result.failed == 0
