"""Tests of the noise schedules: conversions, closed forms, symbolic vs numeric.

Round-trip tolerances are stated as an error budget in ulp (``EPS``) times the
conditioning of the problem. The forward map gives ``ln s`` to ``k eps (1 + |ln s|)``
absolute: a few correctly rounded operations on well-conditioned forms
(expm1/log1p, sum-to-product, compensated sums) plus the rounding of an exponent
of size ~``|ln s|`` (``exp``, ``pow``). Inverted with the same accuracy, ``t``
comes back within ``2k eps (|t| + (1 + |ln s|)/|d ln s/dt|)``. ``K_ULP = 4``.
"""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

import diffcrit.theory.schedules as schedules_module
from diffcrit.theory.bridge import to_numeric
from diffcrit.theory.schedules import (
    NOISE,
    SCHEDULES,
    TIME,
    DDPMSchedule,
    EDMSchedule,
    OUSchedule,
    Schedule,
    VESchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    get_schedule,
    invert_monotone,
    list_schedules,
    schedule_table,
)

EPS = np.finfo(np.float64).eps
K_ULP = 4
NAMES = list_schedules()
CONTINUOUS = [n for n in NAMES if not SCHEDULES[n].discrete]
VP_FAMILIES = ["vp-linear", "ddpm", "vp-cosine", "ou"]
# one non-default instance per family, so that nothing depends on default values
NON_DEFAULT = {
    "ve": "ve:s_min=0.0001,s_max=1000",
    "edm": "edm:s_min=0.005,s_max=120,rho=3",
    "vp-linear": "vp-linear:beta_min=0.05,beta_max=12,t_min=1e-5",
    "ddpm": "ddpm:T=200,beta_start=0.0005,beta_end=0.05",
    "vp-cosine": "vp-cosine:offset=0.02,t_min=0.01,t_max=0.99",
    "ou": "ou:t_min=1e-6,t_max=8",
}
ALL_SPECS = NAMES + list(NON_DEFAULT.values())

fractions = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=16)
EXAMPLES = settings(max_examples=30, deadline=None)


def _times(sched: Schedule, u) -> np.ndarray:
    u = np.asarray(u, dtype=float)
    return np.clip(sched.t_min + u * (sched.t_max - sched.t_min), sched.t_min, sched.t_max)


def _noise_levels(sched: Schedule, u) -> np.ndarray:
    lo, hi = math.log(sched.s_min), math.log(sched.s_max)
    return np.clip(np.exp(lo + np.asarray(u, dtype=float) * (hi - lo)), sched.s_min, sched.s_max)


def _dlogs_dt(sched: Schedule, t: np.ndarray) -> np.ndarray:
    """|d ln s / dt| by central finite differences of the numeric map. Only a
    condition number for the error budget: a factor-2 accuracy is enough."""
    h = 1e-6 * (sched.t_max - sched.t_min)
    a = np.clip(t - h, sched.t_min, sched.t_max)
    b = np.clip(t + h, sched.t_min, sched.t_max)
    return np.abs(np.log(sched.s(b)) - np.log(sched.s(a))) / (b - a)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("spec", ALL_SPECS)
@EXAMPLES
@given(u=fractions)
def test_round_trip_t_s_t(spec, u):
    sched = get_schedule(spec)
    t = _times(sched, u)
    s = sched.s(t)
    back = sched.t_of_s(s)
    budget = 2 * K_ULP * EPS * (np.abs(t) + (1.0 + np.abs(np.log(s))) / _dlogs_dt(sched, t))
    assert np.all(np.abs(back - t) <= budget)


@pytest.mark.parametrize("spec", ALL_SPECS)
@EXAMPLES
@given(u=fractions)
def test_round_trip_s_t_s(spec, u):
    sched = get_schedule(spec)
    s = _noise_levels(sched, u)
    t = sched.t_of_s(s)
    # error in ln s: the inverse's error in t (times d ln s/dt) plus the forward's
    budget = 2 * K_ULP * EPS * (1.0 + np.abs(np.log(s)) + np.abs(t) * _dlogs_dt(sched, t))
    assert np.all(np.abs(np.log(sched.s(t) / s)) <= budget)


@pytest.mark.parametrize("spec", ALL_SPECS)
@EXAMPLES
@given(u=fractions)
def test_round_trip_t_log_snr_t(spec, u):
    sched = get_schedule(spec)
    t = _times(sched, u)
    lam = sched.log_snr(t)
    back = sched.t_of_log_snr(lam)
    # lambda carries an absolute error ~eps (1 + |lambda|); d lambda/dt = -2 d ln s/dt
    budget = 2 * K_ULP * EPS * (np.abs(t) + (1.0 + np.abs(lam)) / (2 * _dlogs_dt(sched, t)))
    assert np.all(np.abs(back - t) <= budget)


