"""asm-import: the reference's checkpoints in asm-tf's networks, output for output, read safely.

The fixtures in tests/fixtures/reference were written by tools/experiments/reference_fixtures.py with the reference's
own code: small NCSNv2, NCSNv2 without dilation (28x28), NCSNv2Deeper, NCSNv2Deepest, UNet and conditional UNet
networks with every parameter moved off its initial value and EMA weights that differ from the live ones, and the
reference networks' outputs at four noise levels (the conditional UNet given their indices on the ladder). The
UNets' checkpoints (16 MB) are rebuilt from their expected.npz by the script's own `rebuild_checkpoint`.
ASM_REFERENCE_FIXTURES points the comparisons at other fixtures (the full-size networks).
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
from conftest import REPO, run_cli

from asm_tf import run_loading, storage
from asm_tf import workdir as workdir_lib
from asm_tf.reference import files, importer
from tools.experiments.reference_fixtures import fixture_values, rebuild_checkpoint

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


def output(network, arrays, schedule):
    """The network's output on the fixture's x; a conditional one is told sigma_i of the fixture's level indices
    on the run's ladder, as training and the samplers tell it."""
    x = tf.constant(arrays["x"])
    if "levels" not in arrays:
        return network(x).numpy()
    return network(x, tf.constant(schedule.sigmas()[arrays["levels"]], tf.float32)).numpy()


@pytest.mark.parametrize("case", CASES)
def test_imported_networks_give_the_reference_outputs(case, tmp_path, tmp_path_factory):
    arrays = expected(case)
    report = importer.import_checkpoint(checkpoint_of(case, tmp_path_factory), config_of(case), str(tmp_path / "run"))
    run = run_loading.load_run(str(tmp_path / "run"))  # what asm-sample, asm-export and asm-eval read
    schedule = run.experiment.schedule
    assert run.step == int(arrays["step"]) == report.step
    assert relative_error(output(run.score_model.network, arrays, schedule), arrays["ema_output"]) < TOLERANCE
    live = run.experiment.build_score_network()
    tf.train.Checkpoint(network=live.weights).read(run.checkpoint).assert_existing_objects_matched().expect_partial()
    assert relative_error(output(live, arrays, schedule), arrays["live_output"]) < TOLERANCE
    assert relative_error(arrays["live_output"], arrays["ema_output"]) > 0.1  # the two sets of weights differ
    # every tensor accounted for: what was placed plus what was skipped is the whole reference network
    reference_total = sum(int(np.prod(shape[shape >= 0])) for shape in arrays["shapes"])
    skipped_total = sum(int(np.prod(shape[shape >= 0])) for name, shape in zip(arrays["names"], arrays["shapes"])
                        if name in dict(report.skipped))
    assert report.parameters + skipped_total == reference_total
    unused = set() if "levels" in arrays else {n for n in arrays["names"] if n.startswith("temb_dense.")}
    assert {name for name, _ in report.skipped} == unused


def test_the_unet_skips_only_its_unused_time_embedding(tmp_path, tmp_path_factory):
    case = "cifar10_unet"
    report = importer.import_checkpoint(checkpoint_of(case, tmp_path_factory), config_of(case), str(tmp_path / "run"))
    assert [name for name, _ in report.skipped] == ["temb_dense.0.bias", "temb_dense.0.weight", "temb_dense.2.bias",
                                                    "temb_dense.2.weight"]
    record = json.load(open(workdir_lib.import_record_path(str(tmp_path / "run"))))
    assert set(record["skipped_tensors"]) == {name for name, _ in report.skipped}
    assert "never used" in record["skipped_tensors"]["temb_dense.0.weight"]
    assert record["parameters"] == report.parameters and len(record["sha256"]) == 64


def test_a_conditional_unet_is_read_off_its_weights(tmp_path, tmp_path_factory):
    """config.yml does not say that the reference's UNet is conditional; the embedding's projections do. It then
    reads sigma on the config's ladder, whose levels are the reference's (np.geomspace) to float32 rounding."""
    case = "cifar10_unet_conditional"
    arrays = expected(case)
    report = importer.import_checkpoint(checkpoint_of(case, tmp_path_factory), config_of(case), str(tmp_path / "run"))
    assert "conditioning='index'" in report.network and not report.skipped
    assert "UNet.conditioning = 'index'" in open(workdir_lib.config_path(str(tmp_path / "run"))).read()
    run = run_loading.load_run(str(tmp_path / "run"))
    np.testing.assert_allclose(run.experiment.schedule.sigmas()[arrays["levels"]], arrays["sigmas"], rtol=1e-12)
    positions = run.score_model.network.sigma_positions(tf.constant(arrays["sigmas"], tf.float32), 4).numpy()
    np.testing.assert_array_equal(positions, arrays["levels"])


