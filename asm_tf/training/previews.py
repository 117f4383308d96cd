"""What training shows in TensorBoard's Images tab: EMA samples with the run's sampler, and real training images
beside their noisy versions and the current score network's denoised ones (what the discriminator judges)."""

import math

import numpy as np
import tensorflow as tf

from asm_tf import noise, sampling, summaries
from asm_tf.noise_levels import formulas
from asm_tf.score import per_example


class Previews:
    """`count` preview images of a run; `ema_model` samples, `score_model` (the trained network) denoises."""

    def __init__(self, *, ema_model, score_model, schedule, sampler_settings, data, count, seed):
        self.score_model, self.data, self.count, self.seed = score_model, data, count, seed
        self.sigmas = tf.constant(schedule.sigmas(), tf.float32)
        self.sampler = sampling.make_sampler(ema_model, schedule, sampler_settings, data)
        self._batch = None

    def samples(self, seeds):
        """EMA samples for the seeds with the run's sampler settings: (final, denoised) in data space."""
        return self.sampler(tf.constant(seeds, tf.int64))

    def denoising(self):
        """Real images, noisy and denoised (clamped by `to_data`, as the discriminator's input is), at levels
        spread from the largest sigma to the smallest: data-space images interleaved as real, noisy, denoised."""
        if self._batch is None:  # the same images every time
            batch = next(iter(self.data.make_dataset(self.count, self.seed + 1)))
            self._batch = batch, tf.gather(self.sigmas, formulas.spread_indices(len(self.sigmas), self.count))
        x, sigma = self._batch
        z = noise.normal(noise.keys(tf.range(x.shape[0], dtype=tf.int64)), x.shape[1:])
        noisy = x + per_example(sigma, x) * z
        denoised = self.score_model.denoise(noisy, sigma, training=False)
        triplets = tf.stack([self.data.transform.to_data(v) for v in (x, noisy, denoised)], axis=1)
        return tf.reshape(triplets, [-1, *x.shape[1:]]).numpy()

    def write(self, writer, step):
        """The samples (final and denoised) and, for images, the real/noisy/denoised grid, as image summaries."""
        final, denoised = self.samples(np.arange(self.count))
        summaries.write_samples(writer, {"samples": final.numpy(), "denoised": denoised.numpy()}, self.data.kind,
                                step)
        if self.data.kind == "image":
            columns = 3 * math.ceil(math.sqrt(self.count))
            summaries.write_samples(writer, {"real_noisy_denoised": self.denoising()}, "image", step, columns)
