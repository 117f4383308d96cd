"""Adam exactly as PyTorch (and the reference's negative-momentum "Adamp") computes it (docs/algorithm.md#optimisers).

    m_t = beta_1 m_{t-1} + (1 - beta_1) g_t,   v_t = beta_2 v_{t-1} + (1 - beta_2) g_t^2
    theta_t = theta_{t-1} - lr / (1 - beta_1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta_2^t) + epsilon)

beta_1 may be negative (the reference trains D with beta_1 = -0.5): 1 - beta_1^t then oscillates
(1.5, 0.75, 1.125, ...) and stays positive. keras.optimizers.Adam accepts beta_1 < 0 and bias-corrects
correctly, but adds epsilon to sqrt(v_t) instead of sqrt(v_hat_t), i.e. uses epsilon * sqrt(1 - beta_2^t)
in PyTorch's terms: its steps differ by up to tens of percent when sqrt(v_hat) is near epsilon
(tiny gradients, or FFHQ's epsilon = 1e-3). Hence this optimizer.

Gin: the score network and D take different betas; configure them with scopes, e.g.
`score/adam.beta_1 = 0.0` and `discriminator/adam.beta_1 = -0.5`.
"""

import gin
import keras
import tensorflow as tf
from keras import ops


def _handle(variable):
    """The resource handle of a Keras or tf variable (this device's copy inside a tf.distribute update)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def _signed_power(base, exponent):
    """base ** exponent for a Python float base of any sign and an integer-valued float tensor exponent."""
    magnitude = ops.power(abs(base), exponent)
    if base >= 0:
        return magnitude
    odd = ops.equal(ops.mod(exponent, 2.0), 1.0)
    return ops.where(odd, -magnitude, magnitude)


class TorchAdam(keras.optimizers.Optimizer):
    """PyTorch's Adam (no weight decay, no AMSGrad) with beta_1 allowed in [-1, 1)."""

    def __init__(self, learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="torch_adam", **kwargs):
        if not -1.0 <= beta_1 < 1.0:
            raise ValueError(f"beta_1 must be in [-1, 1), got {beta_1}")
        if not 0.0 <= beta_2 < 1.0:
            raise ValueError(f"beta_2 must be in [0, 1), got {beta_2}")
        if not epsilon >= 0.0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        """One fused ResourceApplyAdam per variable. Its update, with alpha = lr sqrt(1 - b2^t) / (1 - b1^t),
        is var -= alpha m / (sqrt(v) + epsilon'); epsilon' = epsilon sqrt(1 - b2^t) makes it PyTorch's."""
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_2_power = ops.power(self.beta_2, step)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=_signed_power(self.beta_1, step), beta2_power=beta_2_power,
            lr=ops.cast(learning_rate, dtype), beta1=ops.cast(self.beta_1, dtype), beta2=ops.cast(self.beta_2, dtype),
            epsilon=self.epsilon * ops.sqrt(1.0 - beta_2_power), grad=ops.cast(gradient, dtype))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


# Learning-rate schedules for `adam.learning_rate`, e.g. `adam.learning_rate = @schedules.CosineDecay()`.
gin.external_configurable(keras.optimizers.schedules.CosineDecay, module="schedules")


@gin.configurable
def adam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
    """The optimizer of both networks (docs/algorithm.md#optimisers): PyTorch-exact Adam; the paper's runs use
    lr 1e-4."""
    return TorchAdam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
