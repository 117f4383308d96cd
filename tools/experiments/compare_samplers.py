"""Samplers side by side, raw against denoised, on the same seeds: one picture and, for digit images, quality.

    python tools/experiments/compare_samplers.py --workdir=runs/quickstart --seeds=0-999 --variant=cas \
        --variant=als:step_size=1e-4 --variant=heun:num_steps=5,spacing=rho --output=docs/quickstart_samples.png

Each --variant (default: cas and als) is SAMPLER[:FIELD=VALUE,...] as in tools/experiments/sampler_calls.py
(asm_tf.cli.common.parse_sampler_variant; ALS and CAS step sizes default to the run's, read on the run's own
levels, and are carried to the variant's levels). All run from the run's newest EMA weights. The picture shows
the first `--show` seeds, a row of two grids per variant; the JSON line printed per variant (and written beside
the picture) gives, for runs on the bundled digits, the FDD against the held-out digits with its floor and blur
equivalent, the pixel sharpness, KID, precision/recall, modes covered, KL(classes || uniform) and the share of
images classified with probability >= 0.9 (`asm_tf.evaluation.digit_quality`; other runs get the picture only).
"""

import argparse
import json
import os
import sys

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import matplotlib.pyplot as plt  # noqa: E402

from asm_tf import run_loading, sampling, summaries  # noqa: E402
from asm_tf.cli import common  # noqa: E402
from asm_tf.evaluation import digit_quality, modes  # noqa: E402


def sample_variants(loaded, seeds, variants, *, batch_size):
    """{variant: (final, denoised)} for the same seeds."""
    schedule = loaded.experiment.schedule
    results = {}
    for text in variants:
        settings = common.parse_sampler_variant(text, loaded.sampler_settings, schedule)
        sampler = sampling.make_sampler(loaded.score_model, schedule, settings, loaded.experiment.data)
        print(f"{text}: {settings} ({settings.network_calls(schedule)} network calls per image)", flush=True)
        results[text] = sampling.sample_in_batches(sampler, seeds, batch_size)
    return results


def panels(results, show, path):
    """Saves a figure with one row per variant and the columns raw and denoised, `show` images each."""
    fig, axes = plt.subplots(len(results), 2, figsize=(8, 4.2 * len(results)), dpi=100, squeeze=False)
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
    parser.add_argument("--variant", action="append", help="a sampler variant (repeat; default: cas and als)")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--show", type=int, default=49, help="images per grid in the picture")
    parser.add_argument("--output", default=None, help="PNG path (default: WORKDIR/compare_samplers.png)")
    args = parser.parse_args()
    try:
        loaded = run_loading.load_run(args.workdir)
        seeds = common.parse_seeds(args.seeds)
        results = sample_variants(loaded, seeds, args.variant or ["cas", "als"], batch_size=args.batch_size)
    except (common.UserError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    output = args.output or os.path.join(args.workdir, "compare_samplers.png")
    panels(results, args.show, output)
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
