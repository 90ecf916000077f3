"""Tests of the derivation chain and of the generated page ``docs/derivations.md``."""

import contextlib
import importlib
import io
import math
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from diffcrit.theory.derivations import (
    SECTIONS,
    derivation_chain,
    page,
    prediction_steps,
    render_markdown,
)
from diffcrit.theory.schedules import get_schedule

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "derivations.md"


@pytest.fixture(scope="module")
def chain():
    return derivation_chain()


def by_key(chain):
    return {step.key: step for step in chain}


def test_committed_page_equals_generated_text():
    """docs/derivations.md never drifts: regenerate with
    `python -m diffcrit.theory.derivations > docs/derivations.md`."""
    assert DOCS_PAGE.read_text(encoding="utf-8") == page()


def test_module_entry_point_prints_the_page():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        # runpy warns that the module is already imported; re-executing it is the point here
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module("diffcrit.theory.derivations", run_name="__main__")
    assert out.getvalue() == page()


def test_chain_structure(chain):
    keys = [step.key for step in chain]
    assert len(keys) == len(set(keys))
    assert [s for s in SECTIONS if any(step.section == s for step in chain)] == list(SECTIONS)
    for step in chain:
        assert step.key.startswith(step.section + ".")
        latex = step.latex()
        assert latex and latex.count("{") == latex.count("}")
        module_name, _, attribute = step.source.rpartition(".")
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError:  # Class.method sources
            module_name, _, cls = module_name.rpartition(".")
            target = getattr(importlib.import_module(module_name), cls)
        assert callable(getattr(target, attribute)), step.source


def test_displayed_results_are_the_functions_output(chain):
    from diffcrit.theory import gaussian, mixture, tweedie

    steps = by_key(chain)
    assert steps["gaussian.kappa"].expression.rhs == gaussian.gaussian_mode_kappa()
    assert steps["mixture.critical"].expression.rhs == mixture.mixture_critical_noise_variance()
    assert steps["stability.ode_solution"].expression.rhs == tweedie.ode_perturbation_solution()
    assert steps["stability.threshold"].expression.rhs == 1


@pytest.mark.parametrize("name, s_value", [("vp-linear", 3.04), ("ou", 0.7), ("ve", 2.5), ("vp-cosine", 1.3)])
def test_displayed_clock_agrees_with_the_numeric_schedule(chain, name, s_value):
    """The t(s) printed on the page, evaluated by sympy, equals the schedule's numeric inverse."""
    step = by_key(chain)[f"schedules.{name}.t"]
    s = sp.Symbol("s", positive=True)
    shown = float(step.expression.rhs.subs(s, s_value).evalf(30))
    # the numeric inverse is accurate to a few ulp of t (closed form + Newton refinement)
    assert shown == pytest.approx(float(get_schedule(name).t_of_s(s_value)), rel=1e-12)


def test_displayed_formulas_numerically(chain):
    steps = by_key(chain)
    lam, s, s0 = sp.symbols("lambda s s0", positive=True)
    # Gaussian field: kappa = lambda/(lambda + s^2) at lambda = 2, s = 1 is 2/3
    assert steps["gaussian.kappa"].expression.rhs.subs({lam: 2, s: 1}) == sp.Rational(2, 3)
    # SDE variance with kappa = 0 and V0 = s0^2 stays s^2 (pure noise injection)
    kappa, v0 = sp.Symbol("kappa", nonnegative=True), sp.Symbol("V0", positive=True)
    variance = steps["stability.sde_variance"].expression.rhs
    value = variance.subs({kappa: 0, v0: s0**2}).subs({s: 0.37, s0: 2.1})
    assert float(value) == pytest.approx(0.37**2, rel=1e-12)
    # speciation time in the OU clock: s(t)^2 = Lambda at t = ln(1 + Lambda)/2
    Lam = sp.Symbol("Lambda", positive=True)
    t_c = float(steps["mixture.ou_time"].expression.rhs.subs(Lam, 9.0))
    assert math.expm1(2 * t_c) == pytest.approx(9.0, rel=1e-14)


def test_prediction_steps_select_the_relevant_part():
    gaussian = [s.key for s in prediction_steps("gaussian", level="exact", schedule="ou")]
    assert "gaussian.crossover" in gaussian and "patch.jacobian" not in gaussian
    assert gaussian[-2:] == ["schedules.ou.s", "schedules.ou.t"]
    moment = [s.key for s in prediction_steps("patch", "equivariant", "moment")]
    homogeneous = [s.key for s in prediction_steps("patch", "equivariant", "homogeneous", dynamics="sde")]
    assert "patch.moment" in moment and "patch.homogeneous_flow" not in moment
    assert "patch.homogeneous_flow" in homogeneous and "stability.sde_variance" in homogeneous
    assert "patch.sde_fluctuations" in homogeneous
    memorizing = [s.key for s in prediction_steps("memorizing", level="mean-trajectory")]
    assert "mixture.memorizing" in memorizing
    custom = prediction_steps("mixture", level="moment", schedule="ve:s_min=0.01,s_max=50")
    assert "ve:s_min=0.01,s_max=50" in custom[-2].explanation
    with pytest.raises(ValueError, match="unknown model"):
        prediction_steps("unet")


def test_render_markdown_and_errors(chain):
    text = render_markdown(chain[:2], heading_level=3)
    assert text.startswith("### Tweedie's identities") and text.count("$$") == 4
    with pytest.raises(ValueError, match="heading_level"):
        render_markdown(chain[:1], heading_level=0)
    with pytest.raises(ValueError, match="unknown section"):
        derivation_chain(["quantum"])


def test_prediction_latex_contains_numbers():
    from diffcrit.theory.predict import GaussianMixture, predict

    m = np.zeros((2, 2))
    m[0, 0] = 2.0
    pred = predict(np.arange(4.0).reshape(1, 2, 2), GaussianMixture(means=[m, -m], variance=1.0), "ou")
    text = pred.latex()
    assert "## Prediction: mixture" in text and "s_{c}^{2} = b - v" in text
    assert "s_c = 1.73205" in text  # sqrt(|m|^2 - v) = sqrt(3), printed to 6 digits
    assert r"t{\left(s \right)} = \frac{\log{\left(s^{2} + 1 \right)}}{2}" in text
