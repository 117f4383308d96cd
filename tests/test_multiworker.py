"""Two asm-train workers on 127.0.0.1 (MultiWorkerMirroredStrategy from TF_CONFIG), each under `timeout -k`.

Run as a script, this file is one worker: asm-train with keras.optimizers.SGD registered with gin
(Adam's normalised steps amplify summation-order rounding; SGD compares to 1e-6).
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import gin
import keras
import numpy as np
import tensorflow as tf

gin.external_configurable(keras.optimizers.SGD, module="keras.optimizers")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A bound on every worker, so that one whose peer died cannot hang CI (it would wait for ever, ignoring
# SIGTERM): about 15 s of CPU each, but a loaded 2-core machine (load average 10) took 100 s to step 15.
WORKER_TIMEOUT = 180
BINDINGS = ["ToyMLP.hidden = 16", "toy2d.pool_size = 1024", "Trainer.batch_size = 16", "Trainer.steps_per_call = 5",
            "Trainer.log_every = 5", "Trainer.checkpoint_every = 10", "Trainer.sample_every = 0",
            "Trainer.optimizer = @keras.optimizers.SGD", "keras.optimizers.SGD.learning_rate = 0.05"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch_workers(workdir, num_steps, *flags):
    """Starts two workers (stdout and stderr to WORKDIR/../worker-<i>.log); returns (processes, log paths)."""
    ports = free_ports(2)
    args = ["--gin_file", os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin"), "--workdir", workdir, *flags]
    for binding in BINDINGS + [f"Trainer.num_steps = {num_steps}"]:
        args += ["--gin_bindings", binding]
    processes, logs = [], []
    for index in range(2):
        config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                  "task": {"type": "worker", "index": index}}
        scratch = os.path.join(os.path.dirname(workdir), f"tmp-{index}")
        os.makedirs(scratch, exist_ok=True)
        env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=scratch)
        logs.append(os.path.join(os.path.dirname(workdir), f"worker-{index}.log"))
        with open(logs[-1], "w") as log:
            command = ["timeout", "-k", "10", str(WORKER_TIMEOUT), sys.executable, __file__, *args]
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes, logs


def wait_for(path, text, processes, deadline):
    while time.time() < deadline and all(p.poll() is None for p in processes):
        if text in open(path).read():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {path}:\n{open(path).read()[-3000:]}")


def worker_pid(process):
    """The pid of the python process that `timeout` (process) runs."""
    with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
        return int(f.read().split()[0])


def finish(processes, logs):
    codes = [p.wait(timeout=WORKER_TIMEOUT + 20) for p in processes]
    return codes, [open(path).read() for path in logs]


def interrupted_step(output):
    line = next(line for line in output.splitlines() if line.startswith("asm-train: interrupted by"))
    return int(line.split(" at step ")[1].split(":")[0])


def trained_state(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    keys = sorted(k for k in reader.get_variable_to_shape_map()
                  if k.startswith(("network/", "ema_network/", "optimizer/")))
    return {key: reader.get_tensor(key) for key in keys}


def single_process_run(workdir, reference):
    """The same configuration (read from the workers' config.gin) in this process on one device."""
    from asm_tf.run_loading import parse_run_config
    from asm_tf.training.trainer import Trainer
    parse_run_config(workdir)
    try:
        Trainer(reference, tf.distribute.get_strategy()).train(log=lambda _: None)
    finally:
        gin.clear_config()


def test_two_workers_train_like_one_process_and_stop_together_on_a_signal(tmp_path):
    workdir = str(tmp_path / "run")
    processes, logs = launch_workers(workdir, 1_000_000)
    wait_for(logs[0], "step 15/", processes, time.time() + WORKER_TIMEOUT - 10)
    # SIGTERM to the non-chief worker itself: `timeout` would pass it on but then SIGKILL it 10 s later.
    os.kill(worker_pid(processes[1]), signal.SIGTERM)
    codes, outputs = finish(processes, logs)
    assert codes == [75, 75], outputs
    step = interrupted_step(outputs[1])
    assert "interrupted by SIGTERM" in outputs[1] and "a signal on another worker" in outputs[0]
    assert interrupted_step(outputs[0]) == step >= 15
    directory = os.path.join(workdir, "checkpoints")
    assert tf.train.latest_checkpoint(directory).endswith(f"ckpt-{step}")
    for index in range(2):
        assert os.path.exists(os.path.join(directory, f"worker-{index}-of-2", f"ckpt-{step}.index"))
        assert not glob.glob(str(tmp_path / f"tmp-{index}" / "asm_worker_checkpoint_*"))
    assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 1  # the chief's alone

    processes, logs = launch_workers(workdir, step + 10, "--allow_config_change")
    codes, outputs = finish(processes, logs)
    assert codes == [0, 0], outputs
    for output in outputs:
        assert f"resumed from step {step} " in output
    assert f"step {step + 10}/{step + 10}" in outputs[0]
    assert not any(line.startswith("step ") for line in outputs[1].splitlines())  # the chief alone logs

    reference = str(tmp_path / "single")
    single_process_run(workdir, reference)
    two = trained_state(os.path.join(directory, f"ckpt-{step + 10}"))
    one = trained_state(os.path.join(reference, "checkpoints", f"ckpt-{step + 10}"))
    assert two.keys() == one.keys() and len(one) >= 8
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-7, err_msg=key)
    start = trained_state(os.path.join(directory, f"ckpt-{step}"))
    assert max(np.abs(start[k] - one[k]).max() for k in one if k.startswith("network/")) > 1e-3


def test_a_write_that_fails_on_the_chief_stops_both_workers_at_once(tmp_path, storage_faults):
    workdir = str(tmp_path / "run")
    processes, logs = launch_workers(workdir, 1_000_000)
    wait_for(logs[0], "step 15/", processes, time.time() + WORKER_TIMEOUT - 10)  # after the step-10 save
    chief_inputs = os.path.join(workdir, "checkpoints", "worker-0-of-2")
    storage_faults.read_only(chief_inputs)  # only the chief's part of the next checkpoint cannot be written
    started = time.time()
    codes, outputs = finish(processes, logs)
    assert codes == [1, 1], outputs
    failed = re.search(rf"cannot write checkpoint {re.escape(chief_inputs)}/ckpt-(\d+) \(Read-only file system\)",
                       outputs[0])
    assert failed, outputs[0][-3000:]
    step = int(failed.group(1))
    assert f"another worker could not write its part of checkpoint ckpt-{step}" in outputs[1], outputs[1][-3000:]
    assert time.time() - started < WORKER_TIMEOUT / 2, outputs  # not a collective's timeout
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{step - 10}")

if __name__ == "__main__":
    from asm_tf.cli import train
    train.run()
