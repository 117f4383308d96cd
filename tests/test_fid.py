"""Tests of the Frechet distance, feature statistics, extractors and the Inception Score."""

import gin
import keras
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import tensorflow as tf

from asm_tf import summaries
from asm_tf.evaluation import fid
from asm_tf.evaluation import inception_score as inception_score_lib

FAKE_FEATURES = 8
FAKE_CLASSES = 5


def _random_covariance(rng, dims):
    factor = rng.normal(size=(dims, 2 * dims))
    return factor @ factor.T / (2 * dims)


def _trace_sqrt_via_symmetric_root(sigma1, sigma2):
    """tr sqrt(sigma1 sigma2) = tr sqrt(s1^1/2 sigma2 s1^1/2), computed with symmetric eigendecompositions only."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return np.sum(np.sqrt(np.clip(inner, 0, None)))


# ---------------------------------------------------------------------------------------------------------------
# Frechet distance


def test_diagonal_covariances_match_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_commuting_covariances_match_closed_form():
    rng = np.random.default_rng(0)
    rotation = scipy.stats.special_ortho_group.rvs(6, random_state=1)
    var1, var2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    sigma1, sigma2 = rotation @ np.diag(var1) @ rotation.T, rotation @ np.diag(var2) @ rotation.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_random_data_match_direct_scipy_and_eigen_computations():
    rng = np.random.default_rng(2)
    features1 = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    features2 = rng.normal(loc=0.5, size=(300, 16)) @ rng.normal(size=(16, 16))
    mu1, sigma1 = features1.mean(0), np.cov(features1, rowvar=False)
    mu2, sigma2 = features2.mean(0), np.cov(features2, rowvar=False)
    direct = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
              - 2 * np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2).real))
    by_eigen = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                - 2 * _trace_sqrt_via_symmetric_root(sigma1, sigma2))
    distance = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert distance == pytest.approx(direct, rel=1e-10)
    assert distance == pytest.approx(by_eigen, rel=1e-8)
    statistics1, statistics2 = fid.statistics_of_features(features1), fid.statistics_of_features(features2)
    np.testing.assert_allclose(statistics1.sigma, sigma1, rtol=1e-10, atol=1e-12)
    assert fid.frechet_distance_of_statistics(statistics1, statistics2) == pytest.approx(distance, rel=1e-9)


def test_distance_of_a_set_to_itself_is_zero():
    rng = np.random.default_rng(3)
    statistics = fid.statistics_of_features(rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32)))
    assert abs(fid.frechet_distance_of_statistics(statistics, statistics)) < 1e-6


def test_singular_product_falls_back_to_eps_on_the_diagonals():
    # sigma1 @ sigma2 is nilpotent and has no square root: SciPy returns inf; with eps it is
    # (eps I + N)(1 + eps), whose square root has trace 2 sqrt(eps (1 + eps)).
    sigma1, sigma2 = np.array([[0.0, 1.0], [0.0, 0.0]]), np.eye(2)
    eps = fid.SINGULAR_PRODUCT_EPS
    with pytest.warns(UserWarning, match="singular"):
        distance = fid.frechet_distance(np.zeros(2), sigma1, np.zeros(2), sigma2)
    assert distance == pytest.approx(2.0 - 4.0 * np.sqrt(eps * (1 + eps)), abs=1e-9)


def test_large_imaginary_part_is_an_error():
    with pytest.raises(ValueError, match="imaginary"):
        fid.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="dimensions"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="covariance"):
        fid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------------------------------------------
# Statistics, files, quantisation


def test_few_images_warn_that_fid_is_biased():
    with pytest.warns(UserWarning, match="biased"):
        fid.statistics_of_features(np.random.default_rng(0).normal(size=(10, 20)))


def test_statistics_round_trip_and_foreign_files(tmp_path):
    statistics = fid.statistics_of_features(np.random.default_rng(4).normal(size=(50, 3)))
    statistics.save(str(tmp_path / "stats.npz"))
    loaded = fid.FeatureStatistics.load(str(tmp_path / "stats.npz"))
    np.testing.assert_array_equal(loaded.mu, statistics.mu)
    np.testing.assert_array_equal(loaded.sigma, statistics.sigma)
    assert loaded.num_images == 50
    np.savez(tmp_path / "ttur.npz", mu=statistics.mu, sigma=statistics.sigma)  # the usual FID stats files
    assert fid.FeatureStatistics.load(str(tmp_path / "ttur.npz")).num_images is None
    np.savez(tmp_path / "other.npz", mean=statistics.mu)
    with pytest.raises(ValueError, match="lacks"):
        fid.FeatureStatistics.load(str(tmp_path / "other.npz"))
    with pytest.raises(FileNotFoundError, match="asm-eval --mode=stats"):
        fid.FeatureStatistics.load(str(tmp_path / "missing.npz"))


def test_to_uint8_quantises_like_our_pngs():
    values = np.array([-0.5, 0.0, 0.6 / 255, 1.49 / 255, 0.5, 254.6 / 255, 1.0, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(fid.to_uint8(values), [0, 0, 1, 1, 128, 255, 255, 255])
    grid = np.linspace(-0.1, 1.1, 2401, dtype=np.float32)  # includes the exact halves k + 0.5 of 255 x
    np.testing.assert_array_equal(fid.to_uint8(grid), summaries.to_uint8(grid))
    with pytest.warns(UserWarning, match="non-finite"):
        np.testing.assert_array_equal(fid.to_uint8(np.array([np.nan, np.inf, 0.2])), [0, 0, 51])
    already = np.array([3, 200], dtype=np.uint8)
    assert fid.to_uint8(already) is already


# ---------------------------------------------------------------------------------------------------------------
# Extractors


class _FakeInception(tf.Module):
    """A stand-in for the FID Inception: uint8 images -> fixed random features of a 4x4 thumbnail, and logits."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(5)
        self.projection = tf.Variable(rng.normal(size=(48, FAKE_FEATURES)).astype(np.float32))
        self.head = tf.Variable(rng.normal(size=(FAKE_FEATURES, FAKE_CLASSES)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def features(self, images):
        thumbnails = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (4, 4), method="area")
        pool = tf.tanh(tf.reshape(thumbnails, [-1, 48]) @ self.projection)
        return {"pool": pool, "logits": 3.0 * pool @ self.head}


@pytest.fixture(scope="module")
def fake_inception_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fake_inception"))
    module = _FakeInception()
    tf.saved_model.save(module, path, signatures={"serving_default": module.features})
    return path


def _images(seed, count, brightness=0.5, size=12):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(brightness, 0.25, size=(count, size, size, 3)), 0, 1).astype(np.float32)


