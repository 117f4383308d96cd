"""Annealed Langevin sampling (ALS) and consistent annealed sampling (CAS) as graph while-loops, and the
settings that pick any sampler of a run (ALS, CAS, or the probability-flow ODE of asm_tf.ode) and its levels.

Every image's randomness is a stateless function of its int64 seed: draw 0 is the initial value,
draw k + 1 the noise of sampler step k (asm_tf.ode numbers its draws in its own docstring). Image k therefore
depends only on the weights, the sampler settings and seed k, never on the batch size, its position in the
batch or the device. ALS and CAS return (final sample, EDS of the last step) in model space
(docs/algorithm.md), plus the trajectory when asked; `cas_inpaint` and `inpaint` run CAS with some values known
(exported for serving).
"""

import dataclasses
import sys
import time
from typing import Optional

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from asm_tf import levels as levels_lib
from asm_tf import noise, ode, progress, score
from asm_tf import sigmas as sigmas_lib

STEP_SAMPLERS = ("als", "cas")
ODE_SAMPLERS = ("euler", "heun")
SAMPLERS = STEP_SAMPLERS + ODE_SAMPLERS


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """Sampler defaults of a run; `asm-sample` flags override them.

    `num_steps` is the number of noise levels visited (None: the trained ladder, or CAS's grid refined by
    n_sigma), spaced as `spacing` says: "ladder" sub-samples the trained ladder, "rho" takes EDM's rho schedule
    between `sigma_max` and `sigma_min` (default: the ladder's ends; any level in between is valid: the paper's
    networks never see a level index, and a conditional UNet places one between the trained ones). `step_size`
    and `noise_first` concern ALS and CAS; `churn` and `eta` add noise to the ODE samplers (asm_tf.ode).

    `step_size` is the configured sampler's on these levels; `cas_step_size` and `als_step_size` give CAS's and
    ALS's on the same levels for a switch to them (`with_sampler`: export and inpainting run CAS, asm-sample
    --sampler, the tools' variants), since the paper tunes the two separately.
    """

    sampler: str = "cas"
    n_sigma: int = 1
    step_size: float = 5.6e-6
    cas_step_size: Optional[float] = None
    als_step_size: Optional[float] = None
    noise_first: bool = False
    num_steps: Optional[int] = None
    spacing: str = "ladder"
    rho: float = 7.0
    sigma_max: Optional[float] = None
    sigma_min: Optional[float] = None
    churn: float = 0.0
    eta: float = 0.0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.n_sigma < 1:
            raise ValueError(f"n_sigma must be at least 1, got {self.n_sigma}")
        if not self.step_size > 0:
            raise ValueError(f"step size must be positive, got {self.step_size}")
        for name in STEP_SAMPLERS:
            own = getattr(self, f"{name}_step_size")
            if own is not None and not own > 0:
                raise ValueError(f"{name}_step_size must be positive, got {own}")
        own = getattr(self, f"{self.sampler}_step_size", None)  # None for the ODE samplers
        if own not in (None, self.step_size):
            raise ValueError(f"{self.sampler}_step_size {own:g} differs from step_size {self.step_size:g}, the "
                             "configured sampler's: give one of them")
        if self.spacing not in levels_lib.SAMPLER_SPACINGS:
            raise ValueError(f"spacing must be one of {levels_lib.SAMPLER_SPACINGS}, got {self.spacing!r}")
        if self.num_steps is not None and self.num_steps < 2:
            raise ValueError(f"num_steps must be at least 2 (the first and the last level), got {self.num_steps}")
        if self.spacing == "rho" and self.num_steps is None:
            raise ValueError("spacing 'rho' needs num_steps")
        if self.spacing == "ladder" and (self.sigma_max, self.sigma_min) != (None, None):
            raise ValueError("sigma_max and sigma_min choose the ends of spacing 'rho'; the ladder has its own")
        if self.sampler == "cas" and self.num_steps is not None and self.n_sigma != 1:
            raise ValueError("CAS takes either num_steps (levels picked from the ladder) or n_sigma (the ladder "
                             f"refined), not both: got num_steps {self.num_steps} and n_sigma {self.n_sigma}")
        if not self.rho > 0:
            raise ValueError(f"rho must be positive, got {self.rho}")
        if not (self.churn >= 0 and 0 <= self.eta <= 1):
            raise ValueError(f"need churn >= 0 and 0 <= eta <= 1, got churn {self.churn} and eta {self.eta}")
        if self.churn and self.sampler not in ODE_SAMPLERS:
            raise ValueError(f"churn applies to the samplers {ODE_SAMPLERS}, not {self.sampler}")
        if self.eta and self.sampler != "euler":
            raise ValueError(f"eta applies to the euler sampler (heun takes churn), not {self.sampler}")

    @classmethod
    def defaults(cls, **fields):
        """SamplerSettings with `fields` and the class defaults for the others, whatever gin binds (a plain
        SamplerSettings(...) takes the bindings of a parsed config.gin for the fields it is not given)."""
        return cls(**{**{field.name: field.default for field in dataclasses.fields(cls)}, **fields})

    def override(self, schedule=None, **fields):
        """These settings with the `fields` that are not None (a command's flags left unset keep these values).

        A new sampler comes with its own step size (`with_sampler`) unless `step_size` is given. step_size="auto"
        carries that sampler's step size on these settings' levels to the new ones (`carried_step_size`; it
        needs the run's `schedule`); the ODE samplers take no step size.
        """
        changes = {name: value for name, value in fields.items() if value is not None}
        step_size = changes.pop("step_size", None)
        carry = step_size == "auto"
        tuned = self.with_sampler(changes.pop("sampler", self.sampler), step_size=None if carry else step_size)
        chosen = dataclasses.replace(tuned, **changes)
        if not carry or chosen.sampler in ODE_SAMPLERS:
            return chosen
        return dataclasses.replace(chosen, step_size=carried_step_size(tuned, chosen, schedule))

    def with_sampler(self, sampler, *, step_size=None):
        """These settings, on the same levels, run by `sampler`.

        ALS and CAS take `step_size` if given, else their own (`step_size` if configured, else `cas_step_size` or
        `als_step_size`), else these settings' `step_size` as is, said in a log line; they drop the ODE samplers'
        churn and eta. The step size left behind stays as `{old sampler}_step_size`: a switch back restores it.
        """
        fields = {"sampler": sampler}
        if sampler != self.sampler and self.sampler in STEP_SAMPLERS:
            fields[f"{self.sampler}_step_size"] = self.step_size
        if sampler in STEP_SAMPLERS:
            own = self._own_step_size(sampler) if step_size is None else step_size
            fields.update({"step_size": own, f"{sampler}_step_size": None, "churn": 0.0, "eta": 0.0})
        elif step_size is not None:
            fields["step_size"] = step_size
        return dataclasses.replace(self, **fields)

    def _own_step_size(self, sampler):
        """`sampler`'s step size on these levels; without one, `step_size` as is, said in a log line."""
        own = self.step_size if sampler == self.sampler else getattr(self, f"{sampler}_step_size")
        if own is not None:
            return own
        logging.warning("%s takes the %s step size %g as is: no SamplerSettings.%s_step_size is configured (the "
                        "paper tunes each sampler's step size separately)", sampler.upper(), self.sampler,
                        self.step_size, sampler)
        return self.step_size

    def as_cas(self):
        """These settings run by CAS (`with_sampler`): what serving and inpainting run."""
        return self.with_sampler("cas")

    def label(self):
        """A short name of the settings for directories: cas_n1_eps0.00015, cas_L10_eps0.0003, heun_rho10."""
        if self.sampler in ODE_SAMPLERS:
            noise = "".join(f"_{name}{getattr(self, name):g}" for name in ("churn", "eta") if getattr(self, name))
            levels = "" if self.num_steps is None else f"{self.spacing}{self.num_steps}"
            return f"{self.sampler}_{levels or 'ladder'}{noise}"
        levels = f"n{self.n_sigma}" if self.num_steps is None else f"L{self.num_steps}"
        spacing = "_rho" if self.spacing == "rho" else ""
        return f"{self.sampler}_{levels}{spacing}_eps{self.step_size:g}"

    def sampling_sigmas(self, schedule):
        """The noise levels the sampler visits (float64, levels.sampler_levels): see the class docstring."""
        if self.num_steps is not None and self.spacing == "ladder" and self.num_steps > schedule.num_levels:
            raise ValueError(f"num_steps {self.num_steps} exceeds the {schedule.num_levels} trained levels; "
                             "use spacing 'rho' (any level between the ladder's ends) or CAS's n_sigma")
        levels = levels_lib.sampler_levels(schedule, self.sampler, n_sigma=self.n_sigma, num_steps=self.num_steps,
                                           spacing=self.spacing, rho=self.rho, sigma_max=self.sigma_max,
                                           sigma_min=self.sigma_min).numpy()
        if self.spacing == "rho":
            first, last = levels[0], levels[-1]
            sigmas_lib.check_trained_range((first, last), schedule)
            if not first > last:
                raise ValueError(f"need sigma_max > sigma_min, got {first} and {last}")
        return levels

    def network_calls(self, schedule):
        """Network evaluations per image."""
        count = len(self.sampling_sigmas(schedule))
        if self.sampler in ODE_SAMPLERS:
            return ode.network_calls(count, self.sampler == "heun")
        return count * (self.n_sigma if self.sampler == "als" else 1)

    def steps_per_interval(self, schedule):
        """Steps per interval of the trained ladder: n_sigma (ALS, CAS) scaled by the levels visited."""
        intervals = (len(self.sampling_sigmas(schedule)) - 1) / (schedule.num_levels - 1)
        return intervals * (self.n_sigma if self.sampler == "als" else 1)

    def validate(self, schedule):
        """Raises ValueError (saying what is valid) for levels outside the trained range or a CAS step size
        outside its bounds on the levels visited."""
        levels = self.sampling_sigmas(schedule)
        sigmas_lib.check_trained_range(levels, schedule)
        if self.sampler == "cas":
            sigmas_lib.check_cas_step_size(self.step_size, levels)


