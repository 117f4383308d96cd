"""The reference's UNet, unconditional and noise-conditional: parameter counts, shapes, initialisation, dropout,
the noise embedding, gradients, distribution."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from asm_tf.models.unet import ResnetBlock, UNet, Upsample, ladder_positions, timestep_embedding
from asm_tf.noise_levels.schedule import ladder

LEVELS = ladder(1.0, 0.01, 5)


def tiny_unet(**options):
    return UNet(ch=8, norm_groups=4, **options)


def conditional(conditioning="index", **options):
    return tiny_unet(conditioning=conditioning, levels=LEVELS if conditioning == "index" else None, **options)


@pytest.mark.parametrize("ch_mult, size, conditioning, expected", [
    ((1, 2, 2, 2), 32, None, 32_856_707),
    ((1, 2, 2, 2), 32, "continuous", 35_746_307),  # the reference's UNet(conditional=True)
    ((1, 2, 2, 2, 4, 4), 256, None, 111_218_563),  # the reference's "deeper" variant, counted only
])
def test_parameter_counts_match_the_reference(ch_mult, size, conditioning, expected):
    network = UNet(ch_mult=ch_mult, conditioning=conditioning)
    network.build((None, size, size, 3))
    assert network.count_params() == expected
    assert network.takes_sigma == (conditioning is not None)


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
        gin.parse_config(["UNet.ch_mult = (1, 2, 2, 2, 4, 4)", "UNet.dropout = 0.1", "UNet.conditioning = 'index'"])
    try:
        network = gin.get_configurable("UNet")()
    finally:
        gin.clear_config()
    assert (network.ch_mult, network.dropout, network.conditioning) == ((1, 2, 2, 2, 4, 4), 0.1, "index")
    assert network.takes_sigma and network.needs_levels


def test_mixed_precision_keeps_float32_weights_and_statistics(check_mixed_precision):
    check_mixed_precision(tiny_unet)


# ------------------------------------------------------------------------------------------- noise conditioning
def test_index_positions_are_the_level_indices_and_log_linear_between():
    levels = tf.constant(LEVELS, tf.float32)
    np.testing.assert_array_equal(ladder_positions(levels, levels).numpy(), np.arange(5))  # exact on the ladder
    between = np.sqrt(LEVELS[1:] * LEVELS[:-1])  # geometric midpoints
    beyond = [LEVELS[0] * 10 ** 0.5, LEVELS[-1] * 10 ** -1.0]  # half a level above, two below (ratio 10^-0.5)
    positions = ladder_positions(tf.constant(np.concatenate([between, beyond]), tf.float32), levels).numpy()
    np.testing.assert_allclose(positions, [0.5, 1.5, 2.5, 3.5, -1.0, 6.0], atol=1e-5)


def test_continuous_positions_are_1000_c_noise():
    network = conditional("continuous")
    sigma = tf.constant([0.01, 1.0, 50.0])
    np.testing.assert_allclose(network.sigma_positions(sigma, 3).numpy(), 1000 * np.log([0.01, 1.0, 50.0]) / 4,
                               rtol=1e-6)
    np.testing.assert_allclose(network.sigma_positions(tf.constant(2.0), 2).numpy(), [250 * np.log(2.0)] * 2, rtol=1e-6)


def test_the_embedding_is_ddpms_sinusoid():
    embedding = timestep_embedding(tf.constant([0.0, 3.0]), 8).numpy()
    frequencies = 10000.0 ** (-np.arange(4) / 3)
    np.testing.assert_allclose(embedding[1], np.concatenate([np.sin(3 * frequencies), np.cos(3 * frequencies)]),
                               rtol=1e-6)
    np.testing.assert_array_equal(embedding[0], [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("conditioning", ["index", "continuous"])
def test_the_output_depends_on_sigma_per_example(conditioning):
    network = conditional(conditioning)
    x = tf.random.uniform((1, 16, 16, 3), seed=6)
    both = tf.concat([x, x], axis=0)
    # the down path's second convs are xavier (not near zero), so the embedding reaches the output at init
    outputs = network(both, tf.constant([1.0, 0.01])).numpy()
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
    np.testing.assert_allclose(network(x, tf.constant([0.01])).numpy()[0], outputs[1], rtol=1e-5, atol=1e-6)


def test_embedding_layers_follow_the_reference_initialisation():
    network = UNet(ch=32, norm_groups=8, conditioning="continuous")
    network.build((None, 16, 16, 3))
    first, second = network.embedding_layers
    assert (first.kernel.shape, second.kernel.shape) == ((32, 128), (128, 128))
    assert np.abs(first.kernel.numpy()).max() <= np.sqrt(3 * 0.5 / ((32 + 128) / 2))  # xavier, gain sqrt(1/2)
    down, up = network.down_steps[0][0].dense, network.up_steps[0][0].dense
    assert not np.any(first.bias.numpy()) and not np.any(down.bias.numpy())  # xavier, zero biases
    assert np.abs(up.kernel.numpy()).max() <= 1 / np.sqrt(128) and np.any(up.bias.numpy())  # PyTorch default
    assert network.middle[0].dense is not None and network.down_steps[0][0].shortcut is None


def test_conditional_gradients_reach_every_trainable_variable():
    network = conditional(dropout=0.1)
    x = tf.random.uniform((2, 16, 16, 3), seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(network(x, tf.constant([0.5, 0.02]), training=True) - x))
    gradients = tape.gradient(loss, network.trainable_variables)
    assert not [v.path for v, g in zip(network.trainable_variables, gradients) if g is None or not np.any(g.numpy())]


def test_conditioning_errors_are_clear():
    x = tf.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="conditioning must be one of"):
        UNet(conditioning="sigma")
    with pytest.raises(ValueError, match="even ch of at least 4"):
        UNet(ch=5, norm_groups=5, conditioning="continuous")
    with pytest.raises(ValueError, match="at least 2 decreasing positive noise levels"):
        UNet(conditioning="index", levels=[0.1, 1.0])
    with pytest.raises(ValueError, match="needs sigma"):
        conditional()(x)
    with pytest.raises(ValueError, match="takes no sigma"):
        tiny_unet()(x, tf.ones([1]))
    with pytest.raises(ValueError, match="build the network with Experiment.build_score_network or pass levels"):
        tiny_unet(conditioning="index")(x, tf.ones([1]))


@pytest.mark.parametrize("conditioning", ["index", "continuous"])
def test_conditional_trains_under_mirrored_strategy_with_two_replicas(train_two_replicas, conditioning):
    losses, network = train_two_replicas(lambda: conditional(conditioning, ch_mult=(1, 2), num_res_blocks=1))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    replicas = [v.numpy() for v in network.embedding_layers[0].kernel.value.values]
    np.testing.assert_array_equal(replicas[0], replicas[1])


def test_conditional_mixed_precision(check_mixed_precision):
    check_mixed_precision(lambda: conditional("continuous"))
