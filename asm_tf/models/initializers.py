"""Initialisers that reproduce the reference's PyTorch defaults."""

import math

import keras


def torch_default_kernel():
    """PyTorch's default conv/linear weight init: kaiming-uniform(a=sqrt 5) = U(+-sqrt(1 / fan_in))."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_default_bias(fan_in):
    """PyTorch's default bias init: U(+-1 / sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)
