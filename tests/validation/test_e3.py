import json
import math

import numpy as np
import pytest

import diffcrit.validation.cli_guide  # noqa: F401  (registers the subcommand)
from diffcrit.data import Dataset, load_dataset
from diffcrit.numerics.denoisers import GuidanceWindow, GuidedDenoiser, MemorizingDenoiser
from diffcrit.numerics.patch_denoiser import PatchDenoiser
from diffcrit.numerics.samplers import geometric_s_grid, insert_noise_levels, sample
from diffcrit.validation.cli import main
from diffcrit.validation.e3 import (
    ClassBlockDenoiser,
    E3Result,
    bootstrap_alignments,
    guidance_effect,
    guided_run_from_prefix,
    permutation_p_value,
    restart_node,
    run_e3,
    train_alignment_classifier,
)
from diffcrit.validation.runio import dumps

SMALL = dict(n_per_class=4, n_sweep=3, n_random=4, n_levels=8, n_bootstrap=50, progress=False)


def _two_class_data(n_per: int = 10, size: int = 6, seed: int = 0) -> Dataset:
    """Vertical stripes (class 0) and horizontal stripes (class 1) with pixel noise."""
    rng = np.random.default_rng(seed)
    stripes = np.where(np.sin(2 * np.pi * (np.arange(size) + 0.5) / size) > 0, 1.0, -1.0)
    vertical = np.ones((size, 1)) * stripes[None, :]
    images = np.concatenate([vertical + 0.4 * rng.standard_normal((n_per, size, size)),
                             vertical.T + 0.4 * rng.standard_normal((n_per, size, size))])
    return Dataset(images, labels=np.repeat([0, 1], n_per), name="two-stripes")


def _denoisers(family: str, data: Dataset, n_per_class: int):
    images, labels = np.asarray(data.images), np.asarray(data.labels)
    if family == "memorizing":
        du = MemorizingDenoiser(images)
        dcs = [MemorizingDenoiser(images[labels == c]) for c in (0, 1)]
    else:
        du = PatchDenoiser(images, 3, mode="local")
        dcs = [PatchDenoiser(images, 3, mode="local", labels=labels, conditional_on=c) for c in (0, 1)]
    return du, dcs, ClassBlockDenoiser(dcs, n_per_class)


# ------------------------------------------------------------------ window and prefix cache


def test_pulse_window_includes_its_edges_exactly():
    rng = np.random.default_rng(1)
    for centre in np.exp(rng.uniform(-3, 3, 200)):
        window = GuidanceWindow(2.0, float(centre), 0.8)
        # the edges are the stored floats: inside by an exact comparison, outside one ulp beyond
        assert window(window.s_high) == 2.0 and window(window.s_low) == 2.0
        assert window(np.nextafter(window.s_high, np.inf)) == 0.0
        assert window(np.nextafter(window.s_low, 0.0)) == 0.0
        assert window(float(centre)) == 2.0


@pytest.mark.parametrize("family", ["memorizing", "patch"])
def test_guided_run_from_prefix_equals_full_guided_run(family):
    data = _two_class_data()
    n = 5
    du, dcs, blocks = _denoisers(family, data, n)
    s_max, s_min, width = 6.0, 0.05, 1.0
    centres = [s_max * math.exp(-0.5 * width),  # s_high = s_max: restarts from the initial state
               0.9,                             # interior
               s_min * math.exp(0.5 * width)]   # s_low = s_min: ends on the last positive node
    windows = [GuidanceWindow(3.0, c, width) for c in centres]
    grid = insert_noise_levels(geometric_s_grid(s_max, s_min, 10, final_zero=True),
                               [e for w in windows for e in (w.s_high, w.s_low)])
    eps = np.random.default_rng(2).standard_normal((n, 6, 6))
    init = np.tile(float(grid[0]) * eps, (2, 1, 1))
    unguided = sample(du, init, grid, record="all", progress=False)
    assert restart_node(grid, windows[0]) == 0
    for window in windows:
        guided = GuidedDenoiser(du, blocks, window)
        full = sample(guided, init, grid, progress=False).samples
        cached = guided_run_from_prefix(guided, window, grid, unguided.states)
        # the restart replays exactly the operations of the full run: bit-for-bit equal
        assert np.array_equal(cached, full)
        assert not np.allclose(full, unguided.samples)  # the pulse did something
        # each class block is that class's run with the public GuidedDenoiser; the
        # unconditional model sees a 2x larger batch there, which may change the
        # rounding of its matrix products (~1e-16 relative) but nothing else
        for c in (0, 1):
            alone = sample(GuidedDenoiser(du, dcs[c], window), init[c * n:(c + 1) * n], grid,
                           progress=False).samples
            np.testing.assert_allclose(full[c * n:(c + 1) * n], alone, rtol=0, atol=1e-9)
    # restarting *at* s_high (interior window) is not the same run: the Heun step
    # arriving at s_high already evaluates the guided denoiser in its corrector
    window = windows[1]
    at_edge = int(np.flatnonzero(grid == window.s_high)[0])
    late = sample(GuidedDenoiser(du, blocks, window), unguided.states[at_edge], grid[at_edge:],
                  progress=False).samples
    full = sample(GuidedDenoiser(du, blocks, window), init, grid, progress=False).samples
    assert not np.array_equal(late, full)


