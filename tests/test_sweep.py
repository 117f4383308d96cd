"""Tests of evaluation sweeps: resuming, reports, plots, TensorBoard scalars, metric factories, parsing."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator

from asm_tf.data import digits
from asm_tf.data import toy2d as toy_data
from asm_tf.evaluation import fid, modes, sweep, toy2d

SETTINGS = {"sampler": "cas", "n_sigma": 1, "num_samples": 300, "seeds": "0-299"}
REAL = toy_data.sample("8gaussians", 300, 0)


class _FakeSampler:
    """Samples whose spread shrinks with the step size and the checkpoint; counts the calls; can fail on call k."""

    def __init__(self, fail_on_call=None):
        self.calls = []
        self.loads = []
        self.fail_on_call = fail_on_call

    def load_checkpoint(self, checkpoint):
        self.loads.append(checkpoint)

        def sample(step_size):
            self.calls.append((checkpoint, step_size))
            if len(self.calls) == self.fail_on_call:
                raise KeyboardInterrupt
            if step_size > 1.0:
                raise ValueError("step size outside the CAS bounds")
            noise = np.random.default_rng(7).normal(size=REAL.shape)
            final = REAL + noise * step_size * 1000 / checkpoint
            return final, REAL + 0.5 * (final - REAL)

        return sample


def _toy_metric():
    return sweep.toy2d_metric(real_points=REAL, description="8gaussians seed 0")


def _sweep(fake, output_dir, checkpoints=(100, 200), step_sizes=(0.1, 0.2, 0.4), **kwargs):
    return sweep.run_sweep(checkpoints=list(checkpoints), step_sizes=list(step_sizes),
                           load_checkpoint=fake.load_checkpoint, metric=_toy_metric(), settings=SETTINGS,
                           output_dir=str(output_dir), log=lambda message: None, **kwargs)


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    interrupted = _FakeSampler(fail_on_call=5)
    with pytest.raises(KeyboardInterrupt):
        _sweep(interrupted, tmp_path)
    assert len(interrupted.calls) == 5
    finished = sorted(os.listdir(tmp_path))
    assert finished == ["ckpt100_eps0.1.json", "ckpt100_eps0.2.json", "ckpt100_eps0.4.json",
                        "ckpt200_eps0.1.json"]
    first_report = (tmp_path / "ckpt100_eps0.1.json").read_text()

    resumed = _FakeSampler()
    reports = _sweep(resumed, tmp_path)
    assert resumed.calls == [(200, 0.2), (200, 0.4)] and resumed.loads == [200]
    assert (tmp_path / "ckpt100_eps0.1.json").read_text() == first_report
    assert len(reports) == 6

    again = _FakeSampler()
    assert _sweep(again, tmp_path) == reports
    assert again.calls == [] and again.loads == []


def test_reports_hold_numbers_counts_seeds_and_settings(tmp_path):
    reports = _sweep(_FakeSampler(), tmp_path, checkpoints=[100], step_sizes=[0.1, 0.3])
    report = json.loads((tmp_path / "ckpt100_eps0.3.json").read_text())
    assert report == reports[1]
    assert report["checkpoint"] == 100 and report["step_size"] == 0.3 and report["seeds"] == "0-299"
    assert report["num_samples"] == 300 and report["sampler"] == "cas" and report["metric"] == "toy2d"
    final = REAL + np.random.default_rng(7).normal(size=REAL.shape) * 0.3 * 1000 / 100
    assert report["results"]["samples"]["distance_total"] == pytest.approx(toy2d.distance_total(final, REAL))
    assert report["results"]["samples"]["num_points"] == 300
    denoised = report["results"]["denoised"]["distance_total"]
    assert 0 < denoised < report["results"]["samples"]["distance_total"]
    best = sweep.best_reports(reports, _toy_metric())
    assert best["samples"]["step_size"] == 0.1 and best["denoised"]["step_size"] == 0.1


def test_other_settings_do_not_reuse_reports(tmp_path):
    _sweep(_FakeSampler(), tmp_path, checkpoints=[100], step_sizes=[0.1])
    with pytest.raises(ValueError, match="other settings.*seeds"):
        sweep.run_sweep(checkpoints=[100], step_sizes=[0.1], load_checkpoint=_FakeSampler().load_checkpoint,
                        metric=_toy_metric(), settings={**SETTINGS, "seeds": "1-300"}, output_dir=str(tmp_path),
                        log=lambda message: None)


def test_step_size_that_cannot_be_sampled_is_recorded_once(tmp_path):
    fake = _FakeSampler()
    reports = _sweep(fake, tmp_path, checkpoints=[100], step_sizes=[0.1, 2.0])
    assert "CAS bounds" in reports[1]["error"] and "results" not in reports[1]
    again = _FakeSampler()
    _sweep(again, tmp_path, checkpoints=[100], step_sizes=[0.1, 2.0])
    assert again.calls == []


def test_diverged_points_score_infinitely_badly():
    points = REAL.copy()
    points[3] = np.nan
    numbers = _toy_metric().evaluate(points)
    assert numbers["distance_total"] == float("inf") and numbers["num_nonfinite"] == 1


def test_plot_is_a_valid_png(tmp_path):
    _sweep(_FakeSampler(), tmp_path)
    path = tmp_path / "toy2d_vs_step_size.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 400)
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn


def test_tensorboard_scalars_per_checkpoint(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    reports = _sweep(_FakeSampler(), tmp_path / "reports", writer=writer)
    sweep.write_best_scalars(writer, _toy_metric(), reports)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={TENSORS: 0})
    events.Reload()
    per_step = events.Tensors("toy2d/samples/eps_0.2")
    assert [event.step for event in per_step] == [100, 200]
    expected = [r["results"]["samples"]["distance_total"] for r in reports if r["step_size"] == 0.2]
    np.testing.assert_allclose([tf.make_ndarray(e.tensor_proto) for e in per_step], expected, rtol=1e-6)
    best = events.Tensors("toy2d/denoised/best")
    assert [event.step for event in best] == [100, 200]


def _thumbnail_extractor():
    def features_fn(images):
        thumbnails = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (2, 2), method="area")
        return {"pool": tf.reshape(thumbnails, [-1, 12])}

    return fid.FeatureExtractor(name="thumbnails", features_fn=features_fn, has_logits=False)


class _ThumbnailModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def features(self, images):
        thumbnails = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (2, 2), method="area")
        return {"pool": tf.reshape(thumbnails, [-1, 12])}


@pytest.fixture(scope="module")
def fake_extractor_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("thumbnails"))
    module = _ThumbnailModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.features})
    return path


def test_fid_and_modes_metrics_on_digit_images(tmp_path):
    images, _ = digits.load_digits("test")
    extractor = _thumbnail_extractor()
    reference = fid.image_statistics(images, extractor=extractor)
    metric = sweep.fid_metric(extractor=extractor, reference=reference, reference_path="digits_test.npz")
    assert metric.evaluate(images)["fid"] == pytest.approx(0.0, abs=1e-6)
    assert metric.evaluate(images * 0.5)["fid"] > 0.01
    assert metric.config == {"extractor": "thumbnails", "reference": "digits_test.npz",
                             "reference_num_images": len(images)}
    coverage = sweep.modes_metric(classifier=modes.load_classifier(), classifier_path="bundled").evaluate(images)
    assert coverage["modes_covered"] == 10 and coverage["num_images"] == len(images)


@pytest.mark.parametrize("text, expected", [
    ("5e-6,6e-6,5e-6", [5e-6, 6e-6]),
    ("1e-6:1e-4:3", [1e-6, 1e-5, 1e-4]),
    ("2e-6:2e-6:1", [2e-6]),
])
def test_parse_step_sizes(text, expected):
    assert sweep.parse_step_sizes(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "abc", "1e-5:1e-6:3", "0,1e-6", "1:2"])
def test_bad_step_sizes_are_clear_errors(text):
    with pytest.raises(ValueError, match="step sizes"):
        sweep.parse_step_sizes(text)


def test_select_checkpoints_honours_the_range():
    available = [5000, 100000, 150000, 200000, 300000]
    assert sweep.select_checkpoints(available, "100000-200000") == [100000, 150000, 200000]
    assert sweep.select_checkpoints(available, "latest") == [300000]
    assert sweep.select_checkpoints(available, "all") == available
    assert sweep.select_checkpoints(available, "5000,150000-160000") == [5000, 150000]
    with pytest.raises(ValueError, match="no checkpoint in 1-10"):
        sweep.select_checkpoints(available, "1-10")
    with pytest.raises(ValueError, match="cannot parse"):
        sweep.select_checkpoints(available, "newest")


def test_format_seeds():
    assert sweep.format_seeds([0, 1, 2, 7, 9, 10]) == "0-2,7,9-10"
    assert sweep.format_seeds(range(5000)) == "0-4999"


# ---------------------------------------------------------------------------------------------------------------
# asm-eval end to end (subprocesses)


def test_asm_eval_sweeps_a_checkpoint_range(toy_run):
    workdir = toy_run
    args = ["--workdir", workdir, "--checkpoints", "10-20", "--step_sizes", "1e-5,2e-5,0.5", "--num_samples", "50",
            "--num_real", "200"]
    first = run_cli("evaluate", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    output_dir = os.path.join(workdir, "eval", "toy2d_cas_n10_N50")
    assert sorted(os.listdir(output_dir)) == [
        "ckpt10_eps0.5.json", "ckpt10_eps1e-05.json", "ckpt10_eps2e-05.json", "ckpt20_eps0.5.json",
        "ckpt20_eps1e-05.json", "ckpt20_eps2e-05.json", "toy2d_vs_step_size.png"]
    report = json.loads(open(os.path.join(output_dir, "ckpt20_eps2e-05.json")).read())
    assert report["seeds"] == "0-49" and report["num_samples"] == 50 and report["n_sigma"] == 10
    assert report["results"]["denoised"]["distance_total"] > 0
    assert "CAS" in json.loads(open(os.path.join(output_dir, "ckpt10_eps0.5.json")).read())["error"]
    assert "best denoised: distance_total" in first.stdout
    events = EventAccumulator(os.path.join(workdir, "tensorboard", "toy2d_cas_n10_N50"), size_guidance={TENSORS: 0})
    events.Reload()
    assert [event.step for event in events.Tensors("toy2d/denoised/eps_2e-05")] == [10, 20]


def test_asm_eval_of_stored_samples_equals_the_sweep_entry_that_draws_them(toy_run, tmp_path):
    samples_dir, output_dir = str(tmp_path / "samples"), str(tmp_path / "eval")
    sampled = run_cli("sample", "--workdir", toy_run, "--checkpoint", "10", "--seeds", "0-59",
                      "--output_dir", samples_dir)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    common = ["--workdir", toy_run, "--num_real", "200"]
    stored = run_cli("evaluate", *common, "--samples", samples_dir, "--output_dir", output_dir)
    assert stored.returncode == 0, stored.stderr[-3000:]
    drawn = run_cli("evaluate", *common, "--checkpoints", "10", "--num_samples", "60",
                    "--output_dir", str(tmp_path / "drawn"))
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    report = json.loads(open(os.path.join(output_dir, "ckpt10_eps2e-05.json")).read())
    expected = json.loads(open(str(tmp_path / "drawn" / "ckpt10_eps2e-05.json")).read())
    assert report.pop("seconds") >= 0 and expected.pop("seconds") >= 0
    assert report == expected and report["seeds"] == "0-59" and report["n_sigma"] == 10
    refused = run_cli("evaluate", *common, "--samples", samples_dir, "--checkpoints", "20")
    assert refused.returncode == 2 and "--checkpoints would need new ones" in refused.stderr
    missing = run_cli("evaluate", *common, "--samples", str(tmp_path))
    assert missing.returncode == 2 and "not an asm-sample output directory" in missing.stderr


def test_asm_eval_applies_gin_bindings_on_top_of_the_saved_config(toy_run, tmp_path):
    config = open(os.path.join(toy_run, "config.gin")).read()
    result = run_cli("evaluate", "--workdir", toy_run, "--checkpoints", "10", "--num_samples", "20",
                     "--num_real", "100", "--gin_bindings", "SamplerSettings.n_sigma = 2",
                     "--output_dir", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "ckpt10_eps2e-05.json").read_text())["n_sigma"] == 2  # the run's is 10
    assert open(os.path.join(toy_run, "config.gin")).read() == config


def test_asm_eval_stats_of_the_digits_with_a_configured_extractor(fake_extractor_dir, tmp_path):
    workdir = tmp_path / "digits_run"
    workdir.mkdir()
    (workdir / "config.gin").write_text("Experiment.data = @digits()\nExperiment.score_network = @ToyMLP\n")
    result = run_cli("evaluate", "--workdir", str(workdir), "--mode", "stats", "--inception_path", fake_extractor_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    written = fid.FeatureStatistics.load(str(workdir / "eval" / "reference_stats.npz"))
    train_images, _ = digits.load_digits("train")
    expected = fid.image_statistics(train_images, extractor=fid.load_feature_extractor(fake_extractor_dir))
    assert written.num_images == len(train_images)
    assert fid.frechet_distance_of_statistics(written, expected) < 1e-6
