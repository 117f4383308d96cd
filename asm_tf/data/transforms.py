"""Data transforms between data space ([0, 1] images, or raw points) and model space (SPEC 5)."""

import dataclasses

import gin
import tensorflow as tf


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Transform:
    """Deterministic map to model space and its exact inverse (which clamps images to [0, 1]).

    `rescale` maps [0, 1] to [-1, 1]; `logit` applies logit(lam + (1 - 2 lam) x). `clamp` is off for points.
    """

    rescale: bool = False
    logit: bool = False
    logit_lambda: float = 1e-6
    clamp: bool = True

    def __post_init__(self):
        if self.rescale and self.logit:
            raise ValueError("choose at most one of Transform.rescale and Transform.logit")

    def to_model(self, x):
        if self.rescale:
            return 2.0 * x - 1.0
        if self.logit:
            y = self.logit_lambda + (1.0 - 2.0 * self.logit_lambda) * x
            return tf.math.log(y) - tf.math.log1p(-y)
        return x

    def to_data(self, x):
        if self.rescale:
            x = (x + 1.0) / 2.0
        elif self.logit:
            x = (tf.sigmoid(x) - self.logit_lambda) / (1.0 - 2.0 * self.logit_lambda)
        return tf.clip_by_value(x, 0.0, 1.0) if self.clamp else x


IDENTITY_POINTS = Transform(clamp=False)
