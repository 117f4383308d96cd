"""MLPs for 2-D toy data (the reference's notebook): the score network and the discriminator share one shape."""

import gin
import keras
from keras import ops

from asm_tf.models.initializers import torch_default_bias, torch_default_kernel
from asm_tf.models.layers import matmul


class ToyMLP(keras.Model):
    """in -> hidden x depth (LeakyReLU 0.01) -> out; `out_dim=None` gives the input's width (a score network).

    `conditional=True` appends sigma to the input (the notebook's `cond` option): in two dimensions the
    noise level cannot be read off a point, so one unconditional network serves several levels poorly.
    """

    def __init__(self, hidden=512, depth=3, out_dim=None, conditional=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.depth, self.out_dim, self.conditional = hidden, depth, out_dim, conditional
        self.takes_sigma = conditional

    def build(self, input_shape):
        width = input_shape[-1]
        widths = [width + int(self.conditional)] + [self.hidden] * self.depth + [self.out_dim or width]
        self.dense_layers = [
            keras.layers.Dense(n_out, kernel_initializer=torch_default_kernel(),
                               bias_initializer=torch_default_bias(n_in))
            for n_in, n_out in zip(widths[:-1], widths[1:])]
        for layer, n_in in zip(self.dense_layers, widths[:-1]):
            layer.build((None, n_in))
        super().build(input_shape)

    def call(self, x, sigma=None, training=False):
        if self.conditional:
            sigma = ops.zeros_like(x[:, :1]) if sigma is None else ops.reshape(ops.cast(sigma, x.dtype), (-1, 1))
            x = ops.concatenate([x, sigma], axis=-1)
        for index, layer in enumerate(self.dense_layers):  # Dense's weights, multiplied on Eigen's kernel
            x = matmul(x, ops.cast(layer.kernel, x.dtype)) + ops.cast(layer.bias, x.dtype)
            if index < len(self.dense_layers) - 1:
                x = ops.leaky_relu(x, negative_slope=0.01)
        return x


gin.external_configurable(ToyMLP)
