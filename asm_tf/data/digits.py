"""The handwritten digits that scikit-learn ships (1,797 8x8 images, no download), scaled to 16x16.

The quick-start dataset of the project; its labels are kept for evaluation (mode coverage).
"""

import functools

import gin
import numpy as np
import sklearn.datasets
import tensorflow as tf

from asm_tf.data import pipeline
from asm_tf.data.transforms import Transform

IMAGE_SIZE = 16
TEST_FRACTION = 0.2
SPLIT_SEED = 2019
SPLITS = (None, "train", "test")


@functools.lru_cache(maxsize=1)
def _all_digits():
    bunch = sklearn.datasets.load_digits()
    small = (bunch.images / 16.0).astype(np.float32)[..., None]  # pixel values 0..16 -> [0, 1]
    images = tf.image.resize(small, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear").numpy()
    images = np.clip(images, 0.0, 1.0)
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _split_indices(labels, split):
    """A fixed stratified partition: TEST_FRACTION of every class goes to "test"."""
    rng = np.random.default_rng(SPLIT_SEED)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = int(round(TEST_FRACTION * len(members)))
        chosen.append(members[num_test:] if split == "train" else members[:num_test])
    return np.sort(np.concatenate(chosen))


def load_digits(split=None):
    """Digits as (images float32 [N, 16, 16, 1] in [0, 1], labels int64 [N]).

    Bilinear upscaling (half-pixel centres) of sklearn's 8x8 images whose values are 0..16.
    `split`: None for all 1,797 images, or "train" / "test", a fixed stratified 80/20 partition.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images, labels = _all_digits()
    if split is None:
        return images.copy(), labels.copy()
    indices = _split_indices(labels, split)
    return images[indices], labels[indices]


@gin.configurable
def digits(split="train", random_flip=False, transform=None):
    """The quick-start DataSource: sklearn's digits at 16x16x1 in [0, 1], held in memory.

    `split`: "train" (default; the "test" images stay out for evaluation), "test", or None for all.
    `labelled_arrays(split)` returns load_digits(split) for classifiers and mode counts.
    """
    images, _ = load_digits(split)
    transform = Transform() if transform is None else transform
    return pipeline.random_access_source(
        name="digits", make_fetch=lambda: pipeline.in_memory_fetch(images), example_shape=images.shape[1:],
        num_examples=len(images), transform=transform, random_flip=random_flip, labelled_arrays=load_digits,
        split=split)
