"""asm-sample: samples (final and denoised) from a run's EMA weights with ALS, CAS or the probability-flow ODE
(euler, heun), on the trained levels or on --num_steps of them."""

import dataclasses
import os

import numpy as np
from absl import flags

from asm_tf import run_loading, sampling, storage, summaries, workdir
from asm_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by asm-train.")
flags.DEFINE_integer("checkpoint", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_multi_string("gin_bindings", [], common.RUN_BINDINGS_HELP)
common.define_sampler_flags()
common.define_precision_flag()
flags.DEFINE_integer("num_steps", None, "Noise levels visited (default: all trained levels; CAS: its grid refined by "
                     "n_sigma). Network calls per image: num_steps for CAS and euler, 2 num_steps - 1 for heun, "
                     "num_steps n_sigma for ALS.")
flags.DEFINE_string(
    "step_size", None,
    "Step size epsilon of ALS and CAS (default: the run's for --sampler, SamplerSettings.cas_step_size or "
    "als_step_size when it is not the run's sampler, else the run's step size as is, said in a log line), or "
    "'auto': that step size carried over to --n_sigma and --num_steps with "
    "asm_tf.noise_levels.schedule.extrapolate_step_size, steps per trained interval standing in for "
    "n_sigma (ALS keeps eta * n_sigma, CAS (1 - eta)^n_sigma, with eta = eps / sigma^2 of each setting's own last "
    "level; the CAS rule is a reconstruction of the paper's Appendix B that has not been checked against its text).")
flags.DEFINE_string("seeds", "0-63", "Seeds, one image each: a range 0-4999, a list 1,5,9, or both.")
flags.DEFINE_integer("batch_size", 64, "Images per sampler call (does not change any image).")
flags.DEFINE_string("output_dir", None, "Where samples.npz and the PNGs go (default: WORKDIR/samples/...).")
flags.DEFINE_integer("trajectory_every", 0, "Also save the trajectory: the state entering every k-th level (of the "
                     "CAS grid, or of the ALS levels) and the final sample, as trajectory.png and trajectory.npz "
                     "(0: off).")
flags.DEFINE_bool("png_dir", False, "Also write every image as its own PNG named by its seed (final/000123.png and "
                  "denoised/000123.png in the output directory), for FID tools that read folders (clean-fid, "
                  "torch-fidelity).")
flags.DEFINE_integer("trajectory_images", 8, "Images shown in the trajectory (one row each); point runs show all.")


def parse_step_size(text):
    """--step_size: None (the run's), "auto", or a number."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise common.UserError(f"--step_size={text!r}: give a number such as 5.6e-6, or 'auto'") from None


class TrajectoryKeeper:
    """Wraps a trajectory sampler: returns (final, denoised) and keeps the first `limit` trajectories."""

    def __init__(self, sampler, limit):
        self.sampler, self.limit, self.kept = sampler, limit, []

    def __call__(self, seeds):
        final, denoised, trajectory = self.sampler(seeds)
        room = self.limit - sum(len(part) for part in self.kept)
        if room > 0:
            self.kept.append(trajectory[:room].numpy())
        return final, denoised

    def trajectories(self):
        return np.concatenate(self.kept)


def snapshot_sigmas(settings, schedule, every):
    """The noise levels of the trajectory's snapshots (the last snapshot, the final sample, has none)."""
    return settings.sampling_sigmas(schedule)[::every]


def trajectory_picture(trajectory, kind, levels):
    """A strip: one row per image and one column per snapshot, or one scatter plot per snapshot for points."""
    titles = [f"sigma {sigma:.3g}" for sigma in levels] + ["final"]
    if kind == "image":
        count, steps = trajectory.shape[:2]
        return summaries.image_grid(trajectory.reshape(count * steps, *trajectory.shape[2:]), columns=steps)
    plots = [summaries.scatter_plot(trajectory[:, t], title=title) for t, title in enumerate(titles)]
    height = max(plot.shape[0] for plot in plots)
    return np.concatenate([np.pad(plot, ((0, height - plot.shape[0]), (0, 0), (0, 0)), constant_values=255)
                           for plot in plots], axis=1)


def stored(batch, kind):
    """A batch as the npz files keep it: uint8 images (as their PNGs) or float points."""
    return summaries.to_uint8(batch).numpy() if kind == "image" else np.asarray(batch)


def output(written, output_dir, *names):
    """The path OUTPUT_DIR/NAMES, recorded in `written` (storage.writing_outputs) before it is written."""
    path = os.path.join(output_dir, *names)
    written.append(path)
    return path


def save_trajectory(output_dir, trajectory, kind, levels, written):
    """trajectory.npz (uint8 images or float points [N, T, ...], the snapshots' sigmas) and trajectory.png."""
    storage.write_npz(output(written, output_dir, "trajectory.npz"), trajectory=stored(trajectory, kind),
                      sigmas=np.asarray(levels, np.float64))
    summaries.save_png(trajectory_picture(trajectory, kind, levels), output(written, output_dir, "trajectory.png"))


def save_samples(output_dir, final, denoised, seeds, kind, written):
    """samples.npz (uint8 images or float points, with the seeds) and one PNG per output."""
    storage.write_npz(output(written, output_dir, "samples.npz"), final=stored(final, kind),
                      denoised=stored(denoised, kind), seeds=np.asarray(seeds, np.int64))
    for name, batch in (("final", final), ("denoised", denoised)):
        summaries.save_png(summaries.picture(batch, kind, title=name), output(written, output_dir, f"{name}.png"))


def save_png_dir(output_dir, final, denoised, seeds, written):
    """final/ and denoised/ folders holding one PNG per image, named by its seed (000123.png)."""
    for name, batch in (("final", final), ("denoised", denoised)):
        for seed, image in zip(seeds, summaries.to_uint8(batch).numpy()):
            summaries.save_png(image, output(written, output_dir, name, f"{seed:06d}.png"))


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise common.UserError("give --workdir=DIR of a run trained with asm-train")
    if FLAGS.batch_size < 1:
        raise common.UserError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    if FLAGS.trajectory_every < 0 or FLAGS.trajectory_images < 1:
        raise common.UserError("--trajectory_every must be 0 (off) or positive and --trajectory_images positive, "
                               f"got {FLAGS.trajectory_every} and {FLAGS.trajectory_images}")
    seeds = common.parse_seeds(FLAGS.seeds)
    if FLAGS.png_dir and len(set(seeds)) < len(seeds):
        raise common.UserError(f"--png_dir names each image by its seed: --seeds={FLAGS.seeds} repeats a seed")
    parse_step_size(FLAGS.step_size)  # before the slow part
    common.announce_precision(FLAGS.precision)
    run = run_loading.load_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.gin_bindings, precision=FLAGS.precision)
    schedule, source = run.experiment.schedule, run.experiment.data
    if FLAGS.png_dir and source.kind != "image":
        raise common.UserError(f"--png_dir writes images; this run's data ({source.name}) are 2-D points")
    settings = common.settings_from_flags(run, num_steps=FLAGS.num_steps, step_size=parse_step_size(FLAGS.step_size))
    every = FLAGS.trajectory_every or None
    sampler = sampling.make_sampler(run.score_model, schedule, settings, source, trajectory_every=every)
    if every:
        sampler = TrajectoryKeeper(sampler, FLAGS.trajectory_images if source.kind == "image" else len(seeds))
    output_dir = FLAGS.output_dir or workdir.samples_directory(FLAGS.workdir, f"step{run.step}_{settings.label()}")
    storage.check_writable(output_dir, "samples to")  # a read-only, full or unreachable place fails before sampling
    print(f"sampling {len(seeds)} images with {settings} ({settings.network_calls(schedule)} network calls each) "
          f"from {run.checkpoint}", flush=True)
    final, denoised = sampling.sample_in_batches(sampler, seeds, FLAGS.batch_size)
    summary = "samples.npz, final.png and denoised.png"
    with storage.writing_outputs(output_dir, "samples") as written:
        save_samples(output_dir, final, denoised, seeds, source.kind, written)
        if FLAGS.png_dir:
            save_png_dir(output_dir, final, denoised, seeds, written)
            summary += f", final/ and denoised/ ({len(seeds)} PNGs each)"
        if every:
            save_trajectory(output_dir, sampler.trajectories(), source.kind,
                            snapshot_sigmas(settings, schedule, every), written)
            summary += ", trajectory.npz and trajectory.png"
        storage.write_json(output(written, output_dir, "settings.json"), {
            "checkpoint": run.checkpoint, "step": run.step, **dataclasses.asdict(settings),
            "network_calls": settings.network_calls(schedule),
            "step_size_flag": FLAGS.step_size, "num_samples": len(seeds), "seeds": FLAGS.seeds,
            "trajectory_every": FLAGS.trajectory_every, "gin_bindings": FLAGS.gin_bindings})
    print(f"wrote {output_dir}/{summary}", flush=True)


def run():
    common.run_app("asm-sample", main)


if __name__ == "__main__":
    run()
