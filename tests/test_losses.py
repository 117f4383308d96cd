import numpy as np
import pytest
import tensorflow as tf

from asm_tf.evaluation.point_mass import PointMassScore
from asm_tf.noise_levels.schedule import NoiseSchedule
from asm_tf.score import ScoreModel
from asm_tf.training import dsm


class Scale(tf.Module):
    """net(x) = w * x: a network whose DSM loss is easy to compute by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = tf.Variable(w)

    def __call__(self, x, training=False):
        return self.w * x


def test_dsm_loss_on_a_hand_computed_case():
    x = tf.constant([[1.0, 2.0], [0.0, -1.0]])
    z = tf.constant([[0.5, -1.0], [2.0, 0.0]])
    sigma = tf.constant([0.1, 1.0])
    result = dsm.dsm_loss(ScoreModel(Scale(-0.5)), x, sigma, z)
    noisy = np.array([[1.05, 1.9], [2.0, -1.0]])
    out = -0.5 * noisy
    expected = 0.5 * np.sum((out + z.numpy()) ** 2, axis=1)
    np.testing.assert_allclose(result.loss.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(result.noisy.numpy(), noisy, rtol=1e-6)
    np.testing.assert_allclose(result.denoised.numpy(), noisy + np.array([[0.1], [1.0]]) * out, rtol=1e-6)
    # Per example [0.5 * ((-0.525+0.5)^2 + (-0.95-1)^2), 0.5 * ((-1+2)^2 + (0.5)^2)]:
    np.testing.assert_allclose(expected, [0.5 * (0.025**2 + 1.95**2), 0.5 * (1.0 + 0.25)], rtol=1e-6)


def test_the_perfect_network_has_zero_loss_and_denoises_exactly():
    x = tf.random.stateless_normal([4, 3, 3, 1], seed=[1, 2])
    z = tf.random.stateless_normal([4, 3, 3, 1], seed=[3, 4])
    sigma = tf.constant([0.5, 1.0, 2.0, 4.0])
    result = dsm.dsm_loss(ScoreModel(PointMassScore(x)), x, sigma, z)
    np.testing.assert_allclose(result.loss.numpy(), 0.0, atol=1e-8)
    np.testing.assert_allclose(result.denoised.numpy(), x.numpy(), atol=1e-5)


def test_levels_are_uniform_and_noise_is_per_example():
    seeds = tf.stack([tf.zeros(4000, tf.int64), tf.range(4000, dtype=tf.int64)], axis=1)
    sigma_values = tf.constant([3.0, 2.0, 1.0, 0.5])
    sigma, z = dsm.draw_perturbation(seeds, [2], sigma_values)
    counts = np.bincount(np.searchsorted(-sigma_values.numpy(), -sigma.numpy()), minlength=4)
    assert counts.min() > 900 and counts.max() < 1100
    assert abs(float(tf.math.reduce_std(z)) - 1.0) < 0.03
    sigma_part, z_part = dsm.draw_perturbation(seeds[10:13], [2], sigma_values)
    np.testing.assert_array_equal(z_part.numpy(), z.numpy()[10:13])
    np.testing.assert_array_equal(sigma_part.numpy(), sigma.numpy()[10:13])


def test_log_normal_levels_follow_their_probabilities_and_weight_to_mean_one():
    schedule = NoiseSchedule(8.0, 0.02, 12, train_log_mean=-0.7, train_log_std=1.0)
    probabilities, sigmas = schedule.level_probabilities(), schedule.sigmas()
    assert np.argmax(probabilities) == np.argmin(np.abs(np.log(sigmas) + 0.7))
    assert NoiseSchedule(8.0, 0.02, 12).level_probabilities() is None
    seeds = tf.stack([tf.zeros(8000, tf.int64), tf.range(8000, dtype=tf.int64)], axis=1)
    sigma, _ = dsm.draw_perturbation(seeds, [2], tf.constant(sigmas, tf.float32), probabilities)
    levels = np.argmin(np.abs(np.log(sigma.numpy())[:, None] - np.log(sigmas)[None]), axis=1)
    expected = 8000 * probabilities
    np.testing.assert_array_less(np.abs(np.bincount(levels, minlength=12) - expected), 4 * np.sqrt(expected) + 1)
    part, _ = dsm.draw_perturbation(seeds[10:13], [2], tf.constant(sigmas, tf.float32), probabilities)
    np.testing.assert_array_equal(part.numpy(), sigma.numpy()[10:13])
    weights = dsm.level_weighting(sigmas, 0.3, probabilities)(tf.constant(sigmas, tf.float32)).numpy()
    np.testing.assert_allclose(np.sum(probabilities * weights), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="train_log_std must be positive"):
        NoiseSchedule(train_log_mean=0.0, train_log_std=0.0)


def test_edm_preconditioning_denoises_with_c_skip_c_in_c_out_and_weights_to_the_edm_loss():
    data_std, sigmas = 0.3, np.array([3.0, 0.5, 0.02])
    x = tf.random.stateless_normal([3, 4], seed=[5, 6])
    z = tf.random.stateless_normal([3, 4], seed=[7, 8])
    sigma = tf.constant(sigmas, tf.float32)
    net = Scale(-0.7)
    result = dsm.dsm_loss(ScoreModel(net, data_std=data_std), x, sigma, z)
    total = sigmas[:, None] ** 2 + data_std ** 2
    c_skip, c_out, c_in = data_std ** 2 / total, sigmas[:, None] * data_std / np.sqrt(total), 1 / np.sqrt(total)
    noisy = x.numpy() + sigmas[:, None] * z.numpy()
    network_output = -0.7 * c_in * noisy
    np.testing.assert_allclose(result.denoised.numpy(), c_skip * noisy + c_out * network_output, rtol=1e-5)
    # Weighted as in training, the loss is EDM's: 1/2 ||F - (x - c_skip noisy) / c_out||^2 up to one constant.
    weights = dsm.level_weighting(sigmas, data_std)(sigma).numpy()
    edm = 0.5 * np.sum((network_output - (x.numpy() - c_skip * noisy) / c_out) ** 2, axis=1)
    ratio = result.loss.numpy() * weights / edm
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    np.testing.assert_allclose(np.mean(weights), 1.0, rtol=1e-6)
    assert dsm.level_weighting(sigmas) is None
    with pytest.raises(ValueError, match="data_std must be positive"):
        ScoreModel(net, data_std=0.0)
