"""The reference's unconditional UNet: parameter counts, shapes, initialisation, dropout, gradients, distribution."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from asm_tf.models.unet import ResnetBlock, UNet, Upsample


def tiny_unet(**options):
    return UNet(ch=8, norm_groups=4, **options)


@pytest.mark.parametrize("ch_mult, size, expected", [
    ((1, 2, 2, 2), 32, 32_856_707),
    ((1, 2, 2, 2, 4, 4), 256, 111_218_563),  # the reference's "deeper" variant, counted only
])
def test_parameter_counts_match_the_reference(ch_mult, size, expected):
    network = UNet(ch_mult=ch_mult)
    network.build((None, size, size, 3))
    assert network.count_params() == expected


@pytest.mark.parametrize("size, ch_mult", [(28, (1, 2, 2)), (32, (1, 2, 2, 2)), (64, (1, 2, 2, 2)),
                                           (128, (1, 2, 2, 2))])
def test_output_has_the_input_shape(size, ch_mult):
    network = tiny_unet(ch_mult=ch_mult)
    x = tf.random.uniform((1, size, size, 3), seed=0)
    assert network(x).shape == x.shape


def test_structure_of_the_reference():
    network = tiny_unet()
    network.build((None, 32, 32, 3))
    down_kinds = [[type(layer).__name__ for layer in step] for step in network.down_steps]
    assert down_kinds == [["ResnetBlock"]] * 2 + [["Downsample"]] + [["ResnetBlock", "UNetSelfAttention"]] * 2 + [
        ["Downsample"]] + [["ResnetBlock"]] * 2 + [["Downsample"]] + [["ResnetBlock"]] * 2
    up_blocks = [step for step in network.up_steps if not isinstance(step[0], Upsample)]
    assert len(up_blocks) == 4 * 3
    assert sum(len(step) == 2 for step in up_blocks) == 3  # attention at level 1 going up
    assert [type(layer).__name__ for layer in network.middle] == ["ResnetBlock", "UNetSelfAttention", "ResnetBlock"]


def test_initialisation_follows_the_reference():
    network = UNet(ch=32, norm_groups=8)
    network.build((None, 16, 16, 3))
    down_conv = network.down_steps[0][0].conv1
    bound = np.sqrt(3 * 0.5 / (9 * (32 + 32) / 2))  # xavier_uniform, gain sqrt(1/2)
    assert np.abs(down_conv.kernel.numpy()).max() <= bound
    assert np.abs(down_conv.kernel.numpy()).max() > 0.95 * bound
    assert not np.any(down_conv.bias.numpy())
    up_conv = network.up_steps[0][0].conv1  # PyTorch default: U(+-1/sqrt(fan_in)), biases too
    assert np.abs(up_conv.kernel.numpy()).max() <= 1 / np.sqrt(9 * 64)
    assert np.any(up_conv.bias.numpy())
    attention = network.middle[1]
    assert np.abs(attention.kernels[3].numpy()).max() < 1e-5  # output map near zero: identity at init
    assert np.abs(attention.kernels[0].numpy()).max() > 0.1


def test_channel_dropout_only_in_training():
    block = ResnetBlock(8, dropout=0.5, norm_groups=4)
    x = tf.random.normal((2, 6, 6, 8), seed=1)
    np.testing.assert_array_equal(block(x).numpy(), block(x, training=False).numpy())
    assert type(block.channel_dropout).__name__ == "SpatialDropout2D"  # drops whole channels
    assert not np.allclose(block(x, training=True).numpy(), block(x).numpy())
    plain = ResnetBlock(8, norm_groups=4)
    plain.build(x.shape)
    assert plain.channel_dropout is None


def test_bad_configurations_get_clear_errors():
    with pytest.raises(ValueError, match="attn_levels"):
        UNet(attn_levels=(4,))
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny_unet()(tf.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match="groups"):
        UNet(ch=8)(tf.zeros((1, 16, 16, 3)))


def test_gradients_reach_every_trainable_variable():
    network = tiny_unet(dropout=0.1)
    x = tf.random.uniform((2, 16, 16, 3), seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(network(x, training=True) - x))
    gradients = tape.gradient(loss, network.trainable_variables)
    missing = [v.path for v, g in zip(network.trainable_variables, gradients)
               if g is None or not np.any(g.numpy())]
    assert not missing


def test_trains_under_mirrored_strategy_with_two_replicas(train_two_replicas):
    # two levels and one block per level: every kind of layer, quick to trace
    losses, network = train_two_replicas(lambda: tiny_unet(ch_mult=(1, 2), num_res_blocks=1, dropout=0.1))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    replicas = [v.numpy() for v in network.conv_in.kernel.value.values]
    np.testing.assert_array_equal(replicas[0], replicas[1])


def test_gin_configures_the_network():
    with gin.unlock_config():
        gin.parse_config(["UNet.ch_mult = (1, 2, 2, 2, 4, 4)", "UNet.dropout = 0.1"])
    try:
        network = gin.get_configurable("UNet")()
    finally:
        gin.clear_config()
    assert (network.ch_mult, network.dropout) == ((1, 2, 2, 2, 4, 4), 0.1)


def test_mixed_precision_keeps_float32_weights_and_statistics(check_mixed_precision):
    check_mixed_precision(tiny_unet)