def test_class_block_denoiser_checks_the_batch():
    data = _two_class_data()
    _, _, blocks = _denoisers("memorizing", data, 3)
    with pytest.raises(ValueError, match="2 classes x 3"):
        blocks(np.zeros((5, 6, 6)), 1.0)


# ------------------------------------------------------------------ statistics


def test_permutation_p_value_known_answers():
    # (1 + #{random >= target}) / (1 + n), ties counted as >=
    assert permutation_p_value(0.5, [0.1, 0.5, 0.7, 0.2]) == pytest.approx(3 / 5, abs=0)
    assert permutation_p_value(1.0, np.linspace(0, 0.9, 24)) == pytest.approx(1 / 25, abs=0)
    assert permutation_p_value(0.0, [0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        permutation_p_value(0.3, [])


def test_guidance_effect_is_paired_across_runs():
    # 1 class, 4 trajectories. Target run: every sample aligned. Random runs A and B
    # are each aligned on half the trajectories, complementary ones, so for every
    # trajectory index their mean is exactly 1/2. Effect = 1 - 1/2 = 1/2, and a
    # paired bootstrap (same indices for every run) returns 1/2 in every replicate,
    # while each random run alone fluctuates.
    target = np.ones(4, bool)
    run_a = np.array([1, 0, 1, 0], bool)
    run_b = ~run_a
    hits = np.stack([target, run_a, run_b])[:, None, :]
    idx = np.random.default_rng(0).integers(0, 4, size=(500, 4))
    effect = guidance_effect(hits, 0, [1, 2], idx, confidence=0.9)
    assert effect["value"] == 0.5 and effect["interval"] == [0.5, 0.5]
    assert np.all(effect["replicates"] == 0.5)
    assert effect["p_value"] == pytest.approx(1 / 3, abs=0)  # neither random run reaches 1
    assert effect["n_random_at_least"] == 0
    single = bootstrap_alignments(hits, idx)[:, 1]
    assert single.std() > 0.1  # run A alone: binomial-like spread (sd 0.25 for 4 draws of p=1/2)


def test_bootstrap_alignments_brute_force_and_unbiased():
    rng = np.random.default_rng(4)
    hits = rng.random((5, 3, 7)) < 0.6
    idx = rng.integers(0, 7, size=(40, 7))
    fast = bootstrap_alignments(hits, idx)
    slow = np.array([[hits[k][:, r].mean() for k in range(5)] for r in idx])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-15)  # same sums, different order
    # the effect is linear in the resampling counts, so its bootstrap mean equals it;
    # with R replicates the sampling error of that mean is sd/sqrt(R): 5 sd bound
    many = rng.integers(0, 7, size=(20000, 7))
    effect = guidance_effect(hits, 0, [2, 3, 4], many)
    reps = effect["replicates"]
    assert abs(reps.mean() - effect["value"]) < 5 * reps.std() / math.sqrt(len(reps))


# ------------------------------------------------------------------ the classifier


def test_classifier_is_deterministic_and_accurate_on_digits():
    data = load_dataset("digits")
    first = train_alignment_classifier(data.images, data.labels)
    second = train_alignment_classifier(data.images, data.labels)
    # a linear classifier on 8x8 digits is about 95-97 % accurate on held-out images
    # (scikit-learn's own examples); 0.9 leaves room for the split
    assert first.held_out_accuracy > 0.9
    assert first.n_test == round(0.25 * len(data.labels))
    assert first.held_out_accuracy == second.held_out_accuracy
    probe = np.asarray(data.images[:50])
    assert np.array_equal(first.predict(probe), second.predict(probe))
    p = first.probability(probe, 3)
    assert np.all((p >= 0) & (p <= 1))


# ------------------------------------------------------------------ the experiment


def test_run_e3_is_deterministic_with_a_seed():
    data = _two_class_data()
    one = run_e3(data, model="memorizing", s_star=0.8, rng=3, **SMALL)
    two = run_e3(data, model="memorizing", s_star=0.8, rng=3, **SMALL)
    other = run_e3(data, model="memorizing", s_star=0.8, rng=4, **SMALL)
    assert isinstance(one, E3Result)
    assert np.array_equal(one.predicted_labels, two.predicted_labels)
    assert np.array_equal(one.random_centres, two.random_centres)
    assert np.array_equal(one.effect["replicates"], two.effect["replicates"])
    strip = lambda d: {k: v for k, v in d.items() if k != "timings"}  # noqa: E731
    assert strip(json.loads(dumps(one))) == strip(json.loads(dumps(two)))
    assert not np.array_equal(one.random_centres, other.random_centres)
    # the windows lie in the admissible range and every edge is a grid node
    lo, hi = one.admissible
    centres = one.run_centres[2:]
    assert np.all((centres >= lo * (1 - 1e-12)) & (centres <= hi * (1 + 1e-12)))
    for c in centres:
        w = GuidanceWindow(1.0, float(c), one.config["width_ln_s"])
        assert np.any(one.s_grid == w.s_high) and np.any(one.s_grid == w.s_low)
    assert "E3Result" in repr(one) and "effect" in repr(one)


def test_zero_weight_reproduces_the_unguided_samples_exactly():
    data = _two_class_data()
    result = run_e3(data, model="patch", window=3, mode="local", weight=0.0, s_star=0.8, rng=1, **SMALL)
    none = result.run_index("none")
    # every run replays the unguided computation: identical labels and samples
    for k in range(len(result.run_names)):
        assert np.array_equal(result.predicted_labels[k], result.predicted_labels[none])
    for key in ("s_star", "everywhere"):
        for c in range(len(result.classes)):
            assert np.array_equal(result.samples[key][c], result.samples["none"])
    # effect 0 exactly (alignments are multiples of 1/8, so their sums and means are
    # exact); every random window ties, so p = (1 + n)/(1 + n) = 1
    assert result.effect["value"] == 0.0
    assert result.effect["p_value"] == 1.0


def test_weight_one_everywhere_gives_the_conditional_memorizing_model():
    # With w = 1, D_u + (D_c - D_u) = D_c: guidance everywhere samples the conditional
    # memorizing model, whose probability-flow samples at s -> 0 are training images
    # of the class. So every such sample must be one of them, and the alignment must
    # equal the classifier's accuracy on exactly those images.
    digits = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(np.asarray(digits.labels) == c)[:25] for c in (0, 1, 2)])
    images, labels = np.asarray(digits.images)[keep], np.asarray(digits.labels)[keep]
    data = Dataset(images, labels=labels, name="digits-012")
    result = run_e3(data, model="memorizing", weight=1.0, s_star=1.0, n_per_class=6, n_sweep=2, n_random=1,
                    n_levels=16, n_bootstrap=30, progress=False, rng=0)
    samples = result.samples["everywhere"]  # (3 classes, 6, 8, 8): all samples (n_per_class <= 8)
    classifier = train_alignment_classifier(images, labels)
    flat = images.reshape(len(images), -1)
    correct = []
    for ci, c in enumerate(result.classes):
        d2 = ((samples[ci].reshape(6, -1)[:, None, :] - flat[None]) ** 2).sum(-1)
        nearest = d2.argmin(axis=1)
        # final step returns D(y; s_min = 0.05): softmax weights of the other images are
        # exp(-(gap in squared distance)/(2 * 0.05^2)) with gaps of several units: 0 to double precision
        assert np.all(np.sqrt(d2.min(axis=1)) < 1e-6)
        assert np.all(labels[nearest] == c)
        correct.append(classifier.predict(images[nearest]) == c)
    everywhere = result.alignment[result.run_index("everywhere")]
    assert everywhere == np.mean(correct)
    assert result.alignment[result.run_index("none")] < everywhere


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weight=float("nan")), ValueError, "weight"),
    (dict(weight=float("inf")), ValueError, "weight"),
    (dict(weight="2"), TypeError, "weight"),
    (dict(width_ln_s=0.0), ValueError, "width_ln_s"),
    (dict(width_ln_s=-1.0), ValueError, "width_ln_s"),
    (dict(width_ln_s=20.0), ValueError, "width_ln_s"),
    (dict(classes=[7]), ValueError, "classes"),
    (dict(classes=[]), ValueError, "classes"),
    (dict(n_per_class=1), ValueError, "n_per_class"),
    (dict(s_star=1e3), ValueError, "s_star"),
    (dict(s_star=-1.0), ValueError, "s_star"),
    (dict(model="unet"), ValueError, "model"),
    (dict(model="patch", mode="weird"), ValueError, "mode"),
    (dict(model="patch", window=4), ValueError, "window"),
    (dict(method="em"), ValueError, "method"),
    (dict(n_random=0), ValueError, "n_random"),
    (dict(n_sweep=1), ValueError, "n_sweep"),
    (dict(confidence=1.5), ValueError, "confidence"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(s_min=2.0, s_max=1.0), ValueError, "s_min"),
    (dict(rng=-1), TypeError, "rng"),
])
def test_bad_input_is_rejected(kwargs, error, match):
    base = dict(model="memorizing", s_star=0.8, **SMALL)
    base.update(kwargs)
    with pytest.raises(error, match=match):
        run_e3(_two_class_data(), **base)


