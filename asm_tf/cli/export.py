"""asm-export: a run's EMA sampler as a versioned SavedModel for TF Serving (EXPORT_DIR/NAME/VERSION/)."""

import dataclasses
import os
import re

import tensorflow as tf
from absl import flags

from asm_tf import export, run_loading, storage
from asm_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by asm-train.")
flags.DEFINE_string("export_dir", None, "Base directory of exported models; the model goes to EXPORT_DIR/NAME/VERSION.")
flags.DEFINE_string("name", None, "Model name, TF Serving's MODEL_NAME (default: the workdir's base name).")
flags.DEFINE_integer("version", None, "Version number (default: one above the highest existing); never overwritten.")
flags.DEFINE_integer("checkpoint", None, "Checkpoint step to export (default: the newest).")
flags.DEFINE_multi_string("gin_bindings", [], common.RUN_BINDINGS_HELP)
common.define_precision_flag()
flags.DEFINE_integer("max_images", 64, "Most examples one request may ask for; larger requests fail.")
flags.DEFINE_integer("n_sigma", None, "CAS grid refinement of serving_default and inpaint (default: the run's).")
flags.DEFINE_float("step_size", None, "CAS step size of serving_default and inpaint (default: the run's CAS step "
                   "size: step_size of a CAS run, else SamplerSettings.cas_step_size, else the run's step size as "
                   "is, said in a log line).")

INFO_FILE = os.path.join("assets.extra", "asm_export.json")


def version_path(base, requested):
    """EXPORT_DIR/NAME/VERSION for the requested (or the next free) version; a UserError if it exists."""
    try:
        return os.path.join(base, str(export.choose_version(base, requested)))
    except FileExistsError as error:
        raise common.UserError(str(error)) from None


def model_name(name, workdir):
    name = name or os.path.basename(os.path.normpath(workdir))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise common.UserError(f"--name={name!r}: use letters, digits, '.', '_' and '-' (it becomes a directory "
                               "and TF Serving's MODEL_NAME)")
    return name


def serving_settings(run_settings):
    """CAS settings for serving_default and inpaint: the run's n_sigma and CAS step size, with the flags applied."""
    return run_settings.override(sampler="cas", n_sigma=FLAGS.n_sigma, step_size=FLAGS.step_size)


def write_info(path, loaded, settings):
    """A JSON note beside the SavedModel: where it came from and what its signatures need."""
    experiment = loaded.experiment
    run_directory = FLAGS.workdir if storage.is_remote(FLAGS.workdir) else os.path.abspath(FLAGS.workdir)
    info = {"workdir": run_directory, "checkpoint": loaded.checkpoint, "step": loaded.step,
            "kind": experiment.data.kind, "example_shape": list(experiment.data.example_shape),
            "schedule": dataclasses.asdict(experiment.schedule), "serving_settings": dataclasses.asdict(settings),
            "max_images": FLAGS.max_images, "precision": FLAGS.precision, "gin_bindings": FLAGS.gin_bindings,
            "signatures": list(export.SIGNATURES)}
    storage.write_json(os.path.join(path, INFO_FILE), info)


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir or not FLAGS.export_dir:
        raise common.UserError("give --workdir=DIR (a run trained with asm-train) and --export_dir=EXP")
    if FLAGS.max_images < 1:
        raise common.UserError(f"--max_images must be at least 1, got {FLAGS.max_images}")
    base = os.path.join(FLAGS.export_dir, model_name(FLAGS.name, FLAGS.workdir))
    version_path(base, FLAGS.version)  # fail before the slow part
    common.announce_precision(FLAGS.precision)
    loaded = run_loading.load_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.gin_bindings, precision=FLAGS.precision)
    settings = serving_settings(loaded.sampler_settings)
    experiment = loaded.experiment
    settings.validate(experiment.schedule)
    final = version_path(base, FLAGS.version)
    partial = os.path.join(base, f".partial-{os.path.basename(final)}-{os.getpid()}")  # not a version to TF Serving
    print(f"exporting step {loaded.step} ({loaded.checkpoint}) with serving settings {settings}", flush=True)
    try:
        with storage.writing(final, "export"):
            export.save(loaded.score_model, experiment.schedule, experiment.data, settings, partial,
                        max_images=FLAGS.max_images)
            write_info(partial, loaded, settings)
            if tf.io.gfile.exists(final):
                raise common.UserError(f"{final} appeared while exporting and is never overwritten: export again")
            tf.io.gfile.rename(partial, final)
    except storage.StorageError as error:
        raise storage.StorageError(f"{error}; the versions before it ({export.existing_versions(base) or 'none'}) "
                                   "are untouched") from None
    finally:
        storage.remove_quietly([partial])  # nothing to remove once renamed
    print(f"wrote {final} (signatures: {', '.join(export.SIGNATURES)})", flush=True)


def run():
    common.run_app("asm-export", main)


if __name__ == "__main__":
    run()
