"""The installed console scripts (asm-train, asm-sample, asm-export, asm-eval, asm-import): --help, a quiet stderr by
default, the dry run's description of every network and of the devices, and progress bars on a terminal."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from absl import flags, logging
from absl.testing import flagsaver
from conftest import REPO

from asm_tf.cli import common

SCRIPTS = ("asm-train", "asm-sample", "asm-export", "asm-eval", "asm-import")
# Lines that a default run must not show: TensorFlow's C++ start-up, absl INFO, gin's include search.
NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations", "INFO:", "I0000",
         "Path not found")
ADVERSARIAL_DRY_RUN = ["--gin_file", os.path.join(REPO, "gin_configs", "toy2d_8gaussians_adv.gin"), "--dry_run",
                       "--gin_bindings", "ToyMLP.hidden = 16", "--gin_bindings", "toy_discriminator.hidden = 8"]


def script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed beside {sys.executable}: pip install -e .")
    return path


def start(name, *args, **env):
    """Starts an installed console script with the user's environment (no TF_CPP_MIN_LOG_LEVEL of the tests)."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.Popen([script(name), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**environment, **env}, cwd=REPO)


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def runs():
    """Every command's --help and an adversarial dry run, side by side; asm-eval's with TF_CPP_MIN_LOG_LEVEL=0."""
    processes = {name: start(name, "--help", **({"TF_CPP_MIN_LOG_LEVEL": "0"} if name == "asm-eval" else {}))
                 for name in SCRIPTS}
    processes["dry run"] = start("asm-train", *ADVERSARIAL_DRY_RUN)
    return {name: finish(process) for name, process in processes.items()}


def noise(text):
    return [line for line in text.splitlines() if any(pattern in line for pattern in NOISE)]


@pytest.mark.parametrize("name,flags", [
    ("asm-train", ["--gin_file", "--gin_bindings", "--workdir", "--dry_run", "--strategy", "--verbosity"]),
    ("asm-sample", ["--workdir", "--seeds", "--sampler", "--png_dir", "--gin_bindings", "--verbosity"]),
    ("asm-export", ["--workdir", "--export_dir", "--max_images", "--gin_bindings", "--verbosity"]),
    ("asm-eval", ["--workdir", "--metric", "--checkpoints", "--gin_bindings", "--verbosity"]),
    ("asm-import", ["--reference_checkpoint", "--reference_config", "--workdir", "--overwrite", "--verbosity"]),
])
def test_help_lists_the_commands_own_flags_with_their_help(runs, name, flags):
    returncode, stdout, stderr = runs[name]
    assert returncode in (0, 1), stderr[-2000:]  # absl's --help exits with 1
    assert stdout.strip().startswith(f"{name}: ")  # the command's docstring comes first
    for flag in flags:
        assert re.search(rf"--(\[no\])?{flag[2:]}: [<\w]", stdout), f"{flag} missing from {name} --help:\n{stdout}"
    assert "Sampler (default: the run's)" in runs["asm-sample"][1]
    if name != "asm-eval":
        assert not noise(stderr), stderr


def test_a_default_run_prints_only_our_own_lines(runs):
    returncode, stdout, stderr = runs["dry run"]
    assert returncode == 0, stderr[-3000:]
    assert stderr.strip() == "" and not noise(stdout), stderr
    assert "dry run: the configuration is valid" in stdout


def test_tf_cpp_min_log_level_brings_tensorflows_start_up_lines_back(runs):
    assert "oneDNN custom operations are on" in runs["asm-eval"][2]


def test_verbosity_brings_absl_info_back():
    def verbosity(argv):
        return logging.get_verbosity()

    wrapped = common.main_with_errors("asm-test", verbosity)
    with flagsaver.flagsaver():
        for given, expected in ((False, logging.WARNING), (True, logging.INFO)):
            logging.set_verbosity(logging.INFO)  # what absl's app.run leaves, --verbosity given or not
            flags.FLAGS["verbosity"].present = int(given)
            assert wrapped([]) == expected


def test_dry_run_describes_the_discriminator_and_the_devices(runs):
    returncode, stdout, stderr = runs["dry run"]
    assert returncode == 0, stderr[-3000:]
    lines = stdout.splitlines()
    # ToyMLP(hidden=16, depth=3) on points with sigma appended: 4*16 + 2*(17*16) + 17*2; the discriminator's
    # (no sigma, hidden 8): 3*8 + 2*(9*8) + 9*1.
    assert "score network: ToyMLP, 642 parameters, input (batch, 2)" in lines
    assert "discriminator: ToyMLP, 177 parameters, input (batch, 2)" in lines
    assert "devices: CPU:0 (no GPU visible: training runs on the CPU)" in lines
    assert "replicas: 1 on 1 worker(s), DefaultDistributionStrategy over the default device" in lines


def on_a_terminal(*command):
    """Runs a command with its stdout and stderr on a pseudo-terminal, as a person would; its whole output."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows of 120 columns
    environment = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL",
                                                                                    "ASM_TF_PROGRESS")}
    process = subprocess.Popen(command, stdout=follower, stderr=follower, env=environment, cwd=REPO)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")[-3000:]
    return output.decode(errors="replace")


def test_training_shows_a_progress_bar_on_a_terminal_and_keeps_its_log_lines(tmp_path):
    args = ["--gin_file", os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin"), "--strategy", "default"]
    args += [arg for binding in ("Trainer.num_steps = 40", "Trainer.steps_per_call = 10", "Trainer.log_every = 20",
                                 "Trainer.sample_every = 0", "ToyMLP.hidden = 16")
             for arg in ("--gin_bindings", binding)]
    output = on_a_terminal(script("asm-train"), *args, "--workdir", str(tmp_path / "run"))
    assert re.search(r"training: +\d+%\|.*\| \d+/40 \[.*step/s\]", output), output  # count, ETA and rate
    assert "step 20/40: loss" in output and "step 40/40: loss" in output
    # In a file (no terminal) there is no bar, only the log lines.
    process = start("asm-train", *args, "--workdir", str(tmp_path / "logged"))
    returncode, stdout, stderr = finish(process)
    assert returncode == 0 and "step 40/40: loss" in stdout
    assert "%|" not in stdout + stderr
