"""Every gin configuration parses, names real configurables and builds its parts (without the data)."""

import glob
import os

import gin
import pytest

from asm_tf import configuration
from asm_tf.experiment import Experiment
from asm_tf.sampling import SamplerSettings
from asm_tf.training import optimizers
from asm_tf.training.adversarial import Adversarial

CONFIGS = sorted(path for path in glob.glob(os.path.join(os.path.dirname(__file__), "..", "gin_configs", "*.gin"))
                 if not path.endswith(("toy2d_common.gin", "toy2d_adversarial.gin")))  # included by others
SHAPES = {"cifar10": (32, 32, 3), "church": (64, 64, 3), "celeba": (64, 64, 3), "ffhq": (256, 256, 3),
          "tower": (128, 128, 3), "stackedmnist": (28, 28, 3), "digits": (16, 16, 1), "toy2d": (2,)}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_and_builds(path):
    configuration.parse([path])
    experiment = Experiment()
    name = os.path.basename(path)
    assert tuple(experiment.data.example_shape) == SHAPES[name.split("_")[0].removesuffix(".gin")]
    SamplerSettings().validate(experiment.schedule)
    SamplerSettings().as_cas().validate(experiment.schedule)  # what asm-export serves
    assert float(optimizers.adam().learning_rate) > 0  # a learning-rate schedule's bindings resolve too
    if name.endswith("_adv.gin"):
        adversarial = gin.query_parameter("Trainer.adversarial").scoped_configurable_fn()
        assert isinstance(adversarial, Adversarial)
        assert adversarial.loss == ("LSGAN01" if name.startswith("toy2d") else "LSGAN")
        assert adversarial.d_steps == (2 if "unet" in name else 1)


@pytest.mark.parametrize("name, cas, als", [("cifar10_ncsnv2.gin", 1.1e-6, 3.6e-6), ("cifar10_unet.gin", 1.05e-6, 4e-6),
                                            ("church_ncsnv2.gin", 2.8e-6, 4.85e-6)])
def test_the_paper_configs_carry_each_samplers_own_step_size(name, cas, als):
    configuration.parse([os.path.join(os.path.dirname(__file__), "..", "gin_configs", name)])
    settings = SamplerSettings()
    assert (settings.as_cas().step_size, settings.with_sampler("als").step_size) == (cas, als)


def test_every_image_config_has_an_adversarial_twin():
    names = {os.path.basename(p) for p in CONFIGS}
    for name in names:
        if not name.endswith("_adv.gin"):
            assert name.replace(".gin", "_adv.gin") in names
