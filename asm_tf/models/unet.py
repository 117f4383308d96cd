"""The DDPM-style UNet score network of the reference (Ho et al. 2020), unconditional.

The reference creates a sinusoidal time-embedding MLP (ch -> 4ch -> 4ch, 328,704 parameters at ch 128) that
no forward pass uses, because the network is never conditioned on sigma; it is left out here, so the
parameter count is the 32,856,707 that the reference actually trains at ch 128 with 3 channels.

Initialisation reproduces what the reference's code does (its per-layer init calls are no-ops):
* down path (input conv, its ResnetBlocks' convs, the downsampling convs): xavier-uniform with gain
  sqrt(1/2), zero biases;
* every 1x1 shortcut and attention q, k, v: the same; attention output maps: gain sqrt(1e-10 / 2);
* middle and up-path ResnetBlock convs, upsampling convs and the output conv: PyTorch's default;
* GroupNorm: gamma 1, beta 0.
PyTorch's xavier_uniform_(gain=g) equals Keras' VarianceScaling(g**2, "fan_avg", "uniform").
"""

import gin
import keras
import tensorflow as tf

from asm_tf.models.layers import Conv, GroupNorm, UNetSelfAttention, channels_shape, swish


def xavier_uniform(scale):
    """The reference's init(scale): PyTorch xavier_uniform_ with gain sqrt(scale / 2) (scale 0 -> 1e-10)."""
    return keras.initializers.VarianceScaling(scale=(scale or 1e-10) / 2.0, mode="fan_avg",
                                              distribution="uniform")


class ResnetBlock(keras.layers.Layer):
    """GN, Swish, conv3x3, GN, Swish, channel dropout, conv3x3; 1x1 shortcut when the channels change.

    `down_path=True` gives the down path's initialisation (xavier, zero biases), else PyTorch's default.
    """

    def __init__(self, filters, dropout=0.0, norm_groups=32, down_path=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.dropout, self.norm_groups = filters, dropout, norm_groups
        self.down_path = down_path

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

    def call(self, x, training=False):
        h = self.conv0(swish(self.norm0(x)))
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


class UNet(keras.Model):
    """Unconditional UNet: ch * ch_mult channels per level, `num_res_blocks` ResnetBlocks per level down
    and one more up, self-attention after every ResnetBlock of the levels in `attn_levels` and in the
    middle, GroupNorm(`norm_groups`, eps 1e-6), Swish. The input is used as is (no 2x - 1 mapping); the
    output has the input's channel count and is read as -z. Inputs need sizes divisible by
    2**(len(ch_mult) - 1).
    """

    def __init__(self, *, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(1,), dropout=0.0,
                 norm_groups=32, **kwargs):
        super().__init__(**kwargs)
        bad_levels = [level for level in attn_levels if not 0 <= level < len(ch_mult)]
        if bad_levels:
            raise ValueError(f"attn_levels {bad_levels} are not level indices of ch_mult {ch_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.ch, self.ch_mult, self.num_res_blocks = ch, tuple(ch_mult), num_res_blocks
        self.attn_levels, self.dropout, self.norm_groups = tuple(attn_levels), dropout, norm_groups

    def _resnet_block(self, filters, in_channels, down_path=False):
        block = ResnetBlock(filters, self.dropout, self.norm_groups, down_path=down_path)
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

    def _check_input(self, x):
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape.rank != 4 or x.shape[-1] != self.data_channels:
            raise ValueError(f"UNet was built for NHWC images with {self.data_channels} channels, "
                             f"got shape {x.shape}")
        if any(size is not None and size % factor for size in x.shape[1:3]):
            raise ValueError(f"UNet with {len(self.ch_mult)} levels needs image sizes divisible by {factor}, "
                             f"got {x.shape[1:3]}")

    def call(self, x, training=False):
        self._check_input(x)
        h = self.conv_in(x)
        skips = [h]
        for step in self.down_steps:
            for layer in step:
                h = layer(h, training=training)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, training=training)
        for step in self.up_steps:
            if not isinstance(step[0], Upsample):
                h = tf.concat([h, skips.pop()], axis=-1)
            for layer in step:
                h = layer(h, training=training)
        return self.conv_out(swish(self.norm_out(h)))


gin.external_configurable(UNet)
