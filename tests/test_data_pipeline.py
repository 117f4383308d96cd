"""The random-access pipeline: epochs are permutations, seeded order, checkpointed position, sharding."""

import numpy as np
import pytest
import tensorflow as tf

from asm_tf.data import pipeline, toy2d
from asm_tf.data.source import DataSource, check_example_shape
from asm_tf.data.transforms import Transform

NUM_EXAMPLES = 40


def _labelled_images(count=NUM_EXAMPLES):
    """uint8 [count, 4, 4, 1] whose image i is filled with the value i, so that batches reveal indices."""
    return np.repeat(np.arange(count, dtype=np.uint8), 16).reshape(count, 4, 4, 1)


def _source(random_flip=False, transform=Transform()):
    images = _labelled_images()
    return pipeline.random_access_source(
        name="labelled", make_fetch=lambda: pipeline.in_memory_fetch(images), example_shape=(4, 4, 1),
        num_examples=NUM_EXAMPLES, transform=transform, random_flip=random_flip)


def _indices(batch):
    return np.rint(batch.numpy()[:, 0, 0, 0] * 255.0).astype(int)


def _take(iterator, count):
    return [next(iterator).numpy() for _ in range(count)]


def test_every_epoch_is_a_fresh_permutation():
    iterator = iter(_source().make_dataset(8, seed=3))
    stream = np.concatenate([_indices(next(iterator)) for _ in range(3 * NUM_EXAMPLES // 8)])
    epochs = stream.reshape(3, NUM_EXAMPLES)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(NUM_EXAMPLES))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(NUM_EXAMPLES))


def test_order_is_fixed_by_the_seed():
    first = _take(iter(_source(random_flip=True).make_dataset(8, seed=5)), 6)
    again = _take(iter(_source(random_flip=True).make_dataset(8, seed=5)), 6)
    other = _take(iter(_source(random_flip=True).make_dataset(8, seed=6)), 6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_batches_are_float32_in_model_space():
    batch = next(iter(_source(transform=Transform(rescale=True)).make_dataset(8, seed=0)))
    assert batch.dtype == tf.float32 and batch.shape == (8, 4, 4, 1)
    assert -1.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 1.0


def test_without_augmentation_batches_are_neither_flipped_nor_dequantised():
    images = np.zeros((NUM_EXAMPLES, 4, 4, 1), np.uint8)
    images[:, :, 0] = 255  # a bright left column: a flip moves it to the right
    source = pipeline.random_access_source(
        name="left", make_fetch=lambda: pipeline.in_memory_fetch(images), example_shape=(4, 4, 1),
        num_examples=NUM_EXAMPLES, transform=Transform(rescale=True, dequantization="uniform"), random_flip=True)
    plain = next(iter(source.make_dataset(NUM_EXAMPLES, seed=0, augment=False))).numpy()
    np.testing.assert_array_equal(plain, np.where(images == 255, 1.0, -1.0))
    augmented = next(iter(source.make_dataset(NUM_EXAMPLES, seed=0))).numpy()
    flipped = augmented[:, 0, -1, 0] > 0
    assert 0 < flipped.sum() < NUM_EXAMPLES and not np.isin(augmented, [-1.0, 1.0]).all()


def test_restored_iterator_resumes_at_the_same_example(tmp_path):
    source = _source(random_flip=True, transform=Transform(dequantization="uniform"))
    iterator = iter(source.make_dataset(8, seed=1))
    _take(iterator, 7)  # mid-epoch, with batches prefetched
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.write(str(tmp_path / "ckpt"))
    expected = _take(iterator, 9)  # crosses two epoch boundaries

    fresh = iter(source.make_dataset(8, seed=1))
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    resumed = _take(fresh, 9)
    assert all(np.array_equal(a, b) for a, b in zip(expected, resumed))


def test_shards_split_the_global_batch():
    """Pipeline k of n reads slice k of the global batch that one pipeline with batch n*B reads."""
    source = _source(random_flip=True, transform=Transform(dequantization="gaussian"))
    whole = _take(iter(source.make_dataset(8, seed=2)), 6)
    shards = [_take(iter(source.make_dataset(4, seed=2, shard=(k, 2))), 6) for k in range(2)]
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(batch, np.concatenate([shards[0][step], shards[1][step]]))


def test_bad_batch_size_or_shard_fails_clearly():
    source = _source()
    with pytest.raises(ValueError, match="batch_size"):
        source.make_dataset(0, seed=0)
    with pytest.raises(ValueError, match="shard"):
        source.make_dataset(4, seed=0, shard=(2, 2))


def test_check_example_shape():
    source = _source()
    check_example_shape(source, (4, 4, 1))
    with pytest.raises(ValueError, match=r"\(4, 4, 1\).*\(32, 32, 3\).*image_size"):
        check_example_shape(source, (32, 32, 3))


def test_source_fields_keep_their_defaults():
    source = _source()
    assert isinstance(source, DataSource)
    assert (source.kind, source.init_low, source.init_high, source.num_examples) == ("image", 0.0, 1.0, 40)
    assert source.labelled_arrays is None


def test_fits_in_memory():
    assert pipeline.fits_in_memory(50_000, (32, 32, 3))
    assert not pipeline.fits_in_memory(708_264, (128, 128, 3))
    assert not pipeline.fits_in_memory(None, (32, 32, 3))


def test_toy2d_is_seeded_shardable_and_resumes(tmp_path):
    source = toy2d.toy2d("8gaussians", pool_size=64)
    iterator = iter(source.make_dataset(16, seed=0))
    epoch = np.concatenate(_take(iterator, 4))
    np.testing.assert_array_equal(np.unique(epoch, axis=0), np.unique(toy2d.sample("8gaussians", 64, 0), axis=0))
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "toy"))
    expected = _take(iterator, 3)
    fresh = iter(source.make_dataset(16, seed=0))
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    assert all(np.array_equal(a, b) for a, b in zip(expected, _take(fresh, 3)))
    half = next(iter(source.make_dataset(8, seed=0, shard=(1, 2)))).numpy()
    np.testing.assert_array_equal(half, epoch[8:16])
