"""Tuning without a trained model and its tools: Techniques 1 and 2, CAS step sizes and extrapolation, Figure 1."""

import importlib
import math
import os

import gin
import numpy as np
import pytest
import scipy.spatial
from conftest import REPO

from asm_tf.evaluation import point_mass
from asm_tf.noise_levels import design as schedule_design
from asm_tf.noise_levels import schedule as noise_schedule

CIFAR = noise_schedule.NoiseSchedule(50.0, 0.01, 232)
CHURCHES = noise_schedule.NoiseSchedule(140.0, 0.01, 788)
SMALL = noise_schedule.NoiseSchedule(1.0, 0.01, 10)


TOOL_FOLDERS = {"num_noise_levels": "user", "step_size": "user", "sigma_max": "user", "figure1": "experiments"}


def _tool(name):
    return importlib.import_module(f"tools.{TOOL_FOLDERS[name]}.{name}")


# --- Technique 2 -----------------------------------------------------------------------------------

def test_technique_2_reproduces_cifar10():
    ratio = schedule_design.noise_level_ratio(3072, coverage=0.5)
    assert ratio == pytest.approx(0.96314, abs=5e-6)
    assert schedule_design.level_overlap(ratio, 3072) == pytest.approx(0.5, abs=1e-10)
    levels = schedule_design.num_noise_levels(50.0, 0.01, ratio)
    assert levels == pytest.approx(226.8, abs=0.05)
    assert math.ceil(levels) == 227


@pytest.mark.parametrize("dim,sigma_begin,expected", [
    (64 * 64 * 3, 140.0, 503.6),    # Churches (the config uses 788)
    (28 * 28 * 3, 50.0, 198.9),     # Stacked MNIST (config 200)
    (256 * 256 * 3, 348.0, 2191.1),  # FFHQ (config 2311)
])
def test_technique_2_matches_the_spec_for_other_datasets(dim, sigma_begin, expected):
    assert schedule_design.num_noise_levels(sigma_begin, 0.01, schedule_design.noise_level_ratio(dim)) == pytest.approx(expected, abs=0.1)


def test_technique_2_refuses_bad_input():
    with pytest.raises(ValueError, match="coverage"):
        schedule_design.noise_level_ratio(3072, coverage=0.999)
    with pytest.raises(ValueError, match="dimension"):
        schedule_design.noise_level_ratio(0)
    with pytest.raises(ValueError, match="sigma_begin > sigma_end"):
        schedule_design.num_noise_levels(0.01, 50.0, 0.9)


# --- step sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,n_sigma,step_size,levels,gamma,bounds,eta,beta", [
    (CIFAR, 1, 5.6e-6, 232, 0.963800, (3.620e-6, 1.964e-4), 0.0560, 0.2017),
    (CIFAR, 5, 1.1e-6, 1156, 0.992653, (7.347e-7, 1.993e-4), 0.0110, 0.0857),
    (CIFAR, 5, 1.05e-6, 1156, 0.992653, (7.347e-7, 1.993e-4), 0.0105, 0.0796),
    (CHURCHES, 1, 2.8e-6, 788, 0.987943, (1.206e-6, 1.988e-4), 0.0280, 0.1789),
])
def test_cas_report_matches_the_spec_table(schedule, n_sigma, step_size, levels, gamma, bounds, eta, beta):
    report = noise_schedule.step_size_report(schedule, "cas", n_sigma, step_size)
    assert report.levels == levels and report.error is None
    assert report.ratio == pytest.approx(gamma, abs=1e-6)
    np.testing.assert_allclose(report.bounds, bounds, rtol=1e-3)
    assert report.eta == pytest.approx(eta, rel=1e-9)
    assert report.beta[0] == pytest.approx(beta, abs=1e-4) and report.beta[1] == pytest.approx(beta, abs=1e-4)


@pytest.mark.parametrize("step_size", [1.1e-6, 3.6e-6, 1.97e-4])
def test_cas_step_sizes_outside_the_bounds_are_reported(step_size):
    report = noise_schedule.step_size_report(CIFAR, "cas", 1, step_size)
    assert report.beta is None
    assert "strictly between 3.61995e-06 and 0.00019638" in report.error


