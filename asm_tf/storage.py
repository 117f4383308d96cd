"""Faults of the storage a run lives on: unreadable checkpoints, a second writer, failed writes.

- `CHECKPOINT_READ_ERRORS` and `read_failure` describe a checkpoint that cannot be read (truncated or
  corrupt files raise IndexError or a tf.errors.OpError); the callers fall back or stop.
- `WorkdirLock`: one writer per workdir, an exclusive `fcntl.flock` on WORKDIR/lock that the kernel releases
  when its process dies (so a SIGKILLed trainer leaves no lock behind), with the holder's host and pid in the
  file for the refusal message. Remote paths (gs://...) and file systems without flock are not locked.
- `writing(path, what)`: turns a failed write (no space, read-only, permission) into a one-line
  StorageError naming the path.
- Files that a user's path leads to (config, samples, JSON notes, PNGs) are read and written through
  `tf.io.gfile`, so that a workdir or output directory may be a bucket (gs://, s3://) or TensorFlow's
  in-process ram:// file system as well as a local folder: `read_text`, `write_file`, `write_npz`, `read_npz`.
"""

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import socket
import time

import numpy as np
import tensorflow as tf

CHECKPOINT_READ_ERRORS = (tf.errors.OpError, IndexError)
LOCK_FILE = "lock"
_WRITE_ERRORS = (OSError, tf.errors.OpError)


class StorageError(OSError):
    """A file that could not be written (no space, read-only storage), or a workdir another process holds."""


class WorkdirInUse(StorageError):
    """The workdir's lock is held by another process."""


def first_line(error):
    """'<type>: <the first line of its message>' (at most 300 characters of it)."""
    text = str(getattr(error, "message", None) or error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def read_failure(path, error):
    """One line saying that the checkpoint `path` cannot be read, and why."""
    return f"cannot read checkpoint {path} ({first_line(error)})"


def _write_reason(error):
    """Why a write failed, in a few words: the OS error's text (e.g. 'No space left on device') if known."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(getattr(error, "message", None) or error).strip()
    if isinstance(error, tf.errors.OpError) and "; " in text:  # '{{function_node ...}} PATH; REASON [Op:X]'
        return re.sub(r" \[Op:\w+\].*$", "", text.splitlines()[0].rsplit("; ", 1)[-1])[:300]
    return first_line(error)


@contextlib.contextmanager
def writing(path, what):
    """Runs a write of `what` to `path`; a failure becomes StorageError('cannot write WHAT PATH (reason)')."""
    try:
        yield
    except StorageError:
        raise
    except _WRITE_ERRORS as error:
        raise StorageError(f"cannot write {what} {path} ({_write_reason(error)})") from error


def remove_quietly(paths):
    """Removes files and directory trees, ignoring failures (cleaning up after a failed write)."""
    for path in paths:
        try:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
        except _WRITE_ERRORS:
            pass


def read_text(path):
    """The text of a file, local or remote."""
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def write_file(path, contents):
    """Writes text or bytes to `path` (local or remote), creating its directory; on a local disk the file
    appears whole or not at all (written beside it, then renamed over it; a failed write leaves neither)."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.gfile.GFile(temporary, "wb" if isinstance(contents, bytes) else "w") as f:
            f.write(contents)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        remove_quietly([temporary])
        raise


def check_writable(directory, what):
    """Creates `directory` if needed and writes and removes a file in it, before any long work: a StorageError
    ('cannot write WHAT DIRECTORY (reason)') for a read-only, full or unreachable place."""
    with writing(directory, what):
        probe = os.path.join(directory, f".asm-write-probe-{os.getpid()}")
        write_file(probe, "")
        tf.io.gfile.remove(probe)


@contextlib.contextmanager
def writing_outputs(directory, what):
    """Collects the paths a command writes into `directory` (`paths.append(path)` before each write); if a write
    fails, removes every one of them and raises StorageError naming the path that failed, so that no partial
    set of outputs is left behind."""
    paths = []
    try:
        yield paths
    except BaseException as error:
        remove_quietly(paths)
        if isinstance(error, _WRITE_ERRORS) and not isinstance(error, StorageError):
            failed = paths[-1] if paths else directory
            raise StorageError(f"cannot write {what} {failed} ({_write_reason(error)}); nothing of it is left "
                               f"in {directory}") from error
        raise


def write_json(path, value):
    write_file(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_npz(path, **arrays):
    """NumPy's .npz of `arrays` at a local or remote path."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_file(path, buffer.getvalue())


def read_npz(path):
    """The arrays of a local or remote .npz file, as a dict."""
    with tf.io.gfile.GFile(path, "rb") as f:
        with np.load(io.BytesIO(f.read())) as arrays:
            return dict(arrays)


def is_remote(path):
    """Whether `path` names remote storage through tf.io.gfile (gs://, s3://, hdfs://...)."""
    return "://" in str(path)


class WorkdirLock:
    """An exclusive lock on a workdir for one writer; `with WorkdirLock(workdir, log):` holds it.

    A held lock makes `acquire` raise WorkdirInUse naming the holder ("host H, pid P, since T"). The lock is
    the kernel's flock on WORKDIR/lock, released when its file is closed: by `release`, when the lock object
    is garbage-collected (keep it referenced while it should hold) or when the process ends, however it
    dies. The text in the file only describes the holder. Remote workdirs and file systems that refuse
    flock are used unlocked, with a warning through `log`.
    """

    def __init__(self, workdir, log=print):
        self.workdir, self.log = str(workdir), log
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self._file = None

    def acquire(self):
        if is_remote(self.workdir):
            self.log(f"warning: {self.workdir} is remote storage, where asm-train cannot lock a workdir: make sure "
                     "that no other asm-train writes to it")
            return self
        with writing(self.path, "the lock file"):
            os.makedirs(self.workdir, exist_ok=True)
            lock_file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115  (held until release)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "a process that is starting"
            lock_file.close()
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise WorkdirInUse(f"{self.workdir} is in use by another asm-train ({holder}): one run has one "
                                   "writer; stop that process first, or use another --workdir") from None
            self.log(f"warning: cannot lock {self.path} ({_write_reason(error)}): make sure that no other "
                     "asm-train writes to this workdir")
            return self
        self._file = lock_file
        try:
            with writing(self.path, "the lock file"):
                lock_file.truncate(0)
                lock_file.write(f"host {socket.gethostname()}, pid {os.getpid()}, since "
                                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
                lock_file.flush()
        except StorageError:
            self.release()
            raise
        return self

    def release(self):
        if self._file is not None:
            self._file.close()  # closing the last descriptor releases the flock
            self._file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