def carried_step_size(run_settings, chosen, schedule):
    """The run's step size carried to `chosen`'s levels (same sampler) with sigmas.extrapolate_step_size: the
    number of steps per trained interval stands in for n_sigma and each setting's own last level for sigma_L.
    For another sampler, carry from `run_settings.with_sampler(chosen.sampler)`."""
    if chosen.sampler != run_settings.sampler:
        raise ValueError(f"a {run_settings.sampler} step size cannot be carried to {chosen.sampler}, only to other "
                         f"{run_settings.sampler} levels")
    return sigmas_lib.extrapolate_step_size(run_settings.step_size, sampler=chosen.sampler,
                                            n_from=run_settings.steps_per_interval(schedule),
                                            n_to=chosen.steps_per_interval(schedule),
                                            sigma_end=float(run_settings.sampling_sigmas(schedule)[-1]),
                                            sigma_end_to=float(chosen.sampling_sigmas(schedule)[-1]))


def initial_value(seeds, example_shape, source):
    """U[init_low, init_high) in data space per seed, mapped to model space, as the reference starts."""
    u = noise.uniform(noise.fold(seeds, 0), example_shape, source.init_low, source.init_high)
    return source.transform.to_model(u)


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


def _check_every(trajectory_every):
    if trajectory_every is not None and trajectory_every < 1:
        raise ValueError(f"trajectory_every must be at least 1, got {trajectory_every}")