@pytest.mark.parametrize("spec", ALL_SPECS)
@EXAMPLES
@given(u=fractions)
def test_round_trip_t_alpha_bar_t(spec, u):
    sched = get_schedule(spec)
    t = _times(sched, u)
    ab = sched.alpha_bar(t)
    back = sched.t_of_alpha_bar(ab)
    # s^2 = (1 - ab)/ab: a relative rounding eps of ab is a relative error
    # eps/(1 - ab) in s^2, i.e. eps/(2 (1 - ab)) in ln s (inherent to alpha_bar ~ 1)
    log_s = 0.5 * np.log((1.0 - ab) / ab)
    spread = 1.0 + np.abs(log_s) + 1.0 / (2 * (1.0 - ab))
    budget = 2 * K_ULP * EPS * (np.abs(t) + spread / _dlogs_dt(sched, t))
    assert np.all(np.abs(back - t) <= budget)


@pytest.mark.parametrize("spec", ["ddpm", NON_DEFAULT["ddpm"]])
def test_round_trip_step_t_step_exact_on_integers(spec):
    sched = get_schedule(spec)
    steps = np.arange(sched.T)
    assert np.array_equal(sched.t_to_step(sched.step_to_t(steps)), steps)
    assert np.array_equal(sched.step_of_s(sched.s_of_step(steps)), steps)
    assert np.array_equal(sched.t_of_s(sched.s_of_step(steps)), sched.step_to_t(steps))


@pytest.mark.parametrize("spec", ["ddpm", NON_DEFAULT["ddpm"]])
@EXAMPLES
@given(u=fractions)
def test_round_trip_fractional_step(spec, u):
    sched = get_schedule(spec)
    step = np.asarray(u) * (sched.T - 1)
    # (step + 1)/T and back: two roundings of numbers <= T, so <= ~2 eps T absolute
    assert np.all(np.abs(sched.t_to_step(sched.step_to_t(step)) - step) <= 4 * EPS * sched.T)
    # step -> s -> step through exp/log of the log-linear interpolation: the slope
    # d step/d ln s is at most 1/min(diff(ln s)); budget 8 ulp of ln s plus of step
    log_s = np.log(sched.s_of_step(np.arange(sched.T)))
    slope = 1.0 / np.min(np.diff(log_s))
    back = sched.step_of_s(sched.s_of_step(step))
    budget = 8 * EPS * (step + 1 + slope * np.max(np.abs(log_s)))
    assert np.all(np.abs(back - step) <= budget)


# --------------------------------------------------------------------------- monotonicity


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_s_strictly_increasing_on_dense_grid(spec):
    sched = get_schedule(spec)
    t = np.linspace(sched.t_min, sched.t_max, 20001)
    assert np.all(np.diff(sched.s(t)) > 0)


@pytest.mark.parametrize("spec", CONTINUOUS)
def test_symbolic_derivative_of_s_positive(spec):
    sched = get_schedule(spec)
    ds_dt = to_numeric(sp.diff(sched.s_expr(), TIME), TIME)
    t = np.linspace(sched.t_min, sched.t_max, 2001)
    assert np.all(ds_dt(t) > 0)


@pytest.mark.parametrize("spec", NAMES)
@EXAMPLES
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_s_monotone_pairs(spec, a, b):
    sched = get_schedule(spec)
    lo, hi = sorted((a, b))
    if hi - lo < 1e-9:  # closer than the rounding resolution of the maps
        return
    s_lo, s_hi = sched.s(_times(sched, [lo, hi]))
    assert s_lo < s_hi


# --------------------------------------------------------------------------- closed forms


def test_ou_inverse_is_half_log_one_plus_s_squared():
    sched = get_schedule("ou")
    s = np.geomspace(sched.s_min, sched.s_max, 50)
    # log1p(s^2)/2 is well conditioned: 2 ulp; the schedule's inverse is budgeted 8
    np.testing.assert_allclose(sched.t_of_s(s), 0.5 * np.log1p(s**2), rtol=K_ULP * EPS)
    # s = sigma/alpha from alpha = e^{-t}, sigma = sqrt(1 - e^{-2t}) (computed here
    # with -expm1 to avoid the cancellation): a few ulp
    t = np.linspace(sched.t_min, sched.t_max, 50)
    alpha, sigma = np.exp(-t), np.sqrt(-np.expm1(-2 * t))
    np.testing.assert_allclose(sched.alpha(t), alpha, rtol=4 * EPS)
    np.testing.assert_allclose(sched.sigma(t), sigma, rtol=K_ULP * EPS)
    np.testing.assert_allclose(sched.s(t), sigma / alpha, rtol=K_ULP * EPS)
    assert sp.simplify(sched.inverse_expr() - sp.log(1 + NOISE**2) / 2) == 0


