"""Running a sampler: the initial value, the one place that dispatches to ALS, CAS or the ODE samplers (eager
sampling and the exported graphs alike), the tf.functions of a run's settings, and batches with progress.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from asm_tf import noise, progress
from asm_tf.sampling import ode
from asm_tf.sampling.langevin import als, cas, cas_inpaint, check_every
from asm_tf.sampling.settings import ODE_SAMPLERS


def initial_value(seeds, example_shape, source):
    """U[init_low, init_high) in data space per seed, mapped to model space, as the reference starts."""
    u = noise.uniform(noise.fold(seeds, 0), example_shape, source.init_low, source.init_high)
    return source.transform.to_model(u)


def draw(score_model, source, seeds, levels, sampler, *, step_size=None, n_sigma=1, noise_first=False,
         second_order=None, churn=0.0, eta=0.0, trajectory_every=None):
    """`sampler` (als, cas, euler or heun) on `levels` from the initial value of each seed; its outputs in model
    space: (final, denoised[, trajectory]). Arguments may be tensors (the exported graphs'), so nothing is checked
    here: `SamplerSettings.validate` checks eager settings, asm_tf.export the requests. `second_order` (a bool
    tensor) lets one graph run Euler or Heun."""
    x = initial_value(seeds, tuple(source.example_shape), source)
    if sampler in ODE_SAMPLERS:
        second_order = sampler == "heun" if second_order is None else second_order
        return ode.sample(score_model, ode.starting_state(x, seeds, levels[0]), seeds, levels,
                          second_order=second_order, churn=churn, eta=eta)
    if sampler == "cas":
        return cas(score_model, x, seeds, levels, step_size, trajectory_every=trajectory_every)
    return als(score_model, x, seeds, levels, step_size, n_sigma, noise_first, trajectory_every=trajectory_every)


def make_sampler(score_model, schedule, settings, source, *, trajectory_every=None):
    """A tf.function seeds [N] int64 -> (final, denoised) in data space for one run's settings.

    With `trajectory_every=k` (ALS and CAS) it returns a third output, the trajectory [N, T, ...] in data space:
    the states entering every k-th level (of the CAS grid, or of the ALS levels) and the final state.
    """
    settings.validate(schedule)
    check_every(trajectory_every)
    if trajectory_every is not None and settings.sampler in ODE_SAMPLERS:
        raise ValueError(f"trajectories are recorded by ALS and CAS, not by {settings.sampler}")
    levels = settings.sampling_sigmas(schedule).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def sample(seeds):
        outputs = draw(score_model, source, seeds, levels, settings.sampler, step_size=settings.step_size,
                       n_sigma=settings.n_sigma, noise_first=settings.noise_first, churn=settings.churn,
                       eta=settings.eta, trajectory_every=trajectory_every)
        return tuple(source.transform.to_data(output) for output in outputs)

    return sample


def inpaint(score_model, source, levels, step_size, known, mask, seeds):
    """Inpainting in data space: known [N, ...] data-space values, mask [N, ...] bool (True = known), seeds [N].

    CAS on `levels` (`cas_inpaint`) from the usual initial value; returns (final, denoised) in data space whose
    known entries are exactly `known`.
    """
    x = initial_value(seeds, tuple(source.example_shape), source)
    outputs = cas_inpaint(score_model, x, seeds, levels, step_size, source.transform.to_model(known), mask)
    return tuple(tf.where(mask, known, source.transform.to_data(output)) for output in outputs)


def make_inpainter(score_model, schedule, settings, source):
    """A tf.function (known [N, ...] data space, mask [N, ...] bool, seeds [N]) -> (final, denoised) data space.

    CAS with the settings' n_sigma and CAS step size (`SamplerSettings.as_cas`); see `inpaint`.
    """
    settings = settings.as_cas()
    settings.validate(schedule)
    levels = settings.sampling_sigmas(schedule).astype(np.float32)
    shape = [None, *source.example_shape]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape, tf.bool),
                                  tf.TensorSpec([None], tf.int64)])
    def inpainter(known, mask, seeds):
        return inpaint(score_model, source, levels, settings.step_size, known, mask, seeds)

    return inpainter


def sample_in_batches(sampler, seeds, batch_size, log=sys.stdout):
    """Runs `sampler` over `seeds` in batches, printing a progress line per batch; a tuple of numpy arrays
    (final, denoised[, trajectory]), one per sampler output, each concatenated over the batches."""
    seeds = np.asarray(seeds, np.int64)
    outputs = []
    start = time.time()
    with progress.bar(len(seeds), "sampling", "image") as bar:
        for begin in range(0, len(seeds), batch_size):
            batch = seeds[begin:begin + batch_size]
            outputs.append([output.numpy() for output in sampler(tf.constant(batch))])
            bar.update(len(batch))
            if log is not None:
                with progress.printing():
                    print(f"sampled {begin + len(batch)}/{len(seeds)} ({time.time() - start:.1f} s)", file=log,
                          flush=True)
    return tuple(np.concatenate(parts) for parts in zip(*outputs))