def als(score_model, x, seeds, sigmas, step_size, n_sigma, noise_first=False, *, trajectory_every=None):
    """ALS: n_sigma Langevin steps per level with alpha_i = eps (sigma_i / sigma_L)^2
    (docs/algorithm.md#annealed-langevin-sampling-als).

    `sigmas` float32 [L]; `n_sigma` int32 scalar. The EDS is taken from the state just before
    the last update, as in the reference. With `trajectory_every=k` a third output [B, T, ...] holds
    the states entering levels 0, k, 2k, ... and the final state.
    """
    _check_every(trajectory_every)
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
        beta = levels_lib.cas_beta(eta, sigma, next_sigma)
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
    _check_every(trajectory_every)
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


def make_sampler(score_model, schedule, settings, source, *, trajectory_every=None):
    """A tf.function seeds [N] int64 -> (final, denoised) in data space for one run's settings.

    With `trajectory_every=k` (ALS and CAS) it returns a third output, the trajectory [N, T, ...] in data space:
    the states entering every k-th level (of the CAS grid, or of the ALS levels) and the final state.
    """
    settings.validate(schedule)
    _check_every(trajectory_every)
    if trajectory_every is not None and settings.sampler in ODE_SAMPLERS:
        raise ValueError(f"trajectories are recorded by ALS and CAS, not by {settings.sampler}")
    levels = settings.sampling_sigmas(schedule).astype(np.float32)
    example_shape = tuple(source.example_shape)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def sample(seeds):
        x = initial_value(seeds, example_shape, source)
        if settings.sampler in ODE_SAMPLERS:
            outputs = ode.sample(score_model, ode.starting_state(x, seeds, levels[0]), seeds, levels,
                                 second_order=settings.sampler == "heun", churn=settings.churn, eta=settings.eta)
        elif settings.sampler == "cas":
            outputs = cas(score_model, x, seeds, levels, settings.step_size, trajectory_every=trajectory_every)
        else:
            outputs = als(score_model, x, seeds, levels, settings.step_size, settings.n_sigma,
                          settings.noise_first, trajectory_every=trajectory_every)
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
