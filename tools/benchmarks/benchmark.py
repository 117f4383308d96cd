"""Speed and memory of a score network on this machine, as one JSON line.

    python tools/benchmarks/benchmark.py --model=ncsnv2 --image_size=32 --batch_size=8 --mode=train

Modes: `train` times one DSM loss + gradient + Adam update in one tf.function; `forward` times
`net(x, training=False)`; `cas` times a CAS run (`sampling.cas`, one network call per level) on `--cas_levels`
geometric levels from 50 to 0.01 with step size sigma_L^2, the reference benchmark's short run, and reports
`seconds_per_network_call`. FLOPs are counted from the traced graph: 2 * multiply-adds of every
convolution (forward and both backward kernels) and matrix product, per image; element-wise work is not
counted. The same run measures the fp32 matmul GFLOP/s of the machine (the best of several square
`tf.matmul`s of sizes 1024 to 4096, before and after the model) and reports achieved / matmul. Peak memory is the process's
resident high-water mark (`resource.getrusage`), read before the matmul measurement. On a busy machine
`ratio_to_matmul_per_cpu_second` (FLOPs per CPU second of the step over those of the matmul) is the
steadier figure; `ratio_to_matmul` (wall clock) is the one that counts on a quiet machine.

Importable: `time_calls`, `matmul_peak`, `graph_flops` and `peak_rss_gb` serve other benchmarks.
"""

import argparse
import collections
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN is off by default on CPUs without AVX-512 (like this AMD EPYC); its convolutions measured 1.3x
# (forward) and 1.6x (input gradient) more FLOPs per CPU second than Eigen's here. TF reads this at import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from asm_tf.experiment import parameter_count  # noqa: E402
from asm_tf.noise_levels.schedule import ladder  # noqa: E402
from asm_tf.training import precision  # noqa: E402

MODELS = ("ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest", "unet")
CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def peak_rss_gb():
    """The process's peak resident memory so far, in GB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


Timing = collections.namedtuple("Timing", "wall cpu")


def time_calls(fn, *args, warmup=2, steps=5):
    """Wall and process-CPU seconds of each of `steps` calls of fn(*args) after `warmup` calls.

    CPU seconds (all threads) barely change when other processes share the cores, so
    FLOPs per CPU second compare kernels fairly on a busy machine; wall seconds are the real speed.
    """
    for _ in range(warmup):
        _block(fn(*args))
    timing = Timing([], [])
    for _ in range(steps):
        wall, cpu = time.perf_counter(), time.process_time()
        _block(fn(*args))
        timing.wall.append(time.perf_counter() - wall)
        timing.cpu.append(time.process_time() - cpu)
    return timing


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels (set TF_ENABLE_ONEDNN_OPTS before importing TF)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _block(result):
    """Waits for the result (a tensor or nest of tensors) to be computed."""
    for tensor in tf.nest.flatten(result):
        if hasattr(tensor, "numpy"):
            tensor.numpy()


def matmul_gflops(size=4096, repeats=5):
    """Best fp32 GFLOP/s of a size x size matmul in a tf.function (a measured machine peak), as
    Timing(wall=per wall second, cpu=per CPU second)."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[0]))
    timing = time_calls(matmul, warmup=1, steps=repeats)
    flops = 2.0 * size ** 3
    return Timing(flops / min(timing.wall) / 1e9, flops / min(timing.cpu) / 1e9)


def matmul_peak(sizes=(1024, 2048, 4096), repeats=5):
    """The best matmul_gflops over several sizes (Eigen's kernels, used without oneDNN, are slower on
    some sizes), as Timing(wall, cpu)."""
    results = [matmul_gflops(size, repeats) for size in sizes]
    return Timing(max(r.wall for r in results), max(r.cpu for r in results))


def _dims(shape):
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or None in dims:
        raise ValueError(f"FLOP counting needs static shapes, got {shape}; trace with fixed shapes")
    return dims


