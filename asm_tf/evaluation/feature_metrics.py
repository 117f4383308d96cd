"""Distances between two sets of features beyond the Frechet distance: KID and precision/recall.

* KID (Binkowski et al. 2018): the squared MMD with the kernel k(x, y) = (x.y / D + 1)^3, estimated without
  bias (the U-statistic over all pairs of distinct points), with a jackknife standard error.
* Precision and recall (Kynkaenniemi et al. 2019): each set spans a manifold, the union of balls around its
  points whose radius is the distance to the point's k-th nearest neighbour in its own set; precision is
  the share of generated points inside the real manifold, recall the share of real points inside the
  generated one.
"""

import dataclasses

import numpy as np
from sklearn.metrics import pairwise
from sklearn.neighbors import NearestNeighbors

KID_DEGREE = 3
PR_NEIGHBOURS = 3


@dataclasses.dataclass(frozen=True)
class KernelInceptionDistance:
    """The unbiased squared MMD `value` and its jackknife standard error `standard_error`."""

    value: float
    standard_error: float


def _polynomial_kernel(x, y):
    return pairwise.polynomial_kernel(x, y, degree=KID_DEGREE, gamma=1.0 / x.shape[1], coef0=1.0)


def _jackknife_variance(leave_one_out):
    """(n - 1) / n sum_i (theta_(-i) - mean)^2: the jackknife variance from the leave-one-out estimates."""
    n = len(leave_one_out)
    return (n - 1) / n * float(np.sum(np.square(leave_one_out - np.mean(leave_one_out))))


def kernel_inception_distance(features1, features2):
    """KID between features [M, D] and [N, D] (M, N >= 3), float64.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (M (M - 1)) + sum_{i != j} k(y_i, y_j) / (N (N - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (M N),
    unbiased, so it averages to 0 over pairs of samples of one distribution and can be negative. Its standard
    error is the two-sample jackknife's (every point of either set left out in turn), in closed form from the
    kernel matrices' row sums.
    """
    x = np.asarray(features1, np.float64)
    y = np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two feature matrices [M, D] and [N, D], got {x.shape} and {y.shape}")
    m, n = len(x), len(y)
    if min(m, n) < 3:
        raise ValueError(f"KID needs at least 3 points in each set, got {m} and {n}")
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    rows_xx, rows_yy = kxx.sum(axis=1), kyy.sum(axis=1)
    sum_xx, sum_yy, sum_xy = rows_xx.sum(), rows_yy.sum(), kxy.sum()
    value = sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * sum_xy / (m * n)
    without_x = ((sum_xx - 2.0 * rows_xx) / ((m - 1) * (m - 2)) + sum_yy / (n * (n - 1))
                 - 2.0 * (sum_xy - kxy.sum(axis=1)) / ((m - 1) * n))
    without_y = (sum_xx / (m * (m - 1)) + (sum_yy - 2.0 * rows_yy) / ((n - 1) * (n - 2))
                 - 2.0 * (sum_xy - kxy.sum(axis=0)) / (m * (n - 1)))
    variance = _jackknife_variance(without_x) + _jackknife_variance(without_y)
    return KernelInceptionDistance(value=float(value), standard_error=float(np.sqrt(variance)))


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


def _manifold_radii(features, k):
    """Distance of every point to its k-th nearest neighbour among the others of its set."""
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return distances[:, k]


def precision_recall(real, generated, *, k=PR_NEIGHBOURS):
    """Improved precision and recall of `generated` features against `real` ones (each [N, D], N > k)."""
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points in each set, "
                         f"got {len(real)} real and {len(generated)} generated")
    distances = pairwise.euclidean_distances(generated, real)
    inside_real = distances <= _manifold_radii(real, k)[None, :]
    inside_generated = distances <= _manifold_radii(generated, k)[:, None]
    return PrecisionRecall(precision=float(np.mean(inside_real.any(axis=1))),
                           recall=float(np.mean(inside_generated.any(axis=0))))
