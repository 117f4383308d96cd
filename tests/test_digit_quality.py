"""Tests of the digit-quality metrics: FDD against closed forms, KID's unbiasedness, precision/recall, the
blur yardsticks on real digits, and asm-eval --metric=fdd."""

import json

import keras
import numpy as np
import pytest
import scipy.linalg
from conftest import run_cli

from asm_tf.data import digits
from asm_tf.evaluation import digit_quality, feature_metrics, modes


def test_fdd_of_gaussian_features_approaches_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    std1, std2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum((std1 - std2) ** 2)  # diagonal covariances
    first = mu1 + std1 * rng.normal(size=(200_000, 3))
    second = mu2 + std2 * rng.normal(size=(200_000, 3))
    assert digit_quality.frechet_distance_of_features(first, second) == pytest.approx(closed_form, rel=0.01)


def test_fdd_of_random_features_equals_a_direct_scipy_computation():
    rng = np.random.default_rng(1)
    first = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    second = rng.normal(loc=0.3, size=(250, 12)) @ rng.normal(size=(12, 12))
    mu1, mu2 = first.mean(0), second.mean(0)
    sigma1, sigma2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    direct = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2)
              - 2 * np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2).real))
    assert digit_quality.compare_features(first, second)["fdd"] == pytest.approx(direct, rel=1e-9)


def _biased_mmd(x, y):
    kernel = feature_metrics._polynomial_kernel
    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def test_kid_is_unbiased_and_its_standard_error_matches_the_spread():
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(8, 8))
    kids, errors, biased = [], [], []
    for _ in range(300):
        x, y = rng.normal(size=(40, 8)) @ mixing, rng.normal(size=(60, 8)) @ mixing
        kid = feature_metrics.kernel_inception_distance(x, y)
        kids.append(kid.value)
        errors.append(kid.standard_error)
        biased.append(_biased_mmd(x, y))
    spread = np.std(kids)
    assert abs(np.mean(kids)) < 3 * spread / np.sqrt(len(kids))  # mean 0 for one distribution
    assert np.mean(biased) > 10 * spread / np.sqrt(len(kids))  # the V-statistic is not: the test can fail
    assert 0.7 < np.mean(errors) / spread < 1.4
    shifted = feature_metrics.kernel_inception_distance(x, rng.normal(loc=1.0, size=(60, 8)) @ mixing)
    assert shifted.value > 3 * shifted.standard_error


def test_the_bootstrap_standard_error_of_the_fdd_matches_the_spread_over_fresh_draws():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(2000, 6))
    draws = [rng.normal(0.2, 1.1, size=(300, 6)) for _ in range(40)]
    spread = np.std([digit_quality.compare_features(draw, reference)["fdd"] for draw in draws], ddof=1)
    standard_error = digit_quality.bootstrap_fdd_standard_error(draws[0], reference, rounds=200)
    assert 0.6 * spread < standard_error < 1.6 * spread