def op_flops(op):
    """2 * multiply-adds of one convolution or matrix-product op, or 0 for any other op."""
    if op.type in CONV_OPS:
        kernel = _dims(op.outputs[0].shape if op.type == "Conv2DBackpropFilter" else op.inputs[1].shape)
        output = _dims(op.inputs[2].shape if op.type != "Conv2D" else op.outputs[0].shape)
        kh, kw, in_channels, _ = kernel
        return 2 * int(np.prod(output)) * kh * kw * in_channels
    if op.type in MATMUL_OPS:
        a = _dims(op.inputs[0].shape)
        transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        contraction = a[-2] if transposed else a[-1]
        return 2 * int(np.prod(_dims(op.outputs[0].shape))) * contraction
    return 0


def graph_flops(graph):
    """FLOPs of the convolutions and matrix products of a traced graph and the functions it calls."""
    total = sum(op_flops(op) for op in graph.get_operations())
    for function in getattr(graph, "_functions", {}).values():  # nested tf.functions, if any
        total += graph_flops(function.graph) if hasattr(function, "graph") else 0
    return total


def build_network(name, ngf, image_size, channels):
    """A score network by name, built for (image_size, image_size, channels) images."""
    from asm_tf.models import ncsnv2, unet

    classes = {"ncsnv2": ncsnv2.NCSNv2, "ncsnv2_deeper": ncsnv2.NCSNv2Deeper,
               "ncsnv2_deepest": ncsnv2.NCSNv2Deepest}
    network = unet.UNet(ch=ngf) if name == "unet" else classes[name](ngf=ngf)
    network.build((None, image_size, image_size, channels))
    return network


def gin_network(gin_files, gin_bindings, image_size, channels):
    """The network that a gin configuration binds to Experiment.score_network (the data are not loaded)."""
    import gin

    from asm_tf import configuration

    configuration.parse(gin_files, gin_bindings)
    network = gin.query_parameter("Experiment.score_network").scoped_configurable_fn()
    network.build((None, image_size, image_size, channels))
    return network


def make_train_step(network, sigmas, learning_rate=1e-4):
    """One DSM loss + Adam update (the reference's optimiser) as a tf.function of (x, seeds)."""
    from asm_tf.score import ScoreModel
    from asm_tf.training.dsm import draw_perturbation, dsm_loss

    score_model = ScoreModel(network)
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    optimizer.build(network.trainable_variables)
    sigmas = tf.constant(sigmas, tf.float32)

    @tf.function
    def train_step(x, seeds):
        sigma, z = draw_perturbation(seeds, x.shape[1:], sigmas)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(dsm_loss(score_model, x, sigma, z, training=True).loss)
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables))
        return loss

    return train_step


