"""asm-sample's trajectories and --step_size=auto, and the samplers' optional trajectory output."""

import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli
from PIL import Image
from test_export import write_run

from asm_tf import run_loading, sampling
from asm_tf.data import toy2d
from asm_tf.models.mlp import ToyMLP
from asm_tf.noise_levels import schedule as noise_schedule
from asm_tf.score import ScoreModel


def sample_cli(*args):
    return run_cli("sample", *args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("sample_run"))


@pytest.mark.parametrize("sampler,n_sigma,every,snapshots", [("cas", 3, 4, 4), ("als", 2, 2, 3), ("cas", 1, 1, 5)])
def test_a_trajectory_starts_at_the_initial_value_and_ends_at_the_final_sample(sampler, n_sigma, every, snapshots):
    tf.keras.utils.set_random_seed(0)
    network = ToyMLP(hidden=16, depth=2)
    network(tf.zeros([1, 2]))
    source = toy2d.toy2d("8gaussians", 256)
    schedule = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.05, num_levels=4)
    settings = sampling.SamplerSettings(sampler=sampler, n_sigma=n_sigma, step_size=0.002)
    seeds = tf.constant([4, 0, 9], tf.int64)
    final, denoised = sampling.make_sampler(ScoreModel(network), schedule, settings, source)(seeds)
    outputs = sampling.make_sampler(ScoreModel(network), schedule, settings, source, trajectory_every=every)(seeds)
    trajectory = outputs[2].numpy()
    # CAS visits (4 - 1) * n_sigma + 1 levels, ALS 4; snapshots enter levels 0, every, ... plus the final one.
    assert trajectory.shape == (3, snapshots, 2)
    np.testing.assert_allclose(outputs[0], final, atol=1e-6)
    np.testing.assert_allclose(outputs[1], denoised, atol=1e-6)
    np.testing.assert_allclose(trajectory[:, 0], sampling.initial_value(seeds, (2,), source), atol=1e-6)
    np.testing.assert_allclose(trajectory[:, -1], final, atol=1e-6)
    assert np.all(np.abs(np.diff(trajectory, axis=1)).sum(axis=(0, 2)) > 0)  # every snapshot is a new state


def test_trajectory_every_must_be_positive():
    with pytest.raises(ValueError, match="trajectory_every must be at least 1"):
        sampling.cas(None, tf.zeros([1, 2]), tf.constant([0], tf.int64), [1.0, 0.1], 0.005, trajectory_every=0)


