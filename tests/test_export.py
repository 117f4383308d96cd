"""asm-export end to end: a tiny image run exported once, then loaded in a fresh process that imports only
TensorFlow, with the session loader TF Serving uses and with tf.saved_model.load."""

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, run_cli, write_untrained_run
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from asm_tf import export, run_loading, sampling
from asm_tf.data import toy2d
from asm_tf.models.mlp import ToyMLP
from asm_tf.noise_levels import schedule as noise_schedule
from asm_tf.score import ScoreModel

SHAPE = (8, 8, 3)
MAX_IMAGES = 6
STEP = 7
# A per-pixel MLP keeps tracing and graph optimisation cheap; the NCSNv2 path is exercised by
# tools/benchmarks/benchmark_export.py, which loads its export with the session loader too.
CONFIG = """
Experiment.data = @image_folder()
image_folder.path = '{images}'
image_folder.image_size = 8
image_folder.random_flip = False
image_folder.transform = @Transform()
Transform.rescale = True
Experiment.score_network = @ToyMLP
ToyMLP.hidden = 16
ToyMLP.depth = 2
NoiseSchedule.sigma_begin = 1.0
NoiseSchedule.sigma_end = 0.05
NoiseSchedule.num_levels = 4
SamplerSettings.sampler = 'cas'
SamplerSettings.n_sigma = 2
SamplerSettings.step_size = 0.002
"""

# Runs in a fresh interpreter: only TensorFlow (and numpy) may be imported.
FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf

path, calls_file, out_file = sys.argv[1:]
calls = json.load(open(calls_file))
results, errors = {}, {}

def arrays(call):
    return {name: np.asarray(value, dtype) for name, (value, dtype) in call["inputs"].items()}

with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    for index, call in enumerate(calls):
        signature = meta.signature_def[call["signature"]]
        feeds = {signature.inputs[name].name: value for name, value in arrays(call).items()}
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        try:
            for name, value in session.run(fetches, feeds).items():
                results[f"session/{index}/{name}"] = value
        except tf.errors.InvalidArgumentError as error:
            errors[str(index)] = error.message

loaded = tf.saved_model.load(path)
for index, call in enumerate(calls):
    if call.get("eager"):
        outputs = loaded.signatures[call["signature"]](**{k: tf.constant(v) for k, v in arrays(call).items()})
        for name, value in outputs.items():
            results[f"eager/{index}/{name}"] = value.numpy()

