"""Tests of the 2-D nearest-neighbour distance (the metric of the reference's 2-D notebook)."""

import numpy as np
import pytest

from asm_tf.data import toy2d as toy_data
from asm_tf.evaluation import toy2d


def test_identical_sets_have_zero_distance():
    points = np.random.default_rng(0).normal(size=(100, 2))
    assert toy2d.distance_total(points, points) == 0.0


def test_hand_computed_distances():
    real = np.array([[0.0, 0.0], [10.0, 0.0]])
    generated = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.0]])
    result = toy2d.distances(generated=generated, real=real)
    # generated -> nearest real: 1, 2, 0.5; real -> nearest generated: 0.5, 9.
    assert result.to_real == pytest.approx(3.5 / 3)
    assert result.to_fake == pytest.approx(9.5 / 2)
    assert result.total == pytest.approx(3.5 / 3 + 9.5 / 2)
    assert toy2d.distance_total(generated, real) == pytest.approx(result.total)


def test_matches_brute_force_and_is_asymmetric_in_parts():
    rng = np.random.default_rng(1)
    generated, real = rng.normal(size=(200, 2)), rng.normal(loc=0.3, size=(150, 2))
    pairwise = np.linalg.norm(generated[:, None, :] - real[None, :, :], axis=-1)
    result = toy2d.distances(generated=generated, real=real)
    assert result.to_real == pytest.approx(pairwise.min(axis=1).mean())
    assert result.to_fake == pytest.approx(pairwise.min(axis=0).mean())


def test_two_real_samples_match_spec_baseline():
    # Measured baseline: two independent samples of 5,000 points of 25 Gaussians give about 0.0058.
    total = toy2d.distance_total(toy_data.sample("25gaussians", 5000, 1), toy_data.sample("25gaussians", 5000, 2))
    assert 0.0045 < total < 0.0075


def test_collapsed_generator_scores_worse():
    real = toy_data.sample("8gaussians", 2000, 0)
    collapsed = np.repeat(real[:1], 2000, axis=0)
    assert toy2d.distance_total(collapsed, real) > 10 * toy2d.distance_total(toy_data.sample("8gaussians", 2000, 3), real)


@pytest.mark.parametrize("bad", [np.zeros((5, 3)), np.zeros((0, 2)), np.array([[np.nan, 0.0]])])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="generated"):
        toy2d.distance_total(bad, np.zeros((4, 2)))
