"""The derivation chain of the package, as data, and its rendering as LaTeX.

Every step is a :class:`DerivationStep` ``(title, explanation, expression)`` whose
expression comes from calling the package's symbolic functions (the ``source`` of
each step names the function). Where a statement is displayed in a compact
generic form (for instance the patch Jacobian, derived by sympy for a small
symbolic patch set), the step is only built after the symbolic check behind it has
passed, so the page cannot show a result the package does not derive.

:func:`derivation_chain` returns the ordered list, :func:`render_markdown` turns
steps into Markdown with ``$$...$$`` LaTeX blocks, and
:meth:`diffcrit.theory.predict.Prediction.latex` renders the part of the chain
behind one prediction (:func:`prediction_steps`) followed by its numbers.

The documentation page ``docs/derivations.md`` is generated, never edited::

    python -m diffcrit.theory.derivations > docs/derivations.md

(``tests/theory/test_derivations.py`` checks that the committed page equals the
generated text.)
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import sympy as sp

__all__ = [
    "DerivationStep",
    "SECTIONS",
    "derivation_chain",
    "render_markdown",
    "prediction_steps",
    "prediction_markdown",
    "page",
]

#: Section key -> (title, THEORY.md reference).
SECTIONS: dict[str, tuple[str, str]] = {
    "stability": ("Tweedie's identities and linear stability", "THEORY.md 1-2"),
    "schedules": ("Schedules and their clocks", "THEORY.md 1"),
    "gaussian": ("Gaussian field: the null model", "THEORY.md 3.1"),
    "mixture": ("Gaussian mixture and the memorizing model: the pitchfork", "THEORY.md 3.2"),
    "patch": ("Patch model: local, translation-equivariant", "THEORY.md 3.3"),
    "ginzburg-landau": ("Ginzburg-Landau theory and Kibble-Zurek", "THEORY.md 3.4"),
}


@dataclass(frozen=True)
class DerivationStep:
    """One derived statement.

    Attributes:
        key: stable identifier, ``"<section>.<name>"``.
        section: key of :data:`SECTIONS`.
        title: short title.
        explanation: what the statement says and how it was obtained (plain text
            with inline ``$...$`` math allowed).
        expression: the sympy expression (usually an ``Eq``) to display.
        source: dotted name of the function that derives it.
    """

    key: str
    section: str
    title: str
    explanation: str
    expression: Any
    source: str

    def latex(self) -> str:
        """LaTeX of the expression.

        >>> step = DerivationStep("x.y", "stability", "t", "e", sp.Eq(sp.Symbol("kappa"), 1), "m.f")
        >>> step.latex()
        '\\\\kappa = 1'
        """
        return sp.latex(self.expression)


def _eq(lhs: Any, rhs: Any) -> sp.Eq:
    return sp.Eq(lhs, rhs, evaluate=False)


def _require(condition: bool, what: str) -> None:
    if not condition:  # pragma: no cover - the symbolic functions raise first
        raise ArithmeticError(f"derivation check failed: {what}")


_s = sp.Symbol("s", positive=True)
_s0 = sp.Symbol("s0", positive=True)
_y = sp.Symbol("y", real=True)
_kappa = sp.Symbol("kappa", nonnegative=True)


# --------------------------------------------------------------------------- sections


@functools.cache
def _stability() -> tuple[DerivationStep, ...]:
    from diffcrit.theory import tweedie as tw

    sec, mod = "stability", "diffcrit.theory.tweedie."
    D = sp.Symbol("D", real=True)
    delta = sp.Function("delta")
    ell = sp.Symbol(r"\ln s", real=True)
    variance = sp.Function("V")
    mean_delta = sp.Function(r"\langle\delta\rangle")
    ode_rate = tw.ode_perturbation_rate()
    sde_rate = tw.sde_perturbation_mean_rate()
    ode_root, sde_root = tw.stability_threshold()
    _require(ode_root == sde_root == 1, "ODE and SDE thresholds are kappa = 1")
    return (
        DerivationStep(f"{sec}.tweedie_mean", sec, "Tweedie's first identity",
                       "The denoiser is the posterior mean: $D = y + s^2\\,\\partial_y \\ln p_s$ with "
                       "$M_k(y) = \\int (x - y)^k N(y; x, s^2) p_0(x)\\,dx$, so $M_1/M_0 = E[x_0 - y \\mid y]$ "
                       "(any prior; differentiation under the integral).",
                       _eq(D, tw.tweedie_denoiser_from_moments()), mod + "tweedie_denoiser_from_moments"),
        DerivationStep(f"{sec}.tweedie_jacobian", sec, "Tweedie's second identity",
                       "Differentiating once more: $J = \\partial D/\\partial y = (M_2/M_0 - (M_1/M_0)^2)/s^2 "
                       "= \\mathrm{Var}[x_0 \\mid y]/s^2$, symmetric and positive semi-definite.",
                       _eq(sp.Derivative(D, _y), tw.tweedie_jacobian_from_moments()),
                       mod + "tweedie_jacobian_from_moments"),
        DerivationStep(f"{sec}.ode", sec, "Probability-flow ODE",
                       "From the forward process $dy = \\sqrt{d(s^2)/dt}\\,dW$ (every schedule, per unit $ds$).",
                       _eq(sp.Derivative(sp.Function("y")(_s), _s), tw.probability_flow_drift()),
                       mod + "probability_flow_drift"),
        DerivationStep(f"{sec}.sde", sec, "Reverse SDE",
                       "Anderson's time reversal: the drift per unit $ds$ is twice the ODE's, and the noise "
                       "increment has variance $2 s\\,|ds|$.",
                       _eq(sp.Symbol("dy"), tw.reverse_sde_drift() * sp.Symbol("ds")
                           + sp.sqrt(tw.reverse_sde_noise_variance() * sp.Symbol("|ds|")) * sp.Symbol("xi")),
                       mod + "reverse_sde_drift"),
        DerivationStep(f"{sec}.ode_rate", sec, "Linearized ODE",
                       "A perturbation along an eigenvector of $J$ with eigenvalue $\\kappa$.",
                       _eq(sp.Derivative(delta(ell), ell), ode_rate * delta(ell)), mod + "ode_perturbation_rate"),
        DerivationStep(f"{sec}.ode_solution", sec, "Growth law",
                       "$\\delta \\propto s^{1-\\kappa}$: as $s$ decreases it shrinks for $\\kappa < 1$ and grows for "
                       "$\\kappa > 1$. Stiffness $\\gamma = 1 - \\kappa$.",
                       _eq(delta(_s), tw.ode_perturbation_solution()), mod + "ode_perturbation_solution"),
        DerivationStep(f"{sec}.sde_rate", sec, "Linearized SDE, mean",
                       "The mean perturbation of the reverse SDE grows at twice the ODE rate.",
                       _eq(sp.Derivative(mean_delta(ell), ell), sde_rate * mean_delta(ell)),
                       mod + "sde_perturbation_mean_rate"),
        DerivationStep(f"{sec}.sde_variance", sec, "Linearized SDE, variance",
                       "Ito's rule for $V = \\langle\\delta^2\\rangle$ integrated downward in $s$ from $V_0$ at "
                       "$s_0$ (constant $\\kappa \\neq 1/2$): the exponent doubles, the noise adds "
                       "$s^2/(1 - 2\\kappa)$.",
                       _eq(variance(_s), tw.sde_perturbation_variance_solution()),
                       mod + "sde_perturbation_variance_solution"),
        DerivationStep(f"{sec}.threshold", sec, "Stability threshold",
                       "The ODE and SDE growth rates vanish at the same eigenvalue: a mode is unstable when its "
                       "posterior variance exceeds $s^2$.",
                       _eq(sp.Symbol("kappa_c"), ode_root), mod + "stability_threshold"),
    )


_SCHEDULE_FAMILIES = ("ve", "edm", "vp-linear", "ddpm", "vp-cosine", "ou")


@functools.cache
def _schedule_steps(spec: str) -> tuple[DerivationStep, ...]:
    from diffcrit.theory.schedules import TIME, get_schedule

    schedule = get_schedule(spec)
    sec = "schedules"
    source = f"diffcrit.theory.schedules.{type(schedule).__name__}"
    name = schedule.name
    steps = [DerivationStep(f"{sec}.{name}.s", sec, f"{name}: noise level",
                            f"VE-equivalent noise $s = \\sigma/\\alpha$ of `{schedule.spec}`, derived from its "
                            "$\\alpha(t)$ and $\\sigma(t)$.",
                            _eq(sp.Function("s")(TIME), schedule.s_expr()), source + ".s_expr")]
    inverse = schedule.inverse_expr()
    if inverse is None:
        explanation = ("No closed-form inverse: $t(s)$ is the exact inverse of the table of $s$ on the "
                       "steps, interpolated linearly in $\\ln s$ between steps.")
        steps.append(DerivationStep(f"{sec}.{name}.t", sec, f"{name}: clock", explanation,
                                    _eq(sp.Symbol("t_c"), sp.Function("t")(sp.Symbol("s_c"))),
                                    source + ".t_of_s"))
    else:
        s = sp.Symbol("s", positive=True)
        steps.append(DerivationStep(f"{sec}.{name}.t", sec, f"{name}: clock",
                                    "The critical time is $t_c = t(s_c)$ with the inverse derived by sympy "
                                    "(the real branch inside the domain).",
                                    _eq(sp.Function("t")(s), inverse), source + ".inverse_expr"))
    return tuple(steps)


@functools.cache
def _schedules() -> tuple[DerivationStep, ...]:
    return tuple(step for name in _SCHEDULE_FAMILIES for step in _schedule_steps(name))


@functools.cache
def _gaussian() -> tuple[DerivationStep, ...]:
    from diffcrit.theory import gaussian as g

    sec, mod = "gaussian", "diffcrit.theory.gaussian."
    lam, mu = sp.Symbol("lambda", positive=True), sp.Symbol("mu", real=True)
    S0 = sp.Symbol("S0", positive=True)
    stiffness = g.gaussian_mode_stiffness()
    _require(stiffness.is_positive is True, "gamma_k > 0 for all lambda, s > 0")
    sde_variance = g.gaussian_mode_sde_variance()
    compact = lam + _s**2 + (S0 - lam - _s0**2) * ((lam + _s**2) / (lam + _s0**2)) ** 2
    _require(sp.simplify(sde_variance - compact) == 0, "SDE variance compact form")
    ode_sf, sde_sf = g.stationary_flow_structure_factor()
    k = sp.Symbol("k")
    return (
        DerivationStep(f"{sec}.wiener", sec, "Wiener filter",
                       "Mode $k$ of $x_0 \\sim N(\\mu, \\Sigma)$, $\\Sigma = U\\,\\mathrm{diag}(\\lambda_k) U^T$: "
                       "Tweedie on the marginal $N(\\mu, \\lambda + s^2)$, cross-checked against Bayes.",
                       _eq(sp.Symbol("D_k"), g.wiener_filter_mode()), mod + "wiener_filter_mode"),
        DerivationStep(f"{sec}.kappa", sec, "Jacobian eigenvalue", "The eigenvalue of $J$ along mode $k$.",
                       _eq(sp.Symbol("kappa_k"), g.gaussian_mode_kappa()), mod + "gaussian_mode_kappa"),
        DerivationStep(f"{sec}.stiffness", sec, "No instability",
                       "The stiffness is positive for every $\\lambda_k, s > 0$ (sympy: `is_positive`): "
                       "$\\kappa_k < 1$, no mode ever becomes unstable.",
                       _eq(sp.Symbol("gamma_k"), stiffness), mod + "gaussian_mode_stiffness"),
        DerivationStep(f"{sec}.crossover", sec, "Crossover",
                       "Mode $k$ crosses $\\kappa = 1/2$ at $s_k^2 = \\lambda_k$; the slowest mode (largest "
                       "$\\lambda_k$) crosses first. This is what `predict` reports for the Gaussian field.",
                       _eq(sp.Symbol("s_k") ** 2, g.gaussian_mode_crossover_noise_variance()),
                       mod + "gaussian_mode_crossover_noise_variance"),
        DerivationStep(f"{sec}.ode_flow", sec, "Exact ODE flow",
                       "dsolve of $dy/ds = (y - D)/s$ per mode, from $y_0$ at $s_0$.",
                       _eq(sp.Function("y_k")(_s), g.gaussian_mode_ode_flow()), mod + "gaussian_mode_ode_flow"),
        DerivationStep(f"{sec}.sde_mean", sec, "SDE mean", "The mean of the reverse SDE, from $y_0$ at $s_0$.",
                       _eq(sp.Function(r"\langle y_{k} \rangle")(_s), g.gaussian_mode_sde_mean()),
                       mod + "gaussian_mode_sde_mean"),
        DerivationStep(f"{sec}.ode_variance", sec, "Structure factor, ODE",
                       "Variance of mode $k$ along the ODE from an ensemble with $S_0$ at $s_0$.",
                       _eq(sp.Function("S_k")(_s), g.gaussian_mode_ode_variance()), mod + "gaussian_mode_ode_variance"),
        DerivationStep(f"{sec}.sde_variance", sec, "Structure factor, SDE",
                       "Solved by variation of constants (shown in the compact form sympy verifies).",
                       _eq(sp.Function("S_k")(_s), compact), mod + "gaussian_mode_sde_variance"),
        DerivationStep(f"{sec}.stationary", sec, "Stationary start",
                       "From the noisy data ensemble $S_0 = \\lambda + s_0^2$ both dynamics keep the marginal "
                       "exact (ODE and SDE give the same result).",
                       _eq(sp.Function("S")(k, _s), ode_sf if ode_sf == sde_sf else sp.Tuple(ode_sf, sde_sf)),
                       mod + "stationary_flow_structure_factor"),
        DerivationStep(f"{sec}.xi2", sec, "Correlation length along the flow",
                       "Second-moment length with $S(0) = P_0 + s^2$, $S(k_{min}) = P_1 + s^2$: it decreases "
                       "smoothly with $s$, no sharp rise.",
                       _eq(sp.Symbol("xi_2"), g.stationary_flow_correlation_length()),
                       mod + "stationary_flow_correlation_length"),
    )


@functools.cache
def _mixture() -> tuple[DerivationStep, ...]:
    from diffcrit.theory import mixture as mx

    sec, mod = "mixture", "diffcrit.theory.mixture."
    v = sp.Symbol("v", positive=True)
    gamma, quartic = mx.two_component_normal_form()
    above, below = mx.two_component_susceptibility_leading()
    critical = mx.mixture_critical_noise_variance()
    return (
        DerivationStep(f"{sec}.denoiser", sec, "Two components",
                       "Exact posterior mean of $(N(m, v) + N(-m, v))/2$, from the generic softmax over "
                       "components of shrunk means (along $m/|m|$ in $d$ dimensions).",
                       _eq(sp.Symbol("D"), mx.two_component_denoiser()), mod + "two_component_denoiser"),
        DerivationStep(f"{sec}.kappa", sec, "Jacobian at the symmetric point",
                       "$J = v/(v + s^2)\\,I + s^2 B/(v + s^2)^2$; along an eigenvector of the between-component "
                       "covariance $B$ with eigenvalue $b$:",
                       _eq(sp.Symbol("kappa"), mx.symmetric_point_kappa()), mod + "symmetric_point_kappa"),
        DerivationStep(f"{sec}.stiffness", sec, "Stiffness",
                       "Negative (unstable) below $s_c^2 = b - v$.",
                       _eq(sp.Symbol("gamma"), mx.symmetric_point_stiffness()), mod + "symmetric_point_stiffness"),
        DerivationStep(f"{sec}.critical", sec, "Critical noise variance",
                       "With $b = \\lambda_{max}(B)$; a transition exists iff $\\lambda_{max}(B) > v$. "
                       "For $\\pm m$: $s_c^2 = |m|^2 - v$.",
                       _eq(sp.Symbol("s_c") ** 2, critical), mod + "mixture_critical_noise_variance"),
        DerivationStep(f"{sec}.memorizing", sec, "Memorizing limit",
                       "One component per training point and $v \\to 0$: $b = \\lambda_{max}(C)$ of the data "
                       "covariance at high noise (uniform weights). Along the mean trajectory the weights are "
                       "not uniform and the exact $s_c$ is found numerically.",
                       _eq(sp.Symbol("s_c") ** 2, sp.limit(critical, v, 0)), mod + "memorizing_critical_noise"),
        DerivationStep(f"{sec}.fixed_point", sec, "Order parameter equation",
                       "Fixed points of the frozen-$s$ map $D(y) = y$: the Curie-Weiss equation at temperature "
                       "$(v + s^2)/m^2$.",
                       _eq(_y, mx.two_component_fixed_point_map()), mod + "two_component_fixed_point_map"),
        DerivationStep(f"{sec}.normal_form", sec, "Normal form",
                       "$D(y) - y = -\\gamma y - u y^3 + O(y^5)$ with",
                       _eq(sp.Tuple(sp.Symbol("gamma"), sp.Symbol("u")), sp.Tuple(gamma, quartic)),
                       mod + "two_component_normal_form"),
        DerivationStep(f"{sec}.order_parameter", sec, "Order parameter",
                       "Leading order below $s_c$: $y^* = \\sqrt{-\\gamma/u}$.",
                       _eq(sp.Symbol("y^*"), mx.two_component_order_parameter_leading()),
                       mod + "two_component_order_parameter_leading"),
        DerivationStep(f"{sec}.beta", sec, "Exponent beta",
                       "$\\beta = \\lim d\\ln y^*/d\\ln(s_c^2 - s^2)$: mean field.",
                       _eq(sp.Symbol("beta"), mx.two_component_order_parameter_exponent()),
                       mod + "two_component_order_parameter_exponent"),
        DerivationStep(f"{sec}.susceptibility", sec, "Susceptibility",
                       "Response to a field tilting the weights, above and below $s_c$: both "
                       "$\\propto |s^2 - s_c^2|^{-1}$, amplitude ratio 2.",
                       _eq(sp.Tuple(sp.Symbol("chi_>"), sp.Symbol("chi_<")), sp.Tuple(above, below)),
                       mod + "two_component_susceptibility_leading"),
        DerivationStep(f"{sec}.ou_time", sec, "Speciation time",
                       "In the OU clock ($\\alpha = e^{-t}$), $s(t)^2 = \\Lambda$ at",
                       _eq(sp.Symbol("t_c"), mx.ou_critical_time()), mod + "ou_critical_time"),
    )


@functools.cache
def _patch() -> tuple[DerivationStep, ...]:
    from diffcrit.theory import patch_symbolic as ps

    sec, mod = "patch", "diffcrit.theory.patch_symbolic."
    _require(all(ps.jacobian_residual(2, 2)), "patch Jacobian = tilted covariance / s^2")
    velocity, c, s_sym, h = ps.homogeneous_flow(4, 1)
    _require(all(sp.simplify(v_i - (c - h) / s_sym) == 0 for v_i in velocity), "homogeneous invariance")
    _require(ps.plane_wave_residual(5, 1).applyfunc(sp.simplify) == sp.zeros(5, 5), "plane waves")
    _require(ps.high_noise_kernel_leading_term(2, 2).applyfunc(sp.simplify) == sp.zeros(1, 2), "high noise")
    lam, re, im, k, kernel = ps.plane_wave_eigenvalue(1)
    # display K_{-1} for the symbol the derivation names K_m1
    readable = {kernel[-1]: sp.Symbol("K_{-1}", real=True)}
    lam, re = lam.xreplace(readable), re.xreplace(readable)
    gamma0, b, _ = ps.small_k_stiffness(2, 1)
    ode_rate, S, gamma = ps.ode_mode_variance_rate()
    sde_rate, _, _, _ = ps.sde_mode_variance_rate()
    beta = sp.Symbol("beta", real=True)
    m = sp.Symbol("m", real=True)
    phi = sp.Function("phi")
    r = sp.Symbol("r")
    cov = sp.Function(r"\operatorname{Cov}_w")
    K = sp.Function("K")
    ell = sp.Symbol(r"\ln s", real=True)
    S_fn = sp.Function("S")
    gamma_fn = sp.Function("gamma")
    solved = sp.dsolve(sp.Eq(S_fn(ell).diff(ell), ode_rate.subs({S: S_fn(ell), gamma: gamma_fn(ell)})), S_fn(ell))
    return (
        DerivationStep(f"{sec}.jacobian", sec, "Jacobian of the patch denoiser",
                       "$D_i(y) = \\sum_a w_a \\phi_a(0)$, $w_a \\propto \\exp(-|y[i+W] - \\phi_a|^2/2s^2)$: "
                       "differentiating the softmax gives the weighted (tilted) covariance of the patch centre "
                       "with each offset (checked identically for a symbolic set of 2 patches and 2 offsets).",
                       _eq(sp.Derivative(sp.Symbol("D_i"), sp.Symbol("y_{i+r}")),
                           cov(phi(0), phi(r)) / _s**2), mod + "jacobian_residual"),
        DerivationStep(f"{sec}.homogeneous_flow", sec, "Homogeneous trajectory",
                       "At $y = c\\,1$ every pixel sees the same window $c\\,1_W$: the homogeneous fields are an "
                       "invariant set (pooled patches, periodic lattice; checked on a symbolic ring), moving by "
                       "the scalar ODE with $h(c, s) = \\sum_a w_a(c) \\phi_a(0)$. `predict` starts it at the "
                       "data mean at $s_0 = 100$ std.",
                       _eq(sp.Derivative(sp.Function("c")(_s), _s), (sp.Symbol("c") - sp.Function("h")(
                           sp.Symbol("c"), _s)) / _s), mod + "homogeneous_flow"),
        DerivationStep(f"{sec}.high_noise_trajectory", sec, "Start of the trajectory",
                       "The invariant trajectory at high noise, $\\beta = -\\mathrm{Cov}[\\phi(0), "
                       "|\\phi - m|^2]/2$ (probability flow; the SDE drift gives $\\beta/2$).",
                       _eq(sp.Function("c")(_s), m + ps.homogeneous_high_noise_expansion(1) / _s**2),
                       mod + "homogeneous_high_noise_expansion"),
        DerivationStep(f"{sec}.plane_wave", sec, "Fourier modes",
                       "Along the homogeneous trajectory $J_{i,i+r} = K(r)$ is a convolution and plane waves "
                       "are its eigenvectors (checked on a symbolic ring); shown for a 1-D window of radius 1, "
                       "the package sums every offset of $W$.",
                       _eq(sp.Function("lambda")(k), lam), mod + "plane_wave_eigenvalue"),
        DerivationStep(f"{sec}.kappa", sec, "Growth rate",
                       "Only the real part sets growth; $\\mathrm{Im}\\,\\lambda = (K_1 - K_{-1}) \\sin k$ "
                       "drifts the phase ($K$ is not even unless the data are reflection-symmetric). "
                       "Instability: $\\kappa(k, s) > 1$.",
                       _eq(sp.Function("kappa")(k), re), mod + "plane_wave_eigenvalue"),
        DerivationStep(f"{sec}.moment", sec, "Moment level",
                       "At high noise the tilted weights are uniform: $s^2 K(r) \\to C(r)$, the pooled patch "
                       "covariance (checked symbolically), so $\\kappa \\approx S_W(k)/s^2$ with the windowed "
                       "spectrum $S_W(k) = \\sum_{r \\in W} C(r) \\cos(k \\cdot r)$ and "
                       "$s_c^2 \\approx \\max_k S_W(k)$.",
                       _eq(sp.Limit(_s**2 * K(r), _s, sp.oo), sp.Function("C")(r)),
                       mod + "high_noise_kernel_leading_term"),
        DerivationStep(f"{sec}.marginal", sec, "Marginal level (definition)",
                       "The annealed eigenvalue over training images and noise, by Monte Carlo with common "
                       "random numbers across $s$ (a definition, not a derivation).",
                       _eq(sp.Function(r"\bar\kappa")(k, _s), sp.Function("E")(
                           sp.Function(r"\operatorname{Re}\langle e_k, J(x_0 + s\epsilon) e_k\rangle")(k, _s))),
                       "diffcrit.theory.patch.marginal_level"),
        DerivationStep(f"{sec}.small_k", sec, "Small-k stiffness",
                       "$\\gamma(k) = \\gamma_0 + b|k|^2 + O(k^4)$ for a cubic-symmetric kernel (2-D, radius 1; "
                       "in general $b = \\sum_r |r|^2 K(r)/2d$).",
                       _eq(sp.Tuple(sp.Symbol("gamma_0"), sp.Symbol("b")), sp.Tuple(gamma0, b)),
                       mod + "small_k_stiffness"),
        DerivationStep(f"{sec}.xi_J", sec, "Response correlation length",
                       "Diverges as $(s - s_c)^{-1/2}$ where $\\gamma_0 \\to 0$ (mean field $\\nu = 1/2$).",
                       _eq(sp.Symbol("xi_J"), sp.sqrt(sp.Symbol("b") / sp.Symbol("gamma_0"))),
                       "diffcrit.theory.patch.response_correlation_length"),
        DerivationStep(f"{sec}.ode_fluctuations", sec, "Linear fluctuations, ODE",
                       "$d|\\delta_k|^2/d\\ln s = 2\\gamma S$, integrated:",
                       solved, mod + "ode_mode_variance_rate"),
        DerivationStep(f"{sec}.sde_fluctuations", sec, "Linear fluctuations, SDE",
                       "One Euler-Maruyama step in the limit of small steps; the noise injection adds $-2s^2$.",
                       _eq(sp.Derivative(S_fn(ell), ell), sde_rate.subs({S: S_fn(ell)})),
                       mod + "sde_mode_variance_rate"),
    )


@functools.cache
def _ginzburg_landau() -> tuple[DerivationStep, ...]:
    from diffcrit.theory import ginzburg_landau as gl

    sec, mod = "ginzburg-landau", "diffcrit.theory.ginzburg_landau."
    # display kappa(phi0, S, S) for the cumulant symbols the derivation names kappa_phi0_SS, ...
    readable = {sp.Symbol("kappa_phi0_SS", real=True): sp.Symbol(r"\kappa_{\phi_0 S S}", real=True),
                sp.Symbol("kappa_phi0_SSS", real=True): sp.Symbol(r"\kappa_{\phi_0 S S S}", real=True)}
    coefficients = {key: value.xreplace(readable) for key, value in gl.gl_coefficients_symbolic().items()}
    exponents = gl.mean_field_exponents()
    kz = gl.kibble_zurek_freeze_out()
    tau = sp.Symbol("tau", real=True)
    steps = [
        DerivationStep(f"{sec}.cumulants", sec, "Derivatives are posterior cumulants",
                       "The posterior is an exponential tilt with parameter $y/s^2$, so the $n$-th derivative of "
                       "$D$ is the $(n+1)$-th posterior cumulant over $s^{2n}$:",
                       _eq(sp.Tuple(*[sp.Derivative(sp.Symbol("D"), (_y, n)) for n in (1, 2, 3)]),
                           sp.Tuple(*[gl.posterior_mean_derivative(n) for n in (1, 2, 3)])),
                       mod + "posterior_mean_derivative"),
        DerivationStep(f"{sec}.time", sec, "Log-noise time",
                       "In $\\tau = -\\ln s$ the probability flow is a relaxation.",
                       _eq(sp.Derivative(sp.Function("y")(tau), tau), gl.log_noise_time_drift()),
                       mod + "log_noise_time_drift"),
    ]
    for name in ("r", "c", "g", "u"):
        steps.append(DerivationStep(f"{sec}.{name}", sec, f"Coefficient {name}",
                                    "$d\\phi/d\\tau = -(r - c\\,\\nabla^2)\\phi - g\\phi^2 - u\\phi^3$ from the "
                                    "uniform-mode expansion around the homogeneous trajectory"
                                    + {"r": ", with $\\kappa_0 = \\sum_r K(r)$ (so $r = \\gamma_0$).",
                                       "c": ", with $b$ of the small-$k$ stiffness.",
                                       "g": "; $\\kappa_{\\phi_0 S S}$ is the tilted joint cumulant of the patch "
                                            "centre with two copies of the window sum $S = \\sum_r \\phi(r)$ "
                                            "($g = 0$ for symmetric data).",
                                       "u": "; $\\kappa_{\\phi_0 S S S}$: with three copies of $S$."}[name],
                                    _eq(sp.Symbol(name), coefficients[name]), mod + "gl_coefficients_symbolic"))
    steps += [
        DerivationStep(f"{sec}.exponents", sec, "Mean-field exponents",
                       "From the linearized GL relaxation rate $r + c k^2$.",
                       _eq(sp.Tuple(sp.Symbol("nu"), sp.Symbol("z")), sp.Tuple(exponents["nu"], exponents["z"])),
                       mod + "mean_field_exponents"),
        DerivationStep(f"{sec}.kibble_zurek", sec, "Kibble-Zurek freeze-out",
                       "For a linear ramp $r = -(\\tau - \\tau_c)/\\tau_Q$: freeze-out delay and length.",
                       _eq(sp.Tuple(sp.Symbol(r"\hat t"), sp.Symbol(r"\hat\xi")), sp.Tuple(kz["t_hat"], kz["xi_hat"])),
                       mod + "kibble_zurek_freeze_out"),
    ]
    return tuple(steps)


_BUILDERS: dict[str, Callable[[], tuple[DerivationStep, ...]]] = {
    "stability": _stability,
    "schedules": _schedules,
    "gaussian": _gaussian,
    "mixture": _mixture,
    "patch": _patch,
    "ginzburg-landau": _ginzburg_landau,
}


def derivation_chain(sections: Iterable[str] | None = None) -> list[DerivationStep]:
    """The ordered derivation chain (all sections, or the named ones in :data:`SECTIONS` order).

    Raises:
        ValueError: an unknown section.

    >>> [step.key for step in derivation_chain(["stability"])][:2]
    ['stability.tweedie_mean', 'stability.tweedie_jacobian']
    """
    wanted = list(SECTIONS) if sections is None else list(sections)
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    return [step for name in SECTIONS if name in wanted for step in _BUILDERS[name]()]


def render_markdown(steps: Iterable[DerivationStep] | None = None, heading_level: int = 2) -> str:
    """Markdown for ``steps`` (default: the whole chain): one heading per section,
    one bold title, explanation, ``$$...$$`` block and source per step.

    >>> text = render_markdown(derivation_chain(["stability"])[-1:])
    >>> "$$\\n\\\\kappa_{c} = 1\\n$$" in text
    True
    """
    if isinstance(heading_level, bool) or not isinstance(heading_level, int) or not 1 <= heading_level <= 5:
        raise ValueError(f"heading_level must be an integer in 1..5, got {heading_level!r}")
    steps = derivation_chain() if steps is None else list(steps)
    lines: list[str] = []
    section = None
    for step in steps:
        if step.section != section:
            section = step.section
            title, reference = SECTIONS[section]
            lines += ["#" * heading_level + f" {title}", "", f"*{reference}*", ""]
        lines += [f"**{step.title}.** {step.explanation}", "", "$$", step.latex(), "$$", "",
                  f"<sub>`{step.source}`</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def page() -> str:
    """The whole documentation page ``docs/derivations.md``."""
    head = [
        "# Derivations",
        "",
        "<!-- Generated by `python -m diffcrit.theory.derivations > docs/derivations.md`; do not edit. "
        "tests/theory/test_derivations.py checks that this file equals the generated text. -->",
        "",
        "Every formula below is the output of one of the package's sympy functions (named under each "
        "block), rendered with `sympy.latex`. Nothing is typed in: where a result is shown in a compact "
        "generic form, the symbolic check behind it runs before the page is built. Conventions: "
        "`y = x_0 + s eps` with the VE-equivalent noise level `s = sigma/alpha`, denoiser "
        "`D = E[x_0 | y]`, Jacobian eigenvalue `kappa`, stiffness `gamma = 1 - kappa`.",
        "",
        "Schedules are shown with their default parameters.",
        "",
    ]
    return "\n".join(head) + "\n" + render_markdown()


# --------------------------------------------------------------------------- per prediction


_CORE = ("stability.tweedie_jacobian", "stability.ode", "stability.ode_rate", "stability.ode_solution",
         "stability.threshold")
_SDE = ("stability.sde", "stability.sde_rate", "stability.sde_variance")


def prediction_steps(model: str, mode: str | None = None, level: str = "homogeneous", dynamics: str = "ode",
                     schedule: Any = None) -> list[DerivationStep]:
    """The part of the chain behind one prediction.

    Args:
        model: ``"gaussian"``, ``"mixture"``, ``"memorizing"`` or ``"patch"``.
        mode: patch mode (``"equivariant"``, ``"local"``, ``"global"``).
        level: the reported level of the prediction.
        dynamics: ``"ode"`` or ``"sde"``.
        schedule: schedule spec whose clock steps are appended (None: none).

    >>> [s.key for s in prediction_steps("mixture", level="moment")][-1]
    'mixture.ou_time'
    """
    keys = list(_CORE) + (list(_SDE) if dynamics == "sde" else [])
    if model == "gaussian":
        keys += [step.key for step in _gaussian()]
    elif model == "mixture":
        keys += [step.key for step in _mixture() if step.key != "mixture.memorizing"]
    elif model == "memorizing" or (model == "patch" and mode == "global"):
        keys += ["mixture.kappa", "mixture.critical", "mixture.memorizing", "mixture.ou_time"]
    elif model == "patch" and mode == "local":
        keys += ["patch.jacobian"] + (["patch.marginal"] if level == "marginal" else [])
    elif model == "patch":
        keys += ["patch.jacobian", "patch.plane_wave", "patch.kappa"]
        keys += {"moment": ["patch.moment"],
                 "homogeneous": ["patch.homogeneous_flow", "patch.high_noise_trajectory"],
                 "marginal": ["patch.marginal"]}.get(level, [])
        keys += ["patch.small_k", "patch.xi_J",
                 "patch.sde_fluctuations" if dynamics == "sde" else "patch.ode_fluctuations"]
    else:
        raise ValueError(f"unknown model {model!r}; allowed: gaussian, mixture, memorizing, patch")
    sections = {key.split(".")[0] for key in keys}
    by_key = {step.key: step for step in derivation_chain(sorted(sections, key=list(SECTIONS).index))}
    steps = [by_key[key] for key in keys]
    if schedule is not None:
        from diffcrit.theory.schedules import get_schedule

        steps += list(_schedule_steps(get_schedule(schedule).spec))
    return steps


def _number(value: float | None) -> str:
    return r"\text{none}" if value is None else sp.latex(sp.Float(value, 6))


def prediction_markdown(prediction: Any) -> str:
    """Markdown for :meth:`diffcrit.theory.predict.Prediction.latex`: the derivation steps and the numbers."""
    model = prediction.model
    steps = prediction_steps(model["name"], model.get("mode"), prediction.level, prediction.dynamics,
                             prediction.schedule.spec)
    name = model["name"] + ("" if "mode" not in model else f" ({model['mode']}, window {model['window']})")
    lines = [f"## Prediction: {name}, level {prediction.level}", "", prediction.message, "",
             render_markdown(steps, heading_level=3).rstrip(), "", "### Numbers", ""]
    parts = [f"s_c = {_number(prediction.critical_noise)}", f"t_c = {_number(prediction.critical_time)}"]
    if prediction.critical_mode is not None:
        k = ", ".join(str(v) for v in prediction.critical_mode)
        sides = ", ".join(str(v) for v in prediction.lattice)
        parts.append(f"k_c = 2\\pi\\,({k}) / ({sides})")
    parts.append(f"\\gamma_{{min}} = {_number(prediction.min_stiffness)}")
    lines += ["$$", r" \qquad ".join(parts), "$$", "",
              f"Kind: {prediction.kind}; schedule `{prediction.schedule.spec}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - exercised by the docs test through a subprocess
    sys.stdout.write(page())
