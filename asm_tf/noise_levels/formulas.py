"""The noise-level formulas as TensorFlow ops (docs/algorithm.md): the ladder and CAS's refined grid, short
sequences for samplers with few network calls, the rule that picks the levels a sampler walks, and CAS's
step-size bounds and noise coefficient.

The same functions run eagerly (asm_tf.noise_levels.schedule, asm-sample and asm-eval take their `.numpy()`) and inside
exported graphs (n_sigma, the count, the spacing and rho are request inputs there), so each formula exists
once. Nothing here validates its arguments: asm_tf.noise_levels.schedule and asm_tf.sampling do, with messages, and the
exported graphs check their requests. Every sequence is float64, decreases from its first to its last level
and keeps both end points exactly.
"""

import tensorflow as tf

SAMPLER_SPACINGS = ("ladder", "rho")  # how a sampler picks the levels it visits


def _float64(value):
    """A float64 tensor of a tensor or a Python number (without a detour through float32)."""
    return tf.cast(value, tf.float64) if tf.is_tensor(value) else tf.constant(value, tf.float64)


def ladder(first, last, count, spacing="geometric"):
    """`count` levels from `first` to `last`: exp(linspace(log first, log last)) for a geometric spacing,
    linspace(first, last) for a linear one."""
    first, last = _float64(first), _float64(last)
    if spacing == "geometric":
        inner = tf.exp(tf.linspace(tf.math.log(first), tf.math.log(last), count))
    else:
        inner = tf.linspace(first, last, count)
    return tf.concat([first[None], inner[1:-1], last[None]], axis=0)


def refined(schedule, n_sigma=1):
    """`schedule`'s ladder with each interval divided into n_sigma (CAS's grid; n_sigma = 1 gives the trained
    ladder): L' = (L - 1) n_sigma + 1 levels, every n_sigma-th of them a trained level."""
    count = (schedule.num_levels - 1) * n_sigma + 1
    return ladder(schedule.sigma_begin, schedule.sigma_end, count, schedule.spacing)


def spread_indices(num_levels, count):
    """`count` evenly spaced indices of `num_levels` levels, round(linspace(0, L - 1, count)) (int32; repeated
    when count > L), from the first level to the last."""
    last = tf.cast(num_levels - 1, tf.float64)
    return tf.cast(tf.round(tf.linspace(tf.constant(0.0, tf.float64), last, count)), tf.int32)


def subsampled(ladder, count):
    """`count` levels of a trained ladder at its `spread_indices`."""
    ladder = tf.convert_to_tensor(ladder, tf.float64)
    return tf.gather(ladder, spread_indices(tf.shape(ladder)[0], count))


def rho_spaced(first, last, count, rho):
    """EDM's levels (Karras et al. 2022): (first^(1/rho) + t (last^(1/rho) - first^(1/rho)))^rho, t in [0, 1]."""
    first, last = _float64(first), _float64(last)
    inverse = 1.0 / _float64(rho)
    t = tf.linspace(tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64), count)
    inner = tf.pow((first ** inverse + t * (last ** inverse - first ** inverse)), 1.0 / inverse)
    return tf.concat([first[None], inner[1:-1], last[None]], axis=0)


def sampler_levels(schedule, sampler, *, n_sigma=1, num_steps=None, spacing="ladder", rho=7.0, sigma_max=None,
                   sigma_min=None):
    """The levels `sampler` walks on `schedule` (the fields of sampling.SamplerSettings).

    Without `num_steps`: the trained ladder, refined n_sigma times for CAS (ALS takes n_sigma steps per level
    instead). With `num_steps`: spacing "ladder" sub-samples the trained ladder, "rho" takes EDM's rho schedule
    between `sigma_max` and `sigma_min` (default: the ladder's ends). `spacing` may be a string tensor.
    """
    if num_steps is None:
        return refined(schedule, n_sigma if sampler == "cas" else 1)
    first = schedule.sigma_begin if sigma_max is None else sigma_max
    last = schedule.sigma_end if sigma_min is None else sigma_min
    return tf.cond(tf.equal(spacing, "rho"), lambda: rho_spaced(first, last, num_steps, rho),
                   lambda: subsampled(refined(schedule), num_steps))


def min_ratio(levels):
    """gamma: the smallest ratio sigma_{i+1} / sigma_i (all equal on a geometric ladder)."""
    levels = tf.convert_to_tensor(levels, tf.float64)
    return tf.reduce_min(levels[1:] / levels[:-1])


def cas_step_size_bounds(levels):
    """The open interval (sigma_L^2 (1 - gamma), sigma_L^2 (1 + gamma)) of step sizes for which CAS's noise
    coefficient is real on `levels`."""
    levels = tf.convert_to_tensor(levels, tf.float64)
    gamma = min_ratio(levels)
    last = tf.square(levels[-1])
    return last * (1.0 - gamma), last * (1.0 + gamma)


def cas_beta(eta, sigma, next_sigma):
    """CAS's noise coefficient for the step from `sigma` to `next_sigma`: sqrt(1 - ((1 - eta) sigma / next)^2),
    0 where rounding makes the square negative."""
    return tf.sqrt(tf.maximum(1.0 - tf.square((1.0 - eta) * sigma / next_sigma), 0.0))
