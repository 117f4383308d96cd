"""Loading a finished (or running) run back from its workdir: configuration and EMA weights."""

import dataclasses
import os

import gin
import tensorflow as tf

from asm_tf import training  # noqa: F401  (registers every configurable a saved config may name)
from asm_tf.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from asm_tf.score import ScoreModel


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


def parse_run_config(workdir, bindings=()):
    """Loads the gin configuration that a run saved in its workdir, with `bindings` (e.g. a data_dir that
    moved) applied on top; the saved file is not changed."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir written by asm-train?")
    gin.clear_config()
    gin.parse_config_file(path)
    try:
        gin.parse_config(list(bindings))
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"bad gin binding in {list(bindings)}: {str(error).strip().splitlines()[0]}") from error


@dataclasses.dataclass
class LoadedRun:
    experiment: Experiment
    score_model: ScoreModel  # with the EMA weights
    step: int
    checkpoint: str


def load_run(workdir, step=None, bindings=()):
    """The run's configuration (`bindings` on top) and its EMA score network restored from a checkpoint (the
    newest by default)."""
    parse_run_config(workdir, bindings)
    path = checkpoint_path(workdir, step)
    experiment = Experiment()
    network = experiment.build_score_network()
    saved_step = tf.Variable(0, dtype=tf.int64)
    status = tf.train.Checkpoint(ema_network=network.weights, step=saved_step).read(path)
    status.assert_existing_objects_matched().expect_partial()
    return LoadedRun(experiment, experiment.score_model(network), int(saved_step.numpy()), path)