def test_whole_pipeline_with_a_saved_model_extractor(fake_inception_dir, tmp_path):
    with gin.unlock_config():
        gin.bind_parameter("load_feature_extractor.path", fake_inception_dir)
    try:
        extractor = fid.load_feature_extractor()
    finally:
        gin.clear_config()
    assert extractor.has_logits
    real = _images(0, 120)
    real_batches = (real[i:i + 32] for i in range(0, 200, 32))  # an iterable longer than needed
    reference = fid.image_statistics(real_batches, extractor=extractor, num_images=120)
    assert reference.num_images == 120 and reference.mu.shape == (FAKE_FEATURES,)
    reference.save(str(tmp_path / "reference.npz"))

    # The pipeline equals the features computed directly from the module on the quantised images.
    module = tf.saved_model.load(fake_inception_dir)
    direct = module.features(tf.constant(fid.to_uint8(real)))["pool"].numpy()
    expected = fid.statistics_of_features(direct)
    np.testing.assert_allclose(reference.mu, expected.mu, atol=1e-6)
    np.testing.assert_allclose(reference.sigma, expected.sigma, atol=1e-6)

    assert abs(fid.fid(real, str(tmp_path / "reference.npz"), extractor=extractor, batch_size=50)) < 1e-6
    close = fid.fid(_images(1, 120), reference, extractor=extractor)
    far = fid.fid(_images(1, 120, brightness=0.8), reference, extractor=extractor)
    assert 0 < close < far


def test_grayscale_images_are_tiled_to_rgb(fake_inception_dir):
    extractor = fid.load_feature_extractor(fake_inception_dir)
    gray = _images(2, 4)[..., :1]
    np.testing.assert_array_equal(extractor(gray).pool, extractor(np.repeat(gray, 3, axis=-1)).pool)


def test_image_features_errors(fake_inception_dir):
    extractor = fid.load_feature_extractor(fake_inception_dir)
    with pytest.raises(ValueError, match="supplied only 10"):
        fid.image_statistics(iter([_images(3, 10)]), extractor=extractor, num_images=20)
    without_head = fid.FeatureExtractor(name="no head", features_fn=extractor.features_fn, has_logits=False)
    with pytest.raises(ValueError, match="no classifier head"):
        fid.image_features(_images(3, 10), extractor=without_head, keep_logits=True)
    with pytest.raises(ValueError, match="N, H, W"):
        extractor(np.zeros((2, 8, 8, 2), np.float32))


