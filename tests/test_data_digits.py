"""The bundled digits: sklearn's 8x8 images upscaled to 16x16, labels kept, a fixed train/test split."""

import gin
import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from asm_tf.data import digits


def test_load_digits_shapes_ranges_and_labels():
    images, labels = digits.load_digits()
    assert images.shape == (1797, 16, 16, 1) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(labels, sklearn.datasets.load_digits().target)


def test_upscaling_is_bilinear_of_the_eight_by_eight_images():
    small = sklearn.datasets.load_digits().images[5].astype(np.float32) / 16.0
    reference = np.asarray(Image.fromarray(small, mode="F").resize((16, 16), Image.BILINEAR))
    images, _ = digits.load_digits()
    np.testing.assert_allclose(images[5, ..., 0], reference, atol=1e-5)
    np.testing.assert_allclose(images[5, ::2, ::2, 0].mean(), small.mean(), atol=0.05)


def test_train_and_test_partition_every_class():
    train_images, train_labels = digits.load_digits("train")
    test_images, test_labels = digits.load_digits("test")
    all_images, _ = digits.load_digits()
    assert len(train_labels) + len(test_labels) == 1797
    assert len(test_labels) == 359 and np.all(np.bincount(test_labels) >= 35)
    together = np.concatenate([train_images, test_images]).reshape(1797, -1)
    assert len(np.unique(together, axis=0)) == len(np.unique(all_images.reshape(1797, -1), axis=0))
    np.testing.assert_array_equal(digits.load_digits("test")[1], test_labels)  # a fixed split
    with pytest.raises(ValueError, match="split"):
        digits.load_digits("validation")


def test_returned_arrays_are_copies():
    images, labels = digits.load_digits()
    images[:] = 0.0
    labels[:] = 0
    assert digits.load_digits()[0].max() == 1.0 and digits.load_digits()[1].max() == 9


def test_digits_source_serves_training_batches_and_keeps_labels():
    source = digits.digits()
    assert (source.name, source.kind, source.example_shape, source.num_examples) == ("digits", "image",
                                                                                      (16, 16, 1), 1438)
    batch = next(iter(source.make_dataset(32, seed=0))).numpy()
    assert batch.shape == (32, 16, 16, 1) and batch.min() >= 0.0 and batch.max() <= 1.0
    train_rows = {row.tobytes() for row in digits.load_digits("train")[0]}
    assert all(image.tobytes() in train_rows for image in batch)
    images, labels = source.labelled_arrays("test")
    assert images.shape == (359, 16, 16, 1) and labels.shape == (359,)


def test_gin_configures_the_factory_and_its_transform():
    gin.parse_config("digits.split = 'test'\nTransform.rescale = True\nTransform.dequantization = 'uniform'")
    try:
        source = digits.digits()
    finally:
        gin.clear_config()
    assert source.num_examples == 359 and source.transform.rescale
    batch = next(iter(source.make_dataset(64, seed=0))).numpy()
    assert batch.min() >= -1.0 and batch.max() <= 1.0 and batch.min() < -0.99
    plain = {(2.0 * image - 1.0).tobytes() for image in digits.load_digits("test")[0]}
    assert not any(image.tobytes() in plain for image in batch)  # dequantised, so none is an exact image
