"""Noise schedules, CAS step-size checks, coefficients and extrapolation, in NumPy and with messages that say
what is valid; the formulas themselves are asm_tf.noise_levels.formulas' TensorFlow ops.

Notation (docs/algorithm.md#notation): sigma_1 > ... > sigma_L are the noise levels, epsilon the step size,
eta = epsilon / sigma_L^2, n_sigma the steps per level (ALS) or the grid refinement factor (CAS).
"""

import dataclasses
from typing import Optional

import gin
import numpy as np

from asm_tf.noise_levels import formulas

LADDER_SPACINGS = ("geometric", "linear")  # how the trained noise levels are spaced


def _check_ladder(sigma_begin, sigma_end, num_levels, spacing="geometric"):
    """Raises ValueError unless the arguments describe a ladder of at least 2 decreasing positive levels."""
    if spacing not in LADDER_SPACINGS:
        raise ValueError(f"spacing must be one of {LADDER_SPACINGS}, got {spacing!r}")
    if not sigma_begin > sigma_end > 0:
        raise ValueError(f"need sigma_begin > sigma_end > 0, got {sigma_begin} and {sigma_end}")
    if num_levels < 2:
        raise ValueError(f"need at least 2 noise levels, got {num_levels}")


def ladder(sigma_begin, sigma_end, num_levels, spacing="geometric"):
    """Decreasing noise levels from `sigma_begin` to `sigma_end` (both included), float64."""
    _check_ladder(sigma_begin, sigma_end, num_levels, spacing)
    return formulas.ladder(float(sigma_begin), float(sigma_end), int(num_levels), spacing).numpy()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """The training noise levels; `refined(n)` gives the CAS sampling grid.

    Training draws a level per example, uniformly over the ladder (the paper), or, with `train_log_mean`,
    level k with probability proportional to the normal density of ln sigma_k with that mean and
    `train_log_std` (EDM's log-normal training density, restricted to the ladder).
    """

    sigma_begin: float = 50.0
    sigma_end: float = 0.01
    num_levels: int = 232
    spacing: str = "geometric"
    train_log_mean: Optional[float] = None
    train_log_std: float = 1.0

    def __post_init__(self):
        _check_ladder(self.sigma_begin, self.sigma_end, self.num_levels, self.spacing)
        if not self.train_log_std > 0:
            raise ValueError(f"train_log_std must be positive, got {self.train_log_std}")

    def sigmas(self):
        return ladder(self.sigma_begin, self.sigma_end, self.num_levels, self.spacing)

    def level_probabilities(self):
        """Training probabilities of the levels [L] (float64), or None for the uniform draw."""
        if self.train_log_mean is None:
            return None
        density = np.exp(-0.5 * np.square((np.log(self.sigmas()) - self.train_log_mean) / self.train_log_std))
        return density / np.sum(density)

    def refined(self, n_sigma):
        """The CAS grid of (L - 1) n_sigma + 1 levels (levels.refined), float64."""
        if n_sigma < 1:
            raise ValueError(f"n_sigma must be at least 1, got {n_sigma}")
        return formulas.refined(self, n_sigma).numpy()


def min_ratio(sigmas):
    """gamma (levels.min_ratio) as a float."""
    return float(formulas.min_ratio(sigmas))


def cas_step_size_bounds(sigmas):
    """The open interval of valid CAS step sizes on `sigmas` (levels.cas_step_size_bounds) as floats."""
    return tuple(float(bound) for bound in formulas.cas_step_size_bounds(sigmas))


def check_cas_step_size(step_size, sigmas):
    """Raises ValueError naming the valid interval unless CAS's noise coefficient beta is real."""
    low, high = cas_step_size_bounds(sigmas)
    if not low < step_size < high:
        raise ValueError(
            f"step size {step_size:.6g} is outside the CAS bounds for this grid of {len(sigmas)} levels "
            f"(sigma_L = {sigmas[-1]:.6g}, gamma = {min_ratio(sigmas):.6f}): choose a step size strictly "
            f"between {low:.6g} and {high:.6g}, i.e. sigma_L^2 (1 - gamma) < eps < sigma_L^2 (1 + gamma)")


