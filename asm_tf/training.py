"""The trainer: score networks (and discriminators) in a custom tf.function loop under tf.distribute."""

import os
import time

import gin
import numpy as np
import tensorflow as tf

from asm_tf import losses, optimizers, sampling, summaries
from asm_tf.ema import EMA
from asm_tf.experiment import CHECKPOINT_DIR, Experiment
from asm_tf.score import ScoreModel

STRATEGIES = ("mirrored", "default", "multi_worker")


def make_strategy(name):
    """The tf.distribute strategy called `name`: all local devices, one device, or TF_CONFIG workers."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _all_reduce(grads):
    """Sums per-replica gradients over replicas (a no-op with one replica)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)


def _expecting_reduced_gradients(optimizer):
    """Turns off the Keras optimizer's own gradient all-reduce: the trainer sums the gradients itself,
    once, so that their global norm and finiteness can be checked before they are applied."""
    optimizer._all_reduce_sum_gradients = list
    return optimizer


@gin.configurable(denylist=["workdir", "strategy"])
class Trainer:
    """Denoising score matching, optionally adversarial, with EMA weights, checkpoints and summaries.

    Running the same configuration on the same workdir again resumes from the newest checkpoint
    and continues exactly as an uninterrupted run would.
    """

    def __init__(self, workdir, strategy=None, *, experiment=Experiment, optimizer=optimizers.adam, batch_size=128,
                 num_steps=300_000, steps_per_call=10, checkpoint_every=5000, max_checkpoints=5,
                 log_every=100, sample_every=5000, num_preview=36, seed=1234, sampler_settings=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {replicas} replicas; "
                             f"choose a multiple of {replicas}")
        self.workdir = workdir
        self.experiment = experiment() if callable(experiment) else experiment
        self.data = data = self.experiment.data
        self.schedule = self.experiment.schedule
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.steps_per_call = steps_per_call
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.sample_every = sample_every
        self.num_preview = num_preview
        self.seed = seed
        self.sampler_settings = sampler_settings or sampling.SamplerSettings()
        self.sampler_settings.validate(self.schedule)

        with self.strategy.scope():
            self.network = self.experiment.build_score_network()
            self.ema = EMA(self.experiment.build_score_network(), self.experiment.ema_rate)
            self.ema.initialize(self.network)
            self.optimizer = _expecting_reduced_gradients(optimizer())
            self.optimizer.build(self.network.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.score_model = ScoreModel(self.network)
        self.sigmas = tf.constant(self.schedule.sigmas(), tf.float32)
        self.iterator = iter(data.make_dataset(batch_size, seed))
        # Keras 3 models nest their layers in containers that tf.train.Checkpoint does not traverse, so
        # the checkpoint tracks each network's weight list (in its fixed creation order) instead.
        self.checkpoint = tf.train.Checkpoint(
            network=self.network.weights, ema_network=self.ema.network.weights, optimizer=self.optimizer,
            step=self.step, iterator=self.iterator)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=max_checkpoints)
        self._train_steps = tf.function(self._steps)

    # ---------------------------------------------------------------- one step
    def _example_seeds(self, local_batch):
        """Seeds [local_batch, 2] of this replica's examples: (run seed, global example index)."""
        context = tf.distribute.get_replica_context()
        first = self.step * self.batch_size + tf.cast(context.replica_id_in_sync_group * local_batch, tf.int64)
        index = first + tf.range(local_batch, dtype=tf.int64)
        return tf.stack([tf.fill([local_batch], tf.constant(self.seed, tf.int64)), index], axis=1)

    def _replica_step(self, x):
        local_batch = x.shape[0]
        seeds = self._example_seeds(local_batch)
        sigma, z = losses.draw_perturbation(seeds, x.shape[1:], self.sigmas)
        with tf.GradientTape() as tape:
            result = losses.dsm_loss(self.score_model, x, sigma, z, training=True)
            loss = tf.nn.compute_average_loss(result.loss, global_batch_size=self.batch_size)
        grads = _all_reduce(tape.gradient(loss, self.network.trainable_variables))
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_variables))
        return {"loss": loss, "grad_norm": tf.linalg.global_norm(grads)}

    def _distribute(self, batch):
        replicas = self.strategy.num_replicas_in_sync
        local = self.batch_size // replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: batch[ctx.replica_id_in_sync_group * local:(ctx.replica_id_in_sync_group + 1) * local])

    def _steps(self, num_steps):
        metrics = {"loss": tf.constant(0.0), "grad_norm": tf.constant(0.0)}
        for _ in tf.range(num_steps):
            per_replica = self.strategy.run(self._replica_step, args=(self._distribute(next(self.iterator)),))
            metrics = {"loss": self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica["loss"], axis=None),
                       "grad_norm": self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica["grad_norm"],
                                                         axis=None)}
            self.ema.update(self.network)
            self.step.assign_add(1)
        return metrics

    # ---------------------------------------------------------------- the loop
    def restore(self):
        """Restores the newest checkpoint, if any; returns its step (0 for a new run)."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.step.numpy())

    def preview(self, seeds):
        """EMA samples for the seeds with the run's sampler settings: (final, denoised) in data space."""
        sampler = sampling.make_sampler(ScoreModel(self.ema.network), self.schedule, self.sampler_settings,
                                        self.data)
        return sampler(tf.constant(seeds, tf.int64))

    def train(self, log=print):
        """Trains until `num_steps`, resuming from the newest checkpoint; returns the last metrics."""
        start_step = self.restore()
        if start_step:
            log(f"resumed from step {start_step} ({self.manager.latest_checkpoint})")
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard"))
        metrics, step, tick, tick_step = {}, start_step, time.time(), start_step
        while step < self.num_steps:
            n = min(self.steps_per_call, self.num_steps - step, self._until_event(step))
            metrics = {k: float(v) for k, v in self._train_steps(tf.constant(n)).items()}
            step = int(self.step.numpy())
            if not np.isfinite(metrics["loss"]):
                raise FloatingPointError(f"non-finite loss {metrics['loss']} at step {step}; "
                                         f"the last good checkpoint is {self.manager.latest_checkpoint}")
            if step % self.log_every == 0 or step == self.num_steps:
                rate = (step - tick_step) / max(time.time() - tick, 1e-9)
                tick, tick_step = time.time(), step
                scalars = {"loss": metrics["loss"], "grad_norm": metrics["grad_norm"],
                           "learning_rate": float(tf.convert_to_tensor(self.optimizer.learning_rate)), "steps_per_second": rate}
                summaries.write_scalars(writer, scalars, step)
                log(f"step {step}/{self.num_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
            if self.sample_every and step % self.sample_every == 0:
                final, denoised = self.preview(np.arange(self.num_preview))
                summaries.write_samples(writer, {"samples": final.numpy(), "denoised": denoised.numpy()},
                                        self.data.kind, step)
            if step % self.checkpoint_every == 0 or step == self.num_steps:
                self.manager.save(checkpoint_number=step)
        writer.flush()
        return metrics

    def _until_event(self, step):
        """Steps until the next log, sample or checkpoint step, so that calls end exactly on them."""
        periods = [p for p in (self.log_every, self.sample_every, self.checkpoint_every) if p]
        return min(p - step % p for p in periods)
