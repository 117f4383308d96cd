"""The noise-conditional UNet (`UNet.conditioning`) through the rest of the library, which did not change for it:
training on two replicas, resuming, the samplers (ALS, CAS on a refined grid, Heun's ODE between the trained
levels) and every exported signature, loaded by TF Serving's session loader in a TensorFlow-only process."""

import json
import os
import subprocess
import sys

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, run_cli
from test_export import CALLS, CONFIG, FRESH, NOISY, write_run

from asm_tf import export, run_loading, sampling
from asm_tf.data import digits
from asm_tf.experiment import Experiment
from asm_tf.models.unet import UNet
from asm_tf.noise_levels.schedule import NoiseSchedule
from asm_tf.sampling import ode
from asm_tf.training.trainer import Trainer

SCHEDULE = NoiseSchedule(sigma_begin=1.0, sigma_end=0.02, num_levels=5)
# CAS on the grid refined twice (levels between the trained ones): 1.55e-4 < eps < 6.45e-4.
SETTINGS = sampling.SamplerSettings(sampler="cas", n_sigma=2, step_size=3e-4)
TINY_UNET = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=4)


def experiment(conditioning="index"):
    return Experiment(data=digits.digits(), score_network=lambda: UNet(**TINY_UNET, conditioning=conditioning),
                      schedule=SCHEDULE, ema_rate=0.9)


def make_trainer(workdir, strategy, **overrides):
    options = dict(experiment=experiment(), optimizer=lambda: keras.optimizers.SGD(1e-5), batch_size=4,
                   num_steps=4, steps_per_call=2, checkpoint_every=2, log_every=2, sample_every=0,
                   sampler_settings=SETTINGS)
    return Trainer(str(workdir), strategy, **{**options, **overrides})


