"""Evaluation sweeps over checkpoints and step sizes, resumable, with plots and TensorBoard scalars.

Every (checkpoint, step size) entry evaluates the final and the denoised (EDS) samples of the same seeds and
writes one JSON report `ckpt<step>_eps<step size>.json` holding the metric's numbers, the sample count, the
seeds and the sampler settings. A report that exists is read back, never recomputed, so a sweep interrupted at
any point resumes where it stopped. The sweep knows nothing of runs: the caller passes
`load_checkpoint(step) -> sample(step_size) -> (final, denoised)`.
"""

import dataclasses
import io
import json
import math
import os
import time
from typing import Callable

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from asm_tf import progress, storage
from asm_tf.evaluation import fid as fid_lib
from asm_tf.evaluation import inception_score as inception_score_lib
from asm_tf.evaluation import modes as modes_lib
from asm_tf.evaluation import toy2d as toy2d_lib

OUTPUTS = ("samples", "denoised")
REPORT_FORMAT = 1


# --------------------------------------------------------------------------------------------------------------
# Metrics


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of a sweep: `evaluate(samples) -> dict of numbers`; `key` names the number that is plotted,
    `also_shown` the others that progress lines print beside it.

    `config` (JSON-ready) identifies what the numbers depend on besides the samples (reference statistics,
    extractor, classifier); reports made with another config are not reused.
    """

    name: str
    key: str
    lower_is_better: bool
    evaluate: Callable[[np.ndarray], dict]
    config: dict
    also_shown: tuple = ()


def fid_metric(*, extractor, reference, reference_path, batch_size=fid_lib.DEFAULT_BATCH_SIZE):
    """FID against `reference` FeatureStatistics (loaded from `reference_path`, which the reports record)."""
    def evaluate(images):
        statistics = fid_lib.image_statistics(images, extractor=extractor, batch_size=batch_size)
        return {"fid": fid_lib.frechet_distance_of_statistics(statistics, reference),
                "num_images": statistics.num_images}

    return Metric(name="fid", key="fid", lower_is_better=True, evaluate=evaluate,
                  config={"extractor": extractor.name, "reference": reference_path,
                          "reference_num_images": reference.num_images})


def inception_score_metric(*, extractor, batch_size=fid_lib.DEFAULT_BATCH_SIZE,
                           splits=inception_score_lib.DEFAULT_SPLITS):
    """Inception Score (mean and std over `splits`) from the extractor's logits."""
    def evaluate(images):
        score = inception_score_lib.inception_score_of_images(images, extractor=extractor, batch_size=batch_size,
                                                              splits=splits)
        return {"inception_score": score.mean, "inception_score_std": score.std, "num_images": score.num_images}

    return Metric(name="is", key="inception_score", lower_is_better=False, evaluate=evaluate,
                  config={"extractor": extractor.name, "splits": splits})


def modes_metric(*, classifier, classifier_path, batch_size=modes_lib.DEFAULT_BATCH_SIZE):
    """Modes covered and KL(generated classes || uniform) with a digit classifier."""
    def evaluate(images):
        return modes_lib.coverage_of_images(classifier, images, batch_size=batch_size).summary()

    return Metric(name="modes", key="modes_covered", lower_is_better=False, evaluate=evaluate,
                  config={"classifier": classifier_path}, also_shown=("kl_to_uniform", "confident_fraction"))


def fdd_metric(*, quality, config):
    """FDD, KID, precision/recall and classes of digit images (`digit_quality.DigitQuality`), with the floor
    and blur yardsticks at the same sample count; `config` names the classifier and the reference."""
    return Metric(name="fdd", key="fdd", lower_is_better=True, evaluate=quality.evaluate, config=config,
                  also_shown=("fdd_floor", "blur_equivalent_px", "sharpness", "kid", "precision", "recall",
                              "kl_to_uniform", "confident_fraction"))


def toy2d_metric(*, real_points, description):
    """Nearest-neighbour distances to `real_points` (described by `description`, e.g. dataset and seed)."""
    def evaluate(points):
        points = np.asarray(points)
        num_nonfinite = int(np.count_nonzero(~np.all(np.isfinite(points), axis=1)))
        if num_nonfinite:  # a diverged sampler scores infinitely badly instead of stopping the sweep
            return {"distance_total": math.inf, "distance_to_real": math.inf, "distance_to_fake": math.inf,
                    "num_points": int(len(points)), "num_nonfinite": num_nonfinite}
        distances = toy2d_lib.distances(generated=points, real=real_points)
        return {"distance_total": distances.total, "distance_to_real": distances.to_real,
                "distance_to_fake": distances.to_fake, "num_points": int(len(points)), "num_nonfinite": 0}

    return Metric(name="toy2d", key="distance_total", lower_is_better=True, evaluate=evaluate,
                  config={"real": description, "num_real": int(len(real_points))})


