"""The trainer: score networks (and discriminators) in a custom tf.function loop under tf.distribute."""

import os
import time

import gin
import numpy as np
import tensorflow as tf

from asm_tf import losses, noise, optimizers, sampling, summaries
from asm_tf.adversarial import Adversarial  # noqa: F401  (registers it with gin)
from asm_tf.ema import EMA
from asm_tf.experiment import CHECKPOINT_DIR, Experiment, build_network
from asm_tf.score import ScoreModel, per_example

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
                 log_every=100, sample_every=5000, num_preview=36, seed=1234, sampler_settings=None,
                 adversarial=None):
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
        self.adversarial = adversarial

        with self.strategy.scope():
            self.network = self.experiment.build_score_network()
            self.ema = EMA(self.experiment.build_score_network(), self.experiment.ema_rate)
            self.ema.initialize(self.network)
            self.optimizer = _expecting_reduced_gradients(optimizer())
            self.optimizer.build(self.network.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            if adversarial:
                self.discriminator = build_network(adversarial.discriminator, data.example_shape)
                self.d_optimizer = _expecting_reduced_gradients(adversarial.optimizer())
                self.d_optimizer.build(self.discriminator.trainable_variables)
        self.score_model = ScoreModel(self.network)
        self.sigmas = tf.constant(self.schedule.sigmas(), tf.float32)
        self.iterator = iter(data.make_dataset(batch_size, seed))
        # Keras 3 models nest their layers in containers that tf.train.Checkpoint does not traverse, so
        # the checkpoint tracks each network's weight list (in its fixed creation order) instead.
        tracked = dict(network=self.network.weights, ema_network=self.ema.network.weights,
                       optimizer=self.optimizer, step=self.step, iterator=self.iterator)
        if adversarial:
            tracked.update(discriminator=self.discriminator.weights, discriminator_optimizer=self.d_optimizer)
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=max_checkpoints)
        self._train_steps = tf.function(self._steps)
        self._preview_sampler = None

    # ---------------------------------------------------------------- one step
    def _example_seeds(self, local_batch, draw):
        """Keys [local_batch] of this replica's examples for one draw: (run seed, global example index, draw)."""
        context = tf.distribute.get_replica_context()
        first = self.step * self.batch_size + tf.cast(context.replica_id_in_sync_group * local_batch, tf.int64)
        index = first + tf.range(local_batch, dtype=tf.int64)
        pairs = tf.stack([tf.fill([local_batch], tf.constant(self.seed, tf.int64)), index], axis=1)
        return noise.fold(pairs, draw)

    def _perturb(self, x, draw):
        return losses.draw_perturbation(self._example_seeds(x.shape[0], draw), x.shape[1:], self.sigmas)

    def _apply(self, optimizer, loss, tape, variables):
        """Sums the gradients over replicas once, applies them, and returns their global norm."""
        grads = _all_reduce(tape.gradient(loss, variables))
        optimizer.apply_gradients(zip(grads, variables))
        return tf.linalg.global_norm(grads)

    def _score_step(self, x):
        """DSM (plus lambda_G times the adversarial loss through the same draw's EDS) on one replica's batch."""
        sigma, z = self._perturb(x, draw=0)
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            result = losses.dsm_loss(self.score_model, x, sigma, z, training=True)
            dsm = tf.nn.compute_average_loss(result.loss, global_batch_size=self.batch_size)
            metrics = {"loss_dsm": dsm}
            loss = dsm
            if self.adversarial:
                # D is frozen here: its weights get no update and its power iteration does not advance.
                real, fake = self._discriminate(x, result.denoised, training=False)
                adversarial = self.adversarial.gan.generator_loss(real, fake, self.batch_size)
                loss = self.adversarial.lambda_dae * dsm + self.adversarial.lambda_g * adversarial
                metrics.update(loss_g=adversarial, loss=loss)
            else:
                metrics["loss"] = loss
        metrics["grad_norm"] = self._apply(self.optimizer, loss, tape, variables)
        return metrics

    def _discriminate(self, x, denoised, training):
        """D's logits on the real batch and on the clamped denoised fakes, in one forward pass."""
        fake = self.adversarial.clamp(denoised, self.data)
        logits = self.discriminator(tf.concat([x, fake], axis=0), training=training)
        logits = tf.reshape(logits, [-1])
        return logits[:x.shape[0]], logits[x.shape[0]:]

    def _discriminator_step(self, x, d_step):
        """One D update: real images against the EDS of freshly noised reals from the current score net."""
        sigma, z = self._perturb(x, draw=1 + d_step)
        noisy = x + per_example(sigma, x) * z
        denoised = tf.stop_gradient(self.score_model.denoise(noisy, sigma, training=True))
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real, fake = self._discriminate(x, denoised, training=True)
            loss = self.adversarial.lambda_d * self.adversarial.gan.discriminator_loss(real, fake, self.batch_size)
        norm = self._apply(self.d_optimizer, loss, tape, variables)
        share = tf.cast(x.shape[0], tf.float32) / self.batch_size
        return {"loss_d": loss, "d_grad_norm": norm,
                "d_real": tf.reduce_mean(real) * share, "d_fake": tf.reduce_mean(fake) * share}

    def _distribute(self, batch):
        replicas = self.strategy.num_replicas_in_sync
        local = self.batch_size // replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: batch[ctx.replica_id_in_sync_group * local:(ctx.replica_id_in_sync_group + 1) * local])

    def _run(self, fn, *args):
        """Runs fn on every replica and reduces its metrics: norms are replicated, the rest are shares."""
        per_replica = self.strategy.run(fn, args=args)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN if "norm" in k else tf.distribute.ReduceOp.SUM,
                                        v, axis=None) for k, v in per_replica.items()}

    def _steps(self, num_steps):
        """`num_steps` score steps; each adversarial one follows D_steps discriminator steps (SPEC 2.2)."""
        metrics = {name: tf.constant(0.0) for name in self.metric_names}
        for _ in tf.range(num_steps):
            metrics = {}
            x = self._distribute(next(self.iterator))
            if self.adversarial:
                for d_step in range(self.adversarial.d_steps):
                    if d_step:
                        x = self._distribute(next(self.iterator))
                    metrics.update(self._run(self._discriminator_step, x, d_step))
            metrics.update(self._run(self._score_step, x))
            self.ema.update(self.network)
            self.step.assign_add(1)
        return metrics

    @property
    def metric_names(self):
        names = ["loss", "loss_dsm", "grad_norm"]
        return names + (["loss_g", "loss_d", "d_grad_norm", "d_real", "d_fake"] if self.adversarial else [])

    # ---------------------------------------------------------------- the loop
    def restore(self):
        """Restores the newest checkpoint, if any; returns its step (0 for a new run)."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.step.numpy())

    def preview(self, seeds):
        """EMA samples for the seeds with the run's sampler settings: (final, denoised) in data space."""
        if self._preview_sampler is None:
            self._preview_sampler = sampling.make_sampler(ScoreModel(self.ema.network), self.schedule,
                                                          self.sampler_settings, self.data)
        return self._preview_sampler(tf.constant(seeds, tf.int64))

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
            bad = [name for name, value in metrics.items() if not np.isfinite(value)]
            if bad:
                raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}; "
                                         f"the last good checkpoint is {self.manager.latest_checkpoint}")
            if step % self.log_every == 0 or step == self.num_steps:
                rate = (step - tick_step) / max(time.time() - tick, 1e-9)
                tick, tick_step = time.time(), step
                scalars = dict(metrics, learning_rate=float(tf.convert_to_tensor(self.optimizer.learning_rate)),
                               steps_per_second=rate)
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
