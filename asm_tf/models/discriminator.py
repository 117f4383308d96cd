"""Discriminators: BigGAN's spectrally normalised ResNet discriminator and the 2-D toy MLP.

Spectral normalisation follows BigGAN (the reference's `layers_biggan.SN`) rather than Keras's
`keras.layers.SpectralNormalization`, which differs in ways that change training:
  * Keras overwrites the trainable kernel with W / sigma on every training call (a projection), so no
    gradient flows through sigma and the optimiser's moments refer to the projected weights. BigGAN keeps
    the raw W as the parameter and uses W / sigma(W) in the forward pass, with the gradient through
    sigma = v^T W u (u and v held constant), exactly as here.
  * Keras calls with training=False use the stored kernel, which after an optimiser step is no longer
    normalised; BigGAN (and this module) always divide by a fresh one-iteration estimate and only store u
    when training.
  * Keras calls with training=True in the score-network step would also rewrite D's "frozen" weights.
  * Small ones: Keras normalises with max(norm, 1e-7) and draws u from a truncated N(0, 0.02^2);
    BigGAN uses max(norm, 1e-12) and u ~ N(0, 1).
Each layer keeps one singular vector u (shape [1, out]) as a non-trainable weight (a buffer in PyTorch);
one power iteration runs per forward pass, and u is stored only when training=True.
"""

import gin
import keras
from keras import ops

from asm_tf.models.initializers import torch_default_bias
from asm_tf.models.layers import conv2d
from asm_tf.models.mlp import ToyMLP

SN_EPS = 1e-12

# Per reference resolution: channel multipliers of ch for each DBlock, and which blocks halve the size.
CHANNEL_PLANS = {
    32: ((4, 4, 4, 4), (True, True, False, False)),
    64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True, False)),
    256: ((1, 2, 4, 8, 8, 16, 16), (True, True, True, True, True, True, False)),
}


def channel_plan(resolution):
    """(channel multipliers, downsample flags) for square inputs of side `resolution`.

    The reference defines 28 and 32 (one plan), 64, 128 and 256; smaller sides (test images) use the 32 plan.
    """
    if resolution <= 32:
        return CHANNEL_PLANS[32]
    if resolution in CHANNEL_PLANS:
        return CHANNEL_PLANS[resolution]
    raise ValueError(f"BigGANDiscriminator supports image sides up to 32 and 64, 128, 256; got {resolution}. "
                     "Resize the data or add a channel plan to CHANNEL_PLANS.")


def _l2_normalize(x, eps):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


def power_iteration(matrix, u, eps=SN_EPS):
    """One power-iteration step on `matrix` [fan_in, out] from u [1, out].

    Returns (sigma, new_u): sigma = v matrix new_u^T estimates the largest singular value; u and v are
    constants for differentiation, so the gradient reaches `matrix` only through the final product.
    """
    v = ops.stop_gradient(_l2_normalize(ops.matmul(u, ops.transpose(matrix)), eps))
    new_u = ops.stop_gradient(_l2_normalize(ops.matmul(v, matrix), eps))
    sigma = ops.sum(ops.matmul(v, matrix) * new_u)
    return sigma, new_u


class _SpectralNormLayer(keras.layers.Layer):
    """Base of BigGAN's spectrally normalised layers (not NCSNv2's PyTorch-style
    `layers.Conv(spectral_norm=True)`): a kernel whose last axis is the output, a bias, and the singular vector u."""

    def __init__(self, units, use_bias=True, eps=SN_EPS, **kwargs):
        super().__init__(**kwargs)
        self.units, self.use_bias, self.eps = units, use_bias, eps

    def _add_weights(self, kernel_shape):
        fan_in = 1
        for size in kernel_shape[:-1]:
            fan_in *= size
        self.kernel = self.add_weight(shape=kernel_shape, initializer=keras.initializers.GlorotUniform(),
                                      name="kernel")
        self.bias = (self.add_weight(shape=(self.units,), initializer=torch_default_bias(fan_in), name="bias")
                     if self.use_bias else None)
        # Identical on every replica (it depends on the weights only), so the first replica's value is kept.
        self.singular_vector = self.add_weight(
            shape=(1, self.units), initializer=keras.initializers.RandomNormal(0.0, 1.0), trainable=False,
            aggregation="only_first_replica", name="singular_vector")

    def normalized_kernel(self, training):
        """W / sigma(W); stores the updated u when training."""
        sigma, new_u = power_iteration(ops.reshape(self.kernel, (-1, self.units)), self.singular_vector, self.eps)
        if training:
            self.singular_vector.assign(new_u)
        return self.kernel / sigma

    def _add_bias(self, y):
        return y if self.bias is None else y + self.bias


