"""Training the periodic convolutional denoiser: EDM loss, validation, reproducibility, resume."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffcrit.data import load_dataset  # noqa: E402
from diffcrit.validation.convnet import make_periodic_conv_denoiser  # noqa: E402
from diffcrit.validation.training import (  # noqa: E402
    VALIDATION_NOISE_LEVELS,
    _roll_batch,
    train_denoiser,
)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit claims hold at a fixed thread count
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _small_net(seed=0, channels=8):
    return make_periodic_conv_denoiser(2, channels, seed=seed)


def _tiny_images(n=40, seed=0):
    """Smooth periodic 8x8 fields (a cosine bump at a random place), standardized."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    out = np.empty((n, 8, 8))
    for m in range(n):
        ci, cj = rng.integers(0, 8, 2)
        out[m] = np.cos(2 * np.pi * (i - ci) / 8) + np.cos(2 * np.pi * (j - cj) / 8) + 0.1 * rng.standard_normal((8, 8))
    return (out - out.mean()) / out.std()


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_beats_the_untrained_and_the_trivial_denoiser(digits):
    net = _small_net()
    result = train_denoiser(net, digits, steps=100, batch_size=64, progress=False, validate_every=25)
    s = np.asarray(VALIDATION_NOISE_LEVELS)
    np.testing.assert_array_equal(result.validation_s, s)
    assert result.steps == 100 and result.loss_history.shape == (100,)
    assert result.n_train + result.n_validation == 1797 and result.n_validation == 180  # round(0.1 n)
    np.testing.assert_array_equal(result.validation_steps, [0, 25, 50, 75, 100])

    # The trivial denoiser D = c_skip y: its expected EDM loss per level, derived by
    # hand, is (s^2 m2 + 1)/(s^2 + 1) for sd = 1, m2 the validation images' mean square.
    x0 = digits.images[result.validation_indices]
    m2 = float(np.mean(x0**2))
    expected_trivial = (s**2 * m2 + 1) / (s**2 + 1)
    # Fixed draws of 180 x 64 = 11520 independent noise pixels per level: the chi-square
    # part has relative std sqrt(2/11520) = 0.013 and the cross term std <= 1/sqrt(11520)
    # = 0.009, so |error| < 0.05 is a > 3-sigma bound at every level.
    np.testing.assert_allclose(result.validation_loss_trivial_per_s, expected_trivial, rtol=0, atol=0.05)

    # Training: clearly below the untrained network and the trivial denoiser, on the
    # same draws (so the comparison is paired). At 100 steps the loss is about 0.86
    # against 1.01 (trivial) and 1.19 (untrained); the thresholds leave half of that gap.
    assert result.validation_loss < 0.93 * result.validation_loss_trivial
    assert result.validation_loss < 0.85 * result.validation_loss_initial
    assert result.validation_history[-1] == result.validation_loss
    # The gain is at the intermediate noise levels, where local correlations are
    # informative (s = 0.5 and 1: the loss there drops by more than 20 percent).
    middle = np.isin(s, [0.5, 1.0])
    assert np.all(result.validation_loss_per_s[middle] < 0.8 * result.validation_loss_trivial_per_s[middle])
    # Training loss decreases too (first vs last 20 steps; batch noise is ~0.1).
    assert result.loss_history[-20:].mean() < result.loss_history[:20].mean() - 0.1

    # Independent re-measurement of the reported validation loss with fresh noise
    # (numpy draws, float64 accumulation): the same expectation, statistical error
    # per level of the order of the trivial one above (<= 0.016), so 0.03 on the mean
    # over 7 levels is > 4 sigma.
    rng = np.random.default_rng(123)
    xt = torch.from_numpy(x0[:, None].astype(np.float32))
    values = []
    with torch.no_grad():
        for level in s:
            noise = torch.from_numpy(rng.standard_normal(xt.shape).astype(np.float32))
            d = net(xt + float(level) * noise, torch.full((xt.shape[0],), float(level)))
            weight = (level**2 + 1) / level**2
            values.append(weight * float(((d - xt).double() ** 2).mean()))
    assert abs(np.mean(values) - result.validation_loss) < 0.03
    assert not net.training


