"""Checkpoints: their names and listing, reading the newest readable one (or the one asked for), and a training
run's checkpoints, saved so that nothing is lost when storage fails and restored the same on every worker.

TensorFlow writes a checkpoint's files under temporary names and commits it by renaming its index and then
rewriting the `checkpoint` list, so a crash during a save leaves the previous checkpoint listed and whole. A
checkpoint that cannot be written raises storage.StorageError naming its path, after its partial files are
removed. Under MultiWorkerMirroredStrategy saving is collective: the chief's checkpoint counts, the other
workers write theirs to a temporary directory that they delete, and each worker keeps its own input position
in checkpoints/worker-<k>-of-<n>/.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from asm_tf import storage


class DamagedCheckpointError(ValueError):
    """The checkpoint asked for, or every checkpoint of a directory, cannot be read."""


def checkpoint_path(directory, step):
    """DIRECTORY/ckpt-STEP, the prefix of a checkpoint's files (tf.train.CheckpointManager's naming)."""
    return os.path.join(directory, f"ckpt-{step}")


def checkpoint_steps(directory):
    """Steps of the checkpoints that the directory's checkpoint list names, oldest first."""
    state = tf.train.get_checkpoint_state(directory)
    paths = state.all_model_checkpoint_paths if state else []
    return [int(path.rsplit("-", 1)[1]) for path in paths]


def candidate_paths(directory, step=None):
    """[the checkpoint of `step`], or every checkpoint of the directory newest first; a clear error if none."""
    steps = checkpoint_steps(directory)
    if step is None:
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {directory}: train first with asm-train")
        return [checkpoint_path(directory, s) for s in reversed(steps)]
    if not tf.io.gfile.exists(checkpoint_path(directory, step) + ".index"):
        raise FileNotFoundError(f"no checkpoint at step {step} in {directory}; available: "
                                f"{[os.path.basename(checkpoint_path(directory, s)) for s in steps] or 'none'}")
    return [checkpoint_path(directory, step)]


def read_checkpoint(checkpoint, directory, step=None, log=print):
    """Reads `checkpoint` (a tf.train.Checkpoint) from the checkpoint of `step`, or from the newest readable
    one of the directory, reporting each unreadable newer one through `log`; returns the path read.

    Raises DamagedCheckpointError when the checkpoint of `step`, or every checkpoint, cannot be read.
    """
    failures, paths = [], candidate_paths(directory, step)
    for index, path in enumerate(paths):
        try:
            checkpoint.read(path).assert_existing_objects_matched().expect_partial()
            return path
        except storage.CHECKPOINT_READ_ERRORS as error:
            failures.append(storage.read_failure(path, error))
        if step is not None:
            others = [s for s in checkpoint_steps(directory) if s != step]
            raise DamagedCheckpointError(f"{failures[0]}: choose another checkpoint (steps {others or 'none'})")
        if index + 1 < len(paths):
            log(f"warning: {failures[-1]}; using the checkpoint before it, {paths[index + 1]}")
    raise DamagedCheckpointError(f"no readable checkpoint in {directory}: {'; '.join(failures)}")


