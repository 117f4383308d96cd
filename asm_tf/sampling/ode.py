"""Probability-flow ODE samplers of the variance-exploding ladder (Euler and Heun, as in EDM), graph while-loops.

With the denoiser D(x, sigma) = x + sigma * net(x) (asm_tf.score), the ODE is
dx/dsigma = (x - D(x, sigma)) / sigma = -net(x). The samplers integrate it from sigmas[0] to sigmas[-1] and end
with the final denoising step D(x, sigma_L), which is also EDM's last Euler step to sigma = 0. Network calls per
image: N for Euler and 2N - 1 for Heun, N = len(sigmas).

Optional noise: `churn` is EDM's S_churn, as in its Algorithm 2 with S_tmin = 0, S_tmax = inf, S_noise = 1: before
each of the N steps, the final denoising step included, the level is raised to sigma (1 + gamma), gamma =
min(churn / N, sqrt(2) - 1), by adding fresh noise; unlike EDM the raised level never exceeds sigmas[0], the
highest the network was trained on (so the first step is not churned). `eta` (Euler only) is DDIM's:
a step to sigma' goes deterministically to sqrt(sigma'^2 - c^2) and adds c z, c = eta sigma' sqrt(1 -
(sigma' / sigma)^2). eta = 0 is the plain Euler step, eta = 1 the ancestral step; CAS with
eta_CAS = eps / sigma_L^2 is this family's member with c = beta sigma'.

Randomness per image (asm_tf.noise): draw 1 is the starting noise, draws 2k + 2 and 2k + 3 the churn and eta
noise of step k (k = N - 1, the final denoising step, has churn only). Without churn and eta the image depends only
on the starting state.
"""

import math

import tensorflow as tf

from asm_tf import noise, score


def starting_state(x, seeds, sigma):
    """x + sigma z with z the seeds' draw 1: the initial value (e.g. sampling.initial_value) at level sigma."""
    return x + tf.cast(sigma, x.dtype) * noise.normal(noise.fold(seeds, 1), x.shape[1:])


def sample(score_model, x, seeds, sigmas, *, second_order=False, churn=0.0, eta=0.0):
    """(state at sigmas[-1], the denoised EDS that ends the sampler) from the state x at level sigmas[0].

    `sigmas` float [N >= 2], decreasing; `second_order` (bool, may be a tensor) picks Heun over Euler;
    `churn` >= 0 and `eta` in [0, 1] (Euler only) add noise, see the module docstring (with churn, the EDS is
    that of the state raised above sigmas[-1], EDM's last step). Callers validate.
    """
    sigmas = tf.cast(tf.convert_to_tensor(sigmas), tf.float32)
    churn, eta = tf.cast(churn, tf.float32), tf.cast(eta, tf.float32)
    second_order = tf.convert_to_tensor(second_order, tf.bool)
    count = tf.shape(sigmas)[0]
    gamma = tf.minimum(churn / tf.cast(count, tf.float32), math.sqrt(2.0) - 1.0)
    shape = x.shape[1:]

    def slope(x, sigma):
        return -score_model.output(x, score.batch_sigma(sigma, x))

    def churned(k, x):
        """(x raised from sigmas[k] to sigma (1 + gamma), at most sigmas[0], with fresh noise; that level)."""
        sigma = sigmas[k]
        raised = tf.minimum(sigma * (1.0 + gamma), sigmas[0])
        z = noise.normal(noise.fold(seeds, 2 * k + 2), shape)
        return x + tf.sqrt(tf.square(raised) - tf.square(sigma)) * z, raised

    def body(k, x):
        following = sigmas[k + 1]
        x, raised = churned(k, x)
        d = slope(x, raised)
        fresh = eta * following * tf.sqrt(1.0 - tf.square(following / raised))
        down = tf.sqrt(tf.square(following) - tf.square(fresh))
        euler = x + (down - raised) * d + fresh * noise.normal(noise.fold(seeds, 2 * k + 3), shape)
        heun = lambda: x + (following - raised) * 0.5 * (d + slope(euler, following))  # noqa: E731
        return k + 1, tf.cond(second_order, heun, lambda: euler)

    _, x = tf.while_loop(lambda k, _: k < count - 1, body, (tf.constant(0), x))
    last, raised = churned(count - 1, x)
    return x, score_model.denoise(last, score.batch_sigma(raised, last))


def network_calls(num_levels, second_order):
    """Network evaluations per image of `sample` on `num_levels` levels: N (Euler) or 2N - 1 (Heun)."""
    return 2 * num_levels - 1 if second_order else num_levels
