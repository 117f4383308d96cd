import math

import numpy as np
import pytest
import tensorflow as tf

from asm_tf import noise, sampling, score
from asm_tf.data import toy2d
from asm_tf.models.mlp import ToyMLP
from asm_tf.noise_levels import formulas
from asm_tf.noise_levels import schedule as noise_schedule
from asm_tf.sampling import ode
from asm_tf.score import ScoreModel

MEAN = tf.constant([0.3, -0.2])
VARIANCE = tf.constant([0.25, 0.01])
SIGMA_1, SIGMA_L = 10.0, 0.01
NUM = 4000


class GaussianOracle(tf.Module):
    """The exact -z of data N(MEAN, diag(VARIANCE)): net(x, sigma) = -sigma (x - MEAN) / (VARIANCE + sigma^2)."""

    takes_sigma = True

    def __call__(self, x, sigma, training=False):
        sigma = tf.reshape(sigma, [-1, 1])
        return -sigma * (x - MEAN) / (VARIANCE + tf.square(sigma))


def _gaussian_run(num_levels, second_order, **noise):
    """(final, denoised, exact flow of the same starting points) on EDM's rho schedule."""
    seeds = tf.range(NUM, dtype=tf.int64)
    z = tf.random.stateless_normal([NUM, 2], seed=[1, 2])
    start = MEAN + tf.sqrt(VARIANCE + SIGMA_1**2) * z
    exact = MEAN + tf.sqrt((VARIANCE + SIGMA_L**2) / (VARIANCE + SIGMA_1**2)) * (start - MEAN)
    final, denoised = ode.sample(ScoreModel(GaussianOracle()), start, seeds,
                                 formulas.rho_spaced(SIGMA_1, SIGMA_L, num_levels, 7.0),
                                 second_order=second_order, **noise)
    return final, denoised, exact


def _variance_error(num_levels, second_order):
    final, _, exact = _gaussian_run(num_levels, second_order)
    error = tf.abs(tf.math.reduce_variance(final, 0) - tf.math.reduce_variance(exact, 0)) / (VARIANCE + SIGMA_L**2)
    return float(tf.reduce_max(error))


@pytest.mark.parametrize("second_order, order", [(False, 1), (True, 2)])
def test_the_error_in_the_covariance_falls_with_the_order_of_the_method(second_order, order):
    errors = [_variance_error(n, second_order) for n in (8, 16, 32, 64)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-2] / errors[-1] == pytest.approx(2.0**order, rel=0.15), errors


def test_heun_with_many_steps_matches_the_data_mean_and_covariance():
    final, denoised, _ = _gaussian_run(64, True)
    variance = VARIANCE + SIGMA_L**2
    np.testing.assert_allclose(tf.math.reduce_variance(final, 0), variance, rtol=0.08)
    np.testing.assert_allclose(tf.reduce_mean(final, 0), MEAN, atol=3 * float(tf.sqrt(VARIANCE[0] / NUM)))
    # The final denoising step is the posterior mean: its variance is VARIANCE^2 / (VARIANCE + sigma_L^2).
    np.testing.assert_allclose(tf.math.reduce_variance(denoised, 0), VARIANCE**2 / variance, rtol=0.08)


@pytest.mark.parametrize("noise", [{"churn": 10.0}, {"eta": 0.5}])
def test_noise_changes_the_images_and_its_samplers_converge_to_the_data(noise):
    second_order = "churn" in noise
    errors = []
    for num_levels in (32, 128):
        final, _, _ = _gaussian_run(num_levels, second_order, **noise)
        variance = tf.math.reduce_variance(final, 0)
        errors.append(float(tf.reduce_max(tf.abs(variance / (VARIANCE + SIGMA_L**2) - 1))))
    assert errors[1] < min(errors[0], 0.1), errors
    deterministic, _, _ = _gaussian_run(128, second_order)
    assert float(tf.reduce_mean(tf.abs(final - deterministic))) > 0.01


def _edm_algorithm_2(score_model, x, seeds, sigmas, s_churn, second_order):
    """Karras et al. 2022, Algorithm 2 (S_tmin 0, S_tmax inf, S_noise 1; t_0..t_{N-1} = sigmas, t_N = 0), with
    ode.sample's noise draws and its one departure: t_hat never exceeds t_0, the highest trained level."""
    t = [float(sigma) for sigma in sigmas] + [0.0]
    gamma = min(s_churn / (len(t) - 1), math.sqrt(2) - 1)

    def d(x, sigma):
        return (x - score_model.denoise(x, score.batch_sigma(sigma, x))) / sigma

    for i in range(len(t) - 1):
        t_hat = min(t[i] * (1 + gamma), t[0])
        x_hat = x + math.sqrt(t_hat**2 - t[i]**2) * noise.normal(noise.fold(seeds, 2 * i + 2), x.shape[1:])
        x = x_hat + (t[i + 1] - t_hat) * d(x_hat, t_hat)
        if second_order and t[i + 1] > 0:
            x = x_hat + (t[i + 1] - t_hat) * 0.5 * (d(x_hat, t_hat) + d(x, t[i + 1]))
    return x


