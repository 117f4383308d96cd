"""Throughput of an input pipeline on CIFAR-shaped data (32x32x3, uint8 sources), as one JSON line.

    python tools/benchmarks/benchmark_data.py --source=synthetic --batch_size=128 --seconds=10

Sources (none touches the network):
  synthetic   random uint8 images held in memory: the path cifar10() takes (in memory, random access)
  mock_tfds   cifar10() itself under tfds.testing.mock_data (decoded from PNG records into memory first)
  png_folder  a temporary folder of PNG files read by image_folder(in_memory=False): decoding at every read
The pipeline applies the random flip and the configured transform, as in training. The first `--warmup`
batches (which include tracing and filling the prefetch buffer) are not timed.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

from asm_tf.data import image_folder, tfds_images  # noqa: E402
from asm_tf.data.synthetic import synthetic_source  # noqa: E402
from asm_tf.data.transforms import Transform  # noqa: E402

SOURCES = ("synthetic", "mock_tfds", "png_folder")
SHAPE = (32, 32, 3)


def png_folder_source(folder, num_examples, transform):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(num_examples):
        Image.fromarray(rng.integers(0, 256, SHAPE, dtype=np.uint8)).save(os.path.join(folder, f"{index:06d}.png"))
    return image_folder.image_folder(folder, image_size=SHAPE[0], channels=SHAPE[2], transform=transform,
                                     in_memory=False)


def batches_per_second(source, *, batch_size, seconds, warmup, seed=0):
    """(batches per second, batches timed) of next() on a plain iterator over source.make_dataset."""
    iterator = iter(source.make_dataset(batch_size, seed))
    for _ in range(warmup):
        next(iterator).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator).numpy()
        count += 1
    return count / (time.perf_counter() - start), count


def measure(args):
    transform = Transform(rescale=args.rescale, dequantization=args.dequantization)
    start = time.perf_counter()
    if args.source == "synthetic":
        source = synthetic_source(args.num_examples, transform, SHAPE)
        rate, count = batches_per_second(source, batch_size=args.batch_size, seconds=args.seconds,
                                         warmup=args.warmup)
    elif args.source == "mock_tfds":
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=args.num_examples):
            source = tfds_images.cifar10(transform=transform)
            rate, count = batches_per_second(source, batch_size=args.batch_size, seconds=args.seconds,
                                             warmup=args.warmup)
    else:
        with tempfile.TemporaryDirectory() as folder:
            source = png_folder_source(folder, args.num_examples, transform)
            rate, count = batches_per_second(source, batch_size=args.batch_size, seconds=args.seconds,
                                             warmup=args.warmup)
    return {
        "tool": "benchmark_data", "source": args.source, "batch_size": args.batch_size,
        "example_shape": list(SHAPE), "num_examples": args.num_examples, "dequantization": args.dequantization,
        "rescale": args.rescale, "random_flip": True, "batches_timed": count,
        "batches_per_second": round(rate, 2), "images_per_second": round(rate * args.batch_size, 1),
        "seconds_per_batch": round(1.0 / rate, 5), "total_seconds": round(time.perf_counter() - start, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", choices=SOURCES, default="synthetic")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_examples", type=int, default=None,
                        help="examples in the data (default: 50000 synthetic, 2000 mock_tfds and png_folder)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed duration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--dequantization", choices=("none", "uniform", "gaussian"), default="none")
    parser.add_argument("--rescale", action="store_true", help="map to [-1, 1] (Transform.rescale)")
    args = parser.parse_args(argv)
    if args.num_examples is None:
        args.num_examples = 50_000 if args.source == "synthetic" else 2000
    return args


def main(argv=None):
    print(json.dumps(measure(parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
