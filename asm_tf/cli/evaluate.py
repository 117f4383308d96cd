"""asm-eval: metrics of a run over a range of checkpoints and step sizes, or reference statistics of its data.

  asm-eval --workdir=DIR --metric=fid --reference_stats=STATS.npz --inception_path=classify_image_graph_def.pb \
           --checkpoints=100000-300000 --step_sizes=4e-6:8e-6:5 --num_samples=5000 --sampler=cas --n_sigma=1
  asm-eval --workdir=DIR --metric=fdd --sampler=heun --spacing=rho --num_steps=3,5,10,20   # one sweep per count
  asm-eval --workdir=DIR --mode=stats --inception_path=... [--num_samples=N]     # WORKDIR/eval/reference_stats.npz
  asm-eval --workdir=DIR --metric=modes --samples=DIR/samples/OUT    # the samples asm-sample wrote, not new ones

Each (checkpoint, step size) evaluates the final and the denoised samples of the same seeds and writes one
JSON report; finished reports are kept, so running the same command again resumes an interrupted sweep.
A plot of the metric against the step size goes beside the reports; TensorBoard scalars go to
WORKDIR/tensorboard/<sweep name> at step = checkpoint.
"""

import dataclasses
import json
import os

import tensorflow as tf
from absl import flags

from asm_tf import run_loading, sampling, storage, workdir
from asm_tf.cli import common
from asm_tf.data import toy2d as toy_data
from asm_tf.evaluation import digit_quality, fid, modes, sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by asm-train.")
flags.DEFINE_multi_string("gin_bindings", [], common.RUN_BINDINGS_HELP)
flags.DEFINE_enum("mode", "sweep", ["sweep", "stats"], "Evaluate samples, or compute the data's FID statistics.")
flags.DEFINE_enum("metric", None, ["fid", "is", "fdd", "modes", "toy2d"],
                  "Metric (default: toy2d for 2-D points, fid for images). fdd: the Frechet digit distance, KID, "
                  "precision/recall and classes in a digit classifier's feature space, against the data's test "
                  "split, with the train-vs-test floor and a blur ladder (digit data; no Inception file).")
flags.DEFINE_string("checkpoints", "latest", "Checkpoint steps: latest, all, a range 100000-300000, a list, or both.")
flags.DEFINE_string("step_sizes", None, "Step sizes: a list 5e-6,6e-6 or LOW:HIGH:COUNT (default: the run's).")
flags.DEFINE_integer("num_samples", None, "Samples per entry (default 1000; with --seeds, their count). "
                                          "For --mode=stats: images of the data (default: one epoch).")
flags.DEFINE_string("seeds", None, "Seeds of the samples, e.g. 0-4999 (default: 0 to num_samples - 1).")
common.define_sampler_flags()
common.define_precision_flag()
flags.DEFINE_string("num_steps", None, "Noise levels visited, a list such as 5,10,20 (one sweep each; default: all "
                    "trained levels). Without --step_sizes, ALS and CAS carry the run's step size to each count "
                    "(asm_tf.sampling.carried_step_size).")
flags.DEFINE_string("samples", None, "An asm-sample output directory: evaluate its samples.npz (the sampler settings "
                    "and checkpoint of its settings.json) instead of sampling.")
flags.DEFINE_integer("batch_size", 100, "Images per sampler call (does not change any image).")
flags.DEFINE_string("output_dir", None, "Reports and plot (default: WORKDIR/eval/<metric>_<sampler>_n<n>_N<N>).")
flags.DEFINE_string("inception_path", None, "FID Inception file (fid, is, stats): " + fid.HOW_TO_GET_INCEPTION)
flags.DEFINE_integer("feature_batch_size", fid.DEFAULT_BATCH_SIZE, "Images per Inception call.")
flags.DEFINE_string("reference_stats", None, "FID reference .npz (default: WORKDIR/eval/reference_stats.npz); "
                                             "for --mode=stats, where to write it.")