def test_zero_output_layer_is_the_trivial_denoiser(digits):
    # With the last convolution zeroed, F = 0 and D = c_skip y exactly: the network's
    # validation loss before training must equal the trivial one on the same draws.
    net = _small_net()
    with torch.no_grad():
        net.convs[-1].weight.zero_()
        net.convs[-1].bias.zero_()
    result = train_denoiser(net, digits.images, steps=1, progress=False)
    # float32 network against a float64 reference: relative rounding ~1e-6.
    np.testing.assert_allclose(result.validation_loss_initial, result.validation_loss_trivial, rtol=1e-5)


def test_bit_for_bit_reproducible_and_seed_dependent():
    images = _tiny_images()
    runs = []
    for seed in (3, 3, 4):
        net = _small_net()
        result = train_denoiser(net, images, steps=12, batch_size=16, seed=seed, progress=False)
        runs.append((result, _state(net)))
    np.testing.assert_array_equal(runs[0][0].loss_history, runs[1][0].loss_history)
    _assert_same_weights(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0].loss_history, runs[2][0].loss_history)
    # The validation set and its noise do not depend on the training seed: the
    # initial validation loss of the same initial network is identical.
    assert runs[0][0].validation_loss_initial == runs[2][0].validation_loss_initial
    np.testing.assert_array_equal(runs[0][0].validation_indices, runs[2][0].validation_indices)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("augment, schedule", [("translations", "constant"), ("none", "cosine")])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, augment, schedule):
    images = _tiny_images()
    options = dict(steps=20, batch_size=16, seed=1, augment=augment, lr_schedule=schedule,
                   checkpoint_every=5, progress=False)
    straight_net = _small_net()
    straight = train_denoiser(straight_net, images, **options)

    path = tmp_path / "ckpt" / "train.pt"

    def stop_at_13(step, loss):
        if step == 13:
            raise _Interrupt

    interrupted_net = _small_net()
    with pytest.raises(_Interrupt):
        train_denoiser(interrupted_net, images, checkpoint=path, callback=stop_at_13, **options)
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.pt"]  # no temporary files

    # A fresh process would build a fresh network: the checkpoint restores everything.
    resumed_net = _small_net()
    seen = []
    resumed = train_denoiser(resumed_net, images, checkpoint=path, callback=lambda k, v: seen.append(k), **options)
    assert resumed.resumed_from == 10  # the last checkpoint before the interruption
    assert seen == list(range(11, 21))  # steps 11..13 redone, none skipped
    np.testing.assert_array_equal(resumed.loss_history, straight.loss_history)
    np.testing.assert_array_equal(resumed.validation_history, straight.validation_history)
    np.testing.assert_array_equal(resumed.validation_steps, [0, 5, 10, 15, 20])
    assert resumed.validation_loss == straight.validation_loss
    _assert_same_weights(_state(resumed_net), _state(straight_net))

    # Called again on a finished run: nothing is trained, the same result comes back.
    again_net = _small_net()
    again = train_denoiser(again_net, images, checkpoint=path, callback=lambda k, v: seen.append(k), **options)
    assert again.resumed_from == 20 and seen == list(range(11, 21))
    np.testing.assert_array_equal(again.loss_history, straight.loss_history)
    _assert_same_weights(_state(again_net), _state(straight_net))


