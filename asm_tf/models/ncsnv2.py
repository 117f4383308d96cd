"""NCSNv2 RefineNet score networks (Song & Ermon 2020): NCSNv2, NCSNv2Deeper, NCSNv2Deepest.

Unconditional, as in the paper's code: the network never sees sigma and its output is read as -z
(score = net / sigma). Initialisation is PyTorch's default, as in the reference. The reference's `dae`
target (sigmoid output) and `--std` output standardisation are experimental and not provided.
"""

import gin
import keras
import tensorflow as tf

from asm_tf.models.layers import Conv, InstanceNormPlusPlus, RefineBlock, ResidualBlock, channels_shape


class RefineNetScoreNetwork(keras.Model):
    """Residual encoder and RefineNet decoder; subclasses set the stage and decoder tables.

    STAGES: one (channel multiplier, downsamples, dilation) per stage of two residual blocks, the first of
    which may downsample. REFINE_FEATURES: channel multipliers of the RefineBlocks, deepest first.
    `dilation=False` is the reference's `--no_dilation`: every "down" block then halves the size.
    `map_input` maps data in [0, 1] to 2x - 1, as the reference does when the data are neither rescaled nor
    logit-transformed: None (the default) maps unless `Experiment` finds such a transform and turns it off.
    The output has as many channels as the input (taken in `build`).
    """

    STAGES = ()
    REFINE_FEATURES = ()

    def __init__(self, *, ngf=128, spectral_norm=False, dilation=True, map_input=None, **kwargs):
        super().__init__(**kwargs)
        if ngf < 2:
            raise ValueError(f"ngf must be at least 2, got {ngf}")
        self.ngf, self.spectral_norm = ngf, spectral_norm
        self.dilation, self.map_input = dilation, map_input

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} expects NHWC images, got shape {input_shape}")
        self.data_channels = input_shape[-1]
        sn = self.spectral_norm
        self.begin_conv = Conv(self.ngf, 3, spectral_norm=sn)
        self.begin_conv.build(input_shape)
        self.stages, stage_channels, channels = [], [], self.ngf
        for multiplier, downsamples, dilation in self.STAGES:
            dilation = dilation if self.dilation else 1
            blocks = [ResidualBlock(multiplier * self.ngf, resample="down" if downsamples else None,
                                    dilation=dilation, spectral_norm=sn),
                      ResidualBlock(multiplier * self.ngf, dilation=dilation, spectral_norm=sn)]
            for block in blocks:
                block.build(channels_shape(channels))
                channels = multiplier * self.ngf
            self.stages.append(blocks)
            stage_channels.append(channels)
        self.refine_blocks, previous = [], None
        for index, (multiplier, skip) in enumerate(zip(self.REFINE_FEATURES, reversed(stage_channels))):
            block = RefineBlock(multiplier * self.ngf, end=index == len(self.STAGES) - 1, spectral_norm=sn)
            block.build([channels_shape(c) for c in ([skip] if previous is None else [skip, previous])])
            previous = multiplier * self.ngf
            self.refine_blocks.append(block)
        self.end_norm = InstanceNormPlusPlus()
        self.end_norm.build(channels_shape(previous))
        self.end_conv = Conv(self.data_channels, 3, spectral_norm=sn)
        self.end_conv.build(channels_shape(previous))

    def call(self, x, training=False):
        if x.shape.rank != 4 or x.shape[-1] != self.data_channels:
            raise ValueError(f"{type(self).__name__} was built for NHWC images with {self.data_channels} "
                             f"channels, got shape {x.shape}")
        h = self.begin_conv(x if self.map_input is False else 2.0 * x - 1.0, training=training)
        skips = []
        for blocks in self.stages:
            for block in blocks:
                h = block(h, training=training)
            skips.append(h)
        h = None
        for block, skip in zip(self.refine_blocks, reversed(skips)):
            h = block([skip] if h is None else [skip, h], training=training)
        return self.end_conv(tf.nn.elu(self.end_norm(h)), training=training)


class NCSNv2(RefineNetScoreNetwork):
    """NCSNv2 (CIFAR-10, CelebA, Stacked MNIST): 4 stages; 32x32 input -> 32, 16, 16, 16.

    29,694,083 parameters at ngf 128 with 3 channels (28,645,507 with dilation=False).
    """

    STAGES = ((1, False, 1), (2, True, 1), (2, True, 2), (2, True, 4))
    REFINE_FEATURES = (2, 2, 1, 1)


class NCSNv2Deeper(RefineNetScoreNetwork):
    """NCSNv2Deeper (LSUN church 64x64, tower 128x128): 5 stages; 64x64 -> 64, 32, 16, 16, 16.

    83,445,379 parameters at ngf 128 with 3 channels.
    """

    STAGES = ((1, False, 1), (2, True, 1), (2, True, 1), (4, True, 2), (4, True, 4))
    REFINE_FEATURES = (4, 2, 2, 1, 1)


class NCSNv2Deepest(RefineNetScoreNetwork):
    """NCSNv2Deepest (FFHQ 256x256): 6 stages; 256x256 -> 256, 128, 64, 32, 32, 32.

    94,132,611 parameters at ngf 128 with 3 channels.
    """

    STAGES = ((1, False, 1), (2, True, 1), (2, True, 1), (2, True, 1), (4, True, 2), (4, True, 4))
    REFINE_FEATURES = (4, 2, 2, 2, 1, 1)


for _network in (NCSNv2, NCSNv2Deeper, NCSNv2Deepest):
    gin.external_configurable(_network)
