"""Building blocks of the image score networks against NumPy computations."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from asm_tf.models import layers


def _rng():
    return np.random.default_rng(0)


def _set(layer, **values):
    for name, value in values.items():
        getattr(layer, name).assign(np.asarray(value, np.float32))


def _numpy_conv_same(x, kernel):
    """Stride-1 convolution with symmetric zero padding k // 2 (NHWC, HWIO), in NumPy."""
    k = kernel.shape[0]
    padded = np.pad(x, [(0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(k):
        for j in range(k):
            out += padded[:, i:i + x.shape[1], j:j + x.shape[2], :] @ kernel[i, j]
    return out


def _numpy_max_pool5(x):
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], constant_values=-np.inf)
    windows = [padded[:, i:i + x.shape[1], j:j + x.shape[2], :] for i in range(5) for j in range(5)]
    return np.max(windows, axis=0)


def test_instance_norm_plus_plus_matches_numpy():
    rng = _rng()
    x = rng.normal(size=(2, 5, 6, 4)) * rng.uniform(0.5, 3.0, size=4) + rng.normal(size=4) * 2.0
    norm = layers.InstanceNormPlusPlus()
    norm.build(x.shape)
    alpha, gamma, beta = rng.normal(size=(3, 4))
    _set(norm, alpha=alpha, gamma=gamma, beta=beta)

    means = x.mean(axis=(1, 2))
    standardised = (means - means.mean(-1, keepdims=True)) / np.sqrt(means.var(-1, ddof=1, keepdims=True) + 1e-5)
    h = (x - means[:, None, None]) / np.sqrt(x.var(axis=(1, 2))[:, None, None] + 1e-5)
    expected = gamma * (h + alpha * standardised[:, None, None]) + beta

    np.testing.assert_allclose(norm(tf.constant(x, tf.float32)).numpy(), expected, atol=2e-5, rtol=1e-5)


def test_instance_norm_plus_plus_init_and_bad_input():
    norm = layers.InstanceNormPlusPlus()
    norm.build((None, None, None, 4096))
    for weight in (norm.alpha, norm.gamma):
        assert abs(np.mean(weight.numpy()) - 1.0) < 0.002
        assert abs(np.std(weight.numpy()) - 0.02) < 0.002
    assert not np.any(norm.beta.numpy())
    with pytest.raises(ValueError, match="at least 2 channels"):
        layers.InstanceNormPlusPlus().build((None, 4, 4, 1))


def test_group_norm_matches_numpy():
    rng = _rng()
    x = rng.normal(size=(2, 3, 5, 6)) * 3.0 + 1.0
    norm = layers.GroupNorm(groups=3)
    norm.build(x.shape)
    gamma, beta = rng.normal(size=(2, 6))
    _set(norm, gamma=gamma, beta=beta)
    grouped = x.reshape(2, 3, 5, 3, 2)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + 1e-6)).reshape(x.shape) * gamma + beta
    np.testing.assert_allclose(norm(tf.constant(x, tf.float32)).numpy(), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="groups"):
        layers.GroupNorm(groups=4).build((None, 8, 8, 6))


def test_group_norm_gradients_match_keras_group_normalization():
    rng = _rng()
    x = tf.constant(rng.normal(size=(2, 4, 5, 8)) * 3.0 + 1.0, tf.float32)
    weights = tf.constant(rng.normal(size=x.shape), tf.float32)
    ours, keras_norm = layers.GroupNorm(groups=4), tf.keras.layers.GroupNormalization(groups=4, epsilon=1e-6)
    for norm in (ours, keras_norm):
        norm.build(x.shape)
        _set(norm, gamma=rng.normal(size=8), beta=rng.normal(size=8))
    _set(keras_norm, gamma=ours.gamma.numpy(), beta=ours.beta.numpy())
    gradients = []
    for norm in (ours, keras_norm):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(norm(x) * weights)
        gradients.append(tape.gradient(loss, [x, norm.gamma, norm.beta]))
    for own, expected in zip(*gradients):
        np.testing.assert_allclose(own.numpy(), expected.numpy(), atol=1e-4, rtol=1e-4)


def test_conv_padding_dilation_and_default_init():
    rng = _rng()
    x = tf.constant(rng.normal(size=(2, 8, 8, 3)), tf.float32)
    conv = layers.Conv(5, 3, strides=2, padding=1)
    conv.build(x.shape)
    bound = 1.0 / np.sqrt(27)  # PyTorch default: U(+-1/sqrt(fan_in)) for kernel and bias
    assert np.abs(conv.kernel.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
    # PyTorch's padding=1 with stride 2 pads both sides (TF's "SAME" would pad only bottom/right).
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), conv.kernel, 2, "VALID") + conv.bias
    np.testing.assert_allclose(conv(x).numpy(), expected.numpy(), atol=1e-5)