def test_checkpoint_with_a_different_configuration_is_refused(tmp_path):
    images = _tiny_images()
    path = tmp_path / "train.pt"
    train_denoiser(_small_net(), images, steps=3, batch_size=8, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"lr: checkpoint has 0\.002, this call has 0\.001"):
        train_denoiser(_small_net(), images, steps=3, batch_size=8, lr=1e-3, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="data_sha256"):
        train_denoiser(_small_net(), images + 0.1, steps=3, batch_size=8, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="net.channels: checkpoint has 8, this call has 4"):
        train_denoiser(_small_net(channels=4), images, steps=3, batch_size=8, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="net.seed"):  # another initial network is another run
        train_denoiser(_small_net(seed=5), images, steps=3, batch_size=8, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_denoiser(_small_net(), images, steps=4, batch_size=8, checkpoint=path, progress=False)
    other = tmp_path / "other.pt"
    torch.save({"x": 1}, other)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train_denoiser(_small_net(), images, steps=3, checkpoint=other, progress=False)


def test_roll_batch_is_a_periodic_roll_per_image():
    x = torch.arange(2 * 6 * 5, dtype=torch.float64).reshape(2, 1, 6, 5)
    shifts_h, shifts_w = torch.tensor([1, 4]), torch.tensor([3, 0])
    rolled = _roll_batch(x, shifts_h, shifts_w, torch)
    for b in range(2):
        expected = np.roll(x[b, 0].numpy(), (int(shifts_h[b]), int(shifts_w[b])), axis=(0, 1))
        np.testing.assert_array_equal(rolled[b, 0].numpy(), expected)


def test_result_serializes_and_progress_bar_shows(capsys):
    result = train_denoiser(_small_net(), _tiny_images(), steps=3, batch_size=8, progress=True)
    text = json.dumps(result.to_dict())
    assert json.loads(text)["steps"] == 3
    assert "validation loss" in repr(result)
    assert result.config["torch_threads"] == 1 and result.config["net"]["receptive_field"] == 5
    assert "train" in capsys.readouterr().err  # the tqdm bar writes to stderr
    assert math.isfinite(result.wall_time_s) and result.total_train_time_s <= result.wall_time_s
    with pytest.raises(ValueError):
        result.loss_history[0] = 0.0  # frozen result, read-only arrays


class _NaNNet(torch.nn.Module):
    sigma_data = 1.0

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, y, s):
        return y * (self.w + float("nan"))


class _NaNWhenTraining(_NaNNet):
    def forward(self, y, s):
        return y * (self.w + (float("nan") if self.training else 1.0))


def test_non_finite_losses_are_errors():
    with pytest.raises(FloatingPointError, match="validation loss is not finite at noise levels"):
        train_denoiser(_NaNNet(), _tiny_images(), steps=2, progress=False)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 1 of 2 \(batch noise levels"):
        train_denoiser(_NaNWhenTraining(), _tiny_images(), steps=2, progress=False)


_GOOD = dict(steps=2, batch_size=4, progress=False)


@pytest.mark.parametrize("override, error, match", [
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=1.5), TypeError, "steps"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(p_mean=float("inf")), ValueError, "p_mean"),
    (dict(p_std=0.0), ValueError, "p_std"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(augment="flips"), ValueError, "augment"),
    (dict(checkpoint=3), TypeError, "checkpoint"),
    (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(val_fraction=0.0), ValueError, "val_fraction"),
    (dict(val_fraction=1.0), ValueError, "val_fraction"),
    (dict(lr_schedule="step"), ValueError, "lr_schedule"),
    (dict(grad_clip=-1.0), ValueError, "grad_clip"),
    (dict(validate_every=0), ValueError, "validate_every"),
    (dict(callback=5), TypeError, "callback"),
])
def test_argument_errors(override, error, match):
    with pytest.raises(error, match=match):
        train_denoiser(_small_net(), _tiny_images(n=10), **{**_GOOD, **override})


@pytest.mark.parametrize("images, error, match", [
    (np.zeros((10, 64)), ValueError, r"\(n, H, W\)"),
    (np.zeros((10, 3, 8, 8)), ValueError, "one channel"),
    (np.zeros((1, 8, 8)), ValueError, "at least 2"),
    (np.full((10, 8, 8), np.nan), ValueError, "finite"),
    (np.zeros((10, 8, 8), dtype=complex), TypeError, "real"),
    ("digits", TypeError, "images"),
])
def test_image_errors(images, error, match):
    with pytest.raises(error, match=match):
        train_denoiser(_small_net(), images, **_GOOD)


def test_split_must_leave_training_images():
    # 2 images, val_fraction 0.9: round(1.8) = 2 held out, none left to train on.
    with pytest.raises(ValueError, match="val_fraction"):
        train_denoiser(_small_net(), np.zeros((2, 8, 8)), val_fraction=0.9, **_GOOD)


def test_net_errors():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        train_denoiser(lambda y, s: y, _tiny_images(n=10), **_GOOD)
    with pytest.raises(TypeError, match="sigma_data"):
        train_denoiser(torch.nn.Conv2d(1, 1, 3), _tiny_images(n=10), **_GOOD)