def test_kid_needs_three_points_and_matching_dimensions():
    with pytest.raises(ValueError, match="at least 3"):
        feature_metrics.kernel_inception_distance(np.zeros((2, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        feature_metrics.kernel_inception_distance(np.zeros((5, 4)), np.zeros((5, 3)))


def test_precision_and_recall_are_one_for_identical_sets_and_fall_for_a_shifted_set():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 6))
    same = feature_metrics.precision_recall(real, real.copy())
    assert same.precision == 1.0 and same.recall == 1.0
    near = feature_metrics.precision_recall(real, rng.normal(loc=0.5, size=(300, 6)))
    far = feature_metrics.precision_recall(real, rng.normal(loc=3.0, size=(300, 6)))
    assert 1.0 > near.precision > far.precision and 1.0 > near.recall > far.recall
    assert far.precision < 0.05 and far.recall < 0.05
    narrow = feature_metrics.precision_recall(real, 0.2 * rng.normal(size=(300, 6)))
    assert narrow.precision > 0.9 and narrow.recall < 0.5  # inside the data, but covering little of it


def test_blur_equivalent_interpolates_the_ladder():
    ladder = [(0.0, 5.0), (0.5, 10.0), (1.0, 50.0)]
    assert digit_quality.blur_equivalent(4.0, ladder) == 0.0
    assert digit_quality.blur_equivalent(7.5, ladder) == pytest.approx(0.25)
    assert digit_quality.blur_equivalent(30.0, ladder) == pytest.approx(0.75)
    assert digit_quality.blur_equivalent(51.0, ladder) is None


@pytest.fixture(scope="module")
def quality():
    return digit_quality.DigitQuality(modes.load_classifier(), digits.load_digits("test")[0],
                                      digits.load_digits("train")[0], log=lambda message: None)


def test_blurred_real_digits_sit_on_their_place_of_the_ladder(quality):
    train = digits.load_digits("train")[0]
    held_out = digits.load_digits("test")[0]
    reference = quality.evaluate(held_out)
    assert reference["fdd"] < 1e-6 and reference["precision"] == 1.0 and reference["modes_covered"] == 10
    yardsticks = quality.yardsticks(300)
    ladder = [yardsticks["floor"]["fdd"]] + [yardsticks[f"blur_{px:g}"]["fdd"] for px in digit_quality.BLUR_LADDER]
    assert ladder == sorted(ladder) and ladder[-1] > 20 * ladder[0]
    # other training digits than the yardsticks', blurred by 0.75 px
    others = np.random.default_rng(9).permutation(len(train))[:300]
    blurred = quality.evaluate(digit_quality.blur(train[others], 0.75))
    assert 0.6 < blurred["blur_equivalent_px"] < 0.9 and 0.6 < blurred["sharpness_blur_px"] < 0.9
    assert blurred["sharpness"] < yardsticks["blur_0.5"]["sharpness"] < yardsticks["floor"]["sharpness"]
    assert blurred["fdd_floor"] == yardsticks["floor"]["fdd"] and blurred["num_images"] == 300
    assert blurred["recall"] < yardsticks["floor"]["recall"]
    sharp = quality.evaluate(train[others])
    assert sharp["blur_equivalent_px"] < 0.5 and sharp["fdd"] < blurred["fdd"] / 2
    noise = np.random.default_rng(0).uniform(size=(300, 16, 16, 1)).astype(np.float32)
    noisy = quality.evaluate(noise)
    assert noisy["blur_equivalent_px"] is None and noisy["sharpness"] > 5 and noisy["sharpness_blur_px"] == 0.0


def test_asm_eval_fdd_of_stored_samples_reports_the_floor(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.gin").write_text("Experiment.data = @digits()\nExperiment.score_network = @ToyMLP\n")
    samples = tmp_path / "samples"
    samples.mkdir()
    train = digits.load_digits("train")[0]
    final = np.round(255 * train[:120]).astype(np.uint8)
    denoised = np.round(255 * digit_quality.blur(train[:120], 1.0)).astype(np.uint8)
    np.savez(samples / "samples.npz", final=final, denoised=denoised, seeds=np.arange(120))
    (samples / "settings.json").write_text(json.dumps({"sampler": "cas", "n_sigma": 1, "step_size": 1e-4,
                                                       "step": 7}))
    result = run_cli("evaluate", "--workdir", str(workdir), "--metric", "fdd", "--samples", str(samples))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fdd_floor" in result.stdout and "blur_equivalent_px" in result.stdout
    report = json.loads((workdir / "eval" / "fdd_cas_n1_N120" / "ckpt7_eps0.0001.json").read_text())
    raw, blurred = report["results"]["samples"], report["results"]["denoised"]
    assert raw["fdd"] < blurred["fdd"] and raw["yardsticks"]["floor"]["num_images"] == 120
    assert blurred["blur_equivalent_px"] == pytest.approx(1.0, abs=0.15)
    assert report["metric_config"]["reference"] == "digits test split"


def _corner_classifier():
    """A digit classifier whose penultimate layer has a unit that only a bright top-left pixel turns on (no real
    digit has one): units = (mean of the top half, mean of the bottom half, relu(corner - 0.5))."""
    inputs = keras.Input((16, 16, 1))
    hidden = keras.layers.Dense(3, activation="relu")
    features = hidden(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(10)
    model = keras.Model(inputs, logits(features))
    kernel = np.zeros((256, 3), np.float32)
    kernel[:128, 0], kernel[128:, 1], kernel[0, 2] = 1 / 128, 1 / 128, 1.0
    hidden.set_weights([kernel, np.array([0.0, 0.0, -0.5], np.float32)])
    logits.set_weights([np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32), np.zeros(10, np.float32)])
    return model


def test_activity_on_a_unit_that_no_real_digit_activates_counts():
    train, test = digits.load_digits("train")[0], digits.load_digits("test")[0]
    quality = digit_quality.DigitQuality(_corner_classifier(), test, train, log=lambda message: None)
    assert not np.any(quality.features(np.concatenate([train, test])).features[:, 2])  # dead on real digits
    samples = train[:300].copy()
    lit = samples.copy()
    lit[::2, 0, 0, 0] = 1.0  # half the samples light the corner pixel, the rest is unchanged
    plain, cornered = quality.evaluate(samples), quality.evaluate(lit)
    assert cornered["fdd"] > plain["fdd"] + 0.05  # the unit's activity (0.5 on half the samples) is a distance


def test_more_samples_than_training_digits_are_compared_with_the_yardsticks_at_their_count(quality):
    train, test = digits.load_digits("train")[0], digits.load_digits("test")[0]
    few_floor = digit_quality.DigitQuality(modes.load_classifier(), test, train[:150], log=lambda message: None)
    samples = train[150:550]  # 400 real digits against a floor of 150
    report = few_floor.evaluate(samples)
    assert report["yardstick_count"] == 150 and report["yardsticks"]["floor"]["num_images"] == 150
    features, reference = few_floor.features(samples).features, few_floor.features(test).features
    assert report["fdd_at_yardstick_count"] == pytest.approx(digit_quality.fdd_at_count(features, reference, 150))
    assert report["fdd"] < report["fdd_at_yardstick_count"]  # more images, lower FDD: the bias it avoids
    assert digit_quality.fdd_at_count(features, reference, 400) == report["fdd"]
    ladder = [(0.0, report["fdd_floor"])] + [(px, report["yardsticks"][f"blur_{px:g}"]["fdd"])
                                             for px in digit_quality.BLUR_LADDER]
    assert report["blur_equivalent_px"] == digit_quality.blur_equivalent(report["fdd_at_yardstick_count"], ladder)
    assert quality.evaluate(train[:300])["fdd_at_yardstick_count"] == quality.evaluate(train[:300])["fdd"]
