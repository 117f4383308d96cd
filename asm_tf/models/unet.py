"""The DDPM-style UNet score network of the reference (Ho et al. 2020), unconditional or noise-conditional.

Unconditional (the default, as the reference trains it): the reference also creates a sinusoidal time-embedding
MLP (ch -> 4ch -> 4ch, 328,704 parameters at ch 128) that no forward pass uses; it is left out here, so the
parameter count is the 32,856,707 that the reference actually trains at ch 128 with 3 channels.

Noise-conditional (`conditioning`, the reference's `conditional=True`, which its training never used): a position
t of sigma is embedded sinusoidally (dimension ch), mapped by two dense layers (ch -> 4ch -> 4ch, Swish after
each) and added after the first convolution of every ResnetBlock through a dense projection of its own; 35,746,307
parameters at ch 128 with 3 channels. t is the level index i of sigma_i on the trained ladder ('index', the
reference's t) or 1000 c_noise = 250 ln(sigma) ('continuous', EDM's c_noise = ln(sigma) / 4); see
`sigma_positions` and docs/algorithm.md#noise-conditional-unet.

Initialisation reproduces what the reference's code does (its per-layer init calls are no-ops):
* down path (input conv, its ResnetBlocks' convs, the downsampling convs): xavier-uniform with gain
  sqrt(1/2), zero biases;
* every 1x1 shortcut and attention q, k, v: the same; attention output maps: gain sqrt(1e-10 / 2);
* middle and up-path ResnetBlock convs, upsampling convs and the output conv: PyTorch's default;
* GroupNorm: gamma 1, beta 0;
* the embedding MLP and the down path's ResnetBlocks' projections: xavier-uniform, gain sqrt(1/2), zero biases;
  the other projections: PyTorch's default.
PyTorch's xavier_uniform_(gain=g) equals Keras' VarianceScaling(g**2, "fan_avg", "uniform").
"""

import math

import gin
import keras
import numpy as np
import tensorflow as tf

from asm_tf.models.initializers import torch_default_bias, torch_default_kernel
from asm_tf.models.layers import Conv, GroupNorm, UNetSelfAttention, channels_shape, swish

CONDITIONINGS = (None, "index", "continuous")
CONTINUOUS_POSITIONS = 1000.0  # 'continuous': t = 1000 c_noise, c_noise = ln(sigma) / 4 (EDM)


def xavier_uniform(scale):
    """The reference's init(scale): PyTorch xavier_uniform_ with gain sqrt(scale / 2) (scale 0 -> 1e-10)."""
    return keras.initializers.VarianceScaling(scale=(scale or 1e-10) / 2.0, mode="fan_avg",
                                              distribution="uniform")


def timestep_embedding(positions, dim):
    """DDPM's sinusoidal embedding [B, dim] of positions [B]: sin(t f_k) for k < dim / 2, then cos(t f_k), with
    f_k = 10000^(-k / (dim / 2 - 1))."""
    half = dim // 2
    frequencies = tf.exp(tf.range(half, dtype=tf.float32) * (-math.log(10000.0) / (half - 1)))
    angles = positions[:, None] * frequencies[None, :]
    return tf.concat([tf.sin(angles), tf.cos(angles)], axis=1)


def ladder_positions(sigma, levels):
    """The position of each sigma [B] on the decreasing ladder `levels` [L]: i at sigma_i (index 0 = sigma_1,
    the largest), linear in ln(sigma) between neighbouring levels, the first and last intervals extended
    beyond the ladder's ends."""
    log_levels, log_sigma = tf.math.log(levels), tf.math.log(sigma)
    below = tf.searchsorted(-log_levels, -log_sigma, side="right") - 1
    start = tf.clip_by_value(below, 0, levels.shape[0] - 2)
    upper, lower = tf.gather(log_levels, start), tf.gather(log_levels, start + 1)
    return tf.cast(start, tf.float32) + (upper - log_sigma) / (upper - lower)


def dense(units, in_units, xavier):
    """A built Dense layer with the reference's xavier init (zero biases) or PyTorch's default."""
    if xavier:
        layer = keras.layers.Dense(units, kernel_initializer=xavier_uniform(1.0), bias_initializer="zeros")
    else:
        layer = keras.layers.Dense(units, kernel_initializer=torch_default_kernel(),
                                   bias_initializer=torch_default_bias(in_units))
    layer.build((None, in_units))
    return layer