flags.DEFINE_string("classifier", None, "Digit classifier .keras for --metric=modes/fdd (default: the bundled "
                                        "16x16 digits classifier; Stacked MNIST needs an MNIST one).")
flags.DEFINE_integer("num_real", 5000, "Real points for --metric=toy2d.")
flags.DEFINE_integer("real_seed", 7, "Seed of the real points for --metric=toy2d.")

DEFAULT_NUM_SAMPLES = 1000
STATS_BATCH_SIZE = 500


def seeds_from_flags():
    if FLAGS.seeds is None:
        count = DEFAULT_NUM_SAMPLES if FLAGS.num_samples is None else FLAGS.num_samples
        if count < 1:
            raise common.UserError(f"--num_samples must be at least 1, got {count}")
        return list(range(count))
    seeds = common.parse_seeds(FLAGS.seeds)
    if FLAGS.num_samples is not None and FLAGS.num_samples != len(seeds):
        raise common.UserError(f"--seeds {FLAGS.seeds} gives {len(seeds)} samples but --num_samples is "
                               f"{FLAGS.num_samples}; give one of them or make them agree")
    return seeds


def sampler_settings(run, num_steps=None):
    """The run's sampler settings with --sampler, --n_sigma, the level flags, `num_steps` and the first of
    --step_sizes; without --step_sizes, an ALS or CAS step size is carried to `num_steps` levels."""
    if FLAGS.step_sizes:
        step_size = sweep.parse_step_sizes(FLAGS.step_sizes)[0]
    else:
        step_size = None if num_steps is None else "auto"
    return common.settings_from_flags(run, num_steps=num_steps, step_size=step_size)


def parse_num_steps(text):
    """--num_steps: [None] (all trained levels) or a list of counts."""
    if text is None:
        return [None]
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise common.UserError(f"--num_steps={text!r}: give counts such as 5,10,20") from None


def default_reference_path():
    return FLAGS.reference_stats or workdir.eval_directory(FLAGS.workdir, "reference_stats.npz")


def load_extractor():
    return fid.load_feature_extractor(FLAGS.inception_path) if FLAGS.inception_path else fid.load_feature_extractor()


def build_metric(name, source):
    """The sweep metric `name` for a run whose data is `source`, with a clear error where they do not fit."""
    if (name == "toy2d") != (source.kind == "points"):
        raise common.UserError(f"--metric={name} does not apply to the {source.kind} data of this run "
                               f"({source.name}); use {'toy2d' if source.kind == 'points' else 'fid, is or modes'}")
    if name == "toy2d":
        if source.name not in toy_data.GENERATORS:
            raise common.UserError(f"no generator of real points for {source.name!r}")
        real = toy_data.sample(source.name, FLAGS.num_real, FLAGS.real_seed)
        return sweep.toy2d_metric(real_points=real, description=f"{source.name} seed {FLAGS.real_seed}")
    if name in ("modes", "fdd"):
        classifier = modes.load_classifier(FLAGS.classifier)
        modes.check_image_size(classifier, source.example_shape)
        classifier_path = FLAGS.classifier or "bundled digits"
        if name == "modes":
            return sweep.modes_metric(classifier=classifier, classifier_path=classifier_path)
        quality = digit_quality.for_data(source, classifier, log=lambda message: print(message, flush=True))
        return sweep.fdd_metric(quality=quality, config={"classifier": classifier_path,
                                                         "reference": f"{source.name} test split",
                                                         "floor": f"{source.name} train split"})
    extractor = load_extractor()
    if name == "is":
        return sweep.inception_score_metric(extractor=extractor, batch_size=FLAGS.feature_batch_size)
    reference_path = default_reference_path()
    reference = fid.FeatureStatistics.load(reference_path)
    return sweep.fid_metric(extractor=extractor, reference=reference, reference_path=reference_path,
                            batch_size=FLAGS.feature_batch_size)


