"""The score-network contract: networks output an estimate of -z, so score = net / sigma and EDS = x + sigma * net."""

import tensorflow as tf


def per_example(sigma, x):
    """Reshapes sigma ([B] or scalar) so that it broadcasts against x ([B, ...])."""
    sigma = tf.cast(sigma, x.dtype)
    if sigma.shape.rank == 0:
        return sigma
    return tf.reshape(sigma, [-1] + [1] * (x.shape.rank - 1))


class ScoreModel:
    """Score and denoiser of a network trained to output -z for x + sigma * z.

    Networks are unconditional (as in the paper's code); a network with an attribute
    `takes_sigma = True` is called as `network(x, sigma, training=...)` instead, so a
    sigma-conditional network plugs in without changes elsewhere.
    """

    def __init__(self, network):
        self.network = network

    def output(self, x, sigma, training=False):
        """Raw network output, an estimate of -z."""
        if getattr(self.network, "takes_sigma", False):
            return self.network(x, sigma, training=training)
        return self.network(x, training=training)

    def score(self, x, sigma, training=False):
        """s(x, sigma) = net(x) / sigma."""
        return self.output(x, sigma, training) / per_example(sigma, x)

    def denoise(self, x, sigma, training=False):
        """Expected denoised sample EDS(x) = x + sigma * net(x) (Tweedie)."""
        return x + per_example(sigma, x) * self.output(x, sigma, training)
