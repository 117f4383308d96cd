"""Denoising score matching (SPEC 1.2)."""

import collections

import tensorflow as tf

from asm_tf import noise
from asm_tf.score import per_example

DSMResult = collections.namedtuple("DSMResult", "loss denoised noisy sigma")


def draw_perturbation(example_seeds, example_shape, sigmas):
    """One uniform noise level and one z ~ N(0, I) per example, from per-example stateless seeds [B, 2]."""
    level = noise.uniform_int(noise.fold(example_seeds, 0), tf.shape(sigmas)[0])
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
