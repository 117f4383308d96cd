"""Frechet Inception Distance: feature extractors, feature statistics and the Frechet distance.

The default extractor is the FID Inception network (pool3, 2048 features), loaded from a local file whose path
is configured (`load_feature_extractor.path` in gin, or the `--inception_path` flag of the tools); nothing is
downloaded at run time. Three formats are accepted:

* the standard FID Inception graph `classify_image_graph_def.pb` (the TF Inception-v3 of 2015-12-05 used by
  TTUR, the reference, and ported by pytorch-fid): get it with
  `curl -LO http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz` and
  `tar xzf inception-2015-12-05.tgz classify_image_graph_def.pb`. Only this graph gives FIDs comparable
  with published numbers. It resizes images to 299x299 itself; its logits (1008 classes) serve the
  Inception Score.
* a Keras InceptionV3 weights file (`keras.applications.InceptionV3(weights=path)`), with or without the
  1000-class head (the head gives logits), e.g. `inception_v3_weights_tf_dim_ordering_tf_kernels.h5` from
  https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/. These are other Inception
  weights: their FIDs are only comparable with each other, never with published numbers.
* a SavedModel directory whose `serving_default` signature maps uint8 images [N, H, W, 3] to a dict with
  `pool` [N, D] and optionally `logits` [N, K] (or to a single tensor of features); it owns its resizing.

Images are quantised exactly as a PNG stores them (`to_uint8`) before they reach any extractor.
"""

import dataclasses
import os
import warnings
from typing import Callable, Optional

import gin
import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

from asm_tf import progress, storage, summaries

INCEPTION_SIZE = 299
DEFAULT_BATCH_SIZE = 100
SINGULAR_PRODUCT_EPS = 1e-6
IMAGINARY_TOLERANCE = 1e-3
GRAPH_INPUT = "ExpandDims:0"
GRAPH_POOL = "pool_3:0"
GRAPH_LOGITS_MATMUL = "softmax/logits/MatMul"
HOW_TO_GET_INCEPTION = (
    "Download the standard FID Inception graph once: "
    "`curl -LO http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz && "
    "tar xzf inception-2015-12-05.tgz classify_image_graph_def.pb`, then pass its path "
    "(--inception_path=... or gin `load_feature_extractor.path = '...'`). A Keras InceptionV3 weights file "
    "(.h5) or a SavedModel directory also works, but only the FID graph gives numbers comparable with papers."
)


# --------------------------------------------------------------------------------------------------------------
# Frechet distance


def _as_mean_and_covariance(mu, sigma, name):
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{name}: need a mean [D] and a covariance [D, D], got {mu.shape} and {sigma.shape}")
    return mu, sigma


def _sqrtm_of_product(sigma1, sigma2, eps):
    """sqrtm(sigma1 @ sigma2); if that is not finite, retry with `eps` added to both diagonals."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(root)):
        warnings.warn(f"Frechet distance: the covariance product is singular; adding {eps} to the diagonals")
        offset = eps * np.eye(len(sigma1))
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        largest = np.max(np.abs(np.diagonal(root).imag))
        if largest > IMAGINARY_TOLERANCE:
            raise ValueError(f"Frechet distance: the matrix square root has an imaginary part of {largest:.3g} on "
                             "its diagonal; are both covariances positive semi-definite and estimated from "
                             "finite features?")
        root = root.real
    return root


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps=SINGULAR_PRODUCT_EPS):
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)) in float64, between two Gaussians."""
    mu1, sigma1 = _as_mean_and_covariance(mu1, sigma1, "first Gaussian")
    mu2, sigma2 = _as_mean_and_covariance(mu2, sigma2, "second Gaussian")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two Gaussians have different dimensions: {mu1.size} and {mu2.size}")
    difference = mu1 - mu2
    root = _sqrtm_of_product(sigma1, sigma2, eps)
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


