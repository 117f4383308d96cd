"""Tests of mode coverage: counting, Stacked MNIST mode ids, the bundled digits classifier, MNIST training."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from asm_tf.data import digits, stacked_mnist
from asm_tf.evaluation import modes

FAKE_SIZE = 8


def test_coverage_of_hand_made_predictions():
    coverage = modes.mode_coverage(np.array([0, 0, 1, 2, 2, 2]), num_modes=10)
    q = np.array([2, 1, 3]) / 6
    assert coverage.num_images == 6 and coverage.modes_covered == 3
    assert coverage.kl_to_uniform == pytest.approx(np.sum(q * np.log(10 * q)))
    np.testing.assert_array_equal(coverage.counts, [2, 1, 3, 0, 0, 0, 0, 0, 0, 0])
    assert coverage.summary() == {"num_images": 6, "num_modes": 10, "modes_covered": 3,
                                  "kl_to_uniform": coverage.kl_to_uniform, "confident_fraction": None,
                                  "counts": [2, 1, 3, 0, 0, 0, 0, 0, 0, 0]}
    confident = modes.mode_coverage(np.array([0, 1, 2, 3]), num_modes=10, confidences=[0.95, 0.9, 0.89, 0.2])
    assert confident.confident_fraction == 0.5


def test_images_of_another_size_than_the_classifiers_are_refused():
    classifier = modes.load_classifier()
    modes.check_image_size(classifier, (16, 16, 1))
    with pytest.raises(ValueError, match=r"takes \(16, 16\) images but the data has \(28, 28\)"):
        modes.check_image_size(classifier, (28, 28, 3))


def test_coverage_extremes():
    uniform = modes.mode_coverage(np.tile(np.arange(1000), 3), num_modes=1000)
    assert uniform.modes_covered == 1000 and uniform.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    collapsed = modes.mode_coverage(np.full(26, 371), num_modes=1000)
    assert collapsed.modes_covered == 1 and collapsed.kl_to_uniform == pytest.approx(np.log(1000))


@pytest.mark.parametrize("bad", [np.array([0, 10]), np.array([-1]), np.zeros((0,), int)])
def test_bad_mode_ids_are_an_error(bad):
    with pytest.raises(ValueError):
        modes.mode_coverage(bad, num_modes=10)


def _intensity_of(digit):
    return (digit + 0.5) / 10


def _fake_classifier():
    """Reads a digit from an image's mean intensity: logit_k = -(mean - c_k)^2 + mean^2 with c_k = (k + 0.5) / 10."""
    centres = _intensity_of(np.arange(10))
    classifier = keras.Sequential([keras.Input((FAKE_SIZE, FAKE_SIZE, 1)), keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(10)])
    classifier.layers[-1].set_weights([2 * centres[None, :], -centres ** 2])
    return classifier


def _stacked_images(digit_triples):
    channels = np.array([[_intensity_of(d) for d in triple] for triple in digit_triples], dtype=np.float32)
    return np.broadcast_to(channels[:, None, None, :], (len(digit_triples), FAKE_SIZE, FAKE_SIZE, 3)).copy()


def test_stacked_mnist_modes_and_separate_denoised_counts(tmp_path):
    modes.save_classifier(_fake_classifier(), str(tmp_path / "fake.keras"))
    classifier = modes.load_classifier(str(tmp_path / "fake.keras"))
    samples = _stacked_images([(3, 7, 1), (0, 0, 9), (3, 7, 1), (9, 9, 9)])
    denoised = _stacked_images([(5, 5, 5)] * 3)
    mode_ids, num_modes, confidences = modes.predicted_modes(classifier, samples)
    np.testing.assert_array_equal(mode_ids, [371, 9, 371, 999])
    assert num_modes == 1000
    # the least confident channel's softmax probability, computed from the classifier's logits by hand
    centres = _intensity_of(np.arange(10))
    channel_means = np.round(samples[:, 0, 0, :] * 255) / 255
    logits = 2 * channel_means[..., None] * centres - centres ** 2
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(confidences, probabilities.max(-1).min(-1), rtol=1e-5)
    results = modes.evaluate_modes(classifier, samples=samples, denoised=denoised, batch_size=2)
    assert results["samples"].num_images == 4 and results["samples"].modes_covered == 3
    assert results["samples"].counts[371] == 2
    q = np.array([2, 1, 1]) / 4
    assert results["samples"].kl_to_uniform == pytest.approx(np.sum(q * np.log(1000 * q)))
    assert results["denoised"].num_images == 3 and results["denoised"].modes_covered == 1
    assert results["denoised"].counts[555] == 3
    single_channel = samples[..., :1]
    np.testing.assert_array_equal(modes.predicted_modes(classifier, single_channel)[0], [3, 0, 3, 9])


def test_wrong_image_shapes_are_clear_errors():
    classifier = _fake_classifier()
    with pytest.raises(ValueError, match="classifier takes images of shape"):
        modes.predicted_modes(classifier, np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="Stacked MNIST"):
        modes.predicted_modes(classifier, np.zeros((2, FAKE_SIZE, FAKE_SIZE, 2), np.float32))


def test_bundled_digits_classifier_is_accurate_and_sees_all_modes():
    classifier = modes.load_classifier()
    images, labels = digits.load_digits("test")
    assert modes.accuracy(classifier, images=images, labels=labels) > 0.97
    coverage = modes.evaluate_modes(classifier, samples=images)["samples"]
    assert coverage.modes_covered == 10 and coverage.kl_to_uniform < 0.02
    assert coverage.num_images == len(images) and coverage.confident_fraction > 0.9


def test_missing_classifier_says_how_to_train_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools/experiments/train_digit_classifier.py"):
        modes.load_classifier(str(tmp_path / "missing.keras"))


def test_mnist_classifier_trains_on_tfds_mnist(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        images, labels = stacked_mnist.load_mnist(split="test")
        classifier, test_accuracy = modes.train_mnist_classifier(epochs=1, batch_size=32)
    assert 0 <= test_accuracy <= 1
    assert classifier.input_shape == (None, 28, 28, 1) and classifier.count_params() == 1_199_882  # PyTorch example
    modes.save_classifier(classifier, str(tmp_path / "mnist.keras"))
    reloaded = modes.load_classifier(str(tmp_path / "mnist.keras"))
    np.testing.assert_allclose(reloaded.predict(images[:4], verbose=0), classifier.predict(images[:4], verbose=0),
                               atol=1e-6)
