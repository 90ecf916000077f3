"""The periodic convolutional denoiser: equivariance, receptive field, EDM preconditioning, files."""

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffcrit.validation.convnet import (  # noqa: E402
    edm_preconditioning,
    load_denoiser,
    make_periodic_conv_denoiser,
    receptive_field,
    save_denoiser,
)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _random_net(depth=2, channels=8, kernel_size=3, sigma_data=1.0, seed=0):
    """A float64 network whose FiLM heads are random too (they start at zero)."""
    net = make_periodic_conv_denoiser(depth, channels, kernel_size, sigma_data, seed=seed).double()
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        net.film.weight.copy_(0.3 * torch.randn(net.film.weight.shape, generator=gen, dtype=torch.float64))
        net.film.bias.copy_(0.3 * torch.randn(net.film.bias.shape, generator=gen, dtype=torch.float64))
    return net.eval()


def test_import_does_not_load_torch():
    code = ("import sys, diffcrit.validation, diffcrit.validation.convnet, diffcrit.validation.training;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("shape", [(8, 8), (12, 10)])
def test_exact_translation_equivariance(shape):
    net = _random_net(depth=3, channels=6)
    gen = torch.Generator().manual_seed(1)
    y = torch.randn((3, 1, *shape), generator=gen, dtype=torch.float64)
    s = torch.tensor([0.07, 1.3, 9.0], dtype=torch.float64)
    with torch.no_grad():
        out = net(y, s)
        for shift in [(1, 0), (0, 3), (5, 7), (-2, 4)]:
            rolled = net(torch.roll(y, shift, dims=(2, 3)), s)
            # float64: the rolled input is summed in a different order inside the
            # convolution, so the two agree to rounding (~1e-16 per operation over
            # a few hundred operations per pixel, outputs O(1)), not bit-for-bit.
            np.testing.assert_allclose(rolled.numpy(), torch.roll(out, shift, dims=(2, 3)).numpy(),
                                       rtol=0, atol=1e-12)
    # The test would see a broken equivariance: zero padding breaks it at the border.
    zero_padded = torch.nn.functional.conv2d(y, torch.ones(1, 1, 3, 3, dtype=torch.float64), padding=1)
    zero_rolled = torch.nn.functional.conv2d(torch.roll(y, (1, 0), dims=(2, 3)),
                                             torch.ones(1, 1, 3, 3, dtype=torch.float64), padding=1)
    assert not torch.allclose(zero_rolled, torch.roll(zero_padded, (1, 0), dims=(2, 3)), atol=1e-6)


@pytest.mark.parametrize("depth, kernel_size, shape, pixel", [
    (2, 3, (8, 8), (3, 4)),
    (2, 3, (12, 10), (0, 9)),  # the window wraps around both edges
    (3, 3, (12, 10), (11, 1)),
    (2, 5, (12, 10), (6, 0)),
])
def test_exact_receptive_field(depth, kernel_size, shape, pixel):
    net = _random_net(depth=depth, channels=4, kernel_size=kernel_size, seed=depth + kernel_size)
    side = net.receptive_field
    assert side == receptive_field(depth, kernel_size) == 1 + depth * (kernel_size - 1)
    gen = torch.Generator().manual_seed(2)
    y = torch.randn((1, 1, *shape), generator=gen, dtype=torch.float64, requires_grad=True)
    out = net(y, torch.tensor([0.8], dtype=torch.float64))
    (grad,) = torch.autograd.grad(out[0, 0, pixel[0], pixel[1]], y)
    grad = grad[0, 0].numpy()
    # The periodic window of half-width R around the pixel, built by brute force.
    half = (side - 1) // 2
    inside = np.zeros(shape, dtype=bool)
    for a in range(-half, half + 1):
        for b in range(-half, half + 1):
            inside[(pixel[0] + a) % shape[0], (pixel[1] + b) % shape[1]] = True
    assert inside.sum() == side * side  # the window does not overlap itself on these lattices
    # Outside: exactly zero (the backward pass multiplies by exact zeros).
    assert np.all(grad[~inside] == 0.0)
    # Inside: nonzero for generic random weights (the smallest entries are
    # products of a few O(0.1) weights, far above 1e-12).
    assert np.all(np.abs(grad[inside]) > 1e-12)


@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_preconditioning_matches_edm_closed_forms(sigma_data):
    net = _random_net(sigma_data=sigma_data)
    gen = torch.Generator().manual_seed(3)
    y = torch.randn((1, 1, 8, 8), generator=gen, dtype=torch.float64)
    for s in [1e-3, 0.2, 1.0, 3.0, 50.0]:
        sd = sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / math.sqrt(s**2 + sd**2)
        c_in = 1.0 / math.sqrt(s**2 + sd**2)
        c_noise = math.log(s) / 4
        coefficients = edm_preconditioning(s, sd)
        # float64 closed forms evaluated in two orders of operations: a few ulps.
        for name, value in [("c_skip", c_skip), ("c_out", c_out), ("c_in", c_in), ("c_noise", c_noise)]:
            assert coefficients[name] == pytest.approx(value, rel=1e-14, abs=1e-15)
        with torch.no_grad():
            st = torch.tensor([s], dtype=torch.float64)
            expected = c_skip * y + c_out * net.inner(c_in * y, torch.tensor([c_noise], dtype=torch.float64))
            # Same operations up to float64 rounding of the coefficients.
            np.testing.assert_allclose(net(y, st).numpy(), expected.numpy(), rtol=1e-12, atol=1e-13)


def test_preconditioning_limits():
    net = _random_net(sigma_data=1.0)
    gen = torch.Generator().manual_seed(4)
    y1 = torch.randn((1, 1, 8, 8), generator=gen, dtype=torch.float64)
    y2 = torch.randn((1, 1, 8, 8), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        # s -> 0: D = y + O(s). |D - y| <= (1 - c_skip)|y| + c_out |F| with
        # 1 - c_skip ~ s^2 and c_out ~ s; F is O(1) for these weights, so 1e-6 at s = 1e-8
        # leaves two decades of room and still fails if the skip path were missing.
        small = net(y1, torch.tensor([1e-8], dtype=torch.float64))
        np.testing.assert_allclose(small.numpy(), y1.numpy(), rtol=0, atol=1e-6)
        # s -> inf: c_skip -> 0 and c_in y -> 0, so D forgets y: D(y1) - D(y2) = O(1/s)
        # (c_skip ~ 1/s^2, c_out F(c_in y) varies by O(|F'| |y|/s)).
        gaps = []
        for s in [1e2, 1e4, 1e6]:
            st = torch.tensor([s], dtype=torch.float64)
            gaps.append(float((net(y1, st) - net(y2, st)).abs().max()))
        assert gaps[0] > 0
        # Each factor 100 in s shrinks the gap by about 100: between 30 and 300
        # allows for the O(1/s^2) corrections at s = 100.
        for a, b in zip(gaps, gaps[1:]):
            assert 30 < a / b < 300
        # And at large s, D -> c_out F(0; c_noise) with c_out -> sd.
        s = 1e6
        st = torch.tensor([s], dtype=torch.float64)
        limit = 1.0 * net.inner(torch.zeros_like(y1), torch.tensor([math.log(s) / 4], dtype=torch.float64))
        # Differences: c_out = sd (1 - 5e-13) and F(c_in y) - F(0) = O(|y|/s) = O(1e-6).
        np.testing.assert_allclose(net(y1, st).numpy(), limit.numpy(), rtol=0, atol=1e-5)


def test_noise_conditioning_is_active_and_batched():
    net = _random_net()
    gen = torch.Generator().manual_seed(5)
    y = torch.randn((1, 1, 8, 8), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        x = 0.3 * y
        f_a = net.inner(x, torch.tensor([0.0], dtype=torch.float64))
        f_b = net.inner(x, torch.tensor([0.5], dtype=torch.float64))
        assert float((f_a - f_b).abs().max()) > 1e-3  # random FiLM heads: F depends on c_noise
        # A batch with per-member s equals the members evaluated one by one.
        yy = torch.cat([y, y.flip(2)])
        s = torch.tensor([0.3, 2.0], dtype=torch.float64)
        batch = net(yy, s)
        single = torch.cat([net(yy[:1], s[:1]), net(yy[1:], s[1:])])
        np.testing.assert_allclose(batch.numpy(), single.numpy(), rtol=0, atol=1e-13)  # rounding only
        # A scalar s broadcasts over the batch.
        np.testing.assert_allclose(net(yy, 0.7).numpy(), net(yy, torch.full((2,), 0.7, dtype=torch.float64)).numpy(),
                                   rtol=0, atol=0)


def test_seed_fixes_weights_and_leaves_the_global_rng_alone():
    before = torch.random.get_rng_state()
    a = make_periodic_conv_denoiser(2, 8, seed=7)
    b = make_periodic_conv_denoiser(2, 8, seed=7)
    c = make_periodic_conv_denoiser(2, 8, seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.convs[0].weight, c.convs[0].weight)
    assert a.config["receptive_field"] == 5 and a.config["seed"] == 7
    # No normalization layer of any kind (they would break locality).
    kinds = {type(m).__name__ for m in a.modules()}
    assert not any("Norm" in k or "Attention" in k for k in kinds)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_load_round_trip(tmp_path, dtype):
    net = _random_net(depth=3, channels=5, sigma_data=0.7).to(dtype)
    path = save_denoiser(net, tmp_path / "nets" / "net.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.pt"]  # no temporary file left
    loaded = load_denoiser(path)
    assert loaded.config == net.config
    assert not loaded.training
    assert next(loaded.parameters()).dtype == dtype
    gen = torch.Generator().manual_seed(6)
    y = torch.randn((2, 1, 12, 10), generator=gen, dtype=dtype)
    s = torch.tensor([0.2, 4.0], dtype=dtype)
    with torch.no_grad():
        assert torch.equal(loaded(y, s), net(y, s))  # same weights, same operations: bit-for-bit


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_denoiser(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="save_denoiser"):
        load_denoiser(other)
    with pytest.raises(TypeError, match="path"):
        load_denoiser(3)
    with pytest.raises(TypeError, match="PeriodicConvDenoiser"):
        save_denoiser(torch.nn.Linear(2, 2), tmp_path / "x.pt")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(depth=1, channels=8), ValueError, "depth"),
    (dict(depth=2.0, channels=8), TypeError, "depth"),
    (dict(depth=2, channels=0), ValueError, "channels"),
    (dict(depth=2, channels=8, kernel_size=4), ValueError, "odd"),
    (dict(depth=2, channels=8, sigma_data=-1.0), ValueError, "sigma_data"),
    (dict(depth=2, channels=8, sigma_data=float("nan")), ValueError, "sigma_data"),
    (dict(depth=2, channels=8, seed=-3), ValueError, "seed"),
    (dict(depth=True, channels=8), TypeError, "depth"),
])
def test_factory_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_periodic_conv_denoiser(**kwargs)


def test_forward_argument_errors():
    net = make_periodic_conv_denoiser(2, 4, seed=0)
    y = torch.zeros((2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros((2, 8, 8)), torch.ones(2))
    with pytest.raises(ValueError, match="> 0"):
        net(y, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="> 0"):
        net(y, torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="shape"):
        net(y, torch.ones(3))
