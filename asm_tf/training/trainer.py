"""The trainer: score networks (and discriminators) in a custom tf.function loop under tf.distribute.

Faults it survives:
- Preemption: SIGTERM or SIGINT saves a checkpoint at the step every worker agrees on and raises
  TrainingInterrupted; running again resumes.
- Crashes, unreadable checkpoints, full or read-only storage: see asm_tf/training/checkpointing.py (the previous
  checkpoint always stays whole; an unreadable one is reported and the one before it restored), and the
  TensorBoard writer raises storage.StorageError naming its path.
- Non-finite values: every update is applied only if its loss and its summed gradients are finite; a
  non-finite one stops training (FloatingPointError naming the step and the quantities) or, with
  nonfinite='skip', is skipped and counted.

Under MultiWorkerMirroredStrategy the chief alone writes summaries, previews and the checkpoints that count.
"""

import dataclasses
import time
from typing import Any, Callable, NamedTuple, Optional

import gin
import keras
import numpy as np
import tensorflow as tf

from asm_tf import noise, progress, sampling, storage, summaries
from asm_tf import workdir as workdir_lib
from asm_tf.experiment import Experiment, build_network, parameter_count
from asm_tf.score import per_example
from asm_tf.training import dsm, optimizers
from asm_tf.training import precision as precision_lib
from asm_tf.training.checkpointing import TrainingCheckpoints
from asm_tf.training.distribution import WorkerSums, workers_of
from asm_tf.training.ema import EMA
from asm_tf.training.preemption import StopSignals, TrainingInterrupted
from asm_tf.training.previews import Previews

NONFINITE_POLICIES = ("stop", "skip")


def _all_reduce(values):
    """Sums per-replica values (a nest) over all replicas (a no-op with one replica)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def _expecting_reduced_gradients(optimizer):
    """Turns off the Keras optimizer's own gradient all-reduce: the trainer sums the gradients itself,
    once, so that their global norm and finiteness can be checked before they are applied."""
    optimizer._all_reduce_sum_gradients = list
    return optimizer


class _UpdateResult(NamedTuple):
    """One guarded update: its metrics, whether it was non-finite, and the fakes its gradients' function
    returned (the score step's EDS, per replica, for the discriminator; None for D's own update)."""

    metrics: dict
    nonfinite: tf.Tensor
    fakes: Any


# Noise draws of a step (asm_tf.noise keys them per example): the score step's, then one per discriminator step.
SCORE_DRAW = 0
FIRST_DISCRIMINATOR_DRAW = 1


@dataclasses.dataclass
class _TrainedNetwork:
    """A trained network's optimizer and the bookkeeping of its guarded updates."""

    prefix: str  # of its metric names: "" for the score network, "d_" for the discriminator
    variables: list
    optimizer: object
    gradients: Callable  # per replica: (x, example seeds, fakes or None) -> (metric shares, gradients, fakes)
    loss_name: str
    skipped: tf.Variable
    loss_scale: Optional[precision_lib.DynamicLossScale]
    after_update: Callable


