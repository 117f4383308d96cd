"""Exponential moving average of the score network's weights, kept in a second copy of the network."""

import tensorflow as tf


class EMA:
    """shadow <- rate * shadow + (1 - rate) * weight after every score step (docs/algorithm.md#ema), computed as
    shadow -= (1 - rate) * (shadow - weight), with two passes over the weights instead of three.

    The shadow weights live in `network`, a copy of the trained network built from the same factory,
    so sampling, evaluation and export use it like any network. Non-trainable weights are copied.
    """

    def __init__(self, network, rate):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must lie in [0, 1), got {rate}")
        self.network = network
        self.rate = rate

    def initialize(self, source):
        """Starts the average at the source network's current weights (no warm-up)."""
        for shadow, weight in zip(self.network.weights, source.weights, strict=True):
            shadow.assign(weight)

    def update(self, source):
        """One EMA step towards the source network (call in cross-replica context under a strategy)."""
        trainable = {id(v) for v in source.trainable_weights}
        for shadow, weight in zip(self.network.weights, source.weights, strict=True):
            if id(weight) in trainable:
                shadow.assign_sub((1.0 - self.rate) * (tf.convert_to_tensor(shadow) - tf.convert_to_tensor(weight)))
            else:
                shadow.assign(weight)
