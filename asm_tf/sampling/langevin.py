"""Annealed Langevin sampling (ALS) and consistent annealed sampling (CAS) as graph while-loops
(docs/algorithm.md), in model space.

Every image's randomness is a stateless function of its int64 seed: draw 0 is the initial value (asm_tf.sampling.
runner), draw k + 1 the noise of sampler step k. Image k therefore depends only on the weights, the sampler
settings and seed k, never on the batch size, its position in the batch or the device. ALS and CAS return
(final sample, EDS of the last step), plus the trajectory when asked; `cas_inpaint` runs CAS with some values known.
"""

import tensorflow as tf

from asm_tf import noise, score
from asm_tf.noise_levels import formulas


def _new_trajectory(num_levels, every, x):
    """A TensorArray for the states entering levels 0, every, 2 every, ... and the final state."""
    size = (num_levels - 1) // every + 2
    return tf.TensorArray(x.dtype, size=size, element_shape=x.shape)


def _record(trajectory, level, every, x, when=True):
    """Writes x as the snapshot of `level` when `level` is a multiple of `every` (and `when` holds)."""
    due = tf.logical_and(when, level % every == 0)
    return tf.cond(due, lambda: trajectory.write(level // every, x), lambda: trajectory)


def _finish_trajectory(trajectory, x):
    """[B, T, ...]: the recorded snapshots followed by the final state, batch first."""
    stacked = trajectory.write(trajectory.size() - 1, x).stack()
    return tf.transpose(stacked, [1, 0] + list(range(2, stacked.shape.rank)))


def check_every(trajectory_every):
    if trajectory_every is not None and trajectory_every < 1:
        raise ValueError(f"trajectory_every must be at least 1, got {trajectory_every}")


def als(score_model, x, seeds, sigmas, step_size, n_sigma, noise_first=False, *, trajectory_every=None):
    """ALS: n_sigma Langevin steps per level with alpha_i = eps (sigma_i / sigma_L)^2
    (docs/algorithm.md#annealed-langevin-sampling-als).

    `sigmas` float32 [L]; `n_sigma` int32 scalar. The EDS is taken from the state just before
    the last update, as in the reference. With `trajectory_every=k` a third output [B, T, ...] holds
    the states entering levels 0, k, 2k, ... and the final state.
    """
    check_every(trajectory_every)
    sigmas = tf.convert_to_tensor(sigmas, tf.float32)
    step_size = tf.cast(step_size, tf.float32)
    n_sigma = tf.cast(n_sigma, tf.int32)
    total = tf.shape(sigmas)[0] * n_sigma
    shape = x.shape[1:]

    def step(k, x):
        sigma = sigmas[k // n_sigma]
        alpha = step_size * tf.square(sigma / sigmas[-1])
        z = noise.normal(noise.fold(seeds, k + 1), shape)
        if noise_first:
            x = x + tf.sqrt(2.0 * alpha) * z
        output = score_model.output(x, score.batch_sigma(sigma, x))
        denoised = x + sigma * output
        x = x + (alpha / sigma) * output
        if not noise_first:
            x = x + tf.sqrt(2.0 * alpha) * z
        return x, denoised

    def body(k, x, _, *trajectory):
        if trajectory:
            trajectory = (_record(trajectory[0], k // n_sigma, trajectory_every, x, k % n_sigma == 0),)
        x, denoised = step(k, x)
        return (k + 1, x, denoised, *trajectory)

    start = (tf.constant(0), x, tf.zeros_like(x))
    if trajectory_every is not None:
        start += (_new_trajectory(tf.shape(sigmas)[0], trajectory_every, x),)
    _, x, denoised, *trajectory = tf.while_loop(lambda k, *_: k < total, body, start)
    return (x, denoised, _finish_trajectory(trajectory[0], x)) if trajectory else (x, denoised)


def _cas(score_model, x, seeds, sigmas, step_size, project=None, trajectory_every=None):
    """CAS as in `cas`; `project(x, i, sigma)`, if given, rewrites the state entering level i."""
    sigmas = tf.convert_to_tensor(sigmas, tf.float32)
    eta = tf.cast(step_size, tf.float32) / tf.square(sigmas[-1])
    num_levels = tf.shape(sigmas)[0]
    shape = x.shape[1:]

    def step(i, x):
        sigma = sigmas[i]
        if project is not None:
            x = project(x, i, sigma)
        output = score_model.output(x, score.batch_sigma(sigma, x))
        denoised = x + sigma * output
        x = x + eta * sigma * output
        next_sigma = sigmas[tf.minimum(i + 1, num_levels - 1)]
        beta = formulas.cas_beta(eta, sigma, next_sigma)
        z = noise.normal(noise.fold(seeds, i + 1), shape)
        x = tf.where(i + 1 < num_levels, x + beta * next_sigma * z, x)
        return x, denoised

    def body(i, x, _, *trajectory):
        if trajectory:
            trajectory = (_record(trajectory[0], i, trajectory_every, x),)
        x, denoised = step(i, x)
        return (i + 1, x, denoised, *trajectory)

    start = (tf.constant(0), x, tf.zeros_like(x))
    if trajectory_every is not None:
        start += (_new_trajectory(num_levels, trajectory_every, x),)
    _, x, denoised, *trajectory = tf.while_loop(lambda i, *_: i < num_levels, body, start)
    return (x, denoised, _finish_trajectory(trajectory[0], x)) if trajectory else (x, denoised)


def cas(score_model, x, seeds, sigmas, step_size, *, trajectory_every=None):
    """CAS on the (refined) grid `sigmas` [L'] (docs/algorithm.md#consistent-annealed-sampling-cas); no noise after
    the last level.

    The noise std follows the schedule exactly for an ideal score when
    sigma_L^2 (1 - gamma) < eps < sigma_L^2 (1 + gamma); callers validate that first.
    With `trajectory_every=k` a third output [B, T, ...] holds the states entering levels 0, k, 2k, ...
    and the final state.
    """
    check_every(trajectory_every)
    return _cas(score_model, x, seeds, sigmas, step_size, trajectory_every=trajectory_every)


def cas_inpaint(score_model, x, seeds, sigmas, step_size, known, mask):
    """CAS that keeps known values (model space): returns (final, denoised) with the known entries exact.

    `known` [B, ...] holds the known values and `mask` (bool, broadcastable to x) marks them. Entering
    level i, the known entries are set to known + sigma_i z, with z from a noise stream of their own
    (draws -1, -2, ...), so that they carry the noise of that level like the rest of the state.
    """
    shape = x.shape[1:]

    def project(x, i, sigma):
        z = noise.normal(noise.fold(seeds, -(i + 1)), shape)
        return tf.where(mask, known + sigma * z, x)

    final, denoised = _cas(score_model, x, seeds, sigmas, step_size, project=project)
    return tf.where(mask, known, final), tf.where(mask, known, denoised)