def test_ve_geometric():
    sched = VESchedule(s_min=0.01, s_max=50.0)
    t = np.linspace(0, 1, 41)
    # pow with exponent up to ln(5000) ~ 8.5: ~10 ulp of propagated rounding
    np.testing.assert_allclose(sched.s(t), 0.01 * 5000.0**t, rtol=16 * EPS)
    assert sched.s(0.0) == 0.01
    lam = sched.log_snr(t)
    # log-SNR is affine in t: its second differences vanish up to rounding of lam
    assert np.max(np.abs(np.diff(lam, 2))) <= 8 * EPS * np.max(np.abs(lam))
    np.testing.assert_allclose(np.diff(lam), -2 * math.log(5000.0) / 40, rtol=1e-12)
    assert sched.alpha(t).tolist() == [1.0] * 41
    expected = sp.log(NOISE / sp.Rational(1, 100)) / sp.log(5000)
    assert sp.simplify(sched.inverse_expr() - expected) == 0


def test_edm_identity_and_karras_grid():
    sched = EDMSchedule(s_min=0.002, s_max=80.0, rho=7.0)
    t = np.geomspace(0.002, 80, 30)
    assert np.array_equal(sched.s(t), t)
    assert np.array_equal(sched.sigma(t), t)
    grid = sched.grid(18)
    assert grid[0] == 80.0 and grid[-1] == 0.002
    assert np.all(np.diff(grid) < 0)
    # defining property: equally spaced in sigma^(1/rho), step (smin^(1/7) - smax^(1/7))/(n-1)
    spacing = np.diff(grid ** (1 / 7))
    expected = (0.002 ** (1 / 7) - 80.0 ** (1 / 7)) / 17
    np.testing.assert_allclose(spacing, expected, rtol=1e-12)  # pow round trips: ~1e-15 each
    # rho = 1 is the linear grid
    np.testing.assert_allclose(
        EDMSchedule(s_min=1.0, s_max=5.0, rho=1.0).grid(5), [5, 4, 3, 2, 1], rtol=4 * EPS
    )
    # a small rho neither overflows nor leaves the domain
    tiny = EDMSchedule(rho=0.01).grid(7)
    assert np.all(np.isfinite(tiny)) and tiny[0] == 80.0 and tiny[-1] == 0.002
    assert np.all(np.diff(tiny) < 0)


def test_edm_grid_against_mpmath():
    sched = EDMSchedule(s_min=0.002, s_max=80.0, rho=7.0)
    n = 10
    with mpmath.workdps(30):
        a, b = mpmath.mpf(80) ** (mpmath.mpf(1) / 7), mpmath.mpf("0.002") ** (mpmath.mpf(1) / 7)
        ref = [float((a + mpmath.mpf(i) / (n - 1) * (b - a)) ** 7) for i in range(n)]
    # the float formula: a pow with exponent 7 amplifies a few ulp of its base 7x
    np.testing.assert_allclose(sched.grid(n), ref, rtol=64 * EPS)


def test_vp_linear_alpha_against_quadrature():
    sched = VPLinearSchedule(beta_min=0.1, beta_max=20.0)

    def beta(u):
        return 0.1 + u * 19.9

    for t in [0.001, 0.1, 0.37, 0.8, 1.0]:
        integral, err = quad(beta, 0.0, t)
        # Gauss-Kronrod is exact for a linear integrand up to rounding (~1e-16 of the
        # integral <= 10.05); exp turns that absolute error into a relative one
        reference = math.exp(-0.5 * integral)
        assert abs(float(sched.alpha(t)) - reference) <= 1e-14 * reference
        assert err < 1e-12


@pytest.mark.parametrize("spec", VP_FAMILIES + [NON_DEFAULT[n] for n in VP_FAMILIES])
def test_variance_preserving(spec):
    sched = get_schedule(spec)
    t = np.linspace(sched.t_min, sched.t_max, 101)
    alpha, sigma = sched.alpha(t), sched.sigma(t)
    # sigma = alpha s: two 4-ulp factors and a product (<= 9 ulp), doubled by squaring
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=0, atol=20 * EPS)
    np.testing.assert_allclose(sched.alpha_bar(t), alpha**2, rtol=16 * EPS)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "ou"])
