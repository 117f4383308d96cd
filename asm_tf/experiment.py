"""What a run is (data, score network, noise levels) and how a finished run is loaded back."""

import dataclasses
import os
from typing import Callable

import gin
import tensorflow as tf

from asm_tf import data as _data  # noqa: F401  (registers the dataset factories with gin)
from asm_tf import models as _models  # noqa: F401  (registers the networks with gin)
from asm_tf.data.source import DataSource
from asm_tf.score import ScoreModel
from asm_tf.sigmas import NoiseSchedule

CONFIG_FILE = "config.gin"
CHECKPOINT_DIR = "checkpoints"


def build_network(factory, example_shape):
    """Calls a network factory and builds the network on one example so that its variables exist."""
    network = factory()
    network(tf.zeros((1, *example_shape)), training=False)
    return network


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Experiment:
    """The parts of a run that training, sampling, export and evaluation share."""

    data: DataSource = gin.REQUIRED
    score_network: Callable = gin.REQUIRED
    schedule: NoiseSchedule = dataclasses.field(default_factory=NoiseSchedule)
    ema_rate: float = 0.999

    def build_score_network(self):
        return build_network(self.score_network, self.data.example_shape)


def checkpoint_path(workdir, step=None):
    """The newest checkpoint of a workdir, or the one saved at `step`; a clear error if there is none."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if step is None:
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {directory}: train first with asm-train --workdir={workdir}")
        return path
    path = os.path.join(directory, f"ckpt-{step}")
    if not tf.io.gfile.exists(path + ".index"):
        state = tf.train.get_checkpoint_state(directory)
        have = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
        raise FileNotFoundError(f"no checkpoint at step {step} in {directory}; available: {have or 'none'}")
    return path


def parse_run_config(workdir):
    """Loads the gin configuration that a run saved in its workdir."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir written by asm-train?")
    gin.clear_config()
    gin.parse_config_file(path)


@dataclasses.dataclass
class LoadedRun:
    experiment: Experiment
    score_model: ScoreModel  # with the EMA weights
    step: int
    checkpoint: str


def load_run(workdir, step=None):
    """The run's configuration and its EMA score network restored from a checkpoint (the newest by default)."""
    parse_run_config(workdir)
    path = checkpoint_path(workdir, step)
    experiment = Experiment()
    network = experiment.build_score_network()
    saved_step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(ema_network=network, step=saved_step).read(path).expect_partial()
    return LoadedRun(experiment, ScoreModel(network), int(saved_step.numpy()), path)