def test_als_report_has_no_bounds():
    report = noise_schedule.step_size_report(CIFAR, "als", 5, 3.6e-6)
    assert report.bounds is None and report.beta is None and report.error is None
    assert report.levels == 232 and report.eta == pytest.approx(0.036)


@pytest.mark.parametrize("schedule,tuned,n_to,expected", [
    (CIFAR, 5.6e-6, 5, 1.146e-6),    # CIFAR-10 NCSNv2 (authors used 1.1e-6)
    (CIFAR, 5.45e-6, 5, 1.115e-6),   # CIFAR-10 UNet (authors used 1.05e-6)
    (CIFAR, 5.6e-6, 15, 3.84e-7),    # CIFAR-10, n_sigma = 15
    (CHURCHES, 2.8e-6, 5, 5.66e-7),  # Churches (authors used 4.5e-7)
])
def test_cas_extrapolation_reproduces_the_spec(schedule, tuned, n_to, expected):
    got = noise_schedule.extrapolate_step_size(tuned, sampler="cas", n_from=1, n_to=n_to, sigma_end=schedule.sigma_end)
    assert got == pytest.approx(expected, rel=2e-3)
    assert noise_schedule.step_size_report(schedule, "cas", n_to, got).error is None
    assert noise_schedule.extrapolate_step_size(1.8e-5, sampler="als", n_from=1, n_to=5, sigma_end=0.01) == pytest.approx(3.6e-6)


# --- Figure 1 --------------------------------------------------------------------------------------

def test_analytic_figure_1():
    curves = point_mass.figure1_curves(CIFAR)
    als = {curve.n_sigma: curve for curve in curves if curve.sampler == "als"}
    cas = next(curve for curve in curves if curve.sampler == "cas")
    assert sorted(als) == [1, 2, 5, 20] and len(cas.std) == 231 * 100 + 1
    np.testing.assert_allclose(cas.std, cas.sigma, rtol=1e-12)  # CAS follows the geometric schedule
    for n_sigma, curve in als.items():
        assert curve.std[0] == 50.0
        assert np.all(curve.std[1:] > curve.sigma[1:])  # ALS lags above it after the first step
        assert len(curve.std) == 232 * n_sigma
    # More steps per level track the schedule more closely (once the first levels' inflation has passed).
    for fewer, more in ((1, 2), (2, 5), (5, 20)):
        assert np.all(als[fewer].at_levels()[116:] > als[more].at_levels()[116:])
    assert als[1].std[-1] / 0.01 > 70 and als[20].std[-1] / 0.01 < 1.04
    # One step from 50 with eta = 0.02: sqrt(0.98^2 * 50^2 + 2 * 0.02 * 50^2) = 50 sqrt(1.0004).
    assert als[1].std[1] == pytest.approx(50.0 * math.sqrt(1.0004), rel=1e-12)


def test_als_fixed_point():
    eta = 0.02
    fixed = point_mass.als_fixed_point(1.0, eta)
    assert fixed == pytest.approx(math.sqrt(2.0 / 1.98))
    for start in (0.5, 3.0):
        stds = point_mass.als_noise_std([1.0], eta, n_sigma=3000, start_std=start)
        assert stds[-1] == pytest.approx(fixed, rel=1e-12)
    # At many steps per level, ALS ends each level near that level's fixed point.
    stds = point_mass.als_noise_std(SMALL.sigmas(), 0.5, n_sigma=200)
    np.testing.assert_allclose(stds[199::200], point_mass.als_fixed_point(1.0, 0.5) * SMALL.sigmas(), rtol=1e-9)


def test_cas_recursion_refuses_steps_outside_the_bounds():
    with pytest.raises(ValueError, match="CAS bound"):
        point_mass.cas_noise_std(CIFAR.sigmas(), eta=0.01)


