"""Per noise level of a digits run: its denoising error against the ideal denoiser's, and whether CAS started
from a noised test digit brings back a digit of the same class (asm_tf/evaluation/level_diagnosis.py).

    python tools/experiments/diagnose_levels.py --workdir=runs/quickstart --levels=0,5,10,15,20,25,29

For each ladder level k (default: 8 indices spread over the ladder) the test digits are noised to sigma_k;
`mse` is the run's one-step denoising error and `posterior_mean_mse` the training split's posterior mean's,
`returned` the share of digits that CAS on sigma_k..sigma_L (the run's step size and n_sigma unless
--step_size / --n_sigma) brings back to their own class, overall and per class, `confident` the share
classified with probability >= 0.9, `confusion` test labels against the classes CAS brought them to.
Prints a progress line per level and a table, writes a JSON report and a plot (sigma on a log axis) to
--output (default WORKDIR/eval/diagnose_levels.png, the JSON beside it).
"""

import argparse
import json
import os
import sys

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asm_tf import run_loading, workdir  # noqa: E402
from asm_tf.evaluation import level_diagnosis, modes  # noqa: E402


def print_table(report):
    print(f"checkpoint {report['checkpoint']}, {report['num_images']} test digits, CAS step size "
          f"{report['step_size']:g}, n_sigma {report['n_sigma']}")
    print(f"{'level':>5} {'sigma':>8} {'mse':>9} {'pm_mse':>9} {'returned':>8} {'confident':>9}  worst class")
    for row in report["levels"]:
        print(f"{row['level']:>5} {row['sigma']:>8.4g} {row['mse']:>9.3g} {row['posterior_mean_mse']:>9.3g} "
              f"{row['returned']:>8.1%} {row['confident']:>9.1%}  {row['worst_class']} "
              f"({row['worst_class_returned']:.1%}" +
              (f", most often became {row['worst_class_became']})" if row["worst_class_became"] is not None else ")"))


def plot(report, path):
    """Two panels over sigma (log): the run's and the ideal denoising MSE; the return rate of each class."""
    rows = report["levels"]
    sigma = np.array([row["sigma"] for row in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    left.loglog(sigma, [row["mse"] for row in rows], "o-", label="run's EDS")
    left.loglog(sigma, [row["posterior_mean_mse"] for row in rows], "s--",
                label=f"posterior mean ({report['training_split']} split)")
    left.loglog(sigma, sigma ** 2, ":", color="gray", label="no denoising (sigma^2)")
    left.set(xlabel="sigma", ylabel="MSE per pixel (model space)", title="one-step denoising of test digits")
    left.legend()
    per_class = np.array([[np.nan if rate is None else rate for rate in row["returned_per_class"]] for row in rows])
    for c in range(modes.NUM_DIGITS):
        right.semilogx(sigma, per_class[:, c], ".-", color=plt.cm.tab10(c), label=str(c))
    right.semilogx(sigma, [row["returned"] for row in rows], "k-", linewidth=2.5, label="all")
    right.set(xlabel="sigma (CAS starts here)", ylabel="share classified as its own digit", ylim=(-0.03, 1.03),
              title="CAS from noised test digits")
    right.legend(ncol=2, fontsize="small", title="class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    parser.add_argument("--levels", help="comma-separated ladder indices (default: "
                                         f"{level_diagnosis.DEFAULT_NUM_LEVELS} spread over the ladder)")
    parser.add_argument("--step_size", type=float, help="CAS step size (default: the run's)")
    parser.add_argument("--n_sigma", type=int, help="CAS grid refinement (default: the run's)")
    parser.add_argument("--max_images", type=int, help="use the first N test digits (default: all)")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--output", help="PNG path (default: WORKDIR/eval/diagnose_levels.png); JSON beside it")
    args = parser.parse_args(argv)
    try:
        loaded = run_loading.load_run(args.workdir, args.step)
        report = level_diagnosis.diagnose(loaded, levels=args.levels, step_size=args.step_size,
                                          n_sigma=args.n_sigma, max_images=args.max_images,
                                          batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print_table(report)
    output = args.output or workdir.eval_directory(args.workdir, "diagnose_levels.png")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    plot(report, output)
    json_path = os.path.splitext(output)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump({"workdir": args.workdir, **report}, f, indent=1)
    print(f"picture: {output}\nreport: {json_path}")


if __name__ == "__main__":
    main()