@pytest.mark.parametrize("path", [None, "/nonexistent/classify_image_graph_def.pb"])
def test_missing_extractor_file_says_how_to_get_one(path):
    with pytest.raises((ValueError, FileNotFoundError), match="inception-2015-12-05.tgz"):
        fid.load_feature_extractor(path)


def test_unknown_extractor_format_is_an_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        fid.load_feature_extractor(str(tmp_path / "weights.bin"))


def _write_fake_fid_graph(path):
    """A GraphDef with the FID graph's interface: ExpandDims:0 in, pool_3:0 [N,1,1,D] out, softmax/logits/MatMul."""
    rng = np.random.default_rng(6)
    projection = rng.normal(size=(3, FAKE_FEATURES)).astype(np.float32)
    weights = rng.normal(size=(FAKE_FEATURES, FAKE_CLASSES)).astype(np.float32)
    with tf.Graph().as_default() as graph:
        decoded = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="Cast")
        expanded = tf.expand_dims(decoded, 0, name="ExpandDims")
        resized = tf.compat.v1.image.resize_bilinear(expanded, [6, 6])
        normalised = (resized - 128.0) / 128.0
        pool = tf.identity(tf.nn.avg_pool2d(tf.tanh(tf.einsum("nhwc,cd->nhwd", normalised, projection)),
                                            ksize=6, strides=6, padding="VALID"), name="pool_3")
        tf.matmul(tf.reshape(pool, [1, FAKE_FEATURES]), weights, name="softmax/logits/MatMul")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())
    return projection, weights


def test_graph_def_extractor_batches_and_computes_logits(tmp_path):
    projection, weights = _write_fake_fid_graph(tmp_path / "classify_image_graph_def.pb")
    extractor = fid.load_feature_extractor(str(tmp_path / "classify_image_graph_def.pb"))
    images = fid.to_uint8(_images(7, 5, size=10))
    outputs = extractor(images)
    resized = tf.compat.v1.image.resize_bilinear(tf.cast(images, tf.float32), [6, 6]).numpy()
    expected_pool = np.tanh(((resized - 128.0) / 128.0) @ projection).mean(axis=(1, 2))
    np.testing.assert_allclose(outputs.pool, expected_pool, atol=1e-5)
    np.testing.assert_allclose(outputs.logits, expected_pool @ weights, atol=1e-4)


def test_keras_inception_weights_file_gives_pool_and_logits(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None, include_top=True, classifier_activation=None)
    model.save_weights(str(tmp_path / "inception.weights.h5"))
    extractor = fid.load_feature_extractor(str(tmp_path / "inception.weights.h5"))
    images = fid.to_uint8(_images(8, 2, size=16))
    outputs = extractor(images)
    assert outputs.pool.shape == (2, 2048) and outputs.logits.shape == (2, 1000)
    resized = tf.image.resize(tf.cast(images, tf.float32), (299, 299), method="bilinear") / 127.5 - 1.0
    np.testing.assert_allclose(outputs.logits, model(resized).numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Inception Score


def test_inception_score_extremes():
    uniform = inception_score_lib.inception_score(np.zeros((50, 7)))
    assert uniform.mean == pytest.approx(1.0) and uniform.std == pytest.approx(0.0, abs=1e-12)
    confident = 50.0 * np.tile(np.eye(5), (20, 1))  # every split holds every class equally, each image sure
    score = inception_score_lib.inception_score(confident)
    assert score.mean == pytest.approx(5.0, rel=1e-6) and score.splits == 10 and score.num_images == 100


def test_inception_score_matches_direct_computation():
    logits = np.random.default_rng(9).normal(scale=3.0, size=(103, 6))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = []
    for k in range(10):
        part = probabilities[k * 103 // 10:(k + 1) * 103 // 10]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), axis=1))))
    result = inception_score_lib.inception_score(logits)
    assert result.mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert result.std == pytest.approx(np.std(scores), rel=1e-8)
    with pytest.raises(ValueError, match="at least 10 images"):
        inception_score_lib.inception_score(logits[:9])


def test_inception_score_of_images_uses_the_extractor_logits(fake_inception_dir):
    extractor = fid.load_feature_extractor(fake_inception_dir)
    images = _images(10, 40)
    score = inception_score_lib.inception_score_of_images(images, extractor=extractor, batch_size=16)
    expected = inception_score_lib.inception_score(extractor(images).logits)
    assert score.mean == pytest.approx(expected.mean, rel=1e-6) and score.mean > 1.0
