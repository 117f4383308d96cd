"""Loading a run back from its workdir: its configuration (config.gin, with bindings on top) as objects, and its EMA
score network restored from a checkpoint, as asm-sample, asm-export, asm-eval and the tools use it."""

import dataclasses

import tensorflow as tf

from asm_tf import configuration, sampling, storage
from asm_tf import workdir as workdir_lib
from asm_tf.experiment import Experiment
from asm_tf.score import ScoreModel
from asm_tf.training import checkpointing
from asm_tf.training import precision as precision_lib


def parse_run_config(workdir, bindings=()):
    """Parses the gin configuration that a run saved in its workdir, with `bindings` (e.g. a data_dir that
    moved) applied on top; the saved file is not changed."""
    path = workdir_lib.config_path(workdir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir written by asm-train?")
    configuration.parse(text=storage.read_text(path), bindings=bindings)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's configuration, built once at the top of a command and handed down."""

    experiment: Experiment
    sampler_settings: sampling.SamplerSettings  # the run's; commands override them (SamplerSettings.override)


@dataclasses.dataclass(frozen=True)
class LoadedRun(RunConfig):
    """A run's configuration with its EMA score network restored from a checkpoint."""

    score_model: ScoreModel
    step: int
    checkpoint: str  # the path read


def read_run_config(workdir, bindings=()):
    """The run's configuration (see `parse_run_config`) as objects."""
    parse_run_config(workdir, bindings)
    return RunConfig(Experiment(), sampling.SamplerSettings())


def load_run(workdir, step=None, bindings=(), log=print, precision="float32"):
    """The run's configuration (`bindings` on top) and its EMA score network restored from the checkpoint of
    `step`, or from the newest readable one (a newer unreadable one is reported through `log`); see
    `checkpointing.read_checkpoint`. `precision` is the network's (training.precision: mixed_bfloat16 computes its
    layers in bfloat16 from the same float32 weights; the sampler stays float32)."""
    return restore(read_run_config(workdir, bindings), workdir, step, log, precision)


def restore(run, workdir, step=None, log=print, precision="float32"):
    """`run` (a RunConfig read from `workdir`) with its EMA score network restored as `load_run` does."""
    directory = workdir_lib.checkpoint_directory(workdir)
    checkpointing.candidate_paths(directory, step)  # a missing checkpoint is reported before the network is built
    with precision_lib.dtype_policy(precision):
        network = run.experiment.build_score_network()
    saved_step = tf.Variable(0, dtype=tf.int64)
    path = checkpointing.read_checkpoint(tf.train.Checkpoint(ema_network=network.weights, step=saved_step), directory,
                                         step, log)
    if precision != "float32":
        network = precision_lib.Float32Outputs(network)
    return LoadedRun(run.experiment, run.sampler_settings, run.experiment.score_model(network),
                     int(saved_step.numpy()), path)
