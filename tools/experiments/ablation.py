"""The paper's ablation on the bundled digits: {DSM, adversarial} x {small NCSNv2, small UNet} x {ALS, CAS} x
{raw, denoised}, several training seeds per cell, at an equal training-time budget per run.

    python tools/experiments/ablation.py --output_dir=runs/ablation --budget_seconds=150 --seeds=0-2

The networks axis also holds the noise-conditional UNets (the blog's open question, docs/conditional.md):

    python tools/experiments/ablation.py --output_dir=runs/conditional --networks=unet,unet_index,unet_continuous \
        --trainings=dsm

Stages, each resumable (a finished run, sweep or evaluation is never redone; run the command again after an
interruption):

1. plan: every (network, training) pair trains for 100 steps once; its steps per second times the budget,
   rounded to 50, is its step count for every seed (plan.json: the same numbers on every rerun).
2. train: `asm-train` with gin_configs/digits.gin (DSM) or digits_adv.gin (adversarial), the network swapped
   by gin bindings (NCSNv2 ngf 16 or the quick start's UNet), `Trainer.seed` = the seed, NUM_STEPS = the plan's.
3. step sizes: on the first seed's run of each cell, `asm-eval --metric=fdd` over a small grid of step sizes
   per sampler; the step size with the lowest FDD of the denoised samples is used for every seed of that cell
   (a grid of one step size is used as it is).
4. evaluate: `asm-eval --metric=fdd` of `--num_samples` samples per run and sampler (seeds 10000 on, apart
   from the sweep's), raw and denoised: FDD, KID, precision, recall, class KL and confident share.
5. table: results.csv (every run), table.md (mean +- standard deviation over seeds, per cell; the paper's
   claims as differences in standard errors) and table.png.
"""

import argparse
import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from matplotlib.figure import Figure

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

from asm_tf import storage  # noqa: E402
from asm_tf import workdir as workdir_lib  # noqa: E402
from asm_tf.cli.common import UserError, parse_seeds  # noqa: E402
from asm_tf.evaluation.sweep import parse_step_sizes, report_path  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NETWORKS = {
    "ncsnv2": ["Experiment.score_network = @NCSNv2", "NCSNv2.ngf = 16"],
    "unet": [],  # digits.gin's UNet (ch 32), unconditional
    "unet_index": ["UNet.conditioning = 'index'"],  # told sigma's position on the ladder
    "unet_continuous": ["UNet.conditioning = 'continuous'"],  # told EDM's c_noise = ln(sigma) / 4
}
TRAININGS = {"dsm": "digits.gin", "adversarial": "digits_adv.gin"}
SAMPLERS = ("als", "cas")
OUTPUTS = ("samples", "denoised")
STEP_SIZE_GRID = {"als": "5e-5,1e-4,2e-4,4e-4", "cas": "9e-5,1.4e-4,2.2e-4,3.4e-4"}
METRICS = ("fdd", "kid", "precision", "recall", "kl_to_uniform", "confident_fraction")
CALIBRATION_STEPS = 100
STEP_MULTIPLE = 50
EVAL_SEED_OFFSET = 10000


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_command(args, what):
    """Runs a command module of this project; returns its stdout, exits with its stderr's end if it fails."""
    log(what)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"error: {what} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def train_args(network, training, workdir, num_steps, seed, extra_bindings):
    bindings = [*NETWORKS[network], f"NUM_STEPS = {num_steps}", f"Trainer.seed = {seed}",
                f"Trainer.checkpoint_every = {num_steps}", f"Trainer.log_every = {STEP_MULTIPLE}",
                f"Trainer.steps_per_call = {STEP_MULTIPLE}", *extra_bindings]
    return ["asm_tf.cli.train", f"--gin_file={os.path.join(REPO, 'gin_configs', TRAININGS[training])}",
            f"--workdir={workdir}", "--strategy=default", *[f"--gin_bindings={b}" for b in bindings]]


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the grid: its workdir and the plan's step count (its last checkpoint)."""

    workdir: str
    steps: int

    def finished(self):
        return os.path.exists(workdir_lib.checkpoint_path(self.workdir, self.steps) + ".index")


