"""Tuning without a trained model: sigma_max, the number of noise levels, step sizes, Figure 1 (docs/algorithm.md).

* Technique 1 (Song & Ermon 2020): sigma_1 ~ the largest pairwise distance between training examples,
  estimated, as the reference does, by the maximum over minibatches of the in-batch pairwise distances.
* Technique 2: the ratio gamma = sigma_{i+1} / sigma_i solving
  Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = C, then
  L = log(sigma_L / sigma_1) / log(gamma) as the reference's R script computes it.
* Step sizes: CAS bounds, (eta, beta), and Appendix B's extrapolation (asm_tf.sigmas).
* Figure 1: the noise std during idealised sampling with a perfect score for a point mass x*,
  s*(x, sigma) = -(x - x*) / sigma^2, analytic or simulated with the library's samplers.
"""

import dataclasses
import logging
import math
import os

import gin
import numpy as np
import scipy.optimize
import scipy.stats

from asm_tf import sigmas as sigmas_lib


# ---------------------------------------------------------------------------------------------------
# Technique 1: sigma_max


def max_pairwise_distance(batch):
    """Largest Euclidean distance between two examples of `batch` [B, ...] (float64)."""
    points = np.reshape(np.asarray(batch, np.float64), (len(batch), -1))
    squared_norms = np.sum(points**2, axis=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * points @ points.T
    return float(np.sqrt(max(float(np.max(squared)), 0.0)))


def approximate_sigma_max(batches, num_batches, progress=False):
    """Running maximum of `max_pairwise_distance` over the first `num_batches` of `batches` (Technique 1).

    With progress=True a tqdm bar on stderr shows the running maximum.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")
    bar = None
    if progress:
        import tqdm  # a dependency of tensorflow-datasets
        bar = tqdm.tqdm(total=num_batches, unit="batch", desc="max pairwise distance")
    largest = 0.0
    seen = 0
    for batch in batches:
        largest = max(largest, max_pairwise_distance(batch))
        seen += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(max=f"{largest:.4f}")
        if seen == num_batches:
            break
    if bar is not None:
        bar.close()
    if seen < num_batches:
        raise ValueError(f"the data ran out after {seen} of {num_batches} batches")
    return largest


# ---------------------------------------------------------------------------------------------------
# Technique 2: ratio and number of noise levels


def level_overlap(ratio, dim):
    """Phi(sqrt(2D)(r - 1) + 3r) - Phi(sqrt(2D)(r - 1) - 3r): the coverage C reached by ratio r in D dims."""
    centre = math.sqrt(2.0 * dim) * (ratio - 1.0)
    return float(scipy.stats.norm.cdf(centre + 3.0 * ratio) - scipy.stats.norm.cdf(centre - 3.0 * ratio))


def noise_level_ratio(dim, coverage=0.5):
    """The ratio gamma in (0, 1) with level_overlap(gamma, dim) = coverage (Technique 2; the paper uses C = 0.5)."""
    if dim < 1:
        raise ValueError(f"the data dimension must be at least 1, got {dim}")
    upper = level_overlap(1.0, dim)  # Phi(3) - Phi(-3), the most any ratio reaches
    if not 0.0 < coverage < upper:
        raise ValueError(f"coverage C must be in (0, {upper:.4f}), got {coverage}")
    return float(scipy.optimize.brentq(lambda r: level_overlap(r, dim) - coverage, 1e-12, 1.0, xtol=1e-14))


def num_noise_levels(sigma_begin, sigma_end, ratio):
    """L = log(sigma_end / sigma_begin) / log(ratio), a real number as in the reference's R script.

    A geometric ladder of L levels has L - 1 ratios, so ceil(L) + 1 levels keep every ratio >= `ratio`.
    """
    if not sigma_begin > sigma_end > 0:
        raise ValueError(f"need sigma_begin > sigma_end > 0, got {sigma_begin} and {sigma_end}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    return math.log(sigma_end / sigma_begin) / math.log(ratio)


# ---------------------------------------------------------------------------------------------------
# Step sizes


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
    levels = schedule.refined(n_sigma) if sampler == "cas" else schedule.sigmas()
    fields = dict(sampler=sampler, n_sigma=n_sigma, levels=len(levels), ratio=sigmas_lib.min_ratio(levels))
    if sampler == "cas":
        fields["bounds"] = sigmas_lib.cas_step_size_bounds(levels)
    if step_size is None:
        return StepSizeReport(**fields)
    if not step_size > 0:
        raise ValueError(f"step size must be positive, got {step_size}")
    fields.update(step_size=step_size, eta=step_size / float(levels[-1]) ** 2)
    if sampler == "cas":
        try:
            _, beta = sigmas_lib.cas_coefficients(step_size, levels)
            fields["beta"] = (float(np.min(beta)), float(np.max(beta)))
        except ValueError as error:
            fields["error"] = str(error)
    return StepSizeReport(**fields)


# ---------------------------------------------------------------------------------------------------
# Figure 1: noise std during idealised sampling


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
    _, beta = sigmas_lib.cas_coefficients(eta * sigmas[-1] ** 2, sigmas)  # a ValueError outside the bounds
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
    sigmas_lib.check_cas_step_size(cas_step_size, grid)
    curves.append(Curve(f"CAS n_sigma={cas_n_sigma}", "cas", cas_n_sigma, cas_step_size, grid,
                        cas_noise_std(grid, cas_step_size / sigma_end**2)))
    return curves


def write_curves_csv(curves, path):
    """One row per sampler step: curve, sampler, n_sigma, step, progress (levels), sigma, std."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("curve,sampler,n_sigma,step,progress,sigma,std\n")
        for curve in curves:
            for step, (progress, sigma, std) in enumerate(zip(curve.progress, curve.sigma, curve.std)):
                out.write(f"{curve.name},{curve.sampler},{curve.n_sigma},{step},{progress:.6f},{sigma:.9g},{std:.9g}\n")


def plot_figure1(curves, path, simulated=None):
    """Figure 1 as a PNG: (a) std against progress (levels), (b) ALS std minus CAS std at each level.

    `simulated`: optional list of (curve name, progress [K], std [K]) measured by `simulate_noise_std`,
    drawn as markers over the analytic curve of the same name.
    """
    from matplotlib.figure import Figure

    cas = next(c for c in curves if c.sampler == "cas")
    num_levels = len(cas.at_levels())
    figure = Figure(figsize=(12, 4.5))
    panel_a, panel_b = figure.subplots(1, 2)
    colors = {}
    for curve in curves:
        style = dict(color="black", linewidth=2.5, zorder=1) if curve.sampler == "cas" else dict(linewidth=1.2)
        (line,) = panel_a.plot(curve.progress, curve.std, label=curve.name, **style)
        colors[curve.name] = line.get_color()
    for name, progress, std in simulated or ():
        panel_a.plot(progress, std, "o", markersize=4, markerfacecolor="none", color=colors.get(name),
                     label=f"{name} (simulated)")
    ticks = [0, num_levels / 4, num_levels / 2, 3 * num_levels / 4, num_levels]
    panel_a.set(yscale="log", xlabel="sampling progress (noise levels)", ylabel="std of x - x*",
                title="(a) noise std during sampling, perfect score", xticks=ticks)
    panel_a.legend(fontsize=8)
    reference = cas.at_levels()
    for curve in curves:
        if curve.sampler == "als":
            difference = curve.at_levels()[1:] - reference[1:]
            panel_b.plot(np.arange(1, num_levels), difference, label=curve.name, color=colors[curve.name])
    panel_b.set(yscale="log", xlabel="noise level index", ylabel="ALS std - CAS std",
                title="(b) excess noise of ALS over CAS", xticks=ticks)
    panel_b.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


class PointMassScore:
    """Exact network for data concentrated at the origin: net(x) = sigma * s*(x, sigma) = -x / sigma.

    Has `takes_sigma = True`, so asm_tf.score.ScoreModel passes it the per-example sigma.
    """

    takes_sigma = True

    def __call__(self, x, sigma, training=False):
        import tensorflow as tf
        sigma = tf.reshape(tf.cast(sigma, x.dtype), [-1] + [1] * (x.shape.rank - 1))
        return -x / sigma


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
    import tensorflow as tf

    from asm_tf import noise, sampling
    from asm_tf.score import ScoreModel

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
            entering = als_noise_std(levels[:last + 1], eta, curve.n_sigma)[-1]
            analytic.append(math.sqrt((1.0 - eta) ** 2 * entering**2 + 2.0 * eta * float(levels[last]) ** 2))
    return np.array(progress, np.float64), np.array(analytic), np.array(simulated)
