"""Sampling (docs/sampling.md): a run's sampler settings (`settings`), ALS and CAS (`langevin`), the
probability-flow ODE samplers (`ode`), and running them (`runner`: the initial value, the dispatch, batches).
The names below are the package's public ones."""

from asm_tf.sampling.langevin import als, cas, cas_inpaint
from asm_tf.sampling.runner import draw, initial_value, inpaint, make_inpainter, make_sampler, sample_in_batches
from asm_tf.sampling.settings import ODE_SAMPLERS, SAMPLERS, STEP_SAMPLERS, SamplerSettings, carried_step_size

__all__ = ["ODE_SAMPLERS", "SAMPLERS", "STEP_SAMPLERS", "SamplerSettings", "als", "carried_step_size", "cas",
           "cas_inpaint", "draw", "initial_value", "inpaint", "make_inpainter", "make_sampler", "sample_in_batches"]