class ResnetBlock(keras.layers.Layer):
    """GN, Swish, conv3x3, GN, Swish, channel dropout, conv3x3; 1x1 shortcut when the channels change.

    `down_path=True` gives the down path's initialisation (xavier, zero biases), else PyTorch's default.
    With `embedding_channels`, a dense projection of the noise embedding is added after the first conv.
    """

    def __init__(self, filters, dropout=0.0, norm_groups=32, down_path=False, embedding_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.dropout, self.norm_groups = filters, dropout, norm_groups
        self.down_path, self.embedding_channels = down_path, embedding_channels

    def _conv3x3(self):
        if self.down_path:
            return Conv(self.filters, 3, kernel_initializer=xavier_uniform(1.0), bias_initializer="zeros")
        return Conv(self.filters, 3)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.norm0, self.norm1 = GroupNorm(self.norm_groups), GroupNorm(self.norm_groups)
        self.conv0, self.conv1 = self._conv3x3(), self._conv3x3()
        self.channel_dropout = keras.layers.SpatialDropout2D(self.dropout) if self.dropout > 0 else None
        self.shortcut = None
        if in_channels != self.filters:
            self.shortcut = Conv(self.filters, 1, kernel_initializer=xavier_uniform(1.0),
                                 bias_initializer="zeros")
            self.shortcut.build(input_shape)
        for layer, channels in [(self.norm0, in_channels), (self.conv0, in_channels),
                                (self.norm1, self.filters), (self.conv1, self.filters)]:
            layer.build(channels_shape(channels))
        self.dense = None
        if self.embedding_channels:
            self.dense = dense(self.filters, self.embedding_channels, self.down_path)

    def call(self, x, embedding=None, training=False):
        projected = None if embedding is None else self.dense(embedding)[:, None, None, :]
        h = self.conv0(swish(self.norm0(x)), residual=projected)
        h = swish(self.norm1(h))
        if self.channel_dropout is not None:
            h = self.channel_dropout(h, training=training)
        h = self.conv1(h)
        return (x if self.shortcut is None else self.shortcut(x)) + h


class Downsample(Conv):
    """3x3 convolution with stride 2 and one zero of padding on every side (PyTorch padding=1)."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, 3, strides=2, padding=1, kernel_initializer=xavier_uniform(1.0),
                         bias_initializer="zeros", **kwargs)


class Upsample(Conv):
    """Nearest-neighbour x2 upsampling, then a 3x3 convolution."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, 3, **kwargs)

    def call(self, x, training=False):
        size = [2 * n for n in x.shape[1:3]] if None not in x.shape[1:3] else 2 * tf.shape(x)[1:3]
        upsampled = tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, align_corners=False,
                                                     half_pixel_centers=False)
        return super().call(upsampled, training=training)


def _check_levels(levels):
    levels = np.asarray(levels, np.float32)
    if levels.ndim != 1 or len(levels) < 2 or not np.all(levels[1:] < levels[:-1]) or not levels[-1] > 0:
        raise ValueError(f"UNet levels must be at least 2 decreasing positive noise levels, got {levels}")
    return levels


