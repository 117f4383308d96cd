"""Building blocks of the image score networks (NCSNv2, UNet), NHWC, written for speed on CPU.

Convolutions call `conv2d` (`tf.nn.conv2d` with a faster filter gradient on CPU; Keras' Conv2D is 22-34% slower
for dilated kernels here), the norms fold their statistics and affine parameters into one scale and one shift
per (example, channel), and bilinear resizing uses the align-corners kernel of the reference. Composite layers
create and build their children in `build`, so `model.build(shape)` creates every weight without running a
forward pass.
"""

import functools
import math

import keras
import tensorflow as tf

from asm_tf.models.initializers import torch_default_bias, torch_default_kernel


def channels_shape(channels):
    """An NHWC shape with unknown batch and spatial sizes, for building a layer from its channel count."""
    return (None, None, None, channels)


def swish(x):
    """x * sigmoid(x) (measured faster than keras.ops.silu here)."""
    return x * tf.sigmoid(x)


def _batch_matmul(a, b, adjoint_a=False, adjoint_b=False):
    return tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=a.dtype, adj_x=adjoint_a, adj_y=adjoint_b)


@tf.custom_gradient
def _eigen_matmul(a, b):
    return _batch_matmul(a, b), lambda dy: (_batch_matmul(dy, b, adjoint_b=True), _batch_matmul(a, dy, adjoint_a=True))


def matmul(a, b):
    """a @ b (matrices); in float32 on TensorFlow's own (Eigen) CPU kernel, forward and backward.

    With oneDNN on, TensorFlow's graph rewrite sends MatMul to oneDNN's kernel and leaves BatchMatMulV3 alone. At
    the toy MLP's sizes (256 x 512 x 512) oneDNN's did 7-10% fewer FLOPs per CPU second here (the three products of
    a training step, interleaved in one process); at the UNet attention's (8 x 256 x 256 x 256) they were equal.
    The CPU has BatchMatMulV3 kernels for float32 but not float16, so other types take tf.matmul.
    """
    return _eigen_matmul(a, b) if a.dtype == tf.float32 else tf.matmul(a, b)


def _l2_normalize(v):
    return tf.math.l2_normalize(v, epsilon=1e-24)


@functools.lru_cache(maxsize=None)
def nchw_filter_gradient_available():
    """True where TensorFlow has a CPU kernel of the NCHW filter gradient (its oneDNN kernels are on) and no GPU
    is visible; probed once, eagerly."""
    if tf.config.list_physical_devices("GPU"):
        return False
    with tf.init_scope():
        try:
            tf.raw_ops.Conv2DBackpropFilter(input=tf.zeros([1, 1, 1, 1]), filter_sizes=[1, 1, 1, 1],
                                            out_backprop=tf.zeros([1, 1, 1, 1]), strides=[1, 1, 1, 1],
                                            padding="VALID", data_format="NCHW")
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
    return True


def _nchw(t):
    return tf.transpose(t, [0, 3, 1, 2])


# From which sizes a convolution's filter gradient runs on NCHW (see conv2d): input pixels, and multiply-adds per
# example.
NCHW_FILTER_GRADIENT_MIN_PIXELS = 64
NCHW_FILTER_GRADIENT_MIN_WORK = 2**22


