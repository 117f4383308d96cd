"""asm-import: the reference's checkpoints in asm-tf's networks, output for output, read safely.

The fixtures in tests/fixtures/reference were written by tools/reference_fixtures.py with the reference's own
code: small NCSNv2, NCSNv2 without dilation (28x28), NCSNv2Deeper, NCSNv2Deepest and UNet networks with every
parameter moved off its initial value and EMA weights that differ from the live ones, and the reference networks'
outputs at four noise levels. The UNet's checkpoint (16 MB) is rebuilt from its expected.npz by the script's own
`rebuild_checkpoint`. ASM_REFERENCE_FIXTURES points the comparisons at other fixtures (the full-size networks).
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import torch

from asm_tf import workdir as workdir_lib
from asm_tf.reference import files, importer
from conftest import REPO, run_cli
from tools.reference_fixtures import fixture_values, rebuild_checkpoint

FIXTURES = os.environ.get("ASM_REFERENCE_FIXTURES", os.path.join(REPO, "tests", "fixtures", "reference"))
CASES = sorted(os.listdir(FIXTURES))
TOLERANCE = 1e-4  # of the output's standard deviation


def expected(case):
    return dict(np.load(os.path.join(FIXTURES, case, "expected.npz")))


def checkpoint_of(case, tmp_path_factory):
    arrays = expected(case)
    path = os.path.join(FIXTURES, case, f"checkpoint_{int(arrays['step'])}.pth")
    if not os.path.exists(path):
        path = str(tmp_path_factory.mktemp("rebuilt") / os.path.basename(path))
        rebuild_checkpoint(arrays, path)
    return path


def config_of(case):
    return os.path.join(FIXTURES, case, "config.yml")


def relative_error(output, reference):
    return float(np.abs(output - reference).max() / reference.std())


@pytest.mark.parametrize("case", CASES)
def test_imported_networks_give_the_reference_outputs(case, tmp_path, tmp_path_factory):
    arrays = expected(case)
    report = importer.import_checkpoint(checkpoint_of(case, tmp_path_factory), config_of(case), str(tmp_path / "run"))
    run = workdir_lib.load_run(str(tmp_path / "run"))  # what asm-sample, asm-export and asm-eval read
    x = tf.constant(arrays["x"])
    assert run.step == int(arrays["step"]) == report.step
    ema_output = run.score_model.network(x).numpy()
    assert relative_error(ema_output, arrays["ema_output"]) < TOLERANCE
    live = run.experiment.build_score_network()
    tf.train.Checkpoint(network=live.weights).read(run.checkpoint).assert_existing_objects_matched().expect_partial()
    assert relative_error(live(x).numpy(), arrays["live_output"]) < TOLERANCE
    assert relative_error(arrays["live_output"], arrays["ema_output"]) > 0.1  # the two sets of weights differ
    # every tensor accounted for: what was placed plus what was skipped is the whole reference network
    reference_total = sum(int(np.prod(shape[shape >= 0])) for shape in arrays["shapes"])
    skipped_total = sum(int(np.prod(shape[shape >= 0])) for name, shape in zip(arrays["names"], arrays["shapes"])
                        if name in dict(report.skipped))
    assert report.parameters + skipped_total == reference_total
    assert {name for name, _ in report.skipped} == {n for n in arrays["names"] if n.startswith("temb_dense.")}


def test_the_unet_skips_only_its_unused_time_embedding(tmp_path, tmp_path_factory):
    case = "cifar10_unet"
    report = importer.import_checkpoint(checkpoint_of(case, tmp_path_factory), config_of(case), str(tmp_path / "run"))
    assert [name for name, _ in report.skipped] == ["temb_dense.0.bias", "temb_dense.0.weight", "temb_dense.2.bias",
                                                    "temb_dense.2.weight"]
    record = json.load(open(importer.imported_path(str(tmp_path / "run"))))
    assert set(record["skipped_tensors"]) == {name for name, _ in report.skipped}
    assert "never used" in record["skipped_tensors"]["temb_dense.0.weight"]
    assert record["parameters"] == report.parameters and len(record["sha256"]) == 64


def test_the_configuration_follows_config_yml(tmp_path, tmp_path_factory):
    importer.import_checkpoint(checkpoint_of("cifar10_unet", tmp_path_factory), config_of("cifar10_unet"),
                               str(tmp_path / "unet"))
    run = workdir_lib.read_run_config(str(tmp_path / "unet"))
    schedule, settings = run.experiment.schedule, run.sampler_settings
    assert (schedule.sigma_begin, schedule.sigma_end, schedule.num_levels) == (50.0, 0.01, 232)
    assert run.experiment.ema_rate == 0.9999 and run.experiment.data.example_shape == (32, 32, 3)
    assert (settings.sampler, settings.n_sigma, settings.step_size, settings.noise_first) == ("als", 5, 6.2e-6, True)
    importer.import_checkpoint(checkpoint_of("stackedmnist_ncsnv2_no_dilation", tmp_path_factory),
                               config_of("stackedmnist_ncsnv2_no_dilation"), str(tmp_path / "mnist"))
    text = open(workdir_lib.config_path(str(tmp_path / "mnist"))).read()
    assert "NCSNv2.dilation = False" in text and "Experiment.data = @stacked_mnist()" in text


def test_the_fixture_rule_rebuilds_the_committed_checkpoints():
    """tools/reference_fixtures.py set the weights of the committed checkpoints from `fixture_values`: the rule
    that rebuilds the UNet's checkpoint gives them back exactly, live and EMA."""
    arrays = expected("cifar10_ncsnv2")
    checkpoint = files.load_checkpoint(os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"))
    names, shapes = list(arrays["names"]), [tuple(s[s >= 0]) for s in arrays["shapes"]]
    for state, seed in ((checkpoint.weights, arrays["weight_seed"]), (checkpoint.ema_weights, arrays["ema_seed"])):
        assert list(state) == names
        for name, value in zip(names, fixture_values(names, shapes, int(seed))):
            np.testing.assert_array_equal(state[name], value)
    assert checkpoint.optimizer["state"]  # this fixture's Adam moments are in the file, as after training


# ------------------------------------------------------------------------------------------- untrusted files
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, writer):
    marker, path = tmp_path / "executed", str(tmp_path / "checkpoint_1.pth")
    states = [{"w": torch.zeros(1)}, _Payload(marker), 0, 1, {"w": torch.zeros(1)}]
    if writer == "torch.save":
        torch.save(states, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(states, f)
    with pytest.raises(files.ReferenceFileError, match="refused"):
        files.load_checkpoint(path)
    assert not marker.exists()


def test_a_malicious_config_is_refused_and_nothing_runs(tmp_path):
    marker, path = tmp_path / "executed", tmp_path / "config.yml"
    path.write_text(f"data: !!python/object/apply:os.system ['touch {marker}']\nmodel: {{}}\n")
    with pytest.raises(files.ReferenceFileError, match="refusing the Python tag !!python/object/apply:os.system"):
        files.load_config(str(path))
    assert not marker.exists()
    path.write_text("!!python/object:argparse.Namespace\ndata: !!python/object:subprocess.Popen {}\nmodel: {}\n")
    with pytest.raises(files.ReferenceFileError, match="only argparse.Namespace"):
        files.load_config(str(path))


def test_without_the_extra_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(files.ReferenceFileError, match=r'pip install -e "\.\[import\]"'):
        files.load_checkpoint(os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"))


def test_nothing_but_the_importer_imports_torch():
    code = ("import sys; from asm_tf import configuration, export, training, workdir; "
            "from asm_tf.evaluation import digit_quality, fid, modes, sweep; import asm_tf.cli.import_reference; "
            "configuration.register_configurables(); "
            "assert 'torch' not in sys.modules and 'yaml' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ bad input
def _import(tmp_path, checkpoint, config=None, workdir=None, *extra):
    return run_cli("import_reference", f"--reference_checkpoint={checkpoint}",
                   f"--workdir={workdir or tmp_path / 'run'}", *([f"--reference_config={config}"] if config else []),
                   *extra)


def _one_line_error(result, pattern, status=2):
    assert result.returncode == status, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("asm-import: error: "), result.stderr[-2000:]
    assert pattern in lines[0], lines[0]


def test_bad_files_are_one_line_errors_and_leave_no_run(tmp_path, tmp_path_factory):
    good = os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth")
    truncated, text = tmp_path / "truncated.pth", tmp_path / "notes.pth"
    truncated.write_bytes(open(good, "rb").read()[:200_000])
    text.write_text("not a checkpoint")
    cases = [
        (tmp_path / "missing.pth", config_of("cifar10_ncsnv2"), "missing.pth not found"),
        (truncated, config_of("cifar10_ncsnv2"), "cannot read"),
        (text, config_of("cifar10_ncsnv2"), "cannot read"),
        (good, tmp_path / "absent.yml", "give its path with --reference_config"),
        # the NCSNv2 weights against the config of the deeper network
        (good, config_of("church_ncsnv2deeper"), "has no tensor res3.0.conv2.conv.weight, which NCSNv2Deeper"),
        (good, config_of("cifar10_unet"), "has no tensor downblocks.0.weight"),
    ]
    for index, (checkpoint, config, pattern) in enumerate(cases):
        workdir = tmp_path / f"run{index}"
        _one_line_error(_import(tmp_path, checkpoint, config, workdir), pattern)
        assert not workdir.exists() or not os.listdir(workdir), f"{pattern}: {os.listdir(workdir)}"


def test_a_config_of_another_width_names_the_tensor_and_both_shapes(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(open(config_of("cifar10_ncsnv2")).read().replace("ngf: 4", "ngf: 8"))
    result = _import(tmp_path, os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"), config)
    _one_line_error(result, "begin_conv.weight has shape [4, 3, 3, 3], but NCSNv2(ngf=8)")


def test_a_workdir_with_a_run_is_refused_unless_overwrite(tmp_path):
    checkpoint = os.path.join(FIXTURES, "stackedmnist_ncsnv2_no_dilation", "checkpoint_1000.pth")
    assert _import(tmp_path, checkpoint).returncode == 0
    config_before = (tmp_path / "run" / "config.gin").read_text()
    _one_line_error(_import(tmp_path, checkpoint), "already holds a run")
    result = _import(tmp_path, checkpoint, None, None, "--overwrite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "config.gin").read_text() == config_before
    assert workdir_lib.checkpoint_steps(str(tmp_path / "run")) == [1000]


def test_a_read_only_location_is_refused_before_reading(tmp_path, storage_faults):
    locked = tmp_path / "locked"
    locked.mkdir()
    storage_faults.read_only(locked)
    result = _import(tmp_path, os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"), None, locked / "run")
    _one_line_error(result, "cannot write the workdir", status=1)


def test_a_full_disk_stops_the_import_naming_the_checkpoint_and_leaves_no_run(tmp_path, storage_faults):
    workdir = storage_faults.tmpfs(tmp_path / "disk", "64k") / "run"  # the checkpoint needs about 240 kB
    result = _import(tmp_path, os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"), None, workdir)
    _one_line_error(result, f"cannot write checkpoint {workdir}/checkpoints/ckpt-1000 (No space left on device)",
                    status=1)
    assert not os.path.exists(workdir_lib.config_path(str(workdir))) and not workdir_lib.checkpoint_steps(str(workdir))
