"""Annealed Langevin sampling (ALS) and consistent annealed sampling (CAS) as graph while-loops.

Every image's randomness is a stateless function of its int64 seed: draw 0 is the initial value,
draw k + 1 the noise of sampler step k. Image k therefore depends only on the weights, the sampler
settings and seed k, never on the batch size, its position in the batch or the device.
Both samplers return (final sample, EDS of the last step) in model space (SPEC 1.3-1.5).
"""

import dataclasses
import sys
import time

import gin
import numpy as np
import tensorflow as tf

from asm_tf import noise, sigmas as sigmas_lib

SAMPLERS = ("als", "cas")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """Sampler defaults of a run; `asm-sample` flags override them."""

    sampler: str = "cas"
    n_sigma: int = 1
    step_size: float = 5.6e-6
    noise_first: bool = False

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.n_sigma < 1:
            raise ValueError(f"n_sigma must be at least 1, got {self.n_sigma}")
        if not self.step_size > 0:
            raise ValueError(f"step size must be positive, got {self.step_size}")

    def sampling_sigmas(self, schedule):
        """The noise levels the sampler visits: the training levels (ALS) or the refined grid (CAS)."""
        return schedule.refined(self.n_sigma) if self.sampler == "cas" else schedule.sigmas()

    def validate(self, schedule):
        """Raises ValueError (with the valid interval) for a CAS step size outside the bounds."""
        if self.sampler == "cas":
            sigmas_lib.check_cas_step_size(self.step_size, self.sampling_sigmas(schedule))


def initial_value(seeds, example_shape, source):
    """U[init_low, init_high) in data space per seed, mapped to model space (SPEC 1.4)."""
    u = noise.uniform(noise.fold(seeds, 0), example_shape, source.init_low, source.init_high)
    return source.transform.to_model(u)


def _broadcast(sigma, x):
    return tf.fill([tf.shape(x)[0]], sigma)


def als(score_model, x, seeds, sigmas, step_size, n_sigma, noise_first=False):
    """ALS: n_sigma Langevin steps per level with alpha_i = eps (sigma_i / sigma_L)^2 (SPEC 1.4).

    `sigmas` float32 [L]; `n_sigma` int32 scalar. The EDS is taken from the state just before
    the last update, as in the reference.
    """
    sigmas = tf.convert_to_tensor(sigmas, tf.float32)
    step_size = tf.cast(step_size, tf.float32)
    n_sigma = tf.cast(n_sigma, tf.int32)
    total = tf.shape(sigmas)[0] * n_sigma
    shape = x.shape[1:]

    def body(k, x, _):
        sigma = sigmas[k // n_sigma]
        alpha = step_size * tf.square(sigma / sigmas[-1])
        z = noise.normal(noise.fold(seeds, k + 1), shape)
        if noise_first:
            x = x + tf.sqrt(2.0 * alpha) * z
        output = score_model.output(x, _broadcast(sigma, x))
        denoised = x + sigma * output
        x = x + (alpha / sigma) * output
        if not noise_first:
            x = x + tf.sqrt(2.0 * alpha) * z
        return k + 1, x, denoised

    _, x, denoised = tf.while_loop(lambda k, *_: k < total, body, (tf.constant(0), x, tf.zeros_like(x)))
    return x, denoised


def cas(score_model, x, seeds, sigmas, step_size):
    """CAS on the (refined) grid `sigmas` [L'] (SPEC 1.5); no noise after the last level.

    The noise std follows the schedule exactly for an ideal score when
    sigma_L^2 (1 - gamma) < eps < sigma_L^2 (1 + gamma); callers validate that first.
    """
    sigmas = tf.convert_to_tensor(sigmas, tf.float32)
    eta = tf.cast(step_size, tf.float32) / tf.square(sigmas[-1])
    num_levels = tf.shape(sigmas)[0]
    shape = x.shape[1:]

    def body(i, x, _):
        sigma = sigmas[i]
        output = score_model.output(x, _broadcast(sigma, x))
        denoised = x + sigma * output
        x = x + eta * sigma * output
        next_sigma = sigmas[tf.minimum(i + 1, num_levels - 1)]
        beta = tf.sqrt(tf.maximum(1.0 - tf.square((1.0 - eta) * sigma / next_sigma), 0.0))
        z = noise.normal(noise.fold(seeds, i + 1), shape)
        x = tf.where(i + 1 < num_levels, x + beta * next_sigma * z, x)
        return i + 1, x, denoised

    _, x, denoised = tf.while_loop(lambda i, *_: i < num_levels, body, (tf.constant(0), x, tf.zeros_like(x)))
    return x, denoised


def make_sampler(score_model, schedule, settings, source):
    """A tf.function seeds [N] int64 -> (final, denoised) in data space for one run's settings."""
    settings.validate(schedule)
    levels = settings.sampling_sigmas(schedule).astype(np.float32)
    example_shape = tuple(source.example_shape)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def sample(seeds):
        x = initial_value(seeds, example_shape, source)
        if settings.sampler == "cas":
            final, denoised = cas(score_model, x, seeds, levels, settings.step_size)
        else:
            final, denoised = als(score_model, x, seeds, levels, settings.step_size, settings.n_sigma,
                                  settings.noise_first)
        return source.transform.to_data(final), source.transform.to_data(denoised)

    return sample


def sample_in_batches(sampler, seeds, batch_size, log=sys.stdout):
    """Runs `sampler` over `seeds` in batches, printing a progress line per batch; numpy (final, denoised)."""
    seeds = np.asarray(seeds, np.int64)
    finals, denoised = [], []
    start = time.time()
    for begin in range(0, len(seeds), batch_size):
        batch = seeds[begin:begin + batch_size]
        final, eds = sampler(tf.constant(batch))
        finals.append(final.numpy())
        denoised.append(eds.numpy())
        done = begin + len(batch)
        if log is not None:
            print(f"sampled {done}/{len(seeds)} ({time.time() - start:.1f} s)", file=log, flush=True)
    return np.concatenate(finals), np.concatenate(denoised)