def test_unlabelled_data_is_rejected():
    data = Dataset(np.random.default_rng(0).standard_normal((8, 6, 6)), name="no-labels")
    with pytest.raises(ValueError, match="labels"):
        run_e3(data, model="memorizing", s_star=0.8, **SMALL)


# ------------------------------------------------------------------ CLI


def test_cli_guide_json_and_run_folder(tmp_path, capsys):
    data = _two_class_data(n_per=8)
    path = tmp_path / "stripes.npz"
    np.savez(path, images=np.asarray(data.images), labels=np.asarray(data.labels))
    out = tmp_path / "run"
    status = main(["guide", "--data", f"npz:{path}", "--model", "patch", "--window", "3", "--mode", "local",
                   "--weight", "2", "--width", "1.0", "--n-per-class", "3", "--sweep", "3", "--random", "3",
                   "--levels", "8", "--bootstrap", "40", "--json", "--out", str(out)])
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "guide" and payload["out"] == str(out)
    for name in ("results.json", "arrays.npz", "report.md", "report.html", "figures/e3_alignment.png",
                 "figures/e3_alignment.pdf", "figures/e3_samples_s_star.png", "figures/e3_samples_s_star.pdf"):
        assert name in payload["files"] and (out / name).is_file()
    head = payload["headline"]
    assert set(head) >= {"alignment_no_guidance", "alignment_everywhere", "alignment_at_s_star",
                         "alignment_random_mean", "effect_size", "effect_interval", "p_value"}
    assert payload["prediction"]["critical_noise"] == pytest.approx(payload["s_star"], rel=1e-12)
    # the arrays and results.json agree: alignment is the mean of the stored hits
    results = json.loads((out / "results.json").read_text())
    arrays = np.load(out / "arrays.npz")
    np.testing.assert_array_equal(arrays["hits"].mean(axis=(1, 2)), [r["alignment"] for r in results["runs"]])
    assert list(arrays["run_names"][:3]) == ["none", "everywhere", "s_star"]
    assert "E3: guidance pulse" in (out / "report.md").read_text()


def test_cli_guide_reports_bad_input(tmp_path, capsys):
    status = main(["guide", "--model", "memorizing", "--weight", "nan", "--json", "--out", str(tmp_path / "x")])
    assert status == 2
    assert "weight" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_guide_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["guide", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in ("--weight", "--width", "--n-per-class", "--model", "--s-star", "--sweep", "--random", "--json"):
        assert option in text
