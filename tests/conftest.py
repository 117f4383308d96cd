"""Test set-up: two logical CPU devices so that MirroredStrategy runs with two replicas."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import asm_tf  # noqa: E402,F401  (before TensorFlow, as the command-line tools import it: oneDNN on)
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import pytest  # noqa: E402


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