def test_variance_preserving_symbolic(name):
    sched = get_schedule(name)
    assert sp.simplify(sched.alpha_expr() ** 2 + sched.sigma_expr() ** 2 - 1) == 0
    assert sp.simplify(sched.alpha_bar_expr() - sched.alpha_expr() ** 2) == 0


def _cosine_reference(t: float, offset: float) -> tuple[float, float]:
    """(alpha_bar, s) from the paper's formula, in 40-digit mpmath."""
    with mpmath.workdps(40):
        tt, off = mpmath.mpf(t), mpmath.mpf(offset)

        def f(x):
            return mpmath.cos((x + off) / (1 + off) * mpmath.pi / 2) ** 2

        ab = f(tt) / f(0)
        return float(ab), float(mpmath.sqrt((1 - ab) / ab))


@pytest.mark.parametrize("spec", ["vp-cosine", NON_DEFAULT["vp-cosine"]])
def test_cosine_matches_paper_formula(spec):
    sched = get_schedule(spec)
    t = np.concatenate([[sched.t_min], np.linspace(sched.t_min, sched.t_max, 9), [sched.t_max]])
    ref = np.array([_cosine_reference(ti, sched.offset) for ti in t])
    # full relative precision at both ends (where cos(theta(0))^2 - cos(theta)^2 and
    # cos(theta ~ pi/2) would cancel in a naive evaluation): K_ULP ulp
    np.testing.assert_allclose(sched.alpha_bar(t), ref[:, 0], rtol=K_ULP * EPS)
    np.testing.assert_allclose(sched.s(t), ref[:, 1], rtol=K_ULP * EPS)
    # the symbolic alpha is the paper's cos(theta(t))/cos(theta(0))
    off = sp.Rational(repr(sched.offset))
    paper = sp.cos((TIME + off) / (1 + off) * sp.pi / 2) / sp.cos(off / (1 + off) * sp.pi / 2)
    for tv in ["0.2", "0.9"]:
        assert abs(sp.N((sched.alpha_expr() - paper).subs(TIME, sp.Rational(tv)), 40)) < 1e-35


# --------------------------------------------------------------------------- ddpm


def _exact_alpha_bars(T: int, b0: str, b1: str, steps) -> np.ndarray:
    """prod_{j<=i} (1 - beta_j) with exact rational betas, at 40 digits."""
    with mpmath.workdps(40):
        lo, hi = mpmath.mpf(b0), mpmath.mpf(b1)
        acc, out = mpmath.mpf(1), {}
        for j in range(max(steps) + 1):
            acc *= 1 - (lo + j * (hi - lo) / (T - 1))
            out[j] = acc
        return np.array([float(out[i]) for i in steps]), np.array(
            [float(mpmath.sqrt((1 - out[i]) / out[i])) for i in steps]
        )


def test_ddpm_table_against_exact_product_and_cumprod():
    sched = get_schedule("ddpm")
    steps = [0, 1, 2, 10, 100, 500, 998, 999]
    ab_exact, s_exact = _exact_alpha_bars(1000, "0.0001", "0.02", steps)
    neg_log = -np.log(ab_exact)
    # compensated running sum of log1p terms: error ~eps (1 + L) in L = -ln ab,
    # which exp turns into the same relative error; 4 (1 + L) ulp
    assert np.all(np.abs(sched.alpha_bars[steps] / ab_exact - 1) <= 4 * EPS * (1 + neg_log))
    # s^2 = expm1(L) keeps full precision at step 0 (s^2 ~ beta_start = 1e-4)
    assert np.all(np.abs(sched.s_of_step(steps) / s_exact - 1) <= 4 * EPS * (1 + neg_log))
    # the reference implementation, np.cumprod(1 - betas): T products, each 1/2 ulp,
    # so at most T/2 ulp apart from the exact value, plus our 4 (1 + L)
    cumprod = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    bound = (1000 / 2 + 4 * (1 - np.log(cumprod))) * EPS
    assert np.all(np.abs(sched.alpha_bars / cumprod - 1) <= bound)


def test_ddpm_symbolic_product_closed_form():
    sched = get_schedule("ddpm")
    steps = [0, 7, 999]
    ab_exact, _ = _exact_alpha_bars(1000, "0.0001", "0.02", steps)
    expr = sched.alpha_bar_expr()
    for i, ref in zip(steps, ab_exact):
        val = sp.N(expr.subs(TIME, sp.Rational(i + 1, 1000)), 30)
        # 30-digit gamma-function ratio vs a 40-digit product, both rounded to float
        assert abs(float(val) / ref - 1) < 1e-15
    # and against the numeric table: L-table error 4 (1 + L) ulp
    t = sched.step_to_t(np.array(steps))
    sym = np.array([float(sp.N(expr.subs(TIME, sp.Rational(i + 1, 1000)), 30)) for i in steps])
    assert np.all(np.abs(sched.alpha_bar(t) / sym - 1) <= 8 * EPS * (1 - np.log(sym)))


