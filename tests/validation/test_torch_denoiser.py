"""TorchDenoiser: any network parametrization/conditioning -> the VE-equivalent D(y; s).

The reference is exact: Gaussian data ``x_0 ~ N(0, C)`` (stationary ``C`` on an 8x8
periodic lattice) has ``E[x_0 | x_t] = alpha C (alpha^2 C + sigma^2 I)^{-1} x_t``. The
torch modules below compute that posterior mean (dense solve) and return it in each
parametrization, reading their noise from the conditioning argument exactly as a
network would: they invert the conditioning themselves with closed-form schedule
formulas written out here (checked against the schedule objects), never through the
adapter. The adapter's ``D(y; s)`` must then equal the numpy Wiener filter
``GaussianFieldDenoiser`` (FFT, ``D = C (C + s^2 I)^{-1} y``).
"""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sympy as sp

from diffcrit.numerics.denoisers import GaussianFieldDenoiser
from diffcrit.numerics.jacobian_probes import central_difference_jvp, fourier_jacobian_spectrum
from diffcrit.numerics.observables import lattice_q2
from diffcrit.numerics.samplers import geometric_s_grid, sample
from diffcrit.theory.schedules import get_schedule
from diffcrit.validation.torch_denoiser import (
    CONDITIONINGS,
    PARAMETRIZATIONS,
    TorchDenoiser,
    network_inputs,
    parametrization_coefficients,
)

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

# torch's own first use of forward-mode AD scripts its decompositions with the
# deprecated torch.jit.script; that warning is torch-internal, not ours
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SHAPE = (8, 8)
N_SITES = 64
# Lattice-Laplacian (Ornstein-Zernike) spectrum: lambda in [1/8.2, 5], so every
# matrix alpha^2 C + sigma^2 I below has condition number <= 5 * 8.2 = 41.
LAM = 1.0 / (0.2 + lattice_q2(SHAPE))


def _dense_covariance(spectrum):
    """Dense circulant C_ij = corr(x_j - x_i) with corr = ifftn(spectrum)."""
    corr = np.real(np.fft.ifftn(spectrum))
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1).reshape(-1, 2)
    diff = (coords[None, :, :] - coords[:, None, :]) % np.asarray(SHAPE)
    return corr[diff[..., 0], diff[..., 1]]


COV = _dense_covariance(LAM)
REFERENCE = GaussianFieldDenoiser(spectrum=LAM)
SCHEDULES = ["vp-linear", "vp-cosine", "ve", "edm", "ddpm", "ou"]
VP_LIKE = {"vp-linear", "vp-cosine", "ddpm", "ou"}  # alpha^2 + sigma^2 = 1
S_VALUES = (0.05, 0.7, 6.0)  # inside every default schedule's range


# --------------------------------------------------------------------------- schedule formulas
# Written out from the papers' definitions (not through diffcrit's schedule objects).

_DDPM_BETAS = np.linspace(1e-4, 0.02, 1000)
_DDPM_LOG_S = 0.5 * np.log((1.0 - np.cumprod(1.0 - _DDPM_BETAS)) / np.cumprod(1.0 - _DDPM_BETAS))


def _ddpm_s_of_index(i):
    """s at a (fractional) DDPM step: exact on steps, linear in ln s between them."""
    return np.exp(np.interp(i, np.arange(1000.0), _DDPM_LOG_S))


def _alpha_sigma_of_t(name, t):
    t = np.asarray(t, dtype=np.float64)
    if name == "vp-linear":  # beta(t) = 0.1 + 19.9 t, alpha = exp(-int beta / 2)
        log_alpha = -0.5 * (0.1 * t + 0.5 * 19.9 * t**2)
        return np.exp(log_alpha), np.sqrt(-np.expm1(2.0 * log_alpha))
    if name == "vp-cosine":  # alpha_bar = f(t)/f(0), f = cos^2((t + o)/(1 + o) pi/2)
        o = 0.008
        alpha = np.cos((t + o) / (1 + o) * np.pi / 2) / np.cos(o / (1 + o) * np.pi / 2)
        return alpha, np.sqrt(1.0 - alpha**2)
    if name == "ve":  # sigma = s_min (s_max/s_min)^t
        return np.ones_like(t), 0.002 * (80.0 / 0.002) ** t
    if name == "edm":  # sigma = t
        return np.ones_like(t), t
    if name == "ou":
        return np.exp(-t), np.sqrt(-np.expm1(-2.0 * t))
    if name == "ddpm":  # t = (i + 1)/T
        s = _ddpm_s_of_index(t * 1000 - 1.0)
        alpha = 1.0 / np.sqrt(1.0 + s**2)
        return alpha, alpha * s
    raise KeyError(name)