def conv2d(x, kernel, strides=1, padding="SAME"):
    """`tf.nn.conv2d` (NHWC), whose float32 filter gradient runs on NCHW transposes of the input and the output
    gradient for inputs of 8x8 pixels and more and convolutions of 4.2e6 multiply-adds per example and more,
    where `nchw_filter_gradient_available()`; forward and input gradient are TensorFlow's own.

    oneDNN's NHWC filter-gradient kernel runs at about half the speed of its forward convolution here; its NCHW
    one was faster, transposes included, on the CIFAR-10 networks' convolutions from 8x8 up, and slower at 4x4 and
    for the UNet's first and last convolutions (3 channels): NCSNv2's training step runs 1.09-1.17x faster, the
    UNet's 1.0-1.18x (BENCHMARKS.md). Small convolutions (the quick start's, the tests') gain nothing and keep
    TensorFlow's gradient. The sums are the same up to the order of additions.
    """
    height, width = x.shape[1:3]
    large = (height is not None and width is not None and height * width >= NCHW_FILTER_GRADIENT_MIN_PIXELS
             and (height // strides) * (width // strides) * math.prod(kernel.shape) >= NCHW_FILTER_GRADIENT_MIN_WORK)
    if x.dtype != tf.float32 or not large or not nchw_filter_gradient_available():
        return tf.nn.conv2d(x, kernel, strides=strides, padding=padding)

    @tf.custom_gradient
    def convolve(x, kernel):
        def gradient(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                                                strides=[1, strides, strides, 1], padding=padding)
            dkernel = tf.raw_ops.Conv2DBackpropFilter(input=_nchw(x), filter_sizes=tf.shape(kernel),
                                                      out_backprop=_nchw(dy), strides=[1, 1, strides, strides],
                                                      padding=padding, data_format="NCHW")
            return dx, dkernel

        return tf.nn.conv2d(x, kernel, strides=strides, padding=padding), gradient

    return convolve(x, tf.convert_to_tensor(kernel))


class Conv(keras.layers.Layer):
    """2-D convolution (NHWC) calling `conv2d` directly.

    `padding` is "same" or an int p (p zeros on every side, as PyTorch's `padding=p`; this differs from
    "same" for strided convolutions). Initialisers default to PyTorch's, as in the reference; the bias default
    depends on the fan-in and is made in `build`.

    `spectral_norm=True` (NCSNv2's option; the discriminator's is BigGAN's, `discriminator.SNConv2D`) divides the
    kernel by its largest singular value, estimated as in PyTorch's
    `spectral_norm` with one power iteration per training call (the vector u is a non-trainable weight).
    Outside training the stored u is used without updating it.
    """

    def __init__(self, filters, kernel_size=3, strides=1, dilation=1, padding="same", use_bias=True,
                 kernel_initializer=None, bias_initializer=None, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        if dilation > 1 and (strides != 1 or padding != "same"):
            raise ValueError("a dilated Conv supports only strides=1 and padding='same'")
        if padding != "same" and not isinstance(padding, int):
            raise ValueError(f"Conv padding must be 'same' or an int, got {padding!r}")
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.dilation, self.padding, self.use_bias = dilation, padding, use_bias
        self.kernel_initializer = kernel_initializer or torch_default_kernel()
        self.bias_initializer = bias_initializer
        self.spectral_norm = spectral_norm

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer, name="kernel")
        if self.use_bias:
            fan_in = self.kernel_size * self.kernel_size * in_channels
            self.bias = self.add_weight(
                shape=(self.filters,), initializer=self.bias_initializer or torch_default_bias(fan_in),
                name="bias")
        if self.spectral_norm:
            self.sn_u = self.add_weight(
                shape=(self.filters,), initializer=keras.initializers.RandomNormal(), trainable=False,
                aggregation="only_first_replica", name="sn_u")

    def normalized_kernel(self, training=False):
        """The kernel divided by its spectral norm estimate (u, v held constant as in PyTorch)."""
        matrix = tf.reshape(self.kernel, [-1, self.filters])
        u = _l2_normalize(tf.convert_to_tensor(self.sn_u))
        v = tf.stop_gradient(_l2_normalize(tf.linalg.matvec(matrix, u)))
        if training:
            u = tf.stop_gradient(_l2_normalize(tf.linalg.matvec(matrix, v, transpose_a=True)))
            self.sn_u.assign(u)
        sigma = tf.tensordot(u, tf.linalg.matvec(matrix, v, transpose_a=True), axes=1)
        return self.kernel / sigma

    def call(self, x, training=False, residual=None):
        """conv(x) + bias, plus `residual` if given.

        The residual is added before the bias: the same sum, but TensorFlow's oneDNN graph remapper
        then cannot fuse Conv2D+BiasAdd+Add+Elu across an Add with other consumers (NCSNv2's stage
        outputs), a fusion that fails and disables every fusion in the graph (measured 5-7% slower).
        """
        kernel = self.normalized_kernel(training) if self.spectral_norm else self.kernel
        if self.dilation > 1:
            y = dilated_conv2d(x, kernel, self.dilation)
        elif self.padding == "same":
            y = conv2d(x, kernel, self.strides, "SAME")
        else:  # an explicit pad keeps the oneDNN kernels, which do not take TF's "EXPLICIT" padding
            p = self.padding
            y = conv2d(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), kernel, self.strides, "VALID")
        if residual is not None:
            y = y + residual
        return tf.nn.bias_add(y, self.bias) if self.use_bias else y


def dilated_conv2d(x, kernel, dilation):
    """Stride-1 "same" convolution with a dilated kernel, computed on the dilation x dilation sub-grids.

    TensorFlow's CPU kernels without oneDNN cannot differentiate `tf.nn.conv2d(..., dilations=d)`;
    this space-to-batch form works everywhere and measured as fast as the direct oneDNN kernel (and
    faster than `tf.nn.convolution`). Sizes that are not multiples of the dilation are padded at the
    bottom/right with zeros, which is exact, and cropped afterwards.
    """
    if None in x.shape[1:3]:
        extra = -tf.shape(x)[1:3] % dilation
        paddings = tf.stack([tf.zeros_like(extra), extra], axis=1)
    else:
        paddings = [[0, -size % dilation] for size in x.shape[1:3]]
    blocks = tf.space_to_batch(x, [dilation, dilation], paddings)
    y = conv2d(blocks, kernel)
    return tf.batch_to_space(y, [dilation, dilation], paddings)


class InstanceNormPlusPlus(keras.layers.Layer):
    """Unconditional InstanceNorm++ (NCSNv2's).

    out = gamma * (instance_norm(x) + alpha * m) + beta, where m standardises the per-channel spatial
    means across the channels of the same example with the unbiased variance. alpha, gamma ~ N(1, 0.02),
    beta = 0. Computed as one multiply-add over x; statistics in float32 under mixed precision.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels < 2:
            raise ValueError("InstanceNorm++ needs at least 2 channels (it takes a variance across channels)")
        near_one = keras.initializers.RandomNormal(mean=1.0, stddev=0.02)
        self.alpha = self.add_weight(shape=(channels,), initializer=near_one, autocast=False, name="alpha")
        self.gamma = self.add_weight(shape=(channels,), initializer=near_one, autocast=False, name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", autocast=False, name="beta")

    def call(self, x):
        means, variances = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2], keepdims=True)
        channels = x.shape[-1]
        centred_means = means - tf.reduce_mean(means, axis=-1, keepdims=True)
        means_variance = tf.reduce_sum(tf.square(centred_means), axis=-1, keepdims=True) / (channels - 1)
        standardised_means = centred_means * tf.math.rsqrt(means_variance + self.epsilon)
        inv_std = tf.math.rsqrt(variances + self.epsilon)
        scale = self.gamma * inv_std
        shift = self.gamma * (self.alpha * standardised_means - means * inv_std) + self.beta
        return x * tf.cast(scale, x.dtype) + tf.cast(shift, x.dtype)


class GroupNorm(keras.layers.Layer):
    """Group normalisation (gamma = 1, beta = 0 at init) with eps 1e-6, as torch.nn.GroupNorm.

    Statistics are reduced over the spatial axes per channel first (fast on NHWC) and then over the
    channels of each group; the normalisation and the affine map are one multiply-add over x. Measured
    1.4-1.6x faster (forward + backward) than moments over a [B, H, W, G, C/G] view, which is about as
    fast as keras.layers.GroupNormalization here. The gradient is written out (two reductions and one
    multiply-add over the activations) instead of differentiating the statistics. Statistics in float32
    under mixed precision.
    """

    def __init__(self, groups=32, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.epsilon = groups, epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"GroupNorm: {channels} channels do not split into {self.groups} groups; "
                             "choose a group count that divides every channel count")
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", autocast=False, name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", autocast=False, name="beta")

    def _group_average(self, per_channel):
        """[B, C] -> the mean over each group, repeated for the group's channels, as [B, 1, 1, C]."""
        channels = per_channel.shape[-1]
        grouped = tf.reshape(per_channel, [-1, self.groups, channels // self.groups])
        averaged = tf.reduce_mean(grouped, axis=-1, keepdims=True) + tf.zeros_like(grouped)
        return tf.reshape(averaged, [-1, 1, 1, channels])

    def call(self, x):
        return self._normalize(x, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta))

    @tf.custom_gradient
    def _normalize(self, x, gamma, beta):
        x32 = tf.cast(x, tf.float32)
        means = self._group_average(tf.reduce_mean(x32, axis=[1, 2]))
        variances = self._group_average(tf.reduce_mean(tf.math.squared_difference(x32, means), axis=[1, 2]))
        inv_std = tf.math.rsqrt(variances + self.epsilon)
        scale = inv_std * gamma

        def gradient(dy):
            """With x_hat = (x - mean) inv_std and g = gamma dy: dx = inv_std (g - mean(g) - x_hat mean(g x_hat)),
            the means over each example's group, folded into dy * scale + x * a + b."""
            dy32 = tf.cast(dy, tf.float32)
            pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
            sum_dy = tf.reduce_sum(dy32, axis=[1, 2], keepdims=True)
            sum_dy_x_hat = (tf.reduce_sum(dy32 * x32, axis=[1, 2], keepdims=True) - means * sum_dy) * inv_std
            mean_g = self._group_average(gamma * sum_dy) / pixels
            mean_g_x_hat = self._group_average(gamma * sum_dy_x_hat) / pixels
            a = -tf.square(inv_std) * mean_g_x_hat
            b = inv_std * (means * inv_std * mean_g_x_hat - mean_g)
            dx = dy32 * scale + x32 * a + b
            return tf.cast(dx, x.dtype), tf.reduce_sum(sum_dy_x_hat, axis=[0, 1, 2]), tf.reduce_sum(sum_dy, axis=[0, 1, 2])

        return x * tf.cast(scale, x.dtype) + tf.cast(beta - means * scale, x.dtype), gradient


class ConvMeanPool(keras.layers.Layer):
    """A stride-1 convolution, then the mean of the four stride-2 sub-grids (a 2x2 average pool).

    An odd height (width) is first padded with one zero row (column) on top (left), as the reference's
    `adjust_padding` does for 28x28 inputs; the reference fails on the other odd sizes.
    """

    def __init__(self, filters, kernel_size=3, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.conv = Conv(filters, kernel_size, spectral_norm=spectral_norm)

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x, training=False):
        pad_top, pad_left = (x.shape[1] or 0) % 2, (x.shape[2] or 0) % 2  # static sizes only
        if pad_top or pad_left:
            x = tf.pad(x, [[0, 0], [pad_top, 0], [pad_left, 0], [0, 0]])
        return tf.nn.avg_pool2d(self.conv(x, training=training), 2, 2, "VALID")


class ResidualBlock(keras.layers.Layer):
    """Pre-activation residual block of NCSNv2: Norm, ELU, conv1, Norm, ELU, conv2, plus a shortcut.

    `resample="down"` with `dilation=1` halves the size (ConvMeanPool, 1x1 ConvMeanPool shortcut); with a
    dilation > 1 it keeps the size and uses dilated 3x3 convolutions and a dilated 3x3 shortcut, as in the reference.
    Without resampling the shortcut is the identity, or when the channel count changes a 1x1 conv
    (a dilated 3x3 one in dilated blocks, as in the reference).
    """

    def __init__(self, filters, resample=None, dilation=1, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        if resample not in (None, "down"):
            raise ValueError(f"ResidualBlock resample must be None or 'down', got {resample!r}")
        self.filters, self.resample, self.dilation = filters, resample, dilation
        self.spectral_norm = spectral_norm

    def _conv(self, filters, kernel_size=3):
        return Conv(filters, kernel_size, dilation=self.dilation if kernel_size > 1 else 1,
                    spectral_norm=self.spectral_norm)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        mid_channels = in_channels if self.resample else self.filters
        self.norm1, self.norm2 = InstanceNormPlusPlus(), InstanceNormPlusPlus()
        self.conv1 = self._conv(mid_channels)
        self.shortcut = None
        if self.resample and self.dilation == 1:
            self.conv2 = ConvMeanPool(self.filters, 3, spectral_norm=self.spectral_norm)
            self.shortcut = ConvMeanPool(self.filters, 1, spectral_norm=self.spectral_norm)
        else:
            self.conv2 = self._conv(self.filters)
            if self.resample:
                self.shortcut = self._conv(self.filters, 3)
            elif in_channels != self.filters:
                self.shortcut = self._conv(self.filters, 3 if self.dilation > 1 else 1)
        for layer, channels in [(self.norm1, in_channels), (self.conv1, in_channels),
                                (self.norm2, mid_channels), (self.conv2, mid_channels)]:
            layer.build(channels_shape(channels))
        if self.shortcut is not None:
            self.shortcut.build(channels_shape(in_channels))

    def call(self, x, training=False):
        h = self.conv1(tf.nn.elu(self.norm1(x)), training=training)
        h = tf.nn.elu(self.norm2(h))
        if self.shortcut is None:
            return self.conv2(h, training=training, residual=x)
        return self.shortcut(x, training=training) + self.conv2(h, training=training)


class ResidualConvUnits(keras.layers.Layer):
    """RefineNet RCU: `units` times x <- x + conv(ELU(conv(ELU(x)))), 3x3 convs without bias."""

    def __init__(self, units, stages=2, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.stages, self.spectral_norm = units, stages, spectral_norm

    def build(self, input_shape):
        channels = input_shape[-1]
        self.convs = [[Conv(channels, 3, use_bias=False, spectral_norm=self.spectral_norm)
                       for _ in range(self.stages)] for _ in range(self.units)]
        for unit in self.convs:
            for conv in unit:
                conv.build(channels_shape(channels))

    def call(self, x, training=False):
        for unit in self.convs:
            h = x
            for conv in unit:
                h = conv(tf.nn.elu(h), training=training)
            x = x + h
        return x


class ChainedResidualPooling(keras.layers.Layer):
    """RefineNet CRP: x = ELU(x); then `stages` times path = conv(maxpool5x5(path)), x += path."""

    def __init__(self, stages=2, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.stages, self.spectral_norm = stages, spectral_norm

    def build(self, input_shape):
        channels = input_shape[-1]
        self.convs = [Conv(channels, 3, use_bias=False, spectral_norm=self.spectral_norm)
                      for _ in range(self.stages)]
        for conv in self.convs:
            conv.build(channels_shape(channels))

    def call(self, x, training=False):
        x = tf.nn.elu(x)
        path = x
        for conv in self.convs:
            path = conv(tf.nn.max_pool2d(path, 5, 1, "SAME"), training=training)
            x = x + path
        return x


def resize_align_corners(x, like):
    """Bilinear resize of x to the spatial size of `like`, with align_corners=True (as the reference)."""
    if None not in x.shape[1:3] and x.shape[1:3] == like.shape[1:3]:
        return x
    resized = tf.raw_ops.ResizeBilinear(images=x, size=tf.shape(like)[1:3], align_corners=True,
                                        half_pixel_centers=False)
    return tf.cast(resized, x.dtype)  # the kernel returns float32 for any input


class MultiResolutionFusion(keras.layers.Layer):
    """RefineNet MSF: a 3x3 conv (with bias) per input to `features`, resized to the first input's size, summed."""

    def __init__(self, features, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.features, self.spectral_norm = features, spectral_norm

    def build(self, input_shapes):
        self.convs = [Conv(self.features, 3, spectral_norm=self.spectral_norm) for _ in input_shapes]
        for conv, shape in zip(self.convs, input_shapes):
            conv.build(channels_shape(shape[-1]))

    def call(self, xs, training=False):
        return tf.add_n([resize_align_corners(conv(x, training=training), xs[0])
                         for conv, x in zip(self.convs, xs)])


class RefineBlock(keras.layers.Layer):
    """RefineNet block over a list of inputs (the first one sets the output size).

    Each input goes through 2 RCUs; several inputs are fused by MSF (a single input must already have
    `features` channels); then CRP and the output RCUs (3 units for the last block, `end=True`, else 1).
    """

    def __init__(self, features, end=False, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.features, self.end, self.spectral_norm = features, end, spectral_norm

    def build(self, input_shapes):
        self.adapt = [ResidualConvUnits(2, spectral_norm=self.spectral_norm) for _ in input_shapes]
        for rcu, shape in zip(self.adapt, input_shapes):
            rcu.build(channels_shape(shape[-1]))
        if len(input_shapes) > 1:
            self.fusion = MultiResolutionFusion(self.features, spectral_norm=self.spectral_norm)
            self.fusion.build([channels_shape(shape[-1]) for shape in input_shapes])
        else:
            self.fusion = None
            if input_shapes[0][-1] != self.features:
                raise ValueError(f"a single-input RefineBlock needs {self.features} input channels, "
                                 f"got {input_shapes[0][-1]}")
        self.pooling = ChainedResidualPooling(spectral_norm=self.spectral_norm)
        self.output_units = ResidualConvUnits(3 if self.end else 1, spectral_norm=self.spectral_norm)
        self.pooling.build(channels_shape(self.features))
        self.output_units.build(channels_shape(self.features))

    def call(self, xs, training=False):
        hs = [rcu(x, training=training) for rcu, x in zip(self.adapt, xs)]
        h = self.fusion(hs, training=training) if self.fusion is not None else hs[0]
        return self.output_units(self.pooling(h, training=training), training=training)


class UNetSelfAttention(keras.layers.Layer):
    """The DDPM UNet's attention block (not BigGAN's, `discriminator.BigGANSelfAttention`): single-head
    self-attention over all positions, with a residual connection.

    GroupNorm, then q, k, v by 1x1 linear maps, softmax(q k^T / sqrt(C)) v, an output 1x1 map, plus x.
    """

    def __init__(self, norm_groups=32, kernel_initializer=None, output_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.norm_groups = norm_groups
        self.kernel_initializer = kernel_initializer or torch_default_kernel()
        self.output_initializer = output_initializer or self.kernel_initializer

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm = GroupNorm(self.norm_groups)
        self.norm.build(input_shape)
        self.kernels, self.biases = [], []
        for name in ("query", "key", "value", "output"):
            initializer = self.output_initializer if name == "output" else self.kernel_initializer
            self.kernels.append(self.add_weight(shape=(channels, channels), initializer=initializer,
                                                name=f"{name}_kernel"))
            self.biases.append(self.add_weight(shape=(channels,), initializer="zeros", name=f"{name}_bias"))

    def call(self, x):
        shape = tf.shape(x)
        channels = x.shape[-1]
        h = tf.reshape(self.norm(x), [shape[0], shape[1] * shape[2], channels])
        qkv = tf.matmul(h, tf.concat(self.kernels[:3], axis=1)) + tf.concat(self.biases[:3], axis=0)
        q, k, v = tf.split(qkv, 3, axis=-1)
        weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * channels ** -0.5, axis=-1)
        h = tf.matmul(tf.matmul(weights, v), self.kernels[3]) + self.biases[3]
        return x + tf.reshape(h, shape)