def test_ddpm_clock_convention_and_interpolation():
    sched = get_schedule("ddpm")
    assert sched.step_to_t(0) == 1 / 1000 == sched.t_min
    assert sched.step_to_t(999) == 1.0 == sched.t_max
    assert sched.t_to_step(0.5) == 499.0
    s = sched.s_of_step(np.arange(1000))
    # log-linear interpolation: the midpoint is the geometric mean of the neighbours
    mid = sched.s_of_step(np.arange(999) + 0.5)
    np.testing.assert_allclose(mid, np.sqrt(s[:-1] * s[1:]), rtol=4 * EPS)
    assert np.all((s[:-1] < mid) & (mid < s[1:]))
    # s from alpha_bar by definition, s^2 = (1 - ab)/ab: cancellation in 1 - ab costs
    # eps/(1 - ab) relative, at most 1e4 ulp at step 0 -> compare with that budget
    ab = sched.alpha_bars
    np.testing.assert_allclose(s**2, (1 - ab) / ab, rtol=4 * EPS / (1 - ab[0]))


def test_ddpm_approaches_continuous_vp_linear():
    """With t_i = (i+1)/T, ln alpha_bar_i - ln alpha_bar(t_i) = sum_{j<=i} [ln(1 - b_j)
    + b_j] + [int_0^{t_i} beta(u) du - sum_{j<=i} b_j]. The Taylor remainder of
    ln(1 - b) lies in [-b^2/(2(1 - b)), -b^2/2]; the second bracket is a Riemann-sum
    mismatch, computed here. Both are O(1/T) at fixed beta_min, beta_max."""
    gaps = {}
    for T in (1000, 10000):
        disc = DDPMSchedule(T=T, beta_start=0.1 / T, beta_end=20.0 / T)
        cont = disc.continuous_counterpart()
        assert cont.beta_min == pytest.approx(0.1, rel=4 * EPS)
        assert cont.beta_max == pytest.approx(20, rel=4 * EPS)
        t = disc.step_to_t(np.arange(T))
        gap = np.log(disc.alpha_bars) - np.log(cont.alpha_bar(t))
        b = disc.betas
        taylor = np.cumsum(b**2 / (2 * (1 - b)))
        riemann = np.abs(np.cumsum(b) - (0.1 * t + 19.9 * t**2 / 2))
        # bound + rounding of the two ln alpha_bar (<= 1e-13 absolute)
        assert np.all(np.abs(gap) <= taylor + riemann + 1e-13)
        # leading order at the last step: -(1/2T) int_0^1 beta(u)^2 du (Riemann term is
        # exactly 0 there); the next order is (1/3T^2) int beta^3, bounded by 20^3/(3T^2)
        leading = -(0.1**2 + 0.1 * 19.9 + 19.9**2 / 3) / (2 * T)
        assert abs(gap[-1] - leading) <= 20.0**3 / (3 * T**2)
        gaps[T] = np.max(np.abs(gap))
    # O(1/T): a tenfold T shrinks the gap tenfold, up to the O(1/T) relative correction
    assert 9.0 <= gaps[1000] / gaps[10000] <= 11.0


# --------------------------------------------------------------------------- symbolic vs numeric


def _budget(lam: np.ndarray) -> np.ndarray:
    # every quantity is an exp/pow of an argument of size <~ |lambda| + 1, whose
    # rounding (eps |arg|) becomes a relative error after exp: 4 eps (2 + |lambda|)
    return 4 * EPS * (2 + np.abs(lam))


