"""Strategies and workers: which tf.distribute strategy trains, which worker this process is, and small
agreements between workers (a sum over workers) outside the training step."""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "default", "multi_worker", "tpu")


def tf_config_cluster():
    """The cluster that the TF_CONFIG environment variable describes ({} if it is unset)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        return json.loads(text).get("cluster") or {}
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"TF_CONFIG is not a JSON object with a 'cluster': {text[:200]!r}") from None


def auto_strategy_name():
    """What 'auto' starts: multi_worker if TF_CONFIG names a cluster, mirrored over two or more local GPUs, else
    default: one device needs no replicas, and its training steps are cheaper without MirroredStrategy's."""
    if tf_config_cluster():
        return "multi_worker"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def make_strategy(name, tpu="local"):
    """The tf.distribute strategy called `name`.

    auto: see auto_strategy_name; mirrored: all local devices; default: one device; multi_worker: the workers
    of TF_CONFIG (create it before any other TF work); tpu: the TPU `tpu` (a name or address; 'local' on a TPU VM).
    """
    if name == "auto":
        name = auto_strategy_name()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


@dataclasses.dataclass(frozen=True)
class Workers:
    """This process's place among the training processes: worker `index` of `count`; worker 0 is the chief."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self):
        return self.index == 0


def workers_of(strategy):
    """The Workers of a strategy: one for every strategy but a MultiWorkerMirroredStrategy over a cluster.

    Workers are numbered as MultiWorkerMirroredStrategy numbers its replicas: the chief task (if TF_CONFIG
    has one) first, then the worker tasks in order.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return Workers()
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", []))
    count = chiefs + len(spec.get("worker", []))
    if count <= 1:
        return Workers()
    task_type, task_id = strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id
    if task_type == "chief":
        return Workers(0, count)
    if task_type == "worker":
        return Workers(chiefs + task_id, count)
    raise ValueError(f"TF_CONFIG task type {task_type!r} does not train: give every training process the type "
                     "'chief' or 'worker'")


class WorkerSums:
    """sums(values) -> the elementwise sum over workers of each worker's float64 values (one collective).

    Every worker must call it at the same point; with one worker it returns the values unchanged.
    """

    def __init__(self, strategy, workers):
        self.workers = workers
        if workers.count > 1:
            local_replicas = strategy.num_replicas_in_sync // workers.count

            def replica_sum(values):
                # tf.identity places the values on the replica's device, which the all-reduce needs.
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(values))

            @tf.function
            def sums(values):
                total = strategy.run(replica_sum, args=(values,))
                return strategy.experimental_local_results(total)[0] / local_replicas

            self._sums = sums

    def __call__(self, values):
        values = np.asarray(values, np.float64)
        if self.workers.count == 1:
            return values
        return self._sums(tf.constant(values)).numpy()
