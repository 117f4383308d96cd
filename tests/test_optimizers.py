"""TorchAdam against a NumPy PyTorch-Adam, negative beta_1 included; factory, gin scopes, two replicas."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from asm_tf.training import optimizers

LEARNING_RATE = 1e-2


def numpy_torch_adam(initial, gradients, beta_1, beta_2, epsilon):
    """Parameters after each step: theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), float64."""
    theta = initial.astype(np.float64)
    m, v, history = np.zeros_like(theta), np.zeros_like(theta), []
    for t, grad in enumerate(gradients, start=1):
        m = beta_1 * m + (1 - beta_1) * grad
        v = beta_2 * v + (1 - beta_2) * grad**2
        m_hat, v_hat = m / (1 - beta_1**t), v / (1 - beta_2**t)
        theta = theta - LEARNING_RATE * m_hat / (np.sqrt(v_hat) + epsilon)
        history.append(theta)
    return history


def _problem(seed, gradient_scale):
    rng = np.random.default_rng(seed)
    initial = rng.normal(size=7).astype(np.float32)
    gradients = [(gradient_scale * rng.normal(size=7)).astype(np.float32) for _ in range(5)]
    return initial, gradients


def _run(optimizer, initial, gradients):
    variable = tf.Variable(initial)
    history = []
    for grad in gradients:
        optimizer.apply_gradients([(tf.constant(grad), variable)])
        history.append(variable.numpy().astype(np.float64))
    return history


def _max_error_relative_to_step(history, expected, initial):
    errors = []
    previous = initial.astype(np.float64)
    for got, want in zip(history, expected):
        errors.append(np.max(np.abs(got - want)) / np.max(np.abs(want - previous)))
        previous = want
    return max(errors)


# (epsilon, gradient scale): the usual regime, FFHQ's epsilon, and gradients small enough for epsilon to matter.
REGIMES = [(1e-8, 1.0), (1e-3, 1e-3), (1e-8, 1e-7)]


@pytest.mark.parametrize("beta_1", [-0.5, 0.0, 0.9])
@pytest.mark.parametrize("epsilon,gradient_scale", REGIMES)
def test_matches_numpy_pytorch_adam_for_five_steps(beta_1, epsilon, gradient_scale):
    initial, gradients = _problem(seed=int(10 * beta_1) + 100, gradient_scale=gradient_scale)
    expected = numpy_torch_adam(initial, gradients, beta_1, 0.9, epsilon)
    optimizer = optimizers.adam(learning_rate=LEARNING_RATE, beta_1=beta_1, beta_2=0.9, epsilon=epsilon)
    assert _max_error_relative_to_step(_run(optimizer, initial, gradients), expected, initial) < 1e-4


def test_negative_beta_bias_correction_oscillates():
    # With beta_1 = -0.5 and constant gradients g, m_hat = g at every step: the step is lr * g / (|g| + eps').
    initial = np.zeros(1, np.float32)
    history = _run(optimizers.adam(learning_rate=0.1, beta_1=-0.5, beta_2=0.9), initial, [np.ones(1, np.float32)] * 5)
    np.testing.assert_allclose(np.concatenate(history), -0.1 * np.arange(1, 6), rtol=1e-5)


def test_keras_adam_places_epsilon_differently():
    # Why TorchAdam exists: Keras adds epsilon to sqrt(v), not to sqrt(v_hat).
    initial, gradients = _problem(seed=7, gradient_scale=1e-3)
    expected = numpy_torch_adam(initial, gradients, -0.5, 0.9, 1e-3)
    keras_adam = keras.optimizers.Adam(LEARNING_RATE, beta_1=-0.5, beta_2=0.9, epsilon=1e-3)
    assert _max_error_relative_to_step(_run(keras_adam, initial, gradients), expected, initial) > 0.1


def test_invalid_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.TorchAdam(beta_1=1.0)
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.TorchAdam(beta_1=-1.5)
    with pytest.raises(ValueError, match="beta_2"):
        optimizers.TorchAdam(beta_2=-0.1)
    with pytest.raises(ValueError, match="epsilon"):
        optimizers.TorchAdam(epsilon=-1e-8)


def test_config_round_trip():
    optimizer = optimizers.TorchAdam(learning_rate=3e-4, beta_1=-0.5, beta_2=0.9, epsilon=1e-3)
    clone = optimizers.TorchAdam.from_config(optimizer.get_config())
    assert (clone.beta_1, clone.beta_2, clone.epsilon) == (-0.5, 0.9, 1e-3)
    assert float(clone.learning_rate) == pytest.approx(3e-4)


def test_gin_scopes_give_each_network_its_betas():
    gin.clear_config()
    try:
        gin.parse_config("score/adam.beta_1 = 0.0\ndiscriminator/adam.beta_1 = -0.5\nadam.beta_2 = 0.9")
        with gin.config_scope("score"):
            score_optimizer = optimizers.adam()
        with gin.config_scope("discriminator"):
            d_optimizer = optimizers.adam()
    finally:
        gin.clear_config()
    assert (score_optimizer.beta_1, score_optimizer.beta_2) == (0.0, 0.9)
    assert (d_optimizer.beta_1, d_optimizer.beta_2) == (-0.5, 0.9)
    assert float(d_optimizer.learning_rate) == pytest.approx(1e-4)


def test_two_replicas_take_the_single_device_step(mirrored):
    initial, gradients = _problem(seed=3, gradient_scale=1.0)
    expected = numpy_torch_adam(initial, gradients, -0.5, 0.9, 1e-8)
    strategy = mirrored()
    with strategy.scope():
        variable = tf.Variable(initial)
        optimizer = optimizers.adam(learning_rate=LEARNING_RATE, beta_1=-0.5, beta_2=0.9)
        optimizer.build([variable])

    @tf.function
    def step(grad):
        def replica_fn():  # each replica contributes half of the gradient; the optimizer sums them
            optimizer.apply_gradients([(grad / 2.0, variable)])
        strategy.run(replica_fn)

    for grad, want in zip(gradients, expected):
        step(tf.constant(grad))
        for value in strategy.experimental_local_results(variable):
            np.testing.assert_allclose(value.numpy(), want, rtol=1e-5, atol=1e-6)
