"""Settings of adversarial score matching (SPEC 2): the discriminator, its loss, optimiser and schedule."""

import dataclasses
from typing import Callable

import gin
import tensorflow as tf

from asm_tf import gan_losses, optimizers


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Adversarial:
    """D judges real images against the clamped EDS of noisy reals; the score net is trained on
    lambda_dae * DSM + lambda_g * (its GAN loss). `d_steps` discriminator updates precede each score update.

    Bind the D optimiser with a gin scope, e.g. `Adversarial.optimizer = @discriminator/adam` and
    `discriminator/adam.beta_1 = -0.5`.
    """

    discriminator: Callable = gin.REQUIRED
    optimizer: Callable = optimizers.adam
    loss: str = "LSGAN"
    d_steps: int = 1
    lambda_dae: float = 1.0
    lambda_g: float = 1.0
    lambda_d: float = 1.0
    clamp_fakes: bool = True

    def __post_init__(self):
        if self.d_steps < 1:
            raise ValueError(f"Adversarial.d_steps must be at least 1, got {self.d_steps}")
        gan_losses.gan_loss(self.loss)  # validates the name

    @property
    def gan(self):
        return gan_losses.gan_loss(self.loss)

    def clamp(self, denoised, source):
        """Clamps image fakes to the model-space image of [0, 1] (SPEC 2.1); points pass unchanged."""
        if not self.clamp_fakes or source.kind != "image":
            return denoised
        low, high = (float(source.transform.to_model(tf.constant(v))) for v in (0.0, 1.0))
        return tf.clip_by_value(denoised, low, high)
