"""Images per second of an exported model's sampler signatures, loaded with TF Serving's session loader.

    python tools/benchmarks/serving_throughput.py --model=exports/quickstart/1 --batch_size=64 \
        --variant=cas --variant=heun:num_steps=5,spacing=rho --variant=cas:num_steps=20

Each --variant (SAMPLER[:FIELD=VALUE,...], asm_tf.cli.common.parse_sampler_variant, against the run settings
that asm-export noted in assets.extra/asm_export.json) becomes a request to the signature that runs it:
sample_cas, sample_als, sample_cas_levels or sample_ode, with the final denoising step. One warm-up call, then
`--rounds` timed calls; the median wall time gives images/s, the median process CPU time images per CPU-second
(steadier when other processes share the cores). Prints one JSON line per variant and a Markdown table.
"""

import argparse
import json
import os
import statistics
import sys
import time

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from asm_tf import sampling  # noqa: E402
from asm_tf.cli import common  # noqa: E402
from asm_tf.noise_levels import schedule as noise_schedule  # noqa: E402


def request(settings, schedule):
    """(signature name, inputs other than seeds) that run `settings` with the final denoising step."""
    levels = {"num_steps": np.int32(settings.num_steps or schedule.num_levels), "spacing": np.bytes_(settings.spacing),
              "rho": np.float32(settings.rho)}
    step = {"step_size": np.float32(settings.step_size), "denoise": np.bool_(True)}
    if settings.sampler in sampling.ODE_SAMPLERS:
        return "sample_ode", {**levels, "second_order": np.bool_(settings.sampler == "heun"),
                              "churn": np.float32(settings.churn), "eta": np.float32(settings.eta),
                              "denoise": np.bool_(True)}
    if settings.num_steps is None or settings.sampler == "als":
        if settings.num_steps is not None:
            raise common.UserError("the exported ALS runs on the trained levels: drop num_steps")
        return f"sample_{settings.sampler}", {**step, "n_sigma": np.int32(settings.n_sigma)}
    return "sample_cas_levels", {**levels, **step}


def timed_runner(session, meta, name, inputs, seeds):
    signature = meta.signature_def[name]
    feeds = {signature.inputs[key].name: value for key, value in {**inputs, "seeds": seeds}.items()}
    fetch = signature.outputs["images"].name

    def run():
        wall, cpu = time.perf_counter(), time.process_time()
        session.run(fetch, feeds)
        return time.perf_counter() - wall, time.process_time() - cpu

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported version directory EXPORT_DIR/NAME/VERSION")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with open(os.path.join(args.model, "assets.extra", "asm_export.json")) as f:
        info = json.load(f)
    schedule = noise_schedule.NoiseSchedule(**info["schedule"])
    run_settings = sampling.SamplerSettings(**info["serving_settings"])
    seeds = np.arange(args.batch_size, dtype=np.int64)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], args.model)
    rows = []
    for text in args.variant:
        try:
            settings = common.parse_sampler_variant(text, run_settings, schedule)
            name, inputs = request(settings, schedule)
        except common.UserError as error:
            sys.exit(f"error: {error}")
        run = timed_runner(session, meta, name, inputs, seeds)
        run()  # warm-up
        times = [run() for _ in range(args.rounds)]
        wall, cpu = (statistics.median(t[k] for t in times) for k in (0, 1))
        row = {"variant": text, "signature": name, "network_calls": settings.network_calls(schedule),
               "batch_size": args.batch_size, "images_per_second": args.batch_size / wall,
               "images_per_cpu_second": args.batch_size / cpu, "load_average": os.getloadavg()[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| variant | signature | calls | images/s | images per CPU-second |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['signature']} | {row['network_calls']} | {row['images_per_second']:.1f} | "
              f"{row['images_per_cpu_second']:.1f} |")


if __name__ == "__main__":
    main()
