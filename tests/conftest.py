"""Test set-up: two logical CPU devices so that MirroredStrategy runs with two replicas."""

import atexit
import fcntl
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import asm_tf  # noqa: E402,F401  (before TensorFlow, as the command-line tools import it: oneDNN on)

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import gin  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from asm_tf import configuration  # noqa: E402
from asm_tf import workdir as workdir_lib  # noqa: E402
from asm_tf.experiment import Experiment  # noqa: E402
from asm_tf.score import ScoreModel  # noqa: E402
from asm_tf.training.dsm import dsm_loss  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny 2-D run: 20 steps, checkpoints at 10 and 20, a preview at 20.
TOY_RUN_ARGS = ["--gin_file", os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin"),
                "--gin_bindings", "Trainer.num_steps = 20", "--gin_bindings", "Trainer.steps_per_call = 10",
                "--gin_bindings", "Trainer.log_every = 10", "--gin_bindings", "Trainer.checkpoint_every = 10",
                "--gin_bindings", "Trainer.sample_every = 20", "--gin_bindings", "Trainer.num_preview = 64",
                "--gin_bindings", "ToyMLP.hidden = 16", "--gin_bindings", "toy2d.pool_size = 1024",
                "--strategy", "default"]


def run_cli(module, *args, cwd=REPO, timeout=300):
    """Runs `python -m asm_tf.cli.MODULE ARGS` in a subprocess (TensorFlow's C++ start-up lines off)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", f"asm_tf.cli.{module}", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def trained_toy_run(tmp_path_factory):
    """(workdir, asm-train's stdout) of TOY_RUN_ARGS, trained once per test session by an asm-train subprocess.

    The run is shared by the xdist workers (in the directory above each worker's base temporary directory,
    under a file lock), so read it only: the `toy_run` fixture gives each test module a copy of its own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    workdir, stdout = root / "shared_toy_run", root / "shared_toy_run.stdout"
    with open(root / "shared_toy_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stdout.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a partial run of a worker that failed
            result = run_cli("train", *TOY_RUN_ARGS, "--workdir", str(workdir))
            assert result.returncode == 0, result.stderr[-3000:]
            stdout.write_text(result.stdout)
    return str(workdir), stdout.read_text()


@pytest.fixture(scope="module")
def toy_run(trained_toy_run, tmp_path_factory):
    """This test module's own copy of the shared tiny 2-D run (tests may write evaluations into it)."""
    path = str(tmp_path_factory.mktemp("toy") / "run")
    shutil.copytree(trained_toy_run[0], path)
    return path


def write_untrained_run(workdir, config, step, seed):
    """A run directory as asm-train leaves it, without training: `config` as config.gin and a checkpoint at
    `step` holding the (random, seeded) EMA weights of the configured score network."""
    workdir.mkdir()
    (workdir / "config.gin").write_text(config)
    configuration.parse(text=config)
    tf.keras.utils.set_random_seed(seed)
    network = Experiment().build_score_network()
    checkpoint = tf.train.Checkpoint(ema_network=network.weights, step=tf.Variable(step, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoint_directory(str(workdir)), 1)
    manager.save(checkpoint_number=step)
    gin.clear_config()
    return str(workdir)


@pytest.fixture
def mirrored():
    """Makes MirroredStrategy instances with collective keys of their own.

    Every MirroredStrategy starts its collective group and instance keys at the same numbers, so a second
    strategy in the same process can collide with the first one's cached collectives ("Shape mismatch in
    the collective instance 100"); TF's `_collective_key_base` hook separates them.
    """
    def make(devices=("/cpu:0", "/cpu:1")):
        tf.distribute.MirroredStrategy._collective_key_base += 1000
        strategy = tf.distribute.MirroredStrategy(list(devices))
        tf.distribute.MirroredStrategy._collective_key_base += 1000
        return strategy
    return make


@pytest.fixture
def train_two_replicas(mirrored):
    """Runs a few DSM steps of a network under MirroredStrategy on two logical CPUs (see `train`)."""
    def train(make_network, steps=4, batch_size=4, size=16):
        """A few DSM steps with a fixed perturbation under MirroredStrategy on two logical CPUs.

        Returns the losses and the network; a fixed perturbation makes the loss fall step after step.
        """
        keras.utils.set_random_seed(0)
        strategy = mirrored()
        x = tf.random.uniform((batch_size, size, size, 3), seed=3)
        z = tf.random.normal(x.shape, seed=4)
        sigma = tf.constant([0.1, 0.5, 1.0, 2.0][:batch_size])
        per_replica = batch_size // 2

        def shard(ctx):
            part = slice(ctx.replica_id_in_sync_group * per_replica, (ctx.replica_id_in_sync_group + 1) * per_replica)
            return x[part], sigma[part], z[part]

        with strategy.scope():
            network = make_network()
            network.build(x.shape)
            optimizer = keras.optimizers.SGD(1e-5)  # few ops per variable: quick to trace
            optimizer.build(network.trainable_variables)
        score_model = ScoreModel(network)

        def replica_step(x, sigma, z):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(dsm_loss(score_model, x, sigma, z).loss,
                                                  global_batch_size=batch_size)
            optimizer.apply_gradients(zip(tape.gradient(loss, network.trainable_variables),
                                          network.trainable_variables))
            return loss

        @tf.function
        def train_step(batch):
            return strategy.reduce("SUM", strategy.run(replica_step, args=batch), axis=None)

        batch = strategy.experimental_distribute_values_from_function(shard)
        losses = [float(train_step(batch)) for _ in range(steps)]
        return losses, network

    return train


@pytest.fixture
def check_mixed_precision():
    """Checks that a network built under mixed_bfloat16 keeps float32 weights, computes in bfloat16 and
    stays within 5% of its float32 output (same seed, same input; sigma 0.1 and 2 for a network that takes it)."""
    def check(make_network):
        x = tf.random.uniform((2, 16, 16, 3), seed=5)
        outputs = {}
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            try:
                keras.utils.set_random_seed(0)
                network = make_network()
                outputs[policy] = ScoreModel(network).output(x, tf.constant([0.1, 2.0]))
            finally:
                keras.mixed_precision.set_global_policy("float32")
            assert {v.dtype for v in network.weights} == {"float32"}
        assert outputs["mixed_bfloat16"].dtype == tf.bfloat16
        reference = outputs["float32"].numpy()
        error = np.abs(tf.cast(outputs["mixed_bfloat16"], tf.float32).numpy() - reference).max()
        assert error < 0.05 * np.abs(reference).max()

    return check


class StorageFaults:
    """Real storage faults for tests, undone afterwards: a small tmpfs that can be filled up, and read-only
    bind mounts. Tests that need them are skipped where mounting is not allowed (not root)."""

    def __init__(self):
        self.mounts = []

    def _mount(self, *args, target):
        result = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount here (tests need root for real storage faults): {result.stderr.strip()}")
        self.mounts.append(str(target))

    def tmpfs(self, directory, size):
        """Mounts a tmpfs of `size` (e.g. '2m') at `directory` (created); returns the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", target=directory)
        return directory

    def fill(self, directory):
        """Fills the file system of `directory` with a file until no space is left."""
        with open(os.path.join(directory, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def read_only(self, directory):
        """Makes `directory` read-only (also for root) with a read-only bind mount onto itself."""
        self._mount("--bind", str(directory), target=directory)
        self._mount("-o", "remount,bind,ro", target=directory)
        self.mounts.pop()  # the same mount point, unmounted once

    def undo(self):
        while self.mounts:
            subprocess.run(["umount", "-l", self.mounts.pop()], check=True)


@pytest.fixture
def storage_faults():
    faults = StorageFaults()
    yield faults
    faults.undo()


@pytest.fixture
def clean_gin():
    """No gin bindings when the test starts (after it, `no_gin_bindings_left_behind` clears them)."""
    gin.clear_config()


@pytest.fixture(autouse=True)
def no_gin_bindings_left_behind():
    """Clears gin's bindings after every test: a configurable built by a later test in the same worker (e.g. a
    SamplerSettings) must not pick up the bindings that an earlier test parsed."""
    yield
    gin.clear_config()


# Tests that start processes (a command-line tool, a second worker, a notebook kernel), themselves or through a
# fixture, are marked e2e: `pytest -m "not e2e"` is the in-process run.
_STARTS_PROCESSES = re.compile(r"\b(run_cli|sample_cli|launch_workers|on_a_terminal|start|Popen)\(|\bsubprocess\.\w+\(|"
                               r"NotebookClient")


def _starts_processes(function, seen):
    if function in seen:
        return False
    seen.add(function)
    try:
        return bool(_STARTS_PROCESSES.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: starts processes (command-line tools, workers, a notebook kernel)")


def pytest_collection_modifyitems(items):
    for item in items:
        seen = set()
        fixtures = [definition.func for definitions in item._fixtureinfo.name2fixturedefs.values()
                    for definition in definitions]
        if any(_starts_processes(function, seen) for function in [getattr(item, "function", None), *fixtures]):
            item.add_marker(pytest.mark.e2e)


# The exit tail. A worker that has trained has tf.data iterators that live to the end of the process: the tf.function
# graphs of its trainers and samplers capture their resource handles, and TensorFlow's function tables keep those
# graphs (clearing the default graph and collecting garbage frees none of them). Interpreter teardown then
# destroys the iterators one by one, and each destructor waits for its autotuning thread to wake from a sleep that
# tf.data doubles up to 60 s: measured 100-140 s after the last test of test_training.py alone (-n 0), 200 s with
# test_faults.py. Once pytest has reported everything, the process therefore ends without that teardown (see
# `_exit_without_teardown`).
_session_status = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    _session_status.append(int(session.exitstatus))


def _exit_without_teardown():
    """The last exit handler: after the others have run, ends the process with pytest's exit status, skipping
    interpreter and TensorFlow teardown (object destructors and module clean-up of this ending process; the tests'
    files are closed by their own code, and pytest has written its reports). Exit handlers registered after this one
    (TensorFlow's, absl's, the tests') have run; logging's, registered before it, is called here."""
    if not _session_status:  # pytest did not get as far as a session: exit as usual
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(_session_status[-1])


atexit.register(_exit_without_teardown)  # registered early: atexit runs handlers last-registered first
