"""Surviving faults: signals, SIGKILL, unreadable checkpoints, non-finite values; mixed precision; config safety."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from tensorboard.backend.event_processing import event_accumulator

from asm_tf import configuration, sampling
from asm_tf import workdir as workdir_lib
from asm_tf.data import toy2d
from asm_tf.experiment import Experiment
from asm_tf.models.mlp import ToyMLP
from asm_tf.noise_levels.schedule import NoiseSchedule
from asm_tf.training import optimizers, preemption
from asm_tf.training.trainer import Trainer

SCHEDULE = NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=5)
SETTINGS = sampling.SamplerSettings(sampler="cas", n_sigma=2, step_size=8e-5)
quiet = lambda _: None


def make_trainer(workdir, strategy=None, data=None, **overrides):
    experiment = Experiment(data=data or toy2d.toy2d("25gaussians", pool_size=512),
                            score_network=lambda: ToyMLP(hidden=32, depth=2), schedule=SCHEDULE, ema_rate=0.9)
    options = dict(experiment=experiment, optimizer=lambda: optimizers.adam(learning_rate=1e-3), batch_size=8,
                   num_steps=6, steps_per_call=4, checkpoint_every=3, log_every=2, sample_every=0,
                   sampler_settings=SETTINGS)
    options.update(overrides)
    return Trainer(str(workdir), strategy, **options)


def state(trainer):
    return [v.numpy() for v in trainer.network.weights + trainer.ema.network.weights + trainer.optimizer.variables]


def checkpoints(workdir):
    return sorted(name for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.endswith(".index"))


def signal_at(number, step):
    """A log function that sends this process `number` when the trainer logs `step`."""
    def log(line):
        if line.startswith(f"step {step}/"):
            os.kill(os.getpid(), number)
    return log


def test_signals_save_at_the_step_they_arrive_and_the_resumed_run_is_bit_identical(tmp_path):
    straight = make_trainer(tmp_path / "straight")
    straight.train(log=quiet)
    workdir = tmp_path / "interrupted"
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(preemption.TrainingInterrupted, match="SIGTERM at step 2") as interrupted:
        make_trainer(workdir).train(log=signal_at(signal.SIGTERM, 2))
    assert interrupted.value.step == 2 and checkpoints(workdir) == ["ckpt-2.index"]
    assert signal.getsignal(signal.SIGTERM) is handler
    messages = []
    with pytest.raises(preemption.TrainingInterrupted, match="SIGINT at step 4"):
        make_trainer(workdir).train(log=lambda line: (messages.append(line), signal_at(signal.SIGINT, 4)(line)))
    assert "resumed from step 2" in messages[0]
    assert checkpoints(workdir) == ["ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]
    resumed = make_trainer(workdir)
    resumed.train(log=quiet)
    assert int(resumed.step.numpy()) == 6
    for a, b in zip(state(straight), state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_truncated_newest_checkpoint_resumes_from_the_one_before_with_a_warning(tmp_path):
    finished = make_trainer(tmp_path)
    finished.train(log=quiet)
    expected = state(finished)
    data_file = tmp_path / "checkpoints" / "ckpt-6.data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    messages = []
    resumed = make_trainer(tmp_path)
    resumed.train(log=messages.append)
    assert "warning: cannot restore" in messages[0] and "ckpt-6" in messages[0]
    assert "resumed from step 3" in messages[1]
    for a, b in zip(expected, state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    make_trainer(tmp_path, num_steps=3).train(log=quiet)
    os.truncate(tmp_path / "checkpoints" / "ckpt-3.index", 10)
    with pytest.raises(ValueError, match="no readable checkpoint .*move the directory away"):
        make_trainer(tmp_path, num_steps=3).train(log=quiet)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_checkpoint_that_cannot_be_written_stops_naming_it_and_loses_nothing(tmp_path, fault, storage_faults):
    workdir = storage_faults.tmpfs(tmp_path / "disk", "2m") / "run"
    make_trainer(workdir, num_steps=3).train(log=quiet)
    before = {name: open(workdir / "checkpoints" / name, "rb").read() for name in os.listdir(workdir / "checkpoints")}
    trainer = make_trainer(workdir, num_steps=6)
    if fault == "full":  # after the TensorBoard writer exists: the step-6 checkpoint is the write that fails
        log = lambda line: line.startswith("step 4/") and storage_faults.fill(workdir.parent)
        reason = "No space left on device"
    else:
        storage_faults.read_only(workdir / "checkpoints")
        log, reason = quiet, "Read-only file system"
    with pytest.raises(OSError) as failed:  # asm_tf.storage.StorageError
        trainer.train(log=log)
    assert str(failed.value) == (
        f"cannot write checkpoint {workdir}/checkpoints/ckpt-6 ({reason}); the previous checkpoint "
        f"({workdir}/checkpoints/ckpt-3) is intact: make room or make the directory writable, then run the same "
        "command to resume")
    assert sorted(os.listdir(workdir / "checkpoints")) == sorted(before)  # no partial ckpt-6 left, ckpt-3 listed
    assert {name: open(workdir / "checkpoints" / name, "rb").read() for name in before} == before
    assert make_trainer(workdir, num_steps=3).checkpoints.restore(quiet) == 3


def poisoned(source, batch_index):
    """The source with a NaN in the first example of batch number `batch_index` (0-based) of its stream."""
    def make_dataset(batch_size, seed, shard=(0, 1)):
        ds = source.make_dataset(batch_size, seed, shard=shard)
        first = tf.one_hot(0, batch_size)[:, None] > 0
        return ds.enumerate().map(lambda i, x: tf.where(tf.logical_and(i == batch_index, first), np.nan, x))
    return dataclasses.replace(source, make_dataset=make_dataset)


def test_a_nan_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data = poisoned(toy2d.toy2d("25gaussians", pool_size=512), batch_index=4)  # read by step 5
    trainer = make_trainer(tmp_path, data=data, checkpoint_every=2, num_steps=8)
    with pytest.raises(FloatingPointError, match=r"non-finite loss, loss_dsm, grad_norm in step 5: .*ckpt-4"):
        trainer.train(log=quiet)
    assert checkpoints(tmp_path) == ["ckpt-2.index", "ckpt-4.index"]
    assert int(trainer.step.numpy()) == 4 and int(trainer.optimizer.iterations.numpy()) == 4
    assert all(np.isfinite(v).all() for v in state(trainer))


def test_the_skip_option_skips_exactly_the_poisoned_update_and_counts_it(tmp_path, mirrored):
    # Two replicas: the NaN is in replica 0's half of the batch only; both agree through the summed values.
    data = poisoned(toy2d.toy2d("25gaussians", pool_size=512), batch_index=4)
    trainer = make_trainer(tmp_path, mirrored(), data=data, nonfinite="skip", num_steps=7, steps_per_call=7,
                           log_every=7, checkpoint_every=1, max_checkpoints=10)
    trainer.train(log=quiet)
    assert int(trainer.score_update.skipped.numpy()) == 1 and int(trainer.optimizer.iterations.numpy()) == 6
    saved = {step: tf.train.load_checkpoint(str(tmp_path / "checkpoints" / f"ckpt-{step}")) for step in (4, 5, 6)}
    trained = [key for key in saved[4].get_variable_to_shape_map()
               if key.startswith(("network/", "ema_network/", "optimizer/"))]
    assert len(trained) > 10
    for key in trained:  # step 5 changed nothing: weights, EMA, Adam moments and iteration count
        np.testing.assert_array_equal(saved[4].get_tensor(key), saved[5].get_tensor(key))
    assert any(not np.array_equal(saved[5].get_tensor(key), saved[6].get_tensor(key)) for key in trained)
    assert all(np.isfinite(v).all() for v in state(trainer))
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"),
                                                size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    assert [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("skipped_updates")] == [1.0]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_finite_losses_and_float32_sampling(tmp_path, policy):
    trainer = make_trainer(tmp_path, precision=policy, num_steps=4, sample_every=4, num_preview=8)
    metrics = trainer.train(log=quiet)
    assert all(np.isfinite(value) for value in metrics.values())
    assert trainer.network.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in trainer.network.weights + trainer.ema.network.weights)
    assert trainer.ema.network.compute_dtype == "float32"
    assert int(trainer.optimizer.iterations.numpy()) == 4
    if policy == "mixed_float16":
        assert float(trainer.score_update.loss_scale.scale.numpy()) == 2.0**15
    final, denoised = trainer.previews.samples(np.arange(4))
    assert final.dtype == denoised.dtype == tf.float32


def test_xla_on_each_replica_trains_like_the_plain_graph(tmp_path, mirrored):
    sgd = lambda: keras.optimizers.SGD(1e-2)  # exact comparison (see test_training)
    plain = make_trainer(tmp_path / "plain", optimizer=sgd)
    plain.train(log=quiet)
    xla = make_trainer(tmp_path / "xla", mirrored(), optimizer=sgd, jit_compile=True)
    xla.train(log=quiet)
    for a, b in zip(state(plain), state(xla), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_one_writer_per_run_and_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path, clean_gin):
    workdir = str(tmp_path / "run")
    args = ["--gin_file", os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin"), "--workdir", workdir,
            "--strategy", "default"]
    for binding in ["ToyMLP.hidden = 16", "toy2d.pool_size = 1024", "Trainer.batch_size = 16",
                    "Trainer.steps_per_call = 5", "Trainer.log_every = 5", "Trainer.checkpoint_every = 10",
                    "Trainer.sample_every = 0"]:
        args += ["--gin_bindings", binding]
    train = [sys.executable, "-m", "asm_tf.cli.train", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(["timeout", "-k", "10", "180", *train, "--gin_bindings", "Trainer.num_steps = 1000000"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        for line in process.stdout:
            if line.startswith("step 35/"):
                break
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
            trainer_pid = int(f.read().split()[0])  # the python process that `timeout` runs
        second = subprocess.run(train + ["--gin_bindings", "Trainer.num_steps = 1000000"], env=env,
                                capture_output=True, text=True, timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the python process and its timeout wrapper
        process.wait(timeout=30)
    errors = [line for line in second.stderr.splitlines() if line.startswith("asm-train")]
    assert second.returncode == 2 and len(errors) == 1, second.stderr[-2000:]
    assert errors[0].startswith(f"asm-train: error: {workdir} is in use by another asm-train (host "
                                f"{socket.gethostname()}, pid {trainer_pid}, since ")
    assert not [line for line in second.stdout.splitlines() if line.startswith("step ")]  # it never trained
    last = int(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).rsplit("-", 1)[1])
    assert last >= 30
    # The killed trainer's lock file is still there, naming it; the kernel released its lock.
    assert f"pid {trainer_pid}," in open(os.path.join(workdir, "lock")).read()
    resumed = subprocess.run(train + ["--gin_bindings", f"Trainer.num_steps = {last + 5}", "--allow_config_change"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {last} " in resumed.stdout and f"step {last + 5}/{last + 5}" in resumed.stdout


def test_config_changes_are_listed_and_refused_unless_allowed(tmp_path, capsys):
    workdir_lib.save_config(str(tmp_path), "Trainer.num_steps = 20\nToyMLP.hidden = 16\n")
    changed = "Trainer.num_steps = 40\nToyMLP.hidden = 16\n"
    with pytest.raises(workdir_lib.ConfigChanged, match=r"-Trainer.num_steps = 20; \+Trainer.num_steps = 40\).*--allow_"):
        workdir_lib.check_config(str(tmp_path), changed)
    workdir_lib.check_config(str(tmp_path), changed, allow_change=True)
    assert "-Trainer.num_steps = 20\n  +Trainer.num_steps = 40" in capsys.readouterr().out


def test_gin_mistakes_found_by_building_the_run(tmp_path, clean_gin):
    files = [os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin")]
    small = ["ToyMLP.hidden = 8", "toy2d.pool_size = 64", "Trainer.batch_size = 4"]
    configuration.parse(files, small + ["scor/adam.learning_rate = 1e-3"])  # a misspelt scope
    Trainer(str(tmp_path))
    assert configuration.unused_bindings() == ["scor/adam.learning_rate"]
    configuration.parse(files, small + ["ToyMLP.hiden = 3"])  # ToyMLP takes **kwargs: found when it is called
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to ToyMLP: {'hiden': 3}"):
        Trainer(str(tmp_path))


@pytest.mark.parametrize("binding,message", [("Trainer.nonfinite = 'ignore'", "nonfinite must be one of"),
                                             ("Trainer.precision = 'float16'", "precision must be one of"),
                                             ("Trainer.nonfinte = 'skip'", "doesn't have a parameter")])
def test_bad_fault_options_are_refused_before_any_work(tmp_path, clean_gin, binding, message):
    files = [os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin")]
    with pytest.raises(ValueError, match=message):
        configuration.parse(files, ["ToyMLP.hidden = 8", "toy2d.pool_size = 64", binding])
        Trainer(str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")
