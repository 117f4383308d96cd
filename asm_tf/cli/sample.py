"""asm-sample: ALS or CAS samples (final and denoised) from a run's EMA weights."""

import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from asm_tf import run as run_lib
from asm_tf import sampling, summaries
from asm_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by asm-train.")
flags.DEFINE_integer("checkpoint", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_enum("sampler", None, list(sampling.SAMPLERS), "Sampler (default: the run's).")
flags.DEFINE_integer("n_sigma", None, "ALS steps per level, or CAS grid refinement (default: the run's).")
flags.DEFINE_float("step_size", None, "Step size epsilon (default: the run's).")
flags.DEFINE_string("seeds", "0-63", "Seeds, one image each: a range 0-4999, a list 1,5,9, or both.")
flags.DEFINE_integer("batch_size", 64, "Images per sampler call (does not change any image).")
flags.DEFINE_string("output_dir", None, "Where samples.npz and the PNGs go (default: WORKDIR/samples/...).")


def settings_from_flags():
    """The run's sampler settings with the flags that were given applied on top."""
    overrides = {name: getattr(FLAGS, name) for name in ("sampler", "n_sigma", "step_size")
                 if getattr(FLAGS, name) is not None}
    return dataclasses.replace(sampling.SamplerSettings(), **overrides)


def save_samples(output_dir, final, denoised, seeds, kind):
    """samples.npz (uint8 images or float points, with the seeds) and one PNG per output."""
    os.makedirs(output_dir, exist_ok=True)
    convert = summaries.to_uint8 if kind == "image" else np.asarray
    np.savez(os.path.join(output_dir, "samples.npz"), final=convert(final), denoised=convert(denoised),
             seeds=np.asarray(seeds, np.int64))
    for name, batch in (("final", final), ("denoised", denoised)):
        summaries.save_png(summaries.picture(batch, kind, title=name), os.path.join(output_dir, f"{name}.png"))


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise common.UserError("give --workdir=DIR of a run trained with asm-train")
    if FLAGS.batch_size < 1:
        raise common.UserError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    seeds = common.parse_seeds(FLAGS.seeds)
    run = run_lib.load_run(FLAGS.workdir, FLAGS.checkpoint)
    settings = settings_from_flags()
    schedule, source = run.experiment.schedule, run.experiment.data
    sampler = sampling.make_sampler(run.score_model, schedule, settings, source)
    output_dir = FLAGS.output_dir or os.path.join(
        FLAGS.workdir, "samples", f"step{run.step}_{settings.sampler}_n{settings.n_sigma}_eps{settings.step_size:g}")
    print(f"sampling {len(seeds)} images with {settings} from {run.checkpoint}", flush=True)
    final, denoised = sampling.sample_in_batches(sampler, seeds, FLAGS.batch_size)
    save_samples(output_dir, final, denoised, seeds, source.kind)
    with open(os.path.join(output_dir, "settings.json"), "w", encoding="utf-8") as f:
        json.dump({"checkpoint": run.checkpoint, "step": run.step, **dataclasses.asdict(settings),
                   "num_samples": len(seeds), "seeds": FLAGS.seeds}, f, indent=2)
    print(f"wrote {output_dir}/samples.npz, final.png and denoised.png", flush=True)


def run():
    app.run(common.main_with_errors("asm-sample", main))


if __name__ == "__main__":
    run()