def _filter_gradient_formats(function):
    """The data formats of the filter-gradient convolutions in a tf.function's graph and its functions."""
    graph = function.get_concrete_function().graph.as_graph_def()
    nodes = [*graph.node, *(node for library in graph.library.function for node in library.node_def)]
    return [node.attr["data_format"].s.decode() for node in nodes if node.op == "Conv2DBackpropFilter"]


def _conv_gradients(convolve, x, kernel, strides=1, padding="SAME"):
    """d/d(x, kernel) of sum(conv(x, kernel)^2) / 2."""
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        loss = tf.reduce_sum(tf.square(tf.cast(convolve(x, kernel, strides, padding), tf.float32))) / 2
    return tape.gradient(loss, [x, kernel])


@pytest.mark.parametrize("size, channels, kernel_size, strides, padding",
                         [(8, (3, 5), 3, 1, "SAME"), (9, (4, 6), 3, 2, "VALID"), (11, (4, 6), 3, 2, "SAME"),
                          (8, (5, 2), 1, 1, "SAME")])
def test_conv2d_gradients_equal_tensorflows(size, channels, kernel_size, strides, padding, monkeypatch):
    monkeypatch.setattr(layers, "NCHW_FILTER_GRADIENT_MIN_WORK", 1)  # these small convolutions too
    rng = _rng()
    x = tf.constant(rng.normal(size=(2, size, size + 1, channels[0])), tf.float32)
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, *channels)), tf.float32)
    own = tf.function(lambda: _conv_gradients(layers.conv2d, x, kernel, strides, padding))
    for got, expected in zip(own(), _conv_gradients(tf.nn.conv2d, x, kernel, strides, padding)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=1e-5)
    # the suite runs with oneDNN on (asm_tf is imported first), so the filter gradient takes the NCHW kernel
    assert layers.nchw_filter_gradient_available() and _filter_gradient_formats(own) == ["NCHW"]


@pytest.mark.parametrize("size, channels, dtype, expected", [
    (8, 256, tf.float32, "NCHW"), (4, 512, tf.float32, "NHWC"),  # the CIFAR-10 UNet's 8x8 and 4x4 levels
    (16, 32, tf.float32, "NHWC"),  # the quick start's first level
    (8, 256, tf.bfloat16, "NHWC")])
def test_conv2d_takes_the_nchw_filter_gradient_for_large_float32_convolutions(size, channels, dtype, expected):
    x, kernel = tf.ones([1, size, size, channels], dtype), tf.ones([3, 3, channels, channels], dtype) / 1000
    own = tf.function(lambda: _conv_gradients(layers.conv2d, x, kernel))
    for got, reference in zip(own(), _conv_gradients(tf.nn.conv2d, x, kernel)):
        np.testing.assert_allclose(got.numpy(), reference.numpy(), rtol=1e-5 if dtype == tf.float32 else 0)
    assert _filter_gradient_formats(own) == [expected]


def test_conv2d_without_onednn_keeps_tensorflows_kernels():
    """TF_ENABLE_ONEDNN_OPTS=0 (which asm_tf honours) leaves no NCHW filter-gradient kernel: the probe says so."""
    script = ("import tensorflow as tf\n"
              "from asm_tf.models import layers\n"
              "x, k = tf.ones([2, 9, 9, 3]), tf.ones([3, 3, 3, 4])\n"
              "with tf.GradientTape() as tape:\n"
              "    tape.watch(k)\n"
              "    loss = tf.reduce_sum(layers.conv2d(x, k))\n"
              "print(layers.nchw_filter_gradient_available(), float(tf.reduce_sum(tape.gradient(loss, k))))\n")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # a tap at offsets (i, j) sees 2 x (9 - |i|) x (9 - |j|) ones; over the 9 taps, 2 x 25^2, for 3 x 4 channels
    assert result.stdout.split() == ["False", str(float(2 * 3 * 4 * 25 ** 2))]


def test_dilated_conv_matches_tf_and_has_gradients():
    rng = _rng()
    for size, dilation in [(8, 2), (7, 2), (6, 4)]:
        x = tf.constant(rng.normal(size=(2, size, size + 1, 3)), tf.float32)
        conv = layers.Conv(4, 3, dilation=dilation, use_bias=False)
        conv.build(x.shape)
        expected = tf.nn.convolution(x, conv.kernel, padding="SAME", dilations=dilation)
        np.testing.assert_allclose(conv(x).numpy(), expected.numpy(), atol=1e-5)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(conv(x)))
        assert float(tf.norm(tape.gradient(loss, conv.kernel))) > 0
    with pytest.raises(ValueError, match="dilated"):
        layers.Conv(4, 3, dilation=2, strides=2)


def test_spectral_norm_bounds_the_largest_singular_value():
    conv = layers.Conv(6, 3, spectral_norm=True)
    conv.build((None, None, None, 4))
    conv.kernel.assign(conv.kernel * 10.0)
    x = tf.ones((1, 5, 5, 4))
    for _ in range(30):
        conv(x, training=True)
    matrix = tf.reshape(conv.normalized_kernel(), [-1, 6]).numpy()
    np.testing.assert_allclose(np.linalg.norm(matrix, 2), 1.0, rtol=1e-3)
    assert [w.name for w in conv.non_trainable_weights] == ["sn_u"]


