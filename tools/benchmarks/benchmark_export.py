"""Cost of a CAS run through the exported SavedModel against the bare network forward passes it makes.

    python tools/benchmarks/benchmark_export.py --ngf=128 --image_size=32 --batch_size=8 --num_levels=10 \
        [--precision=mixed_bfloat16]

Builds an NCSNv2 (random weights: speed does not depend on them), exports it with asm_tf.export, loads the
SavedModel with the session loader that TF Serving uses (and, with --loader=both, tf.saved_model.load too),
and times `serving_default` (CAS on num_levels levels, n_sigma 1, final denoising: one forward pass per
level) against num_levels calls of `network(x, training=False)` in a tf.function on the same batch. The two
are measured in alternating rounds in one process; the ratio of the medians is printed with the
process-CPU-time ratio (steadier when other processes share the cores) and the load average, as JSON.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tools/benchmarks/benchmark.py: oneDNN kernels on this CPU

import numpy as np  # noqa: E402

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import tensorflow as tf  # noqa: E402

from asm_tf import export, sampling  # noqa: E402
from asm_tf.data.source import DataSource  # noqa: E402
from asm_tf.data.transforms import Transform  # noqa: E402
from asm_tf.experiment import build_network  # noqa: E402
from asm_tf.models.ncsnv2 import NCSNv2  # noqa: E402
from asm_tf.noise_levels import schedule as noise_schedule  # noqa: E402
from asm_tf.score import ScoreModel  # noqa: E402
from asm_tf.training import precision  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngf", type=int, default=128, help="NCSNv2 width (128 as in the paper)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_levels", type=int, default=10, help="noise levels = forward passes per CAS run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds after one warm-up")
    parser.add_argument("--loader", choices=("session", "both"), default="session",
                        help="session: TF Serving's loader only; both: also tf.saved_model.load")
    parser.add_argument("--precision", choices=precision.PRECISIONS, default="float32",
                        help="the network's arithmetic, as asm-export --precision (the sampler stays float32)")
    return parser.parse_args(argv)


def session_runner(path, seeds):
    """serving_default through tf.compat.v1.saved_model.loader in its own graph and session."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta.signature_def["serving_default"]
    fetch, feed = signature.outputs["images"].name, {signature.inputs["seeds"].name: seeds}
    return lambda: session.run(fetch, feed)


def eager_runner(path, seeds):
    serving = tf.saved_model.load(path).signatures["serving_default"]
    return lambda: serving(seeds=tf.constant(seeds))["images"].numpy()


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    shape = (args.image_size, args.image_size, 3)
    tf.keras.utils.set_random_seed(0)
    with precision.dtype_policy(args.precision):
        network = build_network(lambda: NCSNv2(ngf=args.ngf), shape)
    if args.precision != "float32":
        network = precision.Float32Outputs(network)  # the float32 sampler as asm-export --precision builds it
    source = DataSource(name="benchmark", kind="image", example_shape=shape, make_dataset=None,
                        transform=Transform())
    schedule = noise_schedule.NoiseSchedule(sigma_begin=50.0, sigma_end=0.01, num_levels=args.num_levels)
    low, high = noise_schedule.cas_step_size_bounds(schedule.sigmas())
    settings = sampling.SamplerSettings(sampler="cas", n_sigma=1, step_size=float(np.sqrt(low * high)))
    with tempfile.TemporaryDirectory(prefix="asm_benchmark_export_") as directory:
        path = os.path.join(directory, "1")
        start = time.perf_counter()
        export.save(ScoreModel(network), schedule, source, settings, path, max_images=args.batch_size)
        export_seconds = time.perf_counter() - start
        report = measure(args, network, shape, path, np.arange(args.batch_size, dtype=np.int64))
    report.update(export_seconds=round(export_seconds, 1), load_average_before=[round(v, 2) for v in load_before],
                  load_average_after=[round(v, 2) for v in os.getloadavg()])
    print(json.dumps(report))


def measure(args, network, shape, path, seeds):
    """Alternating timed rounds of the bare forward passes and of each loader's serving_default."""
    forward = tf.function(lambda x: network(x, training=False))  # float32 outputs under mixed precision too
    x = tf.random.stateless_uniform([args.batch_size, *shape], seed=[1, 2])

    def bare_passes():
        for _ in range(args.num_levels):
            forward(x).numpy()

    runners = {"session": session_runner(path, seeds)}
    if args.loader == "both":
        runners["eager"] = eager_runner(path, seeds)
    for fn in (bare_passes, *runners.values()):
        fn()  # warm-up: tracing, graph optimisation, oneDNN primitive caches
    times = {name: [] for name in ("forward", *runners)}
    for _ in range(args.rounds):
        for name, fn in (("forward", bare_passes), *runners.items()):
            times[name].append(timed(fn))
    medians = {name: [statistics.median(t[k] for t in values) for k in (0, 1)] for name, values in times.items()}
    report = {
        "model": f"NCSNv2 ngf {args.ngf}", "precision": args.precision, "image_size": args.image_size,
        "batch_size": args.batch_size,
        "levels": args.num_levels, "rounds": args.rounds,
        "forward_pass_seconds": round(medians["forward"][0] / args.num_levels, 4),
        "bare_passes_seconds": round(medians["forward"][0], 3),
    }
    for name in runners:
        report[f"{name}_cas_seconds"] = round(medians[name][0], 3)
        report[f"{name}_images_per_second"] = round(args.batch_size / medians[name][0], 3)
        report[f"{name}_ratio_wall"] = round(medians[name][0] / medians["forward"][0], 4)
        report[f"{name}_ratio_cpu"] = round(medians[name][1] / medians["forward"][1], 4)
    return report


if __name__ == "__main__":
    main()