def cas_coefficients(step_size, sigmas):
    """(eta, beta) of CAS after checking the bounds: eta = eps / sigma_L^2 and beta [L' - 1] (levels.cas_beta),
    one per transition."""
    check_cas_step_size(step_size, sigmas)
    sigmas = np.asarray(sigmas, np.float64)
    eta = step_size / sigmas[-1] ** 2
    return float(eta), formulas.cas_beta(eta, sigmas[:-1], sigmas[1:]).numpy()


def extrapolate_step_size(step_size, *, sampler, n_from, n_to, sigma_end, sigma_end_to=None):
    """Carries a step size tuned at `n_from` steps per level on levels ending at `sigma_end` to `n_to` steps per
    level on levels ending at `sigma_end_to` (default: `sigma_end`) (docs/algorithm.md#step-size-extrapolation).

    Both samplers step with eta = eps / sigma^2 of their last level, so the rule carries eta: ALS keeps
    eta * n_sigma fixed, CAS the signal contraction per original level, (1 - eta_n)^n: a reconstruction of the
    paper's Appendix B, not yet checked against its text.
    """
    eta_from = step_size / sigma_end**2
    if sampler == "als":
        eta_to = eta_from * n_from / n_to
    elif sampler == "cas":
        if not 0 < eta_from < 1:
            raise ValueError(f"CAS extrapolation needs 0 < eps / sigma_L^2 < 1, got {eta_from:.6g}")
        eta_to = 1.0 - (1.0 - eta_from) ** (n_from / n_to)
    else:
        raise ValueError(f"sampler must be 'als' or 'cas', got {sampler!r}")
    return (sigma_end if sigma_end_to is None else sigma_end_to)**2 * eta_to


def check_trained_range(levels, schedule, rtol=1e-6):
    """Raises ValueError unless every level lies in the trained range [sigma_L, sigma_1] of `schedule`."""
    low, high = schedule.sigma_end * (1 - rtol), schedule.sigma_begin * (1 + rtol)
    outside = [float(level) for level in np.atleast_1d(levels) if not low <= level <= high]
    if outside:
        raise ValueError(f"noise level(s) {', '.join(f'{level:.6g}' for level in outside)} outside the trained "
                         f"range [{schedule.sigma_end:g}, {schedule.sigma_begin:g}]: the network never saw them")


@dataclasses.dataclass(frozen=True)
class StepSizeReport:
    """What a sampler setting means for the step size.

    `levels` is the number of noise levels the sampler visits (L for ALS, the refined L' for CAS);
    `ratio` the smallest sigma_{i+1} / sigma_i of those levels; `bounds` the open interval of valid CAS
    step sizes (None for ALS). With a step size: eta = eps / sigma_L^2, `beta` the (min, max) CAS noise
    coefficient, and `error` the reason the step size is invalid (else None).
    """

    sampler: str
    n_sigma: int
    levels: int
    ratio: float
    bounds: tuple = None
    step_size: float = None
    eta: float = None
    beta: tuple = None
    error: str = None


def step_size_report(schedule, sampler, n_sigma, step_size=None):
    """StepSizeReport for `schedule` (a NoiseSchedule) sampled by `sampler` ('als' or 'cas') with `n_sigma`."""
    if sampler not in ("als", "cas"):
        raise ValueError(f"sampler must be 'als' or 'cas', got {sampler!r}")
    if n_sigma < 1:
        raise ValueError(f"n_sigma must be at least 1, got {n_sigma}")
    levels = formulas.sampler_levels(schedule, sampler, n_sigma=n_sigma).numpy()
    fields = dict(sampler=sampler, n_sigma=n_sigma, levels=len(levels), ratio=min_ratio(levels))
    if sampler == "cas":
        fields["bounds"] = cas_step_size_bounds(levels)
    if step_size is None:
        return StepSizeReport(**fields)
    if not step_size > 0:
        raise ValueError(f"step size must be positive, got {step_size}")
    fields.update(step_size=step_size, eta=step_size / float(levels[-1]) ** 2)
    if sampler == "cas":
        try:
            _, beta = cas_coefficients(step_size, levels)
            fields["beta"] = (float(np.min(beta)), float(np.max(beta)))
        except ValueError as error:
            fields["error"] = str(error)
    return StepSizeReport(**fields)
