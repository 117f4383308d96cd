"""Technique 1 (Song & Ermon 2020): sigma_max ~ the largest pairwise distance between training examples.

    python tools/user/sigma_max.py --gin_file gin_configs/toy2d_swissroll.gin
    python tools/user/sigma_max.py --source toy2d --gin_bindings "toy2d.name = '25gaussians'" --num_batches 50
    python tools/user/sigma_max.py --gin_file gin_configs/cifar10_ncsnv2.gin --batch_size 128

As the reference's --compute_approximate_sigma_max does, it takes the largest pairwise Euclidean distance
within each minibatch of the (transformed, model-space) training data and keeps the running maximum, over
one epoch by default (when the source knows its size) or --num_batches. The suggested sigma_1 is that
maximum. The data source is the run's Experiment.data from the gin files and bindings, or --source, the
name of any gin-registered DataSource factory (toy2d, digits, cifar10, ...) configured by the same bindings.
"""

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

from asm_tf import configuration  # noqa: E402
from asm_tf.noise_levels import design as schedule_design  # noqa: E402


def data_source(source_name):
    """The DataSource named by `source_name`, or the gin configuration's Experiment.data."""
    if source_name is not None:
        try:
            factory = gin.get_configurable(source_name)
        except ValueError as error:
            raise ValueError(f"no gin-registered data source called {source_name!r}") from error
        return factory()
    from asm_tf.experiment import Experiment
    try:
        return Experiment(score_network=None).data
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError("no data source: give a gin file that binds Experiment.data, or --source") from error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", default=[], help="a run's gin file (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="a gin binding (repeatable)")
    parser.add_argument("--source", help="gin name of a DataSource factory (default: the run's Experiment.data)")
    parser.add_argument("--batch_size", type=int, default=128, help="default 128, as the reference's CIFAR-10 run")
    parser.add_argument("--num_batches", type=int, help="batches to scan (default: one epoch, if known)")
    parser.add_argument("--seed", type=int, default=0, help="order of the batches (default 0)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error("--batch_size must be at least 2")
    try:
        configuration.parse(args.gin_file, args.gin_bindings)
        source = data_source(args.source)
        num_batches = args.num_batches
        if num_batches is None:
            if source.num_examples is None:
                raise ValueError(f"data source {source.name!r} does not know its size: give --num_batches")
            num_batches = math.ceil(source.num_examples / args.batch_size)
        batches = source.make_dataset(args.batch_size, args.seed).as_numpy_iterator()
        largest = schedule_design.approximate_sigma_max(batches, num_batches, progress=not args.no_progress)
    except ValueError as error:
        parser.error(str(error))
    print(f"largest pairwise distance in {num_batches} batches of {args.batch_size} from {source.name!r}: "
          f"{largest:.6g}")
    print(f"suggested sigma_max: NoiseSchedule.sigma_begin = {largest:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
