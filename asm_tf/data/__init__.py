"""Datasets; importing this package registers their gin factories."""

from asm_tf.data import toy2d  # noqa: F401
