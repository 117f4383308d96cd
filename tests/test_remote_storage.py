"""Workdirs, exports and outputs on storage that is not a local path: every file goes through tf.io.gfile.

Two views: the four commands chained on file:// URLs (a scheme that Python's `open` and `os` would treat as a
relative folder named 'file:', as they would gs://), and the library's pieces chained on TensorFlow's
in-process ram:// file system, which no local folder can stand in for.
"""

import io
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, run_cli

from asm_tf import configuration, export, run_loading, sampling, storage, summaries, training
from asm_tf import workdir as workdir_lib
from asm_tf.evaluation import sweep

TOY = os.path.join(REPO, "gin_configs", "toy2d_8gaussians.gin")
BINDINGS = ["Trainer.num_steps = 20", "Trainer.steps_per_call = 10", "Trainer.log_every = 10",
            "Trainer.checkpoint_every = 10", "Trainer.sample_every = 20", "Trainer.num_preview = 16",
            "ToyMLP.hidden = 16", "toy2d.pool_size = 1024", "SamplerSettings.n_sigma = 2"]


def command(cwd, name, *args):
    result = run_cli(name, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_commands_chained_on_file_urls_write_only_where_the_urls_point(tmp_path):
    cwd, store = tmp_path / "cwd", tmp_path / "store"
    cwd.mkdir()
    url = f"file://{store}"
    bindings = [arg for binding in BINDINGS for arg in ("--gin_bindings", binding)]
    command(cwd, "train", "--gin_file", TOY, *bindings, "--strategy", "default", "--workdir", f"{url}/run")
    command(cwd, "sample", "--workdir", f"{url}/run", "--seeds", "0-7", "--output_dir", f"{url}/samples")
    command(cwd, "export", "--workdir", f"{url}/run", "--export_dir", f"{url}/export", "--name", "toy")
    command(cwd, "evaluate", "--workdir", f"{url}/run", "--samples", f"{url}/samples", "--output_dir", f"{url}/eval")

    assert os.listdir(cwd) == []  # no folder named 'file:' beside the user
    assert (store / "run" / "config.gin").read_text() and (store / "run" / "checkpoints" / "ckpt-20.index").exists()
    assert sorted(os.listdir(store / "samples")) == ["denoised.png", "final.png", "samples.npz", "settings.json"]
    assert os.listdir(store / "export" / "toy") == ["1"]
    info = json.loads((store / "export" / "toy" / "1" / "assets.extra" / "asm_export.json").read_text())
    assert info["workdir"] == f"{url}/run"
    assert json.loads((store / "eval" / "ckpt20_eps2e-05.json").read_text())["checkpoint"] == 20


@pytest.fixture
def ram_workdir():
    """A workdir on ram://, removed afterwards with the gin bindings the test parsed (later tests in this
    process must not inherit them)."""
    path = f"ram://asm_test_{os.getpid()}"
    yield path
    gin.clear_config()
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def test_train_resume_sample_export_and_evaluate_on_ram(ram_workdir):
    workdir, outputs = f"{ram_workdir}/run", f"{ram_workdir}/outputs"
    configuration.parse([TOY], BINDINGS)
    config = gin.config_str()
    workdir_lib.check_config(workdir, config)
    workdir_lib.save_config(workdir, config)
    workdir_lib.check_config(workdir, config)  # the saved one reads back equal
    with pytest.raises(workdir_lib.ConfigChanged, match="another configuration"):
        workdir_lib.check_config(workdir, config + "Trainer.seed = 5\n")
    training.Trainer(workdir, tf.distribute.get_strategy()).train(log=lambda _: None)
    assert tf.io.gfile.glob(f"{workdir}/tensorboard/events.*")
    resumed = training.Trainer(workdir, tf.distribute.get_strategy(), num_steps=30)
    assert resumed.checkpoints.restore(log=lambda _: None) == 20

    loaded = run_loading.load_run(workdir, log=lambda _: None)
    settings = loaded.sampler_settings
    sampler = sampling.make_sampler(loaded.score_model, loaded.experiment.schedule, settings, loaded.experiment.data)
    final, denoised = sampling.sample_in_batches(sampler, range(8), 8, log=io.StringIO())
    storage.write_npz(f"{outputs}/samples.npz", final=final, denoised=denoised)
    np.testing.assert_array_equal(storage.read_npz(f"{outputs}/samples.npz")["final"], final)
    summaries.save_png(summaries.scatter_plot(final), f"{outputs}/final.png")
    assert tf.io.decode_png(tf.io.read_file(f"{outputs}/final.png")).shape[-1] == 3

    base = f"{ram_workdir}/export/toy"
    version = export.choose_version(base)
    export.save(loaded.score_model, loaded.experiment.schedule, loaded.experiment.data, settings,
                f"{base}/{version}")
    assert export.existing_versions(base) == [1] and export.choose_version(base) == 2
    served = tf.saved_model.load(f"{base}/1").signatures["serving_default"]
    np.testing.assert_allclose(served(seeds=tf.constant([0, 1], tf.int64))["points"], denoised[:2], atol=1e-5)

    metric = sweep.toy2d_metric(real_points=final, description="the samples themselves")
    reports = sweep.run_sweep(checkpoints=[loaded.step], step_sizes=[settings.step_size],
                              load_checkpoint=lambda step: lambda eps: (final, denoised), metric=metric,
                              settings={"num_samples": 8}, output_dir=f"{outputs}/eval", log=lambda _: None)
    assert sweep.read_report(sweep.report_path(f"{outputs}/eval", loaded.step, settings.step_size),
                             {"metric": "toy2d"})["checkpoint"] == reports[0]["checkpoint"] == 20
    assert tf.io.gfile.exists(f"{outputs}/eval/toy2d_vs_step_size.png")
