"""asm-train: train a score network (optionally adversarially) from gin files; running again resumes."""

import tempfile

import gin
import tensorflow as tf
from absl import app, flags

from asm_tf import training
from asm_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin configuration file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. 'Trainer.num_steps = 1000'.")
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, config.gin.")
flags.DEFINE_enum("strategy", "mirrored", list(training.STRATEGIES),
                  "tf.distribute strategy: all local devices, one device, or the workers of TF_CONFIG.")
flags.DEFINE_bool("dry_run", False, "Parse and validate the config, build models and data, print sizes, exit.")
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir even though its saved config differs.")


def describe(trainer):
    """Lines describing a built trainer: parameter counts and shapes."""
    count = sum(int(v.shape.num_elements()) for v in trainer.network.trainable_variables)
    data = trainer.experiment.data
    return [f"data: {data.name}, examples of shape {tuple(data.example_shape)}, global batch {trainer.batch_size}",
            f"score network: {type(trainer.network).__name__}, {count:,} parameters",
            f"noise levels: {trainer.schedule.num_levels} ({trainer.schedule.spacing}) from "
            f"{trainer.schedule.sigma_begin:g} to {trainer.schedule.sigma_end:g}",
            f"replicas: {trainer.strategy.num_replicas_in_sync}"]


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.gin_file:
        raise common.UserError("give at least one --gin_file (see gin_configs/)")
    if not FLAGS.workdir and not FLAGS.dry_run:
        raise common.UserError("give --workdir=DIR (where checkpoints and summaries go)")
    common.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    config_text = gin.config_str()
    if FLAGS.workdir:
        common.check_workdir_config(FLAGS.workdir, config_text, FLAGS.allow_config_change)
    strategy = training.make_strategy(FLAGS.strategy)
    trainer = training.Trainer(FLAGS.workdir or tempfile.mkdtemp(prefix="asm_dry_run_"), strategy)
    print("\n".join(describe(trainer)), flush=True)
    if FLAGS.dry_run:
        batch = next(iter(trainer.data.make_dataset(trainer.batch_size, trainer.seed)))
        print(f"first batch: shape {tuple(batch.shape)}, range [{float(tf.reduce_min(batch)):.3g}, "
              f"{float(tf.reduce_max(batch)):.3g}]\ndry run: the configuration is valid", flush=True)
        return
    common.save_config(FLAGS.workdir, config_text)
    trainer.train()
    print(f"done: checkpoints in {trainer.manager.directory}; "
          f"tensorboard --logdir {FLAGS.workdir}/tensorboard", flush=True)


def run():
    app.run(common.main_with_errors("asm-train", main))


if __name__ == "__main__":
    run()
