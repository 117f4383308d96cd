"""Mode coverage of digit data: digit classifiers, covered modes and KL(generated classes || uniform).

Single-channel images have 10 modes (their digit). Stacked MNIST images (3 channels) have 1000 modes:
every channel is classified separately and mode = 100 * digit(R) + 10 * digit(G) + digit(B).
Unlike the reference, the class frequencies are normalised by the number of images actually classified,
every image is counted once, and the denoised (EDS) images are classified too and reported separately.
Images are quantised to uint8 as a PNG stores them before they are classified.
"""

import dataclasses
import importlib.resources

import keras
import numpy as np
import tensorflow as tf

from asm_tf.data import digits, stacked_mnist
from asm_tf.evaluation import fid

NUM_DIGITS = 10
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
DIGITS_CLASSIFIER_ASSET = "digits_classifier.keras"
DEFAULT_BATCH_SIZE = 500
CONFIDENT = 0.9  # a classification counts as confident when its softmax probability is at least this


# --------------------------------------------------------------------------------------------------------------
# Counting modes


@dataclasses.dataclass(frozen=True)
class ModeCoverage:
    """`counts[k]` images fell in mode k; `kl_to_uniform` = sum_{q_k > 0} q_k log(num_modes q_k), q = counts / N;
    `confident_fraction`: the share of images classified with probability >= CONFIDENT (every channel's, for
    Stacked MNIST), None when no probabilities were given."""

    num_images: int
    num_modes: int
    modes_covered: int
    kl_to_uniform: float
    counts: np.ndarray
    confident_fraction: float = None

    def summary(self):
        """A JSON-ready dict, the per-mode counts included (a list of num_modes ints)."""
        return {"num_images": self.num_images, "num_modes": self.num_modes, "modes_covered": self.modes_covered,
                "kl_to_uniform": self.kl_to_uniform, "confident_fraction": self.confident_fraction,
                "counts": self.counts.tolist()}


def mode_coverage(mode_ids, *, num_modes, confidences=None):
    """Coverage of the predicted modes `mode_ids` (ints in [0, num_modes)), each image counted once;
    `confidences` (optional, [N]) are the probabilities of those predictions."""
    mode_ids = np.asarray(mode_ids)
    if mode_ids.ndim != 1 or len(mode_ids) == 0:
        raise ValueError(f"mode_ids must be a non-empty vector of predicted modes, got shape {mode_ids.shape}")
    if np.any(mode_ids < 0) or np.any(mode_ids >= num_modes):
        raise ValueError(f"mode ids must lie in [0, {num_modes}), got {mode_ids.min()}..{mode_ids.max()}")
    counts = np.bincount(mode_ids.astype(np.int64), minlength=num_modes)
    frequencies = counts[counts > 0] / len(mode_ids)
    kl = float(np.sum(frequencies * np.log(num_modes * frequencies)))
    confident = None if confidences is None else float(np.mean(np.asarray(confidences) >= CONFIDENT))
    return ModeCoverage(num_images=len(mode_ids), num_modes=num_modes, modes_covered=int(np.count_nonzero(counts)),
                        kl_to_uniform=kl, counts=counts, confident_fraction=confident)


# --------------------------------------------------------------------------------------------------------------
# Classifiers


def build_classifier(*, image_size, filters=(32, 64), hidden_units=128):
    """The PyTorch MNIST example CNN (with its defaults, as the reference's MNIST classifier) in Keras.

    Input: float [N, image_size, image_size, 1] in [0, 1], normalised inside with the MNIST mean and std.
    Output: 10 logits.
    """
    return keras.Sequential([
        keras.Input((image_size, image_size, 1)),
        keras.layers.Rescaling(scale=1.0 / MNIST_STD, offset=-MNIST_MEAN / MNIST_STD),
        keras.layers.Conv2D(filters[0], 3, activation="relu"),
        keras.layers.Conv2D(filters[1], 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden_units, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(NUM_DIGITS),
    ], name=f"digit_classifier_{image_size}px")


def default_digits_classifier_path():
    """The bundled classifier of the 16x16 digits (asm_tf/evaluation/assets/digits_classifier.keras)."""
    return str(importlib.resources.files("asm_tf.evaluation") / "assets" / DIGITS_CLASSIFIER_ASSET)


def load_classifier(path=None):
    """A saved Keras digit classifier; `path` None means the bundled digits classifier."""
    path = path or default_digits_classifier_path()
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"no digit classifier at {path}. Train one with `python tools/experiments/train_digit_classifier.py "
            f"--dataset=mnist --data_dir=DIR --output={path}` (MNIST, for Stacked MNIST; needs "
            "`tfds build mnist --data_dir=DIR` once) or `--dataset=digits` (the bundled 16x16 digits)")
    return keras.models.load_model(path)


def check_image_size(classifier, example_shape):
    """ValueError unless images of `example_shape` [H, W, ...] have the height and width the classifier takes."""
    expected = tuple(classifier.input_shape[1:3])
    if tuple(example_shape[:2]) != expected:
        raise ValueError(f"the classifier takes {expected} images but the data has {tuple(example_shape[:2])}; "
                         "pass a classifier trained at that size (asm-eval --classifier; "
                         "tools/experiments/train_digit_classifier.py)")


