"""The paper's Figure 1 measured with trained networks (docs/conditional.md): at every level that ALS and CAS walk,
the std of x - D(x, sigma) over the samples, against the level's sigma.

    python tools/experiments/noise_along_sampling.py --output=noise.png \\
        --run=unconditional=runs/conditional/runs/unet_dsm_s0 --step_sizes=unconditional=1e-4,1.4e-4 \\
        --run=index=runs/conditional/runs/unet_index_dsm_s0 --step_sizes=index=2e-4,2.2e-4

D(x, sigma) = x + sigma * output is the run's EMA network's one-step denoiser (EDS), so x - D(x, sigma) is its
estimate of the noise that x carries. With a perfect score CAS keeps that noise at sigma (the paper's
Proposition 2) and ALS lags above it (Figure 1, tools/experiments/figure1.py); a trained network can also be
misled where the noise differs from the level it is told (a noise-conditional network is told sigma; an
unconditional one reads the noise off x). Each run samples with its own schedule and n_sigma, and with the ALS and
CAS step sizes given for its label (default: the run's own). Writes the PNG and a CSV (run, sampler, level, sigma,
std).
"""

import argparse
import csv
import os
import sys

import asm_tf

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from asm_tf import run_loading, sampling  # noqa: E402


def noise_std_along_sampling(run, sampler, step_size, num_samples):
    """(levels [K], std of x - D(x, sigma) [K]) at the state entering each level of `sampler`."""
    settings = run.sampler_settings.with_sampler(sampler, step_size=step_size)
    schedule, source = run.experiment.schedule, run.experiment.data
    levels = settings.sampling_sigmas(schedule)
    draw = sampling.make_sampler(run.score_model, schedule, settings, source, trajectory_every=1)
    _, _, trajectory = draw(tf.range(num_samples, dtype=tf.int64))
    stds = []
    for index, sigma in enumerate(levels):
        x = source.transform.to_model(trajectory[:, index])
        noise = x - run.score_model.denoise(x, tf.fill([num_samples], float(sigma)))
        stds.append(float(tf.sqrt(tf.reduce_mean(tf.square(noise)))))
    return levels, np.array(stds)


def plot(curves, path):
    """std / sigma against sigma, one line per (run, sampler); 1 is the level's own noise."""
    figure = Figure(figsize=(7, 4.5), dpi=110)
    axes = figure.subplots()
    for index, (label, sampler, levels, stds) in enumerate(curves):
        axes.plot(levels, stds / levels, "-" if sampler == "cas" else "--", color=f"C{index // 2}",
                  label=f"{label}, {sampler.upper()}")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set(xscale="log", yscale="log", xlabel="noise level sigma (sampling runs left to right)",
             ylabel="std of x - D(x, sigma) / sigma")
    axes.invert_xaxis()
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def labelled(text):
    """LABEL=VALUE as (label, value)."""
    label, separator, value = text.partition("=")
    if not separator or not label or not value:
        raise argparse.ArgumentTypeError(f"give LABEL=VALUE, got {text!r}")
    return label, value


def step_sizes(text):
    """LABEL=ALS,CAS as (label, {"als": float, "cas": float})."""
    label, values = labelled(text)
    try:
        als, cas = (float(value) for value in values.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give step sizes as LABEL=ALS,CAS, got {text!r}") from None
    return label, {"als": als, "cas": cas}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=labelled, action="append", required=True, help="LABEL=WORKDIR, repeatable")
    parser.add_argument("--step_sizes", type=step_sizes, action="append", default=[],
                        help="LABEL=ALS,CAS: the run's ALS and CAS step sizes (default: its own)")
    parser.add_argument("--output", required=True, help="the PNG; the CSV goes beside it")
    parser.add_argument("--num_samples", type=int, default=200)
    args = parser.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # one sampler per run and sampler: TensorFlow's retracing notice is expected
    if args.num_samples < 2:
        parser.error("--num_samples must be at least 2")
    chosen = dict(args.step_sizes)
    orphans = sorted(set(chosen) - {label for label, _ in args.run})
    if orphans:
        parser.error(f"--step_sizes for labels without a --run: {orphans}")
    curves = []
    try:
        for label, workdir in args.run:
            run = run_loading.load_run(workdir, log=lambda line: print(line, file=sys.stderr))
            for sampler in ("als", "cas"):
                step_size = chosen.get(label, {}).get(sampler)
                levels, stds = noise_std_along_sampling(run, sampler, step_size, args.num_samples)
                curves.append((label, sampler, levels, stds))
                print(f"{label} {sampler}: std / sigma at the first, middle and last level "
                      f"{stds[0] / levels[0]:.3f}, {stds[len(levels) // 2] / levels[len(levels) // 2]:.3f}, "
                      f"{stds[-1] / levels[-1]:.3f}", flush=True)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot(curves, args.output)
    csv_path = os.path.splitext(args.output)[0] + ".csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "sampler", "level", "sigma", "std"])
        for label, sampler, levels, stds in curves:
            writer.writerows([label, sampler, index, f"{sigma:.6g}", f"{std:.6g}"]
                             for index, (sigma, std) in enumerate(zip(levels, stds)))
    print(f"wrote {args.output} and {csv_path}")


if __name__ == "__main__":
    main()
