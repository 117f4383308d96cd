"""The ideal (posterior-mean) denoiser, the level diagnosis and its tool on a digits run with random weights."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_untrained_run

from asm_tf import noise, run_loading
from asm_tf.data import digits
from asm_tf.evaluation import ideal, level_diagnosis
from tools.experiments import diagnose_levels

STEP = 3
MAX_IMAGES = 12
DIGITS_RUN = """
Experiment.data = @digits()
Experiment.score_network = @ToyMLP
ToyMLP.hidden = 16
ToyMLP.depth = 2
Experiment.data_std = 0.3
NoiseSchedule.sigma_begin = 1.0
NoiseSchedule.sigma_end = 0.05
NoiseSchedule.num_levels = 5
SamplerSettings.step_size = 0.002
"""
POINTS_RUN = """
Experiment.data = @toy2d()
toy2d.pool_size = 64
Experiment.score_network = @ToyMLP
ToyMLP.hidden = 8
ToyMLP.depth = 1
"""


def _write_run(workdir, config):
    """A run directory without training: config.gin and a checkpoint of random EMA weights at STEP."""
    return write_untrained_run(workdir, config, STEP, seed=0)


# --- the posterior mean --------------------------------------------------------------------------------------

IMAGES = np.random.default_rng(0).uniform(size=(7, 2, 3, 1))
NOISY = np.random.default_rng(1).uniform(size=(5, 2, 3, 1))


def test_posterior_mean_matches_a_direct_computation():
    sigma = np.array([0.2, 0.3, 0.5, 1.0, 2.0])
    distances = np.array([[np.sum((y - x) ** 2) for x in IMAGES] for y in NOISY])
    weights = np.exp(-distances / (2 * sigma[:, None] ** 2))
    expected = np.einsum("bn,nhwc->bhwc", weights / weights.sum(axis=1, keepdims=True), IMAGES)
    got = ideal.posterior_mean(NOISY, sigma, IMAGES, batch_size=2)
    assert got.shape == NOISY.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(ideal.posterior_mean(NOISY[:1], 0.2, IMAGES), expected[:1], rtol=1e-10)


def test_posterior_mean_limits():
    nearest = [np.argmin([np.sum((y - x) ** 2) for x in IMAGES]) for y in NOISY]
    np.testing.assert_allclose(ideal.posterior_mean(NOISY, 1e-4, IMAGES), IMAGES[nearest], atol=1e-12)
    np.testing.assert_allclose(ideal.posterior_mean(NOISY, 1e6, IMAGES), np.broadcast_to(IMAGES.mean(0), NOISY.shape),
                               atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        ideal.posterior_mean(NOISY[:, :1], 1.0, IMAGES)


# --- the tool ------------------------------------------------------------------------------------------------

def test_diagnose_levels_end_to_end(tmp_path, clean_gin, capsys):
    workdir = _write_run(tmp_path / "digits_run", DIGITS_RUN)
    diagnose_levels.main(["--workdir", workdir, "--levels", "3,1", "--max_images", str(MAX_IMAGES)])
    output = os.path.join(workdir, "eval", "diagnose_levels")
    assert os.path.getsize(output + ".png") > 0
    report = json.load(open(output + ".json"))
    assert report["checkpoint"] == STEP and report["num_images"] == MAX_IMAGES
    assert report["training_split"] == "train" and report["step_size"] == 0.002 and report["n_sigma"] == 1
    assert [row["level"] for row in report["levels"]] == [1, 3]
    assert [row["cas_levels"] for row in report["levels"]] == [4, 2]
    labels = digits.load_digits("test")[1][:MAX_IMAGES]
    for row in report["levels"]:
        assert len(row["returned_per_class"]) == 10
        assert [rate is None for rate in row["returned_per_class"]] == [c not in labels for c in range(10)]
        assert 0 <= row["returned"] <= 1 and 0 <= row["confident"] <= 1
        assert row["worst_class_returned"] == min(r for r in row["returned_per_class"] if r is not None)
        confusion = np.array(row["confusion"])
        np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(labels, minlength=10))
        kept = [confusion[c, c] / confusion[c].sum() for c in range(10) if confusion[c].sum()]
        np.testing.assert_allclose(kept, [r for r in row["returned_per_class"] if r is not None])
        if row["worst_class_became"] is not None:
            lost = np.delete(confusion[row["worst_class"]], row["worst_class"])
            assert confusion[row["worst_class"], row["worst_class_became"]] == lost.max() > 0
    assert "worst class" in capsys.readouterr().out

    # The MSEs are those of the EDS and of the posterior mean on the stateless noisy test digits.
    loaded = run_loading.load_run(workdir)
    row = report["levels"][0]
    clean = digits.load_digits("test")[0][:MAX_IMAGES]
    noisy = clean + row["sigma"] * noise.normal(noise.fold(np.arange(MAX_IMAGES), 0), clean.shape[1:]).numpy()
    denoised = loaded.score_model.denoise(tf.constant(noisy), tf.fill([MAX_IMAGES], row["sigma"])).numpy()
    assert row["mse"] == pytest.approx(np.mean((denoised - clean) ** 2), rel=1e-4)
    ideal_mse = np.mean((ideal.posterior_mean(noisy, row["sigma"], digits.load_digits("train")[0]) - clean) ** 2)
    assert row["posterior_mean_mse"] == pytest.approx(ideal_mse, rel=1e-4)


def test_a_run_on_other_data_is_refused(tmp_path, clean_gin):
    workdir = _write_run(tmp_path / "points_run", POINTS_RUN)
    with pytest.raises(ValueError, match="needs the digits data"):
        level_diagnosis.diagnose(run_loading.load_run(workdir))
    with pytest.raises(SystemExit, match="needs the digits data"):
        diagnose_levels.main(["--workdir", workdir])