@pytest.mark.parametrize("spec", CONTINUOUS + [NON_DEFAULT[n] for n in CONTINUOUS])
def test_symbolic_equals_numeric(spec):
    sched = get_schedule(spec)
    t = _times(sched, [0.0, 0.013, 0.5, 0.97, 1.0])
    lam = sched.log_snr(t)
    for quantity in ["alpha", "sigma", "s", "log_snr", "alpha_bar"]:
        expr = getattr(sched, quantity + "_expr")()
        ref = np.array([float(expr.evalf(30, subs={TIME: sp.Float(ti, 30)})) for ti in t])
        got = getattr(sched, quantity)(t)
        scale = (1 + np.abs(ref)) if quantity == "log_snr" else np.abs(ref)
        assert np.all(np.abs(got - ref) <= _budget(lam) * scale), quantity
    # the closed-form inverse, at 30 digits, against the numeric inverse
    inverse = sched.inverse_expr()
    assert inverse is not None
    s = sched.s(t)
    ref_t = np.array([float(inverse.evalf(30, subs={NOISE: sp.Float(si, 30)})) for si in s])
    spread = 1.0 + np.abs(np.log(s))
    budget = 2 * K_ULP * EPS * (np.abs(ref_t) + spread / _dlogs_dt(sched, ref_t))
    assert np.all(np.abs(sched.t_of_s(s) - ref_t) <= budget)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_inverse_expr_inverts_s_expr(name):
    sched = get_schedule(name)
    t_lo, t_hi = sp.Rational(repr(sched.t_min)), sp.Rational(repr(sched.t_max))
    t_val = (t_lo + 2 * t_hi) / 3
    s_val = sched.s_expr().subs(TIME, t_val)
    assert abs(sp.N(sched.inverse_expr().subs(NOISE, s_val) - t_val, 40)) < 1e-35


def test_expressions_use_positive_time_symbol():
    for name in NAMES:
        sched = get_schedule(name)
        for expr in (sched.alpha_expr(), sched.sigma_expr(), sched.s_expr(), sched.log_snr_expr()):
            assert expr.free_symbols <= {TIME}
    assert TIME.is_positive and NOISE.is_positive
    assert get_schedule("ddpm").inverse_expr() is None


# --------------------------------------------------------------------------- root finder


@pytest.mark.parametrize("name", CONTINUOUS)
def test_root_finder_matches_closed_form(name):
    sched = get_schedule(name)
    s = np.geomspace(sched.s_min, sched.s_max, 64)
    closed = sched.t_of_s(s)
    bisected = invert_monotone(sched.s, s, sched.t_min, sched.t_max)
    # bisection to 4 eps relative bracket + the forward map's rounding, as for t_of_s
    spread = 1.0 + np.abs(np.log(s))
    budget = 2 * K_ULP * EPS * (np.abs(closed) + spread / _dlogs_dt(sched, closed))
    assert np.all(np.abs(bisected - closed) <= budget)


def test_root_finder_decreasing_and_clamping():
    targets = np.array([0.5, 0.25, 10.0, 0.01])
    x = invert_monotone(lambda v: 1.0 / v, targets, 1.0, 4.0, increasing=False)
    # 1/x is correctly rounded: 4 ulp of x; out-of-range targets give the nearer end
    np.testing.assert_allclose(x, [2.0, 4.0, 1.0, 4.0], rtol=4 * EPS)
    with pytest.raises(ValueError, match="lo < hi"):
        invert_monotone(np.exp, 1.0, 2.0, 1.0)


# --------------------------------------------------------------------------- grid, table, registry


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_grid(spec):
    sched = get_schedule(spec)
    grid = sched.grid(11)
    assert grid.shape == (11,)
    assert grid[0] == sched.t_max and grid[-1] == sched.t_min
    assert np.all(np.diff(sched.s(grid)) < 0)  # from high noise to low


def test_grid_standard_discretizations():
    np.testing.assert_allclose(get_schedule("ve").grid(5), [1, 0.75, 0.5, 0.25, 0], atol=0)
    steps = get_schedule("ddpm").t_to_step(get_schedule("ddpm").grid(4))
    assert steps.tolist() == [999.0, 666.0, 333.0, 0.0]
    assert get_schedule("ddpm").grid(1000).size == 1000
    with pytest.raises(ValueError, match="n=1001"):
        get_schedule("ddpm").grid(1001)


@pytest.mark.parametrize("n", [0, 1, -3])
def test_grid_bad_n(n):
    with pytest.raises(ValueError, match=f"n={n}"):
        get_schedule("ou").grid(n)


def test_grid_n_type():
    with pytest.raises(TypeError, match="integer"):
        get_schedule("ou").grid(5.0)


@pytest.mark.parametrize("spec", ["ou", "ddpm", "vp-cosine"])
def test_schedule_table(spec):
    sched = get_schedule(spec)
    s_values = [sched.s_min, 1.0, sched.s_max]
    rows = schedule_table(spec, s_values)
    assert len(rows) == 3
    keys = {"t", "s", "log_snr", "alpha_bar"} | ({"step"} if sched.discrete else set())
    for row, s in zip(rows, s_values):
        assert set(row) == keys
        assert all(isinstance(v, float) for v in row.values())
        assert row["s"] == s
        assert row["t"] == float(sched.t_of_s(s))
        assert row["log_snr"] == pytest.approx(-2 * math.log(s), rel=4 * EPS, abs=4 * EPS)
        assert row["alpha_bar"] == pytest.approx(1 / (1 + s * s), rel=4 * EPS)
    if sched.discrete:
        assert rows[0]["step"] == 0.0 and rows[-1]["step"] == sched.T - 1
    json.dumps(rows)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_round_trip_and_description(spec):
    sched = get_schedule(spec)
    again = get_schedule(sched.spec)
    assert again == sched and again.spec == sched.spec and hash(again) == hash(sched)
    assert get_schedule(sched) is sched
    d = sched.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert get_schedule(d) == sched and get_schedule({"name": sched.name, **sched.params}) == sched
    assert d["spec"] == sched.spec and d["s_min"] == sched.s_min and d["name"] == sched.name
    assert sched.spec in repr(sched) and type(sched).__name__ in repr(sched)
    assert sched.discrete is (sched.name == "ddpm")


