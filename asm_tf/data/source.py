"""The contract between datasets and the rest of the library."""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from asm_tf.data.transforms import Transform


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A training set: its example shape, an input pipeline, and how samplers start.

    `make_dataset(batch_size, seed)` returns an infinite tf.data.Dataset of float32 batches
    [batch_size, *example_shape] already in model space, in an order fixed by `seed`.
    Every source also accepts `make_dataset(batch_size, seed, shard=(index, count))`: the batches of
    input pipeline `index` of `count` (one per worker), each `batch_size` examples; the pipelines
    read disjoint examples. A plain iterator over the dataset checkpoints its position.
    Samplers start from U[init_low, init_high) in data space, mapped through `transform.to_model`.

    Optional: `num_examples` in one epoch of the training split (None if unknown), and
    `labelled_arrays(split)` -> (images float32 [N, *example_shape] in data space, labels int64 [N])
    for sources whose labels serve evaluation (digits, Stacked MNIST).
    """

    name: str
    kind: str  # "image" or "points"
    example_shape: tuple
    make_dataset: Callable[[int, int], tf.data.Dataset]
    transform: Transform
    init_low: float = 0.0
    init_high: float = 1.0
    num_examples: Optional[int] = None
    labelled_arrays: Optional[Callable[[str], tuple]] = None

    def __post_init__(self):
        if self.kind not in ("image", "points"):
            raise ValueError(f"kind must be 'image' or 'points', got {self.kind!r}")


def check_example_shape(source, expected):
    """Raises ValueError, before any training, if `source` yields examples of a shape other than `expected`."""
    expected = tuple(int(d) for d in expected)
    if tuple(source.example_shape) != expected:
        raise ValueError(
            f"data source {source.name!r} yields examples of shape {tuple(source.example_shape)} but the model "
            f"expects {expected}: set the dataset's image_size (and channels) to match the model, or choose "
            f"the model configuration made for this dataset")
