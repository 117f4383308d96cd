"""GAN losses against hand computations; global-batch reduction across two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from asm_tf.training import gan_losses

REAL = np.array([1.5, -0.5, 0.25, 2.0], np.float32)
FAKE = np.array([-1.0, 0.5, 3.0, -0.25], np.float32)


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _bce(logits, label):  # -[label log sigmoid(x) + (1 - label) log(1 - sigmoid(x))]
    return _softplus(logits) - label * logits


def _relu(x):
    return np.maximum(x, 0.0)


def _hand(r, f):
    """(D loss, G loss) of every loss, written out from the table in docs/algorithm.md#gan-losses with NumPy means."""
    m = np.mean
    return {
        "GAN": (m(_bce(r, 1)) + m(_bce(f, 0)), m(_bce(f, 1))),
        "WGAN": (m(f) - m(r), -m(f)),
        "HingeGAN": (m(_relu(1 - r)) + m(_relu(1 + f)), -m(f)),
        "RpGAN": (2 * m(_bce(r - f, 1)), 2 * m(_bce(f - r, 1))),
        "RaGAN": (m(_bce(r - m(f), 1)) + m(_bce(f - m(r), 0)), m(_bce(r - m(f), 0)) + m(_bce(f - m(r), 1))),
        "LSGAN": (m((r - 1) ** 2) + m((f + 1) ** 2), m((f - 1) ** 2)),
        "LSGAN_sat": (m((r - 1) ** 2) + m((f + 1) ** 2), -m((f + 1) ** 2)),
        "RpLSGAN": (2 * m((r - f - 1) ** 2), 2 * m((f - r - 1) ** 2)),
        "RaLSGAN": (m((r - m(f) - 1) ** 2) + m((f - m(r) + 1) ** 2), m((r - m(f) + 1) ** 2) + m((f - m(r) - 1) ** 2)),
        "RaHingeGAN": (m(_relu(1 - (r - m(f)))) + m(_relu(1 + (f - m(r)))),
                       m(_relu(1 + (r - m(f)))) + m(_relu(1 - (f - m(r))))),
        "LSGAN01": (m((r - 1) ** 2) + m(f ** 2), m((f - 1) ** 2)),
    }


def test_the_table_has_the_ten_losses_and_the_notebooks_lsgan():
    assert sorted(gan_losses.GAN_LOSSES) == sorted(_hand(REAL, FAKE))
    assert gan_losses.gan_loss() is gan_losses.GAN_LOSSES["LSGAN"]


@pytest.mark.parametrize("name", sorted(_hand(REAL, FAKE)))
def test_each_loss_matches_the_hand_computation(name):
    expected_d, expected_g = _hand(REAL.astype(np.float64), FAKE.astype(np.float64))[name]
    loss = gan_losses.GAN_LOSSES[name]
    assert float(loss.discriminator_loss(REAL, FAKE)) == pytest.approx(expected_d, rel=1e-6, abs=1e-6)
    assert float(loss.generator_loss(REAL, FAKE)) == pytest.approx(expected_g, rel=1e-6, abs=1e-6)
    # [B, 1] logits (the toy MLP) give the same value; a global batch size outside a strategy changes nothing.
    assert float(loss.discriminator_loss(REAL[:, None], FAKE)) == pytest.approx(expected_d, rel=1e-6, abs=1e-6)
    assert float(loss.generator_loss(REAL, FAKE[:, None], global_batch_size=4)) == pytest.approx(
        expected_g, rel=1e-6, abs=1e-6)

    # The flag that lets the score step skip D(real) is true exactly when the generator loss reads r.
    uses_real = float(loss.generator_loss(REAL + 1.0, FAKE)) != pytest.approx(expected_g, rel=1e-6, abs=1e-6)
    assert loss.generator_uses_real == uses_real


def test_lsgan_by_hand_on_two_examples():
    # r = (1, 0), f = (-1, 1): D = mean(0, 1) + mean(0, 4) = 2.5; G = mean(4, 0) = 2.
    loss = gan_losses.GAN_LOSSES["LSGAN"]
    assert float(loss.discriminator_loss([1.0, 0.0], [-1.0, 1.0])) == pytest.approx(2.5)
    assert float(loss.generator_loss([1.0, 0.0], [-1.0, 1.0])) == pytest.approx(2.0)


def test_generator_losses_push_fakes_towards_real():
    fake = tf.constant([-1.0, 0.5, -0.25])  # all below the real target
    for name in ("LSGAN", "LSGAN_sat", "GAN", "HingeGAN", "LSGAN01"):
        with tf.GradientTape() as tape:
            tape.watch(fake)
            loss = gan_losses.GAN_LOSSES[name].generator_loss(REAL[:3], fake)
        assert np.all(tape.gradient(loss, fake).numpy() <= 0), name  # descending raises every fake logit


def test_bad_inputs_are_refused(mirrored):
    with pytest.raises(ValueError, match=r"\[B\] or \[B, 1\]"):
        gan_losses.GAN_LOSSES["LSGAN"].discriminator_loss(np.zeros([4, 2]), np.zeros([4]))
    with pytest.raises(ValueError, match="choose one of"):
        gan_losses.gan_loss("LSGAN2")
    strategy = mirrored()
    with strategy.scope(), pytest.raises(RuntimeError, match="strategy.run"):
        gan_losses.GAN_LOSSES["RaLSGAN"].discriminator_loss(REAL, FAKE, global_batch_size=4)


@pytest.mark.parametrize("name", sorted(gan_losses.GAN_LOSSES))
def test_two_replicas_equal_one_device_in_value_and_gradient(name, mirrored):
    loss = gan_losses.GAN_LOSSES[name]
    strategy = mirrored()
    with strategy.scope():
        weight = tf.Variable(1.3)

    def replica_step(real, fake):
        values, grads = [], []
        for loss_fn in (loss.discriminator_loss, loss.generator_loss):
            with tf.GradientTape() as tape:
                value = loss_fn(weight * real, weight**2 * fake, global_batch_size=4)
            values.append(value)
            grads.append(tape.gradient(value, weight))
        return values, grads

    def halves(array):
        return strategy.experimental_distribute_values_from_function(
            lambda context: array[2 * context.replica_id_in_sync_group:2 * context.replica_id_in_sync_group + 2])

    @tf.function
    def distributed():
        values, grads = strategy.run(replica_step, (halves(REAL), halves(FAKE)))
        return [strategy.reduce("SUM", t, axis=None) for t in values + grads]

    single_weight = tf.Variable(1.3)
    expected = []
    for loss_fn in (loss.discriminator_loss, loss.generator_loss):
        with tf.GradientTape() as tape:
            value = loss_fn(single_weight * REAL, single_weight**2 * FAKE)
        expected.append((value, tape.gradient(value, single_weight)))
    got = distributed()
    np.testing.assert_allclose([t.numpy() for t in got],
                               [float(v) for v, _ in expected] + [float(g) for _, g in expected], rtol=2e-6)
