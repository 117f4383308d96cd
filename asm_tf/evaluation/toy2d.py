"""Nearest-neighbour distances between generated and real 2-D points, the metric of the reference's 2-D notebook."""

import dataclasses

import numpy as np
import scipy.spatial


@dataclasses.dataclass(frozen=True)
class Toy2DDistances:
    """`to_real`: mean over generated points of the distance to the nearest real point;
    `to_fake`: mean over real points of the distance to the nearest generated point; `total`: their sum."""

    to_real: float
    to_fake: float
    total: float


def _as_points(points, name):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{name} must be a non-empty array of 2-D points [N, 2], got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} contains NaN or infinite coordinates (did the sampler diverge?)")
    return points


def _mean_nearest_distance(queries, reference):
    distances, _ = scipy.spatial.cKDTree(reference).query(queries, k=1)
    return float(np.mean(distances))


def distances(*, generated, real):
    """The three nearest-neighbour distances of the notebook's metric (KD-trees, Euclidean)."""
    generated = _as_points(generated, "generated")
    real = _as_points(real, "real")
    to_real = _mean_nearest_distance(generated, real)
    to_fake = _mean_nearest_distance(real, generated)
    return Toy2DDistances(to_real=to_real, to_fake=to_fake, total=to_real + to_fake)


def distance_total(generated, real):
    """Mean nearest-real distance over generated points plus mean nearest-generated distance over real points."""
    return distances(generated=generated, real=real).total
