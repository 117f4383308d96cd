"""Stacked MNIST under tfds.testing.mock_data: three independent shuffles, labels 100 R + 10 G + B, [0, 1]."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from asm_tf.data import stacked_mnist

NUM_MNIST = 30


@pytest.fixture()
def mock_mnist():
    """MNIST replaced by NUM_MNIST random examples for the duration of a test."""
    with tfds.testing.mock_data(num_examples=NUM_MNIST):
        yield stacked_mnist.load_mnist("train")


def _digit_of(channel, mnist):
    images, labels = mnist
    matches = np.flatnonzero(np.all(images[..., 0] == channel, axis=(1, 2)))
    assert len(matches) == 1
    return labels[matches[0]]


def test_labels_are_100r_10g_b_of_the_stacked_digits(mock_mnist):
    images, labels = stacked_mnist.load_stacked_mnist("train", seed=3, num_examples=12)
    assert images.shape == (12, 28, 28, 3) and images.dtype == np.float32 and labels.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    for image, label in zip(images, labels):
        red, green, blue = (_digit_of(image[..., c], mock_mnist) for c in range(3))
        assert label == stacked_mnist.stacked_label(red, green, blue)


def test_channels_are_independent_shuffles(mock_mnist):
    images, _ = stacked_mnist.load_stacked_mnist("train", seed=0)
    assert len(images) == NUM_MNIST
    for channel in range(3):  # each channel runs through every MNIST image once per epoch
        seen = {images[i, ..., channel].tobytes() for i in range(NUM_MNIST)}
        assert seen == {image[..., 0].tobytes() for image in mock_mnist[0]}
    assert not np.array_equal(images[..., 0], images[..., 1])
    assert not np.array_equal(images[..., 1], images[..., 2])


def test_training_stream_starts_with_the_labelled_epoch_and_restacks_later(mock_mnist):
    source = stacked_mnist.stacked_mnist()
    iterator = iter(source.make_dataset(NUM_MNIST, seed=5))
    first, second = next(iterator).numpy(), next(iterator).numpy()
    assert source.example_shape == (28, 28, 3)
    np.testing.assert_allclose(first, stacked_mnist.load_stacked_mnist("train", seed=5)[0])
    assert {image.tobytes() for image in first} != {image.tobytes() for image in second}


def test_labelled_arrays_for_evaluation(mock_mnist):
    images, labels = stacked_mnist.stacked_mnist().labelled_arrays("test")
    assert images.shape == (NUM_MNIST, 28, 28, 3) and labels.min() >= 0 and labels.max() <= 999


def test_missing_mnist_fails_at_once(tmp_path):
    start = time.time()
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        stacked_mnist.stacked_mnist(data_dir=str(tmp_path)).make_dataset(4, 0)
    assert time.time() - start < 5.0
