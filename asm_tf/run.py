"""Loading a finished (or running) run back from its workdir: configuration and EMA weights."""

import dataclasses
import os

import gin
import tensorflow as tf

from asm_tf import storage
from asm_tf import training  # noqa: F401  (registers every configurable a saved config may name)
from asm_tf.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from asm_tf.score import ScoreModel


class DamagedCheckpointError(ValueError):
    """The checkpoint asked for, or every checkpoint of a workdir, cannot be read."""


def _listed_steps(directory):
    """Steps of the checkpoints that the directory's `checkpoint` file lists, oldest first."""
    state = tf.train.get_checkpoint_state(directory)
    paths = state.all_model_checkpoint_paths if state else []
    return [int(path.rsplit("-", 1)[1]) for path in paths]


def checkpoint_path(workdir, step=None):
    """The newest checkpoint of a workdir, or the one saved at `step`; a clear error if there is none."""
    return candidate_paths(workdir, step)[0]


def candidate_paths(workdir, step=None):
    """[the checkpoint of `step`], or every checkpoint of the workdir newest first; a clear error if none."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if step is None:
        steps = _listed_steps(directory)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {directory}: train first with asm-train --workdir={workdir}")
        return [os.path.join(directory, f"ckpt-{s}") for s in reversed(steps)]
    path = os.path.join(directory, f"ckpt-{step}")
    if not tf.io.gfile.exists(path + ".index"):
        have = [f"ckpt-{s}" for s in _listed_steps(directory)]
        raise FileNotFoundError(f"no checkpoint at step {step} in {directory}; available: {have or 'none'}")
    return [path]


def read_checkpoint(checkpoint, workdir, step=None, log=print):
    """Reads `checkpoint` (a tf.train.Checkpoint) from the checkpoint of `step`, or from the newest readable
    one of the workdir, reporting each unreadable newer one through `log`; returns the path read.

    Raises DamagedCheckpointError when the checkpoint of `step`, or every checkpoint, cannot be read.
    """
    failures, paths = [], candidate_paths(workdir, step)
    for index, path in enumerate(paths):
        try:
            checkpoint.read(path).assert_existing_objects_matched().expect_partial()
            return path
        except storage.CHECKPOINT_READ_ERRORS as error:
            failures.append(storage.read_failure(path, error))
        if step is not None:
            others = [s for s in _listed_steps(os.path.dirname(path)) if s != step]
            raise DamagedCheckpointError(f"{failures[0]}: choose another checkpoint (steps {others or 'none'})")
        if index + 1 < len(paths):
            log(f"warning: {failures[-1]}; using the checkpoint before it, {paths[index + 1]}")
    raise DamagedCheckpointError(f"no readable checkpoint in {workdir}: {'; '.join(failures)}")


def parse_run_config(workdir, bindings=()):
    """Loads the gin configuration that a run saved in its workdir, with `bindings` (e.g. a data_dir that
    moved) applied on top; the saved file is not changed."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir written by asm-train?")
    gin.clear_config()
    gin.parse_config(storage.read_text(path))
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


def load_run(workdir, step=None, bindings=(), log=print):
    """The run's configuration (`bindings` on top) and its EMA score network restored from the checkpoint of
    `step`, or from the newest readable one (a newer unreadable one is reported through `log`); see
    `read_checkpoint`."""
    parse_run_config(workdir, bindings)
    candidate_paths(workdir, step)  # a missing checkpoint is reported before the network is built
    experiment = Experiment()
    network = experiment.build_score_network()
    saved_step = tf.Variable(0, dtype=tf.int64)
    path = read_checkpoint(tf.train.Checkpoint(ema_network=network.weights, step=saved_step), workdir, step, log)
    return LoadedRun(experiment, experiment.score_model(network), int(saved_step.numpy()), path)