@pytest.mark.parametrize("second_order", [False, True])
def test_churn_is_edm_s_churn(second_order):
    """gamma = min(S_churn / N, sqrt(2) - 1) on each of the N steps, the last (the final denoising) included."""
    start = MEAN + SIGMA_1 * tf.random.stateless_normal([64, 2], seed=[7, 8])
    seeds = tf.range(64, dtype=tf.int64)
    score_model, sigmas = ScoreModel(GaussianOracle()), formulas.rho_spaced(SIGMA_1, SIGMA_L, 6, 7.0)
    _, denoised = ode.sample(score_model, start, seeds, sigmas, second_order=second_order, churn=2.0)
    expected = _edm_algorithm_2(score_model, start, seeds, sigmas, 2.0, second_order)
    np.testing.assert_allclose(denoised, expected, rtol=1e-4, atol=1e-5)


def test_a_deterministic_image_depends_only_on_its_starting_state():
    start = tf.random.stateless_normal([8, 2], seed=[3, 4]) * SIGMA_1
    run = [ode.sample(ScoreModel(GaussianOracle()), start, tf.range(8, dtype=tf.int64) + offset,
                      formulas.rho_spaced(SIGMA_1, SIGMA_L, 6, 7.0), second_order=True)[0] for offset in (0, 100)]
    np.testing.assert_array_equal(run[0], run[1])


def test_network_calls():
    assert [ode.network_calls(n, False) for n in (2, 10)] == [2, 10]
    assert [ode.network_calls(n, True) for n in (2, 10)] == [3, 19]


class CountingOracle(GaussianOracle):
    """Counts the batches it is called on."""

    calls = 0

    def __call__(self, x, sigma, training=False):
        CountingOracle.calls += 1
        return super().__call__(x, sigma, training)


@pytest.mark.parametrize("sampler, num_steps, calls", [("euler", 5, 5), ("heun", 5, 9), ("heun", 2, 3)])
def test_the_samplers_call_the_network_as_often_as_they_say(sampler, num_steps, calls):
    settings = sampling.SamplerSettings(sampler=sampler, num_steps=num_steps, spacing="rho")
    schedule = noise_schedule.NoiseSchedule(sigma_begin=SIGMA_1, sigma_end=SIGMA_L, num_levels=40)
    assert settings.network_calls(schedule) == calls
    CountingOracle.calls = 0  # eagerly, tf.while_loop runs its body and tf.cond only the branch taken
    ode.sample(ScoreModel(CountingOracle()), tf.zeros([3, 2]), tf.range(3, dtype=tf.int64),
               settings.sampling_sigmas(schedule), second_order=sampler == "heun")
    assert CountingOracle.calls == calls


@pytest.mark.parametrize("settings", [
    {"sampler": "euler", "num_steps": 4},
    {"sampler": "heun", "num_steps": 4, "spacing": "rho", "churn": 5.0},
    {"sampler": "euler", "num_steps": 4, "eta": 1.0},
    {"sampler": "cas", "num_steps": 3, "step_size": 1e-4}])
def test_the_same_seeds_give_the_same_samples_at_any_batch_size(settings):
    tf.keras.utils.set_random_seed(0)
    network = ToyMLP(hidden=32, depth=2)
    network(tf.zeros([1, 2]))
    schedule = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=5)
    sample = sampling.make_sampler(ScoreModel(network), schedule, sampling.SamplerSettings(**settings),
                                   toy2d.toy2d("8gaussians", 1000))
    seeds = np.arange(32)
    reference = sampling.sample_in_batches(sample, seeds, 32, log=None)
    for batch_size in (1, 7):
        for a, b in zip(sampling.sample_in_batches(sample, seeds, batch_size, log=None), reference):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    other = sampling.sample_in_batches(sample, seeds + 32, 32, log=None)
    assert np.abs(other[0] - reference[0]).mean() > 0.01


def test_cas_at_its_lower_step_size_bound_is_the_deterministic_euler_step():
    """eps = sigma_L^2 (1 - gamma) makes CAS's beta 0 and its update x + (sigma - sigma') net: Euler's."""
    grid = noise_schedule.ladder(SIGMA_1, SIGMA_L, 8)
    gamma = noise_schedule.min_ratio(grid)
    start = MEAN + SIGMA_1 * tf.random.stateless_normal([64, 2], seed=[5, 6])
    seeds = tf.range(64, dtype=tf.int64)
    score_model = ScoreModel(GaussianOracle())
    _, cas_denoised = sampling.cas(score_model, start, seeds, grid, (1 - gamma) * SIGMA_L**2)
    _, euler_denoised = ode.sample(score_model, start, seeds, grid)
    np.testing.assert_allclose(cas_denoised, euler_denoised, atol=1e-3)
    assert float(tf.math.reduce_std(euler_denoised)) > 0.05
