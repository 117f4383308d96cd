"""Sample quality of digit images in the feature space of a digit classifier: FDD, KID, precision/recall.

FDD, the Frechet digit distance, is FID's Frechet distance (`fid.frechet_distance_of_statistics`) computed on
the features of the classifier's penultimate layer (64 for the bundled 16x16 digits classifier; Stacked MNIST
concatenates the features of its three channels) instead of Inception's pool3. It runs in a second on a CPU
and, unlike class balance and confidence, it sees blur and noise. KID and precision/recall (k = 3) are
measured in the same space, and the classes (modes covered, KL to uniform, confident share) in the same pass.
All features count: a unit that no real digit activates (9 of the bundled classifier's 64 ReLU units) but a
generated one does adds to the distance. Each Frechet distance leaves out only the units that neither of its
two sets activates, which changes nothing (they are zero in both) but keeps the covariances invertible.

The reference is the data's held-out split ("test"). A Frechet value means little alone: it is biased upward
by few images, and what is "good" depends on the feature space. Every evaluation therefore carries yardsticks
measured with the same number of images: the floor (real training images against the reference) and the
blur ladder (the same training images blurred by a Gaussian of BLUR_LADDER pixels), and
`blur_equivalent_px`: the blur of real digits whose FDD equals the samples' (0 at or below the floor). With more
samples than training images the yardsticks use all of these, and the samples are compared with them at that
count (`fdd_at_yardstick_count`: the mean FDD of EQUAL_COUNT_DRAWS random subsets of `yardstick_count` samples),
never at a larger one, which would flatter them.

A second view of blur that no trained network enters: `gradient_energy`, the mean squared difference of
neighbouring pixels, as a ratio to the reference images' (`sharpness`: below 1 blurrier than real digits, above
1 noisier), and `sharpness_blur_px`, the blur of real digits with the same gradient energy.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
import scipy.ndimage

from asm_tf.evaluation import feature_metrics, fid, modes

BLUR_LADDER = (0.5, 0.75, 1.0, 1.5, 2.0)
FLOOR_SEED = 0
EQUAL_COUNT_DRAWS = 5


def blur(images, sigma_px):
    """Images [N, H, W, C] blurred by a Gaussian of `sigma_px` pixels along H and W (edges mirrored)."""
    images = np.asarray(images, np.float32)
    return scipy.ndimage.gaussian_filter(images, sigma=(0, sigma_px, sigma_px, 0), mode="reflect")


def blur_equivalent(fdd, ladder):
    """The blur (pixels) whose FDD equals `fdd`, linearly between the points of `ladder` [(pixels, fdd), ...]
    (pixels increasing from 0, the floor); 0 at or below the floor, None beyond the last point."""
    if fdd <= ladder[0][1]:
        return 0.0
    for (p0, v0), (p1, v1) in zip(ladder, ladder[1:]):
        if v0 < fdd <= v1:
            return float(p0 + (p1 - p0) * (fdd - v0) / (v1 - v0))
    return None


def gradient_energy(images):
    """Mean squared difference between horizontally and vertically neighbouring pixels, of images in [0, 1]
    or uint8 (quantised as PNGs store them)."""
    pixels = fid.to_uint8(images).astype(np.float64) / 255.0
    return float(np.mean(np.square(np.diff(pixels, axis=1))) + np.mean(np.square(np.diff(pixels, axis=2))))


@dataclasses.dataclass(frozen=True)
class ClassifierFeatures:
    """Penultimate features [N, D * channels] and per-image mode predictions of a set of images."""

    features: np.ndarray
    mode_ids: np.ndarray
    num_modes: int
    confidences: np.ndarray


def feature_model(classifier):
    """A Keras model images -> (penultimate features, logits) of a digit classifier whose last layer is the
    Dense layer of the logits (the input of that layer is the feature vector)."""
    last = classifier.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(f"the classifier's last layer must be the Dense layer of its logits, got {last.name}")
    return keras.Model(classifier.inputs, [last.input, last.output])


def classifier_features(model, images, *, batch_size=modes.DEFAULT_BATCH_SIZE):
    """ClassifierFeatures of images [N, H, W, 1 or 3] in [0, 1] or uint8 (quantised as PNGs store them)."""
    channels = np.shape(images)[-1]
    per_channel = modes.channels_as_images(fid.to_uint8(images)).astype(np.float32) / 255.0
    expected = tuple(model.input_shape[1:])
    if per_channel.shape[1:] != expected:
        raise ValueError(f"the classifier takes images of shape {expected}, got {np.shape(images)[1:]}")
    features, logits = model.predict(per_channel, batch_size=batch_size, verbose=0)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    mode_ids, num_modes, confidences = modes.modes_of_channel_predictions(
        probabilities.argmax(axis=1), probabilities.max(axis=1), channels)
    return ClassifierFeatures(features=features.reshape(len(mode_ids), -1), mode_ids=mode_ids,
                              num_modes=num_modes, confidences=confidences)


def frechet_distance_of_features(features1, features2):
    """The Frechet distance of FID between the Gaussians fitted to two feature matrices [N, D]; the features
    that are zero in both (dead ReLU units) are left out, which leaves the distance unchanged."""
    used = np.any(features1 != 0, axis=0) | np.any(features2 != 0, axis=0)
    return fid.frechet_distance_of_statistics(fid.statistics_of_features(features1[:, used]),
                                              fid.statistics_of_features(features2[:, used]))


def fdd_at_count(generated, reference, count, *, draws=EQUAL_COUNT_DRAWS, seed=0):
    """The FDD of `generated` features at `count` of them: itself when there are `count`, else the mean over
    `draws` random subsets of `count` rows (drawn without replacement, fixed by `seed`)."""
    if count >= len(generated):
        return frechet_distance_of_features(generated, reference)
    rng = np.random.default_rng(seed)
    return float(np.mean([frechet_distance_of_features(generated[rng.choice(len(generated), count, replace=False)],
                                                       reference) for _ in range(draws)]))


def bootstrap_fdd_standard_error(generated, reference, *, rounds=100, seed=0):
    """The standard deviation of the FDD of `generated` against fixed `reference` features over `rounds`
    resamplings of the generated rows with replacement: the FDD's standard error from the samples alone."""
    rng = np.random.default_rng(seed)
    values = [frechet_distance_of_features(generated[rng.integers(0, len(generated), len(generated))], reference)
              for _ in range(rounds)]
    return float(np.std(values, ddof=1))