def checkpoint_loader(run, settings, seeds, loaded_runs):
    """load_checkpoint(step) -> sample(step_size) -> (final, denoised) for run_sweep, restoring `run`'s
    checkpoints (`loaded_runs`: {step: LoadedRun} already restored)."""
    def load_checkpoint(step):
        loaded = loaded_runs.get(step) or run_loading.restore(run, FLAGS.workdir, step, precision=FLAGS.precision)

        def sample(step_size):
            step_settings = dataclasses.replace(settings, step_size=step_size)
            sampler = sampling.make_sampler(loaded.score_model, loaded.experiment.schedule, step_settings,
                                            loaded.experiment.data)
            return sampling.sample_in_batches(sampler, seeds, FLAGS.batch_size, log=None)

        return sample

    return load_checkpoint


def uses_levels(settings):
    """True for settings that the sweeps before --num_steps could not express (their reports lack the fields)."""
    return settings.num_steps is not None or settings.sampler in sampling.ODE_SAMPLERS


def sweep_settings(settings, seeds, schedule):
    """The sampler identity that every report of a sweep carries."""
    identity = {"sampler": settings.sampler, "n_sigma": settings.n_sigma, "noise_first": settings.noise_first,
                "num_samples": len(seeds), "seeds": sweep.format_seeds(seeds)}
    if uses_levels(settings):
        identity.update({name: getattr(settings, name) for name in ("num_steps", *common.LEVEL_FLAGS)},
                        network_calls=settings.network_calls(schedule))
    return identity


def sweep_name(metric_name, settings, count):
    """The sweep's directory name: fdd_cas_n1_N500, or with levels fdd_heun_rho10_N500, fdd_cas_L10_N500."""
    if not uses_levels(settings):
        return f"{metric_name}_{settings.sampler}_n{settings.n_sigma}_N{count}"
    return f"{metric_name}_{settings.label().split('_eps')[0]}_N{count}"


def run_and_report(*, run, settings, seeds, checkpoints, step_sizes, load_checkpoint):
    """Runs the sweep of `run` (the run in FLAGS.workdir) and prints the best entries and the plot."""
    experiment = run.experiment
    source = experiment.data
    metric_name = FLAGS.metric or ("toy2d" if source.kind == "points" else "fid")
    name = sweep_name(metric_name, settings, len(seeds))
    output_dir = FLAGS.output_dir or workdir.eval_directory(FLAGS.workdir, name)
    tensorboard_dir = workdir.tensorboard_directory(FLAGS.workdir, name)
    for directory, what in ((output_dir, "evaluation reports to"), (tensorboard_dir, "TensorBoard summaries to")):
        storage.check_writable(directory, what)  # a read-only, full or unreachable place fails before sampling
    metric = build_metric(metric_name, source)
    print(f"{metric.name} of {len(checkpoints)} checkpoint(s) x {len(step_sizes)} step size(s), "
          f"{len(seeds)} samples each, into {output_dir}", flush=True)
    writer = tf.summary.create_file_writer(tensorboard_dir)
    reports = sweep.run_sweep(checkpoints=checkpoints, step_sizes=step_sizes, load_checkpoint=load_checkpoint,
                              metric=metric, settings=sweep_settings(settings, seeds, experiment.schedule),
                              output_dir=output_dir, writer=writer, log=lambda message: print(message, flush=True))
    sweep.write_best_scalars(writer, metric, reports)
    for output, report in sweep.best_reports(reports, metric).items():
        print(f"best {output}: {metric.key} {report['results'][output][metric.key]:.6g} at checkpoint "
              f"{report['checkpoint']}, step size {report['step_size']:g}", flush=True)
    print(f"plot: {os.path.join(output_dir, metric.name + '_vs_step_size.png')}", flush=True)


