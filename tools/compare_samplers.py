"""ALS against CAS, raw against denoised, on the same seeds: one picture and, for digit images, mode coverage.

    python tools/compare_samplers.py --workdir=runs/quickstart --seeds=0-999 --cas_step_size=2e-5 \
        --als_step_size=2e-5 --output=docs/quickstart_samples.png

Both samplers run from the run's newest EMA weights with its schedule and n_sigma (`--n_sigma` overrides);
step sizes default to the run's. The picture shows the first `--show` seeds in four grids; the JSON line
printed per variant (and written beside the picture) gives, for runs on the bundled digits, the FDD against
the held-out digits with its floor and blur equivalent, the pixel sharpness, KID, precision/recall, modes
covered, KL(classes || uniform) and the share of images classified with probability >= 0.9
(`asm_tf.evaluation.digit_quality`; other runs get the picture only).
"""

import argparse
import dataclasses
import json
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asm_tf  # noqa: E402,F401  (before TensorFlow: turns oneDNN on)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asm_tf import run as run_lib  # noqa: E402
from asm_tf import sampling, summaries  # noqa: E402
from asm_tf.cli import common  # noqa: E402
from asm_tf.evaluation import digit_quality, modes  # noqa: E402


def sample_both(loaded, seeds, *, cas_step_size, als_step_size, n_sigma, batch_size):
    """{"CAS": (final, denoised), "ALS": (final, denoised)} for the same seeds."""
    settings = sampling.SamplerSettings()
    results = {}
    for name, step_size in (("CAS", cas_step_size), ("ALS", als_step_size)):
        variant = dataclasses.replace(settings, sampler=name.lower(), step_size=step_size or settings.step_size,
                                      n_sigma=n_sigma or settings.n_sigma)
        sampler = sampling.make_sampler(loaded.score_model, loaded.experiment.schedule, variant,
                                        loaded.experiment.data)
        print(f"{name}: n_sigma {variant.n_sigma}, step size {variant.step_size:g}", flush=True)
        results[name] = sampling.sample_in_batches(sampler, seeds, batch_size)
    return results


def four_panels(results, show, path):
    """Saves a 2 x 2 figure: rows CAS and ALS, columns raw and denoised, `show` images each."""
    fig, axes = plt.subplots(2, 2, figsize=(8, 8.4), dpi=100)
    for row, (name, outputs) in enumerate(results.items()):
        for column, (kind, images) in enumerate(zip(("raw", "denoised"), outputs)):
            grid = summaries.image_grid(images[:show], padding=2)
            axes[row, column].imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray",
                                     interpolation="nearest")
            axes[row, column].set_title(f"{name}, {kind}")
            axes[row, column].axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", default="0-999")
    parser.add_argument("--cas_step_size", type=float, help="default: the run's step size")
    parser.add_argument("--als_step_size", type=float, help="default: the run's step size")
    parser.add_argument("--n_sigma", type=int, help="default: the run's")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--show", type=int, default=49, help="images per grid in the picture")
    parser.add_argument("--output", default=None, help="PNG path (default: WORKDIR/compare_samplers.png)")
    args = parser.parse_args()
    try:
        run_lib.parse_run_config(args.workdir)
        loaded = run_lib.load_run(args.workdir)
        seeds = common.parse_seeds(args.seeds)
        results = sample_both(loaded, seeds, cas_step_size=args.cas_step_size, als_step_size=args.als_step_size,
                              n_sigma=args.n_sigma, batch_size=args.batch_size)
    except (common.UserError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    output = args.output or os.path.join(args.workdir, "compare_samplers.png")
    four_panels(results, args.show, output)
    print(f"picture: {output}")
    try:
        quality = digit_quality.for_data(loaded.experiment.data, modes.load_classifier())
    except ValueError as error:
        print(f"no quality numbers: {error}")
        return
    report = {"checkpoint": loaded.step, "num_samples": len(seeds)}
    for name, outputs in results.items():
        for kind, images in zip(("raw", "denoised"), outputs):
            numbers = quality.evaluate(images)
            report[f"{name} {kind}"] = summary = {key: value for key, value in numbers.items() if key != "yardsticks"}
            print(json.dumps({"variant": f"{name} {kind}", **summary}))
    with open(os.path.splitext(output)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
