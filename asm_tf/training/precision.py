"""Mixed precision for the networks: Keras dtype policies, float32 outputs, dynamic loss scaling, and whether
this machine computes bfloat16 natively.

Variables stay float32 under every policy; only the networks' layers compute in the lower precision. Noise, losses,
EMA weights, the samplers' state and coefficients, EDM's preconditioning and the final denoising step stay float32
(docs/speed.md#bfloat16).
"""

import contextlib

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(name):
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return name


@contextlib.contextmanager
def dtype_policy(name):
    """Builds the layers created inside with the Keras dtype policy `name`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(check_precision(name))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def cpu_flags(path="/proc/cpuinfo"):
    """The instruction-set flags of the CPU as Linux lists them (empty where there is no such file)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_bfloat16(gpus=None, flags=None):
    """(True or False, what computes it): bfloat16 runs natively on a GPU of compute capability 8.0 or more (tensor
    cores) and on a CPU with AMX-BF16 or AVX512-BF16; elsewhere TensorFlow emulates it, slower than float32."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        return tuple(capability) >= (8, 0), f"GPU of compute capability {capability[0]}.{capability[1]}"
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")):
        if flag in flags:
            return True, f"CPU with {name}"
    return False, "CPU without AMX-BF16 or AVX512-BF16"


def bfloat16_line(native=None):
    """One line on bfloat16 for the dry run and the commands' start: native, or emulated (and so slower)."""
    native, device = native_bfloat16() if native is None else native
    if native:
        return f"bfloat16: native on this {device}"
    return f"bfloat16: emulated on this {device}, slower than float32"


def warn_if_emulated(precision, log, native=None):
    """Logs a warning when `precision` is mixed_bfloat16 and this machine (`native`: as native_bfloat16 says)
    only emulates bfloat16."""
    native = native_bfloat16() if native is None else native
    if precision == "mixed_bfloat16" and not native[0]:
        log(f"warning: mixed_bfloat16 asked for, but {bfloat16_line(native)}")


class Float32Outputs:
    """Calls a network and casts its outputs to float32, so that losses and samplers compute in float32."""

    def __init__(self, network):
        self.network = network
        self.takes_sigma = getattr(network, "takes_sigma", False)

    @property
    def weights(self):
        return self.network.weights

    def __call__(self, *args, **kwargs):
        return tf.cast(self.network(*args, **kwargs), tf.float32)


class DynamicLossScale(tf.Module):
    """Loss scaling for float16 gradients: the loss is multiplied by `scale` before differentiating and the
    summed gradients divided by it. A non-finite gradient skips its update and halves the scale;
    `growth_interval` finite updates in a row double it. Create it under the strategy's scope.
    """

    def __init__(self, initial_scale=2.0**15, growth_interval=2000):
        super().__init__(name="loss_scale")
        self.growth_interval = growth_interval
        self.scale = tf.Variable(float(initial_scale), trainable=False, dtype=tf.float32, name="scale")
        self.finite_in_a_row = tf.Variable(0, trainable=False, dtype=tf.int64, name="finite_in_a_row")

    def after_finite(self):
        count = self.finite_in_a_row + 1
        grow = count >= self.growth_interval
        self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
        self.finite_in_a_row.assign(tf.where(grow, tf.zeros_like(count), count))

    def after_nonfinite(self):
        self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
        self.finite_in_a_row.assign(tf.zeros_like(self.finite_in_a_row))
