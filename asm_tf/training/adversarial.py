"""Settings of adversarial score matching (docs/algorithm.md#adversarial-step): the discriminator, its loss,
optimiser and schedule."""

import dataclasses
from typing import Callable

import gin
import tensorflow as tf

from asm_tf.training import gan_losses, optimizers

FAKES = ("fresh", "score_step")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Adversarial:
    """D judges real images against the clamped EDS of noisy reals; the score net is trained on
    lambda_dae * DSM + lambda_g * (its GAN loss), with `d_steps` discriminator updates per score update.

    Bind the D optimiser with a gin scope, e.g. `Adversarial.optimizer = @discriminator/adam` and
    `discriminator/adam.beta_1 = -0.5`.

    fakes: what the D steps judge. 'fresh' (the reference's schedule; docs/algorithm.md#update-schedule): before
    the score step, each D step denoises a fresh noise draw of its batch with the current score network.
    'score_step': the score step runs first and the first D step judges the EDS that the score step computed (same
    batch and draw, detached), which saves one forward pass of the score network per step; D then judges fakes of
    the score network as it was before its latest update (one update old). Further D steps (d_steps > 1) stay fresh.
    """

    discriminator: Callable = gin.REQUIRED
    optimizer: Callable = optimizers.adam
    loss: str = "LSGAN"
    d_steps: int = 1
    lambda_dae: float = 1.0
    lambda_g: float = 1.0
    lambda_d: float = 1.0
    clamp_fakes: bool = True
    fakes: str = "fresh"

    def __post_init__(self):
        if self.d_steps < 1:
            raise ValueError(f"Adversarial.d_steps must be at least 1, got {self.d_steps}")
        if self.fakes not in FAKES:
            raise ValueError(f"Adversarial.fakes must be one of {FAKES}, got {self.fakes!r}")
        gan_losses.gan_loss(self.loss)  # validates the name

    @property
    def gan(self):
        return gan_losses.gan_loss(self.loss)

    def clamp(self, denoised, source):
        """Clamps image fakes to the model-space image of [0, 1] (docs/algorithm.md#what-the-discriminator-sees);
        points pass unchanged."""
        if not self.clamp_fakes or source.kind != "image":
            return denoised
        low, high = (float(source.transform.to_model(tf.constant(v))) for v in (0.0, 1.0))
        return tf.clip_by_value(denoised, low, high)