def test_conv_mean_pool_averages_the_four_subgrids_and_pads_odd_sizes():
    rng = _rng()
    pool = layers.ConvMeanPool(3, 3)
    pool.build((None, None, None, 2))
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    full = _numpy_conv_same(x, pool.conv.kernel.numpy()) + pool.conv.bias.numpy()
    expected = (full[:, ::2, ::2] + full[:, 1::2, ::2] + full[:, ::2, 1::2] + full[:, 1::2, 1::2]) / 4
    np.testing.assert_allclose(pool(x).numpy(), expected, atol=1e-5)

    odd = rng.normal(size=(1, 7, 7, 2)).astype(np.float32)
    padded = np.pad(odd, [(0, 0), (1, 0), (1, 0), (0, 0)])  # the reference's adjust_padding (28x28 inputs)
    np.testing.assert_allclose(pool(odd).numpy(), pool(padded).numpy(), atol=1e-6)
    assert pool(odd).shape == (1, 4, 4, 3)


def test_resize_align_corners_keeps_corners_and_is_linear():
    ramp = tf.reshape(tf.range(4, dtype=tf.float32), [1, 4, 1, 1]) * tf.ones([1, 1, 4, 1])
    resized = layers.resize_align_corners(ramp, tf.zeros([1, 7, 7, 1]))
    np.testing.assert_allclose(resized.numpy()[0, :, 0, 0], np.linspace(0.0, 3.0, 7), atol=1e-6)


def test_chained_residual_pooling_uses_5x5_max_pools():
    rng = _rng()
    crp = layers.ChainedResidualPooling()
    crp.build((None, None, None, 3))
    identity = np.zeros((3, 3, 3, 3), np.float32)
    identity[1, 1] = np.eye(3)
    for conv in crp.convs:
        conv.kernel.assign(identity)
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    elu = np.where(x > 0, x, np.expm1(x))
    once = _numpy_max_pool5(elu)
    np.testing.assert_allclose(crp(x).numpy(), elu + once + _numpy_max_pool5(once), atol=1e-6)


def test_residual_conv_units_are_residual():
    rcu = layers.ResidualConvUnits(3)
    rcu.build((None, None, None, 4))
    for unit in rcu.convs:
        unit[-1].kernel.assign(tf.zeros_like(unit[-1].kernel))
    x = tf.random.normal((1, 5, 5, 4), seed=1)
    np.testing.assert_allclose(rcu(x).numpy(), x.numpy())
    assert len(rcu.trainable_weights) == 6  # 3 units x 2 convs, no biases


def test_refine_block_fuses_inputs_to_the_first_input_size():
    block = layers.RefineBlock(6, end=True)
    block.build([(None, None, None, 4), (None, None, None, 8)])
    out = block([tf.zeros((2, 8, 8, 4)), tf.zeros((2, 4, 4, 8))])
    assert out.shape == (2, 8, 8, 6)
    assert len(block.output_units.convs) == 3
    with pytest.raises(ValueError, match="single-input RefineBlock"):
        layers.RefineBlock(6).build([(None, None, None, 4)])


def test_residual_block_resampling_modes():
    x = tf.random.normal((1, 8, 8, 4), seed=2)
    for resample, dilation, size, shortcut_kernel in [(None, 1, 8, 1), ("down", 1, 4, 1), ("down", 2, 8, 3),
                                                      (None, 4, 8, 3)]:
        block = layers.ResidualBlock(6, resample=resample, dilation=dilation)
        assert block(x).shape == (1, size, size, 6)
        shortcut = block.shortcut.conv if resample and dilation == 1 else block.shortcut
        assert shortcut.kernel.shape == (shortcut_kernel, shortcut_kernel, 4, 6)
    same = layers.ResidualBlock(4)
    same.build(x.shape)
    assert same.shortcut is None
    with pytest.raises(ValueError, match="resample"):
        layers.ResidualBlock(4, resample="up")


def test_self_attention_matches_numpy():
    rng = _rng()
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    attention = layers.UNetSelfAttention(norm_groups=2)
    attention.build(x.shape)
    for variable in attention.kernels + attention.biases:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32) * 0.5)
    grouped = x.reshape(2, 3, 4, 2, 2)
    h = ((grouped - grouped.mean(axis=(1, 2, 4), keepdims=True))
         / np.sqrt(grouped.var(axis=(1, 2, 4), keepdims=True) + 1e-6)).reshape(2, 12, 4)
    wq, wk, wv, wo = (k.numpy() for k in attention.kernels)
    bq, bk, bv, bo = (b.numpy() for b in attention.biases)
    q, k, v = h @ wq + bq, h @ wk + bk, h @ wv + bv
    logits = q @ k.transpose(0, 2, 1) / 2.0
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = x + ((weights @ v) @ wo + bo).reshape(x.shape)
    np.testing.assert_allclose(attention(x).numpy(), expected, atol=1e-4)
