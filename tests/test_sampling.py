import numpy as np
import pytest
import tensorflow as tf

from asm_tf import sampling
from asm_tf.data import toy2d
from asm_tf.evaluation.point_mass import PointMassScore
from asm_tf.models.mlp import ToyMLP
from asm_tf.noise_levels import schedule as noise_schedule
from asm_tf.score import ScoreModel

CENTRE = 0.3
NUM = 20000


def _start(sigma_1):
    seeds = tf.range(NUM, dtype=tf.int64)
    x = CENTRE + sigma_1 * tf.random.stateless_normal([NUM, 1], seed=[7, 7])
    return x, seeds


def test_cas_keeps_the_noise_std_on_the_geometric_schedule():
    grid = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=6).refined(3)
    eta = 0.4  # the grid's ratio is 0.7356, so CAS needs 0.2644 < eta < 1.7356
    noise_schedule.check_cas_step_size(eta * grid[-1] ** 2, grid)
    x0, seeds = _start(grid[0])
    for k in (2, 5, 9, len(grid)):
        head = grid[:k]
        # On a truncated grid the final level gets no noise: std = (1 - eta) * sigma_{k-1}.
        final, denoised = sampling.cas(ScoreModel(PointMassScore(CENTRE)), x0, seeds, head, eta * head[-1] ** 2)
        std = float(tf.math.reduce_std(final))
        assert std == pytest.approx((1 - eta) * head[-1], rel=0.03), k
        np.testing.assert_allclose(denoised.numpy(), CENTRE, atol=1e-5)


@pytest.mark.parametrize("n_sigma", [1, 2])
def test_als_follows_the_variance_recursion(n_sigma):
    levels = noise_schedule.ladder(1.0, 0.01, 8)
    eta = 0.3
    x0, seeds = _start(levels[0])
    final, _ = sampling.als(ScoreModel(PointMassScore(CENTRE)), x0, seeds, levels, eta * levels[-1] ** 2, n_sigma)
    variance = levels[0] ** 2
    for sigma in levels:
        for _ in range(n_sigma):
            variance = (1 - eta) ** 2 * variance + 2 * eta * sigma**2
    assert float(tf.math.reduce_std(final)) == pytest.approx(np.sqrt(variance), rel=0.03)
    # ALS lags above the schedule: its fixed point is sigma sqrt(2 / (2 - eta)).
    assert np.sqrt(variance) > levels[-1]


def test_als_noise_first_ends_with_a_gradient_step():
    levels = noise_schedule.ladder(1.0, 0.01, 5)
    x0, seeds = _start(levels[0])
    final, _ = sampling.als(ScoreModel(PointMassScore(CENTRE)), x0, seeds, levels, 0.5 * levels[-1] ** 2, 1,
                            noise_first=True)
    variance = levels[0] ** 2
    for sigma in levels:
        variance = (1 - 0.5) ** 2 * (variance + 2 * 0.5 * sigma**2)
    assert float(tf.math.reduce_std(final)) == pytest.approx(np.sqrt(variance), rel=0.03)


@pytest.mark.parametrize("sampler", ["als", "cas"])
def test_the_same_seeds_give_the_same_samples_at_any_batch_size(sampler):
    tf.keras.utils.set_random_seed(0)
    network = ToyMLP(hidden=32, depth=2)
    network(tf.zeros([1, 2]))
    settings = sampling.SamplerSettings(sampler=sampler, n_sigma=2, step_size=8e-5)
    schedule = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=5)
    sample = sampling.make_sampler(ScoreModel(network), schedule, settings, toy2d.toy2d("8gaussians", 1000))
    seeds = np.arange(64)
    reference = sampling.sample_in_batches(sample, seeds, 64, log=None)
    for batch_size in (1, 7):
        got = sampling.sample_in_batches(sample, seeds, batch_size, log=None)
        for a, b in zip(got, reference):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    shuffled = sampling.sample_in_batches(sample, seeds[::-1], 64, log=None)
    np.testing.assert_allclose(shuffled[0][::-1], reference[0], rtol=1e-5, atol=1e-6)
    other = sampling.sample_in_batches(sample, seeds + 64, 64, log=None)
    assert np.abs(other[0] - reference[0]).mean() > 0.01


def test_make_sampler_rejects_a_step_size_outside_the_cas_bounds():
    schedule = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=5)
    with pytest.raises(ValueError, match="outside the CAS bounds"):
        sampling.make_sampler(ScoreModel(ToyMLP()), schedule, sampling.SamplerSettings(step_size=1e-3),
                              toy2d.toy2d("8gaussians", 1000))