def test_spec_strings():
    assert get_schedule("vp-linear").spec == "vp-linear:beta_min=0.1,beta_max=20,t_min=0.001"
    assert get_schedule("edm:rho=7") == EDMSchedule()
    assert get_schedule("  EDM : rho = 5 ") == EDMSchedule(rho=5.0)
    assert get_schedule("ddpm:T=500").T == 500 and isinstance(get_schedule("ddpm:T=500.0").T, int)
    assert get_schedule("vp-cosine") == VPCosineSchedule() and VPCosineSchedule().t_max == 0.9946
    assert get_schedule("ou") == OUSchedule(t_min=1e-4, t_max=5.0)
    assert sorted(list_schedules()) == sorted(["ve", "edm", "vp-linear", "ddpm", "vp-cosine", "ou"])


spec_params = {
    "ve": st.fixed_dictionaries({"s_min": st.floats(1e-4, 1.0), "s_max": st.floats(1.5, 1e3)}),
    "edm": st.fixed_dictionaries(
        {"s_min": st.floats(1e-4, 1.0), "s_max": st.floats(1.5, 1e3), "rho": st.floats(0.1, 20)}
    ),
    "vp-linear": st.fixed_dictionaries(
        {
            "beta_min": st.floats(1e-3, 1.0),
            "beta_max": st.floats(1.5, 30.0),
            "t_min": st.floats(1e-6, 0.5),
        }
    ),
    "ddpm": st.fixed_dictionaries(
        {
            "T": st.integers(2, 1500),
            "beta_start": st.floats(1e-5, 1e-3),
            "beta_end": st.floats(2e-3, 0.05),
        }
    ),
    "vp-cosine": st.fixed_dictionaries(
        {
            "offset": st.floats(1e-3, 0.1),
            "t_min": st.floats(1e-4, 0.4),
            "t_max": st.floats(0.5, 0.999),
        }
    ),
    "ou": st.fixed_dictionaries({"t_min": st.floats(1e-6, 0.4), "t_max": st.floats(0.5, 20.0)}),
}


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_spec_round_trip_random_params(name, data):
    params = data.draw(spec_params[name])
    sched = SCHEDULES[name](**params)
    again = get_schedule(sched.spec)
    assert again == sched
    assert again.params == params


# --------------------------------------------------------------------------- bad input


BAD_SPECS = [
    ("ve:s_min=0", ["s_min=0.0", "> 0"]),
    ("ve:s_min=-1", ["s_min=-1.0", "> 0"]),
    ("ve:s_min=80,s_max=1", ["s_min=80.0", "s_max=1.0"]),
    ("ve:s_min=5,s_max=5", ["s_min=5.0", "s_max=5.0"]),
    ("edm:rho=0", ["rho=0.0", "> 0"]),
    ("edm:rho=-2", ["rho=-2.0", "> 0"]),
    ("edm:s_min=10,s_max=1", ["s_min=10.0", "s_max=1.0"]),
    ("edm:s_max=inf", ["s_max=inf", "finite"]),
    ("vp-linear:beta_min=20,beta_max=0.1", ["beta_min=20.0", "beta_max=0.1"]),
    ("vp-linear:beta_min=0", ["beta_min=0.0", "> 0"]),
    ("vp-linear:t_min=1", ["t_min=1.0", "< 1"]),
    ("ddpm:T=1", ["T=1", "T >= 2"]),
    ("ddpm:T=0", ["T=0", "> 0"]),
    ("ddpm:T=2.5", ["T", "integer"]),
    ("ddpm:beta_start=0.03", ["beta_start=0.03", "beta_end=0.02"]),
    ("ddpm:beta_end=1.5", ["beta_end=1.5", "< 1"]),
    ("vp-cosine:offset=0", ["offset=0.0", "> 0"]),
    ("vp-cosine:t_max=1", ["t_max=1.0", "< 1"]),
    ("vp-cosine:t_min=0.95,t_max=0.9", ["t_min=0.95", "t_max=0.9"]),
    ("ou:t_min=2,t_max=1", ["t_min=2.0", "t_max=1.0"]),
    ("ou:t_max=800", ["noise range", "inf"]),
    ("nope", ["unknown schedule 'nope'", "vp-cosine"]),
    ("ve:rho=3", ["unknown parameter 'rho'", "s_min"]),
    ("ve:s_min", ["malformed"]),
    ("ve:s_min=abc", ["s_min='abc'", "not a number"]),
    ("ve:s_min=0.1,s_min=0.2", ["given twice"]),
    ({"name": "ve", "rho": 3}, ["unknown parameter 'rho'", "s_min"]),
    ({"name": "nope"}, ["unknown schedule 'nope'"]),
    ({"rho": 3}, ["'name' key"]),
    ({"name": "edm", "params": {"rho": -1}}, ["rho=-1.0", "> 0"]),
]


