"""Training-step speed of the Trainer under its precision and XLA options, one JSON line per variant.

    python tools/benchmarks/benchmark_trainer.py --gin_file=gin_configs/digits.gin --variants float32 mixed_bfloat16 xla
    python tools/benchmarks/benchmark_trainer.py --gin_file=gin_configs/cifar10_ncsnv2_adv.gin --synthetic_data \
        --variants float32 dsm --batch_size 8


Each variant is a Trainer of the same configuration (whole training steps: data, noise, forward, backward,
all-reduce, the guarded update and EMA); variants are timed in turns, `--rounds` times `--steps` steps
each after a warm-up call, so that a change in the machine's load hits them alike. Reported per step:
the median and best wall seconds and the median process-CPU seconds (all threads; steadier when other
processes share the cores). Under TF_CONFIG (two or more workers) it also times the agreement between
workers that the trainer makes once per call (`agreement_ms`). The `dsm` variant is the configuration
without its discriminator (plain DSM steps of the same network and batch); `fresh_fakes` and
`score_step_fakes` set `Adversarial.fakes` (what D judges) in an adversarial one. `--synthetic_data` trains on
random images of the configured data's shape and transform, for datasets that are not on disk.
`--plain_loop` adds a baseline row, `plain_loop`, timed in the same turns: the configuration's network, DSM loss
and optimizer in a plain tf.function loop (no strategy, per-example noise keys, guard, EMA or metrics; batches
drawn at random from examples held in memory), and each variant's `vs_plain_loop` (its steps/s over the baseline's).

    python tools/benchmarks/benchmark_trainer.py --gin_file=gin_configs/toy2d_8gaussians.gin --variants float32 --plain_loop
"""

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402

from asm_tf import configuration  # noqa: E402
from asm_tf.data.synthetic import synthetic_source  # noqa: E402
from asm_tf.experiment import Experiment  # noqa: E402
from asm_tf.training import distribution, dsm, optimizers  # noqa: E402
from asm_tf.training.adversarial import Adversarial  # noqa: E402
from asm_tf.training.trainer import Trainer  # noqa: E402

VARIANTS = {"float32": {}, "mixed_bfloat16": {"precision": "mixed_bfloat16"},
            "mixed_float16": {"precision": "mixed_float16"}, "xla": {"jit_compile": True},
            "xla_mixed_bfloat16": {"precision": "mixed_bfloat16", "jit_compile": True}, "dsm": {"adversarial": None},
            "fresh_fakes": {"fakes": "fresh"}, "score_step_fakes": {"fakes": "score_step"}}
SYNTHETIC_EXAMPLES = 2048
PLAIN_LOOP_EXAMPLES = 2048


def trainer_options(variant):
    """The Trainer arguments of a variant; a `fakes` variant is the configured Adversarial with that schedule."""
    options = dict(VARIANTS[variant])
    if "fakes" in options:
        options["adversarial"] = Adversarial(fakes=options.pop("fakes"))
    return options


class PlainLoop:
    """The baseline: a plain tf.function loop of `experiment`'s network, DSM loss and optimizer (uniform levels)."""

    def __init__(self, experiment, batch_size):
        examples = next(iter(experiment.data.make_dataset(PLAIN_LOOP_EXAMPLES, 0)))
        self.batch_size = batch_size
        self.network = experiment.build_score_network()
        self.score_model = experiment.score_model(self.network)
        self.optimizer = optimizers.adam()
        self.optimizer.build(self.network.trainable_variables)
        sigmas = tf.constant(experiment.schedule.sigmas(), tf.float32)

        def steps(count):
            loss = tf.constant(0.0)
            for _ in tf.range(count):
                x = tf.gather(examples, tf.random.uniform([batch_size], 0, PLAIN_LOOP_EXAMPLES, tf.int32))
                sigma = tf.gather(sigmas, tf.random.uniform([batch_size], 0, sigmas.shape[0], tf.int32))
                z = tf.random.normal(tf.shape(x))
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(dsm.dsm_loss(self.score_model, x, sigma, z).loss)
                variables = self.network.trainable_variables
                self.optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        self._train_steps = tf.function(steps)


def timed_call(trainer, steps):
    wall, cpu = time.perf_counter(), time.process_time()
    tf.nest.map_structure(lambda t: t.numpy(), trainer._train_steps(tf.constant(steps)))
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def agreement_ms(trainer, calls=50):
    trainer._worker_sums([0])
    start = time.perf_counter()
    for _ in range(calls):
        trainer._worker_sums([0])
    return 1000 * (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", required=True)
    parser.add_argument("--gin_bindings", action="append", default=[])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--strategy", default="auto", choices=distribution.STRATEGIES)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch_size", type=int, help="global batch (default: the configuration's)")
    parser.add_argument("--synthetic_data", action="store_true",
                        help="random images of the configured data's shape (for data that are not on disk)")
    parser.add_argument("--plain_loop", action="store_true",
                        help="also time a plain tf.function loop of the same network, loss and optimizer")
    args = parser.parse_args()
    configuration.parse(args.gin_file, args.gin_bindings)
    strategy = distribution.make_strategy(args.strategy)
    experiment = Experiment()
    if args.synthetic_data:
        data = synthetic_source(SYNTHETIC_EXAMPLES, experiment.data.transform, experiment.data.example_shape)
        experiment = dataclasses.replace(experiment, data=data)
    options = dict(experiment=experiment, **({"batch_size": args.batch_size} if args.batch_size else {}))
    trainers = {}
    for name in args.variants:
        trainers[name] = Trainer(tempfile.mkdtemp(prefix="asm_benchmark_"), strategy,
                                          **options, **trainer_options(name))
        timed_call(trainers[name], args.steps)  # traces and warms up
    if args.plain_loop:
        trainers["plain_loop"] = PlainLoop(experiment, args.batch_size or trainers[args.variants[0]].batch_size)
        timed_call(trainers["plain_loop"], args.steps)
    timings = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            timings[name].append(timed_call(trainer, args.steps))
    for name, trainer in trainers.items():
        walls, cpus = zip(*timings[name])
        result = dict(variant=name, config=args.gin_file, batch_size=trainer.batch_size,
                      adversarial=bool(getattr(trainer, "adversarial", None)), synthetic_data=args.synthetic_data,
                      replicas=strategy.num_replicas_in_sync, wall_s_per_step=statistics.median(walls),
                      best_wall_s_per_step=min(walls), cpu_s_per_step=statistics.median(cpus))
        if args.plain_loop and name != "plain_loop":  # round by round: both met the same load
            result["vs_plain_loop"] = statistics.median(
                base / own for (own, _), (base, _) in zip(timings[name], timings["plain_loop"]))
        workers = getattr(trainer, "workers", None)  # absent in trainers before multi-worker support
        if workers and workers.count > 1:
            result["agreement_ms"] = agreement_ms(trainer)
        if not workers or workers.is_chief:
            print(json.dumps(result), flush=True)
    gin.clear_config()


if __name__ == "__main__":
    main()
