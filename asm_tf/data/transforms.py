"""Data transforms between data space ([0, 1] images, or raw points) and model space.

The reference's `data_transform`: optional dequantisation (uniform or Gaussian), then either a rescale to
[-1, 1] or a logit transform. Its inverse undoes the map and clamps images to [0, 1]. The random
horizontal flip is an augmentation and lives with each dataset (`random_flip`), whose default follows
the reference (on for natural images, off for Stacked MNIST and the digits).
"""

import dataclasses

import gin
import tensorflow as tf

from asm_tf import noise

DEQUANTIZATIONS = ("none", "uniform", "gaussian")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Transform:
    """Map to model space and its exact inverse (which clamps images to [0, 1]).

    `dequantization`: "uniform" gives x * 255/256 + U[0, 1)/256, "gaussian" gives x + gaussian_std * N(0, 1)
    (both drawn from per-example stateless seeds, applied to training batches only); "none" leaves x alone.
    `rescale` maps [0, 1] to [-1, 1]; `logit` applies logit(lam + (1 - 2 lam) x). `clamp` is off for points.
    """

    rescale: bool = False
    logit: bool = False
    logit_lambda: float = 1e-6
    clamp: bool = True
    dequantization: str = "none"
    gaussian_std: float = 0.01

    def __post_init__(self):
        if self.rescale and self.logit:
            raise ValueError("choose at most one of Transform.rescale and Transform.logit")
        if self.dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"Transform.dequantization must be one of {DEQUANTIZATIONS}, "
                             f"got {self.dequantization!r}")
        if not 0.0 < self.logit_lambda < 0.5:
            raise ValueError(f"Transform.logit_lambda must lie in (0, 0.5), got {self.logit_lambda}")

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

    def dequantize(self, x, seeds):
        """Dequantised data-space batch x [B, ...]; `seeds` [B, 2] int64, one stateless seed per example."""
        if self.dequantization == "uniform":
            return x * (255.0 / 256.0) + noise.uniform(seeds, x.shape[1:]) / 256.0
        if self.dequantization == "gaussian":
            return x + self.gaussian_std * noise.normal(seeds, x.shape[1:])
        return x

    def training_input(self, x, seeds):
        """A data-space training batch in model space: dequantised, then mapped with `to_model`."""
        return self.to_model(self.dequantize(x, seeds))


def random_flip(images, seeds):
    """Flips each image [B, H, W, C] left-right with probability 1/2, drawn from its seed in `seeds` [B, 2]."""
    flip = noise.uniform(seeds, []) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


IDENTITY_POINTS = Transform(clamp=False)
