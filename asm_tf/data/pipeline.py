"""Input pipelines shared by the image datasets: a checkpointable, seeded, shardable stream of batches.

Random access (data in memory, or a list of image files): example `p` of the global stream (p = 0, 1, ...)
is example `index_shuffle(p mod N)` of a permutation that is a stateless function of (seed, epoch p // N).
Worker `index` of `count` reads global positions [(b * count + index) * B, ... + B) as its batch b, so
the workers read disjoint examples and together the same global batches as one worker with batch count*B.
The iterator's state is one counter (and the prefetched batches): checkpoints are small and a
restored iterator continues at the same example.

Sequential (TFDS datasets too large for memory): shuffled files, then a shuffle buffer over the encoded
records, both seeded and reshuffled every epoch; tf.data checkpoints the buffer (so a checkpoint holds up
to `shuffle_buffer` encoded images) and the file positions.

Flips and dequantisation draw from per-example stateless seeds keyed by the stream position.
"""

import functools
import math

import numpy as np
import tensorflow as tf

from asm_tf.data import transforms
from asm_tf.data.source import DataSource

MAX_IN_MEMORY_BYTES = 4 * 2**30
SHUFFLE, FLIP, DEQUANTIZE = 1, 2, 3  # purposes of the run seed


def check_batch_and_shard(batch_size, shard):
    """Validates make_dataset's arguments; returns (index, count) as ints."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    index, count = (int(v) for v in shard)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return index, count


def subkey(key, number):
    """An independent stateless key [2] int64 derived from `key` [2] and an integer."""
    return tf.cast(tf.random.experimental.stateless_fold_in(tf.cast(key, tf.int64), number), tf.int64)


def purpose_key(seed, purpose):
    """A stateless key [2] int64 for one use (shuffle, flip, dequantisation) of the run seed."""
    return subkey(tf.constant([seed, 0], tf.int64), purpose)


def example_seeds(key, positions):
    """Per-example stateless seeds [B, 2] for stream positions [B] (distinct positions, distinct seeds)."""
    positions = tf.cast(positions, tf.int64)
    return tf.stack([tf.fill(tf.shape(positions), key[0]), tf.bitwise.bitwise_xor(key[1], positions)], axis=1)


def shuffled_indices(positions, num_examples, key):
    """Example indices [B] in [0, N) at stream positions [B]: a fresh seeded permutation every epoch."""
    positions = tf.cast(positions, tf.int64)
    epochs = positions // num_examples
    seeds = tf.stack([tf.fill(tf.shape(positions), key[0]), tf.fill(tf.shape(positions), key[1]), epochs], axis=1)
    return tf.raw_ops.RandomIndexShuffle(index=positions % num_examples, seed=seeds,
                                         max_index=tf.constant(num_examples - 1, tf.int64), rounds=4)


def batch_positions(batch_index, batch_size, index, count):
    """The global stream positions [B] of batch `batch_index` of pipeline `index` of `count`."""
    first = (tf.cast(batch_index, tf.int64) * count + index) * batch_size
    return first + tf.range(batch_size, dtype=tf.int64)


def finisher(seed, transform, random_flip, augment):
    """A function (positions [B], images [B, H, W, C] uint8 or [0, 1] float) -> float32 model-space batch;
    without `augment`, the images are neither flipped nor dequantised (what reference statistics need)."""
    flip_key, dequantize_key = purpose_key(seed, FLIP), purpose_key(seed, DEQUANTIZE)

    def finish(positions, images):
        if random_flip and augment:
            images = transforms.random_flip(images, example_seeds(flip_key, positions))
        scale = 1.0 / 255.0 if images.dtype == tf.uint8 else 1.0
        images = tf.cast(images, tf.float32) * scale
        if not augment:
            return transform.to_model(images)
        return transform.training_input(images, example_seeds(dequantize_key, positions))

    return finish


def _with_options(ds):
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def random_access_dataset(fetch, *, batch_size, seed, shard, transform, random_flip, augment=True):
    """The infinite batch stream of a random-access source held in memory.

    `fetch(positions [B] int64, shuffle_key [2] int64)` returns the images at those stream positions
    ([B, H, W, C], uint8 or float in [0, 1]); `shuffled_indices` turns positions into example indices.
    """
    index, count = check_batch_and_shard(batch_size, shard)
    shuffle_key = purpose_key(seed, SHUFFLE)
    finish = finisher(seed, transform, random_flip, augment)

    def load_batch(batch_index):
        positions = batch_positions(batch_index, batch_size, index, count)
        return finish(positions, fetch(positions, shuffle_key))

    ds = tf.data.Dataset.counter().map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(ds)


def per_example_dataset(load, num_examples, *, batch_size, seed, shard, transform, random_flip, augment=True):
    """The infinite batch stream of a random-access source read one example at a time (image files).

    `load(index)` returns example `index` in [0, num_examples) as a uint8 image [H, W, C]; examples are
    loaded in parallel.
    """
    index, count = check_batch_and_shard(batch_size, shard)
    shuffle_key = purpose_key(seed, SHUFFLE)
    finish = finisher(seed, transform, random_flip, augment)
    ds = tf.data.Dataset.counter().map(lambda b: batch_positions(b, batch_size, index, count)).unbatch()
    ds = ds.map(lambda p: (p, load(shuffled_indices(p[None], num_examples, shuffle_key)[0])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(ds)


def in_memory_fetch(images):
    """A `fetch` for a uint8 or float array [N, H, W, C] held in memory."""
    images = tf.convert_to_tensor(images)
    num_examples = int(images.shape[0])

    def fetch(positions, shuffle_key):
        return tf.gather(images, shuffled_indices(positions, num_examples, shuffle_key))

    return fetch


def sequential_dataset(records, decode, *, batch_size, seed, shard, transform, random_flip, shuffle_buffer,
                       augment=True):
    """The infinite batch stream of a sequential source.

    `records` is a finite tf.data.Dataset of this pipeline's shard (encoded images, files shuffled with
    `seed`); `decode` maps a record to a uint8 image [H, W, C] of the final size.
    """
    index, count = check_batch_and_shard(batch_size, shard)
    finish = finisher(seed, transform, random_flip, augment)
    ds = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).enumerate()
    ds = ds.map(lambda b, images: finish(batch_positions(b, batch_size, index, count), images),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(ds)


def fits_in_memory(num_examples, example_shape, limit=MAX_IN_MEMORY_BYTES):
    """Whether num_examples uint8 images of example_shape take at most `limit` bytes (False if unknown)."""
    return num_examples is not None and num_examples * math.prod(int(d) for d in example_shape) <= limit


def collect(ds, batch_size=1024):
    """A finite dataset of equal-shaped tensors (or tuples of them) as numpy arrays stacked on axis 0."""
    parts = list(ds.batch(batch_size).prefetch(2).as_numpy_iterator())
    if not parts:
        return None
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0])))
    return np.concatenate(parts, axis=0)


def random_access_source(*, name, make_fetch, example_shape, num_examples, transform, random_flip,
                         labelled_arrays=None, split=None):
    """A DataSource over the `fetch` (see random_access_dataset) that `make_fetch()` builds on first use."""
    make_fetch = functools.lru_cache(maxsize=None)(make_fetch)

    def make_dataset(batch_size, seed, shard=(0, 1), augment=True):
        return random_access_dataset(make_fetch(), batch_size=batch_size, seed=seed, shard=shard,
                                     transform=transform, random_flip=random_flip, augment=augment)

    return DataSource(name=name, kind="image", example_shape=tuple(example_shape), make_dataset=make_dataset,
                      transform=transform, num_examples=num_examples, labelled_arrays=labelled_arrays,
                      split=split)