def _alpha_sigma_of_s(name, s):
    if name in VP_LIKE:
        alpha = 1.0 / np.sqrt(1.0 + s**2)
        return alpha, alpha * s
    return np.ones_like(s), s


def log_snr(t, sigma, alpha, s):
    """A custom conditioning: the log-SNR 2 ln(alpha/sigma)."""
    return 2.0 * math.log(alpha / sigma)


def _alpha_sigma_of_conditioning(name, conditioning, c):
    """What a network trained with this schedule/conditioning reads from c."""
    if conditioning == "t":
        return _alpha_sigma_of_t(name, c)
    if conditioning == "sigma":
        if name in VP_LIKE:
            return np.sqrt(1.0 - c**2), c
        return np.ones_like(c), c
    if conditioning == "s":
        return _alpha_sigma_of_s(name, c)
    if conditioning == "log_s_quarter":
        return _alpha_sigma_of_s(name, np.exp(4.0 * c))
    if conditioning == "index":
        return _alpha_sigma_of_s(name, _ddpm_s_of_index(c))
    if conditioning == "log_snr":
        return _alpha_sigma_of_s(name, np.exp(-0.5 * c))
    raise KeyError(conditioning)


# --------------------------------------------------------------------------- analytic networks


class GaussianPosteriorNet(torch.nn.Module):
    """Exact E[x_0 | x_t] of x_0 ~ N(mu_label, C), output in one parametrization."""

    def __init__(self, schedule, conditioning, parametrization, dtype=torch.float64, means=None,
                 channel_axis=True):
        super().__init__()
        self.schedule, self.conditioning, self.parametrization = schedule, conditioning, parametrization
        self.channel_axis = channel_axis
        self.register_buffer("cov", torch.tensor(COV, dtype=dtype))
        self.register_buffer("means", None if means is None else torch.tensor(means, dtype=dtype))
        self.seen_conditioning = []

    def forward(self, x, c, class_labels=None):
        batch = x.shape[0]
        assert c.shape == (batch,)
        # tolist, not numpy(): torch.func transforms allow reading values, not storage
        values = np.asarray(c.tolist(), dtype=np.float64)
        self.seen_conditioning.append(values)
        alpha, sigma = _alpha_sigma_of_conditioning(self.schedule, self.conditioning, values)
        alpha = torch.as_tensor(alpha, dtype=x.dtype)[:, None]
        sigma = torch.as_tensor(sigma, dtype=x.dtype)[:, None]
        x_t = x.reshape(batch, N_SITES)
        mu = torch.zeros_like(x_t)
        if self.means is not None:
            assert class_labels is not None and class_labels.shape == (batch,)
            mu = self.means[class_labels].reshape(batch, N_SITES)
        system = alpha[:, :, None] ** 2 * self.cov + sigma[:, :, None] ** 2 * torch.eye(N_SITES, dtype=x.dtype)
        sol = torch.linalg.solve(system, (x_t - alpha * mu).unsqueeze(-1)).squeeze(-1)
        x0_hat = mu + alpha * sol @ self.cov.T
        eps_hat = (x_t - alpha * x0_hat) / sigma
        out = {
            "x0": x0_hat,
            "eps": eps_hat,
            "v": alpha * eps_hat - sigma * x0_hat,
            "score": -(x_t - alpha * x0_hat) / sigma**2,
        }[self.parametrization]
        return out.reshape(x.shape)