class TrainingCheckpoints:
    """The checkpoints of one run in `directory`: `tracked` (a dict of trackables) and the input `iterator`.

    `workers` says which worker this is (distribution.workers_of) and `worker_sums` sums small lists over
    the workers (distribution.WorkerSums), so that every worker restores and saves the same step.
    """

    def __init__(self, tracked, iterator, directory, workers, worker_sums, max_to_keep):
        self.workers, self.worker_sums = workers, worker_sums
        self.input_manager = None
        if workers.count == 1:
            tracked = dict(tracked, iterator=iterator)
        else:  # each worker reads its own shard: its input position is its own checkpoint
            self.input_manager = tf.train.CheckpointManager(
                tf.train.Checkpoint(iterator=iterator),
                os.path.join(directory, f"worker-{workers.index}-of-{workers.count}"), max_to_keep=max_to_keep)
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)
        self.saved_step = None  # the step of the checkpoint restored or saved last

    @property
    def directory(self):
        return self.manager.directory

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def path(self, step):
        return checkpoint_path(self.manager.directory, step)

    def _restore_step(self, step):
        """Restores the checkpoint of `step` (and this worker's input position); the error if it cannot be read."""
        try:
            self.checkpoint.restore(self.path(step)).assert_existing_objects_matched()
            if self.input_manager:
                path = checkpoint_path(self.input_manager.directory, step)
                self.input_manager.checkpoint.restore(path).assert_existing_objects_matched()
        except storage.CHECKPOINT_READ_ERRORS as error:
            return error
        return None

    def restore(self, log=print):
        """Restores the newest readable checkpoint, the same one on every worker; returns its step (0 if none).

        The chief proposes checkpoints newest first; a checkpoint that any worker cannot read is reported
        and the one before it tried.
        """
        chief = self.workers.is_chief
        candidates = [int(path.rsplit("-", 1)[1]) for path in reversed(self.manager.checkpoints)] if chief else []
        unreadable = []
        while True:
            proposal = candidates.pop(0) if candidates else (-1 if unreadable else 0)
            step = int(self.worker_sums([proposal if chief else 0])[0])
            if step == 0:
                return 0
            if step < 0:
                hint = (f" (a run of {self.workers.count} workers also needs checkpoints/worker-<k>-of-"
                        f"{self.workers.count}/: resume with as many workers as it was saved with)"
                        if self.workers.count > 1 else "")
                raise ValueError(f"no readable checkpoint in {self.manager.directory}{hint}: "
                                 f"{'; '.join(unreadable)}; move the directory away to start over")
            error = self._restore_step(step)
            if not self.worker_sums([error is not None])[0]:
                self.saved_step = step
                return step
            reason = storage.first_line(error) if error else "another worker could not read it"
            unreadable.append(f"ckpt-{step} ({reason})")
            log(f"warning: cannot restore {self.path(step)} ({reason}); trying the checkpoint before it")

    def save(self, step):
        """Saves a checkpoint of `step` on every worker (saving is collective under MultiWorkerMirroredStrategy):
        each worker's input position first, then the chief's checkpoint, which commits the step; the other
        workers write theirs to a temporary directory and delete it. A write that fails on any worker stops
        every worker with a StorageError (the failing one's names the path), instead of leaving the others
        waiting in the next collective."""
        failure = None
        try:
            self._write(step)
        except storage.StorageError as error:
            failure = error
        if self.workers.count > 1 and self.worker_sums([failure is not None])[0] and failure is None:
            failure = storage.StorageError(f"another worker could not write its part of checkpoint ckpt-{step} "
                                           "(its own error names the path): this worker stops too")
        if failure is not None:
            raise failure
        self.saved_step = step

    def _write(self, step):
        if self.input_manager:
            with storage.writing(checkpoint_path(self.input_manager.directory, step), "checkpoint"):
                self.input_manager.save(checkpoint_number=step)
        if self.workers.is_chief:
            self._save_or_clean_up(step)
        else:
            scratch = tempfile.mkdtemp(prefix="asm_worker_checkpoint_")
            try:
                self.checkpoint.write(os.path.join(scratch, "ckpt"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    def _save_or_clean_up(self, step):
        """The chief's save of `step`; if it cannot be written, its partial files are removed (the checkpoints
        listed before stay as they were) and StorageError names the path."""
        path = self.path(step)
        try:
            with storage.writing(path, "checkpoint"):
                self.manager.save(checkpoint_number=step)
        except storage.StorageError as error:
            previous = tf.train.latest_checkpoint(self.manager.directory)  # what the `checkpoint` file lists
            if previous != path:  # not committed: remove TF's temporary files and any half-written ones
                storage.remove_quietly(tf.io.gfile.glob(path + ".*") + tf.io.gfile.glob(path + "_temp*"))
            raise storage.StorageError(f"{error}; the previous checkpoint ({previous or 'none'}) is intact: make "
                                       "room or make the directory writable, then run the same command to resume"
                                       ) from None
