"""The contract between datasets and the rest of the library."""

import dataclasses
from typing import Callable

import tensorflow as tf

from asm_tf.data.transforms import Transform


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A training set: its example shape, an input pipeline, and how samplers start.

    `make_dataset(batch_size, seed)` returns an infinite tf.data.Dataset of float32 batches
    [batch_size, *example_shape] already in model space, in an order fixed by `seed`.
    Samplers start from U[init_low, init_high) in data space, mapped through `transform.to_model`.
    """

    name: str
    kind: str  # "image" or "points"
    example_shape: tuple
    make_dataset: Callable[[int, int], tf.data.Dataset]
    transform: Transform
    init_low: float = 0.0
    init_high: float = 1.0

    def __post_init__(self):
        if self.kind not in ("image", "points"):
            raise ValueError(f"kind must be 'image' or 'points', got {self.kind!r}")
