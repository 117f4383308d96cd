"""What a run is: data, score network, noise levels, EMA rate."""

import dataclasses
from typing import Callable, Optional

import gin
import tensorflow as tf

from asm_tf.data.source import DataSource
from asm_tf.noise_levels.schedule import NoiseSchedule
from asm_tf.score import ScoreModel


def parameter_count(network):
    return sum(int(v.shape.num_elements()) for v in network.trainable_variables)


def build_network(factory, example_shape):
    """Calls a network factory and builds the network on one example (at sigma 1 for a network that takes sigma)
    so that its variables exist."""
    network = factory()
    ScoreModel(network).output(tf.zeros((1, *example_shape)), tf.ones([1]))
    return network


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Experiment:
    """The parts of a run that training, sampling, export and evaluation share.

    `data_std`: None for the paper's parametrization; sigma_d for EDM's preconditioning and loss weighting
    (`ScoreModel`, `losses.level_weighting`).
    """

    data: DataSource = gin.REQUIRED
    score_network: Callable = gin.REQUIRED
    schedule: NoiseSchedule = dataclasses.field(default_factory=NoiseSchedule)
    ema_rate: float = 0.999
    data_std: Optional[float] = None

    def build_score_network(self):
        """The score network, built. A network that maps [0, 1] inputs to [-1, 1] (NCSNv2's `map_input`) does so
        only when the data's transform leaves them in [0, 1], as in the reference; one that reads sigma on the
        trained ladder (`needs_levels`, UNet's 'index' conditioning) gets the schedule's levels."""
        def factory():
            network = self.score_network()
            transform = self.data.transform
            if getattr(network, "map_input", False) is not False and (transform.rescale or transform.logit):
                if network.map_input:
                    raise ValueError(f"{type(network).__name__}.map_input = True maps [0, 1] to [-1, 1], but "
                                     "Transform.rescale or Transform.logit already moved the data: leave map_input "
                                     "unbound")
                network.map_input = False
            if getattr(network, "needs_levels", False):  # a network that reads sigma on the trained ladder
                network.set_levels(self.schedule.sigmas())
            return network

        return build_network(factory, self.data.example_shape)

    def score_model(self, network):
        """The score and denoiser of `network` under this run's parametrization."""
        return ScoreModel(network, self.data_std)
