"""The settings that pick a run's sampler (ALS, CAS, or the probability-flow ODE of asm_tf.sampling.ode), its levels
and its step size, checked eagerly with messages that say what is valid (docs/sampling.md).
"""

import dataclasses
from typing import Optional

import gin
from absl import logging

from asm_tf.noise_levels import formulas
from asm_tf.noise_levels import schedule as schedule_lib
from asm_tf.sampling import ode

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
        if self.spacing not in formulas.SAMPLER_SPACINGS:
            raise ValueError(f"spacing must be one of {formulas.SAMPLER_SPACINGS}, got {self.spacing!r}")
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
        levels = formulas.sampler_levels(schedule, self.sampler, n_sigma=self.n_sigma, num_steps=self.num_steps,
                                           spacing=self.spacing, rho=self.rho, sigma_max=self.sigma_max,
                                           sigma_min=self.sigma_min).numpy()
        if self.spacing == "rho":
            first, last = levels[0], levels[-1]
            schedule_lib.check_trained_range((first, last), schedule)
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
        schedule_lib.check_trained_range(levels, schedule)
        if self.sampler == "cas":
            schedule_lib.check_cas_step_size(self.step_size, levels)


def carried_step_size(run_settings, chosen, schedule):
    """The run's step size carried to `chosen`'s levels (same sampler) with sigmas.extrapolate_step_size: the
    number of steps per trained interval stands in for n_sigma and each setting's own last level for sigma_L.
    For another sampler, carry from `run_settings.with_sampler(chosen.sampler)`."""
    if chosen.sampler != run_settings.sampler:
        raise ValueError(f"a {run_settings.sampler} step size cannot be carried to {chosen.sampler}, only to other "
                         f"{run_settings.sampler} levels")
    return schedule_lib.extrapolate_step_size(run_settings.step_size, sampler=chosen.sampler,
                                            n_from=run_settings.steps_per_interval(schedule),
                                            n_to=chosen.steps_per_interval(schedule),
                                            sigma_end=float(run_settings.sampling_sigmas(schedule)[-1]),
                                            sigma_end_to=float(chosen.sampling_sigmas(schedule)[-1]))