class BackwardOnlyIdentity(torch.autograd.Function):
    """Identity with a backward but no jvp: forward-mode AD cannot pass through it."""

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad


class NoForwardADNet(GaussianPosteriorNet):
    def forward(self, x, c, class_labels=None):
        return BackwardOnlyIdentity.apply(super().forward(x, c, class_labels))


class LinearNet(torch.nn.Module):
    """f(x_t) = W x_t with a non-symmetric W, so J^T differs from J."""

    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight))

    def forward(self, x, c):
        return (x.reshape(x.shape[0], -1) @ self.weight.T).reshape(x.shape)


class TanhConvNet(torch.nn.Module):
    """A small nonlinear periodic convolutional network (random weights)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(0.5 * torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(0.5 * torch.randn(1, 4, 3, 3, generator=gen, dtype=torch.float64))

    def forward(self, x, c):
        functional = torch.nn.functional

        def periodic_conv(z, weight):
            return functional.conv2d(functional.pad(z, (1, 1, 1, 1), mode="circular"), weight)

        h = torch.tanh(periodic_conv(x, self.w1) + c[:, None, None, None])
        return periodic_conv(h, self.w2)


def _model(schedule="vp-linear", conditioning="t", parametrization="eps", net_cls=GaussianPosteriorNet, **kw):
    cond_arg = log_snr if conditioning == "log_snr" else conditioning
    net = net_cls(schedule, conditioning, parametrization)
    return TorchDenoiser(net, schedule=schedule, parametrization=parametrization, conditioning=cond_arg,
                         field_shape=SHAPE, dtype="float64", **kw)


def _fields(n, s, seed):
    return REFERENCE.sample_marginal(n, s, np.random.default_rng(seed))


def _analytic_jacobian(s):
    return np.linalg.solve(COV + s**2 * np.eye(N_SITES), COV).T  # C (C + s^2)^{-1}


# --------------------------------------------------------------------------- the test setup itself


def test_dense_covariance_has_the_reference_spectrum():
    # the dense C and the FFT spectrum of GaussianFieldDenoiser describe the same law:
    # eigenvalues agree to rounding of a 64x64 eigensolver (~1e-15 * lambda_max)
    np.testing.assert_allclose(np.linalg.eigvalsh(COV), np.sort(LAM.ravel()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_closed_form_schedule_formulas_match_the_schedule_objects(name):
    # guards the test's own formulas: they must be the schedules the package means;
    # the schedules' forward maps are accurate to ~1e-15, ddpm's table to ~1e-13
    sched = get_schedule(name)
    t = np.linspace(sched.t_min, sched.t_max, 7)[1:-1]
    alpha, sigma = _alpha_sigma_of_t(name, t)
    np.testing.assert_allclose(alpha, sched.alpha(t), rtol=1e-11)
    np.testing.assert_allclose(sigma, sched.sigma(t), rtol=1e-11)


# --------------------------------------------------------------------------- conversions


def test_parametrization_maps_are_forward_process_identities():
    # symbolic: for every (x0, eps), a y + b f(x0, eps) = x0 with y = x_t/alpha; the maps
    # are affine in f, so they carry over to posterior means (score: Tweedie).
    alpha, sigma = sp.symbols("alpha sigma", positive=True)
    x0, eps = sp.symbols("x0 eps", real=True)
    x_t = alpha * x0 + sigma * eps
    targets = {
        "eps": eps,
        "x0": x0,
        "v": alpha * eps - sigma * x0,
        "score": -(x_t - alpha * x0) / sigma**2,  # grad_{x_t} log p(x_t | x0)
    }
    for name, target in targets.items():
        a, b = parametrization_coefficients(name, alpha, sigma)
        assert sp.simplify(a * x_t / alpha + b * target - x0) == 0, name


def test_parametrization_aliases():
    for alias, canonical in [("epsilon", "eps"), ("sample", "x0"), ("data", "x0"), ("v_prediction", "v")]:
        assert parametrization_coefficients(alias, 0.6, 0.8) == parametrization_coefficients(canonical, 0.6, 0.8)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("conditioning", ["t", "sigma", "s", "log_s_quarter", "log_snr"])
@pytest.mark.parametrize("name", SCHEDULES)
def test_exact_network_gives_the_wiener_filter(name, conditioning, parametrization):
    model = _model(name, conditioning, parametrization)
    for i, s in enumerate(S_VALUES):
        y = _fields(5, s, seed=i)
        # rounding: a dense solve with condition number <= 41 in 64 dimensions and an
        # O(1) affine map: errors ~1e-13 * max|y|; any wrong coefficient or clock is O(s |y|)
        tol = 1e-10 * np.abs(y).max()
        np.testing.assert_allclose(model(y, s), REFERENCE(y, s), rtol=0, atol=tol)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_index_conditioning_on_ddpm(parametrization):
    model = _model("ddpm", "index", parametrization)
    sched = get_schedule("ddpm")
    on_grid = float(sched.s_of_step(137))
    for i, s in enumerate((*S_VALUES, on_grid)):
        y = _fields(4, s, seed=10 + i)
        np.testing.assert_allclose(model(y, s), REFERENCE(y, s), rtol=0, atol=1e-10 * np.abs(y).max())
    # on a grid level the network sees exactly the integer step (clock t = (i + 1)/T)
    assert model.net.seen_conditioning[-1].tolist() == [137.0] * 4


def test_network_inputs_follow_the_schedule():
    sched = get_schedule("vp-cosine")
    inp = network_inputs(sched, 2.0, "v", "sigma")
    alpha, sigma = _alpha_sigma_of_t("vp-cosine", inp.t)
    assert inp.conditioning == pytest.approx(2.0 / math.sqrt(5.0), rel=1e-14)  # sigma = s/sqrt(1+s^2)
    assert inp.alpha == pytest.approx(alpha, rel=1e-12) and inp.sigma == pytest.approx(sigma, rel=1e-12)
    edm = network_inputs("edm", 3.0, "x0", "log_s_quarter")
    assert edm.conditioning == pytest.approx(math.log(3.0) / 4, rel=1e-15)
    assert (edm.y_coefficient, edm.output_coefficient) == (0.0, 1.0)
    assert json.loads(json.dumps(inp.to_dict()))["s"] == 2.0
    assert "sigma=" in repr(inp)


def test_float32_path():
    model = TorchDenoiser(GaussianPosteriorNet("vp-linear", "t", "eps", dtype=torch.float32), schedule="vp-linear",
                          parametrization="eps", conditioning="t", field_shape=SHAPE, dtype="float32")
    for i, s in enumerate((0.3, 1.0, 4.0)):
        y = _fields(4, s, seed=20 + i)
        out = model(y, s)
        assert out.dtype == np.float64
        # float32 (eps = 6e-8): the solve adds at most its condition number (<= 41),
        # ~2.5e-6; the float32 rounding of t shifts ln s by 6e-8 t d ln s/dt (< 1e-6
        # here) and |dD/d ln s| <= |y|/2. So errors stay below ~3e-6 * max|y|; a
        # wrong map is off by O(s |y|)
        tol = 1e-5 * np.abs(y).max()
        np.testing.assert_allclose(out, REFERENCE(y, s), rtol=0, atol=tol)
        v = np.random.default_rng(i).standard_normal(y.shape)
        np.testing.assert_allclose(model.jvp(y, s, v), _jv(s, v), rtol=0, atol=1e-5 * np.abs(v).max())


def test_single_field_in_single_field_out():
    model = _model()
    y = _fields(1, 0.5, seed=3)[0]
    out = model(y, 0.5)
    assert out.shape == SHAPE
    np.testing.assert_allclose(out, REFERENCE(y, 0.5), rtol=0, atol=1e-10 * np.abs(y).max())


def test_channel_axis_false():
    net = GaussianPosteriorNet("edm", "sigma", "x0")
    calls = []

    def flat_net(x, c):
        calls.append(tuple(x.shape))
        return net(x, c)

    model = TorchDenoiser(flat_net, schedule="edm", parametrization="x0", conditioning="sigma",
                          field_shape=SHAPE, channel_axis=False, dtype="float64")
    y = _fields(3, 1.5, seed=4)
    np.testing.assert_allclose(model(y, 1.5), REFERENCE(y, 1.5), rtol=0, atol=1e-10 * np.abs(y).max())
    assert calls == [(3, 8, 8)]


# --------------------------------------------------------------------------- Jacobians


def _jv(s, v):
    flat = v.reshape(len(v), -1)
    return (flat @ _analytic_jacobian(s).T).reshape(v.shape)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("name", ["vp-linear", "edm", "ddpm"])
def test_jvp_and_vjp_equal_the_analytic_jacobian(name, parametrization):
    model = _model(name, "t", parametrization)
    rng = np.random.default_rng(5)
    for s in (0.1, 1.3):
        y = _fields(3, s, seed=6)
        v = rng.standard_normal(y.shape)
        scale = np.abs(v).max()
        # exact J = C (C + s^2)^{-1} is symmetric: J v and J^T v agree with it to
        # the rounding of the solves (~1e-13 |v|)
        np.testing.assert_allclose(model.jvp(y, s, v), _jv(s, v), rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(model.vjp(y, s, v), _jv(s, v), rtol=0, atol=1e-10 * scale)
        # central differences of the adapter's own D: D is linear here, so only
        # roundoff eps |D| / h with h = 6e-6 s sqrt(64) remains: ~1e-10 relative
        fd = central_difference_jvp(model, y, s, v)
        np.testing.assert_allclose(model.jvp(y, s, v), fd, rtol=0, atol=1e-7 * scale)
    assert model.jvp_method_used == "forward"


@pytest.mark.parametrize("parametrization", ["eps", "x0", "v", "score"])
def test_vjp_is_the_transpose_for_a_nonsymmetric_jacobian(parametrization):
    weight = np.random.default_rng(7).standard_normal((N_SITES, N_SITES)) / 8.0
    model = TorchDenoiser(LinearNet(weight), schedule="vp-linear", parametrization=parametrization,
                          field_shape=SHAPE, dtype="float64")
    s = 0.8
    inp = model.network_inputs(s)
    # D = a y + b W (alpha y)  =>  J = a I + b alpha W (chain rule through x_t = alpha y)
    jac = inp.y_coefficient * np.eye(N_SITES) + inp.output_coefficient * inp.alpha * weight
    rng = np.random.default_rng(8)
    y, v = rng.standard_normal((2, 4, *SHAPE))
    flat = v.reshape(4, -1)
    # a product of a 64x64 matrix with O(1) entries: rounding ~1e-14
    np.testing.assert_allclose(model.jvp(y, s, v).reshape(4, -1), flat @ jac.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.vjp(y, s, v).reshape(4, -1), flat @ jac, rtol=0, atol=1e-12)
    assert np.abs(jac - jac.T).max() > 0.1  # the check above can tell J from J^T


def test_nonlinear_network_forward_and_double_vjp_agree():
    s, net = 0.9, TanhConvNet()
    models = {m: TorchDenoiser(net, schedule="ve", parametrization="eps", field_shape=SHAPE, dtype="float64",
                               jvp_method=m) for m in ("forward", "double_vjp")}
    rng = np.random.default_rng(9)
    y, v, u = rng.standard_normal((3, 5, *SHAPE))
    forward = models["forward"].jvp(y, s, v)
    # two exact autograd routes: agree to rounding
    np.testing.assert_allclose(models["double_vjp"].jvp(y, s, v), forward, rtol=0, atol=1e-12)
    # central differences: truncation (h^2/6) D''' with h ~ 4e-5 and O(1) derivatives
    # of a tanh network, plus roundoff ~1e-11: ~1e-9
    fd = central_difference_jvp(models["forward"], y, s, v)
    np.testing.assert_allclose(forward, fd, rtol=0, atol=1e-7)
    # adjoint identity <u, J v> = <J^T u, v> for a non-symmetric J; sums of 64 O(1) terms
    vjp = models["forward"].vjp(y, s, u)
    np.testing.assert_allclose((u * forward).sum(axis=(1, 2)), (vjp * v).sum(axis=(1, 2)), rtol=0, atol=1e-11)
    assert models["double_vjp"].jvp_method_used == "double_vjp"


def test_forward_ad_fallback_to_double_vjp():
    model = _model("edm", "sigma", "score", net_cls=NoForwardADNet)
    s = 0.6
    y = _fields(3, s, seed=11)
    v = np.random.default_rng(12).standard_normal(y.shape)
    # the same exact J as with forward mode, to rounding of the solves
    np.testing.assert_allclose(model.jvp(y, s, v), _jv(s, v), rtol=0, atol=1e-10 * np.abs(v).max())
    assert model.jvp_method_used == "double_vjp"
    np.testing.assert_allclose(model.jvp(y, s, v), _jv(s, v), rtol=0, atol=1e-10 * np.abs(v).max())
    forced = _model("edm", "sigma", "score", net_cls=NoForwardADNet, jvp_method="forward")
    with pytest.raises(RuntimeError, match="double_vjp"):
        forced.jvp(y, s, v)


# --------------------------------------------------------------------------- consumers


def test_sampling_through_the_adapter_equals_the_numpy_denoiser():
    model = _model("vp-linear", "t", "eps")
    init = 20.0 * np.random.default_rng(13).standard_normal((6, *SHAPE))
    grid = geometric_s_grid(20.0, 0.05, 6)
    ours = sample(model, init, grid, "heun", progress=False)
    ref = sample(REFERENCE, init, grid, "heun", progress=False)
    # 11 denoiser calls, each exact to ~1e-13 * |y| (|y| ~ 60 at s = 20), errors
    # contracted by the flow: ~1e-11; sampling a different law would be O(1) off
    np.testing.assert_allclose(ours.samples, ref.samples, rtol=0, atol=1e-9)
    assert ours.n_denoiser_calls == ref.n_denoiser_calls
    assert np.abs(ours.samples - init).max() > 1.0  # the run moved the state


def test_fourier_jacobian_spectrum_with_autograd_jvp():
    model = _model("ve", "s", "v")
    s = 0.9
    states = _fields(3, s, seed=14)
    spec = fourier_jacobian_spectrum(model, states, s, jvp=model.jvp)
    idx = spec.wavevector_indices
    lam = LAM[idx[:, 0], idx[:, 1]]
    assert spec.method == "jvp"
    # stationary Gaussian: J is circulant and symmetric, kappa_hat(k) = lambda_k/(lambda_k + s^2)
    # exactly and no leakage; rounding of the solves ~1e-13
    np.testing.assert_allclose(spec.kappa, np.broadcast_to(lam / (lam + s**2), spec.kappa.shape), rtol=0, atol=1e-10)
    assert spec.leakage.max() < 1e-10
    assert np.ptp(lam / (lam + s**2)) > 0.5  # the probe resolves a wide range of kappa


# --------------------------------------------------------------------------- kwargs and chunking


def test_net_kwargs_and_with_kwargs():
    means = np.random.default_rng(15).standard_normal((3, *SHAPE))
    net = GaussianPosteriorNet("vp-cosine", "t", "v", means=means)
    base = TorchDenoiser(net, schedule="vp-cosine", parametrization="v", field_shape=SHAPE, dtype="float64",
                         net_kwargs={"class_labels": torch.tensor(2)}, batch_size=2)
    s = 0.8
    y = _fields(5, s, seed=16) + means[2]
    tol = 1e-10 * np.abs(y).max()  # as in the Wiener-filter test
    for model, label in [
        (base, 2),
        (base.with_kwargs(class_labels=np.array([1])), 1),
        (base.with_kwargs(class_labels=lambda b: torch.zeros(b, dtype=torch.long)), 0),
    ]:
        ref = GaussianFieldDenoiser(spectrum=LAM, mean=means[label])
        np.testing.assert_allclose(model(y, s), ref(y, s), rtol=0, atol=tol)
        assert model.net is net
    # the copies leave the original untouched
    np.testing.assert_allclose(base(y, s), GaussianFieldDenoiser(spectrum=LAM, mean=means[2])(y, s), rtol=0, atol=tol)
    assert "class_labels" in base.to_dict()["net_kwargs"]


def test_chunking_gives_the_same_result():
    sizes = []
    net = GaussianPosteriorNet("ve", "t", "eps")

    def counting_net(x, c):
        sizes.append(x.shape[0])
        return net(x, c)

    chunked = TorchDenoiser(counting_net, schedule="ve", field_shape=SHAPE, dtype="float64", batch_size=3)
    whole = TorchDenoiser(net, schedule="ve", field_shape=SHAPE, dtype="float64")
    s = 1.1
    y = _fields(7, s, seed=17)
    v = np.random.default_rng(18).standard_normal(y.shape)
    # batching only regroups identical per-field computations: equal to rounding
    np.testing.assert_allclose(chunked(y, s), whole(y, s), rtol=0, atol=1e-13)
    np.testing.assert_allclose(chunked.jvp(y, s, v), whole.jvp(y, s, v), rtol=0, atol=1e-13)
    np.testing.assert_allclose(chunked.vjp(y, s, v), whole.vjp(y, s, v), rtol=0, atol=1e-13)
    assert sizes == [3, 3, 1] * 3


# --------------------------------------------------------------------------- description


def test_to_dict_and_repr():
    model = _model("ddpm", "index", "v", batch_size=16)
    d = json.loads(json.dumps(model.to_dict()))
    assert d["parametrization"] == "v" and d["conditioning"] == "index"
    assert d["schedule"]["name"] == "ddpm" and d["field_shape"] == [8, 8]
    assert d["dtype"] == "float64" and d["device"] == "cpu" and d["batch_size"] == 16
    assert d["net"] == "GaussianPosteriorNet"
    text = repr(model)
    assert "ddpm" in text and "'v'" in text and "'index'" in text
    custom = _model("ve", "log_snr", "eps")
    assert "log_snr" in custom.to_dict()["conditioning"]


def test_import_does_not_load_torch():
    code = "import sys, diffcrit.validation.torch_denoiser; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install diffcrit\[torch\]"):
        TorchDenoiser(lambda x, c: x, schedule="ve", field_shape=SHAPE)


# --------------------------------------------------------------------------- errors


def _plain(**kw):
    args = dict(schedule="vp-linear", field_shape=SHAPE, dtype="float64")
    args.update(kw)
    return TorchDenoiser(GaussianPosteriorNet("vp-linear", "t", "eps"), **args)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"parametrization": "noise_pred"}, ValueError, "parametrization='noise_pred'.*allowed"),
    ({"conditioning": "tau"}, ValueError, "conditioning='tau'.*allowed"),
    ({"conditioning": "index"}, ValueError, "discrete schedule"),
    ({"dtype": "float16"}, ValueError, "dtype='float16'.*float32"),
    ({"dtype": "int64"}, ValueError, "dtype='int64'"),
    ({"device": "no-such-device"}, ValueError, "device='no-such-device'"),
    ({"batch_size": 0}, ValueError, "batch_size=0"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"field_shape": (8, 0)}, ValueError, "field_shape"),
    ({"jvp_method": "numerical"}, ValueError, "jvp_method='numerical'"),
    ({"net_kwargs": [1, 2]}, TypeError, "net_kwargs"),
    ({"schedule": "vp-square"}, ValueError, "unknown schedule"),
])
def test_constructor_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        _plain(**kwargs)


def test_non_callable_net():
    with pytest.raises(TypeError, match="net must be"):
        TorchDenoiser(np.eye(3), schedule="ve", field_shape=SHAPE)


def test_cuda_unavailable_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="not available"):
        _plain(device="cuda")


def test_module_dtype_mismatch():
    net = GaussianPosteriorNet("ve", "t", "eps", dtype=torch.float32)
    with pytest.raises(ValueError, match="float32 parameters.*float64"):
        TorchDenoiser(net, schedule="ve", field_shape=SHAPE, dtype="float64")


def test_training_mode_dropout_warns():
    net = torch.nn.Sequential(torch.nn.Dropout(0.1)).double()
    with pytest.warns(UserWarning, match="eval"):
        TorchDenoiser(net, schedule="ve", field_shape=SHAPE, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TorchDenoiser(net.eval(), schedule="ve", field_shape=SHAPE, dtype="float64")
        TorchDenoiser(TanhConvNet(), schedule="ve", field_shape=SHAPE, dtype="float64")  # no dropout


def test_call_errors():
    model = _plain()
    sched = get_schedule("vp-linear")
    y = np.zeros((2, *SHAPE))
    for bad_s in (1e-5, 1e4, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"outside the noise range.*allowed") as info:
            model(y, bad_s)
        assert repr(sched.s_min) in str(info.value) and repr(sched.s_max) in str(info.value)
    with pytest.raises(TypeError, match="real noise level"):
        model(y, "1.0")
    with pytest.raises(ValueError, match=r"shape \(M, 8, 8\).*\(2, 7, 7\)"):
        model(np.zeros((2, 7, 7)), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        model(np.full((1, *SHAPE), np.nan), 1.0)
    with pytest.raises(ValueError, match="v must have the shape of y"):
        model.jvp(y, 1.0, np.zeros((3, *SHAPE)))
    with pytest.raises(ValueError, match="u must have the shape of y"):
        model.vjp(y, 1.0, np.zeros((1, *SHAPE)))


def test_non_finite_network_output_names_s():
    model = TorchDenoiser(lambda x, c: x / 0.0, schedule="edm", field_shape=SHAPE, dtype="float64")
    with pytest.raises(ValueError, match=r"non-finite.*s=0\.5"):
        model(np.ones((2, *SHAPE)), 0.5)


def test_wrong_network_output():
    wrong_shape = TorchDenoiser(lambda x, c: x[:, 0], schedule="edm", field_shape=SHAPE, dtype="float64")
    with pytest.raises(ValueError, match=r"net returned shape \(2, 8, 8\) for input shape \(2, 1, 8, 8\)"):
        wrong_shape(np.ones((2, *SHAPE)), 0.5)
    not_tensor = TorchDenoiser(lambda x, c: x.numpy(), schedule="edm", field_shape=SHAPE, dtype="float64")
    with pytest.raises(TypeError, match="must return a tensor"):
        not_tensor(np.ones((2, *SHAPE)), 0.5)


def test_bad_conditioning_callable():
    model = TorchDenoiser(lambda x, c: x, schedule="ve", conditioning=lambda t, sigma, alpha, s: float("nan"),
                          field_shape=SHAPE, dtype="float64")
    with pytest.raises(ValueError, match="conditioning callable.*finite real number"):
        model(np.ones((1, *SHAPE)), 0.5)


def test_names_exported():
    assert set(CONDITIONINGS) == {"t", "sigma", "s", "log_s_quarter", "index"}
    assert set(PARAMETRIZATIONS) == {"eps", "x0", "v", "score"}


class DetachedBackwardIdentity(BackwardOnlyIdentity):
    """Backward-only identity whose backward leaves the graph: no double backward."""

    @staticmethod
    def backward(ctx, grad):
        return grad.detach().clone()


def test_network_that_no_autograd_route_can_differentiate():
    def net(x, c):
        return DetachedBackwardIdentity.apply(x)

    model = TorchDenoiser(net, schedule="ve", parametrization="x0", field_shape=SHAPE, dtype="float64")
    y = np.ones((1, *SHAPE))
    # J = alpha I here, but neither route can see it: an error, never a silent J v = 0
    with pytest.raises(RuntimeError, match="double backward"):
        model.jvp(y, 0.5, y)
    np.testing.assert_array_equal(model.vjp(y, 0.5, y), y)  # reverse mode alone still works (alpha = 1)