def classify_digits(classifier, images, *, batch_size=DEFAULT_BATCH_SIZE):
    """Predicted digits (int64 [N]) of single-channel images [N, H, W, 1] in [0, 1] or uint8, and their
    softmax probabilities [N]."""
    expected = tuple(classifier.input_shape[1:])
    if tuple(np.shape(images)[1:]) != expected:
        raise ValueError(f"the classifier takes images of shape {expected}, got {np.shape(images)[1:]}; "
                         "use the classifier trained at this resolution")
    pixels = fid.to_uint8(images).astype(np.float32) / 255.0
    probabilities = tf.nn.softmax(classifier.predict(pixels, batch_size=batch_size, verbose=0)).numpy()
    return np.argmax(probabilities, axis=1).astype(np.int64), probabilities.max(axis=1)


def channels_as_images(images):
    """[N, H, W, C] single- or three-channel images -> [N * C, H, W, 1], each channel an image of its own."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, 1] (digits) or [N, H, W, 3] (Stacked MNIST), "
                         f"got shape {images.shape}")
    return np.moveaxis(images, -1, 1).reshape(-1, *images.shape[1:3], 1)


def modes_of_channel_predictions(digits, confidences, channels):
    """Mode ids, number of modes and confidences from the digits and probabilities of every channel [N * C]:
    the digit for 1 channel; 100 R + 10 G + B of 1000 for 3 channels, whose confidence is the least confident
    channel's."""
    place_values = NUM_DIGITS ** np.arange(channels - 1, -1, -1)
    return (np.asarray(digits).reshape(-1, channels) @ place_values, NUM_DIGITS ** channels,
            np.asarray(confidences).reshape(-1, channels).min(axis=1))


def predicted_modes(classifier, images, *, batch_size=DEFAULT_BATCH_SIZE):
    """Mode ids, number of modes and confidences of images [N, H, W, 1 or 3] (see
    `modes_of_channel_predictions`)."""
    digits, confidences = classify_digits(classifier, channels_as_images(images), batch_size=batch_size)
    return modes_of_channel_predictions(digits, confidences, np.shape(images)[-1])


def coverage_of_images(classifier, images, *, batch_size=DEFAULT_BATCH_SIZE):
    """ModeCoverage of a set of generated images."""
    mode_ids, num_modes, confidences = predicted_modes(classifier, images, batch_size=batch_size)
    return mode_coverage(mode_ids, num_modes=num_modes, confidences=confidences)


def evaluate_modes(classifier, *, samples, denoised=None, batch_size=DEFAULT_BATCH_SIZE):
    """{"samples": ModeCoverage, "denoised": ModeCoverage}: the final and the EDS images, counted separately."""
    results = {"samples": coverage_of_images(classifier, samples, batch_size=batch_size)}
    if denoised is not None:
        results["denoised"] = coverage_of_images(classifier, denoised, batch_size=batch_size)
    return results


# --------------------------------------------------------------------------------------------------------------
# Training


def train_classifier(classifier, *, images, labels, epochs, batch_size, optimizer):
    """Fits `classifier` (logits) with cross-entropy; returns the Keras history. Seed Keras before building it."""
    classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    return classifier.fit(images, labels, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=2)


def accuracy(classifier, *, images, labels, batch_size=DEFAULT_BATCH_SIZE):
    """Fraction of `images` whose predicted digit equals `labels`."""
    return float(np.mean(classify_digits(classifier, images, batch_size=batch_size)[0] == np.asarray(labels)))


def train_digits_classifier(*, epochs=60, seed=0):
    """The bundled 16x16 digits classifier: a narrower CNN (fits in < 500 KB), Adam 1e-3, batch 64.

    Returns (classifier, accuracy on the digits test split).
    """
    keras.utils.set_random_seed(seed)
    train_images, train_labels = digits.load_digits("train")
    test_images, test_labels = digits.load_digits("test")
    classifier = build_classifier(image_size=digits.IMAGE_SIZE, filters=(16, 32), hidden_units=64)
    train_classifier(classifier, images=train_images, labels=train_labels, epochs=epochs, batch_size=64,
                     optimizer=keras.optimizers.Adam(1e-3))
    return classifier, accuracy(classifier, images=test_images, labels=test_labels)


def train_mnist_classifier(*, data_dir=None, epochs=14, batch_size=64, seed=0):
    """The reference's MNIST recipe: Adadelta (lr 1.0, rho 0.9, eps 1e-6) decayed by 0.7 each epoch.

    Reads TFDS mnist from a prepared `data_dir`. Returns (classifier, accuracy on the MNIST test split).
    """
    keras.utils.set_random_seed(seed)
    train_images, train_labels = stacked_mnist.load_mnist(split="train", data_dir=data_dir)
    test_images, test_labels = stacked_mnist.load_mnist(split="test", data_dir=data_dir)
    steps_per_epoch = -(-len(train_images) // batch_size)
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=steps_per_epoch, decay_rate=0.7,
                                                           staircase=True)
    classifier = build_classifier(image_size=28)
    train_classifier(classifier, images=train_images, labels=train_labels, epochs=epochs, batch_size=batch_size,
                     optimizer=keras.optimizers.Adadelta(schedule, rho=0.9, epsilon=1e-6))
    return classifier, accuracy(classifier, images=test_images, labels=test_labels)


def save_classifier(classifier, path):
    """Saves the architecture and weights only (no optimizer state), as a `.keras` file."""
    weights_only = keras.Sequential.from_config(classifier.get_config())
    weights_only.set_weights(classifier.get_weights())
    weights_only.save(path)
