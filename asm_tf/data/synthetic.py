"""Random uint8 images held in memory, served like an in-memory dataset: data for benchmarks that needs no
download (tools/benchmarks/benchmark_data.py, benchmark_trainer.py --synthetic_data)."""

import numpy as np

from asm_tf.data import pipeline


def synthetic_source(num_examples, transform, example_shape):
    """`num_examples` random images of `example_shape` (seed 0), random access with flips."""
    images = np.random.default_rng(0).integers(0, 256, (num_examples, *example_shape), dtype=np.uint8)
    return pipeline.random_access_source(
        name="synthetic", make_fetch=lambda: pipeline.in_memory_fetch(images), example_shape=example_shape,
        num_examples=num_examples, transform=transform, random_flip=True)
