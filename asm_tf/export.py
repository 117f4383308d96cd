"""SavedModel export for TF Serving: each signature runs a whole sampler as one graph.

The module tracks the score network's EMA weights as raw `tf.Variable`s (the values inside Keras 3's
variables): a tracked Keras model loads with `tf.saved_model.load` but not in the session loader that
TF Serving uses ("Could not find variable"). The graphs hold no py_function and no XLA clusters; inputs
are checked in the graph and bad ones fail with an InvalidArgument error that says what is wrong.

Signatures of an image run (N images of shape [H, W, C]; data space is [0, 1]):
  serving_default  seeds int64 [N] -> images uint8 [N, H, W, C], images_float float32 [N, H, W, C]:
                   CAS with the exported settings (n_sigma, step size) and the final denoising step.
  sample_cas       seeds int64 [N], step_size float32 [], n_sigma int32 [], denoise bool [] -> images,
  sample_als       images_float. CAS refines the grid in the graph (L' = (L - 1) n_sigma + 1 levels) and
                   checks the step size against its bounds; ALS takes n_sigma steps on each level.
  sample_ode       seeds int64 [N], num_steps int32 [], spacing string [] ("ladder": num_steps of the trained
                   levels, "rho": EDM's rho schedule between the ladder's ends), rho float32 [],
                   second_order bool [] (Heun, else Euler), churn float32 [], eta float32 [] (Euler only),
                   denoise bool [] -> images, images_float: the probability-flow ODE (asm_tf.sampling.ode).
  sample_cas_levels seeds, num_steps, spacing, rho as sample_ode, step_size float32 [], denoise bool [] ->
                   images, images_float: CAS on num_steps levels, its step size checked against their bounds.
  denoise          noisy_images float32 [N, H, W, C] (model space), sigma float32 [N] -> denoised (the EDS,
                   model space, unclamped), images_float and images (data space).
  inpaint          images float32 [N, H, W, C] in [0, 1], mask float32 [N, H, W, C] or [N, H, W, 1]
                   (1 = known, 0 = to sample), seeds int64 [N] -> images, images_float: CAS with the
                   exported settings and the final denoising step; the known pixels come back exactly.
A 2-D point run exports the same signatures with points instead of images: outputs `points` float32
[N, D] (data space), inputs `points` / `noisy_points` instead of `images` / `noisy_images`.
"""

import os

import numpy as np
import tensorflow as tf

from asm_tf import sampling, summaries
from asm_tf.noise_levels import formulas

SIGNATURES = ("serving_default", "sample_cas", "sample_als", "sample_ode", "sample_cas_levels", "denoise", "inpaint")
MAX_N_SIGMA = 1000  # keeps (L - 1) n_sigma + 1 far from int32 overflow and a request's cost bounded
MAX_NUM_STEPS = 1000  # bounds a request's cost


def raw_variables(network):
    """The tf.Variables that hold a Keras 3 network's weights, in its weight order."""
    variables = [getattr(weight, "value", weight) for weight in network.weights]
    wrong = [type(v).__name__ for v in variables if not isinstance(v, tf.Variable)]
    if wrong:
        raise TypeError(f"expected the network's weights to hold tf.Variables, got {sorted(set(wrong))}")
    return variables


def _check(condition, template, *values):
    """An assertion whose InvalidArgument error is `template` formatted with `values` (tf.strings.format)."""
    message = tf.strings.format(template, values, summarize=8) if values else template
    return tf.debugging.Assert(condition, [message])


class WeightsModule(tf.Module):
    """What the SavedModel tracks: the raw variables of the EMA network (the signatures capture them)."""

    def __init__(self, network):
        super().__init__(name="asm_sampler")
        self.ema_weights = raw_variables(network)


