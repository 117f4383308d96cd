"""Denoising score matching (docs/algorithm.md#denoising-score-matching-dsm)."""

import collections

import numpy as np
import tensorflow as tf

from asm_tf import noise
from asm_tf.score import per_example

DSMResult = collections.namedtuple("DSMResult", "loss denoised noisy sigma")


def draw_perturbation(example_seeds, example_shape, sigmas, probabilities=None):
    """One noise level and one z ~ N(0, I) per example, from per-example stateless seeds [B, 2].

    The level is uniform over `sigmas`, or drawn with `probabilities` [L] (inverting their CDF).
    """
    level_seeds = noise.fold(example_seeds, 0)
    if probabilities is None:
        level = noise.uniform_int(level_seeds, tf.shape(sigmas)[0])
    else:
        cdf = tf.constant(np.cumsum(probabilities)[:-1], tf.float32)
        level = tf.searchsorted(cdf, noise.uniform(level_seeds, []), side="right")
    z = noise.normal(noise.fold(example_seeds, 1), example_shape)
    return tf.gather(sigmas, level), z


def dsm_loss(score_model, x, sigma, z, training=True):
    """Per-example DSM loss 1/2 ||net(x + sigma z) + z||^2 summed over dimensions, and the EDS.

    Averaging the returned per-example loss over the (global) batch gives the paper's objective.
    """
    noisy = x + per_example(sigma, x) * z
    output = score_model.output(noisy, sigma, training=training)
    axes = list(range(1, x.shape.rank))
    loss = 0.5 * tf.reduce_sum(tf.square(output + z), axis=axes)
    return DSMResult(loss=loss, denoised=noisy + per_example(sigma, x) * output, noisy=noisy, sigma=sigma)


def level_weighting(sigmas, data_std=None, probabilities=None):
    """Per-example DSM weights w(sigma) [B] for a ladder, or None for the paper's weighting (all 1).

    With `data_std` (sigma_d) w = 1 + sigma^2 / sigma_d^2 = sigma^2 / c_out^2, normalised to mean 1 over the
    levels as training draws them (uniformly, or with `probabilities`): EDM's weighting (Karras et al. 2022),
    under which the preconditioned network's target has unit weight at every level (`ScoreModel`).
    """
    if data_std is None:
        return None
    sigmas = np.asarray(sigmas, np.float64)
    norm = float(np.average(1.0 + np.square(sigmas / data_std), weights=probabilities))
    return lambda sigma: (1.0 + tf.square(sigma / data_std)) / norm