def make_plan(args):
    """{"network/training": steps} from a calibration run of each pair, or the stored plan."""
    path = os.path.join(args.output_dir, "plan.json")
    identity = {"budget_seconds": args.budget_seconds, "networks": args.networks, "trainings": args.trainings,
                "gin_bindings": args.gin_bindings}
    if os.path.exists(path):
        with open(path) as f:
            plan = json.load(f)
        if plan["identity"] != identity:
            sys.exit(f"error: {path} was planned with {plan['identity']}; use another --output_dir")
        return plan
    rates = {}
    for network in args.networks:
        for training in args.trainings:
            workdir = os.path.join(args.output_dir, "calibration", f"{network}_{training}")
            output = run_command(train_args(network, training, workdir, CALIBRATION_STEPS, 0, args.gin_bindings),
                                 f"calibrating {network}/{training}: {CALIBRATION_STEPS} steps")
            # the last log line's rate excludes the first call, which compiles the step
            rates[f"{network}/{training}"] = float(re.findall(r"steps_per_second ([0-9.]+)", output)[-1])
    steps = {key: max(STEP_MULTIPLE, int(round(rate * args.budget_seconds / STEP_MULTIPLE)) * STEP_MULTIPLE)
             for key, rate in rates.items()}
    plan = {"identity": identity, "steps_per_second": rates, "steps": steps}
    storage.write_json(path, plan)
    log(f"plan: {steps} (steps per second {rates})")
    return plan


def eval_args(workdir, sampler, step_sizes, first_seed, count, output_dir):
    return ["asm_tf.cli.evaluate", f"--workdir={workdir}", "--metric=fdd", f"--sampler={sampler}", "--n_sigma=1",
            f"--step_sizes={step_sizes}", f"--seeds={first_seed}-{first_seed + count - 1}",
            f"--batch_size={min(count, 500)}", f"--output_dir={output_dir}"]


def evaluate_once(run, sampler, step_sizes, first_seed, count, directory, what):
    """Runs asm-eval on the run's last checkpoint unless every report it would write exists; returns the
    reports of `step_sizes`."""
    paths = [report_path(directory, run.steps, eps) for eps in parse_step_sizes(step_sizes)]
    if not all(os.path.exists(path) for path in paths):
        run_command(eval_args(run.workdir, sampler, step_sizes, first_seed, count, directory), what)
    reports = []
    for path in paths:
        with open(path) as f:
            reports.append(json.load(f))
    return reports


def choose_step_sizes(args, runs):
    """{(network, training, sampler): step size} by the FDD of the denoised samples on the first seed's run."""
    chosen = {}
    for (network, training, seed), run in runs.items():
        if seed != args.seeds[0]:
            continue
        for sampler in args.samplers:
            grid = parse_step_sizes(args.step_size_grid[sampler])
            if len(grid) == 1:
                chosen[(network, training, sampler)] = grid[0]
                continue
            directory = os.path.join(args.output_dir, "step_sizes", f"{network}_{training}_{sampler}")
            reports = evaluate_once(run, sampler, args.step_size_grid[sampler], 0, args.sweep_samples, directory,
                                    f"step sizes of {sampler} on {network}/{training} seed {seed}: "
                                    f"{args.step_size_grid[sampler]}")
            scored = [r for r in reports if "results" in r]
            if not scored:
                sys.exit(f"error: no step size of {args.step_size_grid[sampler]} could be sampled for {sampler}")
            best = min(scored, key=lambda r: r["results"]["denoised"]["fdd"])
            chosen[(network, training, sampler)] = best["step_size"]
            log(f"  {sampler} on {network}/{training}: step size {best['step_size']:g} "
                f"(FDD {best['results']['denoised']['fdd']:.2f})")
    return chosen


def evaluate_runs(args, runs, step_sizes):
    """One row per (run, sampler, output) with the metrics of `--num_samples` samples."""
    rows = []
    for (network, training, seed), run in runs.items():
        for sampler in args.samplers:
            step_size = step_sizes[(network, training, sampler)]
            directory = os.path.join(args.output_dir, "eval", f"{network}_{training}_s{seed}_{sampler}")
            (report,) = evaluate_once(run, sampler, repr(step_size), EVAL_SEED_OFFSET, args.num_samples,
                                      directory, f"evaluating {sampler} (step size {step_size:g}) on "
                                                 f"{network}/{training} seed {seed}")
            for output in OUTPUTS:
                numbers = report["results"][output]
                rows.append({"network": network, "training": training, "sampler": sampler, "output": output,
                             "seed": seed, "step_size": step_size, "num_samples": numbers["num_images"],
                             "fdd_floor": numbers["fdd_floor"], **{key: numbers[key] for key in METRICS}})
    return rows


