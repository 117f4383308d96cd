"""Stacked MNIST: three independently shuffled MNIST digits as the R, G, B channels.

Label = 100 * R + 10 * G + B (1,000 modes). Unlike the reference, whose [-1, 1] data faced fakes clamped
to [0, 1], images are in [0, 1] like every other dataset here. Every epoch stacks new triples: channel c
of stream position p is MNIST image index_shuffle_c(p mod N) of a permutation keyed by (seed, epoch, c).
"""

import gin
import numpy as np
import tensorflow as tf

from asm_tf.data import pipeline, tfds_images
from asm_tf.data.source import defer_missing_data
from asm_tf.data.transforms import Transform

NUM_CHANNELS = 3


def _mnist_builder(split, data_dir):
    return tfds_images.prepared_builder("mnist", split=split, data_dir=data_dir, factory="stacked_mnist")


def _mnist_uint8(split, data_dir):
    builder = _mnist_builder(split, data_dir)
    images, labels = pipeline.collect(builder.as_dataset(split=split, shuffle_files=False).map(
        lambda example: (example["image"], example["label"])))
    return images, labels.astype(np.int64)


def load_mnist(split="train", data_dir=None):
    """MNIST from TFDS (prepared; never downloaded): (images float32 [N, 28, 28, 1] in [0, 1], labels int64 [N])."""
    images, labels = _mnist_uint8(split, data_dir)
    return images.astype(np.float32) / 255.0, labels.copy()


def stacked_label(red, green, blue):
    """The Stacked MNIST class (0..999) of three digit labels."""
    return 100 * red + 10 * green + blue


def _channel_indices(positions, num_examples, shuffle_key):
    return [pipeline.shuffled_indices(positions, num_examples, pipeline.subkey(shuffle_key, channel))
            for channel in range(NUM_CHANNELS)]


def stacked_fetch(mnist_images):
    """A random-access `fetch` (pipeline.random_access_dataset) stacking three shuffles of uint8 [N, 28, 28, 1]."""
    mnist_images = tf.convert_to_tensor(mnist_images)
    num_examples = int(mnist_images.shape[0])

    def fetch(positions, shuffle_key):
        indices = _channel_indices(positions, num_examples, shuffle_key)
        return tf.concat([tf.gather(mnist_images, i) for i in indices], axis=-1)

    return fetch


def load_stacked_mnist(split="test", seed=0, num_examples=None, data_dir=None):
    """One epoch of Stacked MNIST built from MNIST `split` with `seed` (the first epoch that a training stream
    with this seed reads): (images float32 [n, 28, 28, 3] in [0, 1], labels int64 [n] in 0..999)."""
    images, labels = _mnist_uint8(split, data_dir)
    count = len(images) if num_examples is None else int(num_examples)
    positions = tf.range(count, dtype=tf.int64)
    shuffle_key = pipeline.purpose_key(seed, pipeline.SHUFFLE)
    stacked = stacked_fetch(images)(positions, shuffle_key).numpy().astype(np.float32) / 255.0
    red, green, blue = (labels[i.numpy()] for i in _channel_indices(positions, len(images), shuffle_key))
    return stacked, stacked_label(red, green, blue)


@gin.configurable
@defer_missing_data(lambda **_: (28, 28, NUM_CHANNELS))
def stacked_mnist(split="train", data_dir=None, random_flip=False, transform=None):
    """Stacked MNIST at 28x28x3 in [0, 1] from TFDS mnist, no flips; 60,000 examples an epoch.

    `labelled_arrays(split)` returns load_stacked_mnist(split) (seed 0) for mode counting.
    """
    builder = _mnist_builder(split, data_dir)
    transform = Transform() if transform is None else transform
    return pipeline.random_access_source(
        name="stacked_mnist", make_fetch=lambda: stacked_fetch(_mnist_uint8(split, data_dir)[0]),
        example_shape=(28, 28, NUM_CHANNELS), num_examples=tfds_images.split_size(builder, split),
        transform=transform, random_flip=random_flip, split=split,
        labelled_arrays=lambda labelled_split: load_stacked_mnist(labelled_split, data_dir=data_dir))
