"""The contract between datasets and the rest of the library."""

import dataclasses
import functools
import inspect
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
    read disjoint examples. A plain iterator over the dataset checkpoints its position. With
    `make_dataset(..., augment=False)` the batches are neither flipped nor dequantised (reference statistics).
    Samplers start from U[init_low, init_high) in data space, mapped through `transform.to_model`.

    Optional: `num_examples` in one epoch of the training split (None if unknown), and
    `labelled_arrays(split)` -> (images float32 [N, *example_shape] in data space, labels int64 [N])
    for sources whose labels serve evaluation (digits, Stacked MNIST), with `split` the one trained on.
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
    split: Optional[str] = None
    missing: Optional[str] = None  # why the data are not on disk (make_dataset then raises FileNotFoundError)

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


def defer_missing_data(example_shape_of):
    """Decorates a dataset factory so that missing data fail when batches are asked for, not before.

    A run can then be sampled, exported or dry-run where its training data are absent: the factory returns
    a source of the right shape whose `missing` says why, and whose make_dataset raises the factory's
    FileNotFoundError. `example_shape_of(**arguments)` gives the shape from the factory's arguments.
    """
    def decorate(factory):
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def wrapped(*args, **kwargs):
            try:
                return factory(*args, **kwargs)
            except FileNotFoundError as error:
                message = str(error)
                arguments = signature.bind(*args, **kwargs)
                arguments.apply_defaults()

                def make_dataset(*_, **__):
                    raise FileNotFoundError(message)

                return DataSource(name=factory.__name__, kind="image",
                                  example_shape=tuple(example_shape_of(**arguments.arguments)),
                                  make_dataset=make_dataset, transform=arguments.arguments.get("transform") or Transform(),
                                  missing=message)
        return wrapped
    return decorate
