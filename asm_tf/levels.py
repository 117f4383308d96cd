"""Short sequences of noise levels for samplers with few network calls, as TensorFlow ops.

The same functions run eagerly (asm-sample, asm-eval) and inside exported graphs (the count and rho are
request inputs there), so each formula exists once. Both sequences decrease from their first to their last
level and keep both end points exactly.
"""

import tensorflow as tf

SPACINGS = ("ladder", "rho")


def _float64(value):
    """A float64 tensor of a tensor or a Python number (without a detour through float32)."""
    return tf.cast(value, tf.float64) if tf.is_tensor(value) else tf.constant(value, tf.float64)


def subsampled(ladder, count):
    """`count` levels of a trained ladder at the evenly spaced indices round(linspace(0, L - 1, count))."""
    ladder = tf.convert_to_tensor(ladder, tf.float64)
    last = tf.cast(tf.shape(ladder)[0] - 1, tf.float64)
    indices = tf.cast(tf.round(tf.linspace(tf.constant(0.0, tf.float64), last, count)), tf.int32)
    return tf.gather(ladder, indices)


def rho_spaced(first, last, count, rho):
    """EDM's levels (Karras et al. 2022): (first^(1/rho) + t (last^(1/rho) - first^(1/rho)))^rho, t in [0, 1]."""
    first, last = _float64(first), _float64(last)
    inverse = 1.0 / _float64(rho)
    t = tf.linspace(tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64), count)
    inner = tf.pow((first ** inverse + t * (last ** inverse - first ** inverse)), 1.0 / inverse)
    return tf.concat([first[None], inner[1:-1], last[None]], axis=0)