def run_sweep_mode():
    seeds = seeds_from_flags()
    run = run_loading.read_run_config(FLAGS.workdir, FLAGS.gin_bindings)
    counts = parse_num_steps(FLAGS.num_steps)
    settings = [sampler_settings(run, count) for count in counts]  # bad settings fail before the slow part
    loaded_runs = {}
    if FLAGS.checkpoints == "latest":  # the newest readable one: a damaged newer one is reported and passed over
        loaded = run_loading.restore(run, FLAGS.workdir, log=lambda message: print(message, flush=True),
                                     precision=FLAGS.precision)
        loaded_runs[loaded.step] = loaded
        checkpoints = [loaded.step]
    else:
        checkpoints = sweep.select_checkpoints(workdir.checkpoint_steps(FLAGS.workdir), FLAGS.checkpoints)
    schedule = run.experiment.schedule
    for chosen in settings:
        step_sizes = sweep.parse_step_sizes(FLAGS.step_sizes) if FLAGS.step_sizes else [chosen.step_size]
        dataclasses.replace(chosen, step_size=step_sizes[0]).validate(schedule)  # before any sampling
        run_and_report(run=run, settings=chosen, seeds=seeds, checkpoints=checkpoints, step_sizes=step_sizes,
                       load_checkpoint=checkpoint_loader(run, chosen, seeds, loaded_runs))


SAMPLING_FLAGS = ("checkpoints", "step_sizes", "num_samples", "seeds", "num_steps", *common.SAMPLER_FLAGS)


def run_samples_mode():
    """Evaluates the samples of an asm-sample output directory as the sweep entry they belong to."""
    given = [f"--{name}" for name in SAMPLING_FLAGS if FLAGS[name].present]
    if given:
        raise common.UserError(f"--samples evaluates stored samples; {', '.join(given)} would need new ones: "
                               "leave them out, or leave out --samples")
    paths = [os.path.join(FLAGS.samples, name) for name in ("samples.npz", "settings.json")]
    missing = [path for path in paths if not tf.io.gfile.exists(path)]
    if missing:
        raise common.UserError(f"{FLAGS.samples} is not an asm-sample output directory: {', '.join(missing)} "
                               "missing")
    stored = json.loads(storage.read_text(paths[1]))
    arrays = storage.read_npz(paths[0])
    run = run_loading.read_run_config(FLAGS.workdir, FLAGS.gin_bindings)
    fields = {field.name for field in dataclasses.fields(sampling.SamplerSettings)}
    settings = sampling.SamplerSettings.defaults(**{key: value for key, value in stored.items() if key in fields})
    outputs = (arrays["final"], arrays["denoised"])
    run_and_report(run=run, settings=settings, seeds=arrays["seeds"].tolist(), checkpoints=[stored["step"]],
                   step_sizes=[settings.step_size], load_checkpoint=lambda step: lambda step_size: outputs)


def run_stats_mode():
    source = run_loading.read_run_config(FLAGS.workdir, FLAGS.gin_bindings).experiment.data
    if source.kind != "image":
        raise common.UserError(f"--mode=stats needs image data; {source.name} holds 2-D points")
    num_images = FLAGS.num_samples or source.num_examples
    if not num_images:
        raise common.UserError(f"the size of {source.name} is unknown: give --num_samples")
    output = default_reference_path()
    storage.check_writable(os.path.dirname(output) or ".", "reference statistics to")
    extractor = load_extractor()
    batches = (source.transform.to_data(batch).numpy()
               for batch in source.make_dataset(STATS_BATCH_SIZE, 0, augment=False))
    print(f"features of {num_images} images of {source.name} with {extractor.name}", flush=True)
    statistics = fid.image_statistics(batches, extractor=extractor, num_images=num_images)
    with storage.writing(output, "reference statistics"):
        statistics.save(output)
    print(f"wrote {output} (mu {statistics.mu.shape}, sigma {statistics.sigma.shape}, "
          f"{statistics.num_images} images)", flush=True)


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise common.UserError("give --workdir=DIR of a run trained with asm-train")
    if FLAGS.batch_size < 1 or FLAGS.feature_batch_size < 1:
        raise common.UserError("--batch_size and --feature_batch_size must be at least 1")
    common.announce_precision(FLAGS.precision)
    if FLAGS.mode == "stats":
        run_stats_mode()
    elif FLAGS.samples:
        run_samples_mode()
    else:
        run_sweep_mode()


def run():
    common.run_app("asm-eval", main)


if __name__ == "__main__":
    run()