def benchmark(network, *, mode, batch_size, image_size, channels, warmup=2, steps=5,
              matmul_sizes=(1024, 2048, 4096), sigmas=None, cas_levels=20):
    """Times `network` (a Keras network, or one wrapped by precision.Float32Outputs) and returns the report."""
    matmul_before = matmul_peak(matmul_sizes)
    x = tf.random.uniform((batch_size, image_size, image_size, channels), seed=0)
    seeds = tf.range(batch_size, dtype=tf.int64)
    if mode == "train":
        sigmas = ladder(50.0, 0.01, 232) if sigmas is None else sigmas
        step, args = make_train_step(network, sigmas), (x, seeds)
    elif mode == "forward":
        step, args = tf.function(lambda x: network(x, training=False)), (x,)
    elif mode == "cas":
        from asm_tf.sampling import cas
        from asm_tf.score import ScoreModel

        levels = ladder(50.0, 0.01, cas_levels).astype(np.float32)
        step = tf.function(lambda x, seeds: cas(ScoreModel(network), x, seeds, levels, float(levels[-1]) ** 2))
        args = (x, seeds)
    else:
        raise ValueError(f"mode must be 'train', 'forward' or 'cas', got {mode!r}")
    flops_per_image = graph_flops(step.get_concrete_function(*args).graph) / batch_size
    if mode == "cas":  # the loop's body, counted once, runs once per level
        flops_per_image *= cas_levels
    timing = time_calls(step, *args, warmup=warmup, steps=steps)
    rss = peak_rss_gb()
    matmul_after = matmul_peak(matmul_sizes)
    matmul = Timing(max(matmul_before.wall, matmul_after.wall), max(matmul_before.cpu, matmul_after.cpu))
    seconds, cpu_seconds = statistics.median(timing.wall), statistics.median(timing.cpu)
    step_gflop = flops_per_image * batch_size / 1e9
    per_call = {"seconds_per_network_call": round(seconds / cas_levels, 4)} if mode == "cas" else {}
    return {**per_call,
        "mode": mode, "batch_size": batch_size, "image_size": image_size, "channels": channels,
        "parameters": parameter_count(getattr(network, "network", network)),
        "seconds_per_step": round(seconds, 4), "seconds_min": round(min(timing.wall), 4),
        "images_per_second": round(batch_size / seconds, 3),
        "gflops_per_image": round(flops_per_image / 1e9, 3),
        "achieved_gflops": round(step_gflop / seconds, 2), "matmul_gflops": round(matmul.wall, 2),
        "matmul_gflops_before_after": [round(matmul_before.wall, 2), round(matmul_after.wall, 2)],
        "ratio_to_matmul": round(step_gflop / seconds / matmul.wall, 3),
        "cpu_seconds_per_step": round(cpu_seconds, 4),
        "ratio_to_matmul_per_cpu_second": round(step_gflop / cpu_seconds / matmul.cpu, 3),
        "peak_rss_gb": round(rss, 3), "onednn": onednn_enabled(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="ncsnv2", help="network (ignored with --gin_file)")
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file(s) binding Experiment.score_network (instead of --model)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra gin bindings")
    parser.add_argument("--ngf", type=int, default=128, help="base channel count (ngf, or ch for the UNet)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--mode", choices=("train", "forward", "cas"), default="train")
    parser.add_argument("--precision", choices=precision.PRECISIONS, default="float32",
                        help="the network's Keras dtype policy for --mode=forward and cas (mixed ones return float32 "
                             "outputs); tools/benchmarks/benchmark_trainer.py times mixed-precision training")
    parser.add_argument("--cas_levels", type=int, default=20, help="noise levels of a --mode=cas run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls (the first one traces)")
    parser.add_argument("--steps", type=int, default=5, help="timed calls; the median is reported")
    parser.add_argument("--matmul_sizes", type=int, nargs="+", default=[1024, 2048, 4096],
                        help="square matmul sizes; the best GFLOP/s is the machine's peak")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "train" and args.precision != "float32":
        sys.exit("error: --precision applies to --mode=forward and cas; time mixed-precision training with "
                 "tools/benchmarks/benchmark_trainer.py --variants float32 mixed_bfloat16")
    with precision.dtype_policy(args.precision):
        if args.gin_file:
            from asm_tf.noise_levels.schedule import NoiseSchedule

            network = gin_network(args.gin_file, args.gin_bindings, args.image_size, args.channels)
            report, sigmas = {"gin_file": args.gin_file}, NoiseSchedule().sigmas()
        else:
            network = build_network(args.model, args.ngf, args.image_size, args.channels)
            report, sigmas = {"model": args.model, "ngf": args.ngf}, None
    if args.precision != "float32":
        network = precision.Float32Outputs(network)
    report["precision"] = args.precision
    report.update(benchmark(network, mode=args.mode, batch_size=args.batch_size, image_size=args.image_size,
                            channels=args.channels, warmup=args.warmup, steps=args.steps,
                            matmul_sizes=args.matmul_sizes, sigmas=sigmas, cas_levels=args.cas_levels))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