def test_the_configuration_follows_config_yml(tmp_path, tmp_path_factory):
    importer.import_checkpoint(checkpoint_of("cifar10_unet", tmp_path_factory), config_of("cifar10_unet"),
                               str(tmp_path / "unet"))
    run = run_loading.read_run_config(str(tmp_path / "unet"))
    schedule, settings = run.experiment.schedule, run.sampler_settings
    assert (schedule.sigma_begin, schedule.sigma_end, schedule.num_levels) == (50.0, 0.01, 232)
    assert run.experiment.ema_rate == 0.9999 and run.experiment.data.example_shape == (32, 32, 3)
    assert (settings.sampler, settings.n_sigma, settings.step_size, settings.noise_first) == ("als", 5, 6.2e-6, True)
    importer.import_checkpoint(checkpoint_of("stackedmnist_ncsnv2_no_dilation", tmp_path_factory),
                               config_of("stackedmnist_ncsnv2_no_dilation"), str(tmp_path / "mnist"))
    text = open(workdir_lib.config_path(str(tmp_path / "mnist"))).read()
    assert "NCSNv2.dilation = False" in text and "Experiment.data = @stacked_mnist()" in text


def test_the_fixture_rule_rebuilds_the_committed_checkpoints():
    """tools/experiments/reference_fixtures.py set the weights of the committed checkpoints from `fixture_values`: the rule
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
            pickle.dump(states, f, protocol=2)
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


def test_bad_files_are_clear_errors_and_leave_no_run(tmp_path):
    good = os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth")
    truncated, text = tmp_path / "truncated.pth", tmp_path / "notes.pth"
    truncated.write_bytes(open(good, "rb").read()[:200_000])
    text.write_text("not a checkpoint")
    wider = tmp_path / "wider.yml"
    wider.write_text(open(config_of("cifar10_ncsnv2")).read().replace("ngf: 4", "ngf: 8"))
    cases = [
        (tmp_path / "missing.pth", config_of("cifar10_ncsnv2"), FileNotFoundError, "missing.pth not found"),
        (truncated, config_of("cifar10_ncsnv2"), files.ReferenceFileError, "cannot read .*truncated.pth"),
        (text, config_of("cifar10_ncsnv2"), files.ReferenceFileError, "cannot read .*notes.pth"),
        (good, tmp_path / "absent.yml", FileNotFoundError, "give its path with --reference_config"),
        (text, text, files.ReferenceFileError, "is not a config.yml of the reference"),
        # the NCSNv2 weights against the configs of other networks, and of another width
        (good, config_of("church_ncsnv2deeper"), files.ReferenceFileError,
         "has no tensor res3.0.conv2.conv.weight, which NCSNv2Deeper"),
        (good, config_of("cifar10_unet"), files.ReferenceFileError, "has no tensor downblocks.0.weight, which UNet"),
        (good, wider, files.ReferenceFileError, r"begin_conv.weight has shape \[4, 3, 3, 3\], but NCSNv2\(ngf=8\)"),
    ]
    for index, (checkpoint, config, error, pattern) in enumerate(cases):
        workdir = tmp_path / f"run{index}"
        with pytest.raises(error, match=pattern):
            importer.import_checkpoint(str(checkpoint), str(config), str(workdir))
        assert not workdir.exists() or not os.listdir(workdir), f"{pattern}: {os.listdir(workdir)}"


def test_a_workdir_with_a_run_is_refused_unless_overwrite(tmp_path):
    case = "stackedmnist_ncsnv2_no_dilation"
    checkpoint, config = os.path.join(FIXTURES, case, "checkpoint_1000.pth"), config_of(case)
    workdir = str(tmp_path / "run")
    importer.import_checkpoint(checkpoint, config, workdir)
    config_before = open(workdir_lib.config_path(workdir)).read()
    _one_line_error(_import(tmp_path, checkpoint, None, workdir), "already holds a run")
    importer.import_checkpoint(checkpoint, config, workdir, overwrite=True)
    assert open(workdir_lib.config_path(workdir)).read() == config_before
    assert workdir_lib.checkpoint_steps(workdir) == [1000]


def test_a_read_only_location_is_refused_before_reading(tmp_path, storage_faults):
    locked = tmp_path / "locked"
    locked.mkdir()
    storage_faults.read_only(locked)
    result = _import(tmp_path, os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"), None, locked / "run")
    _one_line_error(result, "cannot write the workdir", status=1)


def test_a_full_disk_stops_the_import_naming_the_checkpoint_and_leaves_no_run(tmp_path, storage_faults):
    workdir = storage_faults.tmpfs(tmp_path / "disk", "64k") / "run"  # the checkpoint needs about 240 kB
    with pytest.raises(storage.StorageError,
                       match=f"cannot write checkpoint {workdir}/checkpoints/ckpt-1000 \\(No space left on device\\)"):
        importer.import_checkpoint(os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"),
                                   config_of("cifar10_ncsnv2"), str(workdir))
    assert not os.path.exists(workdir_lib.config_path(str(workdir))) and not workdir_lib.checkpoint_steps(str(workdir))


# ------------------------------------------------------------------------------------------------- end to end
# Runs in a fresh interpreter, as TF Serving would: the session loader, every signature listed, two called.
SERVED = r"""
import sys
import numpy as np
import tensorflow as tf

