"""BigGAN discriminator: parameter counts, layout, spectral normalisation, forward passes; toy discriminator."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from asm_tf.models import discriminator as disc

REFERENCE_COUNTS = {28: 4_204_801, 32: 4_204_801, 64: 19_542_721, 128: 38_424_258, 256: 43_421_890}
ATTENTION_STAGES = {28: [], 32: [], 64: [], 128: ["attention0"], 256: ["attention1"]}


@pytest.mark.parametrize("side", sorted(REFERENCE_COUNTS))
def test_parameter_counts_and_attention_match_the_reference(side):
    model = disc.BigGANDiscriminator()  # ch=64, attention at the 64x64 stage, as the reference's config
    model.build((None, side, side, 3))
    assert disc.count_trainable_parameters(model) == REFERENCE_COUNTS[side]
    assert [stage.name for stage in model.stages if stage.name.startswith("attention")] == ATTENTION_STAGES[side]
    # The singular vectors are buffers: one [1, out] vector per SN layer, none of them trainable.
    assert model.non_trainable_weights
    assert all(w.path.endswith("singular_vector") for w in model.non_trainable_weights)


def test_unsupported_shapes_are_refused():
    with pytest.raises(ValueError, match="up to 32 and 64, 128, 256"):
        disc.BigGANDiscriminator(ch=4).build((None, 48, 48, 3))
    with pytest.raises(ValueError, match="square"):
        disc.BigGANDiscriminator(ch=4).build((None, 32, 16, 3))


def test_forward_pass_small_model_with_attention_in_a_graph():
    keras.utils.set_random_seed(0)
    model = disc.BigGANDiscriminator(ch=8, attention_resolutions=(16,))
    images = tf.random.stateless_uniform([3, 32, 32, 3], seed=[1, 2])
    logits = model(images, training=True)
    assert logits.shape == (3,)
    assert [stage.name for stage in model.stages] == ["block0", "attention0", "block1", "block2", "block3"]
    graph_call = tf.function(lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    eval_logits = graph_call(images).numpy()
    assert np.all(np.isfinite(eval_logits))
    # Per-example: an example's logit does not depend on the rest of the batch.
    np.testing.assert_allclose(graph_call(images[:1]).numpy(), eval_logits[:1], rtol=1e-5, atol=1e-5)


def test_attention_is_the_identity_at_initialisation():
    layer = disc.BigGANSelfAttention()
    x = tf.random.stateless_normal([2, 8, 8, 16], seed=[3, 4])
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    assert float(layer.gamma) == 0.0


def test_initialisation_is_xavier_uniform_with_pytorch_biases():
    keras.utils.set_random_seed(1)
    layer = disc.SNConv2D(64, 3)
    layer.build((None, 8, 8, 32))
    fan_in, fan_out = 3 * 3 * 32, 3 * 3 * 64
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    assert np.abs(bias).max() <= 1.0 / np.sqrt(fan_in) and np.abs(bias).max() > 0.9 / np.sqrt(fan_in)


def _top_singular_value(kernel):
    return np.linalg.svd(np.reshape(kernel, (-1, kernel.shape[-1])), compute_uv=False)[0]


def test_power_iteration_converges_and_u_moves_only_in_training():
    keras.utils.set_random_seed(2)
    layer = disc.SNDense(6)
    x = tf.random.stateless_normal([4, 10], seed=[5, 6])
    layer.build(x.shape)
    kernel_before = layer.kernel.numpy()
    u_before = layer.singular_vector.numpy()
    layer(x, training=False)
    np.testing.assert_array_equal(layer.singular_vector.numpy(), u_before)
    for _ in range(60):
        layer(x, training=True)
    assert not np.allclose(layer.singular_vector.numpy(), u_before)
    # The raw weight is the parameter: forward passes never rewrite it (unlike keras.layers.SpectralNormalization).
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel_before)
    normalized = layer.normalized_kernel(training=False).numpy()
    assert _top_singular_value(normalized) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(normalized * _top_singular_value(kernel_before), kernel_before, rtol=1e-4)


def test_gradient_flows_through_sigma():
    # W / sigma(W) is invariant to rescaling W, so with the gradient through sigma (BigGAN, PyTorch) the
    # gradient is orthogonal to W; without it (Keras's projection) it is not.
    keras.utils.set_random_seed(3)
    layer = disc.SNConv2D(5, 3)
    x = tf.random.stateless_normal([2, 6, 6, 4], seed=[7, 8])
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
    grad = tape.gradient(loss, layer.kernel).numpy()
    kernel = layer.kernel.numpy()
    cosine = np.sum(grad * kernel) / (np.linalg.norm(grad) * np.linalg.norm(kernel))
    assert abs(cosine) < 1e-4


def test_singular_vectors_stay_in_sync_across_two_replicas(mirrored):
    images = tf.random.stateless_uniform([4, 8, 8, 3], seed=[9, 10])
    results = []
    for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
        strategy = mirrored(devices)
        keras.utils.set_random_seed(4)
        with strategy.scope():
            model = disc.BigGANDiscriminator(ch=4)
            model.build(images.shape)
        batches = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(images), tf.distribute.InputOptions())
        batch = next(iter(batches))
        logits = strategy.run(tf.function(lambda x: model(x, training=True)), (batch,))
        logits = np.concatenate([t.numpy() for t in strategy.experimental_local_results(logits)])
        u = model.stages[0].conv1.singular_vector
        values = [t.numpy() for t in strategy.experimental_local_results(u)]
        for value in values[1:]:
            np.testing.assert_array_equal(value, values[0])
        results.append((logits, values[0]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)


def test_toy_discriminator_is_the_toy_mlp_with_one_output():
    model = disc.toy_discriminator(hidden=16, depth=2)
    assert model(tf.zeros([5, 2])).shape == (5, 1)


def test_gin_configures_the_discriminator():
    gin.clear_config()
    try:
        gin.parse_config("BigGANDiscriminator.ch = 4\nBigGANDiscriminator.attention_resolutions = (8,)")
        model = gin.get_configurable("BigGANDiscriminator")()
        model.build((None, 16, 16, 1))
        assert model.ch == 4 and any(stage.name.startswith("attention") for stage in model.stages)
    finally:
        gin.clear_config()
