"""FDD (raw and denoised, with bootstrap standard errors) against network calls per image, per sampler, on a
digits run: one JSON report per variant (kept: running the command again only adds what is missing), a plot
and a Markdown table.

    python tools/experiments/sampler_calls.py --workdir=runs/quickstart --output_dir=runs/calls --seeds=0-499 \
        --variant=cas --variant=cas:num_steps=10 --variant=heun:num_steps=5,spacing=rho \
        --variant=als:step_size=1e-4 --reference=cas

A variant is SAMPLER[:FIELD=VALUE,...] (asm_tf.cli.common.parse_sampler_variant); the fields it does not give take
SamplerSettings' defaults (the trained ladder, one step per level), not the run's. An ALS or CAS step size the
variant gives is read as tuned on the trained ladder with one step per level, the run's (for that sampler:
SamplerSettings.with_sampler) on the run's own levels (its n_sigma or num_steps); either is carried to the
variant's levels. The table marks the variants whose FDD
is at most the reference variant's FDD plus its standard error ("matches"), raw and denoised separately.
"""

import argparse
import collections
import dataclasses
import json
import os
import re
import sys
import time

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import matplotlib.pyplot as plt  # noqa: E402

from asm_tf import run_loading, sampling, summaries  # noqa: E402
from asm_tf.cli import common  # noqa: E402
from asm_tf.evaluation import digit_quality, modes  # noqa: E402

OUTPUTS = (("raw", 0), ("denoised", 1))


def family(settings):
    """The curve a variant belongs to, e.g. 'CAS', 'CAS coarse', 'Heun rho 7', 'Euler ladder eta 0.5'."""
    name = settings.sampler.upper() if settings.sampler in ("als", "cas") else settings.sampler.capitalize()
    if settings.sampler in sampling.ODE_SAMPLERS:
        name += f" {settings.spacing}" + (f" {settings.rho:g}" if settings.spacing == "rho" else "")
    elif settings.num_steps is not None:
        name += " coarse" if settings.spacing == "ladder" else f" {settings.spacing}"
    for noise in ("churn", "eta"):
        if getattr(settings, noise):
            name += f" {noise} {getattr(settings, noise):g}"
    return name


def evaluate_variant(loaded, quality, text, seeds, batch_size, path, picture):
    """The report of one variant, computed (and written to `path`, with a picture of the first 64 denoised
    images) unless `path` holds it."""
    if os.path.exists(path):
        with open(path) as f:
            report = json.load(f)
        return {**report, "family": family(sampling.SamplerSettings.defaults(**report["settings"]))}
    schedule = loaded.experiment.schedule
    settings = common.parse_sampler_variant(text, loaded.sampler_settings, schedule)
    sampler = sampling.make_sampler(loaded.score_model, schedule, settings, loaded.experiment.data)
    sampling.sample_in_batches(sampler, seeds[:2], 2, log=None)  # trace outside the timing
    start = time.time()
    outputs = sampling.sample_in_batches(sampler, seeds, batch_size, log=None)
    seconds = time.time() - start
    report = {"variant": text, "family": family(settings), "settings": dataclasses.asdict(settings),
              "network_calls": settings.network_calls(schedule), "num_samples": len(seeds),
              "seconds_per_image": seconds / len(seeds), "checkpoint": loaded.step}
    for name, index in OUTPUTS:
        numbers = quality.evaluate(outputs[index])
        report[name] = {key: value for key, value in numbers.items() if key != "yardsticks"}
        report[name]["fdd_se"] = quality.fdd_standard_error(outputs[index])
    summaries.save_png(summaries.image_grid(outputs[1][:64]), picture)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return report


def plot(reports, reference, title, path):
    """FDD against network calls (log scale), raw solid and denoised dashed, one colour per family."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharey=True)
    curves = collections.defaultdict(list)
    for report in reports:
        curves[report["family"]].append(report)
    for (name, index), ax in zip(OUTPUTS, axes):
        for colour, (label, points) in enumerate(sorted(curves.items())):
            points.sort(key=lambda r: r["network_calls"])
            ax.errorbar([r["network_calls"] for r in points], [r[name]["fdd"] for r in points],
                        yerr=[r[name]["fdd_se"] for r in points], marker="o", ms=4, capsize=2, label=label,
                        color=f"C{colour}")
        level, se = reference[name]["fdd"], reference[name]["fdd_se"]
        ax.axhspan(level - se, level + se, color="grey", alpha=0.25, label=f"{reference['variant']} +- 1 SE")
        ax.axhline(reports[0][name]["fdd_floor"], color="black", lw=0.8, ls=":", label="real digits (floor)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("network calls per image")
        ax.set_title(f"{title}: {name}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"FDD ({reports[0]['num_samples']} samples)")
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(reports, reference):
    """Markdown rows: variant, calls, FDD raw and denoised with standard errors, matches, ms per image."""
    lines = ["| variant | calls | FDD raw | FDD denoised | matches ref. (raw / den.) | ms / image |",
             "|---|---|---|---|---|---|"]
    for report in sorted(reports, key=lambda r: (r["family"], r["network_calls"])):
        cells = [f"{report[name]['fdd']:.2f} +- {report[name]['fdd_se']:.2f}" for name, _ in OUTPUTS]
        match = ["yes" if report[name]["fdd"] <= reference[name]["fdd"] + reference[name]["fdd_se"] else "no"
                 for name, _ in OUTPUTS]
        lines.append(f"| {report['variant']} | {report['network_calls']} | {cells[0]} | {cells[1]} | "
                     f"{' / '.join(match)} | {1000 * report['seconds_per_image']:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--reference", default="cas", help="the variant the others are compared with")
    parser.add_argument("--seeds", default="0-499")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--title", default=None, help="plot title (default: the workdir's name)")
    args = parser.parse_args()
    if args.reference not in args.variant:
        sys.exit(f"error: --reference={args.reference} is not one of the --variant values")
    os.makedirs(os.path.join(args.output_dir, "pictures"), exist_ok=True)
    try:
        loaded = run_loading.load_run(args.workdir)
        seeds = common.parse_seeds(args.seeds)
        quality = digit_quality.for_data(loaded.experiment.data, modes.load_classifier(), log=lambda m: None)
        reports = []
        for text in args.variant:
            stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)
            reports.append(evaluate_variant(loaded, quality, text, seeds, args.batch_size,
                                            os.path.join(args.output_dir, f"{stem}.json"),
                                            os.path.join(args.output_dir, "pictures", f"{stem}.png")))
            last = reports[-1]
            print(f"{text}: {last['network_calls']} calls, FDD raw {last['raw']['fdd']:.2f} +- "
                  f"{last['raw']['fdd_se']:.2f}, denoised {last['denoised']['fdd']:.2f} +- "
                  f"{last['denoised']['fdd_se']:.2f}", flush=True)
    except (common.UserError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    reference = reports[args.variant.index(args.reference)]
    plot(reports, reference, args.title or os.path.basename(os.path.normpath(args.workdir)),
         os.path.join(args.output_dir, "fdd_vs_calls.png"))
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(table(reports, reference) + "\n")
    print(table(reports, reference))


if __name__ == "__main__":
    main()