class SNConv2D(_SpectralNormLayer):
    """Spectrally normalised 2-D convolution, stride 1, 'same' padding, NHWC."""

    def __init__(self, filters, kernel_size, use_bias=True, eps=SN_EPS, **kwargs):
        super().__init__(filters, use_bias=use_bias, eps=eps, **kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self._add_weights((self.kernel_size, self.kernel_size, input_shape[-1], self.units))

    def call(self, x, training=False):
        return self._add_bias(conv2d(x, self.normalized_kernel(training)))


class SNDense(_SpectralNormLayer):
    """Spectrally normalised fully connected layer."""

    def build(self, input_shape):
        self._add_weights((input_shape[-1], self.units))

    def call(self, x, training=False):
        return self._add_bias(ops.matmul(x, self.normalized_kernel(training)))


def _avg_pool2(x):
    return ops.average_pool(x, pool_size=2, strides=2, padding="valid")


class BigGANSelfAttention(keras.layers.Layer):
    """BigGAN's attention (not the UNet's, `layers.UNetSelfAttention`), SAGAN's non-local block: theta, phi
    (C/8), g (C/2), phi and g max-pooled by 2; x + gamma * o."""

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels < 8 or channels % 8:
            raise ValueError(f"BigGANSelfAttention needs a channel count divisible by 8, got {channels}")
        self.theta = SNConv2D(channels // 8, 1, use_bias=False, name="theta")
        self.phi = SNConv2D(channels // 8, 1, use_bias=False, name="phi")
        self.g = SNConv2D(channels // 2, 1, use_bias=False, name="g")
        self.o = SNConv2D(channels, 1, use_bias=False, name="o")
        for layer in (self.theta, self.phi, self.g):
            layer.build(input_shape)
        self.o.build((*input_shape[:-1], channels // 2))
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def call(self, x, training=False):
        batch, height, width, channels = ops.shape(x)
        theta = ops.reshape(self.theta(x, training=training), (batch, height * width, -1))
        phi = ops.reshape(ops.max_pool(self.phi(x, training=training), 2, 2), (batch, -1, channels // 8))
        g = ops.reshape(ops.max_pool(self.g(x, training=training), 2, 2), (batch, -1, channels // 2))
        attention = ops.softmax(ops.matmul(theta, ops.transpose(phi, (0, 2, 1))), axis=-1)
        attended = ops.reshape(ops.matmul(attention, g), (batch, height, width, channels // 2))
        return x + self.gamma * self.o(attended, training=training)


class DBlock(keras.layers.Layer):
    """BigGAN discriminator residual block.

    h = [ReLU unless first] -> SNConv3x3 -> ReLU -> SNConv3x3 -> [AvgPool2]; the shortcut is a 1x1 SNConv
    when the channels change or the block downsamples (pool then conv in the first block, conv then pool later).
    """

    def __init__(self, out_channels, downsample, preactivation, wide=True, **kwargs):
        super().__init__(**kwargs)
        self.out_channels, self.downsample = out_channels, downsample
        self.preactivation, self.wide = preactivation, wide

    def build(self, input_shape):
        in_channels = input_shape[-1]
        hidden = self.out_channels if self.wide else in_channels
        self.conv1 = SNConv2D(hidden, 3, name="conv1")
        self.conv2 = SNConv2D(self.out_channels, 3, name="conv2")
        self.conv1.build(input_shape)
        self.conv2.build((*input_shape[:-1], hidden))
        self.shortcut_conv = None
        if in_channels != self.out_channels or self.downsample:
            self.shortcut_conv = SNConv2D(self.out_channels, 1, name="shortcut")
            self.shortcut_conv.build(input_shape)

    def _shortcut(self, x, training):
        if self.shortcut_conv is None:  # same channels, same size
            return x
        if self.preactivation:
            x = self.shortcut_conv(x, training=training)
            return _avg_pool2(x) if self.downsample else x
        x = _avg_pool2(x) if self.downsample else x
        return self.shortcut_conv(x, training=training)

    def call(self, x, training=False):
        h = ops.relu(x) if self.preactivation else x
        h = self.conv2(ops.relu(self.conv1(h, training=training)), training=training)
        if self.downsample:
            h = _avg_pool2(h)
        return h + self._shortcut(x, training)


class BigGANDiscriminator(keras.Model):
    """The reference's BigGAN discriminator with n_classes = 1 (no projection): NHWC images -> logits [B].

    The image side and channel count come from the input shape in build(). `attention_resolutions` lists
    the feature-map sides after which a self-attention block follows (the reference's attention string '64').
    Parameter counts (3 channels, ch=64): 4,204,801 at 28 and 32 px, 19,542,721 at 64, 38,424,258 at 128,
    43,421,890 at 256 (trainable weights; the singular vectors are non-trainable buffers).
    Call with training=True to advance the power iteration (the reference keeps D in train mode throughout).
    """

    def __init__(self, ch=64, attention_resolutions=(64,), wide=True, **kwargs):
        super().__init__(**kwargs)
        self.ch, self.wide = ch, wide
        self.attention_resolutions = tuple(int(r) for r in attention_resolutions)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] != input_shape[2]:
            raise ValueError(f"BigGANDiscriminator expects square NHWC images [B, S, S, C], got {input_shape}")
        side = input_shape[1]
        multipliers, downsamples = channel_plan(side)
        self.stages = []
        shape = tuple(input_shape)
        for index, (multiplier, downsample) in enumerate(zip(multipliers, downsamples)):
            block = DBlock(self.ch * multiplier, downsample, preactivation=index > 0, wide=self.wide,
                           name=f"block{index}")
            block.build(shape)
            side = side // 2 if downsample else side
            shape = (shape[0], side, side, self.ch * multiplier)
            self.stages.append(block)
            if side in self.attention_resolutions:
                attention = BigGANSelfAttention(name=f"attention{index}")
                attention.build(shape)
                self.stages.append(attention)
        self.linear = SNDense(1, name="linear")
        self.linear.build((shape[0], shape[-1]))
        super().build(input_shape)

    def call(self, x, training=False):
        h = x
        for stage in self.stages:
            h = stage(h, training=training)
        h = ops.sum(ops.relu(h), axis=(1, 2))
        return ops.reshape(self.linear(h, training=training), (-1,))


def count_trainable_parameters(model):
    """Number of trainable scalars, as the reference counts parameters (SN singular vectors excluded)."""
    total = 0
    for weight in model.trainable_weights:
        size = 1
        for dim in weight.shape:
            size *= dim
        total += size
    return total


@gin.configurable
def toy_discriminator(hidden=512, depth=3):
    """The notebook's 2-D discriminator: the toy MLP with one output; its logits are [B, 1]."""
    return ToyMLP(hidden=hidden, depth=depth, out_dim=1)


gin.external_configurable(BigGANDiscriminator)
