"""TFDS sources under tfds.testing.mock_data, and the streaming path on a tiny TFDS dataset prepared here.

Nothing reaches the network: mock_data replaces the reads, and the tiny dataset is generated in memory.
"""

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from asm_tf.data import image_folder, tfds_images
from asm_tf.data import images as image_ops

MOCK_EXAMPLES = 6


def _mock_images(name):
    """The mock examples as the pipeline sees them: decoded from their encoded bytes (JPEG is lossy)."""
    ds = tfds.load(name, split="train", decoders={"image": tfds.decode.SkipDecoding()})
    return [image_ops.decode(example["image"], 3).numpy() for example in ds]


def _batch_uint8(batch):
    return np.rint(batch.numpy() * 255.0).astype(np.uint8)


def _assert_each_is_one_of(batch, candidates, allow_mirror=False):
    for image in batch:
        matches = [np.array_equal(image, c) or (allow_mirror and np.array_equal(image, c[:, ::-1]))
                   for c in candidates]
        assert any(matches)


def test_cifar10_batches_are_the_images_in_unit_range_with_flips():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        expected = _mock_images("cifar10")
        source = tfds_images.cifar10()
        batch = next(iter(source.make_dataset(12, seed=0)))
        unflipped = next(iter(tfds_images.cifar10(random_flip=False).make_dataset(12, seed=0)))
    assert source.example_shape == (32, 32, 3) and batch.shape == (12, 32, 32, 3) and batch.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 1.0
    _assert_each_is_one_of(_batch_uint8(unflipped), expected)
    _assert_each_is_one_of(_batch_uint8(batch), expected, allow_mirror=True)
    assert not np.array_equal(batch.numpy(), unflipped.numpy())  # some of the 12 were flipped


def test_celeba_crops_then_resizes():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = _mock_images("celeb_a")
        source = tfds_images.celeba(image_size=16, crop_size=140, random_flip=False, in_memory=True)
        batch = _batch_uint8(next(iter(source.make_dataset(6, seed=0))))
    assert raw[0].shape == (218, 178, 3) and source.example_shape == (16, 16, 3)
    expected = [image_ops.resize(image[39:179, 19:159], 16, 16).numpy() for image in raw]
    _assert_each_is_one_of(batch, expected)
    assert len({image.tobytes() for image in batch}) == MOCK_EXAMPLES  # one epoch: each image once


def test_lsun_resizes_any_size_and_has_the_reference_sizes():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        assert tfds_images.lsun().example_shape == (64, 64, 3)
        assert tfds_images.lsun(category="tower").example_shape == (128, 128, 3)
        raw = _mock_images("lsun/church_outdoor")
        source = tfds_images.lsun(image_size=8, random_flip=False, in_memory=True)
        batch = _batch_uint8(next(iter(source.make_dataset(6, seed=1))))
        with pytest.raises(ValueError, match="lsun.image_size"):
            tfds_images.lsun(category="bridge")
    assert len({image.shape for image in raw}) > 1  # the mock images come in assorted sizes
    _assert_each_is_one_of(batch, [image_ops.resize_and_center_crop(image, 8).numpy() for image in raw])


@pytest.mark.parametrize("factory", [tfds_images.cifar10, tfds_images.celeba, tfds_images.lsun])
def test_missing_dataset_fails_at_once_saying_how_to_prepare_it(factory, tmp_path):
    start = time.time()
    source = factory(data_dir=str(tmp_path))  # shape and transform stay usable for sampling and export
    assert len(source.example_shape) == 3 and "tfds build" in source.missing
    with pytest.raises(FileNotFoundError, match=rf"(?s)not prepared under {tmp_path}.*tfds build"):
        source.make_dataset(8, 0)
    assert time.time() - start < 5.0


def _constant_images(count, offset):
    """(key, example) pairs: `count` images of 12x10 pixels, image i filled with the value 10 * i + offset."""
    return [(i, {"image": np.full((12, 10, 3), 10 * i + offset, np.uint8)}) for i in range(count)]


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A prepared TFDS dataset directory: 24 train images (values 0, 10, ...) and 4 test (5, 15, ...)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_faces", version="1.0.0", data_dir=str(data_dir),
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))}),
        split_datasets={"train": _constant_images(24, 0), "test": _constant_images(4, 5)})
    return str(data_dir / "tiny_faces")


def _streaming_ffhq(path, **kwargs):
    return image_folder.ffhq(path=path, image_size=8, shuffle_buffer=8, in_memory=False, **kwargs)


def _values(batch):
    return np.rint(batch.numpy()[:, 0, 0, 0] * 255.0).astype(int)


def test_prepared_tfds_directory_streams_seeded_batches(tiny_tfds):
    source = _streaming_ffhq(tiny_tfds, random_flip=False)
    assert source.example_shape == (8, 8, 3) and source.num_examples == 24
    first = [_values(b) for _, b in zip(range(6), source.make_dataset(8, seed=4))]
    again = [_values(b) for _, b in zip(range(6), source.make_dataset(8, seed=4))]
    other = [_values(b) for _, b in zip(range(6), source.make_dataset(8, seed=5))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert set(np.concatenate(first).tolist()) <= set(range(0, 240, 10))
    test_values = _values(next(iter(_streaming_ffhq(tiny_tfds, split="test").make_dataset(4, seed=0))))
    assert sorted(test_values) == [5, 15, 25, 35]


def test_streaming_iterator_resumes_at_the_same_example(tiny_tfds, tmp_path):
    source = _streaming_ffhq(tiny_tfds)
    iterator = iter(source.make_dataset(8, seed=0))
    for _ in range(5):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
    expected = [next(iterator).numpy() for _ in range(5)]
    fresh = iter(source.make_dataset(8, seed=0))
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    assert all(np.array_equal(a, next(fresh).numpy()) for a in expected)


def test_streaming_shards_read_disjoint_examples(tiny_tfds):
    source = _streaming_ffhq(tiny_tfds, random_flip=False)
    halves = [set(np.concatenate([_values(b) for _, b in zip(range(3), source.make_dataset(4, seed=0, shard=(k, 2)))]))
              for k in range(2)]
    assert len(halves[0]) == len(halves[1]) == 12
    assert not halves[0] & halves[1]
