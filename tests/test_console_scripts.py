"""The installed console scripts (asm-train, asm-sample, asm-export, asm-eval): --help, a quiet stderr by
default and the dry run's description of every network and of the devices."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("asm-train", "asm-sample", "asm-export", "asm-eval")
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
def helps():
    """--help of the four scripts, run side by side."""
    processes = {name: start(name, "--help") for name in SCRIPTS}
    return {name: finish(process) for name, process in processes.items()}


@pytest.mark.parametrize("name,flags", [
    ("asm-train", ["--gin_file", "--gin_bindings", "--workdir", "--dry_run", "--strategy", "--verbosity"]),
    ("asm-sample", ["--workdir", "--seeds", "--sampler", "--png_dir", "--gin_bindings", "--verbosity"]),
    ("asm-export", ["--workdir", "--export_dir", "--max_images", "--gin_bindings", "--verbosity"]),
    ("asm-eval", ["--workdir", "--metric", "--checkpoints", "--gin_bindings", "--verbosity"]),
])
def test_help_lists_the_commands_own_flags_with_their_help(helps, name, flags):
    returncode, stdout, stderr = helps[name]
    assert returncode in (0, 1), stderr[-2000:]  # absl's --help exits with 1
    assert name in stdout.splitlines()[1]  # the command's docstring comes first
    for flag in flags:
        assert f"{flag}:" in stdout, f"{flag} missing from {name} --help:\n{stdout}"
    assert "Sampler (default: the run's)" in helps["asm-sample"][1]
    assert not [line for line in stderr.splitlines() if any(noise in line for noise in NOISE)], stderr


@pytest.fixture(scope="module")
def dry_runs():
    """An adversarial dry run with the default (quiet) logging and one with everything asked back."""
    quiet = start("asm-train", *ADVERSARIAL_DRY_RUN)
    verbose = start("asm-train", *ADVERSARIAL_DRY_RUN, "--verbosity=0", TF_CPP_MIN_LOG_LEVEL="0")
    return finish(quiet), finish(verbose)


def test_a_default_run_prints_only_our_own_lines(dry_runs):
    (returncode, stdout, stderr), _ = dry_runs
    assert returncode == 0, stderr[-3000:]
    assert stderr.strip() == ""
    assert "dry run: the configuration is valid" in stdout
    assert not [line for line in stdout.splitlines() if any(noise in line for noise in NOISE)], stdout


def test_verbosity_and_tf_cpp_min_log_level_bring_the_rest_back(dry_runs):
    _, (returncode, stdout, stderr) = dry_runs
    assert returncode == 0, stderr[-3000:]
    assert "oneDNN custom operations are on" in stderr  # TensorFlow's C++ start-up, TF_CPP_MIN_LOG_LEVEL=0
    assert "Using MirroredStrategy with devices" in stderr  # absl INFO, --verbosity=0
    assert "dry run: the configuration is valid" in stdout


def test_dry_run_describes_the_discriminator_and_the_devices(dry_runs):
    (returncode, stdout, stderr), _ = dry_runs
    assert returncode == 0, stderr[-3000:]
    lines = stdout.splitlines()
    # ToyMLP(hidden=16, depth=3) on points with sigma appended: 4*16 + 2*(17*16) + 17*2; the discriminator's
    # (no sigma, hidden 8): 3*8 + 2*(9*8) + 9*1.
    assert "score network: ToyMLP, 642 parameters, input (batch, 2)" in lines
    assert "discriminator: ToyMLP, 177 parameters, input (batch, 2)" in lines
    assert "devices: CPU:0 (no GPU visible: training runs on the CPU)" in lines
    assert "replicas: 1 on 1 worker(s), MirroredStrategy over /job:localhost/replica:0/task:0/device:CPU:0" in lines
