"""The ideal denoiser of a finite training set: the posterior mean E[x | x + sigma z] under its empirical law.

With training images x_1..x_N (equally likely) and y = x + sigma z, z ~ N(0, I), the posterior weights are
w_i = softmax_i(-||y - x_i||^2 / (2 sigma^2)) and the posterior mean is sum_i w_i x_i: the best any denoiser
can do in squared error on this distribution (Tweedie: the EDS of the exact score).
"""

import numpy as np
import scipy.special


def posterior_mean(noisy, sigma, images, *, batch_size=256):
    """E[x | noisy] (float64, the shape of `noisy` [B, ...]) when x is uniform over `images` [N, ...].

    `sigma`: a scalar or one per noisy example [B]. Computed in float64, `batch_size` noisy examples at a
    time (memory B x N), with the weights normalised by log-sum-exp so that no sigma under- or overflows.
    """
    noisy = np.asarray(noisy, np.float64)
    images = np.asarray(images, np.float64)
    if noisy.shape[1:] != images.shape[1:]:
        raise ValueError(f"noisy examples {noisy.shape[1:]} and images {images.shape[1:]} differ in shape")
    sigma = np.broadcast_to(np.asarray(sigma, np.float64), noisy.shape[:1])
    if not np.all(sigma > 0):
        raise ValueError(f"sigma must be positive, got {sigma.min()}")
    flat_images = images.reshape(len(images), -1)
    image_norms = np.sum(np.square(flat_images), axis=1)
    flat_noisy = noisy.reshape(len(noisy), -1)
    means = np.empty_like(flat_noisy)
    for begin in range(0, len(noisy), batch_size):
        part = slice(begin, begin + batch_size)
        y = flat_noisy[part]
        distances = np.sum(np.square(y), axis=1, keepdims=True) - 2.0 * y @ flat_images.T + image_norms
        logits = -distances / (2.0 * np.square(sigma[part, None]))
        weights = np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True))
        means[part] = weights @ flat_images
    return means.reshape(noisy.shape)