# --------------------------------------------------------------------------------------------------------------
# Feature statistics


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
    """Mean and covariance of features, and how many images they came from (None if a file did not say)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: Optional[int]

    def save(self, path):
        """Writes `.npz` with `mu`, `sigma` and `num_images` (-1 if unknown)."""
        num_images = -1 if self.num_images is None else self.num_images
        storage.write_npz(path, mu=self.mu, sigma=self.sigma, num_images=np.int64(num_images))

    @classmethod
    def load(cls, path):
        """Reads our `.npz` files and the usual FID statistics files (keys `mu` and `sigma`)."""
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no feature statistics at {path}; compute them with "
                                    "`asm-eval --mode=stats` (or FeatureStatistics.save)")
        data = storage.read_npz(path)
        missing = {"mu", "sigma"} - set(data)
        if missing:
            raise ValueError(f"{path} is not a feature statistics file: it lacks {sorted(missing)}")
        num_images = int(data.get("num_images", -1))
        return cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64),
                   num_images=None if num_images < 0 else num_images)


def frechet_distance_of_statistics(statistics1, statistics2):
    """The Frechet distance between two FeatureStatistics (the FID when the features are the FID Inception's)."""
    return frechet_distance(statistics1.mu, statistics1.sigma, statistics2.mu, statistics2.sigma)


class _MomentAccumulator:
    """Streaming mean and covariance in float64 (shifted by the first batch's mean for accuracy)."""

    def __init__(self):
        self.count = 0
        self.shift = None
        self.total = None
        self.outer = None

    def add(self, features):
        features = np.asarray(features, dtype=np.float64)
        if self.shift is None:
            self.shift = features.mean(axis=0)
            self.total = np.zeros_like(self.shift)
            self.outer = np.zeros((self.shift.size, self.shift.size))
        centred = features - self.shift
        self.count += len(features)
        self.total += centred.sum(axis=0)
        self.outer += centred.T @ centred

    def statistics(self):
        if self.count < 2:
            raise ValueError(f"feature statistics need at least 2 images, got {self.count}")
        dims = self.shift.size
        if self.count < dims:
            warnings.warn(f"FID from {self.count} images of {dims} features: the covariance is singular and the "
                          f"FID is strongly biased upward; use at least {dims} images (papers use 10k-50k)")
        mean_offset = self.total / self.count
        sigma = (self.outer - self.count * np.outer(mean_offset, mean_offset)) / (self.count - 1)
        return FeatureStatistics(mu=self.shift + mean_offset, sigma=sigma, num_images=self.count)


def statistics_of_features(features):
    """FeatureStatistics of a feature matrix [N, D] (unbiased covariance, like np.cov)."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    accumulator = _MomentAccumulator()
    accumulator.add(features)
    return accumulator.statistics()


# --------------------------------------------------------------------------------------------------------------
# Images and extractors


def to_uint8(images):
    """Images as our PNGs store them: float [0, 1] -> uint8 round(255 * clip(x, 0, 1)); uint8 unchanged.

    The quantisation is `asm_tf.summaries.to_uint8`'s, which writes the samples' PNGs and npz.

    Non-finite values (a diverged sampler) become 0 with a warning, so that they score badly instead of failing.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    finite = np.isfinite(images)
    if not np.all(finite):
        warnings.warn(f"{np.size(images) - np.count_nonzero(finite)} non-finite pixel values were set to 0")
        images = np.where(finite, images, 0.0)
    return summaries.to_uint8(images).numpy()


@dataclasses.dataclass(frozen=True)
class ExtractorOutput:
    """Pool features [N, D] and, when the extractor has a classifier head, logits [N, K] (else None)."""

    pool: np.ndarray
    logits: Optional[np.ndarray]


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A pluggable feature extractor.

    `features_fn` maps a uint8 tensor [N, H, W, 3] to a dict with "pool" [N, D] and, if `has_logits`,
    "logits" [N, K]. Calling the extractor takes float images in [0, 1] or uint8 images, with 1 or 3 channels.
    """

    name: str
    features_fn: Callable[[tf.Tensor], dict]
    has_logits: bool

    def __call__(self, images):
        images = to_uint8(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must be [N, H, W, 1 or 3], got shape {images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        outputs = self.features_fn(tf.constant(images))
        pool = np.asarray(outputs["pool"], dtype=np.float32).reshape(len(images), -1)
        logits = None
        if self.has_logits:
            logits = np.asarray(outputs["logits"], dtype=np.float32).reshape(len(images), -1)
        return ExtractorOutput(pool=pool, logits=logits)


def _extractor_from_saved_model(path):
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"the SavedModel at {path} has no serving_default signature mapping uint8 images "
                         "[N, H, W, 3] to {'pool': [N, D], 'logits': [N, K] (optional)}")
    signature = loaded.signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1].keys()
    output_names = set(signature.structured_outputs)
    if "pool" not in output_names and len(output_names) != 1:
        raise ValueError(f"the SavedModel at {path} returns {sorted(output_names)}; it must return 'pool' "
                         "(and optionally 'logits') or a single tensor")
    pool_name = "pool" if "pool" in output_names else next(iter(output_names))

    def features_fn(images):
        # Reached through `loaded`, which keeps the restored variables alive.
        outputs = loaded.signatures["serving_default"](**{input_name: images})
        return {"pool": outputs[pool_name], "logits": outputs.get("logits")}

    return FeatureExtractor(name=f"savedmodel:{path}", features_fn=features_fn, has_logits="logits" in output_names)


def _extractor_from_graph_def(path):
    """The TF1 FID Inception graph: float images in [0, 255] enter at ExpandDims:0; pool_3 gives the features.

    The logits are pool3 times the weights of softmax/logits/MatMul (1008 classes, no bias), as the usual
    Inception Score code computes them.
    """
    graph_def = tf.compat.v1.GraphDef()
    with tf.io.gfile.GFile(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    node_names = {node.name for node in graph_def.node}
    needed = {GRAPH_INPUT.split(":")[0], GRAPH_POOL.split(":")[0]}
    if not needed <= node_names:
        raise ValueError(f"{path} is not the FID Inception graph: it lacks the nodes {sorted(needed - node_names)}")
    has_logits = GRAPH_LOGITS_MATMUL in node_names

    def import_graph(images):
        tf.graph_util.import_graph_def(graph_def, input_map={GRAPH_INPUT: images}, name="inception")

    wrapped = tf.compat.v1.wrap_function(import_graph, [tf.TensorSpec([None, None, None, 3], tf.float32)])
    fetches = {"pool": wrapped.graph.get_tensor_by_name(f"inception/{GRAPH_POOL}")}
    if has_logits:
        fetches["weights"] = wrapped.graph.get_operation_by_name(f"inception/{GRAPH_LOGITS_MATMUL}").inputs[1]
    pruned = wrapped.prune(feeds=wrapped.inputs[0], fetches=fetches)

    def features_fn(images):
        outputs = pruned(tf.cast(images, tf.float32))
        pool = tf.reshape(outputs["pool"], [tf.shape(images)[0], -1])
        logits = tf.matmul(pool, outputs["weights"]) if has_logits else None
        return {"pool": pool, "logits": logits}

    return FeatureExtractor(name=f"graph:{path}", features_fn=features_fn, has_logits=has_logits)


def _keras_inception(path):
    """InceptionV3 with its 1000-class head when the file has one (logits), else pooled features only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.applications.InceptionV3(weights=path, include_top=True, classifier_activation=None)
        pooled = keras.Model(model.inputs, {"pool": model.get_layer("avg_pool").output, "logits": model.output})
        return pooled, True
    except ValueError:  # a weights file without the head ("notop")
        model = keras.applications.InceptionV3(weights=path, include_top=False, pooling="avg")
        return keras.Model(model.inputs, {"pool": model.output}), False


def _extractor_from_keras_weights(path):
    """Keras InceptionV3: bilinear resize to 299x299 (half-pixel centres), then x / 127.5 - 1."""
    model, has_logits = _keras_inception(path)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def features_fn(images):
        resized = tf.image.resize(tf.cast(images, tf.float32), (INCEPTION_SIZE, INCEPTION_SIZE), method="bilinear")
        return model(resized / 127.5 - 1.0, training=False)

    return FeatureExtractor(name=f"keras:{path}", features_fn=features_fn, has_logits=has_logits)


@gin.configurable
def load_feature_extractor(path=None):
    """The feature extractor stored at `path`: a SavedModel directory, a `.pb` graph, or a Keras `.h5` file."""
    if not path:
        raise ValueError(f"no Inception file is configured. {HOW_TO_GET_INCEPTION}")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no Inception file at {path}. {HOW_TO_GET_INCEPTION}")
    if tf.io.gfile.isdir(path):
        return _extractor_from_saved_model(path)
    if path.endswith(".pb"):
        return _extractor_from_graph_def(path)
    if path.endswith(".h5"):
        return _extractor_from_keras_weights(path)
    raise ValueError(f"cannot tell the format of {path}: expected a SavedModel directory, a .pb graph or a "
                     f"Keras .h5 weights file. {HOW_TO_GET_INCEPTION}")


# --------------------------------------------------------------------------------------------------------------
# From images to statistics


def _batches(images, batch_size):
    """Batches of an array [N, H, W, C], or the batches of an iterable of such arrays, unchanged."""
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
    else:
        for batch in images:
            yield np.asarray(batch)


@dataclasses.dataclass(frozen=True)
class ImageFeatures:
    """Statistics of the pool features of a set of images and, if asked for, their logits [N, K]."""

    statistics: FeatureStatistics
    logits: Optional[np.ndarray]


def image_features(images, *, extractor, batch_size=DEFAULT_BATCH_SIZE, num_images=None, keep_logits=False):
    """Runs `extractor` over `images` (an array, or an iterable of batches, in [0, 1] or uint8).

    Stops after `num_images` images if given (an iterable must supply that many). Pool features are reduced to
    their mean and covariance on the fly; logits are kept only with `keep_logits`.
    """
    if keep_logits and not extractor.has_logits:
        raise ValueError(f"the extractor {extractor.name} has no classifier head, so no logits (Inception Score);"
                         f" use the FID Inception graph or a Keras InceptionV3 file with its top")
    accumulator = _MomentAccumulator()
    logits = []
    total = num_images if num_images is not None else (len(images) if isinstance(images, np.ndarray) else None)
    with progress.bar(total, f"{extractor.name} features", "image") as bar:
        for batch in _batches(images, batch_size):
            if num_images is not None:
                batch = batch[:num_images - accumulator.count]
            if len(batch) == 0:
                break
            outputs = extractor(batch)
            accumulator.add(outputs.pool)
            bar.update(len(batch))
            if keep_logits:
                logits.append(outputs.logits)
    if num_images is not None and accumulator.count < num_images:
        raise ValueError(f"asked for {num_images} images, the input supplied only {accumulator.count}")
    return ImageFeatures(statistics=accumulator.statistics(),
                         logits=np.concatenate(logits) if keep_logits else None)


def image_statistics(images, *, extractor, batch_size=DEFAULT_BATCH_SIZE, num_images=None):
    """FeatureStatistics of the extractor's pool features over `images` (see `image_features`)."""
    return image_features(images, extractor=extractor, batch_size=batch_size, num_images=num_images).statistics


def fid(images, reference, *, extractor, batch_size=DEFAULT_BATCH_SIZE):
    """FID of `images` against `reference` statistics (FeatureStatistics or the path of a `.npz`)."""
    if isinstance(reference, (str, os.PathLike)):
        reference = FeatureStatistics.load(os.fspath(reference))
    statistics = image_statistics(images, extractor=extractor, batch_size=batch_size)
    return frechet_distance_of_statistics(statistics, reference)
