"""A reference checkpoint and its config.yml as an asm-tf workdir that asm-sample, asm-export and asm-eval read.

The workdir holds config.gin (run_config.gin_text), one checkpoint at the reference's step with the live weights
(`network`) and the EMA weights (`ema_network`, what the reference samples from when `model.ema`; the live weights
again when it is off), and imported.json saying where they came from and which tensors were left out. The
reference's Adam moments and its data position are not carried over, and it saves no discriminator, so the
workdir is for sampling, export and evaluation; asm-train refuses to resume it.
"""

import dataclasses
import datetime
import hashlib
import os
import re

import tensorflow as tf

from asm_tf import configuration, storage
from asm_tf import workdir as workdir_lib
from asm_tf.experiment import Experiment, parameter_count
from asm_tf.reference import files, run_config, weights


@dataclasses.dataclass(frozen=True)
class ImportReport:
    network: str  # asm-tf's network and its arguments
    parameters: int
    step: int
    ema: bool  # the EMA weights came from the checkpoint (else the live ones serve as EMA)
    skipped: list  # [(reference tensor, why it was left out)]
    files: list  # what was written


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_destination(workdir, overwrite=False):
    """Refuses a workdir that already holds a run (a config.gin or checkpoints) unless `overwrite`, and a place
    that cannot be written, before anything is read."""
    holds_run = tf.io.gfile.exists(workdir_lib.config_path(workdir)) or workdir_lib.checkpoint_steps(workdir)
    if holds_run and not overwrite:
        raise FileExistsError(f"{workdir} already holds a run: choose a new --workdir, or pass --overwrite to "
                              "replace its configuration and checkpoints")
    storage.check_writable(workdir, "the workdir")


def _no_dilation(state):
    """The reference's --no_dilation, which config.yml does not record: every NCSNv2 shortcut is then a ConvMeanPool
    (`res<k>.0.shortcut.conv.weight`); with dilation, the dilated stages' first blocks have a plain dilated
    convolution (`res<k>.0.shortcut.weight`)."""
    return not any(re.fullmatch(r"res\d+\.\d+\.shortcut\.weight", name) for name in state)


def _conditional(state):
    """The reference UNet's `conditional=True`, which config.yml does not record: its ResnetBlocks then have a
    projection of the time embedding (`downblocks.1.dense.weight`, the first ResnetBlock)."""
    return "downblocks.1.dense.weight" in state


def _build(experiment, state, description, what):
    network = experiment.build_score_network()
    return network, weights.assign(network, state, description, what)


def _write(workdir, checkpoint, networks, config_text, provenance, overwrite):
    """Writes the checkpoint, imported.json and config.gin (last: it makes the directory a run); removes what it
    wrote if a write fails."""
    live, ema = networks
    directory = workdir_lib.checkpoint_directory(workdir)
    if overwrite:
        storage.remove_quietly([directory, workdir_lib.config_path(workdir), workdir_lib.import_record_path(workdir),
                                workdir_lib.operative_config_path(workdir)])
    written = [directory, workdir_lib.import_record_path(workdir), workdir_lib.config_path(workdir)]
    step = tf.Variable(checkpoint.step, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(network=live.weights, ema_network=ema.weights, step=step),
                                         directory, max_to_keep=1)
    try:
        with storage.writing(workdir_lib.checkpoint_path(workdir, checkpoint.step), "checkpoint"):
            path = manager.save(checkpoint_number=checkpoint.step)
        with storage.writing(workdir_lib.import_record_path(workdir), "the import record"):
            storage.write_json(workdir_lib.import_record_path(workdir), provenance)
        workdir_lib.save_config(workdir, config_text)
    except BaseException:
        storage.remove_quietly(written)
        raise
    return [path, workdir_lib.import_record_path(workdir), workdir_lib.config_path(workdir)]


def import_checkpoint(checkpoint_path, config_path, workdir, overwrite=False):
    """Imports the reference checkpoint `checkpoint_path` with its `config_path` into `workdir`; an
    ImportReport. Errors (files.ReferenceFileError, FileNotFoundError, FileExistsError, storage.StorageError)
    say what is wrong in one line, and nothing is left in `workdir` as if it were a run."""
    check_destination(workdir, overwrite)
    config = files.load_config(config_path)
    checkpoint = files.load_checkpoint(checkpoint_path)
    network = run_config.reference_network(config, no_dilation=_no_dilation(checkpoint.weights),
                                           conditional=_conditional(checkpoint.weights))
    source = f"{os.path.basename(checkpoint_path)} (step {checkpoint.step}, epoch {checkpoint.epoch})"
    config_text = run_config.gin_text(config, network, source)
    configuration.parse(text=config_text)
    experiment = Experiment()
    shape = run_config.example_shape(config)
    if tuple(experiment.data.example_shape) != shape:
        raise files.ReferenceFileError(f"config.yml describes {shape} images but asm-tf's "
                                       f"{experiment.data.name} source has {tuple(experiment.data.example_shape)}")
    description = f"{network.describe()} (from config.yml: data.dataset {config['data']['dataset']}, model.unet " \
                  f"{bool(config['model'].get('unet'))})"
    live, skipped = _build(experiment, checkpoint.weights, description, "score network state")
    use_ema = bool(config["model"].get("ema", True))  # the reference samples from the EMA weights, else the live
    if use_ema and checkpoint.ema_weights is None:
        raise files.ReferenceFileError(f"{checkpoint_path} holds no EMA weights although config.yml has model.ema "
                                       "true (the reference would sample from them)")
    ema, ema_skipped = _build(experiment, checkpoint.ema_weights if use_ema else checkpoint.weights, description,
                              "EMA state" if use_ema else "score network state")
    skipped = sorted(set(skipped) | set(ema_skipped))
    provenance = {"reference_checkpoint": os.path.abspath(checkpoint_path),
                  "reference_config": os.path.abspath(config_path), "sha256": _sha256(checkpoint_path),
                  "step": checkpoint.step, "epoch": checkpoint.epoch, "network": network.describe(),
                  "parameters": parameter_count(live), "ema_from_checkpoint": use_ema,
                  "skipped_tensors": {name: reason for name, reason in skipped},
                  "imported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    written = _write(workdir, checkpoint, (live, ema), config_text, provenance, overwrite)
    return ImportReport(network.describe(), parameter_count(live), checkpoint.step, use_ema, skipped, written)
