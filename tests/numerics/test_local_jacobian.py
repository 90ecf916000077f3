import json
import math

import numpy as np
import pytest

from diffcrit.numerics.jacobian_probes import fourier_jacobian_spectrum, representative_wavevector_indices
from diffcrit.numerics.local_jacobian import (
    effective_window,
    kappa_hat_from_jacobian_rows,
    local_jacobian,
    probe_spacing,
)
from diffcrit.numerics.patch_denoiser import PatchDenoiser
from diffcrit.theory.windows import square_window


def _wavevectors(shape):
    return 2.0 * np.pi * representative_wavevector_indices(shape) / np.asarray(shape)


class DenseLinear:
    """``D(y) = A y`` with an explicit, non-equivariant matrix ``A``: ``J = A`` everywhere."""

    def __init__(self, matrix, shape):
        self.matrix, self.shape = matrix, shape

    def __call__(self, y, s):
        return (y.reshape(y.shape[0], -1) @ self.matrix.T).reshape(y.shape)

    def jvp(self, y, s, v):
        return self(v, s)


def _random_local_matrix(shape, offsets, rng):
    n = math.prod(shape)
    coords = np.indices(shape).reshape(len(shape), -1).T
    matrix = np.zeros((n, n))
    for i, c in enumerate(coords):
        for r in offsets:
            j = np.ravel_multi_index(tuple((c + r) % np.asarray(shape)), shape)
            matrix[i, j] = rng.standard_normal()
    return matrix


@pytest.mark.parametrize("shape, side", [((8, 8), 3), ((9, 10), 3), ((12, 12), 5), ((14,), 5), ((7, 7), 7)])
def test_rows_reconstruct_a_random_local_matrix_exactly(shape, side):
    rng = np.random.default_rng(1)
    offsets = square_window(side, len(shape))
    matrix = _random_local_matrix(shape, offsets, rng)
    model = DenseLinear(matrix, shape)
    states = rng.standard_normal((3,) + shape)
    local = local_jacobian(None, states, 0.7, side, jvp=model.jvp)
    coords = np.indices(shape).reshape(len(shape), -1).T
    for k, r in enumerate(offsets):
        cols = np.ravel_multi_index(tuple(((coords + r) % np.asarray(shape)).T), shape)
        expected = matrix[np.arange(coords.shape[0]), cols]
        # each entry is one product of A with a 0/1 probe: the sum has one nonzero term
        np.testing.assert_array_equal(local.rows[0].reshape(-1, len(offsets))[:, k], expected)
    # one random product through the rows reproduces A u to rounding (~1e-16 relative)
    assert local.locality_residual.max() < 1e-13
    assert local.n_probes >= len(offsets)
    assert all(side_ % c == 0 and c >= side for side_, c in zip(shape, local.spacing))


def test_kappa_from_rows_equals_the_fourier_diagonal_of_the_dense_matrix():
    shape, side = (9, 9), 3
    rng = np.random.default_rng(2)
    matrix = _random_local_matrix(shape, square_window(side), rng)
    local = local_jacobian(None, rng.standard_normal((1,) + shape), 1.0, side, jvp=DenseLinear(matrix, shape).jvp)
    wavevectors = _wavevectors(shape)
    coords = np.indices(shape).reshape(2, -1).T
    # independent: Re <e_k, A e_k> with complex unit plane waves, straight from the matrix
    plane = np.exp(1j * coords @ wavevectors.T) / math.sqrt(coords.shape[0])  # (N, M)
    direct = np.real(np.einsum("im,ij,jm->m", plane.conj(), matrix, plane))
    np.testing.assert_allclose(local.kappa_hat(wavevectors)[0], direct, rtol=0, atol=1e-12)


def test_a_jacobian_wider_than_the_window_is_flagged():
    shape = (10, 10)
    rng = np.random.default_rng(3)
    matrix = _random_local_matrix(shape, square_window(5), rng)
    local = local_jacobian(None, rng.standard_normal((2,) + shape), 1.0, 3, jvp=DenseLinear(matrix, shape).jvp)
    # 16 of 25 entries per row fall outside the 3x3 window: an O(1) residual
    assert local.locality_residual.min() > 0.3


@pytest.mark.parametrize("shape, side", [((8, 8), 3), ((10, 10), 5), ((16,), 5)])
def test_patch_model_rows_by_probes_equal_its_analytic_rows(shape, side):
    rng = np.random.default_rng(4)
    images = np.sign(rng.standard_normal((6,) + shape)) + 0.3 * rng.standard_normal((6,) + shape)
    model = PatchDenoiser(images, side)
    states = 1.2 * rng.standard_normal((3,) + shape)
    s = 0.8
    analytic = model.jacobian_rows(states, s)
    by_jvp = local_jacobian(None, states, s, model.offsets, jvp=model.jvp)
    # model.jvp applies the same rows to 0/1 probes: one nonzero term per sum
    np.testing.assert_allclose(by_jvp.rows, analytic, rtol=0, atol=1e-14)
    by_fd = local_jacobian(model, states, s, side)
    # central differences with step eps^(1/3) s: ~1e-10 relative truncation + rounding on O(1) rows
    np.testing.assert_allclose(by_fd.rows, analytic, rtol=0, atol=1e-7)
    assert by_fd.method == "finite_difference"
    assert by_fd.locality_residual.max() < 1e-7
    # the spectrum from the rows equals the plane-wave probe of the same Jacobian
    probe = fourier_jacobian_spectrum(None, states, s, jvp=model.jvp)
    np.testing.assert_allclose(by_jvp.kappa_hat(_wavevectors(shape)), probe.kappa, rtol=0, atol=1e-12)