def cell_key(row):
    return row["network"], row["training"], row["sampler"], row["output"]


def summarise(rows):
    """{cell: {metric: (mean, std, count)}} over seeds."""
    cells = {}
    for row in rows:
        cells.setdefault(cell_key(row), []).append(row)
    return {cell: {key: (float(np.mean([r[key] for r in members])), float(np.std([r[key] for r in members], ddof=1))
                         if len(members) > 1 else 0.0, len(members)) for key in (*METRICS, "fdd_floor")}
            for cell, members in cells.items()}


def standard_errors(gap, error):
    return gap / error if error > 0 else float("inf") * np.sign(gap)


def difference_in_standard_errors(summary, better, worse, key="fdd"):
    """(mean of `worse` - mean of `better`) / standard error of that difference (positive: `better` is)."""
    (m1, s1, n1), (m2, s2, n2) = summary[better][key], summary[worse][key]
    return standard_errors(m2 - m1, np.sqrt(s1 ** 2 / n1 + s2 ** 2 / n2))


def cas_gain(summary, network, training, output="denoised"):
    """(FDD of ALS - FDD of CAS, its standard error) over seeds, or None without both cells."""
    cells = [(network, training, sampler, output) for sampler in ("als", "cas")]
    if not all(cell in summary for cell in cells):
        return None
    (m_als, s_als, n_als), (m_cas, s_cas, n_cas) = (summary[cell]["fdd"] for cell in cells)
    return m_als - m_cas, float(np.sqrt(s_als ** 2 / n_als + s_cas ** 2 / n_cas))


def conditional_claims(summary, args):
    """The blog's open question: is CAS's gain over ALS larger for a noise-conditional network?"""
    lines = []
    for training in args.trainings:
        base = cas_gain(summary, "unet", training)
        for network in ("unet_index", "unet_continuous"):
            gain = cas_gain(summary, network, training)
            if base is None or gain is None:
                continue
            gap = standard_errors(gain[0] - base[0], np.hypot(gain[1], base[1]))
            verdict = "larger" if gap > 0 else "not larger"
            lines.append(f"- CAS's gain over ALS ({training}, denoised, FDD): {network} {gain[0]:+.2f} +- "
                         f"{gain[1]:.2f}, unconditional unet {base[0]:+.2f} +- {base[1]:.2f}; difference "
                         f"{gap:+.1f} standard errors: {verdict} for the conditional network")
    return lines


def claims(summary, args):
    """Lines on the paper's claims, each an FDD difference in standard errors (over seeds)."""
    lines = []

    def compare(text, better, worse):
        if better in summary and worse in summary:
            gap = difference_in_standard_errors(summary, better, worse)
            verdict = "holds" if gap > 0 else "does not hold"
            lines.append(f"- {text}: FDD {summary[better]['fdd'][0]:.2f} against {summary[worse]['fdd'][0]:.2f}, "
                         f"{gap:+.1f} standard errors: {verdict}")

    for network in args.networks:
        compare(f"adversarial training helps {network} (CAS, denoised)", (network, "adversarial", "cas", "denoised"),
                (network, "dsm", "cas", "denoised"))
    for network in args.networks:
        for training in args.trainings:
            compare(f"CAS at least as good as ALS at equal network calls ({network}/{training}, denoised)",
                    (network, training, "cas", "denoised"), (network, training, "als", "denoised"))
            for sampler in args.samplers:
                compare(f"denoising helps ({network}/{training}/{sampler})", (network, training, sampler, "denoised"),
                        (network, training, sampler, "samples"))
    return lines + conditional_claims(summary, args)