def test_sample_saves_a_trajectory_strip_with_an_extrapolated_step_size(workdir, tmp_path):
    out = str(tmp_path / "out")
    result = sample_cli("--workdir", workdir, "--seeds", "0-4", "--batch_size", "2", "--output_dir", out,
                        "--n_sigma", "3", "--step_size", "auto", "--trajectory_every", "2",
                        "--trajectory_images", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled 5/5" in result.stdout and "trajectory.png" in result.stdout
    settings = json.load(open(os.path.join(out, "settings.json")))
    expected = noise_schedule.extrapolate_step_size(0.002, sampler="cas", n_from=2, n_to=3, sigma_end=0.05)
    assert settings["step_size"] == pytest.approx(expected, rel=1e-12) and settings["step_size"] != 0.002
    assert settings["n_sigma"] == 3 and settings["step_size_flag"] == "auto"
    samples = np.load(os.path.join(out, "samples.npz"))
    assert samples["final"].shape == (5, 8, 8, 3) and samples["final"].dtype == np.uint8
    saved = np.load(os.path.join(out, "trajectory.npz"))
    # 10 CAS levels, a snapshot entering levels 0, 2, 4, 6, 8 and the final sample; the first 3 images.
    assert saved["trajectory"].shape == (3, 6, 8, 8, 3) and saved["trajectory"].dtype == np.uint8
    np.testing.assert_allclose(saved["sigmas"], noise_schedule.NoiseSchedule(1.0, 0.05, 4).refined(3)[::2])
    np.testing.assert_array_equal(saved["trajectory"][:, -1], samples["final"][:3])
    strip = np.asarray(Image.open(os.path.join(out, "trajectory.png")))
    assert strip.shape == (3 * 8, 6 * 8, 3)
    np.testing.assert_array_equal(strip[8:16, 40:48], samples["final"][1])


def test_another_sampler_without_its_own_step_size_says_in_one_line_which_rule_chose_it(workdir, tmp_path):
    out = str(tmp_path / "out")
    result = sample_cli("--workdir", workdir, "--sampler", "als", "--step_size", "auto", "--seeds", "0-1",
                        "--output_dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "step size" in line]
    assert len(lines) == 1 and "ALS takes the cas step size 0.002 as is: no SamplerSettings.als_step_size" in lines[0]
    settings = json.load(open(os.path.join(out, "settings.json")))
    assert (settings["sampler"], settings["n_sigma"], settings["step_size"]) == ("als", 2, pytest.approx(0.002))


@pytest.fixture
def moved_run(tmp_path):
    """A run whose image folder has moved since training: (workdir, the binding to the new place)."""
    workdir = write_run(tmp_path)
    os.rename(tmp_path / "images", tmp_path / "moved")
    return workdir, f"image_folder.path = '{tmp_path / 'moved'}'"


def test_bindings_apply_on_top_of_the_saved_config_without_changing_it(moved_run):
    workdir, binding = moved_run
    config = open(os.path.join(workdir, "config.gin")).read()
    assert "image folder" in run_loading.load_run(workdir).experiment.data.missing  # sampling needs no data
    assert run_loading.load_run(workdir, bindings=[binding]).experiment.data.num_examples == 4
    with pytest.raises(ValueError, match="bad gin binding in \\['NoSuchThing.x = 1'\\]: No configurable matching"):
        run_loading.parse_run_config(workdir, ["NoSuchThing.x = 1"])
    gin.clear_config()
    assert open(os.path.join(workdir, "config.gin")).read() == config


def test_png_dir_holds_one_png_per_seed_equal_to_the_arrays(moved_run, tmp_path):
    workdir, binding = moved_run
    out = str(tmp_path / "out")
    result = sample_cli("--workdir", workdir, "--seeds", "3,7-9,1234567", "--batch_size", "3", "--output_dir", out,
                        "--png_dir", "--gin_bindings", binding)
    assert result.returncode == 0, result.stderr[-3000:]
    samples = np.load(os.path.join(out, "samples.npz"))
    names = ["000003.png", "000007.png", "000008.png", "000009.png", "1234567.png"]
    for kind in ("final", "denoised"):
        assert sorted(os.listdir(os.path.join(out, kind))) == names
        read_back = np.stack([np.asarray(Image.open(os.path.join(out, kind, name))) for name in names])
        np.testing.assert_array_equal(read_back, samples[kind])
    assert json.load(open(os.path.join(out, "settings.json")))["gin_bindings"] == [binding]


def _one_line_failure(result, program, pattern):
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: cannot write "), result.stderr[-2000:]
    assert pattern in lines[0], lines[0]


def test_an_output_place_that_cannot_be_written_fails_before_sampling(workdir, tmp_path, storage_faults):
    locked = tmp_path / "locked"
    locked.mkdir()
    storage_faults.read_only(locked)
    result = sample_cli(f"--workdir={workdir}", "--seeds=0-3", f"--output_dir={locked / 'out'}")
    _one_line_failure(result, "asm-sample", f"samples to {locked / 'out'} (Read-only file system)")
    assert "sampling" not in result.stdout
    result = run_cli("evaluate", f"--workdir={workdir}", "--metric=fid", f"--output_dir={locked / 'eval'}")
    _one_line_failure(result, "asm-eval", f"evaluation reports to {locked / 'eval'} (Read-only file system)")
    unreachable = "gs://asm-tf-no-such-bucket/samples"  # no network here: the host cannot be resolved
    result = sample_cli(f"--workdir={workdir}", "--seeds=0-3", f"--output_dir={unreachable}")
    _one_line_failure(result, "asm-sample", f"samples to {unreachable} (")
    assert "sampling" not in result.stdout


def test_a_full_disk_leaves_no_partial_samples(workdir, tmp_path, storage_faults):
    disk = storage_faults.tmpfs(tmp_path / "disk", "8k")  # samples.npz fits, the PNG grids do not
    result = sample_cli(f"--workdir={workdir}", "--seeds=0-5", f"--output_dir={disk / 'out'}")
    _one_line_failure(result, "asm-sample", f"samples {disk / 'out'}/")
    assert "No space left on device" in result.stderr and "sampling" in result.stdout
    assert [name for _, _, names in os.walk(disk / "out") for name in names] == []
