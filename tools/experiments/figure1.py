"""The paper's Figure 1: the noise std during idealised sampling with a perfect score
(docs/algorithm.md#als-lag-and-figure-1).

    python tools/experiments/figure1.py --output figure1.png            # analytic, CIFAR-10 schedule, a few seconds
    python tools/experiments/figure1.py --output figure1.png --simulate # also runs the library's ALS/CAS samplers

The data are a point mass x*, whose perfect score is s*(x, sigma) = -(x - x*) / sigma^2. One ALS step at
level sigma maps the std v of x - x* to sqrt((1 - eta)^2 v^2 + 2 eta sigma^2) (eta = eps / sigma_L^2), which
settles at sigma sqrt(2 / (2 - eta)) > sigma, so ALS lags above the schedule; CAS follows it exactly.
Defaults as in the paper: sigma 50 -> 0.01 in 232 levels, ALS eps = 2e-6 (eta = 0.02) with n_sigma
1, 2, 5, 20, CAS eps = 2e-5 (eta = 0.2) on the grid refined 100 times.
Panel (a): std entering each step against progress in noise levels (step / n_sigma).
Panel (b): ALS std minus CAS std at the first step of each level.
Writes the PNG, a CSV of every curve (--csv), and with --simulate a CSV of the measured points.

--simulate runs asm_tf.sampling.als / cas with the exact score, from x ~ sigma_1 N(0, I), stopped after a
few levels (--checkpoints), and compares the measured std with the analytic one (asm_tf.evaluation.point_mass).
With CAS refined 100 times this takes a minute or two on a CPU.
"""

import argparse
import os
import sys

import asm_tf

asm_tf.import_tensorflow_quietly()  # asm_tf.noise_levels.schedule computes the levels with TensorFlow

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from asm_tf.evaluation import point_mass  # noqa: E402
from asm_tf.noise_levels import formulas  # noqa: E402
from asm_tf.noise_levels import schedule as noise_schedule  # noqa: E402


def write_curves_csv(curves, path):
    """One row per sampler step: curve, sampler, n_sigma, step, progress (levels), sigma, std."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("curve,sampler,n_sigma,step,progress,sigma,std\n")
        for curve in curves:
            for step, (progress, sigma, std) in enumerate(zip(curve.progress, curve.sigma, curve.std)):
                out.write(f"{curve.name},{curve.sampler},{curve.n_sigma},{step},{progress:.6f},{sigma:.9g},{std:.9g}\n")


def plot_figure1(curves, path, simulated=None):
    """Figure 1 as a PNG: (a) std against progress (levels), (b) ALS std minus CAS std at each level.

    `simulated`: optional list of (curve name, progress [K], std [K]) measured by `point_mass.simulate_noise_std`,
    drawn as markers over the analytic curve of the same name.
    """
    cas = next(c for c in curves if c.sampler == "cas")
    num_levels = len(cas.at_levels())
    figure = Figure(figsize=(12, 4.5))
    panel_a, panel_b = figure.subplots(1, 2)
    colors = {}
    for curve in curves:
        style = dict(color="black", linewidth=2.5, zorder=1) if curve.sampler == "cas" else dict(linewidth=1.2)
        (line,) = panel_a.plot(curve.progress, curve.std, label=curve.name, **style)
        colors[curve.name] = line.get_color()
    for name, progress, std in simulated or ():
        panel_a.plot(progress, std, "o", markersize=4, markerfacecolor="none", color=colors.get(name),
                     label=f"{name} (simulated)")
    ticks = [0, num_levels / 4, num_levels / 2, 3 * num_levels / 4, num_levels]
    panel_a.set(yscale="log", xlabel="sampling progress (noise levels)", ylabel="std of x - x*",
                title="(a) noise std during sampling, perfect score", xticks=ticks)
    panel_a.legend(fontsize=8)
    reference = cas.at_levels()
    for curve in curves:
        if curve.sampler == "als":
            difference = curve.at_levels()[1:] - reference[1:]
            panel_b.plot(np.arange(1, num_levels), difference, label=curve.name, color=colors[curve.name])
    panel_b.set(yscale="log", xlabel="noise level index", ylabel="ALS std - CAS std",
                title="(b) excess noise of ALS over CAS", xticks=ticks)
    panel_b.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma_begin", type=float, default=50.0, help="default 50 (CIFAR-10)")
    parser.add_argument("--sigma_end", type=float, default=0.01, help="default 0.01")
    parser.add_argument("--num_levels", type=int, default=232, help="default 232")
    parser.add_argument("--als_step_size", type=float, default=2e-6, help="ALS eps (default 2e-6: eta = 0.02)")
    parser.add_argument("--als_n_sigma", type=int, nargs="+", default=[1, 2, 5, 20], help="default 1 2 5 20")
    parser.add_argument("--cas_step_size", type=float, default=2e-5, help="CAS eps (default 2e-5: eta = 0.2)")
    parser.add_argument("--cas_n_sigma", type=int, default=100, help="CAS grid refinement (default 100)")
    parser.add_argument("--output", default="figure1.png", help="PNG path (default figure1.png)")
    parser.add_argument("--csv", help="curves CSV path (default: the PNG's path with .csv)")
    parser.add_argument("--simulate", action="store_true", help="also measure the library's samplers")
    parser.add_argument("--checkpoints", type=int, default=5, help="levels measured per curve (default 5)")
    parser.add_argument("--samples", type=int, default=256, help="simulated samples (default 256)")
    parser.add_argument("--dim", type=int, default=64, help="dimensions of each simulated sample (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="first sample seed (default 0)")
    args = parser.parse_args(argv)
    stem = os.path.splitext(args.output)[0]
    try:
        schedule = noise_schedule.NoiseSchedule(args.sigma_begin, args.sigma_end, args.num_levels)
        curves = point_mass.figure1_curves(schedule, args.als_step_size, tuple(args.als_n_sigma),
                                       args.cas_step_size, args.cas_n_sigma)
    except ValueError as error:
        parser.error(str(error))
    if args.checkpoints < 2:
        parser.error("--checkpoints must be at least 2")
    csv_path = args.csv or stem + ".csv"
    write_curves_csv(curves, csv_path)
    for curve in curves:
        excess = curve.at_levels() / schedule.sigmas() - 1.0
        print(f"{curve.name:18s} final std {curve.std[-1]:.4g} (sigma_L {args.sigma_end:g}); "
              f"std / sigma - 1 at the levels: max {excess.max():.3g}, min {excess.min():.3g}")
    simulated = []
    if args.simulate:
        levels = np.unique(formulas.spread_indices(args.num_levels, args.checkpoints).numpy())
        rows = ["curve,progress,analytic_std,simulated_std,relative_difference"]
        for curve in curves:
            progress, analytic, measured = point_mass.simulate_noise_std(curve, levels, args.samples, args.dim,
                                                                         args.seed)
            simulated.append((curve.name, progress, measured))
            for p, a, m in zip(progress, analytic, measured):
                rows.append(f"{curve.name},{p:g},{a:.9g},{m:.9g},{m / a - 1:.3e}")
                print(f"{curve.name:18s} level {p:5g}: analytic {a:.5g}  simulated {m:.5g}  ({m / a - 1:+.2%})")
        with open(stem + "_simulated.csv", "w", encoding="utf-8") as out:
            out.write("\n".join(rows) + "\n")
        print(f"wrote {stem}_simulated.csv")
    plot_figure1(curves, args.output, simulated)
    print(f"wrote {args.output} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
