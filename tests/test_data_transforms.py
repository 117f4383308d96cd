"""Transforms: exact inverses with clamping, dequantisation, random flips; image geometry."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from asm_tf.data import images as image_ops
from asm_tf.data.transforms import Transform, random_flip


def _seeds(count, seed=0):
    return tf.stack([tf.fill([count], tf.constant(seed, tf.int64)), tf.range(count, dtype=tf.int64)], axis=1)


@pytest.mark.parametrize("transform", [Transform(), Transform(rescale=True), Transform(logit=True)],
                         ids=["identity", "rescale", "logit"])
def test_to_data_inverts_to_model(transform):
    x = tf.constant(np.random.default_rng(0).uniform(size=(4, 8, 8, 3)), tf.float32)
    x = tf.concat([x, tf.zeros([1, 8, 8, 3]), tf.ones([1, 8, 8, 3])], axis=0)
    np.testing.assert_allclose(transform.to_data(transform.to_model(x)), x, atol=2e-6)


def test_model_space_ranges():
    x = tf.constant([0.0, 0.5, 1.0])
    np.testing.assert_allclose(Transform(rescale=True).to_model(x), [-1.0, 0.0, 1.0])
    logits = Transform(logit=True).to_model(x).numpy()
    np.testing.assert_allclose(logits, [np.log(1e-6 / (1 - 1e-6)), 0.0, -np.log(1e-6 / (1 - 1e-6))], rtol=1e-3)


@pytest.mark.parametrize("transform", [Transform(), Transform(rescale=True), Transform(logit=True)],
                         ids=["identity", "rescale", "logit"])
def test_inverse_clamps_to_unit_interval(transform):
    wild = tf.constant([-50.0, -1.5, 0.3, 1.7, 50.0])
    out = transform.to_data(wild).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.min() == 0.0 and out.max() == 1.0


def test_points_are_not_clamped():
    wild = tf.constant([-3.0, 3.0])
    np.testing.assert_array_equal(Transform(clamp=False).to_data(wild), wild)


def test_uniform_dequantisation_stays_in_its_bin():
    levels = np.random.default_rng(1).integers(0, 256, size=(64, 4, 4, 1))
    x = tf.constant(levels / 255.0, tf.float32)
    out = Transform(dequantization="uniform").dequantize(x, _seeds(64)).numpy()
    base = x.numpy() * 255.0 / 256.0
    assert np.all(out >= base - 1e-7) and np.all(out < base + 1.0 / 256.0 + 1e-7)
    np.testing.assert_allclose(np.mean((out - base) * 256.0), 0.5, atol=0.02)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_gaussian_dequantisation_std_and_determinism():
    x = tf.fill([256, 8, 8, 1], 0.5)
    transform = Transform(dequantization="gaussian", gaussian_std=0.01)
    out = transform.dequantize(x, _seeds(256)).numpy()
    np.testing.assert_allclose(np.std(out - 0.5), 0.01, rtol=0.05)
    np.testing.assert_array_equal(out, transform.dequantize(x, _seeds(256)).numpy())
    assert not np.array_equal(out, transform.dequantize(x, _seeds(256, seed=1)).numpy())


def test_training_input_dequantises_then_maps():
    x = tf.fill([2, 4, 4, 1], 0.25)
    transform = Transform(rescale=True, dequantization="uniform")
    expected = 2.0 * transform.dequantize(x, _seeds(2)) - 1.0
    np.testing.assert_allclose(transform.training_input(x, _seeds(2)), expected, atol=1e-6)
    np.testing.assert_array_equal(Transform(rescale=True).training_input(x, _seeds(2)), 2.0 * x - 1.0)


def test_bad_transform_settings_fail_clearly():
    with pytest.raises(ValueError, match="at most one"):
        Transform(rescale=True, logit=True)
    with pytest.raises(ValueError, match="dequantization"):
        Transform(dequantization="laplace")


def test_random_flip_mirrors_about_half_and_is_seeded():
    images = tf.constant(np.random.default_rng(2).integers(0, 256, (64, 4, 6, 3)), tf.uint8)
    out = random_flip(images, _seeds(64)).numpy()
    same = np.all(out == images.numpy(), axis=(1, 2, 3))
    mirrored = np.all(out == images.numpy()[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored)
    assert 16 < mirrored.sum() < 48
    np.testing.assert_array_equal(out, random_flip(images, _seeds(64)).numpy())


def test_center_crop_takes_the_middle():
    image = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3) % 251
    crop = image_ops.center_crop(tf.constant(image.astype(np.uint8)), 140).numpy()
    np.testing.assert_array_equal(crop, image[39:179, 19:159].astype(np.uint8))


def test_celeba_geometry_matches_pil():
    """CenterCrop(140) then Resize(64), as torchvision does through PIL (bilinear, antialiased)."""
    image = np.random.default_rng(3).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    ours = image_ops.crop_then_resize(tf.constant(image), 140, 64).numpy().astype(int)
    reference = np.asarray(Image.fromarray(image[39:179, 19:159]).resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(ours - reference).max() <= 1


def test_resize_short_side_then_center_crop_matches_pil():
    image = np.random.default_rng(4).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    ours = image_ops.resize_and_center_crop(tf.constant(image), 16).numpy().astype(int)
    resized = np.asarray(Image.fromarray(image).resize((25, 16), Image.BILINEAR)).astype(int)
    assert image_ops.resize_short_side(tf.constant(image), 16).shape == (16, 25, 3)
    assert np.abs(ours - resized[:, 4:20]).max() <= 1


def test_resize_to_the_same_size_is_the_identity():
    image = tf.constant(np.random.default_rng(5).integers(0, 256, (32, 32, 3)), tf.uint8)
    np.testing.assert_array_equal(image_ops.resize_and_center_crop(image, 32), image)
