"""Stateless per-example randomness: every draw is a function of an int64 seed and a step index.

Image k of a sampler, or example k of a training batch, gets the same noise whatever the batch size,
its position in the batch, the device or the number of replicas.
"""

import tensorflow as tf


def fold(seeds, index):
    """Per-example stateless seeds ([B, 2] int64) for draw `index` from int64 seeds [B] or [B, 2]."""
    seeds = tf.convert_to_tensor(seeds)
    if seeds.shape.rank == 1:
        seeds = tf.stack([tf.cast(seeds, tf.int64), tf.zeros_like(seeds, tf.int64)], axis=1)
    index = tf.cast(index, tf.int32)
    return tf.vectorized_map(
        lambda s: tf.cast(tf.random.experimental.stateless_fold_in(s, index), tf.int64), seeds)


def normal(seeds, shape, dtype=tf.float32):
    """One standard normal draw of `shape` per seed: [B, *shape] from stateless seeds [B, 2]."""
    return tf.vectorized_map(lambda s: tf.random.stateless_normal(shape, seed=s, dtype=dtype), seeds)


def uniform(seeds, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
    """One uniform draw of `shape` in [minval, maxval) per seed: [B, *shape]."""
    return tf.vectorized_map(
        lambda s: tf.random.stateless_uniform(shape, seed=s, minval=minval, maxval=maxval, dtype=dtype),
        seeds)


def uniform_int(seeds, maxval):
    """One integer in [0, maxval) per seed: [B] int32."""
    return tf.vectorized_map(
        lambda s: tf.random.stateless_uniform([], seed=s, minval=0, maxval=maxval, dtype=tf.int32), seeds)
