"""Stateless per-example randomness: every draw is a function of an example's seed and a draw index.

Image k of a sampler, or example k of a training batch, gets the same noise whatever the batch size,
its position in the batch, the device or the number of replicas. TensorFlow's stateless ops take one
key per op, and mapping them over examples runs a loop (70 us per example and draw here), so the
draws are counter-based instead: element j of an example with key k is splitmix64(k + (j + 1) * phi),
all elementwise uint64 arithmetic, then Box-Muller for normals.
"""

import math

import tensorflow as tf

_PHI = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, splitmix64's increment
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _u64(value):
    return tf.constant(value, tf.uint64)


def _mix(x):
    """splitmix64's finaliser: a bijection of uint64 that scrambles every bit."""
    x = (x ^ tf.bitwise.right_shift(x, _u64(30))) * _u64(_M1)
    x = (x ^ tf.bitwise.right_shift(x, _u64(27))) * _u64(_M2)
    return x ^ tf.bitwise.right_shift(x, _u64(31))


def keys(seeds):
    """Per-example uint64 keys [B] from int64 seeds [B] or seed pairs [B, 2] (e.g. run seed, example index)."""
    seeds = tf.convert_to_tensor(seeds)
    if seeds.dtype == tf.uint64:
        return seeds
    seeds = tf.bitcast(tf.cast(seeds, tf.int64), tf.uint64)
    if seeds.shape.rank == 1:
        return _mix(seeds + _u64(_PHI))
    return _mix(_mix(seeds[:, 0] + _u64(_PHI)) ^ (seeds[:, 1] + _u64(2 * _PHI % 2**64)))


def fold(seeds, index):
    """Keys [B] of draw number `index` (a scalar) for each example's seed or key."""
    index = tf.bitcast(tf.cast(index, tf.int64), tf.uint64)
    return _mix(keys(seeds) ^ _mix(index + _u64(3 * _PHI % 2**64)))


def _bits(keys_, shape):
    """[B, *shape] uint64 hashes of the element counters of each key."""
    count = math.prod(shape)
    steps = tf.bitcast(tf.range(1, count + 1, dtype=tf.int64), tf.uint64) * _u64(_PHI)
    bits = _mix(keys_[:, None] + steps[None, :])
    return tf.reshape(bits, tf.concat([tf.shape(keys_), tf.constant(shape, tf.int32)], 0))


def _unit(bits, shift, dtype=tf.float32):
    """24 bits of `bits` (above `shift`) as floats in (0, 1]."""
    top = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, _u64(shift)), _u64(0xFFFFFF))
    return (tf.cast(top, dtype) + 1.0) * (2.0**-24)


def uniform(seeds, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
    """One uniform draw of `shape` in [minval, maxval) per example: [B, *shape]."""
    u = _unit(_bits(keys(seeds), list(shape)), 40) - 2.0**-24
    return tf.cast(minval + (maxval - minval) * u, dtype)


def normal(seeds, shape, dtype=tf.float32):
    """One standard normal draw of `shape` per example (Box-Muller): [B, *shape].

    Computed in float64: Eigen's vectorised and scalar float32 log/cos differ in the last bit, which
    would make a draw depend on its position in the tensor; rounded from float64 it does not.
    """
    bits = _bits(keys(seeds), list(shape))
    radius = tf.sqrt(-2.0 * tf.math.log(_unit(bits, 40, tf.float64)))
    return tf.cast(radius * tf.cos((2.0 * math.pi) * _unit(bits, 16, tf.float64)), dtype)


def uniform_int(seeds, maxval):
    """One integer in [0, maxval) per example: [B] int32 (maxval well below 2^24)."""
    u = uniform(seeds, [])
    return tf.minimum(tf.cast(tf.floor(u * tf.cast(maxval, tf.float32)), tf.int32), tf.cast(maxval, tf.int32) - 1)