# --------------------------------------------------------------------------------------------------------------
# Command-line values


def format_seeds(seeds):
    """A compact text of a seed list, e.g. [0, 1, 2, 7] -> '0-2,7' (ranges in the given order)."""
    parts = []
    seeds = [int(s) for s in seeds]
    start = 0
    for k in range(1, len(seeds) + 1):
        if k == len(seeds) or seeds[k] != seeds[k - 1] + 1:
            first, last = seeds[start], seeds[k - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = k
    return ",".join(parts)


def parse_step_sizes(text):
    """'5e-6,6e-6' (a list) or '1e-6:1e-5:7' (7 geometrically spaced values, both ends included)."""
    try:
        if ":" in text:
            low, high, count = text.split(":")
            low, high, count = float(low), float(high), int(count)
            if not 0 < low <= high or count < 1:
                raise ValueError
            values = [low] if count == 1 else np.geomspace(low, high, count).tolist()
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"cannot parse step sizes {text!r}: give a list such as 5e-6,5.5e-6 or a geometric "
                         "range LOW:HIGH:COUNT such as 1e-6:1e-5:7") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"step sizes must be positive numbers, got {text!r}")
    return sorted(set(float(f"{v:.6g}") for v in values))


def select_checkpoints(available, spec):
    """Steps of `available` checkpoints chosen by `spec`: 'latest', 'all', or ranges/steps '100000-300000,5000'."""
    available = sorted(set(int(step) for step in available))
    if not available:
        raise ValueError("the run has no checkpoints yet")
    if spec == "latest":
        return available[-1:]
    if spec == "all":
        return available
    chosen = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            first, last = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            raise ValueError(f"cannot parse checkpoints {spec!r}: use latest, all, a range such as "
                             "100000-300000, steps such as 150000,200000, or both") from None
        matching = [step for step in available if first <= step <= last]
        if not matching:
            raise ValueError(f"no checkpoint in {part}; the run has {available}")
        chosen.update(matching)
    if not chosen:
        raise ValueError(f"no checkpoints selected by {spec!r}")
    return sorted(chosen)


# --------------------------------------------------------------------------------------------------------------
# Reports


def report_path(output_dir, checkpoint, step_size):
    return os.path.join(output_dir, f"ckpt{checkpoint}_eps{step_size:.6g}.json")


def read_report(path, identity):
    """The finished report at `path`, None if there is none; ValueError if it was made with other settings."""
    if not tf.io.gfile.exists(path):
        return None
    report = json.loads(storage.read_text(path))
    differences = sorted(key for key in identity if report.get(key) != identity[key])
    if differences:
        raise ValueError(f"{path} was computed with other settings ({', '.join(differences)}); give another "
                         "output directory or delete the old reports")
    return report


def _evaluate_entry(sample, step_size, metric, log):
    start = time.time()
    try:
        final, denoised = sample(step_size)
    except ValueError as error:  # e.g. a CAS step size outside its bounds: deterministic, so recorded as done
        log(f"  step size {step_size:g} cannot be sampled: {error}")
        return {"error": str(error)}
    results = {name: metric.evaluate(images) for name, images in zip(OUTPUTS, (final, denoised))}
    return {"results": results, "seconds": round(time.time() - start, 3)}


def _write_scalars(writer, metric, report):
    if writer is None or "results" not in report:
        return
    with writer.as_default(step=report["checkpoint"]):
        for output, numbers in report["results"].items():
            tf.summary.scalar(f"{metric.name}/{output}/eps_{report['step_size']:.6g}", numbers[metric.key])
    writer.flush()


