"""Sampling a point mass x* with its exact score s*(x, sigma) = -(x - x*) / sigma^2: the noise std of x - x*
that ALS and CAS leave at each step, analytic and simulated with the library's samplers (the paper's Figure 1,
docs/algorithm.md#als-lag-and-figure-1). tools/experiments/figure1.py draws it.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from asm_tf import noise, sampling
from asm_tf.noise_levels import schedule as noise_schedule
from asm_tf.score import ScoreModel, per_example


class PointMassScore:
    """The exact network for data concentrated at `centre` (a number, or a tensor [B, ...] of one point per
    example): net(x, sigma) = sigma * s*(x, sigma) = -(x - centre) / sigma.

    Has `takes_sigma = True`, so asm_tf.score.ScoreModel passes it the per-example sigma.
    """

    takes_sigma = True

    def __init__(self, centre=0.0):
        self.centre = centre

    def __call__(self, x, sigma, training=False):
        return -(x - self.centre) / per_example(sigma, x)


def als_fixed_point(sigma, eta):
    """The std ALS settles at when it stays at level sigma: sigma * sqrt(2 / (2 - eta))."""
    return sigma * math.sqrt(2.0 / (2.0 - eta))


def als_noise_std(sigmas, eta, n_sigma, start_std=None):
    """Std of x - x* entering each ALS step (n_sigma per level), for the perfect score; [L * n_sigma].

    One step at level sigma: v^2 <- (1 - eta)^2 v^2 + 2 eta sigma^2 (docs/algorithm.md#als-lag-and-figure-1).
    Starts at sigma_1.
    """
    sigmas = np.asarray(sigmas, np.float64)
    variance = (sigmas[0] if start_std is None else start_std) ** 2
    stds = np.empty(len(sigmas) * n_sigma)
    for step in range(len(stds)):
        stds[step] = math.sqrt(variance)
        variance = (1.0 - eta) ** 2 * variance + 2.0 * eta * sigmas[step // n_sigma] ** 2
    return stds


def cas_noise_std(sigmas, eta, start_std=None):
    """Std of x - x* entering each CAS level, for the perfect score; [L'].

    One level: v^2 <- (1 - eta)^2 v^2 + beta_i^2 sigma_{i+1}^2 with beta_i^2 = 1 - ((1 - eta) / gamma_i)^2.
    """
    sigmas = np.asarray(sigmas, np.float64)
    _, beta = noise_schedule.cas_coefficients(eta * sigmas[-1] ** 2, sigmas)  # a ValueError outside the bounds
    beta_squared = beta ** 2
    variance = (sigmas[0] if start_std is None else start_std) ** 2
    stds = np.empty(len(sigmas))
    for level in range(len(sigmas)):
        stds[level] = math.sqrt(variance)
        if level + 1 < len(sigmas):
            variance = (1.0 - eta) ** 2 * variance + beta_squared[level] * sigmas[level + 1] ** 2
    return stds


@dataclasses.dataclass(frozen=True)
class Curve:
    """One Figure-1 curve: `std` at each sampler step; `progress` = step / n_sigma in original levels."""

    name: str
    sampler: str
    n_sigma: int
    step_size: float
    sigma: np.ndarray
    std: np.ndarray

    @property
    def progress(self):
        return np.arange(len(self.std)) / self.n_sigma

    def at_levels(self):
        """The std entering the first step of each original level."""
        return self.std[::self.n_sigma]


def figure1_curves(schedule, als_step_size=2e-6, als_n_sigmas=(1, 2, 5, 20), cas_step_size=2e-5, cas_n_sigma=100):
    """The analytic curves of Figure 1 (docs/algorithm.md#als-lag-and-figure-1): ALS for each n_sigma on the
    training levels, CAS on the grid refined `cas_n_sigma` times. Defaults: eta = 0.02 for ALS and 0.2 for CAS on
    CIFAR-10's schedule."""
    levels = schedule.sigmas()
    sigma_end = float(levels[-1])
    curves = []
    for n_sigma in als_n_sigmas:
        eta = als_step_size / sigma_end**2
        curves.append(Curve(f"ALS n_sigma={n_sigma}", "als", n_sigma, als_step_size,
                            np.repeat(levels, n_sigma), als_noise_std(levels, eta, n_sigma)))
    grid = schedule.refined(cas_n_sigma)
    noise_schedule.check_cas_step_size(cas_step_size, grid)
    curves.append(Curve(f"CAS n_sigma={cas_n_sigma}", "cas", cas_n_sigma, cas_step_size, grid,
                        cas_noise_std(grid, cas_step_size / sigma_end**2)))
    return curves


def simulate_noise_std(curve, checkpoints, num_samples=256, dim=64, seed=0):
    """The library sampler's noise std, measured, against `curve`'s analytic one, at original levels `checkpoints`.

    Runs asm_tf.sampling.als / cas with `curve`'s setting and the exact score of a point mass at 0, from
    x ~ sigma_1 N(0, I) in `dim` dimensions for `num_samples` seeds, stopped after original level k for each
    k in `checkpoints` (eta = eps / sigma_L^2 of the full run is kept). Returns (progress, analytic,
    simulated), all as the std entering the next step, as `curve.std`:
    ALS stopped after level k gives the std entering level k + 1 (progress k + 1);
    CAS stopped after level k skips that level's noise, so its std (1 - eta) sigma_k is divided by (1 - eta)
    (exact for the ideal score) and compared with the std entering level k (progress k).
    """
    score_model = ScoreModel(PointMassScore())
    levels = curve.sigma if curve.sampler == "cas" else curve.sigma[::curve.n_sigma]
    eta = curve.step_size / float(levels[-1]) ** 2
    seeds = tf.range(seed, seed + num_samples, dtype=tf.int64)
    start = float(levels[0]) * noise.normal(noise.fold(seeds, 10**9), (dim,))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.float32)])
    def run(truncated, step_size):
        if curve.sampler == "cas":
            return sampling.cas(score_model, start, seeds, truncated, step_size)[0]
        return sampling.als(score_model, start, seeds, truncated, step_size, curve.n_sigma)[0]

    progress, analytic, simulated = [], [], []
    for level in checkpoints:
        last = level * curve.n_sigma if curve.sampler == "cas" else level
        truncated = np.asarray(levels[:last + 1], np.float32)
        final = run(tf.constant(truncated), tf.constant(eta * float(truncated[-1]) ** 2, tf.float32))
        std = float(np.sqrt(np.mean(np.square(final.numpy(), dtype=np.float64))))
        if curve.sampler == "cas":
            progress.append(level)
            simulated.append(std / (1.0 - eta))
            analytic.append(float(curve.std[last]))
        else:
            progress.append(level + 1)
            simulated.append(std)
            # the std entering level last + 1 depends only on the levels before it: a placeholder stands for it
            stds = als_noise_std(np.append(levels[:last + 1], np.nan), eta, curve.n_sigma)
            analytic.append(float(stds[(last + 1) * curve.n_sigma]))
    return np.array(progress, np.float64), np.array(analytic), np.array(simulated)