class Signatures:
    """The serving signatures of one run (see the module docstring), traced once as concrete functions.

    `settings` (n_sigma and CAS step size, `SamplerSettings.as_cas`) drive serving_default and inpaint;
    `max_images` bounds the number of examples per request.
    """

    def __init__(self, score_model, schedule, source, settings, max_images=64):
        settings = settings.as_cas()
        settings.validate(schedule)
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        self._score_model, self._schedule, self._source = score_model, schedule, source
        self._settings, self._max_images = settings, int(max_images)
        self._example_shape = tuple(int(d) for d in source.example_shape)
        self._images = source.kind == "image"
        self._name = "images" if self._images else "points"
        self._serving_levels = settings.sampling_sigmas(schedule).astype(np.float32)

    def concrete_functions(self):
        """{signature name: concrete function}. No autograph: the graphs use tf.while_loop and tf.cond."""
        free = [None] * (1 + len(self._example_shape))
        seeds = tf.TensorSpec([None], tf.int64, name="seeds")
        scalars = [tf.TensorSpec([], tf.float32, name="step_size"), tf.TensorSpec([], tf.int32, name="n_sigma"),
                   tf.TensorSpec([], tf.bool, name="denoise")]
        level_specs = [tf.TensorSpec([], tf.int32, name="num_steps"), tf.TensorSpec([], tf.string, name="spacing"),
                       tf.TensorSpec([], tf.float32, name="rho")]
        denoise = tf.TensorSpec([], tf.bool, name="denoise")
        specs = {
            "serving_default": (self._serving_default, [seeds]),
            "sample_cas": (self._sample_cas, [seeds, *scalars]),
            "sample_als": (self._sample_als, [seeds, *scalars]),
            "sample_ode": (self._sample_ode, [seeds, *level_specs, tf.TensorSpec([], tf.bool, name="second_order"),
                                              tf.TensorSpec([], tf.float32, name="churn"),
                                              tf.TensorSpec([], tf.float32, name="eta"), denoise]),
            "sample_cas_levels": (self._sample_cas_levels, [seeds, *level_specs, scalars[0], denoise]),
            "denoise": (self._denoise, [tf.TensorSpec(free, tf.float32, name=f"noisy_{self._name}"),
                                        tf.TensorSpec([None], tf.float32, name="sigma")]),
            "inpaint": (self._inpaint, [tf.TensorSpec(free, tf.float32, name=self._name),
                                        tf.TensorSpec(free, tf.float32, name="mask"), seeds]),
        }
        return {name: tf.function(fn, input_signature=spec, autograph=False).get_concrete_function()
                for name, (fn, spec) in specs.items()}

    # ------------------------------------------------------------------ outputs and checks
    def _outputs(self, data):
        if self._images:
            return {"images": summaries.to_uint8(data), "images_float": data}
        return {"points": data}

    def _check_count(self, count, what):
        limit = f"at most {self._max_images} {what}s per request (the limit set by asm-export --max_images), got {{}}"
        return [_check(count >= 1, f"give at least one {what}"), _check(count <= self._max_images, limit, count)]

    def _check_examples(self, x, what):
        """Checks x's example shape and count; returns (checks, x with its static shape)."""
        expected = tf.constant(self._example_shape, tf.int32)
        shape = tf.shape(x)
        pretty = ", ".join(str(d) for d in self._example_shape)
        checks = [_check(tf.reduce_all(tf.equal(shape[1:], expected)),
                       f"{what} must have shape [N, {pretty}], got {{}}", shape)]
        checks += self._check_count(shape[0], "example")
        with tf.control_dependencies(checks):
            return checks, tf.ensure_shape(x, (None, *self._example_shape))

    # ------------------------------------------------------------------ samplers
    def _draw(self, seeds, levels, step_size, denoise, sampler, n_sigma=1, **ode_settings):
        final, denoised = sampling.draw(self._score_model, self._source, seeds, levels, sampler, step_size=step_size,
                                        n_sigma=n_sigma, noise_first=self._settings.noise_first, **ode_settings)
        return self._outputs(self._source.transform.to_data(tf.where(denoise, denoised, final)))

    def _serving_default(self, seeds):
        with tf.control_dependencies(self._check_count(tf.size(seeds), "seed")):
            return self._draw(seeds, self._serving_levels, self._settings.step_size, True, "cas")

    def _check_n_sigma(self, n_sigma):
        return _check(tf.logical_and(n_sigma >= 1, n_sigma <= MAX_N_SIGMA),
                      f"n_sigma must be at least 1 and at most {MAX_N_SIGMA}, got {{}}", n_sigma)

    def _cas_on(self, seeds, grid, step_size, denoise, grid_name, grid_value):
        """CAS on `grid` (float64) once the seed count and the step size (against the grid's bounds) are checked;
        `grid_name` describes the grid in the error, with `grid_value` in its {}."""
        low, high = formulas.cas_step_size_bounds(grid)
        eps = tf.cast(step_size, tf.float64)
        checks = self._check_count(tf.size(seeds), "seed") + [_check(
            tf.logical_and(low < eps, eps < high),
            f"step_size {{}} is outside the CAS bounds for {grid_name}: choose a step size strictly between {{}} "
            "and {}, i.e. sigma_L^2 (1 - gamma) < eps < sigma_L^2 (1 + gamma)", step_size, grid_value, low, high)]
        with tf.control_dependencies(checks):
            return self._draw(seeds, tf.cast(grid, tf.float32), step_size, denoise, "cas")

    def _sample_cas(self, seeds, step_size, n_sigma, denoise):
        with tf.control_dependencies([self._check_n_sigma(n_sigma)]):
            grid = formulas.sampler_levels(self._schedule, "cas", n_sigma=n_sigma)
        return self._cas_on(seeds, grid, step_size, denoise, "n_sigma = {}", n_sigma)

    def _sample_als(self, seeds, step_size, n_sigma, denoise):
        checks = self._check_count(tf.size(seeds), "seed") + [
            self._check_n_sigma(n_sigma),
            _check(tf.logical_and(step_size > 0.0, tf.math.is_finite(step_size)),
                   "step_size must be a positive number, got {}", step_size)]
        with tf.control_dependencies(checks):
            levels = formulas.sampler_levels(self._schedule, "als", n_sigma=n_sigma)
            return self._draw(seeds, tf.cast(levels, tf.float32), step_size, denoise, "als", n_sigma)

    def _levels(self, sampler, num_steps, spacing, rho):
        """(checks, float64 levels) of `sampler` for request inputs, as sampling.SamplerSettings.sampling_sigmas."""
        num_levels = self._schedule.num_levels
        is_rho = tf.equal(spacing, "rho")
        checks = [
            _check(tf.logical_or(is_rho, tf.equal(spacing, "ladder")),
                   tf.strings.join(["spacing must be ladder or rho, got ", spacing])),
            _check(tf.logical_and(num_steps >= 2, num_steps <= MAX_NUM_STEPS),
                   f"num_steps must be at least 2 and at most {MAX_NUM_STEPS}, got {{}}", num_steps),
            _check(tf.logical_or(is_rho, num_steps <= num_levels),
                   f"num_steps {{}} exceeds the {num_levels} trained levels; use spacing rho", num_steps),
            _check(tf.logical_or(tf.logical_not(is_rho), tf.logical_and(rho > 0.0, tf.math.is_finite(rho))),
                   "rho must be a positive number, got {}", rho)]
        with tf.control_dependencies(checks):
            levels = formulas.sampler_levels(self._schedule, sampler, num_steps=num_steps, spacing=spacing, rho=rho)
        return checks, levels

    def _sample_ode(self, seeds, num_steps, spacing, rho, second_order, churn, eta, denoise):
        checks, levels = self._levels("euler", num_steps, spacing, rho)  # Heun walks the same levels
        levels = tf.cast(levels, tf.float32)
        checks += self._check_count(tf.size(seeds), "seed") + [
            _check(tf.logical_and(churn >= 0.0, tf.math.is_finite(churn)), "churn must be at least 0, got {}", churn),
            _check(tf.logical_and(eta >= 0.0, eta <= 1.0), "eta must lie in [0, 1], got {}", eta),
            _check(tf.logical_not(tf.logical_and(second_order, eta > 0.0)),
                   "eta applies to Euler (second_order false); Heun takes churn")]
        with tf.control_dependencies(checks):
            return self._draw(seeds, levels, None, denoise, "euler", second_order=second_order, churn=churn, eta=eta)

    def _sample_cas_levels(self, seeds, num_steps, spacing, rho, step_size, denoise):
        checks, grid = self._levels("cas", num_steps, spacing, rho)
        with tf.control_dependencies(checks):
            return self._cas_on(seeds, grid, step_size, denoise, "{} levels", num_steps)

    def _denoise(self, noisy, sigma):
        checks, noisy = self._check_examples(noisy, f"noisy_{self._name}")
        checks += [_check(tf.equal(tf.size(sigma), tf.shape(noisy)[0]),
                          f"give one sigma per example: {{}} sigmas for {{}} noisy_{self._name}",
                          tf.size(sigma), tf.shape(noisy)[0]),
                   _check(tf.reduce_all(sigma > 0.0), "every sigma must be positive, got {}", sigma)]
        with tf.control_dependencies(checks):
            denoised = self._score_model.denoise(noisy, sigma)
        return {"denoised": denoised, **self._outputs(self._source.transform.to_data(denoised))}

    def _inpaint(self, known, mask, seeds):
        checks, known = self._check_examples(known, self._name)
        shape, mask_shape = tf.shape(known), tf.shape(mask)
        same = tf.reduce_all(tf.equal(mask_shape[:-1], shape[:-1]))
        channels_ok = tf.logical_or(tf.equal(mask_shape[-1], shape[-1]), tf.equal(mask_shape[-1], 1))
        checks += [
            _check(tf.logical_and(same, channels_ok),
                   f"mask must have the shape of {self._name} {{}} (or 1 in the last axis for all channels"
                   f"{' of a pixel' if self._images else ''}), got {{}}", shape, mask_shape),
            _check(tf.reduce_all(tf.logical_or(tf.equal(mask, 0.0), tf.equal(mask, 1.0))),
                   "mask values must be 1 (known) or 0 (to sample)"),
            _check(tf.equal(tf.size(seeds), shape[0]),
                   f"give one seed per example: {{}} seeds for {{}} {self._name}", tf.size(seeds), shape[0])]
        if self._images:
            checks.append(_check(tf.reduce_all(tf.logical_and(known >= 0.0, known <= 1.0)),
                                 "images must lie in [0, 1]"))
        with tf.control_dependencies(checks):
            known_mask = tf.broadcast_to(mask > 0.5, shape)
            _, denoised = sampling.inpaint(self._score_model, self._source, self._serving_levels,
                                           self._settings.step_size, known, known_mask, seeds)
        return self._outputs(denoised)


