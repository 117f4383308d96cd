"""The command-line tools end to end, in subprocesses, on a tiny 2-D run."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import TOY_RUN_ARGS as TINY
from conftest import run_cli as run
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from asm_tf import configuration
from asm_tf.cli import common


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("asm-")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def workdir(trained_toy_run, toy_run):
    """The tiny run trained by an asm-train subprocess (TINY), copied for this module."""
    assert "step 20/20" in trained_toy_run[1]
    return toy_run


def test_train_writes_checkpoints_config_and_events(workdir):
    assert os.path.exists(os.path.join(workdir, "config.gin"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [
        "checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index", "ckpt-20.data-00000-of-00001",
        "ckpt-20.index"]
    assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_train_records_the_operative_configuration_and_hyperparameters(workdir):
    operative = open(os.path.join(workdir, "operative_config.gin")).read()
    assert "Trainer.num_steps = 20" in operative  # given
    assert "Trainer.precision = 'float32'" in operative  # a default, which config.gin does not hold
    assert "float32" not in open(os.path.join(workdir, "config.gin")).read()
    events = EventAccumulator(os.path.join(workdir, "tensorboard"), size_guidance={TENSORS: 0})
    events.Reload()
    text = tf.make_ndarray(events.Tensors("operative_config")[0].tensor_proto).item().decode()
    assert "    Trainer.precision = 'float32'" in text  # a Markdown code block
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["num_steps"].number_value == 20 and hparams["score_network"].string_value == "ToyMLP"
    assert hparams["adversarial"].bool_value is False and hparams["learning_rate"].number_value == pytest.approx(1e-3)


def test_sample_writes_arrays_pictures_and_settings(workdir, tmp_path):
    out = str(tmp_path / "out")
    result = run("sample", "--workdir", workdir, "--seeds", "0-9,100", "--batch_size", "4", "--output_dir", out,
                 "--checkpoint", "10", "--sampler", "als", "--n_sigma", "2", "--step_size", "1e-5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled 11/11" in result.stdout
    arrays = np.load(os.path.join(out, "samples.npz"))
    assert arrays["final"].shape == arrays["denoised"].shape == (11, 2)
    np.testing.assert_array_equal(arrays["seeds"], list(range(10)) + [100])
    settings = json.load(open(os.path.join(out, "settings.json")))
    assert settings["step"] == 10 and settings["sampler"] == "als" and settings["n_sigma"] == 2
    for name in ("final.png", "denoised.png"):
        assert open(os.path.join(out, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_dry_run_prints_sizes_and_writes_nothing(tmp_path):
    result = run("train", *TINY, "--dry_run", "--workdir", str(tmp_path / "dry"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ToyMLP, 642 parameters" in result.stdout and "dry run: the configuration is valid" in result.stdout
    assert not os.path.exists(tmp_path / "dry")


def test_a_bad_configuration_fails_with_one_line():
    result = run("train", *TINY, "--gin_bindings", "SamplerSettings.step_size = 1.0", "--dry_run")
    assert "outside the CAS bounds" in error_line(result)


@pytest.mark.parametrize("files,bindings,expected", [
    ([], ["Trainer.no_such_option = 1"], r"bad gin binding in \['Trainer.no_such_option = 1'\]: Configurable "
                                         "'Trainer' doesn't"),
    ([], ["NoSuchThing.x = 1"], "bad gin binding in .*: No configurable matching 'NoSuchThing'"),
    (["mistake.gin"], [], "bad gin configuration: No configurable matching 'NoSuchThing'"),
    (["missing.gin"], [], "gin file missing.gin not found"),
])
def test_gin_mistakes_are_configuration_errors(files, bindings, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mistake.gin").write_text("Trainer.num_steps = 3\nNoSuchThing.x = 1\n")
    with pytest.raises(configuration.ConfigError, match=expected):
        configuration.parse(files, bindings)


def test_bad_sampling_requests_fail_with_one_line_and_keep_the_run(workdir):
    before = sorted(os.listdir(workdir))
    assert "cannot parse seeds '0-x'" in error_line(run("sample", "--workdir", workdir, "--seeds", "0-x"))
    assert "strictly between" in error_line(run("sample", "--workdir", workdir, "--step_size", "0.5"))
    assert "no checkpoint at step 7" in error_line(run("sample", "--workdir", workdir, "--checkpoint", "7"))
    assert "repeats a seed" in error_line(run("sample", "--workdir", workdir, "--seeds", "1-3,2", "--png_dir"))
    assert sorted(os.listdir(workdir)) == before


def test_a_workdir_of_another_config_is_refused_and_left_alone(workdir):
    config = open(os.path.join(workdir, "config.gin")).read()
    result = run("train", *TINY, "--gin_bindings", "Trainer.num_steps = 40", "--workdir", workdir)
    assert "holds a run of another configuration" in error_line(result)
    assert "--allow_config_change" in error_line(result)
    assert open(os.path.join(workdir, "config.gin")).read() == config
    assert "ckpt-20.index" in os.listdir(os.path.join(workdir, "checkpoints"))


@pytest.fixture(scope="module")
def damaged(workdir, tmp_path_factory):
    """A copy of the run whose newest checkpoint (step 20) has lost the second half of its data file."""
    path = str(tmp_path_factory.mktemp("damaged") / "run")
    shutil.copytree(workdir, path)
    data = os.path.join(path, "checkpoints", "ckpt-20.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)
    return path


@pytest.mark.parametrize("module,args", [
    ("sample", ["--seeds", "0-3"]),
    ("export", ["--export_dir", "{tmp}/export"]),
    ("evaluate", ["--metric", "toy2d", "--num_samples", "20", "--num_real", "100", "--output_dir", "{tmp}/eval"]),
])
def test_every_command_passes_over_a_damaged_newest_checkpoint_with_a_warning(damaged, tmp_path, module, args):
    result = run(module, "--workdir", damaged, *[arg.format(tmp=tmp_path) for arg in args])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    damaged_file = os.path.join(damaged, "checkpoints", "ckpt-20")
    assert (f"warning: cannot read checkpoint {damaged_file} (IndexError: Read less bytes than requested); "
            f"using the checkpoint before it, {damaged_file[:-2]}10") in result.stdout


def test_a_damaged_checkpoint_named_explicitly_is_a_one_line_error(damaged):
    line = error_line(run("sample", "--workdir", damaged, "--checkpoint", "20"))
    assert line == (f"asm-sample: error: cannot read checkpoint {damaged}/checkpoints/ckpt-20 (IndexError: Read "
                    "less bytes than requested): choose another checkpoint (steps [10])")


@pytest.mark.parametrize("text,seeds", [("0-3", [0, 1, 2, 3]), ("7", [7]), ("1,3-4, 9", [1, 3, 4, 9])])
def test_seed_lists(text, seeds):
    assert common.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-2", "1,,x"])
def test_seed_lists_that_do_not_parse(text):
    with pytest.raises(common.UserError):
        common.parse_seeds(text)