path, inputs, out = sys.argv[1:]
inputs = np.load(inputs)
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    def call(name, **feeds):
        signature = meta.signature_def[name]
        fetches = {key: tensor.name for key, tensor in signature.outputs.items()}
        return session.run(fetches, {signature.inputs[key].name: value for key, value in feeds.items()})
    served = call("serving_default", seeds=inputs["seeds"])
    denoised = call("denoise", noisy_images=inputs["x"], sigma=inputs["sigmas"])
np.savez(out, signatures=np.array(sorted(meta.signature_def)), images=served["images"],
         denoised=denoised["denoised"])
"""


def _fake_inception(directory):
    """A feature extractor in the SavedModel form asm-eval loads: 2x2 thumbnails (12 features)."""
    class Thumbnails(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def features(self, images):
            thumbnails = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (2, 2), method="area")
            return {"pool": tf.reshape(thumbnails, [-1, 12])}

    module = Thumbnails()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.features})
    return directory


def test_an_imported_checkpoint_samples_exports_and_evaluates(tmp_path):
    """asm-import, then asm-sample (CAS), asm-export (every signature, read by TF Serving's loader: the served
    denoiser is the reference network's EDS) and asm-eval --metric=fid, as the README's section says."""
    case, workdir = "cifar10_ncsnv2", str(tmp_path / "run")
    arrays = expected(case)
    result = _import(tmp_path, os.path.join(FIXTURES, case, "checkpoint_1000.pth"), None, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NCSNv2(ngf=4), 29,687 parameters, step 1000" in result.stdout
    cas = ["--sampler=cas", "--n_sigma=1", "--step_size=5.6e-6"]  # the paper's CAS n_sigma 1 setting for CIFAR-10
    samples = str(tmp_path / "samples")
    result = run_cli("sample", f"--workdir={workdir}", "--seeds=0-1", f"--output_dir={samples}", *cas)
    assert result.returncode == 0, result.stderr[-2000:]
    sampled = np.load(os.path.join(samples, "samples.npz"))
    assert sampled["denoised"].shape == (2, 32, 32, 3) and sampled["denoised"].dtype == np.uint8

    result = run_cli("export", f"--workdir={workdir}", f"--export_dir={tmp_path / 'exports'}", "--max_images=4",
                     "--n_sigma=1", "--step_size=5.6e-6", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    inputs, out = str(tmp_path / "inputs.npz"), str(tmp_path / "served.npz")
    np.savez(inputs, seeds=np.array([0, 1], np.int64), x=arrays["x"], sigmas=arrays["sigmas"].astype(np.float32))
    result = subprocess.run([sys.executable, "-c", SERVED, str(tmp_path / "exports" / "run" / "1"), inputs, out],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(out)
    assert set(served["signatures"]) >= {"serving_default", "sample_cas", "sample_als", "sample_ode",
                                         "sample_cas_levels", "denoise", "inpaint"}
    assert np.abs(served["images"].astype(int) - sampled["denoised"]).max() <= 1
    sigmas = arrays["sigmas"].reshape(-1, 1, 1, 1).astype(np.float32)
    reference_eds = arrays["x"] + sigmas * arrays["ema_output"]  # the reference network's denoised images
    assert np.abs(served["denoised"] - reference_eds).max() <= TOLERANCE * np.abs(sigmas * arrays["ema_output"]).max()

    stats = str(tmp_path / "stats.npz")
    rng = np.random.default_rng(0)
    np.savez(stats, mu=rng.uniform(size=12), sigma=np.eye(12) * 0.01)  # a statistics file with keys mu and sigma
    result = run_cli("evaluate", f"--workdir={workdir}", "--metric=fid", f"--reference_stats={stats}",
                     f"--inception_path={_fake_inception(str(tmp_path / 'inception'))}", "--num_samples=4",
                     "--step_sizes=5.6e-6", "--sampler=cas", "--n_sigma=1", f"--output_dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [json.load(open(tmp_path / "eval" / name)) for name in os.listdir(tmp_path / "eval")
               if name.endswith(".json")]
    assert len(reports) == 1 and reports[0]["checkpoint"] == 1000, reports
    assert all(np.isfinite(result["fid"]) and result["num_images"] == 4 for result in reports[0]["results"].values())


def test_training_refuses_to_resume_an_import(tmp_path):
    workdir = str(tmp_path / "run")
    importer.import_checkpoint(os.path.join(FIXTURES, "cifar10_ncsnv2", "checkpoint_1000.pth"),
                               config_of("cifar10_ncsnv2"), workdir)
    result = run_cli("train", f"--workdir={workdir}", "--gin_file", workdir_lib.config_path(workdir))
    assert result.returncode == 2 and "imported from the reference" in result.stderr, result.stderr[-2000:]
