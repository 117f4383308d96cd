"""asm-import: a checkpoint of the paper's official PyTorch code as a workdir for asm-sample, asm-export and asm-eval.

  asm-import --reference_checkpoint=exp/logs/cifar10/checkpoint_300000.pth --workdir=runs/cifar10_reference

Reads the checkpoint with torch's weights-only loader and config.yml (default: beside the checkpoint, as the
reference's training writes it) with a loader that builds no Python objects, so neither file can run code.
The network is the one the reference builds from config.yml; every tensor is placed or the import fails naming
it. Needs the import extra: pip install -e ".[import]". Exit status 2 for unreadable or mismatched files or a
workdir that already holds a run, 1 for a write that failed.
"""

import os

from absl import flags

from asm_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_checkpoint", None, "A checkpoint_<step>.pth (or checkpoint.pth) of the reference.")
flags.DEFINE_string("reference_config", None, "The run's config.yml (default: config.yml beside the checkpoint).")
flags.DEFINE_string("workdir", None, "The workdir to write (config.gin, checkpoints/, imported.json).")
flags.DEFINE_bool("overwrite", False, "Replace the configuration and checkpoints of a workdir that holds a run.")


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.reference_checkpoint or not FLAGS.workdir:
        raise common.UserError("give --reference_checkpoint=PATH.pth and --workdir=DIR")
    from asm_tf.reference import importer  # TensorFlow only once the flags are right

    config = FLAGS.reference_config or os.path.join(os.path.dirname(FLAGS.reference_checkpoint), "config.yml")
    try:
        report = importer.import_checkpoint(FLAGS.reference_checkpoint, config, FLAGS.workdir, FLAGS.overwrite)
    except FileExistsError as error:
        raise common.UserError(str(error)) from None
    print(f"score network: {report.network}, {report.parameters:,} parameters, step {report.step}; "
          f"EMA weights: {'from the checkpoint' if report.ema else 'none in the run (model.ema false): the live ones'}")
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}")
    print(f"wrote {', '.join(report.files)}\nnext: asm-sample --workdir={FLAGS.workdir} (CAS: --sampler=cas)")


def run():
    common.run_app("asm-import", main)


if __name__ == "__main__":
    run()
