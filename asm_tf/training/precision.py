"""Mixed precision for the trained networks: Keras dtype policies, float32 outputs and dynamic loss scaling.

Variables stay float32 under every policy; only the networks' computations change. Noise, losses, EMA
weights and samplers stay float32.
"""

import contextlib

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(name):
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return name


@contextlib.contextmanager
def dtype_policy(name):
    """Builds the layers created inside with the Keras dtype policy `name`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(check_precision(name))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class Float32Outputs:
    """Calls a network and casts its outputs to float32, so that losses are computed in float32."""

    def __init__(self, network):
        self.network = network
        self.takes_sigma = getattr(network, "takes_sigma", False)

    def __call__(self, *args, **kwargs):
        return tf.cast(self.network(*args, **kwargs), tf.float32)


class DynamicLossScale(tf.Module):
    """Loss scaling for float16 gradients: the loss is multiplied by `scale` before differentiating and the
    summed gradients divided by it. A non-finite gradient skips its update and halves the scale;
    `growth_interval` finite updates in a row double it. Create it under the strategy's scope.
    """

    def __init__(self, initial_scale=2.0**15, growth_interval=2000):
        super().__init__(name="loss_scale")
        self.growth_interval = growth_interval
        self.scale = tf.Variable(float(initial_scale), trainable=False, dtype=tf.float32, name="scale")
        self.finite_in_a_row = tf.Variable(0, trainable=False, dtype=tf.int64, name="finite_in_a_row")

    def after_finite(self):
        count = self.finite_in_a_row + 1
        grow = count >= self.growth_interval
        self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
        self.finite_in_a_row.assign(tf.where(grow, tf.zeros_like(count), count))

    def after_nonfinite(self):
        self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
        self.finite_in_a_row.assign(tf.zeros_like(self.finite_in_a_row))