def test_kappa_shortcut_is_the_same_function_the_e1_module_uses():
    from diffcrit.validation import e1

    assert e1.kappa_hat_from_jacobian_rows is kappa_hat_from_jacobian_rows


def test_probe_spacing_is_the_smallest_fitting_divisor():
    assert probe_spacing((32, 32), square_window(9)) == (16, 16)
    assert probe_spacing((32, 30), square_window(5)) == (8, 5)
    assert probe_spacing((7,), square_window(3, 1)) == (7,)
    with pytest.raises(ValueError, match="exceeds the lattice side"):
        probe_spacing((4, 4), square_window(5))


def test_effective_window_of_a_known_kernel():
    offsets = square_window(7)
    radius = np.abs(offsets).max(axis=1)
    mass = np.where(radius <= 1, 1.0, 0.0)  # all mass inside 3x3
    ew = effective_window(mass, offsets, fraction=1.0)
    assert ew.side == 3
    np.testing.assert_allclose(ew.captured, [1 / 9, 1, 1, 1])
    # rms radius of the 3x3 block: mean |r|^2 = (4*1 + 4*2)/9
    assert ew.rms_radius == pytest.approx(math.sqrt(12 / 9))
    # a tail beyond 3x3 that holds 25 % of the mass moves P_eff at fraction 0.9 to the side that holds it
    mass = np.where(radius <= 1, 0.75 / 9, np.where(radius == 3, 0.25 / 24, 0.0))
    assert effective_window(mass, offsets, fraction=0.9).side == 7
    assert effective_window(mass, offsets, fraction=0.7).side == 3
    json.dumps(ew.to_dict())
    # without the centre: a 3x3 ring of 8 sites against one site at radius 3
    mass = np.where(radius == 0, 100.0, np.where(radius == 1, 1.0, np.where((offsets == [3, 3]).all(axis=1), 8.0, 0.0)))
    assert effective_window(mass, offsets, fraction=0.85).side == 1  # 100 of 116 = 0.862 at the centre
    assert effective_window(mass, offsets, fraction=0.9).side == 3  # 108 of 116 = 0.931 inside 3x3
    ring = effective_window(mass, offsets, fraction=0.5, exclude_centre=True)
    assert ring.side == 3 and ring.captured[1] == pytest.approx(0.5)
    assert effective_window(mass, offsets, fraction=0.9, exclude_centre=True).side == 7
    with pytest.raises(ValueError, match="away from the centre"):
        effective_window(np.where(radius == 0, 1.0, 0.0), offsets, exclude_centre=True)


def test_local_jacobian_to_dict_and_repr():
    shape = (6, 6)
    rng = np.random.default_rng(5)
    model = DenseLinear(_random_local_matrix(shape, square_window(3), rng), shape)
    local = local_jacobian(None, rng.standard_normal((2,) + shape), 1.0, 3, jvp=model.jvp, check_locality=False)
    assert local.locality_residual is None
    d = local.to_dict()
    json.dumps(d)
    assert d["n_probes"] == 9 and d["spacing"] == [3, 3]
    assert "9 probes" in repr(local)
    # kernel(): entries averaged over sites; kernel_mass(): squares averaged
    rows = local.rows.reshape(-1, 9)
    np.testing.assert_allclose(local.kernel(), rows.mean(axis=0))
    np.testing.assert_allclose(local.kernel_mass(), (rows**2).mean(axis=0))


def test_bad_input():
    y = np.zeros((2, 6, 6))
    with pytest.raises(TypeError, match="callable"):
        local_jacobian(None, y, 1.0, 3)
    with pytest.raises(ValueError, match="s must be"):
        local_jacobian(lambda y, s: y, y, -1.0, 3)
    with pytest.raises(ValueError, match="window"):
        local_jacobian(lambda y, s: y, y, 1.0, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="exceeds"):
        local_jacobian(lambda y, s: y, y, 1.0, 7)
    with pytest.raises(ValueError, match="fraction"):
        effective_window(np.ones(9), square_window(3), fraction=0.0)
    with pytest.raises(ValueError, match="mass"):
        effective_window(-np.ones(9), square_window(3))
    with pytest.raises(ValueError, match="mass"):
        effective_window(np.ones(8), square_window(3))


def test_kappa_rows_shape_error():
    with pytest.raises(ValueError, match="rows must be"):
        kappa_hat_from_jacobian_rows(np.zeros((2, 4, 4, 8)), square_window(3), _wavevectors((4, 4)))
