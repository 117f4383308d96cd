import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from asm_tf import sampling
from asm_tf.data import digits, toy2d
from asm_tf.experiment import Experiment
from asm_tf.models.discriminator import BigGANDiscriminator
from asm_tf.models.mlp import ToyMLP
from asm_tf.models.ncsnv2 import NCSNv2
from asm_tf.noise_levels.schedule import NoiseSchedule
from asm_tf.training import optimizers
from asm_tf.training.adversarial import Adversarial
from asm_tf.training.trainer import Trainer

SCHEDULE = NoiseSchedule(sigma_begin=1.0, sigma_end=0.01, num_levels=5)
SETTINGS = sampling.SamplerSettings(sampler="cas", n_sigma=2, step_size=8e-5)


def make_trainer(workdir, strategy=None, **overrides):
    experiment = Experiment(data=toy2d.toy2d("25gaussians", pool_size=512),
                            score_network=lambda: ToyMLP(hidden=32, depth=2), schedule=SCHEDULE, ema_rate=0.9)
    options = dict(experiment=experiment, optimizer=lambda: optimizers.adam(learning_rate=1e-3), batch_size=8,
                   num_steps=6, steps_per_call=4, checkpoint_every=3, log_every=3, sample_every=6,
                   num_preview=16, sampler_settings=SETTINGS)
    options.update(overrides)
    return Trainer(str(workdir), strategy, **options)


def state(trainer):
    return [v.numpy() for v in trainer.network.weights + trainer.ema.network.weights + trainer.optimizer.variables]