def existing_versions(base):
    """The numeric version directories under EXPORT_DIR/NAME (the ones TF Serving considers), sorted."""
    if not tf.io.gfile.isdir(base):
        return []
    return sorted(int(entry.rstrip("/")) for entry in tf.io.gfile.listdir(base) if entry.rstrip("/").isdigit())


def choose_version(base, requested=None):
    """`requested` if it is free, else one above the highest existing version (1 for none).

    Raises FileExistsError for a requested version that exists (versions are never overwritten) and
    ValueError for one below 1.
    """
    versions = existing_versions(base)
    following = versions[-1] + 1 if versions else 1
    if requested is None:
        return following
    if requested < 1:
        raise ValueError(f"a version must be a positive integer, got {requested}")
    if requested in versions or tf.io.gfile.exists(os.path.join(base, str(requested))):
        raise FileExistsError(f"{os.path.join(base, str(requested))} exists and is never overwritten: "
                              f"choose another version, or omit it for the next free one ({following})")
    return requested


def save(score_model, schedule, source, settings, path, max_images=64):
    """Writes the SavedModel of a run's EMA score model to `path`, which must not exist yet."""
    if tf.io.gfile.exists(path):
        raise FileExistsError(f"{path} exists and is never overwritten: choose another version")
    signatures = Signatures(score_model, schedule, source, settings, max_images).concrete_functions()
    tf.saved_model.save(WeightsModule(score_model.network), path, signatures=signatures)
