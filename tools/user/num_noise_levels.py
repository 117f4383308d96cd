"""Technique 2 (Song & Ermon 2020): the ratio between noise levels and how many levels a sigma range needs.

    python tools/user/num_noise_levels.py --dim 3072 --sigma_begin 50 --sigma_end 0.01
    python tools/user/num_noise_levels.py --image_size 64 --channels 3 --sigma_begin 140

The ratio gamma = sigma_{i+1} / sigma_i solves
Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = C (C = 0.5 in the paper), and
L = log(sigma_end / sigma_begin) / log(gamma), as the reference's calculate_number_of_steps.R computes it.
CIFAR-10 (D = 3072, sigma 50 to 0.01): gamma = 0.96314, L = 226.8 (the paper's config uses 232).
"""

import argparse
import math
import sys

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

from asm_tf.noise_levels import design as schedule_design  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--dim", type=int, help="number of data dimensions D")
    size.add_argument("--image_size", type=int, help="side of square images (D = side^2 * channels)")
    parser.add_argument("--channels", type=int, default=3, help="image channels, with --image_size (default 3)")
    parser.add_argument("--sigma_begin", type=float, default=50.0, help="largest noise level sigma_1 (default 50)")
    parser.add_argument("--sigma_end", type=float, default=0.01, help="smallest noise level sigma_L (default 0.01)")
    parser.add_argument("--coverage", type=float, default=0.5, help="the constant C (default 0.5)")
    args = parser.parse_args(argv)
    dim = args.dim if args.dim is not None else args.image_size**2 * args.channels
    try:
        ratio = schedule_design.noise_level_ratio(dim, args.coverage)
        levels = schedule_design.num_noise_levels(args.sigma_begin, args.sigma_end, ratio)
    except ValueError as error:
        parser.error(str(error))
    rounded = math.ceil(levels)
    print(f"D = {dim}, C = {args.coverage}, sigma {args.sigma_begin:g} -> {args.sigma_end:g}")
    print(f"ratio gamma           = {ratio:.5f}")
    print(f"L = log(sigma_L/sigma_1)/log(gamma) = {levels:.1f}   (the reference's R script)")
    achieved = (args.sigma_end / args.sigma_begin) ** (1.0 / (rounded - 1))
    print(f"NoiseSchedule.num_levels = {rounded}   (geometric ratio {achieved:.5f}; "
          f"{rounded + 1} levels keep every ratio >= gamma)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