@gin.configurable(denylist=["workdir", "strategy"])
class Trainer:
    """Denoising score matching, optionally adversarial, with EMA weights, checkpoints and summaries.

    Running the same configuration on the same workdir again resumes from the newest checkpoint
    and continues exactly as an uninterrupted run would. `seed` fixes the initial weights (Keras' global
    seed is set to it before the networks are built), the data order and every noise draw, so two runs of
    one configuration train the same weights.

    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (with dynamic loss scaling) for the trained
    networks. jit_compile: XLA on each replica's forward and backward pass. nonfinite: 'stop' or 'skip'
    an update whose loss or gradients are not finite (never applied either way; with 'stop', training
    ends after the step that holds it, whose other, finite, updates do apply).
    """

    def __init__(self, workdir, strategy=None, *, experiment=Experiment, optimizer=optimizers.adam, batch_size=128,
                 num_steps=300_000, steps_per_call=10, checkpoint_every=5000, max_checkpoints=5,
                 log_every=100, sample_every=5000, num_preview=36, seed=1234, sampler_settings=None,
                 adversarial=None, precision="float32", jit_compile=False, nonfinite="stop"):
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.precision = precision_lib.check_precision(precision)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.workers = workers_of(self.strategy)
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
        self.seed = seed
        self.sampler_settings = sampler_settings or sampling.SamplerSettings()
        self.sampler_settings.validate(self.schedule)
        self.adversarial = adversarial
        self.jit_compile = jit_compile
        self.nonfinite = nonfinite

        scaled = self.precision == "mixed_float16"
        keras.utils.set_random_seed(seed)
        with self.strategy.scope():
            with precision_lib.dtype_policy(self.precision):
                self.network = self.experiment.build_score_network()
            self.ema = EMA(self.experiment.build_score_network(), self.experiment.ema_rate)  # float32
            self.ema.initialize(self.network)
            self.optimizer = _expecting_reduced_gradients(optimizer())
            self.optimizer.build(self.network.trainable_variables)
            self.initial_learning_rate = float(tf.convert_to_tensor(self.optimizer.learning_rate))  # at step 0
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.score_update = self._trained("", self.network, self.optimizer, self._score_gradients, "loss",
                                              scaled, after_update=lambda: self.ema.update(self.network))
            if adversarial:
                with precision_lib.dtype_policy(self.precision):
                    self.discriminator = build_network(adversarial.discriminator, data.example_shape)
                self.d_optimizer = _expecting_reduced_gradients(adversarial.optimizer())
                self.d_optimizer.build(self.discriminator.trainable_variables)
                self.d_update = self._trained("d_", self.discriminator, self.d_optimizer,
                                              self._discriminator_gradients, "loss_d", scaled)
        self.score_model = self.experiment.score_model(precision_lib.Float32Outputs(self.network))
        self.sigmas = tf.constant(self.schedule.sigmas(), tf.float32)
        self.level_probabilities = self.schedule.level_probabilities()
        self.level_weighting = dsm.level_weighting(self.schedule.sigmas(), self.experiment.data_std,
                                                      self.level_probabilities)
        if self.workers.count > 1:
            dataset = data.make_dataset(batch_size // self.workers.count, seed,
                                        shard=(self.workers.index, self.workers.count))
        else:
            dataset = data.make_dataset(batch_size, seed)
        self.iterator = iter(dataset)
        self._worker_sums = WorkerSums(self.strategy, self.workers)
        self._make_checkpoints(max_checkpoints)
        self._train_steps = tf.function(self._steps)
        self.previews = Previews(ema_model=self.experiment.score_model(self.ema.network),
                                 score_model=self.score_model, schedule=self.schedule,
                                 sampler_settings=self.sampler_settings, data=data, count=num_preview, seed=seed)

    def _trained(self, prefix, network, optimizer, gradients, loss_name, scaled, after_update=lambda: None):
        return _TrainedNetwork(prefix=prefix, variables=network.trainable_variables, optimizer=optimizer,
                        gradients=tf.function(gradients, jit_compile=True) if self.jit_compile else gradients,
                        loss_name=loss_name,
                        skipped=tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{prefix}skipped_updates"),
                        loss_scale=precision_lib.DynamicLossScale() if scaled else None, after_update=after_update)

    def _make_checkpoints(self, max_checkpoints):
        # Keras 3 models nest their layers in containers that tf.train.Checkpoint does not traverse, so
        # the checkpoint tracks each network's weight list (in its fixed creation order) instead.
        tracked = dict(network=self.network.weights, ema_network=self.ema.network.weights,
                       optimizer=self.optimizer, step=self.step, skipped_updates=self.score_update.skipped)
        if self.score_update.loss_scale:
            tracked.update(loss_scale=self.score_update.loss_scale)
        if self.adversarial:
            tracked.update(discriminator=self.discriminator.weights, discriminator_optimizer=self.d_optimizer,
                           d_skipped_updates=self.d_update.skipped)
            if self.d_update.loss_scale:
                tracked.update(d_loss_scale=self.d_update.loss_scale)
        self.checkpoints = TrainingCheckpoints(tracked, self.iterator, workdir_lib.checkpoint_directory(self.workdir),
                                               self.workers, self._worker_sums, max_checkpoints)

    # ---------------------------------------------------------------- one step
    def _example_seeds(self, local_batch, draw):
        """Keys [local_batch] of this replica's examples for one draw: (run seed, global example index, draw)."""
        context = tf.distribute.get_replica_context()
        first = self.step * self.batch_size + tf.cast(context.replica_id_in_sync_group * local_batch, tf.int64)
        index = first + tf.range(local_batch, dtype=tf.int64)
        pairs = tf.stack([tf.fill([local_batch], tf.constant(self.seed, tf.int64)), index], axis=1)
        return noise.fold(pairs, draw)

    @staticmethod
    def _scaled(loss, loss_scale):
        return loss * loss_scale.scale if loss_scale else loss

    def _score_gradients(self, x, seeds, fakes=None):
        """DSM (plus lambda_G times the adversarial loss through the same draw's EDS) on one replica's batch;
        the EDS, detached, is returned as fakes for D (`fakes` is not used)."""
        sigma, z = dsm.draw_perturbation(seeds, x.shape[1:], self.sigmas, self.level_probabilities)
        with tf.GradientTape() as tape:
            result = dsm.dsm_loss(self.score_model, x, sigma, z, training=True)
            weighted = result.loss * self.level_weighting(sigma) if self.level_weighting else result.loss
            loss_dsm = tf.nn.compute_average_loss(weighted, global_batch_size=self.batch_size)
            metrics = {"loss_dsm": loss_dsm}
            loss = loss_dsm
            if self.adversarial:
                # D is frozen here: its weights get no update and its power iteration does not advance.
                gan = self.adversarial.gan
                if gan.generator_uses_real:
                    real, fake = self._discriminate(x, result.denoised, training=False)
                else:  # D(real) would not change the loss: judge the fakes alone
                    fake = real = self._logits(self.adversarial.clamp(result.denoised, self.data), training=False)
                adversarial = gan.generator_loss(real, fake, self.batch_size)
                loss = self.adversarial.lambda_dae * loss_dsm + self.adversarial.lambda_g * adversarial
                metrics["loss_g"] = adversarial
            metrics["loss"] = loss
            scaled = self._scaled(loss, self.score_update.loss_scale)
        return metrics, tape.gradient(scaled, self.score_update.variables), tf.stop_gradient(result.denoised)

    def _discriminate(self, x, denoised, training):
        """D's float32 logits on the real batch and on the clamped denoised fakes, in one forward pass."""
        logits = self._logits(tf.concat([x, self.adversarial.clamp(denoised, self.data)], axis=0), training)
        return logits[:x.shape[0]], logits[x.shape[0]:]

    def _logits(self, images, training):
        return tf.cast(tf.reshape(self.discriminator(images, training=training), [-1]), tf.float32)

    def _discriminator_gradients(self, x, seeds, fakes=None):
        """One D loss: real images against `fakes` (the score step's EDS) or, when None, the EDS of freshly
        noised reals from the current score net."""
        if fakes is None:
            sigma, z = dsm.draw_perturbation(seeds, x.shape[1:], self.sigmas, self.level_probabilities)
            noisy = x + per_example(sigma, x) * z
            fakes = tf.stop_gradient(self.score_model.denoise(noisy, sigma, training=True))
        with tf.GradientTape() as tape:
            real, fake = self._discriminate(x, fakes, training=True)
            loss = self.adversarial.lambda_d * self.adversarial.gan.discriminator_loss(real, fake, self.batch_size)
            scaled = self._scaled(loss, self.d_update.loss_scale)
        share = tf.cast(x.shape[0], tf.float32) / self.batch_size
        metrics = {"loss_d": loss, "d_real": tf.reduce_mean(real) * share, "d_fake": tf.reduce_mean(fake) * share}
        return metrics, tape.gradient(scaled, self.d_update.variables), None

    def _summed_gradients(self, trained, x, fakes, draw):
        """Per replica: the gradients and metrics summed over replicas, whether loss and gradients are finite,
        and the fakes that the gradients' function returns."""
        metrics, grads, fakes = trained.gradients(x, self._example_seeds(x.shape[0], draw), fakes)
        metrics, grads = _all_reduce((metrics, grads))
        if trained.loss_scale:
            grads = [g / trained.loss_scale.scale for g in grads]
        norm = metrics[f"{trained.prefix}grad_norm"] = tf.linalg.global_norm(grads)
        return grads, metrics, tf.math.is_finite(metrics[trained.loss_name]), tf.math.is_finite(norm), fakes

    def _update(self, trained, x, draw, fakes=None):
        """One guarded update (an overflow under loss scaling is not non-finite: it only lowers the scale).

        The decision is taken in cross-replica context, on values that every replica and worker share,
        because a merge_call (which applying gradients makes) is not allowed inside a tf.cond in replica context.
        """
        grads, metrics, loss_ok, grads_ok, fakes = self.strategy.run(
            lambda batch, given: self._summed_gradients(trained, batch, given, draw), args=(x, fakes))
        first = lambda value: self.strategy.experimental_local_results(value)[0]
        metrics = {name: first(value) for name, value in metrics.items()}
        loss_ok, grads_ok = first(loss_ok), first(grads_ok)

        def apply():
            self.strategy.run(lambda g: trained.optimizer.apply(g, trained.variables), args=(grads,))
            if trained.loss_scale:
                trained.loss_scale.after_finite()
            trained.after_update()

        def skip():
            trained.skipped.assign_add(1)
            if trained.loss_scale:
                trained.loss_scale.after_nonfinite()

        tf.cond(tf.logical_and(loss_ok, grads_ok), apply, skip)
        nonfinite = tf.logical_not(loss_ok if trained.loss_scale else tf.logical_and(loss_ok, grads_ok))
        return _UpdateResult(metrics, nonfinite, fakes)

    def _distribute(self, batch):
        """Splits this worker's batch over its local replicas (replica ids are global)."""
        local = self.batch_size // self.strategy.num_replicas_in_sync
        first = self.workers.index * (self.strategy.num_replicas_in_sync // self.workers.count)
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: batch[(ctx.replica_id_in_sync_group - first) * local:
                              (ctx.replica_id_in_sync_group - first + 1) * local])

    def _one_step(self):
        """One score step and, when adversarial, D_steps discriminator steps: before it on fresh fakes
        (docs/algorithm.md#update-schedule), or after it with Adversarial.fakes = 'score_step', the first on the
        score step's own EDS."""
        x = self._distribute(next(self.iterator))
        after = bool(self.adversarial) and self.adversarial.fakes == "score_step"
        updates, fakes = [], None
        if after:
            updates.append(self._update(self.score_update, x, draw=SCORE_DRAW))
            fakes = updates[-1].fakes
        for d_step in range(self.adversarial.d_steps if self.adversarial else 0):
            if d_step:
                x, fakes = self._distribute(next(self.iterator)), None
            updates.append(self._update(self.d_update, x, draw=FIRST_DISCRIMINATOR_DRAW + d_step, fakes=fakes))
        if not after:
            updates.append(self._update(self.score_update, x, draw=SCORE_DRAW))
        metrics = {name: value for update in updates for name, value in update.metrics.items()}
        return metrics, tf.reduce_any([update.nonfinite for update in updates])

    def _steps(self, num_steps):
        """Up to `num_steps` steps; returns the last step's metrics and whether a non-finite step stopped them."""
        metrics = {name: tf.constant(0.0) for name in self.metric_names}
        stopped = tf.constant(False)
        for _ in tf.range(num_steps):
            metrics, nonfinite = self._one_step()
            stopped = tf.logical_and(nonfinite, self.nonfinite == "stop")
            if stopped:
                break
            self.step.assign_add(1)
        return metrics, stopped

    @property
    def metric_names(self):
        names = ["loss", "loss_dsm", "grad_norm"]
        return names + (["loss_g", "loss_d", "d_grad_norm", "d_real", "d_fake"] if self.adversarial else [])

    # ---------------------------------------------------------------- the loop
    def train(self, log=print):
        """Trains until `num_steps`, resuming from the newest readable checkpoint; returns the last metrics.

        Raises TrainingInterrupted after saving a checkpoint if SIGTERM or SIGINT arrives (on any worker),
        and FloatingPointError at a non-finite update when nonfinite='stop'. Only the chief logs progress.
        """
        start_step = self.checkpoints.restore(log)
        if start_step:
            log(f"resumed from step {start_step} ({self.checkpoints.path(start_step)})")
        chief = self.workers.is_chief
        writer = self._summary_writer() if chief else tf.summary.create_noop_writer()
        metrics, step, tick, tick_step = {}, start_step, time.time(), start_step
        bar = progress.bar(self.num_steps, "training", "step", initial=start_step, show=chief)

        def say(line):
            if chief:
                with progress.printing():
                    log(line)

        with StopSignals() as signals, bar:
            while step < self.num_steps:
                if self._worker_sums([signals.received is not None])[0]:
                    self._interrupt(signals.received or "a signal on another worker", step)
                n = min(self.steps_per_call, self.num_steps - step, self._until_event(step))
                values, stopped = self._train_steps(tf.constant(n))
                metrics = {k: float(v) for k, v in values.items()}
                if chief and step == start_step:
                    self._record_configuration(writer, start_step)
                bar.update(int(self.step.numpy()) - step)
                step = int(self.step.numpy())
                if bool(stopped):
                    raise FloatingPointError(self._nonfinite_message(metrics, step + 1))
                if step % self.log_every == 0 or step == self.num_steps:
                    rate = (step - tick_step) / max(time.time() - tick, 1e-9)
                    tick, tick_step = time.time(), step
                    scalars = dict(metrics, learning_rate=float(tf.convert_to_tensor(self.optimizer.learning_rate)),
                                   steps_per_second=rate, **self._fault_scalars())
                    summaries.write_scalars(writer, scalars, step)
                    say(f"step {step}/{self.num_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
                    if metrics.get("d_grad_norm") == 0.0:
                        say(f"warning: the discriminator's gradients are exactly zero at step {step}: it has "
                            "died (every unit off) and training goes on as plain DSM; restart from an earlier "
                            "checkpoint with a lower discriminator learning rate")
                if chief and self.sample_every and step % self.sample_every == 0:
                    self.previews.write(writer, step)
                if step % self.checkpoint_every == 0 or step == self.num_steps:
                    self.checkpoints.save(step)
        writer.flush()
        self._worker_sums([0])  # no worker leaves (and stops serving collectives) before all have saved
        return metrics

    def hyperparameters(self):
        """The run's main settings (names and numbers), for TensorBoard's HParams tab."""
        schedule, settings = self.schedule, self.sampler_settings
        values = {"data": self.data.name, "score_network": type(self.network).__name__,
                  "parameters": parameter_count(self.network), "batch_size": self.batch_size,
                  "num_steps": self.num_steps, "learning_rate": self.initial_learning_rate,
                  "ema_rate": self.experiment.ema_rate,
                  "num_levels": schedule.num_levels, "sigma_begin": schedule.sigma_begin,
                  "sigma_end": schedule.sigma_end, "sampler": settings.sampler, "n_sigma": settings.n_sigma,
                  "step_size": settings.step_size, "precision": self.precision, "adversarial": bool(self.adversarial)}
        if self.adversarial:
            values.update(discriminator=type(self.discriminator).__name__, gan_loss=self.adversarial.loss,
                          lambda_g=self.adversarial.lambda_g, d_steps=self.adversarial.d_steps)
        return values

    def _record_configuration(self, writer, step):
        """After the first call of training: gin's operative configuration (every value in effect, defaults
        included) to WORKDIR/operative_config.gin and to TensorBoard, with the hyperparameters."""
        text = gin.operative_config_str()
        path = workdir_lib.operative_config_path(self.workdir)
        with storage.writing(path, "the operative configuration"):
            storage.write_file(path, text)
        summaries.write_configuration(writer, text, self.hyperparameters(), step)

    def _summary_writer(self):
        directory = workdir_lib.tensorboard_directory(self.workdir)
        with storage.writing(directory, "TensorBoard events to"):
            return tf.summary.create_file_writer(directory)

    def _interrupt(self, reason, step):
        if self.checkpoints.saved_step != step:
            self.checkpoints.save(step)
        self._worker_sums([0])
        raise TrainingInterrupted(reason, step, self.checkpoints.path(step))

    def _fault_scalars(self):
        """Skipped-update counts (when updates can be skipped) and loss scales (under mixed_float16)."""
        scalars = {}
        for trained in [self.score_update] + ([self.d_update] if self.adversarial else []):
            if self.nonfinite == "skip" or trained.loss_scale:
                scalars[f"{trained.prefix}skipped_updates"] = float(trained.skipped.numpy())
            if trained.loss_scale:
                scalars[f"{trained.prefix}loss_scale"] = float(trained.loss_scale.scale.numpy())
        return scalars

    def _nonfinite_message(self, metrics, step):
        names = [name for name, value in metrics.items() if not np.isfinite(value)] or ["gradients"]
        last = self.checkpoints.latest if self.workers.is_chief else "the chief's newest checkpoint"
        return (f"non-finite {', '.join(names)} in step {step}: training stopped without applying it; "
                f"the last good checkpoint is {last} (Trainer.nonfinite = 'skip' skips such updates instead)")

    def _until_event(self, step):
        """Steps until the next log, sample or checkpoint step, so that calls end exactly on them."""
        periods = [p for p in (self.log_every, self.sample_every, self.checkpoint_every) if p]
        return min(p - step % p for p in periods)
