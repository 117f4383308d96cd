"""GAN losses of the adversarial objective, with batch-mean reductions (docs/algorithm.md#gan-losses).

Notation: r = D(real), f = D(fake) are logits of one batch, [B] or [B, 1]; <t> is the mean over the batch.
Every loss is a batch mean of per-example terms, where example i pairs real i with fake i (the fake is the
denoised noisy real i); the relativistic-average losses also use <r> and <f> inside the terms.

Under a distribution strategy the losses are taken over the global batch, as in the reference, whose
DataParallel gathers D's outputs of all GPUs before the loss: pass `global_batch_size` and call inside
`strategy.run`. The inner means <r>, <f> are then all-reduced across replicas (differentiably: the
gradient of an all-reduce is the all-reduce of the gradients), and each replica returns its share
sum_i(term_i) / global_batch_size, so that the shares sum to the global loss and summed gradients equal the
single-device gradient. Without `global_batch_size` the means are over the batch given.

`LSGAN_sat` is the saturating (minimax) form: the score network maximises D's loss on fakes, -<(f+1)^2>.
The reference's `LSGAN_sat` minimises +<(f+1)^2>, which pulls fakes towards D's fake target, i.e. helps D.
`LSGAN01` is the notebook's 0/1-target LSGAN used for the 2-D toy runs.
"""

import dataclasses
from typing import Callable

import gin
import tensorflow as tf


def _bce(logits, label):
    """Per-example sigmoid cross-entropy of logits against a constant label."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)


def _relu(x):
    return tf.nn.relu(x)


@dataclasses.dataclass(frozen=True)
class GANLoss:
    """A discriminator loss and a generator (score-network) loss, as per-example terms.

    `discriminator_terms(r, f, mean)` and `generator_terms(r, f, mean)` return [B] terms whose batch mean
    is the loss; `mean(t)` is the batch mean of t that the relativistic-average losses need.
    `generator_uses_real`: whether the generator loss reads r (the relativistic ones); when it does not, the
    score step runs D on the fakes only.
    """

    name: str
    discriminator_terms: Callable
    generator_terms: Callable
    generator_uses_real: bool = False

    def discriminator_loss(self, real_logits, fake_logits, global_batch_size=None):
        """D's loss: the batch mean, or this replica's share of the global-batch mean (see module doc)."""
        return _reduce(self.discriminator_terms, real_logits, fake_logits, global_batch_size)

    def generator_loss(self, real_logits, fake_logits, global_batch_size=None):
        """The score network's adversarial loss, reduced like `discriminator_loss`."""
        return _reduce(self.generator_terms, real_logits, fake_logits, global_batch_size)


def _flat_logits(logits, role):
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank == 2 and logits.shape[-1] == 1:
        logits = logits[:, 0]
    if logits.shape.rank != 1:
        raise ValueError(f"{role} logits must have shape [B] or [B, 1], got {logits.shape}")
    return tf.cast(logits, tf.float32)


def _global_sum(t):
    """Sum of t over all replicas' examples (inside strategy.run; the identity outside a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        raise RuntimeError("global-batch GAN losses need a replica context: compute them inside strategy.run")
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(t))


def _reduce(terms_fn, real_logits, fake_logits, global_batch_size):
    real, fake = _flat_logits(real_logits, "real"), _flat_logits(fake_logits, "fake")
    if global_batch_size is None:
        return tf.reduce_mean(terms_fn(real, fake, tf.reduce_mean))
    size = tf.cast(global_batch_size, tf.float32)
    terms = terms_fn(real, fake, lambda t: _global_sum(t) / size)
    return tf.reduce_sum(terms) / size


def _losses():
    def least_squares_d(r, f, _):
        return tf.square(r - 1.0) + tf.square(f + 1.0)

    table = [
        GANLoss("GAN", lambda r, f, _: _bce(r, 1.0) + _bce(f, 0.0),
                lambda r, f, _: _bce(f, 1.0)),
        GANLoss("WGAN", lambda r, f, _: f - r,
                lambda r, f, _: -f),
        GANLoss("HingeGAN", lambda r, f, _: _relu(1.0 - r) + _relu(1.0 + f),
                lambda r, f, _: -f),
        GANLoss("RpGAN", lambda r, f, _: 2.0 * _bce(r - f, 1.0),
                lambda r, f, _: 2.0 * _bce(f - r, 1.0), generator_uses_real=True),
        GANLoss("RaGAN", lambda r, f, mean: _bce(r - mean(f), 1.0) + _bce(f - mean(r), 0.0),
                lambda r, f, mean: _bce(r - mean(f), 0.0) + _bce(f - mean(r), 1.0), generator_uses_real=True),
        GANLoss("LSGAN", least_squares_d,
                lambda r, f, _: tf.square(f - 1.0)),
        GANLoss("LSGAN_sat", least_squares_d,
                lambda r, f, _: -tf.square(f + 1.0)),
        GANLoss("RpLSGAN", lambda r, f, _: 2.0 * tf.square(r - f - 1.0),
                lambda r, f, _: 2.0 * tf.square(f - r - 1.0), generator_uses_real=True),
        GANLoss("RaLSGAN",
                lambda r, f, mean: tf.square(r - mean(f) - 1.0) + tf.square(f - mean(r) + 1.0),
                lambda r, f, mean: tf.square(r - mean(f) + 1.0) + tf.square(f - mean(r) - 1.0),
                generator_uses_real=True),
        GANLoss("RaHingeGAN",
                lambda r, f, mean: _relu(1.0 - (r - mean(f))) + _relu(1.0 + (f - mean(r))),
                lambda r, f, mean: _relu(1.0 + (r - mean(f))) + _relu(1.0 - (f - mean(r))),
                generator_uses_real=True),
        GANLoss("LSGAN01", lambda r, f, _: tf.square(r - 1.0) + tf.square(f),
                lambda r, f, _: tf.square(f - 1.0)),
    ]
    return {loss.name: loss for loss in table}


GAN_LOSSES = _losses()


@gin.configurable
def gan_loss(name="LSGAN"):
    """The GANLoss called `name` (one of GAN_LOSSES; the paper's runs use LSGAN)."""
    if name not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(GAN_LOSSES)}")
    return GAN_LOSSES[name]
