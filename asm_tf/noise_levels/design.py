"""Choosing a noise schedule from the data before training: Techniques 1 and 2 of Song & Ermon (2020)
(docs/algorithm.md#techniques-1-and-2).

* Technique 1: sigma_1 ~ the largest pairwise distance between training examples, estimated, as the reference
  does, by the maximum over minibatches of the in-batch pairwise distances.
* Technique 2: the ratio gamma = sigma_{i+1} / sigma_i solving
  Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = C, then
  L = log(sigma_L / sigma_1) / log(gamma) as the reference's R script computes it.
"""

import math

import numpy as np
import scipy.optimize
import scipy.stats

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
