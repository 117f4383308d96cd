"""asm-train: train a score network (optionally adversarially) from gin files; running again resumes.

Exit status: 0 when training finished, 75 when a signal (SIGTERM, SIGINT) stopped it after saving a
checkpoint (run the same command to resume), 1 when a non-finite loss or gradient stopped it or a file could
not be written (no space, read-only storage), 2 for a mistake in the command line or the configuration or a
workdir that another asm-train holds.
"""

import sys
import tempfile

import gin
import tensorflow as tf
from absl import flags

from asm_tf import configuration, storage, workdir
from asm_tf.cli import common
from asm_tf.experiment import parameter_count
from asm_tf.training import distribution, preemption
from asm_tf.training import precision as precision_lib
from asm_tf.training.trainer import Trainer

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin configuration file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. 'Trainer.num_steps = 1000'.")
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, config.gin.")
flags.DEFINE_enum("strategy", "auto", list(distribution.STRATEGIES),
                  "tf.distribute strategy: auto (multi_worker if TF_CONFIG names a cluster, mirrored over several "
                  "local GPUs, else default), all local devices, one device, the workers of TF_CONFIG, or a TPU.")
flags.DEFINE_string("tpu", "local", "With --strategy=tpu: the TPU's name or address ('local' on a TPU VM).")
flags.DEFINE_bool("dry_run", False, "Parse and validate the config, build models and data, print sizes, exit.")
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir even though its saved config differs.")


def network_line(role, network, example_shape):
    """'role: Class, N parameters, input (batch, ...)' for a built network."""
    return f"{role}: {type(network).__name__}, {parameter_count(network):,} parameters, input (batch, {', '.join(map(str, example_shape))})"


def device_lines(strategy, workers):
    """The devices TensorFlow sees (so a GPU user sees the GPU) and those the strategy's replicas run on."""
    visible = [device.name.replace("/physical_device:", "") for device in tf.config.list_physical_devices()]
    gpus = "" if tf.config.list_physical_devices("GPU") else " (no GPU visible: training runs on the CPU)"
    try:
        replica_devices = ", ".join(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica on TensorFlow's default device
        replica_devices = "the default device"
    strategy_class = type(strategy).__name__.lstrip("_")  # the default strategy's class is private
    return [f"devices: {', '.join(visible)}{gpus}",
            f"replicas: {strategy.num_replicas_in_sync} on {workers.count} worker(s), {strategy_class} "
            f"over {replica_devices}"]


def describe(trainer):
    """Lines describing a built trainer: its networks, data, noise levels and devices."""
    data = trainer.experiment.data
    lines = [f"data: {data.name}, examples of shape {tuple(data.example_shape)}, global batch {trainer.batch_size}",
             network_line("score network", trainer.network, data.example_shape)]
    if trainer.adversarial:
        lines.append(network_line("discriminator", trainer.discriminator, data.example_shape))
    return lines + [f"noise levels: {trainer.schedule.num_levels} ({trainer.schedule.spacing}) from "
                    f"{trainer.schedule.sigma_begin:g} to {trainer.schedule.sigma_end:g}",
                    *device_lines(trainer.strategy, trainer.workers),
                    f"precision: {trainer.precision}, XLA: {'on' if trainer.jit_compile else 'off'}, "
                    f"non-finite updates: {trainer.nonfinite}", precision_lib.bfloat16_line()]


def strategy_name(requested, dry_run):
    """The strategy to start: a dry run stays on this machine (a cluster would wait for its other workers)."""
    name = distribution.auto_strategy_name() if requested == "auto" else requested
    if dry_run and name in ("multi_worker", "tpu"):
        print(f"dry run on this machine's devices: the {name} strategy is not started", flush=True)
        return "mirrored"
    return name


def main(argv):
    if len(argv) > 1:
        raise common.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.gin_file:
        raise common.UserError("give at least one --gin_file (see gin_configs/)")
    if not FLAGS.workdir and not FLAGS.dry_run:
        raise common.UserError("give --workdir=DIR (where checkpoints and summaries go)")
    if FLAGS.workdir and tf.io.gfile.exists(workdir.import_record_path(FLAGS.workdir)):
        raise common.UserError(f"{FLAGS.workdir} holds a network imported from the reference (asm-import), without "
                               "its optimizer state or a discriminator: training cannot resume it; train in a new "
                               "--workdir")
    configuration.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    config_text = gin.config_str()
    if FLAGS.workdir:
        workdir.check_config(FLAGS.workdir, config_text, FLAGS.allow_config_change,
                             log=lambda line: print(line, flush=True))
    strategy = distribution.make_strategy(strategy_name(FLAGS.strategy, FLAGS.dry_run), tpu=FLAGS.tpu)
    one_writer = FLAGS.workdir and not FLAGS.dry_run and distribution.workers_of(strategy).is_chief
    lock = storage.WorkdirLock(FLAGS.workdir).acquire() if one_writer else None  # held while referenced
    trainer = Trainer(FLAGS.workdir or tempfile.mkdtemp(prefix="asm_dry_run_"), strategy)
    chief = trainer.workers.is_chief
    if chief:
        print("\n".join(describe(trainer)), flush=True)
        precision_lib.warn_if_emulated(trainer.precision, lambda line: print(line, file=sys.stderr, flush=True))
    unused = configuration.unused_bindings()
    if unused and chief:
        print(f"warning: training never used the gin bindings {', '.join(unused)}: a misspelt scope, or "
              "bindings for another tool?", flush=True)
    if FLAGS.dry_run:
        batch = next(iter(trainer.data.make_dataset(trainer.batch_size, trainer.seed)))
        print(f"first batch: shape {tuple(batch.shape)}, range [{float(tf.reduce_min(batch)):.3g}, "
              f"{float(tf.reduce_max(batch)):.3g}]\ndry run: the configuration is valid", flush=True)
        return
    if chief:
        workdir.save_config(FLAGS.workdir, config_text)
    try:
        trainer.train(log=lambda line: print(line, flush=True))
    except preemption.TrainingInterrupted as interrupted:
        print(f"asm-train: {interrupted}", flush=True)
        sys.exit(preemption.EXIT_CODE)
    except FloatingPointError as error:
        print(f"asm-train: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    if chief:
        print(f"done: checkpoints in {trainer.checkpoints.directory}; "
              f"tensorboard --logdir {FLAGS.workdir}/tensorboard", flush=True)
    if lock:
        lock.release()


def run():
    common.run_app("asm-train", main)


if __name__ == "__main__":
    run()
