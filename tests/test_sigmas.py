import numpy as np
import pytest

from asm_tf.noise_levels import schedule as noise_schedule


def test_geometric_ladder_has_constant_ratio_and_end_points():
    levels = noise_schedule.ladder(50.0, 0.01, 232)
    assert levels[0] == pytest.approx(50.0) and levels[-1] == pytest.approx(0.01)
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, 0.963800, atol=1e-6)


def test_linear_ladder_has_constant_step():
    levels = noise_schedule.ladder(1.0, 0.1, 4, spacing="linear")
    np.testing.assert_allclose(levels, [1.0, 0.7, 0.4, 0.1])


@pytest.mark.parametrize("args", [(0.01, 50.0, 10), (1.0, 0.1, 1), (1.0, -0.1, 5)])
def test_ladder_rejects_impossible_schedules(args):
    with pytest.raises(ValueError):
        noise_schedule.ladder(*args)


def test_cas_refinement_keeps_end_points_and_takes_the_nth_root_of_the_ratio():
    schedule = noise_schedule.NoiseSchedule(sigma_begin=50.0, sigma_end=0.01, num_levels=232)
    refined = schedule.refined(5)
    assert len(refined) == (232 - 1) * 5 + 1 == 1156
    assert refined[0] == pytest.approx(50.0) and refined[-1] == pytest.approx(0.01)
    np.testing.assert_allclose(refined[::5], schedule.sigmas(), rtol=1e-12)
    assert noise_schedule.min_ratio(refined) == pytest.approx(0.963800 ** 0.2, abs=1e-6)


# (levels, n_sigma, step size, eta, beta, lower bound, upper bound) from docs/algorithm.md#step-size-bounds
CAS_WORKED_NUMBERS = [
    (232, 1, 5.6e-6, 0.0560, 0.2017, 3.620e-6, 1.964e-4),
    (232, 5, 1.1e-6, 0.0110, 0.0857, 7.347e-7, 1.993e-4),
    (232, 5, 1.05e-6, 0.0105, 0.0796, 7.347e-7, 1.993e-4),
]


@pytest.mark.parametrize("levels,n_sigma,eps,eta,beta,low,high", CAS_WORKED_NUMBERS)
def test_cas_coefficients_and_bounds_match_the_worked_numbers(levels, n_sigma, eps, eta, beta, low, high):
    grid = noise_schedule.NoiseSchedule(50.0, 0.01, levels).refined(n_sigma)
    got_low, got_high = noise_schedule.cas_step_size_bounds(grid)
    assert got_low == pytest.approx(low, rel=1e-3) and got_high == pytest.approx(high, rel=1e-3)
    got_eta, got_beta = noise_schedule.cas_coefficients(eps, grid)
    assert got_eta == pytest.approx(eta, rel=1e-3)
    np.testing.assert_allclose(got_beta, beta, atol=6e-5)


@pytest.mark.parametrize("eps", [3.0e-6, 2.5e-4, 0.0])
def test_a_step_size_outside_the_cas_bounds_names_the_valid_interval(eps):
    grid = noise_schedule.NoiseSchedule(50.0, 0.01, 232).sigmas()
    with pytest.raises(ValueError, match=r"strictly between 3\.6199\d*e-06 and 0\.000196"):
        noise_schedule.check_cas_step_size(eps, grid)


def test_step_size_extrapolation():
    assert noise_schedule.extrapolate_step_size(1.8e-5, sampler="als", n_from=1, n_to=5, sigma_end=0.01) == \
        pytest.approx(3.6e-6)
    cas = noise_schedule.extrapolate_step_size(5.6e-6, sampler="cas", n_from=1, n_to=5, sigma_end=0.01)
    assert cas == pytest.approx(1.146e-6, rel=1e-3)
    back = noise_schedule.extrapolate_step_size(cas, sampler="cas", n_from=5, n_to=1, sigma_end=0.01)
    assert back == pytest.approx(5.6e-6, rel=1e-9)
