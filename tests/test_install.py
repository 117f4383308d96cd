"""One TensorFlow per install: asm-tf's own requirements for the CPU and the GPU command (offline, from its
metadata), and a consistent test environment. tools/user/check_install.py resolves both installs in full (it reads
PyPI's metadata of the CUDA wheels, about two minutes): run it by hand when setup.py changes."""

import subprocess
import sys

import pytest

from tools.user import check_install


@pytest.mark.parametrize("device,expected", [
    ("cpu", ["tensorflow==2.21.0"]),
    ("gpu", ["tensorflow==2.21.0", "tensorflow[and-cuda]==2.21.0"]),  # one distribution: the CUDA libraries added
])
def test_each_install_requests_one_tensorflow_distribution(device, expected):
    assert check_install.requested_tensorflows(device) == expected


def test_an_unknown_device_is_refused_in_one_line():
    with pytest.raises(RuntimeError, match="device 'tpu': use cpu \\(the default\\) or gpu"):
        check_install.requested_tensorflows("tpu")


@pytest.mark.parametrize("device,distributions,expected", [
    ("cpu", {"tensorflow": "2.21.0", "keras": "3.15.1"}, []),
    ("cpu", {"tensorflow-cpu": "2.21.0", "keras": "3.15.1"},
     ["cpu: TensorFlow distributions ['tensorflow-cpu==2.21.0'], expected only tensorflow==2.21.0"]),
    ("gpu", {"tensorflow": "2.21.0", **{name: "12" for name in check_install.CUDA_WHEELS}}, []),
    ("gpu", {"tensorflow": "2.21.0", "tensorflow-cpu": "2.21.0", **{name: "12" for name in check_install.CUDA_WHEELS}},
     ["gpu: TensorFlow distributions ['tensorflow-cpu==2.21.0', 'tensorflow==2.21.0'], expected only "
      "tensorflow==2.21.0"]),
    ("gpu", {"tensorflow": "2.21.0"}, ["gpu: CUDA wheels ['nvidia-cudnn-cu12', 'nvidia-cublas-cu12', "
                                       "'nvidia-cuda-runtime-cu12'] missing"]),
])
def test_a_resolution_with_two_tensorflows_or_no_cuda_is_reported(device, distributions, expected):
    assert check_install.problems(device, distributions) == expected


def test_the_installed_environment_is_consistent():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