def test_simulated_samplers_match_the_analytic_std():
    # The library's ALS and CAS with the exact score of a point mass, stopped after levels 0, 4 and 9.
    curves = point_mass.figure1_curves(SMALL, als_step_size=2e-5, als_n_sigmas=(2,), cas_step_size=5e-5, cas_n_sigma=2)
    for curve in curves:
        progress, analytic, simulated = point_mass.simulate_noise_std(curve, [0, 4, 9], num_samples=512, dim=16)
        if curve.sampler == "cas":  # the std entering levels 0, 4, 9 of the original grid
            np.testing.assert_array_equal(progress, [0, 4, 9])
            np.testing.assert_allclose(analytic, curve.std[[0, 8, 18]], rtol=1e-12)
        else:  # the std entering the first step of levels 1, 5 (and after the last step)
            np.testing.assert_array_equal(progress, [1, 5, 10])
            np.testing.assert_allclose(analytic[:2], curve.std[[2, 10]], rtol=1e-12)
        np.testing.assert_allclose(simulated, analytic, rtol=0.04)


# --- Technique 1 -----------------------------------------------------------------------------------

def test_max_pairwise_distance_matches_scipy():
    rng = np.random.default_rng(0)
    batch = rng.uniform(size=(17, 4, 4, 3)).astype(np.float32)
    expected = scipy.spatial.distance.cdist(batch.reshape(17, -1), batch.reshape(17, -1)).max()
    assert schedule_design.max_pairwise_distance(batch) == pytest.approx(expected, rel=1e-9)


def test_approximate_sigma_max_keeps_the_running_maximum():
    batches = [np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0], [6.0, 8.0]]), np.zeros((2, 2)),
               np.array([[0.0, 0.0], [30.0, 40.0]])]
    assert schedule_design.approximate_sigma_max(iter(batches), num_batches=3) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="ran out after 4 of 5"):
        schedule_design.approximate_sigma_max(iter(batches), num_batches=5)


# --- the tools -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["num_noise_levels", "step_size", "figure1", "sigma_max"])
def test_tools_have_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool(name).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text
    if name == "step_size":
        assert "RECONSTRUCTION" in text


def test_num_noise_levels_tool(capsys):
    assert _tool("num_noise_levels").main(["--image_size", "32", "--channels", "3"]) == 0
    out = capsys.readouterr().out
    assert "D = 3072" in out and "0.96314" in out and "226.8" in out and "num_levels = 227" in out


def test_step_size_tool(capsys, clean_gin):
    tool = _tool("step_size")
    assert tool.main(["--n_sigma", "1", "5", "--step_size", "1.1e-6", "--tuned_step_size", "5.6e-6"]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "1.146e-06" in out and "beta=0.0857" in out
    toy_config = os.path.join(REPO, "gin_configs", "toy2d_swissroll.gin")
    assert tool.main(["--gin_file", toy_config, "--n_sigma", "10", "--step_size", "2e-5"]) == 0
    assert "3 -> 0.01, 20 levels" in capsys.readouterr().out


def test_figure1_tool_writes_png_and_csv(tmp_path, capsys):
    output = tmp_path / "fig.png"
    assert _tool("figure1").main(["--output", str(output), "--sigma_begin", "1", "--num_levels", "10",
                                  "--als_n_sigma", "1", "3", "--cas_n_sigma", "4", "--als_step_size", "2e-5"]) == 0
    assert output.stat().st_size > 10_000
    rows = (tmp_path / "fig.csv").read_text().splitlines()
    assert rows[0] == "curve,sampler,n_sigma,step,progress,sigma,std"
    assert len(rows) == 1 + 10 * 1 + 10 * 3 + (9 * 4 + 1)


def test_sigma_max_tool_on_toy_data(capsys, clean_gin):
    tool = _tool("sigma_max")
    args = ["--source", "toy2d", "--gin_bindings", "toy2d.name = '8gaussians'", "--num_batches", "3",
            "--batch_size", "64", "--no_progress"]
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    # 8 Gaussians on a circle of radius 2 / 1.414 (std 0.02 / 1.414): diameter about 2.83.
    largest = float(out.split("NoiseSchedule.sigma_begin = ")[1])
    assert 2.7 < largest < 3.0
    gin.clear_config()
    toy_config = os.path.join(REPO, "gin_configs", "toy2d_swissroll.gin")
    assert tool.main(["--gin_file", toy_config, "--num_batches", "2", "--no_progress"]) == 0
    assert "from 'swissroll'" in capsys.readouterr().out