def state(trainer):
    return [v.numpy() for v in trainer.network.weights + trainer.ema.network.weights + trainer.optimizer.variables]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Four steps of an 'index' UNet on one device."""
    trainer = make_trainer(tmp_path_factory.mktemp("straight"), tf.distribute.OneDeviceStrategy("/cpu:0"))
    trainer.train(log=lambda _: None)
    return trainer


def test_training_reads_sigma_on_the_schedule(straight, tmp_path):
    for network in (straight.network, straight.ema.network):
        assert network.takes_sigma and network.conditioning == "index"
        np.testing.assert_array_equal(network.levels, SCHEDULE.sigmas().astype(np.float32))
    untrained = make_trainer(tmp_path, tf.distribute.OneDeviceStrategy("/cpu:0"), num_steps=0)
    embedding = straight.network.embedding_layers[0].kernel.numpy()
    assert np.abs(embedding - untrained.network.embedding_layers[0].kernel.numpy()).max() > 1e-6  # it trained


def test_an_interrupted_conditional_run_resumes_bit_identically(straight, tmp_path):
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    make_trainer(tmp_path, one_device, num_steps=2).train(log=lambda _: None)
    messages = []
    resumed = make_trainer(tmp_path, one_device)
    resumed.train(log=messages.append)
    assert any("resumed from step 2" in m for m in messages)
    for a, b in zip(state(straight), state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_replicas_train_the_conditional_unet_as_one_device(straight, tmp_path, mirrored):
    two = make_trainer(tmp_path, mirrored())
    two.train(log=lambda _: None)
    for a, b in zip(state(straight), state(two), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


SAMPLERS = {"als": dict(sampler="als", n_sigma=2, step_size=3e-4),
            "cas": dict(sampler="cas", n_sigma=2, step_size=3e-4),
            "heun": dict(sampler="heun", num_steps=4, spacing="rho")}


def built(conditioning):
    keras.utils.set_random_seed(1)
    run = experiment(conditioning)
    return run, run.score_model(run.build_score_network())


@pytest.mark.parametrize("sampler, conditioning", [("als", "index"), ("cas", "index"), ("cas", "continuous"),
                                                   ("heun", "continuous")])
def test_the_samplers_run_the_conditional_unet(sampler, conditioning):
    run, score_model = built(conditioning)
    settings = sampling.SamplerSettings(**SAMPLERS[sampler])
    sample = sampling.make_sampler(score_model, SCHEDULE, settings, run.data)
    final, denoised = (output.numpy() for output in sample(tf.constant([3, 4, 5], tf.int64)))
    assert final.shape == denoised.shape == (3, 16, 16, 1) and np.all(np.isfinite(denoised))
    alone = sample(tf.constant([5], tf.int64))[1].numpy()  # the same example in a batch of one
    np.testing.assert_allclose(alone[0], denoised[2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conditioning", ["index", "continuous"])
def test_the_ode_sampler_asks_the_network_about_each_level(conditioning):
    """One Euler step between two levels that are not on the ladder, then the final denoising step, by hand."""
    _, score_model = built(conditioning)
    network, (high, low) = score_model.network, (0.7, 0.05)
    x = tf.random.stateless_uniform((2, 16, 16, 1), seed=[0, 1])
    final, denoised = ode.sample(score_model, x, tf.constant([1, 2], tf.int64), [high, low])
    stepped = x - (low - high) * network(x, tf.fill([2], high))
    np.testing.assert_allclose(final.numpy(), stepped.numpy(), rtol=1e-5, atol=1e-6)
    by_hand = stepped + low * network(stepped, tf.fill([2], low))
    np.testing.assert_allclose(denoised.numpy(), by_hand.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs((network(x, tf.fill([2], high)) - network(x, tf.fill([2], low))).numpy()).max() > 1e-3


UNET_CONFIG = CONFIG.replace("Experiment.score_network = @ToyMLP\nToyMLP.hidden = 16\nToyMLP.depth = 2\n", """
Experiment.score_network = @UNet
UNet.ch = 8
UNet.ch_mult = (1, 2)
UNet.num_res_blocks = 1
UNet.attn_levels = ()
UNet.norm_groups = 4
UNet.conditioning = 'index'
""")
ONE_CALL_PER_SIGNATURE = ("default", "cas_n3", "als", "heun", "cas_levels", "denoise", "inpaint")


def test_every_exported_signature_loads_and_runs(tmp_path):
    assert "UNet.conditioning = 'index'" in UNET_CONFIG
    """export.save (what asm-export runs) in this process; the calls in a fresh one, as in tests/test_export.py."""
    run = run_loading.load_run(write_run(tmp_path, config=UNET_CONFIG))
    try:
        path = str(tmp_path / "export")
        export.save(run.score_model, run.experiment.schedule, run.experiment.data, run.sampler_settings, path,
                    max_images=6)
        sigma = np.array(CALLS["denoise"]["inputs"]["sigma"][0], np.float32)
        expected = run.score_model.denoise(tf.constant(NOISY), tf.constant(sigma)).numpy()
    finally:
        gin.clear_config()
    calls_file, out = tmp_path / "calls.json", str(tmp_path / "out.npz")
    calls_file.write_text(json.dumps([{**CALLS[name], "eager": False} for name in ONE_CALL_PER_SIGNATURE]))
    result = subprocess.run([sys.executable, "-c", FRESH, path, str(calls_file), out], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served, errors = dict(np.load(out)), json.load(open(out + ".errors.json"))
    assert not errors
    called = {CALLS[ONE_CALL_PER_SIGNATURE[int(key.split("/")[1])]]["signature"] for key in served}
    assert called == set(export.SIGNATURES)
    assert all(np.all(np.isfinite(value)) for value in served.values())
    denoised = served[f"session/{ONE_CALL_PER_SIGNATURE.index('denoise')}/denoised"]
    np.testing.assert_allclose(denoised, expected, rtol=1e-5, atol=1e-5)  # sigma reaches the served network


def test_the_dry_run_counts_the_reference_conditional_unet_at_cifar10_size(tmp_path):
    """cifar10_unet.gin with the switch on, on a folder of four 32x32 images instead of CIFAR-10 (not downloaded
    in tests): 35,746,307 parameters, the reference's UNet(conditional=True)."""
    for k in range(4):
        pixels = np.random.default_rng(k).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        keras.utils.save_img(tmp_path / f"{k}.png", pixels, scale=False)
    result = run_cli("train", "--gin_file", os.path.join(REPO, "gin_configs", "cifar10_unet.gin"),
                     "--gin_bindings", "UNet.conditioning = 'continuous'",
                     "--gin_bindings", "Experiment.data = @image_folder()",
                     "--gin_bindings", f"image_folder.path = '{tmp_path}'",
                     "--gin_bindings", "image_folder.image_size = 32", "--dry_run", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "score network: UNet, 35,746,307 parameters, input (batch, 32, 32, 3)" in result.stdout