def write_outputs(args, rows, plan, step_sizes):
    with open(os.path.join(args.output_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    header = "| network | training | steps | sampler | step size | output | " + " | ".join(METRICS) + " |"
    lines = [f"Digits ablation: {len(args.seeds)} training seeds per cell, {args.budget_seconds:g} s of training "
             f"per run, {args.num_samples} samples per run and sampler (mean +- std over seeds); FDD floor "
             f"(real train vs test digits at the same count) {np.mean([r['fdd_floor'] for r in rows]):.2f}.", "",
             header, "|" + "---|" * (6 + len(METRICS))]
    for cell in sorted(summary):
        network, training, sampler, output = cell
        values = " | ".join(f"{summary[cell][key][0]:.3g} +- {summary[cell][key][1]:.2g}" for key in METRICS)
        lines.append(f"| {network} | {training} | {plan['steps'][f'{network}/{training}']} | {sampler} | "
                     f"{step_sizes[(network, training, sampler)]:g} | {output} | {values} |")
    lines += ["", "The paper's claims (FDD, lower is better; a difference in standard errors of the difference):",
              *claims(summary, args)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(text)
    plot(summary, os.path.join(args.output_dir, "table.png"))
    return text


def plot(summary, path):
    """FDD, precision and recall per cell, with the spread over seeds."""
    cells = sorted(summary)
    labels = ["\n".join(cell) for cell in cells]
    figure = Figure(figsize=(max(8, 1.1 * len(cells)), 8), dpi=100)
    for index, key in enumerate(("fdd", "precision", "recall")):
        axes = figure.add_subplot(3, 1, index + 1)
        means = [summary[cell][key][0] for cell in cells]
        errors = [summary[cell][key][1] for cell in cells]
        colours = [f"C{list(NETWORKS).index(cell[0]) * 2 + (cell[1] == 'adversarial')}" for cell in cells]
        axes.bar(range(len(cells)), means, yerr=errors, color=colours, capsize=3)
        axes.set_ylabel(key)
        axes.set_xticks(range(len(cells)), labels if index == 2 else [""] * len(cells), fontsize=7)
        axes.grid(True, axis="y", alpha=0.3)
    figure.suptitle("digits ablation: mean and std over training seeds")
    figure.tight_layout()
    figure.savefig(path)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/ablation")
    parser.add_argument("--budget_seconds", type=float, default=150.0, help="training time per run")
    parser.add_argument("--seeds", default="0-2", help="training seeds, e.g. 0-2 or 0,5")
    parser.add_argument("--networks", default="ncsnv2,unet")
    parser.add_argument("--trainings", default="dsm,adversarial")
    parser.add_argument("--samplers", default="als,cas")
    parser.add_argument("--num_samples", type=int, default=500, help="samples per run and sampler")
    parser.add_argument("--sweep_samples", type=int, default=300, help="samples per step size in the sweep")
    parser.add_argument("--als_step_sizes", default=STEP_SIZE_GRID["als"])
    parser.add_argument("--cas_step_sizes", default=STEP_SIZE_GRID["cas"])
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra bindings for every run")
    args = parser.parse_args()
    try:
        args.seeds = parse_seeds(args.seeds)
    except UserError as error:
        parser.error(str(error))
    for name, choices in (("networks", NETWORKS), ("trainings", TRAININGS), ("samplers", SAMPLERS)):
        values = getattr(args, name).split(",")
        if not values or any(value not in choices for value in values):
            parser.error(f"--{name} must be a comma-separated subset of {', '.join(choices)}")
        setattr(args, name, values)
    if args.budget_seconds <= 0 or args.num_samples < 10 or args.sweep_samples < 10:
        parser.error("--budget_seconds must be positive and --num_samples, --sweep_samples at least 10")
    args.step_size_grid = {"als": args.als_step_sizes, "cas": args.cas_step_sizes}
    return args


def main():
    args = parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.time()
    plan = make_plan(args)
    runs = {(network, training, seed): Run(os.path.join(args.output_dir, "runs", f"{network}_{training}_s{seed}"),
                                           plan["steps"][f"{network}/{training}"])
            for network in args.networks for training in args.trainings for seed in args.seeds}
    for index, ((network, training, seed), run) in enumerate(runs.items()):
        if run.finished():
            log(f"run {index + 1}/{len(runs)} {network}/{training} seed {seed}: trained before")
            continue
        elapsed = time.time() - start
        run_command(train_args(network, training, run.workdir, run.steps, seed, args.gin_bindings),
                    f"run {index + 1}/{len(runs)}: training {network}/{training} seed {seed}, {run.steps} steps "
                    f"({elapsed / 60:.1f} min so far)")
    step_sizes = choose_step_sizes(args, runs)
    rows = evaluate_runs(args, runs, step_sizes)
    print(write_outputs(args, rows, plan, step_sizes), flush=True)
    log(f"done in {(time.time() - start) / 60:.1f} min: {args.output_dir}/results.csv, table.md, table.png")


if __name__ == "__main__":
    main()
