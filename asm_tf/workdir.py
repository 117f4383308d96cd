"""A run's directory (the --workdir of every command): its layout, its saved configuration, its checkpoints, and
loading a finished (or running) run back with its EMA weights.

    WORKDIR/config.gin              the bindings given: what resumes and the other commands read
    WORKDIR/operative_config.gin    every value in effect, defaults included (for people)
    WORKDIR/checkpoints/ckpt-<step> checkpoints (asm_tf.checkpointing), listed by checkpoints/checkpoint
    WORKDIR/tensorboard/            training summaries; asm-eval's sweeps in tensorboard/<sweep>
    WORKDIR/samples/<settings>/     asm-sample's output
    WORKDIR/eval/                   asm-eval's reports and reference statistics
    WORKDIR/imported.json           a run imported from the reference's checkpoint (asm-import): not resumable
"""

import dataclasses
import difflib
import os

import tensorflow as tf

from asm_tf import configuration, sampling, storage
from asm_tf.experiment import Experiment
from asm_tf.score import ScoreModel


def config_path(workdir):
    return os.path.join(workdir, "config.gin")


def operative_config_path(workdir):
    return os.path.join(workdir, "operative_config.gin")


def import_record_path(workdir):
    return os.path.join(workdir, "imported.json")


def checkpoint_directory(workdir):
    return os.path.join(workdir, "checkpoints")


def tensorboard_directory(workdir, name=None):
    return os.path.join(workdir, "tensorboard", *filter(None, [name]))


def samples_directory(workdir, name):
    return os.path.join(workdir, "samples", name)


def eval_directory(workdir, name=None):
    return os.path.join(workdir, "eval", *filter(None, [name]))


class ConfigChanged(ValueError):
    """A workdir holds a run of another configuration."""


class DamagedCheckpointError(ValueError):
    """The checkpoint asked for, or every checkpoint of a workdir, cannot be read."""


def check_config(workdir, config_text, allow_change=False, log=print):
    """Refuses (ConfigChanged) to resume a workdir that holds a run of another configuration, unless allowed;
    an allowed change is reported through `log`."""
    path = config_path(workdir)
    if not tf.io.gfile.exists(path):
        return
    saved = storage.read_text(path)
    if saved == config_text:
        return
    diff = [line for line in difflib.unified_diff(saved.splitlines(), config_text.splitlines(), "saved", "new",
                                                  lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    if not allow_change:
        raise ConfigChanged(f"{workdir} holds a run of another configuration ({'; '.join(diff)}): use a new "
                            "--workdir, or pass --allow_config_change to resume with the new one")
    log("configuration changed on resume:\n  " + "\n  ".join(diff))


def save_config(workdir, config_text):
    """Writes the run's configuration to WORKDIR/config.gin atomically: other workers may be reading it."""
    path = config_path(workdir)
    with storage.writing(path, "the configuration"):
        storage.write_file(path, config_text)


def parse_run_config(workdir, bindings=()):
    """Parses the gin configuration that a run saved in its workdir, with `bindings` (e.g. a data_dir that
    moved) applied on top; the saved file is not changed."""
    path = config_path(workdir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir written by asm-train?")
    configuration.parse(text=storage.read_text(path), bindings=bindings)


def checkpoint_steps(workdir):
    """Steps of the checkpoints that the workdir's checkpoint list names, oldest first."""
    state = tf.train.get_checkpoint_state(checkpoint_directory(workdir))
    paths = state.all_model_checkpoint_paths if state else []
    return [int(path.rsplit("-", 1)[1]) for path in paths]


def checkpoint_path(workdir, step):
    return os.path.join(checkpoint_directory(workdir), f"ckpt-{step}")


def candidate_paths(workdir, step=None):
    """[the checkpoint of `step`], or every checkpoint of the workdir newest first; a clear error if none."""
    steps = checkpoint_steps(workdir)
    if step is None:
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_directory(workdir)}: train first with asm-train "
                                    f"--workdir={workdir}")
        return [checkpoint_path(workdir, s) for s in reversed(steps)]
    if not tf.io.gfile.exists(checkpoint_path(workdir, step) + ".index"):
        raise FileNotFoundError(f"no checkpoint at step {step} in {checkpoint_directory(workdir)}; available: "
                                f"{[f'ckpt-{s}' for s in steps] or 'none'}")
    return [checkpoint_path(workdir, step)]


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
            others = [s for s in checkpoint_steps(workdir) if s != step]
            raise DamagedCheckpointError(f"{failures[0]}: choose another checkpoint (steps {others or 'none'})")
        if index + 1 < len(paths):
            log(f"warning: {failures[-1]}; using the checkpoint before it, {paths[index + 1]}")
    raise DamagedCheckpointError(f"no readable checkpoint in {workdir}: {'; '.join(failures)}")


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


def load_run(workdir, step=None, bindings=(), log=print):
    """The run's configuration (`bindings` on top) and its EMA score network restored from the checkpoint of
    `step`, or from the newest readable one (a newer unreadable one is reported through `log`); see
    `read_checkpoint`."""
    return restore(read_run_config(workdir, bindings), workdir, step, log)


def restore(run, workdir, step=None, log=print):
    """`run` (a RunConfig read from `workdir`) with its EMA score network restored as `load_run` does."""
    candidate_paths(workdir, step)  # a missing checkpoint is reported before the network is built
    network = run.experiment.build_score_network()
    saved_step = tf.Variable(0, dtype=tf.int64)
    path = read_checkpoint(tf.train.Checkpoint(ema_network=network.weights, step=saved_step), workdir, step, log)
    return LoadedRun(run.experiment, run.sampler_settings, run.experiment.score_model(network),
                     int(saved_step.numpy()), path)
