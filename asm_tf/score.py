"""The score-network contract: networks output an estimate of -z, so score = net / sigma and EDS = x + sigma * net."""

import tensorflow as tf


def batch_sigma(sigma, x):
    """A scalar sigma repeated for each example of x: [B]."""
    return tf.fill([tf.shape(x)[0]], sigma)


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

    `data_std` (sigma_d) turns on EDM's preconditioning (Karras et al. 2022), not the paper's: the network F
    sees c_in x = x / sqrt(sigma^2 + sigma_d^2) and the denoiser is c_skip x + c_out F with
    c_skip = sigma_d^2 / (sigma^2 + sigma_d^2), c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2). At high noise
    F then predicts the clean image instead of z, whose error the paper's parametrization multiplies by sigma;
    at low noise the two coincide. `output` still estimates -z, so samplers and losses are unchanged.
    """

    def __init__(self, network, data_std=None):
        if data_std is not None and not data_std > 0:
            raise ValueError(f"data_std must be positive (or None), got {data_std}")
        self.network, self.data_std = network, data_std

    def _network(self, x, sigma, training):
        if getattr(self.network, "takes_sigma", False):
            return self.network(x, sigma, training=training)
        return self.network(x, training=training)

    def output(self, x, sigma, training=False):
        """The estimate of -z: the raw network output, or (D(x) - x) / sigma under preconditioning."""
        if self.data_std is None:
            return self._network(x, sigma, training)
        sigma_x = per_example(sigma, x)
        total = tf.square(sigma_x) + self.data_std ** 2
        c_in = tf.math.rsqrt(total)
        return -sigma_x * x / total + self.data_std * c_in * self._network(x * c_in, sigma, training)

    def score(self, x, sigma, training=False):
        """s(x, sigma) = net(x) / sigma."""
        return self.output(x, sigma, training) / per_example(sigma, x)

    def denoise(self, x, sigma, training=False):
        """Expected denoised sample EDS(x) = x + sigma * net(x) (Tweedie)."""
        return x + per_example(sigma, x) * self.output(x, sigma, training)
