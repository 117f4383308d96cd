"""A second view of digit samples that no trained network enters: the Fréchet distance between their raw pixels (the
256 values of a 16x16 digit, in [0, 1]) and those of the digits' held-out test split, beside the floor of real
training digits at the same count (docs/evaluation.md; the FDD of asm-eval reads a classifier's features instead).

    python tools/experiments/pixel_distance.py --samples=cas=runs/quickstart/samples/samples.npz \\
        --samples=als=runs/als/samples.npz [--output=denoised] [--csv=pixels.csv]

Each --samples is LABEL=an asm-sample samples.npz of a digits run. Prints one line per sample set (and the floor),
and the ratio to the floor.
"""

import argparse
import csv
import sys

import numpy as np

from asm_tf.data.digits import load_digits
from asm_tf.evaluation.digit_quality import frechet_distance_of_features

FLOOR_SEED = 0


def pixels(images):
    """[N, 256] float64 pixels in [0, 1] of uint8 or float images."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return images.reshape(len(images), -1).astype(np.float64) / scale


def pixel_distance(images, reference):
    return frechet_distance_of_features(pixels(images), pixels(reference))


def floor_distance(count, reference):
    """Real training digits (`count` of them, a seeded draw) against the reference."""
    train, _ = load_digits("train")
    chosen = np.random.default_rng(FLOOR_SEED).permutation(len(train))[:count]
    return pixel_distance(np.round(train[chosen] * 255.0).astype(np.uint8), reference)  # as samples are saved


def parse_samples(text):
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"give --samples as LABEL=PATH, got {text!r}")
    return label, path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=parse_samples, action="append", required=True, help="LABEL=samples.npz")
    parser.add_argument("--output", choices=("final", "denoised"), default="denoised")
    parser.add_argument("--csv", help="also write label, count, distance, floor, ratio here")
    args = parser.parse_args(argv)
    reference, _ = load_digits("test")
    rows = []
    for label, path in args.samples:
        try:
            with np.load(path) as saved:
                images = saved[args.output]
        except (OSError, KeyError, ValueError) as error:
            sys.exit(f"error: cannot read {args.output} images from {path}: {error}")
        if images.shape[1:3] != reference.shape[1:3]:
            sys.exit(f"error: {path} holds images of shape {images.shape[1:]}, not digits of {reference.shape[1:]}")
        distance, floor = pixel_distance(images, reference), floor_distance(len(images), reference)
        rows.append((label, len(images), distance, floor, distance / floor))
        print(f"{label}: pixel Fréchet distance {distance:.3f} for {len(images)} images, floor {floor:.3f} "
              f"(real training digits), ratio {distance / floor:.2f}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "count", "pixel_fd", "floor", "ratio"])
            writer.writerows(rows)


if __name__ == "__main__":
    main()
