"""A run's directory (the --workdir of every command): its layout and its saved configuration. Loading a run back
is asm_tf.run_loading's job, its checkpoints asm_tf.training.checkpointing's.

    WORKDIR/config.gin              the bindings given: what resumes and the other commands read
    WORKDIR/operative_config.gin    every value in effect, defaults included (for people)
    WORKDIR/checkpoints/ckpt-<step> checkpoints (asm_tf.training.checkpointing), listed by checkpoints/checkpoint
    WORKDIR/tensorboard/            training summaries; asm-eval's sweeps in tensorboard/<sweep>
    WORKDIR/samples/<settings>/     asm-sample's output
    WORKDIR/eval/                   asm-eval's reports and reference statistics
    WORKDIR/imported.json           a run imported from the reference's checkpoint (asm-import): not resumable
"""

import difflib
import os

import tensorflow as tf

from asm_tf import storage
from asm_tf.training import checkpointing


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


def checkpoint_steps(workdir):
    """Steps of the workdir's listed checkpoints, oldest first."""
    return checkpointing.checkpoint_steps(checkpoint_directory(workdir))


def checkpoint_path(workdir, step):
    return checkpointing.checkpoint_path(checkpoint_directory(workdir), step)