class UNet(keras.Model):
    """UNet: ch * ch_mult channels per level, `num_res_blocks` ResnetBlocks per level down and one more up,
    self-attention after every ResnetBlock of the levels in `attn_levels` and in the middle,
    GroupNorm(`norm_groups`, eps 1e-6), Swish. The input is used as is (no 2x - 1 mapping); the output has the
    input's channel count and is read as -z. Inputs need sizes divisible by 2**(len(ch_mult) - 1).

    `conditioning`: None (unconditional, called as network(x)), or 'index' or 'continuous' (called as
    network(x, sigma), sigma [B] or a scalar; `takes_sigma` is then True). 'index' reads sigma as a position
    on the trained ladder `levels` (decreasing; Experiment.build_score_network sets the run's schedule).
    """

    def __init__(self, *, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(1,), dropout=0.0,
                 norm_groups=32, conditioning=None, levels=None, **kwargs):
        super().__init__(**kwargs)
        bad_levels = [level for level in attn_levels if not 0 <= level < len(ch_mult)]
        if bad_levels:
            raise ValueError(f"attn_levels {bad_levels} are not level indices of ch_mult {ch_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"UNet conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if conditioning and (ch % 2 or ch < 4):
            raise ValueError(f"a conditional UNet needs an even ch of at least 4 for its embedding, got {ch}")
        self.ch, self.ch_mult, self.num_res_blocks = ch, tuple(ch_mult), num_res_blocks
        self.attn_levels, self.dropout, self.norm_groups = tuple(attn_levels), dropout, norm_groups
        self.conditioning, self.takes_sigma = conditioning, conditioning is not None
        self.levels = None if levels is None else _check_levels(levels)

    @property
    def needs_levels(self):
        """True while an 'index' UNet has no ladder to read sigma on."""
        return self.conditioning == "index" and self.levels is None

    def set_levels(self, levels):
        """Gives an 'index' UNet the trained ladder (decreasing) that it reads sigma on."""
        self.levels = _check_levels(levels)

    def _resnet_block(self, filters, in_channels, down_path=False):
        block = ResnetBlock(filters, self.dropout, self.norm_groups, down_path=down_path,
                            embedding_channels=4 * self.ch if self.conditioning else None)
        block.build(channels_shape(in_channels))
        return block

    def _attention(self, channels):
        attention = UNetSelfAttention(self.norm_groups, kernel_initializer=xavier_uniform(1.0),
                                  output_initializer=xavier_uniform(0.0))
        attention.build(channels_shape(channels))
        return attention

    def _level_step(self, level, filters, in_channels, down_path=False):
        step = [self._resnet_block(filters, in_channels, down_path)]
        if level in self.attn_levels:
            step.append(self._attention(filters))
        return step

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"UNet expects NHWC images, got shape {input_shape}")
        self.data_channels = input_shape[-1]
        self.conv_in = Conv(self.ch, 3, kernel_initializer=xavier_uniform(1.0), bias_initializer="zeros")
        self.conv_in.build(input_shape)
        channels, skip_channels = self.ch, [self.ch]
        self.down_steps = []
        for level, multiplier in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                self.down_steps.append(self._level_step(level, multiplier * self.ch, channels, True))
                channels = multiplier * self.ch
                skip_channels.append(channels)
            if level != len(self.ch_mult) - 1:
                downsample = Downsample(channels)
                downsample.build(channels_shape(channels))
                self.down_steps.append([downsample])
                skip_channels.append(channels)
        self.middle = [self._resnet_block(channels, channels), self._attention(channels),
                       self._resnet_block(channels, channels)]
        self.up_steps = []
        for level, multiplier in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                in_channels = channels + skip_channels.pop()
                self.up_steps.append(self._level_step(level, multiplier * self.ch, in_channels))
                channels = multiplier * self.ch
            if level != 0:
                upsample = Upsample(channels)
                upsample.build(channels_shape(channels))
                self.up_steps.append([upsample])
        self.norm_out = GroupNorm(self.norm_groups)
        self.norm_out.build(channels_shape(channels))
        self.conv_out = Conv(self.data_channels, 3)
        self.conv_out.build(channels_shape(channels))
        self.embedding_layers = []
        if self.conditioning:
            self.embedding_layers = [dense(4 * self.ch, self.ch, True), dense(4 * self.ch, 4 * self.ch, True)]

    def _check_input(self, x):
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape.rank != 4 or x.shape[-1] != self.data_channels:
            raise ValueError(f"UNet was built for NHWC images with {self.data_channels} channels, "
                             f"got shape {x.shape}")
        if any(size is not None and size % factor for size in x.shape[1:3]):
            raise ValueError(f"UNet with {len(self.ch_mult)} levels needs image sizes divisible by {factor}, "
                             f"got {x.shape[1:3]}")

    def sigma_positions(self, sigma, batch_size):
        """t [B] of sigma (scalar or [B]): its position on `levels` ('index') or 250 ln(sigma) ('continuous')."""
        sigma = tf.broadcast_to(tf.reshape(tf.cast(sigma, tf.float32), [-1]), [batch_size])
        if self.conditioning == "continuous":
            return CONTINUOUS_POSITIONS * tf.math.log(sigma) / 4.0
        if self.levels is None:
            raise ValueError("UNet.conditioning = 'index' reads sigma on the trained ladder: build the network with "
                             "Experiment.build_score_network or pass levels")
        return ladder_positions(sigma, tf.constant(self.levels))

    def _embedding(self, x, sigma):
        if not self.conditioning:
            if sigma is not None:
                raise ValueError("an unconditional UNet takes no sigma: set UNet.conditioning to condition it")
            return None
        if sigma is None:
            raise ValueError(f"UNet with conditioning {self.conditioning!r} needs sigma: call it as network(x, sigma)")
        embedding = timestep_embedding(self.sigma_positions(sigma, tf.shape(x)[0]), self.ch)
        for layer in self.embedding_layers:
            embedding = swish(layer(embedding))
        return embedding

    def call(self, x, sigma=None, training=False):
        self._check_input(x)
        embedding = self._embedding(x, sigma)

        def apply(layer, h):
            if isinstance(layer, ResnetBlock):
                return layer(h, embedding, training=training)
            return layer(h, training=training)

        h = self.conv_in(x)
        skips = [h]
        for step in self.down_steps:
            for layer in step:
                h = apply(layer, h)
            skips.append(h)
        for layer in self.middle:
            h = apply(layer, h)
        for step in self.up_steps:
            if not isinstance(step[0], Upsample):
                h = tf.concat([h, skips.pop()], axis=-1)
            for layer in step:
                h = apply(layer, h)
        return self.conv_out(swish(self.norm_out(h)))


gin.external_configurable(UNet)