assert not [m for m in sys.modules if m.split(".")[0] in ("asm_tf", "gin")], "asm_tf was imported"
np.savez(out_file, **results)
json.dump(errors, open(out_file + ".errors.json", "w"))
"""


def _call(signature, eager=False, **inputs):
    return {"signature": signature, "eager": eager, "inputs": inputs}


def _seeds(values):
    return [list(values), "int64"]


def _cas(seeds, step_size, n_sigma, denoise):
    return dict(seeds=_seeds(seeds), step_size=[step_size, "float32"], n_sigma=[n_sigma, "int32"],
                denoise=[denoise, "bool"])


def _ode(seeds, num_steps, spacing, second_order, churn=0.0, eta=0.0, denoise=True):
    return dict(seeds=_seeds(seeds), num_steps=[num_steps, "int32"], spacing=[spacing, "bytes"], rho=[7.0, "float32"],
                second_order=[second_order, "bool"], churn=[churn, "float32"], eta=[eta, "float32"],
                denoise=[denoise, "bool"])


def _cas_levels(seeds, num_steps, step_size):
    return dict(seeds=_seeds(seeds), num_steps=[num_steps, "int32"], spacing=["ladder", "bytes"],
                rho=[7.0, "float32"], step_size=[step_size, "float32"], denoise=[True, "bool"])


KNOWN = np.random.default_rng(0).uniform(size=(3, *SHAPE)).astype(np.float32)
MASK = np.zeros((3, 8, 8, 1), np.float32)
MASK[:, :4] = 1.0  # the top half of every image is known
NOISY = np.random.default_rng(1).normal(size=(2, *SHAPE)).astype(np.float32)
SEEDS = [5, 0, 3, 11, 2]
CALLS = {
    "default": _call("serving_default", eager=True, seeds=_seeds(SEEDS)),
    "default_reordered": _call("serving_default", seeds=_seeds([2, 11, 5])),
    "cas_n3": _call("sample_cas", eager=True, **_cas(SEEDS, 0.0018, 3, False)),
    "cas_n3_denoised": _call("sample_cas", **_cas(SEEDS, 0.0018, 3, True)),
    "als": _call("sample_als", **_cas(SEEDS, 0.003, 2, False)),
    "heun": _call("sample_ode", eager=True, **_ode(SEEDS, 3, "rho", True)),
    "heun_churn": _call("sample_ode", **_ode(SEEDS, 3, "rho", True, churn=1.0)),
    "heun_churn_reordered": _call("sample_ode", **_ode([2, 11, 5], 3, "rho", True, churn=1.0)),
    "euler_eta": _call("sample_ode", eager=True, **_ode(SEEDS, 4, "ladder", False, eta=0.5, denoise=False)),
    "cas_levels": _call("sample_cas_levels", eager=True, **_cas_levels(SEEDS, 3, 0.0025)),
    "denoise": _call("denoise", noisy_images=[NOISY.tolist(), "float32"], sigma=[[0.5, 0.1], "float32"]),
    "inpaint": _call("inpaint", eager=True, images=[KNOWN.tolist(), "float32"], mask=[MASK.tolist(), "float32"],
                     seeds=_seeds([4, 8, 9])),
}
INVALID = {
    "step size outside the CAS bounds": (
        _call("sample_cas", **_cas([0], 0.5, 2, True)), "step_size 0.5 is outside the CAS bounds for n_sigma = 2"),
    "n_sigma below 1": (_call("sample_cas", **_cas([0], 0.002, 0, True)),
                        "n_sigma must be at least 1 and at most 1000, got 0"),
    "ALS n_sigma below 1": (_call("sample_als", **_cas([0], 0.002, -1, True)), "n_sigma must be at least 1"),
    "n_sigma too large": (_call("sample_cas", **_cas([0], 0.002, 2**30, True)), "at most 1000, got 1073741824"),
    "ALS step size not positive": (_call("sample_als", **_cas([0], 0.0, 1, True)), "step_size must be a positive"),
    "ODE num_steps below 2": (_call("sample_ode", **_ode([0], 1, "rho", True)),
                              "num_steps must be at least 2 and at most 1000, got 1"),
    "ODE levels beyond the ladder": (_call("sample_ode", **_ode([0], 5, "ladder", False)),
                                     "num_steps 5 exceeds the 4 trained levels"),
    "unknown spacing": (_call("sample_ode", **_ode([0], 3, "cosine", False)),
                        "spacing must be ladder or rho, got cosine"),
    "Heun with eta": (_call("sample_ode", **_ode([0], 3, "rho", True, eta=0.5)), "eta applies to Euler"),
    "negative churn": (_call("sample_ode", **_ode([0], 3, "rho", True, churn=-1.0)), "churn must be at least 0"),
    "coarse CAS step size": (_call("sample_cas_levels", **_cas_levels([0], 3, 0.002)),
                             "step_size 0.002 is outside the CAS bounds for 3 levels"),
    "too many images": (_call("serving_default", seeds=_seeds(range(MAX_IMAGES + 1))),
                        f"at most {MAX_IMAGES} seeds per request (the limit set by asm-export --max_images), "
                        f"got {MAX_IMAGES + 1}"),
    "no seeds": (_call("serving_default", seeds=_seeds([])), "give at least one seed"),
    "wrong mask shape": (
        _call("inpaint", images=[KNOWN.tolist(), "float32"], mask=[MASK[:, :, :5].tolist(), "float32"],
              seeds=_seeds([4, 8, 9])), "mask must have the shape of images [3 8 8 3]"),
    "mask not 0/1": (
        _call("inpaint", images=[KNOWN.tolist(), "float32"], mask=[(MASK * 0.5).tolist(), "float32"],
              seeds=_seeds([4, 8, 9])), "mask values must be 1 (known) or 0 (to sample)"),
    "seeds for inpainting": (
        _call("inpaint", images=[KNOWN.tolist(), "float32"], mask=[MASK.tolist(), "float32"], seeds=_seeds([4])),
        "give one seed per example: 1 seeds for 3 images"),
    "wrong image shape": (
        _call("denoise", noisy_images=[NOISY[:, :4].tolist(), "float32"], sigma=[[0.5, 0.1], "float32"]),
        "noisy_images must have shape [N, 8, 8, 3], got [2 4 8 3]"),
    "sigma count": (_call("denoise", noisy_images=[NOISY.tolist(), "float32"], sigma=[[0.5], "float32"]),
                    "give one sigma per example: 1 sigmas for 2 noisy_images"),
}


def write_run(root, name="tiny", config=CONFIG):
    """A run directory as asm-train leaves it, without training: config.gin and a checkpoint at STEP holding
    (random) EMA weights, for an image folder of four random 8x8 RGB images."""
    images = root / "images"
    images.mkdir()
    for k in range(4):
        pixels = np.random.default_rng(k).integers(0, 256, size=SHAPE, dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{k}.png")
    return write_untrained_run(root / name, config.format(images=images), STEP, seed=3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("export_run"))


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    """asm-export once, then every call of CALLS and INVALID in one fresh TensorFlow-only process."""
    export_dir = str(tmp_path_factory.mktemp("exports"))
    result = run_cli("export", "--workdir", workdir, "--export_dir", export_dir, "--max_images", str(MAX_IMAGES),
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    path = os.path.join(export_dir, "tiny", "1")
    assert f"wrote {path}" in result.stdout
    calls = list(CALLS.values()) + [call for call, _ in INVALID.values()]
    calls_file = os.path.join(export_dir, "calls.json")
    with open(calls_file, "w") as f:
        json.dump(calls, f)
    out = os.path.join(export_dir, "out.npz")
    result = subprocess.run([sys.executable, "-c", FRESH, path, calls_file, out], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = dict(np.load(out))
    errors = json.load(open(out + ".errors.json"))
    names = list(CALLS) + list(INVALID)
    outputs = {}
    for key, value in arrays.items():
        loader, index, output = key.split("/")
        outputs.setdefault((loader, names[int(index)]), {})[output] = value
    return {"path": path, "outputs": outputs, "errors": {names[int(i)]: m for i, m in errors.items()}}


@pytest.fixture(scope="module")
def loaded(workdir):
    run = run_loading.load_run(workdir)
    yield run
    gin.clear_config()


def _library(loaded, seeds, **settings):
    settings = sampling.SamplerSettings(**{**dict(sampler="cas", n_sigma=2, step_size=0.002), **settings})
    sample = sampling.make_sampler(loaded.score_model, loaded.experiment.schedule, settings, loaded.experiment.data)
    return [output.numpy() for output in sample(tf.constant(seeds, tf.int64))]


def test_export_layout_and_info(exported, workdir):
    path = exported["path"]
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
    assert not [name for name in os.listdir(os.path.dirname(path)) if name != "1"]  # no partial directory left
    info = json.load(open(os.path.join(path, "assets.extra", "asm_export.json")))
    assert info["step"] == STEP and info["max_images"] == MAX_IMAGES and info["example_shape"] == list(SHAPE)
    assert info["serving_settings"]["n_sigma"] == 2 and info["signatures"] == list(export.SIGNATURES)


def test_both_loaders_match_the_library_sampler(exported, loaded):
    outputs = exported["outputs"]
    final, denoised = _library(loaded, SEEDS)
    final_n3, denoised_n3 = _library(loaded, SEEDS, n_sigma=3, step_size=0.0018)
    for loader in ("session", "eager"):
        np.testing.assert_allclose(outputs[loader, "default"]["images_float"], denoised, atol=1e-6)
        np.testing.assert_allclose(outputs[loader, "cas_n3"]["images_float"], final_n3, atol=1e-6)
    np.testing.assert_allclose(outputs["session", "cas_n3_denoised"]["images_float"], denoised_n3, atol=1e-6)
    np.testing.assert_allclose(outputs["session", "als"]["images_float"],
                               _library(loaded, SEEDS, sampler="als", n_sigma=2, step_size=0.003)[0], atol=1e-6)
    got = outputs["session", "default"]
    assert got["images"].dtype == np.uint8 and got["images"].shape == (len(SEEDS), *SHAPE)
    assert np.abs(got["images"].astype(int) - np.round(denoised * 255)).max() <= 1
    assert 0.05 < denoised.std()  # the images are not all clipped to one value
    assert np.abs(final - denoised).mean() > 1e-4  # so the comparisons above tell the EDS from the final sample


def test_the_ode_and_coarse_cas_signatures_match_the_library_samplers(exported, loaded):
    outputs = exported["outputs"]
    heun = _library(loaded, SEEDS, sampler="heun", num_steps=3, spacing="rho")[1]
    churn = _library(loaded, SEEDS, sampler="heun", num_steps=3, spacing="rho", churn=1.0)[1]
    euler = _library(loaded, SEEDS, sampler="euler", num_steps=4, eta=0.5)[0]
    cas = _library(loaded, SEEDS, sampler="cas", n_sigma=1, num_steps=3, step_size=0.0025)[1]
    for loader in ("session", "eager"):
        np.testing.assert_allclose(outputs[loader, "heun"]["images_float"], heun, atol=1e-6)
        np.testing.assert_allclose(outputs[loader, "euler_eta"]["images_float"], euler, atol=1e-6)
        np.testing.assert_allclose(outputs[loader, "cas_levels"]["images_float"], cas, atol=1e-6)
    np.testing.assert_allclose(outputs["session", "heun_churn"]["images_float"], churn, atol=1e-6)
    np.testing.assert_allclose(outputs["session", "heun_churn_reordered"]["images_float"],
                               churn[[SEEDS.index(s) for s in (2, 11, 5)]], atol=1e-6)
    assert np.abs(heun - churn).mean() > 1e-3 and np.abs(heun - cas).mean() > 1e-3


def test_the_same_seed_gives_the_same_image_in_any_batch(exported):
    full = exported["outputs"]["session", "default"]["images_float"]
    reordered = exported["outputs"]["session", "default_reordered"]["images_float"]
    np.testing.assert_allclose(reordered, full[[SEEDS.index(s) for s in (2, 11, 5)]], atol=1e-6)
    assert np.abs(full[0] - full[1]).mean() > 0.01


def test_denoise_is_the_eds(exported, loaded):
    got = exported["outputs"]["session", "denoise"]
    sigma = tf.constant([0.5, 0.1])
    expected = loaded.score_model.denoise(tf.constant(NOISY), sigma).numpy()
    np.testing.assert_allclose(got["denoised"], expected, atol=1e-6)
    np.testing.assert_allclose(got["images_float"], np.clip((expected + 1) / 2, 0, 1), atol=1e-6)


def test_inpainting_keeps_the_known_pixels_exactly(exported, loaded):
    known = np.broadcast_to(MASK > 0.5, KNOWN.shape)
    for loader in ("session", "eager"):
        got = exported["outputs"][loader, "inpaint"]
        np.testing.assert_array_equal(got["images_float"][known], KNOWN[known])
        np.testing.assert_array_equal(got["images"][known], np.round(KNOWN[known] * 255).astype(np.uint8))
        assert np.abs(got["images_float"][~known] - KNOWN[~known]).mean() > 0.05
    settings = sampling.SamplerSettings(n_sigma=2, step_size=0.002)
    inpaint = sampling.make_inpainter(loaded.score_model, loaded.experiment.schedule, settings,
                                      loaded.experiment.data)
    _, expected = inpaint(tf.constant(KNOWN), tf.constant(known), tf.constant([4, 8, 9], tf.int64))
    np.testing.assert_allclose(exported["outputs"]["session", "inpaint"]["images_float"], expected, atol=1e-6)


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_inputs_fail_with_a_message_that_says_what_is_wrong(exported, case):
    assert case in exported["errors"], f"{case}: no error"
    assert INVALID[case][1] in exported["errors"][case]


def test_no_python_and_no_xla_in_any_graph(exported):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported["path"], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    nodes, functions = [], []
    for meta_graph in proto.meta_graphs:
        nodes += list(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            functions.append(function)
            nodes += list(function.node_def)
    assert len(functions) > 5 and any(node.op == "While" or node.op == "StatelessWhile" for node in nodes)
    assert not [node.name for node in nodes if node.op in ("PyFunc", "PyFuncStateless", "EagerPyFunc")]
    xla = ("_XlaMustCompile", "_jit_compile", "_XlaCompile", "_XlaScope")
    assert not [node.name for node in nodes if any(key in node.attr for key in xla)]
    assert not [f.signature.name for f in functions if any(key in f.attr for key in xla)]


def test_versions_are_never_overwritten(tmp_path):
    base = str(tmp_path / "model")
    assert export.choose_version(base) == 1
    for version in ("1", "4", ".partial-5-1", "notes"):
        os.makedirs(os.path.join(base, version))
    assert export.existing_versions(base) == [1, 4]
    assert export.choose_version(base) == 5 and export.choose_version(base, 2) == 2
    with pytest.raises(FileExistsError, match="never overwritten.*next free one \\(5\\)"):
        export.choose_version(base, 4)
    with pytest.raises(FileExistsError, match="never overwritten"):
        export.save(None, None, None, None, os.path.join(base, "4"))


def load_test_tool():
    path = os.path.join(REPO, "tools", "benchmarks", "load_test.py")
    spec = importlib.util.spec_from_file_location("tool_load_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_served_model_under_concurrent_load_with_bad_requests_mixed_in(exported):
    # 4 clients share one session of the TF1 loader; 8 of the 32 requests are bad (too many images, a CAS step
    # size out of bounds); the whole list is sent twice to see whether memory grows.
    reports = load_test_tool().load_test(exported["path"], clients=[4], requests=32, images=3, bad_every=4,
                                         rounds=2)
    for report in reports:
        assert (report["ok"], report["rejected"], report["mismatches"], report["failed"]) == (24, 8, 0, 0), report
    assert reports[1]["rss_mb"] - reports[0]["rss_mb"] < 10, reports


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_an_export_that_cannot_be_written_stops_naming_it_and_keeps_every_version(exported, workdir, tmp_path,
                                                                                fault, storage_faults):
    export_dir = storage_faults.tmpfs(tmp_path / "disk", "4m")
    shutil.copytree(os.path.dirname(exported["path"]), export_dir / "tiny")  # version 1
    before = {path: open(path, "rb").read() for path in glob.glob(f"{export_dir}/tiny/1/**", recursive=True)
              if os.path.isfile(path)}
    if fault == "full":
        storage_faults.fill(export_dir)
    else:
        storage_faults.read_only(export_dir / "tiny")
    result = run_cli("export", "--workdir", workdir, "--export_dir", str(export_dir), timeout=600)
    reason = "No space left on device" if fault == "full" else "Read-only file system"
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (f"asm-export: error: cannot write export {export_dir}/tiny/2 "
                                                      f"({reason}); the versions before it ([1]) are untouched")
    assert os.listdir(export_dir / "tiny") == ["1"]  # no partial directory left
    assert {path: open(path, "rb").read() for path in before} == before


@pytest.mark.parametrize("data_std", [None, 0.5])  # the paper's parametrization and EDM's preconditioning
def test_a_point_run_exports_points(tmp_path, data_std):
    tf.keras.utils.set_random_seed(0)
    network = ToyMLP(hidden=16, depth=2)
    network(tf.zeros([1, 2]))
    score_model = ScoreModel(network, data_std)
    source = toy2d.toy2d("8gaussians", 256)
    schedule = noise_schedule.NoiseSchedule(sigma_begin=1.0, sigma_end=0.05, num_levels=3)
    settings = sampling.SamplerSettings(n_sigma=1, step_size=0.002)
    path = str(tmp_path / "points" / "1")
    export.save(score_model, schedule, source, settings, path, max_images=8)
    serving = tf.saved_model.load(path).signatures
    seeds = tf.constant([3, 1, 4], tf.int64)
    got = serving["serving_default"](seeds=seeds)
    assert set(got) == {"points"}
    _, expected = sampling.make_sampler(score_model, schedule, settings, source)(seeds)
    np.testing.assert_allclose(got["points"], expected, atol=1e-6)
    known = np.array([[0.5, 0.0], [-1.0, 0.0], [2.0, 0.0]], np.float32)
    mask = np.array([[1.0, 0.0]] * 3, np.float32)  # x known, y sampled
    inpainted = serving["inpaint"](points=tf.constant(known), mask=tf.constant(mask), seeds=seeds)["points"].numpy()
    np.testing.assert_array_equal(inpainted[:, 0], known[:, 0])
    assert np.all(inpainted[:, 1] != 0.0)


def test_export_applies_gin_bindings_on_top_of_the_saved_config(workdir, tmp_path):
    config = open(os.path.join(workdir, "config.gin")).read()
    result = run_cli("export", "--workdir", workdir, "--export_dir", str(tmp_path), "--gin_bindings",
                     "SamplerSettings.step_size = 0.5")
    errors = [line for line in result.stderr.splitlines() if line.startswith("asm-export: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "step size 0.5" in errors[0] and "strictly between" in errors[0]  # the bound one, not the run's 0.002
    assert open(os.path.join(workdir, "config.gin")).read() == config and not os.listdir(tmp_path)