def test_two_replicas_train_the_same_weights_as_one_device(tmp_path, mirrored):
    sgd = lambda: keras.optimizers.SGD(1e-2)  # exact comparison: see the adversarial test below
    single = make_trainer(tmp_path / "one", tf.distribute.OneDeviceStrategy("/cpu:0"), optimizer=sgd)
    single.train(log=lambda _: None)
    two = make_trainer(tmp_path / "two", mirrored(), optimizer=sgd)
    assert two.strategy.num_replicas_in_sync == 2
    two.train(log=lambda _: None)
    for a, b in zip(state(single), state(two), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert np.abs(state(single)[0] - make_trainer(tmp_path / "fresh").network.weights[0].numpy()).max() > 1e-4


def test_an_interrupted_run_resumes_bit_identically(tmp_path):
    straight = make_trainer(tmp_path / "straight")
    straight.train(log=lambda _: None)
    first = make_trainer(tmp_path / "resumed", num_steps=3)
    first.train(log=lambda _: None)
    messages = []
    second = make_trainer(tmp_path / "resumed")
    second.train(log=messages.append)
    assert any("resumed from step 3" in m for m in messages)
    assert int(second.step.numpy()) == 6
    for a, b in zip(state(straight), state(second), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tensorboard_events_read_back(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train(log=lambda _: None)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"),
                                                size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    for tag in ("loss", "grad_norm", "learning_rate", "steps_per_second", "samples", "denoised"):
        assert tag in tags
    losses = events.Tensors("loss")
    assert [e.step for e in losses] == [3, 6]
    assert all(np.isfinite(tf.make_ndarray(e.tensor_proto)) for e in losses)
    picture = tf.make_ndarray(events.Tensors("samples")[0].tensor_proto)
    assert tf.io.decode_png(picture[2]).shape[-1] == 3


def test_the_run_seed_fixes_the_initial_weights(tmp_path):
    first, again = make_trainer(tmp_path / "a"), make_trainer(tmp_path / "b")
    other = make_trainer(tmp_path / "c", seed=5)
    for mine, same in zip(state(first), state(again)):
        np.testing.assert_array_equal(mine, same)
    assert any(np.abs(mine - theirs).max() > 1e-3 for mine, theirs in zip(state(first), state(other)))


def test_a_batch_that_does_not_split_over_replicas_is_refused(tmp_path, mirrored):
    with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
        make_trainer(tmp_path, mirrored(), batch_size=7)


def make_adversarial_trainer(workdir, strategy=None, loss="LSGAN", d_steps=2, d_optimizer=None, fakes="fresh",
                             **overrides):
    d_optimizer = d_optimizer or (lambda: optimizers.adam(1e-3, beta_1=-0.5, beta_2=0.9))
    adversarial = Adversarial(discriminator=lambda: ToyMLP(hidden=16, depth=2, out_dim=1), loss=loss,
                              d_steps=d_steps, optimizer=d_optimizer, fakes=fakes)
    return make_trainer(workdir, strategy, adversarial=adversarial, **overrides)


@pytest.mark.parametrize("fakes", ["fresh", "score_step"])
def test_adversarial_training_with_two_replicas_equals_one_device(tmp_path, mirrored, fakes):
    # SGD, because Adam's normalised steps blow summation-order rounding of near-zero gradients up to the
    # learning rate (measured: 1.5e-8 apart with SGD, 7e-2 with Adam at lr 1e-2 on the same runs).
    sgd = lambda: keras.optimizers.SGD(1e-2)
    options = dict(loss="RaLSGAN", d_optimizer=sgd, optimizer=sgd, fakes=fakes)
    single = make_adversarial_trainer(tmp_path / "one", tf.distribute.OneDeviceStrategy("/cpu:0"), **options)
    single.train(log=lambda _: None)
    two = make_adversarial_trainer(tmp_path / "two", mirrored(), **options)
    two.train(log=lambda _: None)
    weights = lambda t: [v.numpy() for v in t.network.weights + t.ema.network.weights + t.discriminator.weights]
    for a, b in zip(weights(single), weights(two), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert np.abs(weights(single)[0] - make_trainer(tmp_path / "fresh").network.weights[0].numpy()).max() > 1e-3


@pytest.mark.parametrize("fakes", ["fresh", "score_step"])
def test_interrupted_adversarial_training_resumes_bit_identically(tmp_path, fakes):
    straight = make_adversarial_trainer(tmp_path / "straight", fakes=fakes)
    straight.train(log=lambda _: None)
    make_adversarial_trainer(tmp_path / "resumed", num_steps=3, fakes=fakes).train(log=lambda _: None)
    resumed = make_adversarial_trainer(tmp_path / "resumed", fakes=fakes)
    metrics = resumed.train(log=lambda _: None)
    assert set(metrics) == {"loss", "loss_dsm", "loss_g", "loss_d", "grad_norm", "d_grad_norm", "d_real", "d_fake"}
    weights = lambda t: state(t) + [v.numpy() for v in t.discriminator.weights + t.d_optimizer.variables]
    for a, b in zip(weights(straight), weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.d_optimizer.iterations.numpy()) == 2 * int(resumed.optimizer.iterations.numpy()) == 12


@pytest.mark.parametrize("fakes", ["fresh", "score_step"])
def test_the_score_step_fakes_schedule_updates_d_on_the_score_steps_own_eds(tmp_path, fakes):
    """One step by hand from the initial weights (SGD): with 'score_step' the score network steps against the
    initial D and D then judges the EDS of the score step's draw; with 'fresh' D judges another draw first."""
    sgd = lambda: keras.optimizers.SGD(0.1)
    trainer = make_adversarial_trainer(tmp_path, d_steps=1, optimizer=sgd, d_optimizer=sgd, fakes=fakes,
                                       num_steps=1, steps_per_call=1)
    x = next(iter(trainer.data.make_dataset(trainer.batch_size, trainer.seed)))
    _, score_grads, eds = trainer._score_gradients(x, trainer._example_seeds(trainer.batch_size, draw=0))
    _, d_grads, _ = trainer._discriminator_gradients(x, None, fakes=eds)
    variables = trainer.network.trainable_variables + trainer.discriminator.trainable_variables
    expected = [v.numpy() - 0.1 * g.numpy() for v, g in zip(variables, score_grads + d_grads, strict=True)]
    trainer.train(log=lambda _: None)
    got = [v.numpy() for v in variables]
    matches = all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(got, expected, strict=True))
    assert matches == (fakes == "score_step")


def test_unknown_fakes_schedule_is_refused():
    with pytest.raises(ValueError, match="Adversarial.fakes must be one of"):
        Adversarial(discriminator=ToyMLP, fakes="stale")


def test_a_dead_discriminator_is_reported(tmp_path):
    dead = lambda: keras.Sequential([keras.layers.Dense(1, kernel_initializer="zeros"), keras.layers.ReLU()])
    trainer = make_trainer(tmp_path, adversarial=Adversarial(discriminator=dead))
    lines = []
    metrics = trainer.train(log=lines.append)
    assert metrics["d_grad_norm"] == 0.0
    assert sum("the discriminator's gradients are exactly zero" in line for line in lines) == 2  # steps 3 and 6
    lines.clear()
    make_adversarial_trainer(tmp_path / "alive").train(log=lines.append)
    assert not any("warning" in line for line in lines)


def test_adversarial_image_runs_show_real_noisy_and_denoised_images_in_tensorboard(tmp_path):
    experiment = Experiment(data=digits.digits(), score_network=lambda: NCSNv2(ngf=4), schedule=SCHEDULE,
                            ema_rate=0.9)
    adversarial = Adversarial(discriminator=lambda: BigGANDiscriminator(ch=4))
    trainer = make_trainer(tmp_path, experiment=experiment, adversarial=adversarial, num_steps=2, steps_per_call=2,
                           log_every=2, sample_every=2, checkpoint_every=2, num_preview=4)
    trainer.train(log=lambda _: None)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"),
                                                size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    for tag in ("loss_d", "loss_g", "d_real", "d_fake", "samples", "denoised"):
        assert tag in events.Tags()["tensors"]
    png = tf.make_ndarray(events.Tensors("real_noisy_denoised")[0].tensor_proto)[2]
    screen = tf.io.decode_png(png).numpy()[..., 0].astype(int)
    assert screen.shape == (2 * 64, 6 * 64)  # two rows of two (real, noisy, denoised) triplets, 4x enlarged
    grid = screen[::4, ::4]
    np.testing.assert_array_equal(np.repeat(np.repeat(grid, 4, axis=0), 4, axis=1), screen)  # 4x4 pixel blocks
    tiles = grid.reshape(2, 16, 6, 16).transpose(0, 2, 1, 3).reshape(4, 3, 16, 16)  # [example, kind, H, W]
    real = next(iter(experiment.data.make_dataset(4, trainer.seed + 1))).numpy()[..., 0]
    np.testing.assert_array_equal(tiles[:, 0], np.round(np.clip(real, 0, 1) * 255))
    # sigma falls from 1 (example 0) to 0.01 (example 3): the noisy image departs from the real one, then not
    assert np.abs(tiles[0, 1] - tiles[0, 0]).mean() > 60 and np.abs(tiles[3, 1] - tiles[3, 0]).max() <= 12
    assert np.abs(tiles[:, 2] - tiles[:, 1]).max() > 0  # the score network changed what the noisy images showed
