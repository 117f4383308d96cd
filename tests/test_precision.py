"""Sampling and serving with the network in mixed bfloat16 from float32 weights (--precision of asm-sample,
asm-export and asm-eval), the float32 default unchanged, and the check for native bfloat16."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli
from test_export import CONFIG, write_run

from asm_tf import run_loading, sampling
from asm_tf.experiment import Experiment
from asm_tf.training import precision

# A small noise-conditional UNet: convolutions, GroupNorm, attention and the sigma embedding all run in bfloat16.
UNET_CONFIG = CONFIG.replace("Experiment.score_network = @ToyMLP\nToyMLP.hidden = 16\nToyMLP.depth = 2\n", """
Experiment.score_network = @UNet
UNet.ch = 8
UNet.ch_mult = (1, 2)
UNet.num_res_blocks = 1
UNet.attn_levels = (1,)
UNet.norm_groups = 4
UNet.conditioning = 'continuous'
""")
SEEDS = tf.range(6, dtype=tf.int64)


def quiet(_):
    pass


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    assert "@UNet" in UNET_CONFIG
    return write_run(tmp_path_factory.mktemp("precision_run"), config=UNET_CONFIG)


def sample(run):
    sampler = sampling.make_sampler(run.score_model, run.experiment.schedule, run.sampler_settings,
                                    run.experiment.data)
    return [output.numpy() for output in sampler(SEEDS)]


def test_float32_sampling_is_unchanged_and_bfloat16_computes_the_network_in_bfloat16(workdir, clean_gin):
    default = run_loading.load_run(workdir, log=quiet)
    # the float32 path built by hand: the run's network with its EMA weights, no dtype policy, no wrapper
    network = Experiment().build_score_network()
    tf.train.Checkpoint(ema_network=network.weights).read(default.checkpoint).expect_partial()
    by_hand = run_loading.LoadedRun(default.experiment, default.sampler_settings,
                                    default.experiment.score_model(network), default.step, default.checkpoint)
    float32 = sample(default)
    for ours, theirs in zip(float32, sample(by_hand), strict=True):
        np.testing.assert_array_equal(ours, theirs)

    mixed = run_loading.load_run(workdir, log=quiet, precision="mixed_bfloat16")
    assert mixed.score_model.network.network.compute_dtype == "bfloat16"
    assert {weight.dtype for weight in mixed.score_model.network.weights} == {"float32"}
    for weight, same in zip(mixed.score_model.network.weights, network.weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), same.numpy())
    bfloat16 = sample(mixed)
    for exact, rounded in zip(float32, bfloat16, strict=True):
        assert rounded.dtype == np.float32  # the sampler's state stays float32
        assert not np.array_equal(exact, rounded)
        assert np.abs(exact - rounded).max() < 0.05, np.abs(exact - rounded).max()


def test_export_in_bfloat16_serves_what_bfloat16_sampling_draws(workdir, tmp_path, clean_gin):
    result = run_cli("export", "--workdir", workdir, "--export_dir", str(tmp_path), "--precision", "mixed_bfloat16",
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    native, device = precision.native_bfloat16()
    assert f"precision: mixed_bfloat16 (bfloat16: {'native' if native else 'emulated'} on this {device}" in (
        result.stdout)
    assert ("warning: mixed_bfloat16 asked for, but bfloat16: emulated" in result.stderr) == (not native)
    path = os.path.join(tmp_path, os.path.basename(workdir), "1")
    with open(os.path.join(path, "assets.extra", "asm_export.json")) as f:
        assert json.load(f)["precision"] == "mixed_bfloat16"
    served = tf.saved_model.load(path).signatures["serving_default"](seeds=SEEDS)["images_float"].numpy()
    run = run_loading.load_run(workdir, log=quiet, precision="mixed_bfloat16")
    run = run_loading.LoadedRun(run.experiment, run.sampler_settings.as_cas(), run.score_model, run.step,
                                run.checkpoint)
    _, denoised = sample(run)
    np.testing.assert_allclose(served, denoised, atol=1e-5)


@pytest.mark.parametrize("gpus, flags, expected", [
    ([], {"avx512f", "avx512_bf16"}, (True, "CPU with AVX512-BF16")),
    ([], {"amx_bf16", "avx512_bf16"}, (True, "CPU with AMX-BF16")),
    ([], {"avx2", "fma"}, (False, "CPU without AMX-BF16 or AVX512-BF16")),
])
def test_native_bfloat16_is_read_off_the_cpu_flags(gpus, flags, expected):
    assert precision.native_bfloat16(gpus=gpus, flags=flags) == expected


def test_the_warning_comes_only_for_bfloat16_on_a_machine_that_emulates_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()
    emulated, native = (False, "CPU without AMX-BF16 or AVX512-BF16"), (True, "CPU with AVX512-BF16")
    lines = []
    precision.warn_if_emulated("mixed_bfloat16", lines.append, native=emulated)
    precision.warn_if_emulated("float32", lines.append, native=emulated)
    precision.warn_if_emulated("mixed_bfloat16", lines.append, native=native)
    assert lines == ["warning: mixed_bfloat16 asked for, but bfloat16: emulated on this CPU without AMX-BF16 or "
                     "AVX512-BF16, slower than float32"]