def run_sweep(*, checkpoints, step_sizes, load_checkpoint, metric, settings, output_dir, writer=None,
              log=print):
    """Evaluates every (checkpoint, step size) not yet reported in `output_dir`; returns all reports.

    `load_checkpoint(step)` is called only for checkpoints with unfinished entries and returns
    `sample(step_size) -> (final, denoised)` arrays; `settings` (JSON-ready: sampler, n_sigma, seeds,
    num_samples, ...) goes into every report. Scalars go to the TensorBoard `writer` at step = checkpoint.
    Writes `<metric>_vs_step_size.png` at the end.
    """
    tf.io.gfile.makedirs(output_dir)
    identity = {"format": REPORT_FORMAT, "metric": metric.name, "metric_config": metric.config, **settings}
    reports = []

    def say(line):
        with progress.printing():
            log(line)

    with progress.bar(len(checkpoints) * len(step_sizes), "sweep", "entry") as bar:
        for checkpoint in checkpoints:
            sample = None
            for step_size in step_sizes:
                path = report_path(output_dir, checkpoint, step_size)
                report = read_report(path, identity)
                if report is None:
                    if sample is None:
                        sample = load_checkpoint(checkpoint)
                    say(f"checkpoint {checkpoint}, step size {step_size:g}: {settings.get('num_samples')} samples")
                    report = {**identity, "checkpoint": int(checkpoint), "step_size": float(step_size),
                              **_evaluate_entry(sample, step_size, metric, say)}
                    _write_scalars(writer, metric, report)
                    with storage.writing(path, "report"):
                        storage.write_json(path, report)
                    say(f"  {describe(report, metric)}")
                else:
                    say(f"checkpoint {checkpoint}, step size {step_size:g}: done before ({path})")
                reports.append(report)
                bar.update(1)
    plot_sweep(reports, metric, os.path.join(output_dir, f"{metric.name}_vs_step_size.png"))
    return reports


def describe(report, metric):
    """One line: the metric of the final and denoised samples of a report."""
    if "error" in report:
        return f"not sampled: {report['error']}"
    keys = (metric.key, *metric.also_shown)
    return "; ".join(f"{output} " + ", ".join(f"{key} {_number(numbers[key])}" for key in keys)
                     for output, numbers in report["results"].items())


def _number(value):
    return "n/a" if value is None else f"{value:.6g}"


def best_reports(reports, metric):
    """{output: the report whose `metric.key` is best for that output} over the finished reports."""
    best = {}
    for output in OUTPUTS:
        scored = [r for r in reports if "results" in r and output in r["results"]
                  and math.isfinite(r["results"][output][metric.key])]
        if scored:
            sign = 1 if metric.lower_is_better else -1
            best[output] = min(scored, key=lambda r: sign * r["results"][output][metric.key])
    return best


# --------------------------------------------------------------------------------------------------------------
# Plot


def plot_sweep(reports, metric, path):
    """A PNG of `metric.key` against the step size: one colour per checkpoint, solid final, dashed denoised."""
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    checkpoints = sorted({r["checkpoint"] for r in reports})
    for index, checkpoint in enumerate(checkpoints):
        entries = sorted((r for r in reports if r["checkpoint"] == checkpoint and "results" in r),
                         key=lambda r: r["step_size"])
        for output, style in zip(OUTPUTS, ("-", "--")):
            finite = [r for r in entries if math.isfinite(r["results"][output][metric.key])]
            xs = [r["step_size"] for r in finite]
            ys = [r["results"][output][metric.key] for r in finite]
            axes.plot(xs, ys, style, marker="o", color=f"C{index % 10}", label=f"ckpt {checkpoint} {output}")
    step_sizes = [r["step_size"] for r in reports if "results" in r]
    if step_sizes and max(step_sizes) > 3 * min(step_sizes):
        axes.set_xscale("log")
    num_samples = sorted({r.get("num_samples") for r in reports}, key=str)
    axes.set(xlabel="step size", ylabel=metric.key,
             title=f"{metric.name}: {reports[0].get('sampler', '')} n_sigma={reports[0].get('n_sigma', '')} "
                   f"N={','.join(map(str, num_samples))}" if reports else metric.name)
    if checkpoints:
        axes.legend(fontsize="small")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with storage.writing(path, "plot"):
        storage.write_file(path, buffer.getvalue())
    return path


def write_best_scalars(writer, metric, reports):
    """TensorBoard scalars `<metric>/<output>/best` per checkpoint: the best value over its step sizes."""
    if writer is None:
        return
    for checkpoint in sorted({r["checkpoint"] for r in reports}):
        best = best_reports([r for r in reports if r["checkpoint"] == checkpoint], metric)
        with writer.as_default(step=checkpoint):
            for output, report in best.items():
                tf.summary.scalar(f"{metric.name}/{output}/best", report["results"][output][metric.key])
    writer.flush()