def compare_features(generated, reference):
    """FDD, KID (and its standard error), precision and recall of `generated` against `reference` features.

    Precision and recall compare sets of equal size (their radii depend on it): the first
    min(len(generated), len(reference)) points of each.
    """
    count = min(len(generated), len(reference))
    kid = feature_metrics.kernel_inception_distance(generated, reference)
    pr = feature_metrics.precision_recall(reference[:count], generated[:count])
    return {"fdd": frechet_distance_of_features(generated, reference), "kid": kid.value,
            "kid_se": kid.standard_error, "precision": pr.precision, "recall": pr.recall}


@dataclasses.dataclass
class DigitQuality:
    """Evaluates generated digit images against a reference split, with the floor and blur yardsticks.

    `reference_images` (the held-out split) define the target; `floor_images` (another real split, e.g.
    train) give the yardsticks. Yardsticks are computed once per sample count and kept.
    """

    classifier: keras.Model
    reference_images: np.ndarray
    floor_images: np.ndarray
    batch_size: int = modes.DEFAULT_BATCH_SIZE
    log: Callable[[str], None] = print

    def __post_init__(self):
        self._model = feature_model(self.classifier)
        self._reference = self.features(self.reference_images).features
        self._reference_energy = gradient_energy(self.reference_images)
        self._yardsticks = {}

    def features(self, images):
        """ClassifierFeatures of `images`."""
        return classifier_features(self._model, images, batch_size=self.batch_size)

    def yardsticks(self, num_images):
        """{"floor": numbers, "blur_<px>": numbers, ...} for min(num_images, len(floor_images)) real images,
        a fixed random subset of the floor split."""
        count = min(num_images, len(self.floor_images))
        if count not in self._yardsticks:
            self.log(f"yardsticks: {count} real training digits, sharp and blurred by {BLUR_LADDER} px")
            chosen = np.sort(np.random.default_rng(FLOOR_SEED).permutation(len(self.floor_images))[:count])
            real = self.floor_images[chosen]
            entries = {"floor": real, **{f"blur_{px:g}": blur(real, px) for px in BLUR_LADDER}}
            self._yardsticks[count] = {
                name: {**compare_features(self.features(images).features, self._reference), "num_images": count,
                       "sharpness": gradient_energy(images) / self._reference_energy}
                for name, images in entries.items()}
        return self._yardsticks[count]

    def fdd_standard_error(self, images, *, rounds=100, seed=0):
        """The bootstrap standard error of the FDD of `images` (`bootstrap_fdd_standard_error`)."""
        return bootstrap_fdd_standard_error(self.features(images).features, self._reference, rounds=rounds,
                                            seed=seed)

    def evaluate(self, images):
        """A JSON-ready dict: fdd, kid, kid_se, precision, recall, the mode coverage numbers, fdd_floor,
        blur_equivalent_px (None: blurrier than the ladder's last point), sharpness and sharpness_blur_px, the
        yardsticks, and the count they were measured at (`yardstick_count`, with the samples' FDD at that count,
        `fdd_at_count`, from which blur_equivalent_px is read)."""
        generated = self.features(images)
        if not np.all(np.isfinite(generated.features)):
            raise ValueError("the classifier's features of these images are not finite")
        count = min(len(generated.features), len(self.floor_images))
        yardsticks = self.yardsticks(count)
        numbers = compare_features(generated.features, self._reference)
        equal_count_fdd = (numbers["fdd"] if count == len(generated.features)
                           else fdd_at_count(generated.features, self._reference, count))
        coverage = modes.mode_coverage(generated.mode_ids, num_modes=generated.num_modes,
                                       confidences=generated.confidences)
        steps = [("floor", 0.0)] + [(f"blur_{px:g}", px) for px in BLUR_LADDER]
        sharpness = gradient_energy(images) / self._reference_energy
        return {**numbers, **coverage.summary(), "fdd_floor": yardsticks["floor"]["fdd"],
                "yardstick_count": count, "fdd_at_yardstick_count": equal_count_fdd,
                "blur_equivalent_px": blur_equivalent(equal_count_fdd,
                                                      [(px, yardsticks[name]["fdd"]) for name, px in steps]),
                "sharpness": sharpness,
                "sharpness_blur_px": blur_equivalent(-sharpness,
                                                     [(px, -yardsticks[name]["sharpness"]) for name, px in steps]),
                "num_reference": len(self._reference), "yardsticks": yardsticks}


def for_data(source, classifier, log=print):
    """The DigitQuality of a DataSource against its held-out split ("test"), with its "train" split as the
    floor; ValueError when the data has no labelled splits or the classifier another image size."""
    if source.labelled_arrays is None:
        raise ValueError(f"FDD needs the held-out images of the data; {source.name} has no labelled test split "
                         "(digits and Stacked MNIST have one)")
    modes.check_image_size(classifier, source.example_shape)
    return DigitQuality(classifier, source.labelled_arrays("test")[0], source.labelled_arrays("train")[0], log=log)
