"""NCSNv2 family: parameter counts of the reference, shapes, input mapping, gradients, distributed training."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from asm_tf.data import digits
from asm_tf.data.transforms import Transform
from asm_tf.experiment import Experiment
from asm_tf.models.ncsnv2 import NCSNv2, NCSNv2Deeper, NCSNv2Deepest


@pytest.mark.parametrize("network_class, options, size, expected", [
    (NCSNv2, {}, 32, 29_694_083),
    (NCSNv2, {"dilation": False}, 32, 28_645_507),
    (NCSNv2Deeper, {}, 64, 83_445_379),
    (NCSNv2Deepest, {}, 256, 94_132_611),
])
def test_parameter_counts_match_the_reference(network_class, options, size, expected):
    network = network_class(ngf=128, **options)
    network.build((None, size, size, 3))
    assert network.count_params() == expected
    assert not network.non_trainable_weights


@pytest.mark.parametrize("network_class, size, dilation", [
    (NCSNv2, 28, True), (NCSNv2, 28, False), (NCSNv2, 32, True), (NCSNv2, 32, False),
    (NCSNv2Deeper, 64, True), (NCSNv2Deeper, 128, True), (NCSNv2Deepest, 128, True),
])
def test_output_has_the_input_shape(network_class, size, dilation):
    network = network_class(ngf=4, dilation=dilation)
    x = tf.random.uniform((1, size, size, 3), seed=0)
    output = network(x)
    assert output.shape == x.shape
    assert np.all(np.isfinite(output.numpy()))


def test_stage_sizes_with_and_without_dilation():
    def stage_sizes(network, x):
        h, sizes = network.begin_conv(x), []
        for blocks in network.stages:
            for block in blocks:
                h = block(h)
            sizes.append(h.shape[1])
        return sizes

    x = tf.zeros((1, 32, 32, 3))
    dilated, plain = NCSNv2(ngf=4), NCSNv2(ngf=4, dilation=False)
    dilated.build(x.shape)
    plain.build(x.shape)
    assert stage_sizes(dilated, x) == [32, 16, 16, 16]
    assert stage_sizes(plain, x) == [32, 16, 8, 4]
    # dilated "down" blocks keep the size with a dilated 3x3 shortcut; plain ones use a 1x1 ConvMeanPool
    assert dilated.stages[3][0].shortcut.kernel.shape == (3, 3, 8, 8)
    assert plain.stages[3][0].shortcut.conv.kernel.shape == (1, 1, 8, 8)


def test_one_channel_data_and_wrong_channels():
    network = NCSNv2(ngf=4)
    assert network(tf.zeros((2, 16, 16, 1))).shape == (2, 16, 16, 1)
    with pytest.raises(ValueError, match="1 channels"):
        network(tf.zeros((2, 16, 16, 3)))


def test_input_mapping_is_2x_minus_1():
    x = tf.random.uniform((2, 16, 16, 3), seed=1)
    mapped, raw = NCSNv2(ngf=4), NCSNv2(ngf=4, map_input=False)
    mapped.build(x.shape)
    raw.build(x.shape)
    raw.set_weights(mapped.get_weights())
    np.testing.assert_allclose(mapped(x).numpy(), raw(2.0 * x - 1.0).numpy(), atol=1e-6)
    assert not np.allclose(mapped(x).numpy(), raw(x).numpy(), atol=1e-3)


def test_pytorch_default_initialisation():
    network = NCSNv2(ngf=16)
    network.build((None, 16, 16, 3))
    conv = network.stages[1][1].conv1
    bound = 1.0 / np.sqrt(9 * 32)
    for weight in (conv.kernel.numpy(), conv.bias.numpy()):
        assert np.abs(weight).max() <= bound
    assert np.abs(conv.kernel.numpy()).max() > 0.95 * bound


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_gradients_reach_every_trainable_variable(spectral_norm):
    network = NCSNv2(ngf=4, spectral_norm=spectral_norm)
    x = tf.random.uniform((2, 16, 16, 3), seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(network(x, training=True) - x))
    gradients = tape.gradient(loss, network.trainable_variables)
    missing = [v.path for v, g in zip(network.trainable_variables, gradients)
               if g is None or not np.any(g.numpy())]
    assert not missing
    assert bool(network.non_trainable_weights) == spectral_norm
    assert all(w.name == "sn_u" for w in network.non_trainable_weights)


def test_trains_under_mirrored_strategy_with_two_replicas(train_two_replicas):
    losses, network = train_two_replicas(lambda: NCSNv2(ngf=8))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    kernel = network.begin_conv.kernel.value
    replicas = [v.numpy() for v in kernel.values]
    np.testing.assert_array_equal(replicas[0], replicas[1])


def test_gin_configures_the_networks():
    with gin.unlock_config():
        gin.parse_config(["NCSNv2Deeper.ngf = 4", "NCSNv2Deeper.dilation = False"])
    try:
        network = gin.get_configurable("NCSNv2Deeper")()
    finally:
        gin.clear_config()
    assert (network.ngf, network.dilation) == (4, False)


def test_mixed_precision_keeps_float32_weights_and_statistics(check_mixed_precision):
    check_mixed_precision(lambda: NCSNv2(ngf=8))


@pytest.mark.parametrize("transform,mapped", [(Transform(), True), (Transform(rescale=True), False),
                                              (Transform(logit=True), False)])
def test_the_input_map_follows_the_datas_transform(transform, mapped):
    """The reference maps to 2x - 1 only data left in [0, 1]: rescaled or logit data would become 4x - 3."""
    experiment = Experiment(data=digits.digits(transform=transform), score_network=lambda: NCSNv2(ngf=4))
    network = experiment.build_score_network()
    x = tf.random.uniform((2, 16, 16, 1), seed=3)
    raw = NCSNv2(ngf=4, map_input=False)
    raw.build(x.shape)
    raw.set_weights(network.get_weights())
    np.testing.assert_allclose(network(x).numpy(), raw(2.0 * x - 1.0 if mapped else x).numpy(), atol=1e-6)
    if not mapped:
        with pytest.raises(ValueError, match="leave map_input unbound"):
            Experiment(data=digits.digits(transform=transform),
                       score_network=lambda: NCSNv2(ngf=4, map_input=True)).build_score_network()
