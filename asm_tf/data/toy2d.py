"""2-D toy data: swissroll, 8gaussians and 25gaussians as the notebook generates them."""

import gin
import numpy as np
import sklearn.datasets

from asm_tf.data import pipeline
from asm_tf.data.source import DataSource
from asm_tf.data.transforms import IDENTITY_POINTS

POOL_SIZE = 100_000


def _swissroll(n, rng):
    points, _ = sklearn.datasets.make_swiss_roll(n_samples=n, noise=0.25, random_state=int(rng.integers(2**32)))
    return points[:, [0, 2]] / 7.5


def _eight_gaussians(n, rng):
    angles = np.arange(8) * (np.pi / 4)
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = centres[rng.integers(0, 8, size=n)] + 0.02 * rng.standard_normal((n, 2))
    return points / 1.414


def _twenty_five_gaussians(n, rng):
    grid = 2.0 * np.arange(-2, 3)
    centres = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    points = centres[rng.integers(0, 25, size=n)] + 0.05 * rng.standard_normal((n, 2))
    return points / 2.828


GENERATORS = {"swissroll": _swissroll, "8gaussians": _eight_gaussians, "25gaussians": _twenty_five_gaussians}


def sample(name, n, seed):
    """`n` points of toy set `name` as float32 [n, 2], a fixed function of `seed`."""
    if name not in GENERATORS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {sorted(GENERATORS)}")
    return GENERATORS[name](n, np.random.default_rng(seed)).astype(np.float32)


@gin.configurable
def toy2d(name="swissroll", pool_size=POOL_SIZE, pool_seed=0):
    """A DataSource over a fixed pool of `pool_size` points, reshuffled every epoch; samplers start from U[-3, 3]^2.

    Served like the in-memory image sets (pipeline.random_access_dataset): seeded, shardable, checkpointable.
    """
    pool = sample(name, pool_size, pool_seed)
    fetch = pipeline.in_memory_fetch(pool)

    def make_dataset(batch_size, seed, shard=(0, 1), augment=True):  # points have no augmentation
        return pipeline.random_access_dataset(fetch, batch_size=batch_size, seed=seed, shard=shard,
                                              transform=IDENTITY_POINTS, random_flip=False)

    return DataSource(name=name, kind="points", example_shape=(2,), make_dataset=make_dataset,
                      transform=IDENTITY_POINTS, init_low=-3.0, init_high=3.0, num_examples=pool_size)