@pytest.mark.parametrize("spec, fragments", BAD_SPECS, ids=[str(b[0]) for b in BAD_SPECS])
def test_bad_specs(spec, fragments):
    with pytest.raises(ValueError) as info:
        get_schedule(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_types():
    with pytest.raises(TypeError, match="a Schedule, a string or a mapping"):
        get_schedule(3)
    with pytest.raises(TypeError, match="'params' must be a mapping"):
        get_schedule({"name": "ve", "params": [1, 2]})
    with pytest.raises(TypeError, match="rho must be a number"):
        EDMSchedule(rho="7")
    with pytest.raises(TypeError, match="must be a number"):
        VESchedule(s_min=True)
    with pytest.raises(TypeError, match="t must be a number"):
        get_schedule("ou").s("1.0")
    with pytest.raises(TypeError, match="abstract"):
        Schedule()


@pytest.mark.parametrize("name", NAMES)
def test_t_outside_domain(name):
    sched = get_schedule(name)
    for bad in (sched.t_min - 1e-3 * (sched.t_max - sched.t_min), sched.t_max * 1.01 + 1e-3):
        for method in (sched.s, sched.alpha, sched.sigma, sched.log_snr, sched.alpha_bar):
            with pytest.raises(ValueError) as info:
                method(np.array([sched.t_min, bad]))
            message = str(info.value)
            assert f"t={bad!r}" in message and "allowed" in message and repr(sched.t_max) in message
    with pytest.raises(ValueError, match="NaN"):
        sched.s(np.array([np.nan]))


@pytest.mark.parametrize("name", NAMES)
def test_inverse_inputs_outside_range(name):
    sched = get_schedule(name)
    with pytest.raises(ValueError, match=r"s=.*allowed"):
        sched.t_of_s(sched.s_min * 0.5)
    with pytest.raises(ValueError, match=r"s=.*allowed"):
        sched.t_of_s([1.0, sched.s_max * 2])
    with pytest.raises(ValueError, match=r"log_snr=.*allowed"):
        sched.t_of_log_snr(-2 * math.log(sched.s_max) - 1.0)
    with pytest.raises(ValueError, match=r"alpha_bar=.*allowed"):
        sched.t_of_alpha_bar(1.0)
    with pytest.raises(ValueError, match=r"alpha_bar=.*allowed"):
        sched.t_of_alpha_bar(0.0)
    with pytest.raises(ValueError, match="NaN"):
        sched.t_of_s(np.nan)
    # rounding-level excursions at the ends are accepted and clipped into the domain
    ends = ((sched.s_max * (1 + 4 * EPS), sched.t_max), (sched.s_min * (1 - 4 * EPS), sched.t_min))
    for s_end, t_end in ends:
        t = sched.t_of_s(s_end)
        assert sched.t_min <= t <= sched.t_max
        # the round-trip budget of test_round_trip_t_s_t at the end point
        spread = 1.0 + abs(math.log(s_end))
        assert abs(t - t_end) <= 2 * K_ULP * EPS * (t_end + spread / _dlogs_dt(sched, np.array(t_end)))


def test_ddpm_step_outside_range():
    sched = get_schedule("ddpm")
    for method in (sched.step_to_t, sched.s_of_step):
        with pytest.raises(ValueError, match=r"step=1000.0 .*0 <= step <= 999"):
            method(1000)
        with pytest.raises(ValueError, match=r"step=-1.0"):
            method(-1)


# --------------------------------------------------------------------------- module hygiene


def test_doctests():
    result = doctest.testmod(schedules_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, diffcrit.theory.schedules; "
        "print([m for m in ('numba', 'torch', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
